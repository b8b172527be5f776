"""``clipyard worker``: N task-manager processes plus the reconciler, until SIGTERM.

Each task manager is a TaskTiger worker in its own process group. On SIGTERM every
group gets SIGTERM: each supervisor finishes its watch step, releases its lease and
re-enqueues its job, so another manager adopts the run at once; containers keep
running. The reconciler runs here on a timer (see ``reconciler.py`` for why).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import click
import structlog

from taskmanager.cli.context import CliError, load_settings
from taskmanager.settings import Settings
from taskmanager.supervision.liveness import watch_liveness_forever
from taskmanager.supervision.reconciler import reconcile, reconcile_forever
from taskmanager.supervision.worker import ADOPT_FROM_ENVIRONMENT, build_runtime

log = structlog.get_logger(__name__)
_SHUTDOWN_TIMEOUT_S = 60.0
# A manager that dies within this long of its start counts as dying at start.
_QUICK_DEATH_S = 10.0
_MAX_RESTART_DELAY_S = 10.0


def _start_manager(queues: str, replaces: int | None = None) -> subprocess.Popen[bytes]:
    """Start a manager; ``replaces``: the pid of a dead one whose run it adopts first."""
    env = dict(os.environ)
    if replaces is not None:
        env[ADOPT_FROM_ENVIRONMENT] = f"{socket.gethostname()}:{replaces}:"
    return subprocess.Popen(
        [sys.executable, "-m", "taskmanager.supervision.worker", "--queues", queues],
        start_new_session=True,
        env=env,
    )


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def run_managers(settings: Settings, queues: str, processes: int, *, is_reconciling: bool) -> None:
    """Run the managers (and the reconciler) until SIGTERM or SIGINT."""
    if settings.database_url is None or settings.redis_url is None:
        missing = "DATABASE_URL" if settings.database_url is None else "REDIS_URL"
        raise CliError(f"clipyard worker needs {missing} (clipyard up sets both for you)")
    runtime = build_runtime(
        settings, settings.database_url.get_secret_value(), settings.redis_url.get_secret_value()
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    managers = [_start_manager(queues) for _ in range(processes)]
    log.info("task managers started", queues=queues, processes=processes)
    reconciler = threading.Thread(
        target=reconcile_forever, args=(runtime, stop), name="reconciler", daemon=True
    )
    if is_reconciling:
        reconciler.start()
    # Every pool watches for dead managers' runs: adoption must not wait for one machine.
    liveness = threading.Thread(
        target=watch_liveness_forever, args=(runtime, stop), name="liveness", daemon=True
    )
    liveness.start()
    # Per slot: when its manager started, how many in a row died soon after starting,
    # and (for a dead one) when to start the next.
    started_at = [time.monotonic()] * processes
    quick_deaths = [0] * processes
    restart_at: list[float | None] = [None] * processes
    try:
        while not stop.wait(0.5):
            now = time.monotonic()
            for index, manager in enumerate(managers):
                if manager.poll() is None:
                    continue
                due = restart_at[index]
                if due is None:
                    # A manager that keeps dying at start (a service away) is restarted
                    # with backoff; one that ran a while is restarted at once.
                    is_quick = now - started_at[index] < _QUICK_DEATH_S
                    quick_deaths[index] = quick_deaths[index] + 1 if is_quick else 0
                    delay = min(_MAX_RESTART_DELAY_S, 0.25 * 2 ** quick_deaths[index])
                    due = restart_at[index] = now + (delay if quick_deaths[index] else 0.0)
                    log.warning(
                        "task manager died; restarting",
                        code=manager.returncode,
                        in_s=round(due - now, 2),
                    )
                if now >= due:
                    managers[index] = _start_manager(queues, replaces=manager.pid)
                    started_at[index], restart_at[index] = now, None
    finally:
        for manager in managers:
            _signal_group(manager, signal.SIGTERM)
        deadline = time.monotonic() + _SHUTDOWN_TIMEOUT_S
        for manager in managers:
            try:
                manager.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(manager, signal.SIGKILL)
                manager.wait()
        if reconciler.is_alive():
            reconciler.join(timeout=_SHUTDOWN_TIMEOUT_S)
        liveness.join(timeout=_SHUTDOWN_TIMEOUT_S)
        runtime.engine.dispose()
        log.info("task managers stopped")


@click.command()
@click.option(
    "--queues", default=None, help="Comma-separated queues (default: interactive and batch)."
)
@click.option("-n", "--processes", default=2, show_default=True, type=click.IntRange(1, 256))
@click.option("--no-reconcile", is_flag=True, help="Leave reconciling to other machines.")
def worker(queues: str | None, processes: int, no_reconcile: bool) -> None:
    """Run N task managers (TaskTiger workers) and the reconciler until SIGTERM."""
    settings = load_settings()
    queues = queues or f"{settings.interactive_queue},{settings.batch_queue}"
    run_managers(settings, queues, processes, is_reconciling=not no_reconcile)


@click.command("reconcile")
def reconcile_once() -> None:
    """Run one reconciliation pass and print what it did."""
    settings = load_settings()
    if settings.database_url is None or settings.redis_url is None:
        raise CliError("clipyard reconcile needs DATABASE_URL and REDIS_URL")
    runtime = build_runtime(
        settings, settings.database_url.get_secret_value(), settings.redis_url.get_secret_value()
    )
    report = reconcile(runtime)
    click.echo(
        f"adopted {len(report.adopted)}, requeued {len(report.requeued)},"
        f" removed {len(report.removed_containers)} leaked containers"
        + (" (skipped: another reconciler is running)" if report.is_skipped else "")
        + "".join(f"\nnot done: {failure}" for failure in report.failures)
    )
