"""The job and run state machines: every allowed and every forbidden transition."""

from __future__ import annotations

import itertools

import pytest

from taskmanager.states import (
    JOB_TRANSITIONS,
    RUN_TRANSITIONS,
    InvalidTransition,
    JobState,
    RunState,
    check_job_transition,
    check_run_transition,
)

ALLOWED_JOB = {
    ("queued", "starting"),
    ("queued", "failed"),
    ("queued", "cancelled"),
    ("starting", "running"),
    ("starting", "queued"),
    ("starting", "retry_wait"),
    ("starting", "succeeded"),
    ("starting", "failed"),
    ("starting", "cancelled"),
    ("starting", "timed_out"),
    ("running", "retry_wait"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "cancelled"),
    ("running", "timed_out"),
    ("retry_wait", "queued"),
    ("retry_wait", "cancelled"),
    ("failed", "queued"),
    ("cancelled", "queued"),
    ("timed_out", "queued"),
}

ALLOWED_RUN = {
    (source, target)
    for source in ("pending", "launching")
    for target in ("succeeded", "failed", "cancelled", "timed_out", "lost")
} | {
    ("pending", "launching"),
    ("launching", "running"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "cancelled"),
    ("running", "timed_out"),
    ("running", "lost"),
}

JOB_PAIRS = list(itertools.product(JobState, repeat=2))
RUN_PAIRS = list(itertools.product(RunState, repeat=2))


@pytest.mark.parametrize(("source", "target"), JOB_PAIRS, ids=[f"{a}->{b}" for a, b in JOB_PAIRS])
def test_job_transition_is_allowed_exactly_when_listed(source: JobState, target: JobState) -> None:
    if (source.value, target.value) in ALLOWED_JOB:
        check_job_transition(source, target)
    else:
        with pytest.raises(InvalidTransition, match=f"from '{source}' to '{target}'"):
            check_job_transition(source, target)


@pytest.mark.parametrize(("source", "target"), RUN_PAIRS, ids=[f"{a}->{b}" for a, b in RUN_PAIRS])
def test_run_transition_is_allowed_exactly_when_listed(source: RunState, target: RunState) -> None:
    if (source.value, target.value) in ALLOWED_RUN:
        check_run_transition(source, target)
    else:
        with pytest.raises(InvalidTransition):
            check_run_transition(source, target)


def test_every_state_has_an_entry_and_success_is_final() -> None:
    assert set(JOB_TRANSITIONS) == set(JobState)
    assert set(RUN_TRANSITIONS) == set(RunState)
    assert JOB_TRANSITIONS[JobState.SUCCEEDED] == frozenset()
    assert all(not RUN_TRANSITIONS[state] for state in RunState if state.is_terminal)


def test_no_state_moves_to_itself() -> None:
    assert all(state not in JOB_TRANSITIONS[state] for state in JobState)
    assert all(state not in RUN_TRANSITIONS[state] for state in RunState)
