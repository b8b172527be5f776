"""The Dockerfiles copy files that exist and run commands this project provides."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import tomllib
from typing import Any

import pytest

from taskmanager.settings import Settings
from tests.infra.infrafiles import (
    DOCKERFILE,
    INFRA,
    JOB_DOCKERFILE,
    REPO,
    check_clipyard_command,
    context_copies,
    copy_sources,
    dockerfile_instructions,
    dockerfile_stages,
    pip_installs,
    shell_commands,
    stage_instructions,
)

DOCKERFILES = [DOCKERFILE, JOB_DOCKERFILE]
IGNORE_FILE = INFRA / "Dockerfile.dockerignore"


def _ignore_patterns() -> list[str]:
    lines = IGNORE_FILE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _is_ignored(path: str) -> bool:
    parts = path.rstrip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in _ignore_patterns():
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix.split("/")[-1], bare):
                return True
    return False


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_copied_files_exist(dockerfile: object) -> None:
    from pathlib import Path

    assert isinstance(dockerfile, Path)
    for source in copy_sources(dockerfile):
        matches = list(REPO.glob(source.rstrip("/")))
        # "README.md*" style sources may match nothing on purpose; everything else must.
        assert matches or source.endswith("*"), f"{dockerfile.name}: COPY {source} is missing"


def test_build_context_keeps_what_the_dockerfile_copies() -> None:
    for source in copy_sources(DOCKERFILE):
        assert not _is_ignored(source), f"{IGNORE_FILE.name} excludes {source}"
    for bulky in (".venv", "frontend/node_modules", ".clipyard", ".git", "infra/.env"):
        assert _is_ignored(bulky), bulky


def test_stages_and_non_root_users() -> None:
    assert {"frontend", "api", "worker"} <= set(dockerfile_stages(DOCKERFILE))
    stage = None
    users: dict[str, str] = {}
    for keyword, rest in dockerfile_instructions(DOCKERFILE):
        if keyword == "FROM":
            stage = rest.split()[-1]
        elif keyword == "USER" and stage is not None:
            users[stage] = rest
    assert users.get("api") == users.get("worker") == "clipyard"


def test_base_image_is_slim_python_311() -> None:
    bases = [rest.split()[0] for kw, rest in dockerfile_instructions(DOCKERFILE) if kw == "FROM"]
    assert "python:3.11-slim" in bases


def _stage_instructions(stage: str) -> list[tuple[str, str]]:
    return stage_instructions(DOCKERFILE, stage, inherited=False)


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_worker_image_installs_the_compositor_and_api_image_does_not() -> None:
    """The local backend runs clipyard-composite inside the worker container."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert "jobimage" in extras
    worker = " ".join(rest for kw, rest in _stage_instructions("worker") if kw == "RUN")
    api = " ".join(rest for kw, rest in _stage_instructions("api") if kw == "RUN")
    assert '".[jobimage]"' in worker
    assert "jobimage" not in api


# tests/infra/test_install.py installs each image's set as below in a fresh virtualenv and
# runs its commands; these keep the Dockerfiles doing what that test does.


def test_api_stage_installs_the_project_without_extras() -> None:
    """The API image is ``pip install .``: it must serve without the compositor's packages."""
    assert pip_installs(stage_instructions(DOCKERFILE, "api")) == [["."]]


def test_worker_stage_installs_the_project_with_the_jobimage_extra() -> None:
    """The local backend and ``clipyard templates load`` run clipyard-composite in it."""
    assert pip_installs(stage_instructions(DOCKERFILE, "worker")) == [[".[jobimage]"]]


def test_api_and_worker_stages_build_the_whole_project() -> None:
    """Both install one source tree holding every package the distribution ships."""
    copies = context_copies(DOCKERFILE, "api")
    assert copies == context_copies(DOCKERFILE, "worker")
    includes = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.removesuffix("*") for pattern in includes}
    assert {source for source, _ in copies} == {"pyproject.toml", "README.md", *packages}


def test_job_image_copies_only_the_compositor() -> None:
    """Nothing of the API or the task managers goes into the job container."""
    sources = {source.removesuffix("*") for source, _ in context_copies(JOB_DOCKERFILE)}
    assert sources == {"pyproject.toml", "README.md", "jobimages"}


def test_job_image_installs_the_jobimage_set_and_no_server_dependencies() -> None:
    """The extra's requirements from pyproject.toml, then the project with ``--no-deps``."""
    instructions = stage_instructions(JOB_DOCKERFILE)
    requirements = "/tmp/jobimage.txt"
    assert pip_installs(instructions) == [["-r", requirements], ["--no-deps", "."]]
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert f"> {requirements}" in runs
    (writer,) = [c for c in shell_commands(instructions) if c[:2] == ["python", "-c"]]
    printed = subprocess.run(
        [sys.executable, "-c", writer[2]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert printed.splitlines() == _pyproject()["project"]["optional-dependencies"]["jobimage"]


def test_job_image_entrypoint_is_the_compositor() -> None:
    """ACI runs the task manager's ``aci_entrypoint`` in it: the compositor's script."""
    instructions = stage_instructions(JOB_DOCKERFILE)
    entrypoints = [json.loads(rest) for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints
    assert entrypoints[-1] == ["clipyard-composite"]
    assert _pyproject()["project"]["scripts"]["clipyard-composite"] == "jobimages.cli:main"
    assert Settings.model_fields["aci_entrypoint"].default == "clipyard-composite"


@pytest.mark.parametrize("stage", ["api", "worker"])
def test_default_command_exists(stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = [json.loads(rest) for kw, rest in _stage_instructions(stage) if kw == "CMD"]
    assert commands, f"stage {stage} has no CMD"
    command = commands[-1]
    if command[0] == "clipyard":
        check_clipyard_command(command[1:])
    else:
        from tests.infra.test_entrypoints import check_backend_args

        assert command[:3] == ["python", "-m", "backend"]
        check_backend_args(command[3:], monkeypatch)


@pytest.mark.parametrize("stage", ["api", "worker"])
def test_health_check_is_the_installed_script(stage: str) -> None:
    checks = [rest for kw, rest in _stage_instructions(stage) if kw == "HEALTHCHECK"]
    assert checks
    command = json.loads(checks[-1].split("CMD", 1)[1])
    assert command[0] == "clipyard-healthcheck"
    installed = [rest for kw, rest in dockerfile_instructions(DOCKERFILE) if kw == "COPY"]
    assert "infra/healthcheck.py /usr/local/bin/clipyard-healthcheck" in installed


def test_frontend_stage_runs_a_script_the_package_defines() -> None:
    scripts = json.loads((REPO / "frontend" / "package.json").read_text()).get("scripts", {})
    runs = [rest for kw, rest in _stage_instructions("frontend") if kw == "RUN"]
    assert "npm run build" in runs
    assert "build" in scripts
