"""Read, validate and interpolate a placement track: where the photo goes in each frame."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import numpy as np
import numpy.typing as npt

from jobimages.errors import BadInput

FORMAT = "clipyard.placement-track"
VERSION = 1
Quad = npt.NDArray[np.float64]  # shape (4, 2): top-left, top-right, bottom-right, bottom-left


@dataclass(frozen=True)
class Keyframe:
    """The quad the photo fills at one frame."""

    frame: int
    quad: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Track:
    """A validated placement track."""

    width: int
    height: int
    fps: Fraction
    frame_count: int
    aspect: float
    keyframes: tuple[Keyframe, ...]
    interpolation: str = "linear"
    feather_px: float = 1.0

    def quad_at(self, frame: int) -> Quad:
        """Return the quad for a frame, interpolated between the keyframes around it."""
        keys = self.keyframes
        frames = [k.frame for k in keys]
        if frame <= frames[0]:
            return np.array(keys[0].quad, dtype=np.float64)
        if frame >= frames[-1]:
            return np.array(keys[-1].quad, dtype=np.float64)
        i = int(np.searchsorted(frames, frame, side="right")) - 1
        a, b = keys[i], keys[i + 1]
        if self.interpolation == "hold":
            return np.array(a.quad, dtype=np.float64)
        t = (frame - a.frame) / (b.frame - a.frame)
        pa, pb = np.array(a.quad), np.array(b.quad)
        if self.interpolation == "linear":
            linear: Quad = pa + (pb - pa) * t
            return linear
        return _cubic(keys, i, t)

    def to_json(self) -> dict[str, Any]:
        """Return the track as the JSON document the schema describes."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "video": {
                "width": self.width,
                "height": self.height,
                "fps": f"{self.fps.numerator}/{self.fps.denominator}",
                "frame_count": self.frame_count,
            },
            "placement": {
                "aspect": round(self.aspect, 6),
                "interpolation": self.interpolation,
                "feather_px": self.feather_px,
            },
            "keyframes": [
                {"frame": k.frame, "quad": [[round(x, 3), round(y, 3)] for x, y in k.quad]}
                for k in self.keyframes
            ],
        }


def _cubic(keys: tuple[Keyframe, ...], i: int, t: float) -> Quad:
    """Interpolate with a cubic Hermite spline whose tangents follow the neighbouring keys.

    Tangents are scaled by frame spacing so unevenly spaced keyframes still move smoothly.
    """
    frames = [k.frame for k in keys]
    points = [np.array(k.quad, dtype=np.float64) for k in keys]

    def tangent(j: int) -> Quad:
        lo, hi = max(j - 1, 0), min(j + 1, len(keys) - 1)
        return (points[hi] - points[lo]) / (frames[hi] - frames[lo])

    span = frames[i + 1] - frames[i]
    m0, m1 = tangent(i) * span, tangent(i + 1) * span
    t2, t3 = t * t, t * t * t
    return (
        (2 * t3 - 3 * t2 + 1) * points[i]
        + (t3 - 2 * t2 + t) * m0
        + (-2 * t3 + 3 * t2) * points[i + 1]
        + (t3 - t2) * m1
    )


@cache
def track_schema() -> dict[str, Any]:
    """Return the JSON schema of placement tracks, version 1."""
    text = resources.files("jobimages").joinpath("schemas/track-v1.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _reject_constant(name: str) -> float:
    """Refuse NaN and infinities, which Python's json would otherwise accept."""
    raise ValueError(f"{name} is not a number")


def parse_track(data: bytes) -> Track:
    """Parse and validate a track document, raising BadInput with a reason a person can act on."""
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"the track is not valid JSON: {exc}") from exc
    if isinstance(doc, dict) and doc.get("format") == FORMAT and doc.get("version") != VERSION:
        raise BadInput(
            f"track version {doc.get('version')!r} is not supported "
            f"(this compositor reads {VERSION})"
        )
    validator = jsonschema.Draft202012Validator(track_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        raise BadInput(_describe(error))
    return _build(doc)


def _describe(error: jsonschema.ValidationError) -> str:
    """Turn a schema violation into one line naming the field and the rule."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    where = where.lstrip(".") or "(top level)"
    if error.validator in ("minItems", "maxItems") and error.absolute_path:
        last = error.absolute_path[-1]
        count = len(error.instance) if isinstance(error.instance, list) else "?"
        if last == "quad":
            return f"track is invalid at {where}: a quad needs exactly 4 corners, got {count}"
    message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
    return f"track is invalid at {where}: {message}"


def _build(doc: dict[str, Any]) -> Track:
    """Build a Track from a schema-valid document and check what the schema cannot."""
    video, placement = doc["video"], doc["placement"]
    num, den = (int(part) for part in video["fps"].split("/"))
    keyframes = tuple(
        Keyframe(frame=k["frame"], quad=tuple((float(x), float(y)) for x, y in k["quad"]))
        for k in doc["keyframes"]
    )
    track = Track(
        width=video["width"],
        height=video["height"],
        fps=Fraction(num, den),
        frame_count=video["frame_count"],
        aspect=float(placement["aspect"]),
        keyframes=keyframes,
        interpolation=placement.get("interpolation", "linear"),
        feather_px=float(placement.get("feather_px", 1.0)),
    )
    previous = -1
    for index, key in enumerate(keyframes):
        if key.frame <= previous:
            raise BadInput(
                f"track is invalid at keyframes[{index}].frame: frames must strictly increase"
            )
        if key.frame >= track.frame_count:
            raise BadInput(
                f"track is invalid at keyframes[{index}].frame: {key.frame} is past the last "
                f"frame ({track.frame_count - 1})"
            )
        if not is_convex(np.array(key.quad)):
            raise BadInput(
                f"track is invalid at keyframes[{index}].quad: corners must form a convex, "
                "non-degenerate quad in the order top-left, top-right, bottom-right, bottom-left"
            )
        previous = key.frame
    return track


def is_convex(quad: Quad, min_area: float = 1.0) -> bool:
    """Tell whether four corners form a convex quad of at least min_area square pixels."""
    edges = np.roll(quad, -1, axis=0) - quad
    nxt = np.roll(edges, -1, axis=0)
    cross = edges[:, 0] * nxt[:, 1] - edges[:, 1] * nxt[:, 0]
    x, y = quad[:, 0], quad[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    return bool((np.all(cross > 0) or np.all(cross < 0)) and area >= min_area)


@dataclass(frozen=True)
class PlacementExtent:
    """How big the placement ever gets, and the frame where it is biggest."""

    width: int
    height: int
    largest_frame: int


def measure_placement(track: Track, max_samples: int = 20_000) -> PlacementExtent:
    """Find the largest width and height the quad takes, and the frame where it is biggest.

    Long tracks are sampled; the keyframes are always included since linear motion peaks there.
    """
    step = max(1, track.frame_count // max_samples)
    frames = sorted({*range(0, track.frame_count, step), *(k.frame for k in track.keyframes)})
    best_w = best_h = best_area = 0.0
    largest = 0
    for frame in frames:
        quad = track.quad_at(frame)
        edges = np.linalg.norm(np.roll(quad, -1, axis=0) - quad, axis=1)
        best_w = max(best_w, edges[0], edges[2])
        best_h = max(best_h, edges[1], edges[3])
        x, y = quad[:, 0], quad[:, 1]
        area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
        if area > best_area:
            best_area, largest = area, frame
    return PlacementExtent(
        width=max(2, math.ceil(best_w)), height=max(2, math.ceil(best_h)), largest_frame=largest
    )
