"""Warp the photo onto one frame's quad, working on the frame's own yuv420p planes.

Only the quad's bounding box is touched: the photo is warped into that box for Y at full
resolution and for Cb/Cr at half, and blended through a feathered, anti-aliased coverage
mask (times the matte, where something passes in front). Whole frames are never converted
to RGB, which is what keeps compositing close to the cost of a plain re-encode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from jobimages.colour import Plane, YuvSpace, as_plane, rgb_to_yuv420
from jobimages.track import Quad, is_convex

_SUBPIXEL_BITS = 4  # fillConvexPoly's fixed-point corners: 1/16 pixel is plenty
_MATTE_GAIN = 255 / 219  # limited-range luma 16-235 stretched to 0-255
_MATTE_OFFSET = -16 * _MATTE_GAIN
# Luma coordinates to chroma coordinates with samples at the centre of each 2x2 block.
_TO_CHROMA = np.array([[0.5, 0, -0.25], [0, 0.5, -0.25], [0, 0, 1]], dtype=np.float64)
_FROM_CHROMA = np.linalg.inv(_TO_CHROMA)


@dataclass(frozen=True)
class _Level:
    """The photo at one pyramid level, as yuv420p planes plus optional alpha."""

    y: Plane
    u: Plane
    v: Plane
    alpha: Plane | None
    corners: npt.NDArray[np.float32]  # pixel edges, OpenCV convention (centres on integers)

    @property
    def width(self) -> int:
        """Return the width in luma pixels."""
        return int(self.y.shape[1])

    @property
    def height(self) -> int:
        """Return the height in luma pixels."""
        return int(self.y.shape[0])


def _build_levels(photo: npt.NDArray[np.uint8], space: YuvSpace) -> list[_Level]:
    """Return the photo at full size and at each halving down to about 64 pixels."""
    levels = []
    rgba = photo
    while True:
        height, width = rgba.shape[:2]
        y, u, v = rgb_to_yuv420(np.ascontiguousarray(rgba[:, :, :3]), space)
        alpha = np.ascontiguousarray(rgba[:, :, 3]) if rgba.shape[2] == 4 else None
        corners = np.array(
            [[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]],
            dtype=np.float32,
        )
        levels.append(_Level(y, u, v, alpha, corners))
        half_w, half_h = width // 4 * 2, height // 4 * 2  # halve, staying even for chroma
        if min(half_w, half_h) < 64:
            return levels
        rgba = as_plane(cv2.resize(rgba, (half_w, half_h), interpolation=cv2.INTER_AREA))


class PhotoPlacer:
    """Hold the photo's planes and blend them into frames, one quad at a time."""

    def __init__(self, photo: npt.NDArray[np.uint8], space: YuvSpace, feather_px: float) -> None:
        self._levels = _build_levels(photo, space)
        self._feather_px = feather_px
        self._margin = 2 + math.ceil(3 * feather_px)  # room for the blur's tail

    def _level_for(self, quad: Quad) -> _Level:
        """Pick the smallest pyramid level still at least as big as the quad.

        Bilinear sampling aliases when it shrinks by more than 2x; a level near the
        on-screen size keeps a shrinking photo from shimmering (which also costs x264 bits).
        """
        edges = np.linalg.norm(np.roll(quad, -1, axis=0) - quad, axis=1)
        on_screen_w, on_screen_h = max(edges[0], edges[2]), max(edges[1], edges[3])
        chosen = self._levels[0]
        for level in self._levels[1:]:
            if level.width < on_screen_w or level.height < on_screen_h:
                break
            chosen = level
        return chosen

    def place(self, planes: tuple[Plane, Plane, Plane], quad: Quad, matte: Plane | None) -> None:
        """Blend the photo into the frame's Y, Cb, Cr planes (in place) inside the quad."""
        y_plane, u_plane, v_plane = planes
        frame_h, frame_w = y_plane.shape
        if not is_convex(quad):
            return  # interpolation can squash a quad to nothing; there is nothing to draw
        box = self._bounding_box(quad, frame_w, frame_h)
        if box is None:
            return
        x0, y0, x1, y1 = box
        box_w, box_h = x1 - x0, y1 - y0
        # Track corners are pixel edges; OpenCV puts pixel centres on integers.
        local = (quad - 0.5 - (x0, y0)).astype(np.float32)
        level = self._level_for(quad)
        to_box = cv2.getPerspectiveTransform(level.corners, local).astype(np.float64)

        alpha = self._coverage(local, box_w, box_h)
        if level.alpha is not None:
            photo_alpha = cv2.warpPerspective(
                level.alpha,
                to_box,
                (box_w, box_h),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
            alpha = as_plane(cv2.multiply(alpha, photo_alpha, scale=1 / 255))
        if matte is not None:
            occluder = cv2.convertScaleAbs(
                matte[y0:y1, x0:x1], alpha=_MATTE_GAIN, beta=_MATTE_OFFSET
            )
            alpha = as_plane(cv2.multiply(alpha, cv2.bitwise_not(occluder), scale=1 / 255))

        fg_y = cv2.warpPerspective(
            level.y,
            to_box,
            (box_w, box_h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        _blend(y_plane[y0:y1, x0:x1], as_plane(fg_y), alpha)

        half = (box_w // 2, box_h // 2)
        alpha_c = as_plane(cv2.resize(alpha, half, interpolation=cv2.INTER_AREA))
        to_box_c = _TO_CHROMA @ to_box @ _FROM_CHROMA
        cy0, cy1, cx0, cx1 = y0 // 2, y1 // 2, x0 // 2, x1 // 2
        for source, plane in ((level.u, u_plane), (level.v, v_plane)):
            fg_c = cv2.warpPerspective(
                source,
                to_box_c,
                half,
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            _blend(plane[cy0:cy1, cx0:cx1], as_plane(fg_c), alpha_c)

    def _bounding_box(
        self, quad: Quad, frame_w: int, frame_h: int
    ) -> tuple[int, int, int, int] | None:
        """Return the even-aligned box around the quad, clipped to the frame, or None."""
        lo = np.floor(quad.min(axis=0)) - self._margin
        hi = np.ceil(quad.max(axis=0)) + self._margin
        # Even corners keep the chroma box exactly half the luma box.
        x0 = max(0, int(lo[0]) // 2 * 2)
        y0 = max(0, int(lo[1]) // 2 * 2)
        x1 = min(frame_w, (int(hi[0]) + 1) // 2 * 2)
        y1 = min(frame_h, (int(hi[1]) + 1) // 2 * 2)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        return x0, y0, x1, y1

    def _coverage(self, local: npt.NDArray[np.float32], width: int, height: int) -> Plane:
        """Return how much of each pixel the quad covers: anti-aliased, then feathered."""
        mask = np.zeros((height, width), dtype=np.uint8)
        points = np.rint(local * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        cv2.fillConvexPoly(mask, points, 255, lineType=cv2.LINE_AA, shift=_SUBPIXEL_BITS)
        if self._feather_px > 0:
            # A box filter costs a fifth of a Gaussian here and, over an edge that is
            # already anti-aliased, looks the same.
            size = 2 * math.ceil(self._feather_px) + 1
            mask = as_plane(cv2.blur(mask, (size, size)))
        return mask


def _blend(region: Plane, foreground: Plane, alpha: Plane) -> None:
    """Write foreground over region (a view into a frame plane) with 8-bit alpha.

    The foreground is scratch (freshly warped) and is overwritten; the sum lands straight
    in the frame, saving a copy of the box per plane.
    """
    kept = cv2.multiply(region, cv2.bitwise_not(alpha), scale=1 / 255)
    cv2.multiply(foreground, alpha, dst=foreground, scale=1 / 255)
    cv2.add(kept, foreground, dst=region)
