"""Fixtures for the compositor tests: templates built once per session, and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from jobimages.builder import build_templates
from jobimages.template import TemplateInfo


@dataclass(frozen=True)
class CliResult:
    """What one run of clipyard-composite produced."""

    code: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        """Return the JSON events printed on stdout."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def run_cli(*args: str, env: dict[str, str] | None = None) -> CliResult:
    """Run the compositor as the container would: a separate process, argv in, codes out."""
    merged = {**os.environ, "JOBIMAGE_RETRY_BASE_DELAY_S": "0.01", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "jobimages.cli", *args],
        capture_output=True,
        text=True,
        env=merged,
        timeout=600,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TemplateInfo]:
    """Build every built-in template once for the whole session."""
    folder = tmp_path_factory.mktemp("templates")
    return {info.name: info for info in build_templates(folder)}


@pytest.fixture
def frame_template(templates: dict[str, TemplateInfo]) -> TemplateInfo:
    """Return the smallest template (720p), for tests that fail before compositing."""
    return templates["frame"]


def template_args(info: TemplateInfo) -> list[str]:
    """Return the template-video, track and matte arguments for a template."""
    args = ["--template-video", str(info.video), "--track", str(info.track)]
    if info.matte is not None:
        args += ["--matte", str(info.matte)]
    return args
