"""The commands the deployment files run exist: console scripts, modules, options."""

from __future__ import annotations

import sys
import tomllib
from typing import Any

import pytest

from taskmanager.settings import Settings
from tests.infra.infrafiles import REPO, check_clipyard_command


def check_backend_args(args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run ``python -m backend ARGS`` up to the point of serving; return gunicorn's options."""
    import backend.__main__ as entry

    started: dict[str, Any] = {}

    class _NoServer:
        def __init__(self, settings: object, options: dict[str, Any]) -> None:
            started.update(options)

        def run(self) -> None:
            started["ran"] = True

    monkeypatch.setattr(entry, "_Server", _NoServer)
    monkeypatch.setattr(sys, "argv", ["python -m backend", *args])
    monkeypatch.setattr(Settings, "from_env", classmethod(lambda cls: cls(_env_file=None)))
    entry.main()
    assert started.get("ran"), "python -m backend did not reach its server"
    return started


def test_console_scripts_point_at_real_functions() -> None:
    import importlib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"clipyard", "clipyard-composite"} <= set(scripts)
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_backend_listens_where_the_deployment_expects(monkeypatch: pytest.MonkeyPatch) -> None:
    options = check_backend_args(["--host", "0.0.0.0", "--port", "8000"], monkeypatch)  # noqa: S104
    assert options["bind"] == "0.0.0.0:8000"
    assert options["worker_class"] == "gthread"


@pytest.mark.parametrize(
    "args",
    [
        ["db", "upgrade"],
        ["templates", "load"],
        ["worker", "--queues", "interactive", "--processes", "2"],
        ["worker", "--queues", "batch", "--processes", "2", "--no-reconcile"],
        ["user", "create", "ops@example.com", "--operator", "--token", "cli"],
        ["reconcile"],
    ],
)
def test_commands_in_the_ops_guide_exist(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # The ops guide passes the first operator's password this way (no prompt in a container).
    monkeypatch.setenv("CLIPYARD_NEW_USER_PASSWORD", "correct horse battery staple")
    check_clipyard_command(args)


def test_the_checker_refuses_what_does_not_exist() -> None:
    with pytest.raises(AssertionError):
        check_clipyard_command(["workers"])
    with pytest.raises(Exception, match="No such option"):
        check_clipyard_command(["worker", "--queue", "batch"])
    with pytest.raises(Exception, match="not in the range"):
        check_clipyard_command(["worker", "--processes", "0"])
