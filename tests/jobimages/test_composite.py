"""Composite a solid-colour photo into every template and check the decoded pixels."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from jobimages.template import TemplateInfo, read_templates
from jobimages.track import parse_track
from tests.jobimages.conftest import run_cli, template_args

PHOTO_RGB = (40, 170, 220)  # far from every colour the templates use
MARGIN_PX = 4  # keep clear of the feathered, anti-aliased edge


def rgb_frames(path: Path) -> list[npt.NDArray[np.uint8]]:
    """Decode a video to RGB with FFmpeg's own conversion (honouring the stream's tags)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def luma_frames(path: Path) -> list[npt.NDArray[np.uint8]]:
    """Decode a video's luma planes (for the matte)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray") for f in container.decode(video=0)]


def quad_mask(shape: tuple[int, int], quad: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """Rasterise the quad (pixel-centre convention) into a 0/255 mask."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, np.rint((quad - 0.5) * 16).astype(np.int32), 255, cv2.LINE_8, 4)
    return mask


@pytest.fixture(scope="module")
def solid_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write a photo of one colour."""
    path = tmp_path_factory.mktemp("photo") / "solid.png"
    Image.new("RGB", (640, 480), PHOTO_RGB).save(path)
    return path


@pytest.mark.parametrize("name", ["frame", "billboard", "screen"])
def test_photo_fills_quad_and_template_stays_outside(
    name: str, templates: dict[str, TemplateInfo], solid_photo: Path, tmp_path: Path
) -> None:
    info = templates[name]
    output, poster = tmp_path / "out.mp4", tmp_path / "poster.jpg"
    result = run_cli(
        "run",
        *template_args(info),
        "--image",
        str(solid_photo),
        "--output",
        str(output),
        "--poster",
        str(poster),
        "--preset",
        "ultrafast",
        "--crf",
        "12",
    )
    assert result.code == 0, result.stderr
    events = result.events
    assert events[0] == {"event": "start", "total": info.frame_count}
    assert events[-1]["event"] == "done"
    assert events[-1]["frames"] == info.frame_count
    assert events[-1]["output_bytes"] == output.stat().st_size
    assert all(e["event"] == "progress" for e in events[1:-1])
    assert events[-2] == {"event": "progress", "done": info.frame_count, "total": info.frame_count}
    with Image.open(poster) as image:
        assert image.format == "JPEG"
        assert image.size == (info.width, info.height)

    with av.open(str(output)) as container, av.open(str(info.video)) as original:
        video = container.streams.video[0]
        assert (video.codec_context.name, video.format.name) == ("h264", "yuv420p")
        assert (video.width, video.height) == (info.width, info.height)
        assert Fraction(video.average_rate) == info.fps
        assert len(container.streams.audio) == len(original.streams.audio) == int(info.has_audio)
        if info.has_audio:
            assert container.streams.audio[0].codec_context.name == "aac"

    track = parse_track(info.track.read_bytes())
    composited, template = rgb_frames(output), rgb_frames(info.video)
    mattes = luma_frames(info.matte) if info.matte else None
    assert len(composited) == len(template) == info.frame_count
    kernel = np.ones((2 * MARGIN_PX + 1, 2 * MARGIN_PX + 1), np.uint8)
    occluded_pixels = 0
    for index, (out, tpl) in enumerate(zip(composited, template, strict=True)):
        quad = quad_mask(out.shape[:2], track.quad_at(index))
        inside = cv2.erode(quad, kernel) > 0
        outside = cv2.dilate(quad, kernel) == 0
        diff = np.abs(out.astype(np.int16) - tpl.astype(np.int16))
        assert diff[outside].mean() < 1.5, f"frame {index}: template changed outside the quad"
        assert np.percentile(diff[outside], 99.9) <= 24, f"frame {index}: outside"
        if mattes is not None:
            # Limited-range white is 235; solidly occluded pixels keep the template.
            occluder = cv2.erode((mattes[index] >= 230).astype(np.uint8), kernel) > 0
            covered = inside & occluder
            occluded_pixels += int(covered.sum())
            if covered.any():
                assert diff[covered].mean() < 3, f"frame {index}: photo drawn over the occluder"
            inside &= cv2.dilate((mattes[index] > 20).astype(np.uint8), kernel) == 0
        photo_diff = np.abs(out[inside].astype(np.int16) - np.array(PHOTO_RGB, np.int16))
        assert photo_diff.mean() < 3, f"frame {index}: photo colour wrong inside the quad"
        assert np.percentile(photo_diff, 99.9) <= 12, f"frame {index}: inside"
    if mattes is not None:
        assert occluded_pixels > 100_000, "the occluder should pass in front of the photo"


def test_built_templates_meet_the_spec(templates: dict[str, TemplateInfo]) -> None:
    folder = next(iter(templates.values())).video.parent
    infos = read_templates(folder)
    assert len(infos) >= 3
    assert {(i.width, i.height) for i in infos} >= {(1280, 720), (1920, 1080)}
    assert any(i.has_audio for i in infos)
    assert any(i.matte is not None for i in infos)
    for info in infos:
        assert 24 <= info.fps <= 30
        assert 5 <= info.duration_s <= 12
        for path in (info.video, info.track, info.poster, info.matte):
            if path is not None:
                assert path.stat().st_size < 3 * 1024 * 1024, path.name
        track = parse_track(info.track.read_bytes())
        assert track.aspect == pytest.approx(info.aspect)
        assert (track.width, track.height, track.frame_count) == (
            info.width,
            info.height,
            info.frame_count,
        )
        with av.open(str(info.video)) as container:
            stream = container.streams.video[0]
            assert sum(1 for _ in container.decode(stream)) == info.frame_count
        meta = json.loads((folder / f"{info.name}.json").read_text())
        assert meta["files"]["video"] == info.video.name


def test_template_build_is_deterministic(
    templates: dict[str, TemplateInfo], tmp_path: Path
) -> None:
    result = run_cli("build-templates", str(tmp_path), "--only", "billboard")
    assert result.code == 0, result.stderr
    original = templates["billboard"]
    for path in (original.video, original.track, original.matte, original.poster):
        assert path is not None
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name
