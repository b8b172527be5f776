"""infra/docker-compose.yml: parses, and everything it names exists in this project."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import pytest

from taskmanager.settings import Settings
from tests.infra.infrafiles import (
    COMPOSE_FILE,
    DOCKERFILE,
    REPO,
    check_clipyard_command,
    compose_variables,
    dockerfile_stages,
    is_long_running,
    load_compose,
    service_command,
    service_environment,
    settings_env_names,
)

COMPOSE = load_compose()
SERVICES: dict[str, Any] = COMPOSE["services"]
# Services built from this repository (the rest are upstream images).
OURS = sorted(name for name, service in SERVICES.items() if "build" in service)
# Variables that only fill in compose's ${...}: never seen by a clipyard process.
_COMPOSE_ONLY = {"POSTGRES_PASSWORD", "API_PORT", "INTERACTIVE_MANAGERS", "BATCH_MANAGERS"}


def test_the_stack_has_every_part() -> None:
    assert {"postgres", "redis", "azurite", "migrate", "api"} <= set(SERVICES)
    assert [s for s in OURS if s.startswith("worker")] == ["worker-batch", "worker-interactive"]


@pytest.mark.parametrize("name", OURS)
def test_builds_a_stage_of_the_infra_dockerfile(name: str) -> None:
    build = SERVICES[name]["build"]
    assert (COMPOSE_FILE.parent / build["context"]).resolve() == REPO
    assert (REPO / build["dockerfile"]).resolve() == DOCKERFILE
    assert build["target"] in dockerfile_stages(DOCKERFILE)


@pytest.mark.parametrize("name", OURS)
def test_command_is_a_real_entry_point(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    command = service_command(SERVICES[name])
    if command[0] == "clipyard":
        check_clipyard_command(command[1:])
    else:
        assert command[:3] == ["python", "-m", "backend"], command
        from tests.infra.test_entrypoints import check_backend_args

        check_backend_args(command[3:], monkeypatch)


def test_the_worker_pools_serve_the_configured_queues() -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    served = set()
    for name in OURS:
        command = service_command(SERVICES[name])
        if command[:2] == ["clipyard", "worker"]:
            served.update(command[command.index("--queues") + 1].split(","))
    assert served == {defaults.interactive_queue, defaults.batch_queue}


@pytest.mark.parametrize("name", OURS)
def test_environment_names_only_real_settings(name: str) -> None:
    environment = service_environment(SERVICES[name])
    known = settings_env_names()
    unknown = [key for key in environment if key.startswith("CLIPYARD_") and key not in known]
    assert not unknown, f"{name} sets variables no Settings field reads: {unknown}"
    others = {k for k in environment if not k.startswith("CLIPYARD_")}
    assert others <= {
        "DATABASE_URL",
        "REDIS_URL",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
    }


def test_compose_only_variables_do_not_look_like_settings() -> None:
    """A ${CLIPYARD_...} the compose file reads must be a setting it passes on."""
    for variable in compose_variables():
        if variable.startswith("CLIPYARD_"):
            assert variable in settings_env_names(), variable
        else:
            assert variable in _COMPOSE_ONLY | {
                "AZURE_TENANT_ID",
                "AZURE_CLIENT_ID",
                "AZURE_CLIENT_SECRET",
            }, variable


@pytest.mark.parametrize("name", OURS)
def test_environment_makes_valid_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults the compose file fills in are values Settings accepts."""
    import os

    for key in list(os.environ):
        if key.startswith("CLIPYARD_") or key in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(key)
    for key, value in service_environment(SERVICES[name]).items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url is not None
    assert settings.redis_url is not None
    assert settings.storage_backend == "azure"


@pytest.mark.parametrize("name", OURS)
def test_service_urls_point_at_services_of_the_stack(name: str) -> None:
    environment = service_environment(SERVICES[name])
    for key in ("DATABASE_URL", "REDIS_URL"):
        assert urlparse(environment[key]).hostname in SERVICES, key
    blob = environment["CLIPYARD_AZURE_STORAGE_CONNECTION_STRING"]
    endpoint = dict(p.split("=", 1) for p in blob.strip(";").split(";"))["BlobEndpoint"]
    assert urlparse(endpoint).hostname in SERVICES


def test_long_running_services_have_health_checks() -> None:
    for name, service in SERVICES.items():
        if is_long_running(service):
            test = service.get("healthcheck", {}).get("test")
            assert test, f"{name} has no health check"
            assert test[0] in ("CMD", "CMD-SHELL"), name


def test_api_health_check_asks_an_endpoint_the_api_serves() -> None:
    from backend.operations import OPERATIONS

    paths = {op.path for op in OPERATIONS if op.method == "get"}
    test = SERVICES["api"]["healthcheck"]["test"]
    url = urlparse(test[-1])
    assert url.path in paths
    assert url.path in ("/healthz", "/readyz")
    assert str(url.port) == service_command(SERVICES["api"])[-1]


def test_dependencies_exist_and_one_shots_are_awaited_to_completion() -> None:
    for name, service in SERVICES.items():
        for dependency, how in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            expected = (
                "service_completed_successfully"
                if not is_long_running(SERVICES[dependency])
                else "service_healthy"
            )
            assert how["condition"] == expected, (name, dependency)
    for name in ("api", "worker-interactive", "worker-batch", "templates"):
        assert "migrate" in SERVICES[name]["depends_on"], name


def test_migrate_runs_the_schema_upgrade() -> None:
    assert service_command(SERVICES["migrate"]) == ["clipyard", "db", "upgrade"]
    assert not is_long_running(SERVICES["migrate"])


def test_each_worker_pool_keeps_its_local_containers_to_itself() -> None:
    """On the local backend a run directory belongs to one container's processes."""
    mounts: dict[str, str] = {}
    for name in OURS:
        for volume in SERVICES[name].get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source in COMPOSE["volumes"], f"{name}: undeclared volume {source}"
            assert source not in mounts, f"{name} and {mounts.get(source)} share {source}"
            mounts[source] = name


def test_settings_data_dir_is_the_mounted_volume() -> None:
    from tests.infra.infrafiles import dockerfile_instructions

    env_lines = " ".join(rest for kw, rest in dockerfile_instructions(DOCKERFILE) if kw == "ENV")
    data_dir = env_lines.split("CLIPYARD_DATA_DIR=", 1)[1].split()[0]
    for name in OURS:
        for volume in SERVICES[name].get("volumes", []):
            assert volume.split(":")[1] == data_dir, name
