"""infra/azure: the Bicep files agree with each other and with the settings the code reads.

No Bicep CLI here: these checks parse the files (params, module arguments, the
containers' environment and commands) instead of compiling them.
"""

from __future__ import annotations

import json
import re

import pytest

from taskmanager.settings import Settings
from tests.infra.infrafiles import (
    AZURE,
    bicep_env_names,
    bicep_module_calls,
    bicep_params,
    bicep_secure_params,
    bicep_string_list,
    check_clipyard_command,
    settings_env_names,
)

MAIN = AZURE / "main.bicep"
APP = AZURE / "modules" / "app.bicep"
PARAMETERS = json.loads((AZURE / "main.parameters.json").read_text())["parameters"]
BICEP_FILES = sorted(AZURE.rglob("*.bicep"))


def test_parameters_file_names_only_params_of_main() -> None:
    unknown = set(PARAMETERS) - set(bicep_params(MAIN))
    assert not unknown, f"main.parameters.json sets params main.bicep lacks: {unknown}"


def test_secrets_never_sit_in_the_parameters_file() -> None:
    secure = bicep_secure_params(MAIN)
    assert {"postgresAdminPassword", "apiSecretKey"} <= secure
    assert not secure & set(PARAMETERS)
    text = (AZURE / "main.parameters.json").read_text().lower()
    assert "password" not in text.replace("postgresadminlogin", "")


def test_required_params_are_given_or_secret() -> None:
    """Every param without a default comes from the file or, if secret, the command line."""
    required = {name for name, has_default in bicep_params(MAIN).items() if not has_default}
    assert required <= set(PARAMETERS) | bicep_secure_params(MAIN)


@pytest.mark.parametrize("bicep", BICEP_FILES, ids=lambda p: p.name)
def test_module_calls_match_the_modules(bicep: object) -> None:
    from pathlib import Path

    assert isinstance(bicep, Path)
    for module, passed in bicep_module_calls(bicep):
        assert module.is_file(), f"{bicep.name} uses missing module {module}"
        declared = bicep_params(module)
        assert passed <= set(declared), f"{module.name}: unknown params {passed - set(declared)}"
        missing = {n for n, has_default in declared.items() if not has_default} - passed
        assert not missing, f"{bicep.name} does not pass {missing} to {module.name}"


def test_secure_values_stay_secure_through_modules() -> None:
    assert bicep_secure_params(MAIN) <= bicep_secure_params(APP)


def test_container_environment_names_real_settings() -> None:
    names = bicep_env_names(APP)
    assert names, "no container environment found in app.bicep"
    unknown = {n for n in names if n.startswith("CLIPYARD_")} - settings_env_names()
    assert not unknown, f"app.bicep sets variables no Settings field reads: {unknown}"
    assert {n for n in names if not n.startswith("CLIPYARD_")} <= {
        "DATABASE_URL",
        "REDIS_URL",
        "AZURE_CLIENT_ID",
    }


def test_workers_get_every_setting_the_aci_backend_needs() -> None:
    """What aci_client.require and AciBackend read, and storage by managed identity."""
    names = bicep_env_names(APP)
    for needed in (
        "CLIPYARD_CONTAINER_BACKEND",
        "CLIPYARD_ACI_SUBSCRIPTION_ID",
        "CLIPYARD_ACI_RESOURCE_GROUP",
        "CLIPYARD_ACI_LOCATION",
        "CLIPYARD_ACI_REGISTRY_SERVER",
        "CLIPYARD_ACI_REGISTRY_IDENTITY",
        "CLIPYARD_ACI_MANAGED_IDENTITY_CLIENT_ID",
        "CLIPYARD_COMPOSITOR_IMAGE",
        "CLIPYARD_STORAGE_BACKEND",
        "CLIPYARD_AZURE_STORAGE_ACCOUNT_URL",
        "CLIPYARD_AZURE_STORAGE_CONTAINER",
        "CLIPYARD_SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
    ):
        assert needed in names, needed
    text = APP.read_text()
    assert "{ name: 'CLIPYARD_CONTAINER_BACKEND', value: 'aci' }" in text
    assert "{ name: 'CLIPYARD_STORAGE_BACKEND', value: 'azure' }" in text


def test_secrets_reach_the_apps_only_through_key_vault() -> None:
    text = APP.read_text()
    for secret in ("DATABASE_URL", "REDIS_URL", "CLIPYARD_SECRET_KEY"):
        assert re.search(rf"name: '{secret}', secretRef: '[a-z-]+'", text), secret
    assert "keyVaultUrl" in text
    # Container Apps secrets carry Key Vault references, never inline values.
    for block in bicep_string_list(APP, "secrets"):
        assert not any(item.startswith("value:") for item in block)


def test_blob_container_and_lifecycle_follow_the_storage_layout() -> None:
    text = APP.read_text()
    default_container = Settings(_env_file=None).azure_storage_container  # type: ignore[call-arg]
    assert f"var blobContainerName = '{default_container}'" in text
    prefixes = set(re.findall(r"prefixMatch: \['\$\{blobContainerName\}/(\w+)/'\]", text))
    assert prefixes == {"outputs", "logs"}
    assert "daysAfterModificationGreaterThan: outputRetentionDays" in text
    assert "outputRetentionDays" in bicep_params(MAIN)


def _evaluate(item: str, pools: list[str]) -> list[str]:
    if item.startswith("'") and item.endswith("'"):
        return [item[1:-1]]
    if item == "pool.name":
        return pools
    if re.fullmatch(r"string\(\w+\)", item):
        return ["2"]
    raise AssertionError(f"cannot evaluate {item!r}")


def test_container_commands_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    text = APP.read_text()
    pools = re.findall(r"\{ name: '(\w+)', replicas: \w+ \}", text)
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert sorted(pools) == sorted([defaults.interactive_queue, defaults.batch_queue])
    commands = bicep_string_list(APP, "command")
    assert ["'clipyard'"] in commands
    for args in bicep_string_list(APP, "args"):
        for pool in pools:
            argv = [v for item in args for v in (_evaluate(item, [pool]))]
            check_clipyard_command(argv)
    api = next(c for c in commands if c[:1] == ["'python'"])
    from tests.infra.test_entrypoints import check_backend_args

    argv = [v for item in api for v in _evaluate(item, [])]
    assert argv[:3] == ["python", "-m", "backend"]
    assert check_backend_args(argv[3:], monkeypatch)["bind"] == "0.0.0.0:8000"


def test_api_probes_use_the_health_endpoints() -> None:
    text = APP.read_text()
    assert "httpGet: { path: '/healthz', port: 8000 }" in text
    assert "httpGet: { path: '/readyz', port: 8000 }" in text
    assert "targetPort: 8000" in text


def test_roles_are_scoped_narrowly() -> None:
    jobs = (AZURE / "modules" / "jobs.bicep").read_text()
    actions = re.findall(r"'(Microsoft\.[\w./]+)'", jobs)
    assert actions
    assert all(a.startswith("Microsoft.ContainerInstance/containerGroups/") for a in actions)
    assert "assignableScopes: [resourceGroup().id]" in jobs
    app = APP.read_text()
    # Every assignment in the app group is scoped to one resource, never the group.
    assignments = re.findall(r"roleAssignments@[\d-]+' = \{\s*scope: (\w+)", app)
    assert len(assignments) == app.count("Microsoft.Authorization/roleAssignments@")
    assert set(assignments) == {"storage", "registry", "jobIdentity", "vault"}
    main = MAIN.read_text()
    assert "roleAssignments" not in main
