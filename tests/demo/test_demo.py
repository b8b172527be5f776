"""The single-machine demo end to end: ``clipyard up``, one real job, a restart, the data kept.

This is the path a newcomer takes after ``make demo``: the embedded services, the API,
the task managers and the real compositor, driven only through the CLI and the API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import pytest
from PIL import Image

from jobimages.builder import build_templates
from taskmanager.cli.up import DEMO_CREDENTIALS_FILE
from tests.services import free_port, stop_process, wait_until

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 180


def _environment(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CLIPYARD_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    # Its own config folder: clipyard login must not touch the real user's.
    env.update(XDG_CONFIG_HOME=str(home / "config"), CLIPYARD_LOG_FORMAT="console")
    return env


@contextmanager
def demo(workdir: Path, port: int, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``clipyard up`` in ``workdir`` until it serves; stop it with Ctrl-C (SIGINT)."""
    log = (workdir / "up.log").open("ab")
    process = subprocess.Popen(
        [str(BIN / "clipyard"), "up", "--port", str(port), "--managers", "1"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def is_ready() -> bool:
        assert process.poll() is None, (workdir / "up.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return True
        except OSError:
            return False

    try:
        wait_until(is_ready, START_TIMEOUT_S, "clipyard up answering /readyz", interval_s=0.5)
        yield process
    finally:
        stop_process(process, signal.SIGINT, 90)
        log.close()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "clipyard"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.timeout(900)
def test_demo_runs_a_job_and_keeps_it_across_a_restart(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    # Only the small postcard, built before start-up: clipyard up loads what it finds.
    build_templates(workdir / ".clipyard" / "templates", names=["postcard"])
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (640, 480), (200, 80, 40)).save(photo)
    env = _environment(tmp_path)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    video = tmp_path / "video.mp4"

    with demo(workdir, port, env):
        operator = json.loads((workdir / ".clipyard" / DEMO_CREDENTIALS_FILE).read_text())
        assert operator["password"] in (workdir / "up.log").read_text()
        signed_in = _cli(
            env,
            "login",
            "--api",
            api,
            "--email",
            operator["email"],
            "--password",
            operator["password"],
        )
        assert signed_in.returncode == 0, signed_in.stderr
        done = _cli(env, "submit", "-t", "postcard", "-i", str(photo), "--wait", "-o", str(video))
        assert done.returncode == 0, done.stdout + done.stderr
        job_id = done.stdout.split()[1]
    assert "stopped" in (workdir / "up.log").read_text()
    with av.open(str(video)) as container:
        assert container.streams.video[0].frames > 0

    with demo(workdir, port, env):
        shown = _cli(env, "submit", "--help")  # the CLI still works against the same login
        assert shown.returncode == 0
        request = urllib.request.Request(f"{api}/api/v1/jobs/{job_id}")
        token = json.loads((tmp_path / "config" / "clipyard" / "credentials.json").read_text())
        request.add_header("Authorization", f"Bearer {token['token']}")
        with urllib.request.urlopen(request, timeout=10) as answer:
            job = json.load(answer)
        assert job["state"] == "succeeded"
        result = urllib.request.Request(f"{api}{job['result_url']}")
        result.add_header("Authorization", f"Bearer {token['token']}")
        with urllib.request.urlopen(result, timeout=30) as answer:
            assert answer.read() == video.read_bytes()
