"""Storage trouble gives exit 3, and no SAS signature is ever printed."""

from __future__ import annotations

import socket
from pathlib import Path

from PIL import Image

from jobimages.template import TemplateInfo
from tests.jobimages.conftest import run_cli, template_args

SIGNATURE = "c2VjcmV0LXNpZ25hdHVyZS1uZXZlci1wcmludA%3D%3D"


def closed_port() -> int:
    """Return a local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def sas_url(port: int, name: str) -> str:
    """Return a SAS-style URL on a dead port."""
    return (
        f"http://127.0.0.1:{port}/devstoreaccount1/outputs/{name}"
        f"?sv=2023-11-03&se=2099-01-01T00%3A00%3A00Z&sr=b&sp=cw&sig={SIGNATURE}"
    )


def test_unreachable_output_exits_3_without_leaking_the_signature(
    frame_template: TemplateInfo, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (320, 240), (200, 10, 10)).save(photo)
    port = closed_port()
    result = run_cli(
        "run",
        *template_args(frame_template),
        "--image",
        str(photo),
        "--preset",
        "ultrafast",
        "--output",
        sas_url(port, "out.mp4"),
        "--poster",
        sas_url(port, "poster.jpg"),
        env={"JOBIMAGE_RETRY_ATTEMPTS": "3"},
    )
    assert result.code == 3, result.stderr
    error = result.events[-1]
    assert error["event"] == "error"
    assert error["code"] == 3
    assert "after 3 attempts" in error["message"]
    assert f"127.0.0.1:{port}/devstoreaccount1/outputs/out.mp4" in error["message"]
    for text in (result.stdout, result.stderr):
        assert SIGNATURE not in text
        assert "sig=c2Vj" not in text


def test_unreachable_input_exits_3(frame_template: TemplateInfo, tmp_path: Path) -> None:
    result = run_cli(
        "run",
        "--template-video",
        sas_url(closed_port(), "template.mp4"),
        "--track",
        str(frame_template.track),
        "--image",
        str(tmp_path / "photo.png"),
        "--output",
        str(tmp_path / "out.mp4"),
        env={"JOBIMAGE_RETRY_ATTEMPTS": "2"},
    )
    assert result.code == 3
    assert SIGNATURE not in result.stdout + result.stderr


def test_urls_can_come_from_the_environment_and_stay_secret(
    frame_template: TemplateInfo, tmp_path: Path
) -> None:
    """The task manager passes SAS URLs as secure environment values, not argv."""
    photo = tmp_path / "photo.png"
    Image.new("RGB", (320, 240), (200, 10, 10)).save(photo)
    result = run_cli(
        "run",
        "--preset",
        "ultrafast",
        env={
            "CLIPYARD_TEMPLATE_VIDEO_URL": str(frame_template.video),
            "CLIPYARD_TRACK_URL": str(frame_template.track),
            "CLIPYARD_IMAGE_URL": str(photo),
            "CLIPYARD_OUTPUT_URL": sas_url(closed_port(), "out.mp4"),
            "JOBIMAGE_RETRY_ATTEMPTS": "2",
        },
    )
    assert result.code == 3, result.stderr  # it got as far as uploading the output
    assert SIGNATURE not in result.stdout + result.stderr


def test_a_missing_url_names_its_flag_and_variable(tmp_path: Path) -> None:
    result = run_cli("run", "--image", str(tmp_path / "p.png"))
    assert result.code == 2
    assert "--template-video (or CLIPYARD_TEMPLATE_VIDEO_URL) is required" in result.stderr
