"""Convert RGB pixels to the Y'CbCr planes of a yuv420p video, as a decoder would expect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

Plane = npt.NDArray[np.uint8]


def as_plane(array: object) -> Plane:
    """Narrow OpenCV's loosely typed result to the 8-bit plane it is."""
    return cast(Plane, array)


# libavutil's AVColorSpace values for the two matrices we meet in practice.
AVCOL_SPC_BT709 = 1
AVCOL_SPC_BT470BG = 5
AVCOL_SPC_SMPTE170M = 6
AVCOL_RANGE_JPEG = 2


@dataclass(frozen=True)
class YuvSpace:
    """A Y'CbCr matrix (by its luma weights) and whether samples use the full 0-255 range."""

    kr: float
    kb: float
    is_full_range: bool = False

    def matrix(self) -> npt.NDArray[np.float32]:
        """Return the 3x4 affine matrix taking 8-bit R'G'B' to 8-bit Y'CbCr."""
        kr, kb = self.kr, self.kb
        kg = 1.0 - kr - kb
        y = np.array([kr, kg, kb])
        cb = (np.array([0.0, 0.0, 1.0]) - y) / (2 * (1 - kb))
        cr = (np.array([1.0, 0.0, 0.0]) - y) / (2 * (1 - kr))
        y_scale, c_scale, y_off = (
            (1.0, 1.0, 0.0) if self.is_full_range else (219 / 255, 224 / 255, 16)
        )
        rows = [
            [*(y * y_scale), y_off],
            [*(cb * c_scale), 128.0],
            [*(cr * c_scale), 128.0],
        ]
        return np.array(rows, dtype=np.float32)


BT709 = YuvSpace(kr=0.2126, kb=0.0722)
BT601 = YuvSpace(kr=0.299, kb=0.114)


def space_for(colorspace: int, color_range: int, height: int) -> YuvSpace:
    """Pick the matrix a player will use for a stream's tags.

    Untagged streams follow the players' rule of thumb: HD is BT.709, SD is BT.601.
    """
    if colorspace in (AVCOL_SPC_BT470BG, AVCOL_SPC_SMPTE170M):
        base = BT601
    elif colorspace == AVCOL_SPC_BT709:
        base = BT709
    else:
        base = BT709 if height >= 720 else BT601
    return YuvSpace(base.kr, base.kb, is_full_range=color_range == AVCOL_RANGE_JPEG)


def rgb_to_yuv444(rgb: npt.NDArray[np.uint8], space: YuvSpace) -> npt.NDArray[np.uint8]:
    """Convert an RGB image to full-resolution Y'CbCr (3 channels, 8 bits)."""
    out = cv2.transform(rgb.astype(np.float32), space.matrix())
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def rgb_to_yuv420(rgb: npt.NDArray[np.uint8], space: YuvSpace) -> tuple[Plane, Plane, Plane]:
    """Convert an RGB image of even size to Y at full and Cb, Cr at half resolution.

    Chroma is the 2x2 box average, which puts each chroma sample at the centre of its
    four luma samples.
    """
    height, width = rgb.shape[:2]
    if height % 2 or width % 2:
        raise ValueError("yuv420 needs an even width and height")
    ycc = rgb_to_yuv444(rgb, space)
    y = np.ascontiguousarray(ycc[:, :, 0])
    half = cv2.resize(ycc[:, :, 1:], (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    return y, np.ascontiguousarray(half[:, :, 0]), np.ascontiguousarray(half[:, :, 1])
