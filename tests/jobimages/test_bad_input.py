"""Inputs that can never work give exit 2 and a one-line reason."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from jobimages.template import TemplateInfo
from tests.jobimages.conftest import run_cli, template_args


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """Return one PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png() -> bytes:
    """Return a small PNG that claims to be 30000x30000 pixels of zeros."""
    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (30_001 * 64), 9)  # the first rows; a decoder would want more
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def good_jpeg() -> bytes:
    """Return a small valid JPEG."""
    buffer = io.BytesIO()
    Image.new("RGB", (800, 600), (10, 200, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"this is not a photo, just a text file\n", "not an image"),
        (good_jpeg()[:1500], "truncated"),
        (bomb_png(), "too large"),
    ],
    ids=["zero-byte", "text-named-jpg", "truncated-jpeg", "decompression-bomb"],
)
def test_unreadable_photo_is_bad_input(
    content: bytes, reason: str, frame_template: TemplateInfo, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(content)
    result = run_cli(
        "run",
        *template_args(frame_template),
        "--image",
        str(photo),
        "--output",
        str(tmp_path / "out.mp4"),
    )
    assert result.code == 2, result.stderr
    error = result.events[-1]
    assert error["event"] == "error"
    assert error["code"] == 2
    assert reason in error["message"]
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.mp4").exists()


def test_track_with_three_corners_is_bad_input(
    frame_template: TemplateInfo, tmp_path: Path
) -> None:
    doc = json.loads(frame_template.track.read_text())
    doc["keyframes"][3]["quad"] = doc["keyframes"][3]["quad"][:3]
    track = tmp_path / "track.json"
    track.write_text(json.dumps(doc))
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(good_jpeg())
    result = run_cli(
        "run",
        "--template-video",
        str(frame_template.video),
        "--track",
        str(track),
        "--image",
        str(photo),
        "--output",
        str(tmp_path / "out.mp4"),
    )
    assert result.code == 2
    message = result.events[-1]["message"]
    assert "keyframes[3].quad" in message
    assert "4 corners, got 3" in message


def test_crop_outside_the_photo_is_bad_input(frame_template: TemplateInfo, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(good_jpeg())
    result = run_cli(
        "run",
        *template_args(frame_template),
        "--image",
        str(photo),
        "--crop",
        "700,100,200,200",
        "--output",
        str(tmp_path / "out.mp4"),
    )
    assert result.code == 2
    assert "lies outside the 800x600 photo" in result.events[-1]["message"]


def test_track_for_another_video_is_bad_input(
    templates: dict[str, TemplateInfo], tmp_path: Path
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(good_jpeg())
    result = run_cli(
        "run",
        "--template-video",
        str(templates["frame"].video),
        "--track",
        str(templates["screen"].track),
        "--image",
        str(photo),
        "--output",
        str(tmp_path / "out.mp4"),
    )
    assert result.code == 2
    assert "1280x720 but the track was made for 1920x1080" in result.events[-1]["message"]


def test_missing_argument_is_bad_input(tmp_path: Path) -> None:
    result = run_cli("run", "--output", str(tmp_path / "out.mp4"))
    assert result.code == 2
    assert "required" in result.events[-1]["message"]


def test_missing_input_file_is_bad_input(frame_template: TemplateInfo, tmp_path: Path) -> None:
    result = run_cli(
        "run",
        *template_args(frame_template),
        "--image",
        str(tmp_path / "nope.jpg"),
        "--output",
        str(tmp_path / "out.mp4"),
    )
    assert result.code == 2
    assert "does not exist" in result.events[-1]["message"]
