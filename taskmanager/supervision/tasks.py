"""The TaskTiger task functions and the per-process runtime they use.

TaskTiger imports a task by its dotted path in the worker and calls it in a forked
child, so these are plain module-level functions; options (queue, hard timeout,
retries, uniqueness) are given where the task is enqueued (``queueing.py``). The
runtime is installed once per worker process (``worker.py``) before any fork; no
TaskTiger instance is needed at import time.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from types import FrameType

from taskmanager.supervision.leases import manager_id
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.supervisor import Supervisor

_runtime: Runtime | None = None
_runtime_pid: int | None = None


def install_runtime(runtime: Runtime) -> None:
    """Make ``runtime`` the one this process's tasks use."""
    global _runtime, _runtime_pid
    _runtime, _runtime_pid = runtime, os.getpid()


def current_runtime() -> Runtime:
    """Return the installed runtime, made safe to use in a freshly forked child."""
    global _runtime_pid
    if _runtime is None:
        raise RuntimeError("no runtime installed: tasks run inside `clipyard worker`")
    if _runtime_pid != os.getpid():
        # Connections inherited across fork belong to the parent: drop (not close) them.
        _runtime.engine.dispose(close=False)
        _runtime_pid = os.getpid()
    return _runtime


def supervise(job_id: str, wake_key: str | None = None) -> None:
    """TaskTiger task: drive one job's current attempt (see ``Supervisor``).

    ``wake_key`` only makes the queue entry distinct (see ``TaskTigerEnqueuer``).
    """
    runtime = current_runtime()
    if runtime.shutdown.is_set():
        return  # this worker is stopping: leave the job to the next manager
    # SIGTERM (graceful shutdown) hands the run over instead of killing it, and still
    # reaches TaskTiger's own handler so the worker stops after this task.
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        runtime.shutdown.set()
        if callable(previous):
            previous(signum, frame)

    is_main_thread = threading.current_thread() is threading.main_thread()
    if is_main_thread:
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        Supervisor(runtime, manager_id()).supervise(uuid.UUID(job_id))
    finally:
        if is_main_thread:
            signal.signal(signal.SIGTERM, previous)
