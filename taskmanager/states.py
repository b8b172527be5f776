"""The job and run state machines, and every other closed set of words the domain stores.

Job and run states, batch states, why a batch waits, how an attempt failed and why a
manager stopped a container: each is one ``StrEnum`` here, used everywhere.

Anything that changes a job's or a run's state goes through ``check_job_transition`` /
``check_run_transition`` (see ``transitions.py``), so a transition that is not listed
here cannot happen, whatever the caller.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        """Tell whether the job has finished (until someone retries it by hand)."""
        return self in TERMINAL_JOB_STATES

    @property
    def is_active(self) -> bool:
        """Tell whether a container may exist for the job right now."""
        return self in ACTIVE_JOB_STATES


TERMINAL_JOB_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT}
)
# Jobs holding a container (or about to).
ACTIVE_JOB_STATES = frozenset({JobState.STARTING, JobState.RUNNING})

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # Admitted and about to launch; refused for good (e.g. its template was removed);
    # cancelled before it ever ran.
    JobState.QUEUED: frozenset({JobState.STARTING, JobState.FAILED, JobState.CANCELLED}),
    # The container may finish before a poll ever sees it running, hence the direct
    # edges to every outcome. Back to QUEUED when the launch was refused for a
    # passing reason (capacity, rate limit) before anything ran.
    JobState.STARTING: frozenset(
        {
            JobState.RUNNING,
            JobState.QUEUED,
            JobState.RETRY_WAIT,
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.TIMED_OUT,
        }
    ),
    JobState.RUNNING: frozenset(
        {
            JobState.RETRY_WAIT,
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.TIMED_OUT,
        }
    ),
    # Backoff over: the next attempt is queued; or the job is cancelled meanwhile.
    JobState.RETRY_WAIT: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    # A person may retry a job that ended badly; a success is final.
    JobState.FAILED: frozenset({JobState.QUEUED}),
    JobState.CANCELLED: frozenset({JobState.QUEUED}),
    JobState.TIMED_OUT: frozenset({JobState.QUEUED}),
    JobState.SUCCEEDED: frozenset(),
}


class RunState(StrEnum):
    """Where one attempt's container is in its life."""

    PENDING = "pending"  # row written, container not yet asked for
    LAUNCHING = "launching"  # create requested, not yet seen running
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # exited non-zero or was refused by the backend
    CANCELLED = "cancelled"  # stopped because the job was cancelled
    TIMED_OUT = "timed_out"  # killed at the deadline or for stalled progress
    LOST = "lost"  # the container vanished without an exit we could read

    @property
    def is_terminal(self) -> bool:
        """Tell whether this attempt is over."""
        return self in TERMINAL_RUN_STATES


TERMINAL_RUN_STATES = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.TIMED_OUT, RunState.LOST}
)

# A run in one of these may have a container: it counts against every cap.
LIVE_RUN_STATES = frozenset({RunState.PENDING, RunState.LAUNCHING, RunState.RUNNING})

_RUN_OUTCOMES = frozenset(TERMINAL_RUN_STATES)

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.PENDING: frozenset({RunState.LAUNCHING}) | _RUN_OUTCOMES,
    RunState.LAUNCHING: frozenset({RunState.RUNNING}) | _RUN_OUTCOMES,
    RunState.RUNNING: _RUN_OUTCOMES,
    **{state: frozenset() for state in TERMINAL_RUN_STATES},
}


class BatchState(StrEnum):
    """Whether a batch admits its jobs."""

    OPEN = "open"
    PAUSED = "paused"  # admits nothing until an operator acts (see ``paused_reason``)
    CANCELLED = "cancelled"
    FINISHED = "finished"


class PausedReason(StrEnum):
    """Why a batch admits no more jobs for now (its ``paused_reason``)."""

    # The budget cannot pay for another job: paused until an operator raises it.
    BUDGET_EXHAUSTED = "budget_exhausted"
    # Still open: the next job waits for running ones to settle their reservations.
    BUDGET_WAIT = "budget_wait"


class StopReason(StrEnum):
    """Why a manager stopped a container that was still running."""

    CANCELLED = "cancelled"
    DEADLINE = "deadline"
    STALLED = "stalled"


class FailureKind(StrEnum):
    """How an attempt ended badly (a run's ``failure_kind``, a job's ``error_code``)."""

    BAD_INPUT = "bad_input"  # the compositor's exit 2: another attempt cannot help
    STORAGE = "storage"  # exit 3: blob storage unreachable from the container
    KILLED = "killed"  # out of memory or killed from outside
    CRASH = "crash"  # any other non-zero exit
    LOST = "lost"  # the container vanished without an exit code
    EVICTED = "evicted"  # Spot capacity reclaimed
    CAPACITY = "capacity"  # the backend refused the launch for now (quota, rate)
    LAUNCH = "launch"  # the backend refused the launch for good
    IMAGE_PULL = "image_pull"
    PROVISIONING_FAILED = "provisioning_failed"
    CANCELLED = "cancelled"
    DEADLINE = "deadline"  # ran past max_runtime_s
    STALLED = "stalled"  # reported no progress for too long


class InvalidTransition(Exception):
    """A state change that the state machine does not allow."""

    def __init__(self, kind: str, current: str, target: str) -> None:
        super().__init__(f"a {kind} cannot go from {current!r} to {target!r}")
        self.kind = kind
        self.current = current
        self.target = target


def is_job_transition_allowed(current: JobState, target: JobState) -> bool:
    """Tell whether a job may move from ``current`` to ``target``."""
    return target in JOB_TRANSITIONS[current]


def is_run_transition_allowed(current: RunState, target: RunState) -> bool:
    """Tell whether a run may move from ``current`` to ``target``."""
    return target in RUN_TRANSITIONS[current]


def check_job_transition(current: JobState, target: JobState) -> None:
    """Raise ``InvalidTransition`` unless a job may move from ``current`` to ``target``."""
    if not is_job_transition_allowed(current, target):
        raise InvalidTransition("job", current.value, target.value)


def check_run_transition(current: RunState, target: RunState) -> None:
    """Raise ``InvalidTransition`` unless a run may move from ``current`` to ``target``."""
    if not is_run_transition_allowed(current, target):
        raise InvalidTransition("run", current.value, target.value)
