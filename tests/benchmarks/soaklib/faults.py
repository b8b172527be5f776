"""Faults the soak injects, one at a time, each with its start and end on stderr."""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from taskmanager.models import Run
from taskmanager.states import LIVE_RUN_STATES
from tests.benchmarks.soaklib.load import Load, large_photo, upload_trickled
from tests.benchmarks.soaklib.stack import LEASE_TTL_S, Stack, compositor_processes, kill_group

# What a fault did, in words, or None when it found nothing to hit right now.
FaultAction = Callable[[], str | None]

# Every kind the soak has always had strikes twice; the long outages once each.
TWICE = ("kill_manager", "restart_api", "flush_redis", "restart_postgres", "kill_container")
ONCE = (
    "pause_manager",
    "postgres_down",
    "redis_down",
    "kill_all_managers",
    "kill_api_mid_upload",
)
# Struck last, on a burst of fresh work: the drain after it measures recovery from the
# longest outage with jobs caught in it.
FINAL_FAULT = "postgres_down"
GAP_S = (4.0, 9.0)
POSTGRES_DOWN_S = 60.0
REDIS_DOWN_S = 20.0
# A paused manager stays silent for three lease TTLs: its runs are adopted meanwhile.
PAUSE_S = 3 * LEASE_TTL_S
# How long kill_container waits for a compositor to be running (each lasts about a second).
KILL_WAIT_S = 20.0
# A kind that found nothing to hit is put back this many times, then given up.
_MAX_RETRIES = 3


@dataclass(frozen=True)
class Strike:
    """One fault as it happened, in seconds since the soak started."""

    kind: str
    started_s: float
    ended_s: float
    detail: str


def busy_managers(stack: Stack) -> list[psutil.Process]:
    """Return the managers that hold a live run's lease (all of them if that is unknown)."""
    managers = stack.managers()
    try:
        with stack.session() as session:
            owners = session.scalars(
                select(Run.lease_owner).where(Run.state.in_(LIVE_RUN_STATES))
            ).all()
    except SQLAlchemyError:
        return managers
    # A lease owner is "host:pid:suffix".
    pids = {int(owner.split(":")[1]) for owner in owners if owner and owner.count(":") >= 2}
    return [manager for manager in managers if manager.pid in pids] or managers


class FaultInjector:
    """Strikes the planned faults one at a time, at seeded random moments."""

    def __init__(
        self,
        stack: Stack,
        load: Load,
        rng: random.Random,
        extra: dict[str, FaultAction],
        origin: float,
    ) -> None:
        self.stack = stack
        self.load = load
        self.rng = rng
        self.origin = origin
        self.actions: dict[str, FaultAction] = {
            "kill_manager": self.kill_manager,
            "restart_api": self.restart_api,
            "flush_redis": self.flush_redis,
            "restart_postgres": self.restart_postgres,
            "kill_container": self.kill_container,
            "pause_manager": self.pause_manager,
            "postgres_down": self.postgres_down,
            "redis_down": self.redis_down,
            "kill_all_managers": self.kill_all_managers,
            "kill_api_mid_upload": self.kill_api_mid_upload,
            **extra,
        }
        self.plan = [kind for kind in TWICE for _ in range(2)] + list(ONCE) + list(extra)
        self.plan.remove(FINAL_FAULT)
        self.rng.shuffle(self.plan)
        self.plan.insert(0, FINAL_FAULT)  # the plan is struck from its end
        self.strikes: list[Strike] = []
        self.skipped: list[str] = []
        self.killed_jobs: Counter[str] = Counter()
        self._retries: Counter[str] = Counter()
        self._photo = large_photo(rng.randrange(2**32))

    def now(self) -> float:
        """Return the seconds since the soak started."""
        return time.monotonic() - self.origin

    @property
    def is_final_next(self) -> bool:
        """Tell whether the next fault is the last one."""
        return self.plan == [FINAL_FAULT]

    def strike_next(self, *, is_immediate: bool = False) -> Strike | None:
        """Wait a random gap (unless immediate), then strike the next planned fault.

        Return None if the fault found nothing to hit (it is tried again later).
        """
        if not is_immediate:
            time.sleep(self.rng.uniform(*GAP_S))
        kind = self.plan.pop()
        started = self.now()
        print(f"# fault {kind} starts at {started:.1f} s", file=sys.stderr, flush=True)
        detail = self.actions[kind]()
        ended = self.now()
        if detail is None:
            self._retries[kind] += 1
            if self._retries[kind] <= _MAX_RETRIES:
                # Nothing to hit now: try it again last, but before the final fault.
                self.plan.insert(1 if self.plan[:1] == [FINAL_FAULT] else 0, kind)
            else:
                self.skipped.append(kind)
            print(f"# fault {kind}: nothing to hit", file=sys.stderr, flush=True)
            return None
        strike = Strike(kind, started, ended, detail)
        self.strikes.append(strike)
        print(
            f"# fault {kind}: {started:.1f} s -> {ended:.1f} s ({detail})",
            file=sys.stderr,
            flush=True,
        )
        return strike

    # --- managers ------------------------------------------------------------------------

    def kill_manager(self) -> str | None:
        """SIGKILL one manager's process group, a busy one if any."""
        managers = busy_managers(self.stack)
        if not managers:
            return None
        victim = self.rng.choice(managers)
        kill_group(victim.pid)
        return f"manager {victim.pid}"

    def kill_all_managers(self) -> str | None:
        """SIGKILL every manager of both pools at once (the pools start new ones)."""
        managers = self.stack.managers()
        for manager in managers:
            kill_group(manager.pid)
        return f"{len(managers)} managers" if managers else None

    def pause_manager(self) -> str | None:
        """SIGSTOP a busy manager's group for three lease TTLs, then SIGCONT it."""
        managers = busy_managers(self.stack)
        if not managers:
            return None
        victim = self.rng.choice(managers)
        kill_group(victim.pid, signal.SIGSTOP)
        try:
            time.sleep(PAUSE_S)
        finally:
            kill_group(victim.pid, signal.SIGCONT)
        return f"manager {victim.pid} stopped for {PAUSE_S:g} s"

    # --- API -----------------------------------------------------------------------------

    def restart_api(self) -> str | None:
        """SIGKILL the API and start it again."""
        self.stack.kill_api()
        self.stack.start_api()
        return "API restarted"

    def kill_api_mid_upload(self) -> str | None:
        """Cut a large upload by killing the API halfway through it; the client retries.

        The photo then goes into an interactive job, so "nothing lost" covers it.
        """
        half_sent = threading.Event()
        stored: dict[str, Any] = {}
        uploader = self.load.start(
            lambda: stored.update(upload_trickled(self.load.user, self._photo, half_sent))
        )
        if not half_sent.wait(60):
            uploader.join(300)
            return None
        self.stack.kill_api()
        self.stack.start_api()
        uploader.join(300)
        if "id" not in stored:
            raise SystemExit("the cut upload was never stored, though the client retried")
        copies = self.load.user.call("GET", f"/api/v1/uploads?sha256={stored['sha256']}")
        job_id = self.load.submit_interactive("soak-large-photo", str(stored["id"]))
        return (
            f"{len(self._photo)} B upload cut at half, stored on retry "
            f"({len(copies['items'])} stored copies); job {job_id}"
        )

    # --- services ------------------------------------------------------------------------

    def flush_redis(self) -> str | None:
        """Restart Redis empty at once."""
        self.stack.restart_redis_empty(downtime_s=0)
        return "Redis restarted empty"

    def redis_down(self) -> str | None:
        """Take Redis away for a while, then bring it back empty on the same socket."""
        self.stack.restart_redis_empty(downtime_s=REDIS_DOWN_S)
        return f"Redis gone for {REDIS_DOWN_S:g} s, back empty"

    def restart_postgres(self) -> str | None:
        """Restart PostgreSQL in place."""
        self.stack.postgres.restart()
        return "PostgreSQL restarted"

    def postgres_down(self) -> str | None:
        """Stop PostgreSQL for a minute, then start it with its data."""
        self.stack.postgres.stop_server()
        try:
            time.sleep(POSTGRES_DOWN_S)
        finally:
            self.stack.postgres.start_server()
        return f"PostgreSQL down for {POSTGRES_DOWN_S:g} s"

    # --- containers ----------------------------------------------------------------------

    def kill_container(self) -> str | None:
        """SIGKILL one running compositor: the one fault that may cost its job an attempt."""
        deadline = time.monotonic() + KILL_WAIT_S
        while not (running := compositor_processes()) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not running:
            return None
        pid = self.rng.choice(sorted(running))
        kill_group(pid)
        self.killed_jobs[running[pid]] += 1
        return f"compositor {pid} of job {running[pid]}"
