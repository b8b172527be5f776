"""Describe a template for galleries and the job manager: its metadata file and loader."""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from jobimages.errors import BadInput

FORMAT = "clipyard.template"
VERSION = 1


@dataclass(frozen=True)
class TemplateInfo:
    """A template's metadata; file paths are resolved against the metadata's folder."""

    name: str
    title: str
    width: int
    height: int
    fps: Fraction
    frame_count: int
    duration_s: float
    aspect: float
    has_audio: bool
    video: Path
    track: Path
    poster: Path
    matte: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the metadata document, with file names relative to its folder."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "title": self.title,
            "width": self.width,
            "height": self.height,
            "fps": f"{self.fps.numerator}/{self.fps.denominator}",
            "frame_count": self.frame_count,
            "duration_s": round(self.duration_s, 3),
            "aspect": round(self.aspect, 6),
            "has_audio": self.has_audio,
            "files": {
                "video": self.video.name,
                "track": self.track.name,
                "matte": self.matte.name if self.matte else None,
                "poster": self.poster.name,
            },
        }


@cache
def template_schema() -> dict[str, Any]:
    """Return the JSON schema of template metadata, version 1."""
    text = resources.files("jobimages").joinpath("schemas/template-v1.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def read_template(path: Path) -> TemplateInfo:
    """Load and validate a template's metadata file."""
    try:
        doc = json.loads(path.read_text("utf-8"))
        jsonschema.validate(doc, template_schema())
    except (OSError, ValueError, jsonschema.ValidationError) as exc:
        raise BadInput(f"template metadata {path.name} is invalid: {exc}") from exc
    num, den = (int(p) for p in doc["fps"].split("/"))
    files = doc["files"]
    folder = path.parent
    return TemplateInfo(
        name=doc["name"],
        title=doc["title"],
        width=doc["width"],
        height=doc["height"],
        fps=Fraction(num, den),
        frame_count=doc["frame_count"],
        duration_s=float(doc["duration_s"]),
        aspect=float(doc["aspect"]),
        has_audio=doc["has_audio"],
        video=folder / files["video"],
        track=folder / files["track"],
        poster=folder / files["poster"],
        matte=folder / files["matte"] if files.get("matte") else None,
    )


def read_templates(folder: Path) -> list[TemplateInfo]:
    """Load every template listed in a folder's index.json, in the index's order."""
    index = json.loads((folder / "index.json").read_text("utf-8"))
    return [read_template(folder / f"{name}.json") for name in index["templates"]]
