"""The Dockerfiles copy files that exist and run commands this project provides."""

from __future__ import annotations

import fnmatch
import json
import tomllib

import pytest

from tests.infra.infrafiles import (
    DOCKERFILE,
    INFRA,
    REPO,
    check_clipyard_command,
    copy_sources,
    dockerfile_instructions,
    dockerfile_stages,
)

DOCKERFILES = [DOCKERFILE, REPO / "jobimages" / "Dockerfile"]
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
    found, current = [], None
    for keyword, rest in dockerfile_instructions(DOCKERFILE):
        if keyword == "FROM":
            current = rest.split()[-1]
        elif current == stage:
            found.append((keyword, rest))
    return found


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
