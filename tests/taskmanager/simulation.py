"""A simulated world for supervision: its clock, its cloud, its queue and its faults.

The real supervisor, reconciler and job service run against a real PostgreSQL; what
they cannot see directly is simulated, deterministically:

- **time**: one clock for everything. The managers read it through ``Runtime.clock``
  and every wait (``backend.wait``, ``shutdown.wait``) advances it instead of sleeping;
  PostgreSQL's ``now()`` reads it too (a ``sim.now()`` function placed before
  ``pg_catalog`` on the managers' search path), so leases go stale and deadlines pass
  in simulated seconds;
- **the cloud**: containers that provision, run, print progress, end themselves at
  their deadline, ignore SIGTERM, vanish or are evicted, behind a control plane that
  answers 429 and 5xx when told to; it knows what each container really ran, which
  the books are checked against;
- **the queue**: TaskTiger's contract (unique entries per job and wake key, delays
  that only move an entry earlier, a failed task left in the error set) without
  Redis, so that losing the queue is one rule step;
- **faults on a manager**: at its n-th call to the cloud a manager crashes (nothing
  after runs) or pauses (the world moves on past its lease, then it resumes).

Each manager acts through its own ``Actor`` view of the cloud, which records any
action taken on a container whose run that manager did not hold a fresh lease on.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, event, select, text
from sqlalchemy.exc import OperationalError

from taskmanager.backends.base import (
    APP_TAG,
    BackendError,
    ContainerInfo,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
)
from taskmanager.models import Run
from taskmanager.states import LIVE_RUN_STATES

SIM_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS sim;
CREATE TABLE IF NOT EXISTS sim.clock (t timestamptz NOT NULL);
CREATE OR REPLACE FUNCTION sim.now() RETURNS timestamptz
    LANGUAGE sql STABLE AS 'SELECT t FROM sim.clock';
"""
# Put on the managers' connections: ``now()`` resolves to the simulated clock.
SIM_SEARCH_PATH = "sim,pg_catalog,public"


class SimCrash(BaseException):
    """The manager's process dies here: nothing after this point of its code runs."""


@dataclass
class Clock:
    """Simulated seconds since ``epoch``, mirrored into the database's ``sim.clock``."""

    engine: Engine
    epoch: datetime = field(default_factory=lambda: datetime.now(UTC))
    now_s: float = 0.0

    def install(self) -> None:
        """Create the ``sim`` schema and start the database's clock at the epoch."""
        with self.engine.begin() as connection:
            for statement in SIM_SCHEMA.strip().split(";\n"):
                connection.execute(text(statement))
            connection.execute(text("DELETE FROM sim.clock"))
            connection.execute(text("INSERT INTO sim.clock VALUES (:t)"), {"t": self.epoch})

    def __call__(self) -> float:
        return self.now_s

    def at(self, seconds: float) -> datetime:
        """Return the simulated instant ``seconds`` after the epoch."""
        return self.epoch + timedelta(seconds=seconds)

    def seconds_of(self, when: datetime) -> float:
        """Return ``when`` as simulated seconds."""
        return (when - self.epoch).total_seconds()

    def advance(self, seconds: float) -> None:
        """Move time on (never back)."""
        if seconds <= 0:
            return
        self.now_s += seconds
        with self.engine.begin() as connection:
            connection.execute(text("UPDATE sim.clock SET t = :t"), {"t": self.at(self.now_s)})


class SimShutdown(threading.Event):
    """A manager's shutdown flag whose waits pass simulated time instead of sleeping."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        """Advance the clock by ``timeout``; tell whether shutdown was asked for."""
        if timeout:
            self._clock.advance(timeout)
        return self.is_set()


class DatabaseOutage:
    """Makes every statement of the managers' engine fail until a simulated time.

    Also freezes the paused manager's helper threads: the simulation runs on the main
    thread, so while a pause lasts (``is_pausing``) any other thread is the paused
    manager's lease keeper, which a real SIGSTOP would have stopped too.
    """

    def __init__(self, clock: Clock, engine: Engine) -> None:
        self.clock = clock
        self.until_s = 0.0
        self.is_pausing = False
        event.listen(engine, "before_cursor_execute", self._check)

    def _check(self, *_: object) -> None:
        if self.clock.now_s < self.until_s:
            raise OperationalError("simulated outage", {}, ConnectionError("database is down"))
        if self.is_pausing and threading.current_thread() is not threading.main_thread():
            raise OperationalError("simulated pause", {}, ConnectionError("process frozen"))


@dataclass
class SimContainer:
    """One container: provisioning, then running to its natural end or its deadline."""

    spec: ContainerSpec
    created_s: float
    provision_s: float
    run_s: float
    exit_code: int
    steps: int
    ignores_sigterm: bool
    deadline_s: float | None
    ended_s: float | None = None
    end_code: int | None = None
    detail: str | None = None
    removed_s: float | None = None

    @property
    def start_s(self) -> float:
        """Return when the container starts running (provisioning over)."""
        return self.created_s + self.provision_s

    def settle(self, now_s: float) -> None:
        """End the container if it has run its course (or reached its deadline) by now."""
        if self.ended_s is not None:
            return
        end, code = self.start_s + self.run_s, self.exit_code
        if self.deadline_s is not None and self.deadline_s < end:
            # The image's own watchdog: exit 124 at the deadline (at once if it starts late).
            end, code = max(self.start_s, self.deadline_s), 124
        if now_s >= end:
            self.ended_s, self.end_code = end, code

    def end(self, when_s: float, code: int | None, detail: str | None = None) -> None:
        """End the container now, from outside."""
        if self.ended_s is None:
            self.ended_s, self.end_code, self.detail = when_s, code, detail

    def billed_s(self, now_s: float) -> float:
        """Return what the cloud bills: from the create request until it stops."""
        end = self.ended_s if self.ended_s is not None else (self.removed_s or now_s)
        return max(0.0, end - self.created_s)

    def log(self, now_s: float) -> str:
        """Return what the container has printed by ``now_s`` (the compositor's contract)."""
        if now_s < self.start_s:
            return ""
        until = now_s if self.ended_s is None else min(now_s, self.ended_s)
        lines = [{"event": "start", "total": self.steps}]
        step_s = self.run_s / self.steps
        for done in range(1, self.steps + 1):
            if self.start_s + done * step_s <= until:
                lines.append({"event": "progress", "done": done, "total": self.steps})
        if self.ended_s is not None and now_s >= self.ended_s:
            if self.end_code == 0:
                lines.append({"event": "done", "bytes": 0})
            elif self.end_code is not None:
                lines.append({"event": "error", "code": self.end_code, "message": "sim"})
        return "".join(json.dumps(line) + "\n" for line in lines)


@dataclass
class Throttle:
    """The control plane refuses the next ``times`` calls of a method."""

    times: int
    retry_after_s: float | None
    status_code: int


class SimCloud:
    """The container service: containers by name, a control plane that can fail."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.containers: dict[str, SimContainer] = {}
        # Every container ever created (removed ones too): what the cloud billed.
        self.history: list[SimContainer] = []
        self.throttles: dict[str, Throttle] = {}
        self.provision_s = 0.5

    def refuse(self, method: str) -> None:
        """Raise the control plane's refusal if one is armed for ``method``."""
        throttle = self.throttles.get(method)
        if throttle is None or throttle.times <= 0:
            return
        throttle.times -= 1
        raise BackendError(
            f"simulated {throttle.status_code} on {method}",
            is_retryable=True,
            retry_after_s=throttle.retry_after_s,
        )

    def get(self, name: str) -> SimContainer | None:
        """Return the container, settled to now, or None."""
        container = self.containers.get(name)
        if container is not None:
            container.settle(self.clock.now_s)
        return container

    def launch(self, spec: ContainerSpec) -> None:
        """Create the container unless one of that name exists (then adopt it quietly)."""
        if spec.name in self.containers:
            return
        fake = _fake_args(spec.args)
        deadline = spec.env.get("CLIPYARD_DEADLINE_AT")
        container = SimContainer(
            spec=spec,
            created_s=self.clock.now_s,
            provision_s=self.provision_s,
            run_s=float(fake.get("--seconds", 1.0)),
            exit_code=int(fake.get("--exit-code", 0)),
            steps=max(1, int(fake.get("--steps", 4))),
            ignores_sigterm="--ignore-sigterm" in spec.args,
            deadline_s=(
                self.clock.seconds_of(datetime.fromtimestamp(float(deadline), UTC))
                if deadline
                else None
            ),
        )
        self.containers[spec.name] = container
        self.history.append(container)

    def status(self, name: str) -> ContainerStatus:
        """Return the container's state with the times and exit code the cloud knows."""
        container = self.get(name)
        if container is None:
            return ContainerStatus(ContainerState.NOT_FOUND)
        now = self.clock.now_s
        started = self.clock.at(container.start_s) if now >= container.start_s else None
        if container.ended_s is not None:
            return ContainerStatus(
                ContainerState.EXITED,
                exit_code=container.end_code,
                started_at=started,
                finished_at=self.clock.at(container.ended_s),
                detail=container.detail,
            )
        state = ContainerState.RUNNING if started else ContainerState.PENDING
        return ContainerStatus(state, started_at=started)

    def stop(self, name: str, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after ``grace_s`` for a container that ignores it."""
        container = self.get(name)
        if container is None or container.ended_s is not None:
            return
        if container.ignores_sigterm and self.clock.now_s >= container.start_s:
            self.clock.advance(grace_s)  # the stop blocks through the grace
            container.settle(self.clock.now_s)
            container.end(self.clock.now_s, 137)
        else:
            container.end(self.clock.now_s, 143)

    def remove(self, name: str) -> None:
        """Delete the container (killing it if it still runs)."""
        container = self.containers.pop(name, None)
        if container is not None:
            container.settle(self.clock.now_s)
            container.removed_s = self.clock.now_s
            container.end(self.clock.now_s, 137)

    def wait(self, name: str, timeout_s: float) -> None:
        """Pass time until the container changes state, or ``timeout_s``."""
        container = self.get(name)
        step = timeout_s
        if container is not None and container.ended_s is None:
            upcoming = [container.start_s, container.start_s + container.run_s]
            if container.deadline_s is not None:
                upcoming.append(container.deadline_s)
            later = [t - self.clock.now_s for t in upcoming if t > self.clock.now_s]
            if later:
                step = min(step, max(0.01, min(later)))
        self.clock.advance(max(0.01, step))

    def live(self) -> list[SimContainer]:
        """Return the containers still provisioning or running."""
        return [c for c in (self.get(n) for n in list(self.containers)) if c and c.ended_s is None]

    def billed_usd_by_job(
        self, price: Callable[[SimContainer, float], Decimal]
    ) -> dict[str, Decimal]:
        """Return what the cloud billed, per job id (from each container's tags)."""
        totals: dict[str, Decimal] = {}
        for container in self.history:
            job_id = container.spec.tags["job_id"]
            seconds = container.billed_s(self.clock.now_s)
            totals[job_id] = totals.get(job_id, Decimal(0)) + price(container, seconds)
        return totals


def _fake_args(args: list[str]) -> dict[str, str]:
    """Read the stand-in image's ``--name value`` arguments (flags map to '')."""
    found: dict[str, str] = {}
    index = 0
    while index < len(args):
        name = args[index]
        has_value = index + 1 < len(args) and not args[index + 1].startswith("--")
        found[name] = args[index + 1] if has_value else ""
        index += 2 if has_value else 1
    return found


@dataclass
class ScheduledFault:
    """What strikes at a manager's ``at_call``-th call to the cloud, mid-supervision.

    ``crash`` unwinds the manager; any other kind is handed to the world (a pause past
    the lease, a database outage, a cancel, a lost container) and the manager goes on.
    """

    at_call: int
    kind: str


class Actor:
    """One manager's view of the cloud (a ``ContainerBackend``): faults and fencing checks.

    Before each action on a container (launch, stop, remove) it checks the manager
    holds that container's run's lease, fresh, or (remove) that the run has ended;
    anything else is recorded in ``violations``. Then any fault due at this call
    strikes: a crash unwinds the manager; the world handles the rest (``on_fault``).
    """

    name = "local"  # what the runs table accepts; nothing else depends on it

    def __init__(
        self,
        cloud: SimCloud,
        owner: str,
        check_engine: Engine,
        lease_ttl_s: float,
        violations: list[str],
        on_fault: Callable[[str, str], None],
    ) -> None:
        self.cloud = cloud
        # The manager's slot (m0, m1, ...) and the id of its current process (a restart
        # after a crash is a new process, with a new id).
        self.slot = owner
        self.owner = owner
        self.check_engine = check_engine
        self.lease_ttl_s = lease_ttl_s
        self.violations = violations
        self.on_fault = on_fault
        self.calls = 0
        self.faults: list[ScheduledFault] = []

    def _enter(self, method: str, name: str | None = None) -> None:
        if name is not None and method in ("launch", "stop", "remove"):
            self._check_fenced(method, name)
        self.calls += 1
        for fault in [f for f in self.faults if f.at_call == self.calls]:
            self.faults.remove(fault)
            if fault.kind == "crash":
                raise SimCrash(f"{self.owner} crashed at call {self.calls} ({method})")
            self.on_fault(self.slot, fault.kind)
        self.cloud.refuse(method)

    def _check_fenced(self, method: str, name: str) -> None:
        if self.owner == "reconciler" and method == "remove":
            return  # the janitor removes only containers with no live run (checked below)
        with self.check_engine.connect() as connection:
            run = connection.execute(
                select(Run.state, Run.lease_owner, Run.heartbeat_at).where(
                    Run.container_name == name
                )
            ).one_or_none()
            now = connection.execute(text("SELECT t FROM sim.clock")).scalar_one()
        if run is None:
            self.violations.append(f"{self.owner} {method} {name}: no run")
            return
        state, owner, heartbeat_at = run
        is_live = state in {s.value for s in LIVE_RUN_STATES}
        if method == "remove" and not is_live:
            return
        is_fresh = heartbeat_at is not None and now - heartbeat_at <= timedelta(
            seconds=self.lease_ttl_s
        )
        if owner != self.owner or not is_fresh:
            self.violations.append(
                f"{self.owner} {method} {name} without the lease (run {state}, held by {owner})"
            )

    def launch(self, spec: ContainerSpec) -> None:
        self._enter("launch", spec.name)
        self.cloud.launch(spec)

    def status(self, name: str) -> ContainerStatus:
        self._enter("status")
        return self.cloud.status(name)

    def wait(self, name: str, timeout_s: float) -> None:
        self._enter("wait")
        self.cloud.wait(name, timeout_s)

    def logs_since(self, name: str, cursor: int) -> tuple[str, int]:
        self._enter("logs_since")
        container = self.cloud.get(name)
        text_ = container.log(self.cloud.clock.now_s) if container else ""
        return text_[cursor:], len(text_)

    def stop(self, name: str, grace_s: float) -> None:
        self._enter("stop", name)
        self.cloud.stop(name, grace_s)

    def remove(self, name: str) -> None:
        self._enter("remove", name)
        self.cloud.remove(name)

    def list_ours(self) -> list[ContainerInfo]:
        self._enter("list_ours")
        return [
            ContainerInfo(name, {"app": APP_TAG, **c.spec.tags}, self.cloud.status(name))
            for name, c in sorted(self.cloud.containers.items())
        ]


class SimQueue:
    """TaskTiger's contract for clipyard's wake-ups, in memory (an ``Enqueuer``).

    One entry per job and wake key; enqueuing again with a delay only ever moves an
    entry earlier; a task that raised is dropped (TaskTiger's error set: no longer
    "will run"); ``flush`` is Redis coming back empty.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.entries: dict[tuple[uuid.UUID, str], float] = {}

    def enqueue(
        self,
        job_id: uuid.UUID,
        *,
        is_batch: bool,
        max_runtime_s: float,
        delay_s: float | None = None,
        wake_key: str | None = None,
    ) -> None:
        key = (job_id, wake_key or "")
        due = self.clock.now_s + (delay_s or 0.0)
        self.entries[key] = min(due, self.entries.get(key, due))

    def is_queued(
        self, job_id: uuid.UUID, *, is_batch: bool, due_by: datetime | None = None
    ) -> bool:
        by = self.clock.now_s if due_by is None else self.clock.seconds_of(due_by)
        return any(j == job_id and due <= by + 1e-6 for (j, _), due in self.entries.items())

    def pop_due(self) -> uuid.UUID | None:
        """Take the entry due first, if any is due now."""
        due = [(t, key) for key, t in self.entries.items() if t <= self.clock.now_s]
        if not due:
            return None
        _, key = min(due, key=lambda item: (item[0], str(item[1])))
        del self.entries[key]
        return key[0]

    def next_due_s(self) -> float | None:
        """Return when the earliest entry is due."""
        return min(self.entries.values(), default=None)

    def flush(self) -> None:
        """Lose every entry, as when Redis comes back empty."""
        self.entries.clear()
