"""What a worker process does with a ``supervise`` task: run the supervisor on its runtime.

TaskTiger imports ``taskmanager.queueing.supervise`` by its dotted path and calls it in
the worker (in-process: see ``worker.py``); that function hands the job to the handlers
installed here once per process, before the worker serves its queues.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from types import FrameType

import structlog

from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.supervisor import Supervisor

log = structlog.get_logger(__name__)


class SupervisionHandlers:
    """Runs ``supervise`` tasks on one process's runtime, made fork-safe on first use."""

    def __init__(self, runtime: Runtime, manager_id: str) -> None:
        self.runtime = runtime
        # The process's one identity as a lease owner, which its presence lock carries.
        self.manager_id = manager_id
        self._pid = os.getpid()

    def current_runtime(self) -> Runtime:
        """Return the runtime, made safe to use in a freshly forked child."""
        if self._pid != os.getpid():
            # Connections inherited across fork belong to the parent: drop (not close) them.
            self.runtime.engine.dispose(close=False)
            self._pid = os.getpid()
        return self.runtime

    def supervise(self, job_id: uuid.UUID) -> None:
        """Drive one job's current attempt (see ``Supervisor``)."""
        runtime = self.current_runtime()
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
            Supervisor(runtime, self.manager_id).supervise(job_id)
        except Exception:
            # Never leave the task in TaskTiger's error set, where no one runs it again:
            # Postgres still has the job, and the reconciler wakes it (a queued job at
            # its next pass, a run under a stale lease once the lease expires).
            log.exception("supervise failed; the reconciler wakes the job", job_id=str(job_id))
        finally:
            if is_main_thread:
                signal.signal(signal.SIGTERM, previous)
