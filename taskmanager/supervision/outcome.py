"""How an attempt ended: the container's exit, the backend's word, or the manager's stop.

Classification decides everything finishing does next: the run's final state, what the
job is told, and whether another attempt could do better.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from taskmanager.backends.base import BackendError, ContainerState, ContainerStatus
from taskmanager.states import FailureKind, RunState, StopReason
from taskmanager.supervision.progress import ProgressTracker

# Backend details that another attempt cannot fix.
_PERMANENT_DETAILS = {
    FailureKind.IMAGE_PULL: (
        "the container image could not be pulled: check the image name and registry"
    ),
    FailureKind.PROVISIONING_FAILED: (
        "the container group could not be provisioned: check its spec"
    ),
}
# What backends report for a container killed from outside (OOM included).
_KILLED_DETAILS = frozenset({"oom_or_killed", "oom", "killed"})
# Failures of capacity, not of the job: retried without using up an attempt.
CAPACITY_KINDS = frozenset({FailureKind.EVICTED, FailureKind.CAPACITY})

# The compositor's documented exit codes (see jobimages): 2 bad input, 3 storage,
# 124 its own deadline came.
EXIT_BAD_INPUT = 2
EXIT_STORAGE = 3
EXIT_DEADLINE = 124


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended and whether another attempt could do better."""

    run_state: RunState
    failure_kind: FailureKind | None
    is_retryable: bool
    exit_code: int | None = None
    message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    peak_rss_mb: float | None = None
    cpu_seconds: float | None = None
    # The backend's own advice on when to try again (Retry-After), if it gave one.
    retry_after_s: float | None = None
    # False when no container ever ran (refused, or cancelled first): nothing to bill.
    is_launched: bool = True

    @classmethod
    def _of(
        cls,
        status: ContainerStatus,
        run_state: RunState,
        failure_kind: FailureKind | None,
        *,
        is_retryable: bool,
        message: str | None,
    ) -> Outcome:
        return cls(
            run_state,
            failure_kind,
            is_retryable,
            exit_code=status.exit_code,
            message=message,
            started_at=status.started_at,
            finished_at=status.finished_at,
            peak_rss_mb=status.peak_rss_mb,
            cpu_seconds=status.cpu_seconds,
        )

    @classmethod
    def from_status(cls, status: ContainerStatus, tracker: ProgressTracker) -> Outcome:
        """Classify a container that ended on its own (or vanished).

        What the backend says about why (evicted, image pull) outranks how it ended.
        """
        message = tracker.error_message() or _tail_message(tracker)
        for kind, explanation in _PERMANENT_DETAILS.items():
            if status.detail == kind:
                return cls._of(
                    status, RunState.FAILED, kind, is_retryable=False, message=explanation
                )
        if status.detail == FailureKind.EVICTED:
            return cls._of(
                status,
                RunState.FAILED,
                FailureKind.EVICTED,
                is_retryable=True,
                message="Spot capacity was reclaimed (evicted)",
            )
        if status.state in (ContainerState.LOST, ContainerState.NOT_FOUND):
            return cls._of(
                status,
                RunState.LOST,
                FailureKind.LOST,
                is_retryable=True,
                message="the container vanished without an exit code",
            )
        code = status.exit_code
        if code == 0:
            return cls._of(status, RunState.SUCCEEDED, None, is_retryable=False, message=None)
        if code == EXIT_BAD_INPUT:
            return cls._of(
                status, RunState.FAILED, FailureKind.BAD_INPUT, is_retryable=False, message=message
            )
        if code == EXIT_STORAGE:
            return cls._of(
                status, RunState.FAILED, FailureKind.STORAGE, is_retryable=True, message=message
            )
        kind = FailureKind.KILLED if status.detail in _KILLED_DETAILS else FailureKind.CRASH
        message = message or f"the container exited with code {code}"
        return cls._of(status, RunState.FAILED, kind, is_retryable=True, message=message)

    @classmethod
    def stopped(
        cls, reason: StopReason, status: ContainerStatus, tracker: ProgressTracker
    ) -> Outcome:
        """Classify a container the manager stopped: cancelled, deadline or stalled."""
        if reason is StopReason.CANCELLED:
            return cls._of(
                status,
                RunState.CANCELLED,
                FailureKind.CANCELLED,
                is_retryable=False,
                message="cancelled",
            )
        if reason is StopReason.DEADLINE:
            return cls._of(
                status,
                RunState.TIMED_OUT,
                FailureKind.DEADLINE,
                is_retryable=False,
                message="the job ran past its max_runtime_s and was stopped",
            )
        return cls._of(
            status,
            RunState.TIMED_OUT,
            FailureKind.STALLED,
            is_retryable=True,
            message=f"no progress for too long ({tracker.done}/{tracker.total} done)",
        )

    @classmethod
    def not_launched(cls) -> Outcome:
        """Classify an attempt cancelled before its container was started."""
        return cls(
            RunState.CANCELLED,
            FailureKind.CANCELLED,
            False,
            message="cancelled before launch",
            is_launched=False,
        )

    @classmethod
    def launch_failed(cls, error: BackendError) -> Outcome:
        """Classify a launch the backend refused: capacity and rate limits come back later."""
        kind = FailureKind.CAPACITY if error.is_retryable else FailureKind.LAUNCH
        return cls(
            RunState.FAILED,
            kind,
            error.is_retryable,
            message=str(error),
            retry_after_s=error.retry_after_s,
            is_launched=False,
        )


def _tail_message(tracker: ProgressTracker) -> str | None:
    return tracker.tail[-1] if tracker.tail else None


def backoff_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Return the wait before the next attempt: exponential, capped, with jitter.

    "Equal jitter": half the exponential delay is kept, half is random, so retries of
    many jobs that failed together spread out but none retries at once.
    """
    delay = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return float(delay / 2 + random.uniform(0, delay / 2))  # noqa: S311 - not for security
