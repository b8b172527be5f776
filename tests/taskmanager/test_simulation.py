"""Supervision explored by simulation: thousands of interleavings of faults in seconds.

Hypothesis drives three managers, the reconciler and the job service (the real code,
against the real PostgreSQL) through the simulated world of ``simulation.py``: jobs
and a batch whose budget binds, managers crashing or pausing past their lease at any
call to the cloud, a throttling or failing control plane, database outages longer
than the managers' retries, a lost queue, vanished and evicted containers, slow
provisioning and containers that ignore SIGTERM. After every step it checks:

- at most one live container per job (and so per attempt);
- no manager acted on a container without holding its run's lease, fresh;
- a batch's spend stays within its stated bound (``batch_spend_bound``);

and once the faults stop: every job reaches a terminal state, no container is left,
and the books (each job's cost) equal what the cloud says it ran.

The seed is fixed and the examples bounded, so CI runs the same exploration every
time; a failure prints the shortest sequence of steps that reproduces it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from taskmanager.batches.service import BatchRequest, create_batch, set_budget
from taskmanager.cost import PriceTable, batch_spend_bound, container_cost
from taskmanager.db import create_db_engine, create_session_factory
from taskmanager.jobs import JobRequest, cancel_job, submit_job
from taskmanager.models import Batch, Job, Run
from taskmanager.settings import Settings
from taskmanager.states import TERMINAL_JOB_STATES
from taskmanager.storage import create_storage
from taskmanager.supervision.liveness import LivenessWatcher, Presence
from taskmanager.supervision.reconciler import reconcile
from taskmanager.supervision.runtime import Runtime
from taskmanager.supervision.supervisor import Supervisor
from tests.services import ThrowawayDatabases
from tests.taskmanager.conftest import FAST
from tests.taskmanager.factories import make_owner_upload_template
from tests.taskmanager.simulation import (
    SIM_SEARCH_PATH,
    Actor,
    Clock,
    DatabaseOutage,
    ScheduledFault,
    SimCloud,
    SimContainer,
    SimCrash,
    SimQueue,
    SimShutdown,
    Throttle,
)

MANAGERS = ("m0", "m1", "m2")
MAX_JOBS = 8
# What the cloud's books and ours may differ by per container: none but rounding.
CENTS = Decimal("0.000002")
TERMINAL = {state.value for state in TERMINAL_JOB_STATES}


class World:
    """One example's world: a fresh database, the simulated cloud, queue and managers."""

    def __init__(self, databases: ThrowawayDatabases, data_dir: Path) -> None:
        self.databases = databases
        self.url = databases.create()
        self.check_engine = create_db_engine(self.url, pool_size=1)
        self.clock = Clock(self.check_engine)
        self.clock.install()
        sep = "&" if "?" in self.url else "?"
        path = SIM_SEARCH_PATH.replace(",", "%2C")
        self.engine = create_db_engine(f"{self.url}{sep}options=-csearch_path%3D{path}")
        self.outage = DatabaseOutage(self.clock, self.engine)
        # Polling once a simulated second: fewer steps per job, the same interleavings.
        timings: dict[str, Any] = {
            **FAST,
            "poll_interval_s": 1.0,
            "lease_ttl_s": 3.0,
            "stall_timeout_s": 20.0,  # before the longer deadline, after an outage
        }
        self.settings = Settings(data_dir=data_dir, **timings)
        self.cloud = SimCloud(self.clock)
        self.queue = SimQueue(self.clock)
        self.violations: list[str] = []
        self.nesting = 0
        sessions = create_session_factory(self.engine)
        storage = create_storage(self.settings)
        self.runtimes: dict[str, Runtime] = {}
        self.actors: dict[str, Actor] = {}
        for owner in (*MANAGERS, "reconciler", "client"):
            actor = Actor(
                self.cloud,
                owner,
                self.check_engine,
                self.settings.lease_ttl_s,
                self.violations,
                self.strike,
            )
            self.actors[owner] = actor
            self.runtimes[owner] = Runtime(
                settings=self.settings,
                engine=self.engine,
                sessions=sessions,
                backend=actor,
                storage=storage,
                enqueuer=self.queue,
                shutdown=SimShutdown(self.clock),
                clock=self.clock,
            )
        self.client = self.runtimes["client"]
        with self.client.sessions.begin() as session:
            self.owner_id, self.upload_id = make_owner_upload_template(session, "frame")
        prices = PriceTable.from_settings(self.settings)
        # A budget for about half of MAX_JOBS batch jobs of a few seconds.
        self.batch = create_batch(
            self.client.sessions,
            self.settings,
            BatchRequest(
                owner_id=self.owner_id,
                name="sim",
                budget_usd=container_cost(
                    prices, 4 * 6.0, Decimal(1), Decimal("1.5"), is_spot=False
                ),
                max_concurrent=2,
            ),
        )
        self.jobs: list[uuid.UUID] = []
        # Each manager's live process: its presence lock (a real session) and its id.
        self.presences: dict[str, Presence] = {}
        self.incarnations: dict[str, int] = {}
        self.watcher = LivenessWatcher(self.runtimes["reconciler"])

    def close(self) -> None:
        """Release the example's connections and drop its database."""
        for presence in self.presences.values():
            presence.stop()
        self.engine.dispose()
        self.check_engine.dispose()
        self.databases.drop(self.url)

    # --- what managers and the reconciler do --------------------------------------------

    def run_task(self, owner: str) -> bool:
        """Let ``owner`` take the queue's next due wake-up and supervise it; False if none."""
        job_id = self.queue.pop_due()
        if job_id is None:
            return False
        manager_id = self.alive(owner)
        try:
            Supervisor(self.runtimes[owner], manager_id).supervise(job_id)
        except SimCrash:
            # The process died: its session, and so its presence lock, goes with it.
            self.presences.pop(owner).stop()
        except OperationalError:
            pass  # the task raised: TaskTiger keeps it in its error set (not re-run)
        return True

    def alive(self, owner: str) -> str:
        """Return the manager id of ``owner``'s live process, starting one if it died."""
        if owner not in self.presences:
            self.incarnations[owner] = self.incarnations.get(owner, 0) + 1
            manager_id = f"{owner}.{self.incarnations[owner]}"
            self.presences[owner] = Presence(self.url, manager_id).start()
            self.actors[owner].owner = manager_id
        return self.presences[owner].manager_id

    def liveness(self) -> None:
        """Run one liveness pass as every ``clipyard worker`` does."""
        with contextlib.suppress(OperationalError):
            self.watcher.check()

    def reconcile(self) -> None:
        """Run one reconciler pass as ``clipyard worker`` does (a failure is retried later)."""
        with contextlib.suppress(OperationalError, SimCrash):
            reconcile(self.runtimes["reconciler"])

    def strike(self, owner: str, kind: str) -> None:
        """A fault strikes while ``owner`` is in the middle of supervising."""
        if kind == "pause":
            self.pause(owner)
        elif kind == "outage":
            self.outage.until_s = self.clock.now_s + 40.0
        elif kind == "cancel" and self.jobs:
            with contextlib.suppress(OperationalError):
                cancel_job(self.client.sessions, self.jobs[-1])
        elif kind == "lose_container":
            for container in self.cloud.live()[:1]:
                self.cloud.remove(container.spec.name)

    def pause(self, owner: str) -> None:
        """``owner`` is stopped (SIGSTOP) for three lease TTLs while the world moves on."""
        if self.nesting:
            return  # one pause at a time is enough to interleave
        self.nesting += 1
        self.outage.is_pausing = True
        try:
            for _ in range(3):
                self.clock.advance(self.settings.lease_ttl_s)
                self.liveness()
                self.reconcile()
                for other in MANAGERS:
                    if other != owner:
                        self.run_task(other)
        finally:
            self.outage.is_pausing = False
            self.nesting -= 1

    # --- what is checked ------------------------------------------------------------------

    def live_containers_per_job(self) -> dict[str, int]:
        """Count each job's containers still provisioning or running."""
        counts: dict[str, int] = {}
        for container in self.cloud.live():
            job_id = container.spec.tags["job_id"]
            counts[job_id] = counts.get(job_id, 0) + 1
        return counts

    def price(self, container: SimContainer, seconds: float) -> Decimal:
        """Return what ``seconds`` of ``container`` cost, as the cloud prices it."""
        spec = container.spec
        prices = PriceTable.from_settings(self.settings)
        return container_cost(prices, seconds, spec.cpu, spec.memory_gb, is_spot=spec.is_spot)


class SupervisionSimulation(RuleBasedStateMachine):
    """Rules are what may happen; invariants are what must hold after each."""

    databases: ThrowawayDatabases
    data_dir: Path

    def __init__(self) -> None:
        super().__init__()
        self.world = World(self.databases, self.data_dir)

    @initialize()
    def a_first_job(self) -> None:
        self.submit(seconds=3.0, exit_codes=[0], in_batch=False, max_runtime_s=60)

    # --- work arriving --------------------------------------------------------------------

    @precondition(lambda self: len(self.world.jobs) < MAX_JOBS)
    @rule(
        # 300: a container that hangs (one step, never done): it stalls, or times out.
        seconds=st.sampled_from([1.0, 3.0, 8.0, 300.0]),
        exit_codes=st.sampled_from([[0], [3, 0], [3, 3, 3], [1, 0]]),
        in_batch=st.booleans(),
        max_runtime_s=st.sampled_from([5, 60]),
    )
    def submit(
        self, seconds: float, exit_codes: list[int], in_batch: bool, max_runtime_s: int
    ) -> None:
        world = self.world
        request = JobRequest(
            owner_id=world.owner_id,
            template_name="frame",
            upload_id=world.upload_id,
            batch_id=world.batch.id if in_batch else None,
            row_id=f"row-{len(world.jobs)}" if in_batch else None,
            max_runtime_s=max_runtime_s,
            max_attempts=3,
            params={
                "fake": {
                    "seconds": seconds,
                    "steps": 1 if seconds > 60 else 4,
                    "exit_codes": exit_codes,
                }
            },
        )
        try:
            job, _ = submit_job(world.client.sessions, world.queue, world.settings, request)
        except OperationalError:
            return  # the API answered 503; the client will try again (not modelled)
        world.jobs.append(job.id)

    @precondition(lambda self: bool(self.world.jobs))
    @rule(index=st.integers(0, MAX_JOBS - 1))
    def cancel(self, index: int) -> None:
        job_id = self.world.jobs[index % len(self.world.jobs)]
        with contextlib.suppress(OperationalError):
            cancel_job(self.world.client.sessions, job_id)

    # --- managers, reconciler and time ---------------------------------------------------

    @rule(manager=st.sampled_from(MANAGERS))
    def a_manager_takes_a_task(self, manager: str) -> None:
        if not self.world.run_task(manager):
            self.world.clock.advance(0.5)

    @rule()
    def reconciler_pass(self) -> None:
        self.world.reconcile()

    @rule()
    def liveness_pass(self) -> None:
        self.world.liveness()

    @rule(seconds=st.sampled_from([0.5, 2.0, 10.0]))
    def time_passes(self, seconds: float) -> None:
        self.world.clock.advance(seconds)

    # --- faults ---------------------------------------------------------------------------

    @rule(
        manager=st.sampled_from(MANAGERS),
        at_call=st.integers(1, 40),
        kind=st.sampled_from(["crash", "pause", "outage", "cancel", "lose_container"]),
    )
    def a_manager_will_fail(self, manager: str, at_call: int, kind: str) -> None:
        actor = self.world.actors[manager]
        actor.faults.append(ScheduledFault(actor.calls + at_call, kind))

    @rule(
        method=st.sampled_from(["status", "launch", "stop", "remove", "list_ours"]),
        times=st.integers(1, 6),
        retry_after_s=st.sampled_from([None, 1.0, 30.0]),
        status_code=st.sampled_from([429, 503]),
    )
    def the_control_plane_refuses(
        self, method: str, times: int, retry_after_s: float | None, status_code: int
    ) -> None:
        self.world.cloud.throttles[method] = Throttle(times, retry_after_s, status_code)

    @rule(seconds=st.sampled_from([5.0, 40.0]))
    def the_database_goes_down(self, seconds: float) -> None:
        self.world.outage.until_s = self.world.clock.now_s + seconds

    @rule()
    def redis_comes_back_empty(self) -> None:
        self.world.queue.flush()

    @rule(index=st.integers(0, 7), how=st.sampled_from(["vanish", "evict"]))
    def a_container_is_lost(self, index: int, how: str) -> None:
        live = self.world.cloud.live()
        if not live:
            return
        container = live[index % len(live)]
        if how == "vanish":
            self.world.cloud.remove(container.spec.name)
        elif self.world.clock.now_s >= container.start_s:
            container.end(self.world.clock.now_s, 137, detail="evicted")

    @rule(seconds=st.sampled_from([0.5, 15.0]))
    def provisioning_takes(self, seconds: float) -> None:
        self.world.cloud.provision_s = seconds

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def one_live_container_per_job(self) -> None:
        doubled = {job: n for job, n in self.world.live_containers_per_job().items() if n > 1}
        assert not doubled, f"jobs with more than one live container: {doubled}"

    @invariant()
    def no_stale_manager_acted(self) -> None:
        assert not self.world.violations, self.world.violations

    @invariant()
    def the_batch_stays_within_its_bound(self) -> None:
        with create_session_factory(self.world.check_engine)() as session:
            batch = session.get_one(Batch, self.world.batch.id)
            bound = batch_spend_bound(session, batch, self.world.settings)
        assert batch.spent_usd <= bound, (batch.spent_usd, bound)

    # --- once the faults stop -------------------------------------------------------------

    def teardown(self) -> None:
        world = self.world
        try:
            if not world.violations:
                self._drain_and_check()
        finally:
            world.close()

    def _drain_and_check(self) -> None:
        world = self.world
        world.cloud.throttles.clear()
        world.cloud.provision_s = 0.5
        world.outage.until_s = 0.0
        for actor in world.actors.values():
            actor.faults.clear()
        # The operator raises the budget (what `batch budget --set` does), so every job
        # can finish: the bound was checked after every step up to here.
        set_budget(world.client.sessions, world.queue, world.batch.id, Decimal(1000))
        for _ in range(2000):
            world.liveness()
            world.reconcile()
            while world.run_task(MANAGERS[0]):
                pass
            if self._unfinished() == 0 and not world.cloud.containers:
                break
            world.clock.advance(1.0)
        assert self._unfinished() == 0, self._describe()
        assert not world.cloud.containers, f"left behind: {sorted(world.cloud.containers)}"
        self._check_books()

    def _unfinished(self) -> int:
        with create_session_factory(self.world.check_engine)() as session:
            states = session.scalars(select(Job.state)).all()
        return sum(state not in TERMINAL for state in states)

    def _describe(self) -> str:
        with create_session_factory(self.world.check_engine)() as session:
            jobs = session.execute(select(Job.id, Job.state, Job.attempt)).all()
        return f"jobs: {jobs}; queue: {self.world.queue.entries}"

    def _check_books(self) -> None:
        world = self.world
        billed = world.cloud.billed_usd_by_job(world.price)
        with create_session_factory(world.check_engine)() as session:
            booked: dict[str, Decimal] = {}
            for run in session.scalars(select(Run)):
                job = str(run.job_id)
                booked[job] = booked.get(job, Decimal(0)) + (run.cost_usd or Decimal(0))
            actual = {str(j.id): j.actual_cost_usd for j in session.scalars(select(Job))}
        for job, cost in billed.items():
            runs = sum(1 for c in world.cloud.history if c.spec.tags["job_id"] == job)
            assert abs(booked.get(job, Decimal(0)) - cost) <= CENTS * runs, (job, booked, billed)
            assert abs(actual[job] - cost) <= CENTS * runs, (job, actual, billed)


def _simulation(databases: ThrowawayDatabases, tmp_path: Path) -> type[SupervisionSimulation]:
    class Simulation(SupervisionSimulation):
        pass

    Simulation.databases = databases
    Simulation.data_dir = tmp_path / "data"
    return Simulation


def test_supervision_holds_under_simulated_faults(
    test_databases: ThrowawayDatabases, tmp_path: Path
) -> None:
    """Explore with a fixed seed and a bounded number of examples (CI's share)."""
    run_state_machine_as_test(
        _simulation(test_databases, tmp_path),
        settings=settings(
            max_examples=int(os.environ.get("CLIPYARD_SIM_EXAMPLES", "100")),
            stateful_step_count=40,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        ),
    )


def _replay(
    databases: ThrowawayDatabases,
    tmp_path: Path,
    first_job: dict[str, Any],
    fault: dict[str, Any],
) -> None:
    """Replay one fixed sequence: a job, a fault armed on m0, m0 supervising; then check
    the invariants after the step and, at teardown, the drain and the books."""
    machine = _simulation(databases, tmp_path)()
    try:
        machine.submit(**first_job)
        machine.a_manager_will_fail(manager="m0", **fault)
        machine.a_manager_takes_a_task(manager="m0")
        machine.no_stale_manager_acted()
        machine.one_live_container_per_job()
    finally:
        machine.teardown()


_SHORT_JOB = {"seconds": 3.0, "exit_codes": [0], "in_batch": False, "max_runtime_s": 60}


def test_a_manager_paused_past_its_adopters_whole_attempt_changes_nothing(
    test_databases: ThrowawayDatabases, tmp_path: Path
) -> None:
    """Found by the simulation: the paused manager, resuming, saw the container gone
    (its adopter had finished and removed it) and tried to record the run lost, over
    the adopter's "succeeded": a crash, where fencing must simply say "not yours"."""
    _replay(test_databases, tmp_path, _SHORT_JOB, {"at_call": 10, "kind": "pause"})


def test_a_creator_paused_before_its_create_request_is_billed_from_the_adopters(
    test_databases: ThrowawayDatabases, tmp_path: Path
) -> None:
    """Found by the simulation: the adopter relaunched under the creator's old
    ``launched_at``, so the run was billed (and its deadline counted) from a create
    request that was only sent seconds later; the creator's late request then made a
    container for an ended run."""
    _replay(test_databases, tmp_path, _SHORT_JOB, {"at_call": 1, "kind": "pause"})


def test_a_manager_cut_off_from_the_database_stops_nothing(
    test_databases: ThrowawayDatabases, tmp_path: Path
) -> None:
    """Issue 15, item 5, as a fixed example: a container stalls while its manager cannot
    reach PostgreSQL; the manager must not stop it (another may hold the run by now)."""
    hanging = {**_SHORT_JOB, "seconds": 300.0}
    _replay(test_databases, tmp_path, hanging, {"at_call": 20, "kind": "outage"})
