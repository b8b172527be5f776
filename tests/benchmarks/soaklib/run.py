"""One soak, on either platform: load, a binding budget, faults, drain, checks, figures.

The batch's budget covers about half its rows, so the batch pauses on it while faults
strike; the spend is then checked against the stated bound, the budget raised through
the API, and everything must drain. Faults strike one at a time in three phases: until
the batch pauses, while it is paused (``PAUSED_STRIKES``), and after the budget was
raised, while a user keeps submitting. The last fault (``faults.FINAL_FAULT``) catches a
burst of fresh jobs with nothing submitted after it, so the drain timed from its end is
recovery, not new work.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from PIL import Image

from jobimages.builder import build_templates
from taskmanager.accounts import create_token, create_user
from taskmanager.cost import PriceTable, container_cost, max_billed_seconds
from taskmanager.db import create_db_engine, create_session_factory
from taskmanager.queueing import create_redis, create_tiger
from taskmanager.settings import Settings
from taskmanager.storage import create_storage
from taskmanager.templates import load_templates
from tests.benchmarks.common import emit, wait_for_managers
from tests.benchmarks.soaklib.checks import (
    Findings,
    Money,
    Watcher,
    find_problems,
    try_read_money,
    wait_drained,
)
from tests.benchmarks.soaklib.faults import FaultInjector
from tests.benchmarks.soaklib.load import TEMPLATE, BatchPlan, Client, Load
from tests.benchmarks.soaklib.platforms import Platform
from tests.benchmarks.soaklib.stack import (
    BATCH_MANAGERS,
    INTERACTIVE_MANAGERS,
    Stack,
    compositor_processes,
)

SEED = 20261124
BATCH_ROWS = 200
ROW_GAP_S = 0.3
# A user's jobs arrive this far apart until the last fault, so every fault finds work.
INTERACTIVE_GAP_S = 3.0
BATCH_CONCURRENCY = 4
# Composites measured at once for the budget: about what the soak runs on two cores.
MEASURE_CONCURRENCY = 3
# Small but safe: a postcard composite takes about a second, several under load.
MAX_RUNTIME_S = 60
# Interactive jobs submitted at once just before the last fault, to be caught in it.
FINAL_BURST = 8
# Faults kept back for the paused batch and for after the raise.
PAUSED_STRIKES = 2
RESERVED_STRIKES = 4
PAUSE_DEADLINE_S = 300.0
DRAIN_DEADLINE_S = 240.0
JANITOR_DEADLINE_S = 30.0
USD = Decimal("0.000001")
LOG_DIR = Path(tempfile.gettempdir()) / "clipyard-soak-logs"


def measure_composite_s(folder: Path) -> float:
    """Return a postcard composite's wall time, ``MEASURE_CONCURRENCY`` of them at once.

    The median of two rounds. Several at once, as the soak's containers share the
    machine's cores with each other and with the managers.
    """
    photo = folder / "measure.jpg"
    Image.new("RGB", (800, 600), (200, 60, 40)).save(photo, "JPEG")
    command = [
        str(Path(sys.executable).parent / "clipyard-composite"),
        "run",
        "--template-video",
        str(folder / f"{TEMPLATE}.mp4"),
        "--track",
        str(folder / f"{TEMPLATE}.track.json"),
        "--image",
        str(photo),
    ]
    times = []
    for _ in range(2):
        started = time.monotonic()
        processes = [
            subprocess.Popen(
                [*command, "--output", str(folder / f"measure-{index}.mp4")],
                stdout=subprocess.DEVNULL,
            )
            for index in range(MEASURE_CONCURRENCY)
        ]
        for process in processes:
            if process.wait() != 0:
                raise SystemExit(f"measuring a composite failed: exit {process.returncode}")
        times.append(time.monotonic() - started)
    return statistics.median(times)


def seed_accounts(stack: Stack, folder: Path) -> tuple[Client, Client]:
    """Load the template and create an operator and a user; return their API clients."""
    settings = Settings(data_dir=stack.root / "data")
    engine = create_db_engine(stack.postgres.url, pool_size=1)
    sessions = create_session_factory(engine)
    load_templates(sessions, create_storage(settings), folder)
    tokens = []
    for email, role in (("ops@soak.test", "operator"), ("user@soak.test", "user")):
        account = create_user(sessions, email, "soak password 1", role=role)
        tokens.append(create_token(sessions, account.id, "soak")[1])
    engine.dispose()
    return Client(stack.api_url, tokens[0]), Client(stack.api_url, tokens[1])


@dataclass
class Outcome:
    """What one soak measured."""

    at_pause: Money | None
    runs_while_paused: int
    final: Money
    findings: Findings
    leftovers: list[str]
    drain_s: float
    strikes: int
    wall_s: float


def _strike_until_paused(
    injector: FaultInjector, stack: Stack, load: Load, settings: Settings
) -> Money | None:
    """Strike faults until the batch pauses on its budget; return its money then.

    Keeps ``RESERVED_STRIKES`` back; with only those left it waits for the pause. None
    if the batch never paused (its budget did not bind).
    """
    while True:
        money = try_read_money(stack, load.batch_id, settings)
        if money is not None and money.is_budget_paused:
            return money
        if len(injector.plan) > RESERVED_STRIKES:
            injector.strike_next()
            continue
        deadline = time.monotonic() + PAUSE_DEADLINE_S
        while time.monotonic() < deadline:
            money = try_read_money(stack, load.batch_id, settings)
            if money is not None and money.is_budget_paused:
                return money
            if money is not None and money.jobs_by_state == {"succeeded": BATCH_ROWS}:
                return None  # every row ran within the budget
            time.sleep(1.0)
        return None


@dataclass
class Faults:
    """What the faults' three phases saw of the batch's money, and when they ended."""

    at_pause: Money | None
    runs_while_paused: int
    ended: float


def _strike_all(
    injector: FaultInjector,
    stack: Stack,
    load: Load,
    settings: Settings,
    raise_budget: Callable[[], None],
) -> Faults:
    """Strike every planned fault: until the batch pauses, while paused, after the raise.

    ``raise_budget`` is called once the paused batch's spend was read for the bound check.
    """
    at_pause = _strike_until_paused(injector, stack, load, settings)
    runs_while_paused = 0
    if at_pause is not None:
        print(f"# batch paused at {injector.now():.1f} s: {at_pause.describe()}", file=sys.stderr)
        for _ in range(PAUSED_STRIKES):
            injector.strike_next()
        before_raise = try_read_money(stack, load.batch_id, settings)
        if before_raise is not None:
            runs_while_paused = before_raise.runs - at_pause.runs
            at_pause = before_raise  # the spend the bound must hold, just before the raise
    raise_budget()
    while injector.plan and not injector.is_final_next:
        injector.strike_next()
    # The last fault catches a burst of fresh jobs, and nothing is submitted after it:
    # the drain that follows is recovery.
    load.stop_submitting()
    if injector.plan:
        for index in range(FINAL_BURST):
            load.submit_interactive(f"soak-burst-{index}")
        injector.strike_next(is_immediate=True)
    return Faults(at_pause, runs_while_paused, time.monotonic())


def _start(stack: Stack, platform: Platform, settings: Settings) -> tuple[Load, BatchPlan]:
    """Start the stack, size the budget from a measured composite, start the load."""
    folder = stack.root / "templates"
    build_templates(folder, names=[TEMPLATE])
    composite_s = measure_composite_s(folder)
    operator, user = seed_accounts(stack, folder)
    stack.start_api()
    stack.start_managers()
    wait_for_managers(
        create_tiger(settings, create_redis(stack.redis.url)),
        INTERACTIVE_MANAGERS + BATCH_MANAGERS,
    )
    per_job = container_cost(
        PriceTable.from_settings(settings),
        composite_s + platform.launch_overhead_s,
        settings.default_cpu,
        settings.default_memory_gb,
        is_spot=False,
    )
    plan = BatchPlan(
        BATCH_ROWS, (per_job * BATCH_ROWS / 2).quantize(USD), BATCH_CONCURRENCY, MAX_RUNTIME_S
    )
    print(
        f"# a composite takes {composite_s:.2f} s ({MEASURE_CONCURRENCY} at once): "
        f"${per_job} a job; budget ${plan.budget_usd} for {BATCH_ROWS} rows",
        file=sys.stderr,
        flush=True,
    )
    load = Load(operator, user)
    load.create_batch(plan)
    load.start(lambda: load.submit_rows(plan, ROW_GAP_S))
    load.start(lambda: load.submit_interactive_stream(INTERACTIVE_GAP_S))
    return load, plan


def _raise_budget(load: Load, plan: BatchPlan, settings: Settings, origin: float) -> None:
    """Raise the budget through the API to every row billed to its deadline: all must drain."""
    per_row = container_cost(
        PriceTable.from_settings(settings),
        max_billed_seconds(plan.max_runtime_s),
        settings.default_cpu,
        settings.default_memory_gb,
        is_spot=False,
    )
    raised = plan.budget_usd + plan.rows * per_row
    load.operator.call(
        "POST", f"/api/v1/batches/{load.batch_id}/budget", json={"budget_usd": str(raised)}
    )
    print(f"# budget raised to ${raised} at {time.monotonic() - origin:.1f} s", file=sys.stderr)


def _soak(stack: Stack, platform: Platform, settings: Settings, origin: float) -> Outcome:
    watcher = Watcher()
    threading.Thread(target=watcher.run, daemon=True).start()
    load, plan = _start(stack, platform, settings)
    rng = random.Random(SEED)
    injector = FaultInjector(stack, load, rng, platform.faults(stack, rng), origin)
    faults = _strike_all(
        injector, stack, load, settings, lambda: _raise_budget(load, plan, settings, origin)
    )
    load.stop_submitting()
    load.raise_failures()
    print(
        f"# faults struck: {[s.kind for s in injector.strikes]}; "
        f"found nothing to hit: {injector.skipped}",
        file=sys.stderr,
    )
    if not wait_drained(stack, load.accepted, DRAIN_DEADLINE_S):
        print(f"# not drained within {DRAIN_DEADLINE_S:g} s", file=sys.stderr)
    drain_s = time.monotonic() - faults.ended
    # The janitor removes finished containers on its own time: give it a while.
    deadline = time.monotonic() + JANITOR_DEADLINE_S
    while time.monotonic() < deadline and (platform.leftovers(stack) or compositor_processes()):
        time.sleep(1.0)
    watcher.stop.set()
    leftovers = platform.leftovers(stack) + [f"pid {p}" for p in compositor_processes()]
    final = try_read_money(stack, load.batch_id, settings)
    if final is None:
        raise SystemExit("the database did not answer after the drain")
    print(f"# batch at the end: {final.describe()}", file=sys.stderr)
    return Outcome(
        faults.at_pause,
        faults.runs_while_paused,
        final,
        find_problems(stack, BATCH_ROWS, load.accepted, watcher, injector.killed_jobs),
        leftovers,
        drain_s,
        len(injector.strikes),
        time.monotonic() - origin,
    )


def _keep_log(stack: Stack, prefix: str) -> None:
    LOG_DIR.mkdir(exist_ok=True)
    kept = LOG_DIR / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    shutil.copyfile(stack.log_path, kept)
    print(f"# the stack's log: {kept}", file=sys.stderr)


def run_soak(platform: Platform) -> None:
    """Run the soak on ``platform`` and print its figures."""
    origin = time.monotonic()
    # The soak's own view of the settings (prices); the stack's processes get the same.
    settings = Settings.from_env(env_file=None)
    with tempfile.TemporaryDirectory(prefix=f"clipyard-{platform.prefix}-") as directory:
        root = Path(directory)
        try:
            stack = Stack(root, settings, platform.start(root))
            try:
                outcome = _soak(stack, platform, settings, origin)
            finally:
                stack.stop()
                _keep_log(stack, platform.prefix)
        finally:
            platform.close()
    _emit(platform.prefix, outcome)


def _emit_usd(metric: str, value: Decimal, goal: str) -> None:
    """Print a money figure as ``emit`` does, but to the micro-dollar the ledger keeps.

    ``emit`` rounds to four places, which would hide an overspend of a few jobs.
    """
    figure = {"metric": metric, "value": float(value.quantize(USD)), "unit": "USD", "goal": goal}
    print(json.dumps(figure), flush=True)


def _emit(prefix: str, outcome: Outcome) -> None:
    findings, final, at_pause = outcome.findings, outcome.final, outcome.at_pause
    for leftover in outcome.leftovers:
        print(f"# leaked: {leftover}", file=sys.stderr)
    emit(f"{prefix}.jobs_lost", findings.lost, "jobs", "0")
    emit(f"{prefix}.jobs_stuck", findings.stuck, "jobs", "0")
    emit(f"{prefix}.duplicates", findings.duplicates, "jobs", "0")
    leaked = findings.live_runs + len(outcome.leftovers)
    emit(f"{prefix}.leaked_containers", leaked, "containers", "0")
    emit(f"{prefix}.bad_outputs", findings.bad_outputs, "outputs", "0")
    emit(f"{prefix}.extra_attempts", findings.extra_attempts, "runs", "0")
    emit(f"{prefix}.capacity_refusals", findings.capacity_refusals, "runs", "(cost no attempt)")
    emit(f"{prefix}.janitor_removals", findings.janitor_removals, "containers", "")
    _emit_usd(f"{prefix}.janitor_booked_usd", findings.janitor_booked_usd, "")
    is_paused = at_pause is not None and at_pause.is_budget_paused
    emit(f"{prefix}.budget_paused", int(is_paused), "", "1 (budget_exhausted until raised)")
    overspends = [final.overspend_usd]
    mismatches = [final.books_mismatch_usd]
    if at_pause is not None:
        done = at_pause.jobs_by_state.get("succeeded", 0)
        emit(f"{prefix}.rows_succeeded_at_pause", done, "rows", f"about {BATCH_ROWS // 2}")
        emit(f"{prefix}.runs_admitted_while_paused", outcome.runs_while_paused, "runs", "0")
        _emit_usd(f"{prefix}.budget_at_pause_usd", at_pause.budget_usd, "")
        _emit_usd(f"{prefix}.spend_bound_at_pause_usd", at_pause.bound_usd, "")
        _emit_usd(f"{prefix}.spent_at_pause_usd", at_pause.spent_usd, "<= bound")
        overspends.append(at_pause.overspend_usd)
        mismatches.append(at_pause.books_mismatch_usd)
    _emit_usd(f"{prefix}.spend_bound_usd", final.bound_usd, "after the raise")
    _emit_usd(f"{prefix}.spent_usd", final.spent_usd, "<= bound")
    _emit_usd(f"{prefix}.overspend_usd", max(overspends), "0 (at the pause and at the end)")
    _emit_usd(f"{prefix}.books_mismatch_usd", max(mismatches), "0")
    emit(f"{prefix}.faults", outcome.strikes, "faults", "")
    emit(f"{prefix}.drain_s", outcome.drain_s, "s", "<= 60 after the last fault")
    emit(f"{prefix}.wall_s", outcome.wall_s, "s", "<= 600")
