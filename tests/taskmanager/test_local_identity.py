"""The local backend signals only a process group it can prove is the container.

Regression for issue 15, item 6: ``stop()`` and ``remove()`` SIGKILLed the recorded
process-group id whenever no exit code was recorded; after a restart or a reboot that
id can belong to another job's compositor.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskmanager.backends.local import LocalBackend


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """Another process, in a group of its own, whose id a stale record now names."""
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def _stale_run(backend: LocalBackend, name: str, pgid: int) -> None:
    """Leave a run directory as a restart does: pgid recorded, no exit code, shim gone."""
    run_dir = backend.root / name
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text("{}")
    (run_dir / "shim.pid").write_text("999999")
    (run_dir / "pgid").write_text(str(pgid))
    (run_dir / "started_at").write_text("1700000000.0")


def test_stop_and_remove_leave_a_process_that_reuses_the_recorded_id(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    backend = LocalBackend(tmp_path / "containers")
    _stale_run(backend, "cy-stale-1", bystander.pid)
    backend.stop("cy-stale-1", grace_s=0.2)
    assert bystander.poll() is None, "stop signalled a process that is not the container"
    backend.remove("cy-stale-1")
    assert bystander.poll() is None, "remove signalled a process that is not the container"
    assert not (backend.root / "cy-stale-1").exists()
