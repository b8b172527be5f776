"""Small, fast checks of the pieces: track maths, photo modes, events, redaction."""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobimages.errors import BadInput
from jobimages.events import EventWriter
from jobimages.photo import Crop, load_photo
from jobimages.track import Keyframe, Track, parse_track
from jobimages.urls import Redactor, redact_url

SQUARE = ((0.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0))
MOVED = ((50.0, 20.0), (150.0, 20.0), (150.0, 120.0), (50.0, 120.0))


def make_track(interpolation: str) -> Track:
    """Return a 3-keyframe track over 21 frames."""
    return Track(
        width=320,
        height=240,
        fps=Fraction(25),
        frame_count=21,
        aspect=1.0,
        keyframes=(Keyframe(0, SQUARE), Keyframe(10, MOVED), Keyframe(20, SQUARE)),
        interpolation=interpolation,
    )


def test_linear_interpolation_and_holding_past_the_ends() -> None:
    track = make_track("linear")
    assert np.allclose(track.quad_at(5)[0], (25.0, 10.0))
    assert np.allclose(track.quad_at(10), MOVED)
    assert np.allclose(track.quad_at(25), SQUARE)


def test_cubic_passes_through_keys_and_hold_jumps() -> None:
    cubic = make_track("cubic")
    assert np.allclose(cubic.quad_at(10), MOVED)
    assert 0 < cubic.quad_at(5)[0][0] < 50
    assert np.allclose(make_track("hold").quad_at(9), SQUARE)


def test_track_round_trips_through_json() -> None:
    track = make_track("cubic")
    again = parse_track(json.dumps(track.to_json()).encode())
    assert again == track


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(version=2), "version 2 is not supported"),
        (lambda d: d["keyframes"].reverse(), "strictly increase"),
        (lambda d: d["keyframes"][0].update(frame=99), "past the last frame"),
        (lambda d: d["keyframes"][1]["quad"].reverse(), None),
        (lambda d: d["keyframes"][1].update(quad=[[0, 0], [10, 10], [0, 10], [10, 0]]), "convex"),
        (lambda d: d["placement"].update(aspect=-1), "placement.aspect"),
    ],
)
def test_invalid_tracks_are_refused(mutate: object, reason: str | None) -> None:
    doc = make_track("linear").to_json()
    mutate(doc)  # type: ignore[operator]
    if reason is None:  # reversed corner order is still a convex quad: accepted
        parse_track(json.dumps(doc).encode())
        return
    with pytest.raises(BadInput, match=reason):
        parse_track(json.dumps(doc).encode())


def test_nan_in_a_track_is_refused() -> None:
    text = json.dumps(make_track("linear").to_json()).replace("100.0", "NaN", 1)
    with pytest.raises(BadInput, match="not valid JSON"):
        parse_track(text.encode())


def _save(image: Image.Image, tmp_path: Path, fmt: str, **kwargs: object) -> Path:
    path = tmp_path / f"photo.{fmt.lower()}"
    image.save(path, format=fmt, **kwargs)
    return path


def _load(path: Path, crop: Crop | None = None) -> np.ndarray:  # type: ignore[type-arg]
    return load_photo(path, aspect=1.5, needed_size=(300, 200), crop=crop, max_pixels=10**8)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored landscape, left half red; orientation 6 says "turn 90 degrees clockwise to view".
    image = Image.new("RGB", (400, 300), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 200, 300))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(image, tmp_path, "JPEG", exif=exif.tobytes(), quality=95)
    viewed = load_photo(path, aspect=0.75, needed_size=(300, 400), crop=None, max_pixels=10**8)
    assert viewed.shape[:2] == (400, 300)  # portrait once turned
    assert viewed[20, 150, 0] > 200  # the red half is now on top
    assert viewed[380, 150, 2] > 200


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGBA", (300, 200), (40, 170, 220, 255)),
        Image.new("RGB", (300, 200), (40, 170, 220)).convert("CMYK"),
        Image.new("RGB", (300, 200), (40, 170, 220)).quantize(colors=4),
    ],
    ids=["rgba", "cmyk", "palette"],
)
def test_colour_modes_come_out_as_8_bit_rgb(image: Image.Image, tmp_path: Path) -> None:
    fmt = "TIFF" if image.mode == "CMYK" else "PNG"
    pixels = _load(_save(image, tmp_path, fmt))
    assert pixels.shape == (200, 300, 3)
    assert np.abs(pixels.astype(int) - (40, 170, 220)).max() <= 12


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    grey = Image.fromarray(np.full((200, 300), 32768, dtype=np.uint16))
    pixels = _load(_save(grey, tmp_path, "PNG"))
    assert abs(int(pixels[100, 150, 0]) - 128) <= 1


def test_transparency_is_kept(tmp_path: Path) -> None:
    image = Image.new("RGBA", (300, 200), (40, 170, 220, 255))
    image.paste((0, 0, 0, 0), (0, 0, 150, 200))
    pixels = _load(_save(image, tmp_path, "PNG"))
    assert pixels.shape[2] == 4
    assert pixels[100, 10, 3] == 0
    assert pixels[100, 290, 3] == 255


def test_crop_is_centre_cropped_to_the_aspect(tmp_path: Path) -> None:
    image = Image.new("RGB", (600, 400), (255, 0, 0))
    image.paste((0, 255, 0), (300, 0, 600, 400))
    pixels = _load(_save(image, tmp_path, "PNG"), crop=Crop(300, 0, 300, 400))
    assert pixels.shape[1] / pixels.shape[0] == pytest.approx(1.5, rel=0.02)
    assert pixels[:, :, 1].min() > 240  # only the green half


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 3000), (90, 90, 90)).save(buffer, format="JPEG")
    path = tmp_path / "big.jpg"
    path.write_bytes(buffer.getvalue())
    assert _load(path).shape == (200, 300, 3)


def test_progress_is_throttled_but_the_last_always_goes() -> None:
    now = [0.0]
    out = io.StringIO()
    writer = EventWriter(out, Redactor(), clock=lambda: now[0], min_interval_s=0.25)
    writer.start(100)
    for done in range(1, 101):
        now[0] += 0.01
        writer.progress(done, 100)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    progress = [e["done"] for e in events if e["event"] == "progress"]
    assert progress[0] == 1
    assert progress[-1] == 100
    assert len(progress) <= 1 + 100 * 0.01 / 0.25 + 1


def test_secrets_are_scrubbed() -> None:
    url = "https://acct.blob.core.windows.net/c/b.mp4?sv=2023&sp=r&sig=abc%2Fdef"
    redactor = Redactor([url])
    assert redact_url(url) == "https://acct.blob.core.windows.net/c/b.mp4?<redacted>"
    assert "abc" not in redactor.scrub(f"failed: {url} and sig=other")
    assert "other" not in redactor.scrub("sig=other")
