"""The image keeps its own deadline: it exits 124 at CLIPYARD_DEADLINE_AT, whatever it does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def _composite(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "clipyard-composite"), *args]
    return subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def test_the_deadline_ends_a_run_stuck_on_its_inputs() -> None:
    # A server that accepts connections and never answers: the fetch would wait its
    # whole request timeout, five times over, without the deadline.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/blob"
        began = time.monotonic()
        result = _composite(
            {"CLIPYARD_DEADLINE_AT": f"{time.time() + 1.0:.3f}"},
            "run",
            "--template-video",
            url,
            "--track",
            url,
            "--image",
            url,
            "--output",
            url,
            "--poster",
            url,
        )
    assert result.returncode == 124
    assert time.monotonic() - began < 20
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert (last["event"], last["code"]) == ("error", 124)


def test_a_deadline_that_is_not_a_time_is_bad_input() -> None:
    result = _composite({"CLIPYARD_DEADLINE_AT": "tomorrow"}, "run")
    assert result.returncode == 2
    assert "CLIPYARD_DEADLINE_AT" in result.stderr
