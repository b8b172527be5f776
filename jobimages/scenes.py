"""Draw the built-in template scenes: pure numpy/OpenCV geometry, identical on every run.

Each scene first decides its placement track, then draws every frame from the track's
interpolated quad, so the drawn frame, mat or bezel always hugs the quad the compositor
will fill.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np
import numpy.typing as npt

from jobimages.colour import as_plane
from jobimages.errors import BadInput
from jobimages.track import Keyframe, Quad, Track

Image = npt.NDArray[np.uint8]
_SHIFT = 4  # sub-pixel bits for polygon corners
_PLACEHOLDER = (150, 150, 150)  # what the photo area shows in the template itself
TEXTURE = 10.0  # levels of fixed texture on the scenery, as real footage has


@dataclass(frozen=True)
class Scene:
    """A template to build: its geometry and a function drawing frame i (and its matte)."""

    name: str
    title: str
    track: Track
    seconds: float
    has_audio: bool
    draw: Callable[[int, Quad], tuple[Image, Image | None]]


def fill_quad(image: Image, quad: npt.NDArray[np.float64], colour: tuple[int, ...]) -> None:
    """Fill a convex polygon with anti-aliased, sub-pixel-accurate edges.

    Track corners are pixel edges; OpenCV puts pixel centres on integers, hence the -0.5.
    """
    points = np.rint((quad - 0.5) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillConvexPoly(image, points, colour, lineType=cv2.LINE_AA, shift=_SHIFT)


def map_unit(quad: Quad, points: list[tuple[float, float]]) -> npt.NDArray[np.float64]:
    """Map points given in the quad's own unit square (0..1 across, 0..1 down) into the frame."""
    unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float32)
    homography = cv2.getPerspectiveTransform(unit, quad.astype(np.float32))
    src = np.array(points, dtype=np.float64).reshape(-1, 1, 2)
    mapped = cv2.perspectiveTransform(src, homography).reshape(-1, 2)
    return np.asarray(mapped, dtype=np.float64)


def _gradient(
    height: int, width: int, top: tuple[int, int, int], bottom: tuple[int, int, int]
) -> Image:
    """Return a vertical colour gradient."""
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    colours = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    return np.ascontiguousarray(np.broadcast_to(colours, (height, width, 3)).astype(np.uint8))


def _texture(image: Image, seed: int, strength: float) -> Image:
    """Return ``image`` with fixed, film-like texture: fine grain over softer blotches.

    Camera footage is never flat; without texture a template would be far cheaper to
    encode than anything a real one (or a photo placed in it) is.
    """
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    detail = np.zeros((height, width), np.float32)
    for sigma, weight in ((0.8, 0.5), (3.0, 0.8), (14.0, 1.6)):
        layer = cv2.GaussianBlur(rng.standard_normal((height, width), np.float32), (0, 0), sigma)
        detail += weight * layer / float(layer.std() or 1.0)
    textured = image.astype(np.float32) + (strength / 2.0) * detail[:, :, None]
    return as_plane(np.clip(textured, 0, 255).astype(np.uint8))


def _track(
    name: str,
    size: tuple[int, int],
    fps: int,
    frames: int,
    aspect: float,
    quads: dict[int, Quad],
    interpolation: str,
) -> Track:
    """Build a scene's track from keyframe quads."""
    del name
    keys = tuple(
        Keyframe(frame, tuple((round(float(x), 3), round(float(y), 3)) for x, y in quad))
        for frame, quad in sorted(quads.items())
    )
    return Track(
        width=size[0],
        height=size[1],
        fps=Fraction(fps),
        frame_count=frames,
        aspect=aspect,
        keyframes=keys,
        interpolation=interpolation,
        feather_px=1.0,
    )


def picture_frame() -> Scene:
    """A framed picture turning in perspective against a wall (720p, 25 fps, 8 s, audio)."""
    width, height, fps, seconds = 1280, 720, 25, 8.0
    frames = int(fps * seconds)
    focal, depth = 1.35 * width, 6.0
    half_w, half_h = 0.8, 0.6  # a 4:3 photo

    def pose(i: int) -> Quad:
        t = i / fps
        yaw = 0.55 * math.sin(2 * math.pi * t / 8)
        pitch = 0.14 * math.sin(2 * math.pi * t / 5 + 0.7)
        roll = 0.06 * math.sin(2 * math.pi * t / 6)
        shift = np.array(
            [0.45 * math.sin(2 * math.pi * t / 9), 0.12 * math.cos(2 * math.pi * t / 7)]
        )
        corners = np.array(
            [[-half_w, -half_h, 0], [half_w, -half_h, 0], [half_w, half_h, 0], [-half_w, half_h, 0]]
        )
        rot, _ = cv2.Rodrigues(np.array([pitch, yaw, roll]))
        world = corners @ rot.T + [shift[0], shift[1], depth]
        return np.stack(
            [
                width / 2 + focal * world[:, 0] / world[:, 2],
                height / 2 + focal * world[:, 1] / world[:, 2],
            ],
            axis=1,
        )

    keys = {i: pose(i) for i in [*range(0, frames, 5), frames - 1]}
    track = _track("frame", (width, height), fps, frames, 4 / 3, keys, "cubic")

    wall = _gradient(height, width, (196, 178, 150), (128, 112, 92))
    rng = np.random.default_rng(7)  # fixed seed: the template must be the same on every build
    for _ in range(14):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(wall, centre, int(rng.integers(20, 90)), (210, 192, 160), -1, cv2.LINE_AA)
    wall = _texture(as_plane(cv2.GaussianBlur(wall, (0, 0), 18)), seed=3, strength=TEXTURE)
    bx, by = 0.22 / (2 * half_w), 0.22 / (2 * half_h)
    mx, my = 0.09 / (2 * half_w), 0.09 / (2 * half_h)

    def draw(i: int, quad: Quad) -> tuple[Image, Image | None]:
        image = wall.copy()
        outer = map_unit(quad, [(-bx, -by), (1 + bx, -by), (1 + bx, 1 + by), (-bx, 1 + by)])
        shadow = np.zeros((height, width), np.uint8)
        fill_quad(shadow, outer + np.array([14.0, 18.0]), (110,))
        shadow = as_plane(cv2.GaussianBlur(shadow, (0, 0), 9))
        image = as_plane(
            cv2.multiply(
                image, cv2.cvtColor(cv2.bitwise_not(shadow), cv2.COLOR_GRAY2RGB), scale=1 / 255
            )
        )
        fill_quad(image, outer, (92, 54, 28))
        lip = map_unit(
            quad,
            [
                (-bx * 0.45, -by * 0.45),
                (1 + bx * 0.45, -by * 0.45),
                (1 + bx * 0.45, 1 + by * 0.45),
                (-bx * 0.45, 1 + by * 0.45),
            ],
        )
        fill_quad(image, lip, (140, 92, 52))
        mat = map_unit(quad, [(-mx, -my), (1 + mx, -my), (1 + mx, 1 + my), (-mx, 1 + my)])
        fill_quad(image, mat, (236, 230, 214))
        fill_quad(image, quad, _PLACEHOLDER)
        return image, None

    return Scene("frame", "Picture frame on a wall", track, seconds, True, draw)


def billboard() -> Scene:
    """A roadside billboard, with a bus passing in front of it (1080p, 24 fps, 6 s, matte)."""
    width, height, fps, seconds = 1920, 1080, 24, 6.0
    frames = int(fps * seconds)
    board = np.array([[610.0, 170.0], [1450.0, 236.0], [1442.0, 640.0], [618.0, 612.0]])
    pan = np.array([-64.0, 10.0])  # a slow camera pan over the whole clip
    keys = {0: board, frames - 1: board + pan}
    track = _track("billboard", (width, height), fps, frames, 2.0, keys, "linear")

    margin = 160  # room for the pan, so the backdrop never shows its edge
    backdrop = _gradient(height + margin, width + margin, (96, 150, 214), (200, 222, 240))
    ground = (height + margin) * 2 // 3
    backdrop[ground:] = _gradient(
        height + margin - ground, width + margin, (96, 104, 96), (64, 70, 66)
    )
    cv2.rectangle(backdrop, (0, ground + 150), (width + margin, ground + 330), (52, 52, 56), -1)
    backdrop = _texture(backdrop, seed=5, strength=TEXTURE)
    bus_w, bus_h, bus_top = 820, 380, 560
    x_start, x_end = -bus_w - 40, width + 40
    enter, leave = int(0.8 * fps), int(5.2 * fps)

    def draw(i: int, quad: Quad) -> tuple[Image, Image | None]:
        offset = pan * i / (frames - 1)
        shift = np.array(
            [[1, 0, offset[0] - margin / 2], [0, 1, offset[1] - margin / 2]], dtype=np.float32
        )
        image = as_plane(cv2.warpAffine(backdrop, shift, (width, height), flags=cv2.INTER_LINEAR))
        for left in (0.18, 0.78):  # posts under the board
            top = map_unit(quad, [(left, 1.0), (left + 0.04, 1.0)])
            post = np.array([top[0], top[1], top[1] + (0, 330), top[0] + (0, 330)])
            fill_quad(image, post, (70, 70, 76))
        frame_quad = map_unit(quad, [(-0.02, -0.04), (1.02, -0.04), (1.02, 1.04), (-0.02, 1.04)])
        fill_quad(image, frame_quad, (40, 40, 44))
        fill_quad(image, quad, _PLACEHOLDER)
        matte = np.zeros((height, width), np.uint8)
        if enter <= i <= leave:
            x = x_start + (x_end - x_start) * (i - enter) / (leave - enter)
            body = np.array(
                [
                    [x, bus_top],
                    [x + bus_w, bus_top],
                    [x + bus_w, bus_top + bus_h],
                    [x, bus_top + bus_h],
                ]
            )
            fill_quad(matte, body, (255,))
            for wheel_x in (x + 150, x + bus_w - 150):
                cv2.circle(
                    matte,
                    (int(wheel_x * 16), int((bus_top + bus_h) * 16)),
                    70 * 16,
                    255,
                    -1,
                    cv2.LINE_AA,
                    4,
                )
            alpha = as_plane(cv2.cvtColor(matte, cv2.COLOR_GRAY2RGB))
            bus = np.empty_like(image)
            bus[:] = (214, 58, 36)
            windows = np.array(
                [
                    [x + 40, bus_top + 40],
                    [x + bus_w - 40, bus_top + 40],
                    [x + bus_w - 40, bus_top + 170],
                    [x + 40, bus_top + 170],
                ]
            )
            fill_quad(bus, windows, (40, 54, 70))
            image = as_plane(
                cv2.add(
                    cv2.multiply(bus, alpha, scale=1 / 255),
                    cv2.multiply(image, cv2.bitwise_not(alpha), scale=1 / 255),
                )
            )
        return image, matte

    return Scene("billboard", "Billboard by the road", track, seconds, False, draw)


def zooming_screen() -> Scene:
    """A monitor on a desk that the camera slowly zooms into (1080p, 30 fps, 10 s, audio)."""
    width, height, fps, seconds = 1920, 1080, 30, 10.0
    frames = int(fps * seconds)
    room_w, room_h = 2400, 1350
    screen = np.array([[880.0, 420.0], [1540.0, 452.0], [1532.0, 818.0], [884.0, 800.0]])
    centre = screen.mean(axis=0)

    def camera(i: int) -> npt.NDArray[np.float64]:
        t = i / (frames - 1)
        ease = t * t * (3 - 2 * t)
        scale = 0.82 + 0.9 * ease
        angle = 2.5 * math.sin(2 * math.pi * t)
        look = np.array([room_w / 2, room_h / 2]) * (1 - ease) + centre * ease
        matrix = cv2.getRotationMatrix2D((float(look[0]), float(look[1])), angle, scale)
        matrix[:, 2] += np.array([width / 2, height / 2]) - look
        return np.asarray(matrix, dtype=np.float64)

    def quad_for(i: int) -> Quad:
        matrix = camera(i)
        quad: Quad = screen @ matrix[:, :2].T + matrix[:, 2]
        return quad

    keys = {i: quad_for(i) for i in [*range(0, frames, 10), frames - 1]}
    track = _track("screen", (width, height), fps, frames, 16 / 9, keys, "cubic")

    room = _gradient(room_h, room_w, (46, 52, 70), (20, 22, 30))
    desk_top = 930
    room[desk_top:] = _gradient(room_h - desk_top, room_w, (120, 84, 56), (76, 52, 34))
    cv2.rectangle(room, (1150, 820), (1270, 940), (30, 30, 34), -1)  # stand
    cv2.rectangle(room, (1020, 925), (1400, 950), (36, 36, 40), -1)  # foot
    bezel = np.array([[850.0, 392.0], [1570.0, 426.0], [1562.0, 846.0], [854.0, 828.0]])
    fill_quad(room, bezel, (24, 24, 28))
    cv2.circle(room, (420, 640), 160, (60, 110, 70), -1, cv2.LINE_AA)  # a plant, blurred below
    room = _texture(as_plane(cv2.GaussianBlur(room, (0, 0), 2.0)), seed=11, strength=TEXTURE)

    def draw(i: int, quad: Quad) -> tuple[Image, Image | None]:
        image = as_plane(cv2.warpAffine(room, camera(i), (width, height), flags=cv2.INTER_LINEAR))
        fill_quad(image, quad, (58, 66, 86))
        return image, None

    return Scene("screen", "Monitor, camera zooming in", track, seconds, True, draw)


def postcard() -> Scene:
    """A card sliding across a table (240p, 15 fps, 2 s): small, for smoke tests and soaks."""
    width, height, fps, seconds = 320, 240, 15, 2.0
    frames = int(fps * seconds)
    card = np.array([[0.0, 0.0], [120.0, 6.0], [116.0, 96.0], [-4.0, 90.0]])

    def quad_for(i: int) -> Quad:
        quad: Quad = card + np.array([60.0 + 60.0 * i / (frames - 1), 60.0])
        return quad

    track = _track(
        "postcard",
        (width, height),
        fps,
        frames,
        4 / 3,
        {0: quad_for(0), frames - 1: quad_for(frames - 1)},
        "linear",
    )
    table = as_plane(_gradient(height, width, (150, 110, 80), (96, 66, 44)))

    def draw(i: int, quad: Quad) -> tuple[Image, Image | None]:
        image = table.copy()
        fill_quad(image, quad + np.array([5.0, 6.0]), (70, 50, 36))  # its shadow
        fill_quad(image, quad, _PLACEHOLDER)
        return image, None

    return Scene("postcard", "Postcard on a table (small)", track, seconds, False, draw)


def all_scenes() -> list[Scene]:
    """Return the product's scenes in a stable order (what a plain build makes)."""
    return [picture_frame(), billboard(), zooming_screen()]


def scenes_named(names: list[str]) -> list[Scene]:
    """Return the named scenes, including the small ``postcard`` only built on request.

    Raises ``BadInput`` naming any unknown one.
    """
    known = {scene.name: scene for scene in [*all_scenes(), postcard()]}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise BadInput(f"no template named {', '.join(unknown)} (known: {', '.join(known)})")
    return [known[name] for name in names]
