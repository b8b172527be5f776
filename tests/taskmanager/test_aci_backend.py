"""The ACI backend through the real Azure SDK against the ARM emulator."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import structlog
from pydantic import SecretStr

from taskmanager.backends.aci import CREATED_TAG, AciBackend
from taskmanager.backends.aci_client import AciConfigurationError
from taskmanager.backends.aci_factory import create_aci_backend
from taskmanager.backends.base import BackendError, ContainerSpec, ContainerState
from taskmanager.settings import Settings
from tests.armemulator import ArmEmulator
from tests.armemulator.fixtures import arm_emulator, emulator_settings  # noqa: F401
from tests.services import wait_until

SECRET = "sv=2024-01-01&sig=TOPSECRETSIGNATURE"
# Prints 400 numbered lines (about 20 KB), then waits to be stopped.
CHATTY = [
    sys.executable,
    "-I",
    "-S",
    "-c",
    "import sys, time\n"
    "for i in range(400): print(f'line {i:04d} ' + 'x' * 40, flush=True)\n"
    "time.sleep(120)\n",
]


def aci_settings(emulator: ArmEmulator, redis_url: str, **overrides: Any) -> Settings:
    """Return settings pointing the aci backend at the emulator, with short timings."""
    fields: dict[str, Any] = {
        "redis_url": SecretStr(redis_url),
        **emulator_settings(emulator),
        **overrides,
    }
    return Settings(**fields)


@pytest.fixture
def make_backend(arm_emulator: ArmEmulator, redis_url: str) -> Callable[..., AciBackend]:  # noqa: F811
    def make(**overrides: Any) -> AciBackend:
        return create_aci_backend(aci_settings(arm_emulator, redis_url, **overrides))  # type: ignore[return-value]

    return make


@pytest.fixture
def backend(make_backend: Callable[..., AciBackend]) -> AciBackend:
    return make_backend()


def _spec(name: str, *args: str, image: str = "fake", **fields: Any) -> ContainerSpec:
    return ContainerSpec(
        name=name,
        image=image,
        args=list(args),
        cpu=Decimal(1),
        memory_gb=Decimal("1.5"),
        tags={"app": "clipyard", "job_id": "j", "attempt": "1"},
        **fields,
    )


def _wait_state(backend: AciBackend, name: str, state: ContainerState) -> None:
    wait_until(lambda: backend.status(name).state is state, 20, f"{name} {state.value}")


def test_runs_reports_logs_and_exit_code(backend: AciBackend, arm_emulator: ArmEmulator) -> None:  # noqa: F811
    spec = _spec(
        "g1",
        "--seconds",
        "0.3",
        "--steps",
        "3",
        "--exit-code",
        "5",
        secure_env={"CLIPYARD_OUTPUT_URL": f"https://a/b?{SECRET}"},
        env={"PLAIN": "1"},
    )
    backend.launch(spec)
    _wait_state(backend, "g1", ContainerState.EXITED)
    status = backend.status("g1")
    assert status.exit_code == 5
    assert status.started_at is not None
    assert status.finished_at is not None
    assert status.finished_at >= status.started_at
    text, cursor = backend.logs_since("g1", 0)
    events = [json.loads(line)["event"] for line in text.splitlines()]
    assert events == ["start", "progress", "progress", "progress", "error"]
    assert backend.logs_since("g1", cursor) == ("", cursor)
    sent = arm_emulator.put_bodies["g1"]["properties"]
    [container] = sent["containers"]
    variables = {v["name"]: v for v in container["properties"]["environmentVariables"]}
    assert variables["CLIPYARD_OUTPUT_URL"] == {
        "name": "CLIPYARD_OUTPUT_URL",
        "secureValue": f"https://a/b?{SECRET}",
    }
    assert variables["PLAIN"] == {"name": "PLAIN", "value": "1"}
    assert sent["restartPolicy"] == "Never"
    assert sent["priority"] == "Regular"
    assert container["properties"]["command"] == [
        "clipyard-composite",
        "--seconds",
        "0.3",
        "--steps",
        "3",
        "--exit-code",
        "5",
    ]
    assert container["properties"]["resources"]["requests"] == {"cpu": 1.0, "memoryInGB": 1.5}
    backend.remove("g1")
    assert backend.status("g1").state is ContainerState.NOT_FOUND
    backend.remove("g1")  # quiet when gone


def test_launching_an_existing_name_adopts_it(
    make_backend: Callable[..., AciBackend],
    arm_emulator: ArmEmulator,  # noqa: F811
) -> None:
    backend, other_manager = make_backend(), make_backend()
    backend.launch(_spec("g2", "--seconds", "0.5"))
    other_manager.launch(_spec("g2", "--seconds", "0.5"))
    assert arm_emulator.requests["create"] == 1
    _wait_state(other_manager, "g2", ContainerState.EXITED)
    text, _ = other_manager.logs_since("g2", 0)
    assert sum(json.loads(line)["event"] == "start" for line in text.splitlines()) == 1
    other_manager.remove("g2")


def test_status_goes_pending_running_exited_and_logs_arrive_in_whole_lines(
    backend: AciBackend,
    arm_emulator: ArmEmulator,  # noqa: F811
) -> None:
    arm_emulator.slow_provisioning("g3", 0.5)
    backend.launch(_spec("g3", "--seconds", "1", "--steps", "4"))
    seen_states = [backend.status("g3").state]
    assert backend.logs_since("g3", 0) == ("", 0)
    logs_before = arm_emulator.requests["logs"]
    assert logs_before == 0  # no logs call while pending
    seen, cursor = "", 0
    while (state := backend.status("g3").state) is not ContainerState.EXITED:
        seen_states.append(state)
        text, cursor = backend.logs_since("g3", cursor)
        assert text == "" or text.endswith("\n")
        seen += text
        backend.wait("g3", 0.05)
    seen += backend.logs_since("g3", cursor)[0]
    assert seen_states[0] is ContainerState.PENDING
    assert ContainerState.RUNNING in seen_states
    assert [json.loads(line)["event"] for line in seen.splitlines()][-1] == "done"
    backend.remove("g3")


def test_stop_keeps_only_the_last_16_kb_and_the_cursor_survives_it(
    make_backend: Callable[..., AciBackend],
    arm_emulator: ArmEmulator,  # noqa: F811
) -> None:
    arm_emulator.images["chatty"] = CHATTY
    backend = make_backend()
    backend.launch(_spec("g4", image="chatty"))
    _wait_state(backend, "g4", ContainerState.RUNNING)
    seen, cursor = "", 0

    def read() -> bool:
        nonlocal seen, cursor
        text, cursor = backend.logs_since("g4", cursor)
        seen += text
        return "line 0399" in seen

    wait_until(read, 20, "all lines read")
    backend.stop("g4", grace_s=0.5)
    status = backend.status("g4")
    assert (status.state, status.detail) == (ContainerState.EXITED, "killed")
    assert status.exit_code in (137, 143)
    # The watcher's cursor finds its place in the truncated log: nothing lost, nothing twice.
    assert backend.logs_since("g4", cursor)[0] == ""
    assert [int(line.split()[1]) for line in seen.splitlines()] == list(range(400))
    # A manager that starts reading only now gets the last 16 KB, as ACI keeps.
    fresh = make_backend()
    fresh.status("g4")
    late, _ = fresh.logs_since("g4", 0)
    assert 0 < len(late.encode()) <= 16 * 1024
    assert "line 0000" not in late
    assert late.rstrip().endswith("line 0399 " + "x" * 40)
    backend.remove("g4")


def test_stop_kills_a_container_that_ignores_sigterm(backend: AciBackend) -> None:
    backend.launch(_spec("g5", "--seconds", "60", "--ignore-sigterm"))
    wait_until(
        lambda: (
            backend.status("g5").state is ContainerState.RUNNING
            and '"start"' in backend.logs_since("g5", 0)[0]
        ),
        20,
        "started",
    )
    backend.stop("g5", grace_s=0.5)
    status = backend.status("g5")
    assert (status.state, status.exit_code, status.detail) == (ContainerState.EXITED, 137, "killed")
    backend.remove("g5")
    backend.stop("g5", grace_s=0.5)  # quiet when gone


def test_list_ours_lists_by_tag_across_pages(
    backend: AciBackend,
    arm_emulator: ArmEmulator,  # noqa: F811
) -> None:
    arm_emulator.page_size = 1
    for name in ("g6a", "g6b"):
        backend.launch(_spec(name, image="idle"))
    foreign = _spec("someone-elses", image="idle")
    backend.launch(
        ContainerSpec(**{**foreign.__dict__, "tags": {"app": "other"}})  # not ours
    )
    infos = {info.name: info for info in backend.list_ours()}
    assert set(infos) == {"g6a", "g6b"}
    assert infos["g6a"].tags == {"app": "clipyard", "job_id": "j", "attempt": "1"}
    assert CREATED_TAG not in infos["g6a"].tags
    assert infos["g6a"].status.state in (ContainerState.PENDING, ContainerState.RUNNING)
    assert arm_emulator.requests["list"] == 3
    for name in ("g6a", "g6b", "someone-elses"):
        backend.remove(name)


def test_a_throttled_read_leaves_one_group_out_of_the_listing_not_all(
    backend: AciBackend,
    arm_emulator: ArmEmulator,  # noqa: F811
) -> None:
    """Regression for issue 15, item 7: one throttled get aborted the whole listing."""
    for name in ("g7a", "g7b"):
        backend.launch(_spec(name, image="idle"))
    arm_emulator.throttle("get", retry_after_s=30, count=1)
    listed = [info.name for info in backend.list_ours()]
    assert len(listed) == 1
    assert set(listed) < {"g7a", "g7b"}
    assert {info.name for info in backend.list_ours()} == {"g7a", "g7b"}
    for name in ("g7a", "g7b"):
        backend.remove(name)


# --- injected faults ---------------------------------------------------------------------


def test_throttling_with_a_long_retry_after_is_handed_back(
    backend: AciBackend,
    arm_emulator: ArmEmulator,  # noqa: F811
) -> None:
    arm_emulator.throttle("create", retry_after_s=30)
    with pytest.raises(BackendError, match="throttled") as refused:
        backend.launch(_spec("g7", image="idle"))
    assert refused.value.is_retryable
    assert refused.value.retry_after_s == 30
    assert arm_emulator.requests["create"] == 1  # the SDK did not sit out 30 s itself
    assert arm_emulator.group_names() == []


def test_short_throttling_and_short_5xx_bursts_are_ridden_out(
    backend: AciBackend,
    arm_emulator: ArmEmulator,  # noqa: F811
) -> None:
    arm_emulator.throttle("create", retry_after_s=0.1)
    arm_emulator.fail_next("get", 503, count=2)
    backend.launch(_spec("g8", image="idle"))
    assert arm_emulator.requests["create"] == 2
    arm_emulator.fail_next("get", 500, count=2)
    assert backend.status("g8").state is ContainerState.RUNNING
    backend.remove("g8")


def test_long_5xx_bursts_are_retryable_errors(
    backend: AciBackend,
    arm_emulator: ArmEmulator,  # noqa: F811
) -> None:
    arm_emulator.fail_next("create", 500, count=5)
    with pytest.raises(BackendError) as refused:
        backend.launch(_spec("g9", image="idle"))
    assert refused.value.is_retryable
    arm_emulator.faults.clear()
    arm_emulator.fail_next("get", 503, count=5)
    with pytest.raises(BackendError, match="failed to read") as unavailable:
        backend.status("g9")
    assert unavailable.value.is_retryable
    # A failed read is not a lack of capacity: no advice to move region (found by the soak).
    assert "capacity" not in str(unavailable.value)


@pytest.mark.parametrize(
    ("inject", "match"),
    [(ArmEmulator.exceed_quota, "quota"), (ArmEmulator.lack_capacity, "CLIPYARD_ACI_LOCATION")],
)
def test_quota_and_capacity_refusals_are_retryable_and_say_what_to_do(
    backend: AciBackend,
    arm_emulator: ArmEmulator,  # noqa: F811
    inject: Callable[[ArmEmulator], None],
    match: str,
) -> None:
    inject(arm_emulator)
    with pytest.raises(BackendError, match=match) as refused:
        backend.launch(_spec("g10", image="idle"))
    assert refused.value.is_retryable
    assert arm_emulator.group_names() == []


def test_unknown_images_and_failed_pulls_are_permanent(
    backend: AciBackend,
    arm_emulator: ArmEmulator,  # noqa: F811
) -> None:
    with pytest.raises(BackendError, match="CLIPYARD_COMPOSITOR_IMAGE") as refused:
        backend.launch(_spec("g11", image="no/such-image"))
    assert not refused.value.is_retryable
    arm_emulator.fail_image_pull("fake")
    backend.launch(_spec("g12"))
    wait_until(lambda: backend.status("g12").state is ContainerState.LOST, 20, "pull fails")
    assert backend.status("g12").detail == "image_pull"
    backend.remove("g12")


def test_a_group_stuck_provisioning_is_reported_after_the_start_timeout(
    make_backend: Callable[..., AciBackend],
    arm_emulator: ArmEmulator,  # noqa: F811
) -> None:
    backend = make_backend(aci_start_timeout_s=1.5)
    arm_emulator.slow_provisioning("g13", 600)
    backend.launch(_spec("g13"))
    assert backend.status("g13").state is ContainerState.PENDING
    wait_until(lambda: backend.status("g13").state is ContainerState.LOST, 20, "start timeout")
    assert backend.status("g13").detail == "start_timeout"
    backend.remove("g13")


def test_a_vanished_group_is_not_found(backend: AciBackend, arm_emulator: ArmEmulator) -> None:  # noqa: F811
    backend.launch(_spec("g14", "--seconds", "60"))
    _wait_state(backend, "g14", ContainerState.RUNNING)
    arm_emulator.make_disappear("g14")
    assert backend.status("g14").state is ContainerState.NOT_FOUND
    assert backend.logs_since("g14", 0) == ("", 0)
    backend.remove("g14")


def test_a_spot_eviction_is_told_apart_from_a_crash_or_oom(
    backend: AciBackend,
    arm_emulator: ArmEmulator,  # noqa: F811
) -> None:
    backend.launch(_spec("g15", "--seconds", "60", is_spot=True))
    assert arm_emulator.put_bodies["g15"]["properties"]["priority"] == "Spot"
    _wait_state(backend, "g15", ContainerState.RUNNING)
    arm_emulator.evict("g15")
    status = backend.status("g15")
    assert (status.state, status.detail) == (ContainerState.LOST, "evicted")
    backend.launch(_spec("g16", "--seconds", "60"))
    _wait_state(backend, "g16", ContainerState.RUNNING)
    arm_emulator.kill_oom("g16")
    _wait_state(backend, "g16", ContainerState.EXITED)
    status = backend.status("g16")
    assert (status.exit_code, status.detail) == (137, "oom")
    backend.remove("g15")
    backend.remove("g16")


def test_no_secret_reaches_a_log_line_or_an_error(
    backend: AciBackend,
    arm_emulator: ArmEmulator,  # noqa: F811
) -> None:
    arm_emulator.fail_next(
        "create",
        400,
        code="InvalidEnvironmentVariable",
        message=f"environment variable value 'https://acct.blob.core.windows.net/c/o?{SECRET}'",
    )
    spec = _spec("g17", "--seconds", "0.1", secure_env={"URL": f"https://x/y?{SECRET}"})
    with structlog.testing.capture_logs() as captured:
        with pytest.raises(BackendError) as refused:
            backend.launch(spec)
        backend.launch(spec)
        _wait_state(backend, "g17", ContainerState.EXITED)
        backend.logs_since("g17", 0)
        backend.remove("g17")
    assert not refused.value.is_retryable
    assert "TOPSECRET" not in str(refused.value)
    assert captured
    assert "TOPSECRET" not in json.dumps(captured, default=str)


def test_a_clear_error_names_the_missing_setting(redis_url: str) -> None:
    with pytest.raises(AciConfigurationError, match="CLIPYARD_ACI_SUBSCRIPTION_ID"):
        create_aci_backend(
            Settings(container_backend="aci", aci_resource_group="rg"), redis_url=redis_url
        )


# --- the shared rate limiter ---------------------------------------------------------------


def test_four_managers_never_exceed_the_create_rate(
    make_backend: Callable[..., AciBackend],
    arm_emulator: ArmEmulator,  # noqa: F811
) -> None:
    # Windows of 3 s and 36 s stand in for 5 minutes and an hour.
    managers = [make_backend(aci_rate_window_scale=0.01) for _ in range(4)]
    names = [f"rate-{i:03d}" for i in range(150)]
    failures: list[BaseException] = []

    def in_parallel(action: Callable[[AciBackend, str], None]) -> None:
        """Let each manager act on its share of the names, all at once."""

        def share(manager: AciBackend, mine: list[str]) -> None:
            try:
                for name in mine:
                    action(manager, name)
            except BaseException as exc:
                failures.append(exc)

        threads = [
            threading.Thread(target=share, args=(manager, names[i::4]))
            for i, manager in enumerate(managers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not failures

    in_parallel(lambda manager, name: manager.launch(_spec(name, image="idle")))
    assert len(arm_emulator.create_times) == 150
    assert arm_emulator.max_in_window(arm_emulator.create_times, 3.0) <= 100
    assert arm_emulator.max_in_window(arm_emulator.create_times, 3.0) >= 90  # not far below

    in_parallel(lambda manager, name: manager.remove(name))
    assert arm_emulator.max_in_window(arm_emulator.delete_times, 3.0) <= 100
