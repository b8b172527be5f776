"""The local container backend with real detached processes."""

from __future__ import annotations

import json
import os
import signal
from decimal import Decimal
from pathlib import Path

import pytest

from taskmanager.backends.base import BackendError, ContainerSpec, ContainerState
from taskmanager.backends.local import LocalBackend
from tests.services import wait_until


def _spec(name: str, *args: str, **fields: object) -> ContainerSpec:
    return ContainerSpec(
        name=name,
        image="fake",
        args=list(args),
        cpu=Decimal(1),
        memory_gb=Decimal(1),
        tags={"app": "clipyard", "job_id": "j", "attempt": "1"},
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "containers")


def _wait_exit(backend: LocalBackend, name: str) -> None:
    wait_until(lambda: backend.status(name).state is ContainerState.EXITED, 15, f"{name} exits")


def test_runs_reports_logs_and_exit_code(backend: LocalBackend) -> None:
    backend.launch(_spec("c1", "--seconds", "0.3", "--steps", "3", "--exit-code", "5"))
    _wait_exit(backend, "c1")
    status = backend.status("c1")
    assert status.exit_code == 5
    assert status.started_at is not None
    assert status.finished_at is not None
    assert status.finished_at >= status.started_at
    assert status.cpu_seconds is not None  # measured by the shim, for sizing jobs
    text, cursor = backend.logs_since("c1", 0)
    events = [json.loads(line)["event"] for line in text.splitlines()]
    assert events == ["start", "progress", "progress", "progress", "error"]
    assert backend.logs_since("c1", cursor) == ("", cursor)


def test_logs_arrive_incrementally_in_whole_lines(backend: LocalBackend) -> None:
    backend.launch(_spec("c2", "--seconds", "1", "--steps", "4"))
    seen = ""
    cursor = 0
    while backend.status("c2").state is not ContainerState.EXITED:
        text, cursor = backend.logs_since("c2", cursor)
        assert text == "" or text.endswith("\n")
        seen += text
        backend.wait("c2", 0.1)
    text, cursor = backend.logs_since("c2", cursor)
    seen += text
    assert [json.loads(line)["event"] for line in seen.splitlines()][-1] == "done"


def test_launching_an_existing_name_adopts_it(backend: LocalBackend, tmp_path: Path) -> None:
    backend.launch(_spec("c3", "--seconds", "0.5"))
    backend.launch(_spec("c3", "--seconds", "0.5"))
    other_manager = LocalBackend(tmp_path / "containers")
    assert other_manager.status("c3").state in (ContainerState.RUNNING, ContainerState.PENDING)
    _wait_exit(other_manager, "c3")
    text, _ = other_manager.logs_since("c3", 0)
    assert sum(json.loads(line)["event"] == "start" for line in text.splitlines()) == 1


def test_stop_kills_a_container_that_ignores_sigterm(backend: LocalBackend) -> None:
    backend.launch(_spec("c4", "--seconds", "60", "--ignore-sigterm"))
    # "start" is printed after the program has set SIGTERM aside.
    wait_until(lambda: '"start"' in backend.logs_since("c4", 0)[0], 10, "container started")
    backend.stop("c4", grace_s=0.5)
    status = backend.status("c4")
    assert (status.state, status.exit_code, status.detail) == (ContainerState.EXITED, 137, "killed")


def test_a_killed_shim_is_reported_lost(backend: LocalBackend, tmp_path: Path) -> None:
    backend.launch(_spec("c5", "--seconds", "60"))
    wait_until(lambda: backend.status("c5").state is ContainerState.RUNNING, 10, "running")
    run_dir = tmp_path / "containers" / "c5"
    os.kill(int((run_dir / "shim.pid").read_text()), signal.SIGKILL)
    os.killpg(int((run_dir / "pgid").read_text()), signal.SIGKILL)
    wait_until(lambda: backend.status("c5").state is ContainerState.LOST, 10, "lost")
    backend.remove("c5")
    assert backend.status("c5").state is ContainerState.NOT_FOUND


def test_secrets_stay_out_of_files_and_listings(backend: LocalBackend, tmp_path: Path) -> None:
    backend.launch(
        _spec("c6", "--seconds", "0.1", secure_env={"CLIPYARD_OUTPUT_URL": "sig=SECRET"})
    )
    _wait_exit(backend, "c6")
    run_dir = tmp_path / "containers" / "c6"
    for path in run_dir.iterdir():
        assert b"SECRET" not in path.read_bytes(), path.name
    [info] = backend.list_ours()
    assert info.name == "c6"
    assert info.tags["job_id"] == "j"


def test_remove_is_quiet_when_gone_and_unknown_images_are_refused(backend: LocalBackend) -> None:
    backend.remove("never-existed")
    with pytest.raises(BackendError, match="not known") as refused:
        backend.launch(ContainerSpec("c7", "nope", [], Decimal(1), Decimal(1)))
    assert not refused.value.is_retryable


def test_times_written_with_a_decimal_comma_are_read(backend: LocalBackend) -> None:
    """bash writes $EPOCHREALTIME with the locale's decimal mark; a comma must not crash."""
    backend.launch(_spec("c-comma", "--seconds", "0"))
    _wait_exit(backend, "c-comma")
    before = backend.status("c-comma")
    run_dir = backend.root / "c-comma"
    for record in ("started_at", "finished_at", "times"):
        path = run_dir / record
        path.write_text(path.read_text().replace(".", ","))
    after = backend.status("c-comma")
    assert (after.started_at, after.finished_at) == (before.started_at, before.finished_at)
    assert after.cpu_seconds == before.cpu_seconds
