"""Each image's install, done for real: in a fresh virtualenv, its commands start.

The API image (``infra/Dockerfile``, stage ``api``) runs ``pip install .`` with no extras.
So ``python -m backend``, ``clipyard`` and ``clipyard worker`` must import without the
compositor's dependencies (jsonschema, PyAV, NumPy, OpenCV): these tests install the
project that way and check those packages are absent, so a domain module that imports
the compositor fails here with the ``ModuleNotFoundError`` that names the chain. The
worker stage adds the ``jobimage`` extra (its local backend and ``clipyard templates
load`` run ``clipyard-composite`` in that container). The job image (``jobimages/Dockerfile``)
installs the extra's requirements, then the project with ``--no-deps`` from a build
context holding only ``jobimages/``: ``tests/jobimages/test_fresh_venv.py`` repeats that
and composites a real video in it, so it is not repeated here.
``test_dockerfiles.py`` checks that the Dockerfiles still install each set this way.

The developer's virtualenv cannot show any of this: it holds every extra, and the source
tree is importable from the repository root. So each test makes a virtualenv with
``sys.executable -m venv`` and runs everything with ``VIRTUAL_ENV``, ``PYTHONPATH`` (and
the like) removed, the fresh ``bin`` first on ``PATH`` and an empty temporary directory
as the working directory: ``import backend`` can only find the installed copy.

What gets installed: the Dockerfile's build context (what its COPYs take, see
``infrafiles.stage_build_context``), built once per session into a wheel with
``pip wheel --no-deps``, which is what ``pip install .`` builds and installs. Measured
here: a build takes 5 s from the staged context and 7 s from the repository root (build
isolation included), and installing the API set's dependencies into a fresh venv 26 s.
``pip install <tree>`` would pay the build again in every venv, so one wheel per build
context is shared instead (the API and worker stages share one). Staging the context also
keeps setuptools from writing ``build/`` and ``*.egg-info`` into the working tree.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.infra.infrafiles import (
    DOCKERFILE,
    context_copies,
    stage_build_context,
)

# A fresh venv and two or three installs: minutes, not the suite's default 300 s.
pytestmark = pytest.mark.timeout(900)

PIP_OPTIONS = ("--disable-pip-version-check", "--no-input", "-q")
VENV_TIMEOUT_S = 180
PIP_TIMEOUT_S = 600
COMMAND_TIMEOUT_S = 120
STDERR_TAIL_LINES = 25

COMPOSITOR_DEPENDENCIES = ("jsonschema", "av", "numpy", "cv2")
# What would make a subprocess see the developer's environment instead of the fresh one.
LEAKY_VARIABLES = (
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "PYTHONSTARTUP",
    "PIP_USER",
    "PIP_TARGET",
    "PIP_PREFIX",
)

BuildWheel = Callable[[Path, str | None], Path]


def _clean_env(bin_dir: Path | None) -> dict[str, str]:
    """Return os.environ without the developer's virtualenv, ``bin_dir`` first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_VARIABLES}
    developer_bin = str(Path(sys.prefix) / "bin") if sys.prefix != sys.base_prefix else None
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != developer_bin]
    if bin_dir is not None:
        path.insert(0, str(bin_dir))
    env["PATH"] = os.pathsep.join(path)
    return env


def _tail(text: str | bytes | None) -> str:
    """Return the last lines of a subprocess's output, decoded."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = (text or "").strip().splitlines()
    return "\n".join(lines[-STDERR_TAIL_LINES:]) or "(empty)"


def _failure(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> str | None:
    """Run a command; return why it failed (command, exit code, stderr tail), or None."""
    try:
        done = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as expired:
        return f"$ {shlex.join(args)}\ntimed out after {timeout:.0f} s\n{_tail(expired.stderr)}"
    if done.returncode == 0:
        return None
    return (
        f"$ {shlex.join(args)}\nexit code {done.returncode}\n"
        f"stderr (last lines):\n{_tail(done.stderr)}"
    )


def _check(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> None:
    """Run a command and fail the test unless it exits 0."""
    failure = _failure(args, cwd=cwd, env=env, timeout=timeout)
    assert failure is None, failure


@dataclass(frozen=True)
class Venv:
    """A fresh virtualenv and the clean environment its commands run in."""

    root: Path
    cwd: Path
    env: dict[str, str]

    def bin(self, name: str) -> str:
        """Return the path of an executable this virtualenv installed."""
        return str(self.root / "bin" / name)

    def pip_install(self, *args: str) -> None:
        """Install into this virtualenv, failing the test if pip fails."""
        command = [self.bin("python"), "-m", "pip", "install", *PIP_OPTIONS, *args]
        _check(command, cwd=self.cwd, env=self.env, timeout=PIP_TIMEOUT_S)

    def failures(self, commands: list[list[str]]) -> list[str]:
        """Run every command (its first word from this venv's bin); return the failures."""
        found = []
        for name, *args in commands:
            command = [self.bin(name), *args]
            failure = _failure(command, cwd=self.cwd, env=self.env, timeout=COMMAND_TIMEOUT_S)
            if failure is not None:
                found.append(failure)
        return found

    def module_origins(self, names: tuple[str, ...]) -> dict[str, str | None]:
        """Return where this venv's Python finds each top-level module (None: nowhere)."""
        code = (
            "import importlib.util, json, sys; "
            "specs = {n: importlib.util.find_spec(n) for n in sys.argv[1:]}; "
            "print(json.dumps({n: s and (s.origin or str(list(s.submodule_search_locations)))"
            " for n, s in specs.items()}))"
        )
        command = [self.bin("python"), "-c", code, *names]
        done = subprocess.run(
            command,
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        assert done.returncode == 0, f"$ {shlex.join(command)}\n{_tail(done.stderr)}"
        origins: dict[str, str | None] = json.loads(done.stdout)
        return origins

    def assert_installed_here(self, packages: tuple[str, ...]) -> None:
        """Fail unless each package imports from this venv, not from the source tree."""
        for name, origin in self.module_origins(packages).items():
            assert origin is not None, f"{name} is not installed in {self.root}"
            assert str(self.root) in origin, f"{name} resolves to {origin}, not {self.root}"

    def assert_absent(self, modules: tuple[str, ...]) -> None:
        """Fail if any of these modules is importable in this venv."""
        present = {n: o for n, o in self.module_origins(modules).items() if o is not None}
        assert not present, f"installed although this set must not need them: {present}"


@pytest.fixture(scope="session")
def image_wheel(tmp_path_factory: pytest.TempPathFactory) -> BuildWheel:
    """Build, once per build context, the wheel a Dockerfile stage's ``pip install .`` makes."""
    built: dict[tuple[tuple[str, str], ...], Path] = {}

    def build(dockerfile: Path, stage: str | None) -> Path:
        key = tuple(context_copies(dockerfile, stage))
        if key not in built:
            root = tmp_path_factory.mktemp("image")
            context = stage_build_context(dockerfile, stage, root / "src")
            dist = root / "dist"
            command = [sys.executable, "-m", "pip", "wheel", *PIP_OPTIONS, "--no-deps"]
            command += ["-w", str(dist), str(context)]
            _check(command, cwd=root, env=_clean_env(None), timeout=PIP_TIMEOUT_S)
            (built[key],) = dist.glob("*.whl")
        return built[key]

    return build


@pytest.fixture
def venv(tmp_path: Path) -> Venv:
    """Create an empty virtualenv with the interpreter running these tests."""
    root = tmp_path / "venv"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    command = [sys.executable, "-m", "venv", str(root)]
    _check(command, cwd=cwd, env=_clean_env(None), timeout=VENV_TIMEOUT_S)
    return Venv(root=root, cwd=cwd, env=_clean_env(root / "bin"))


def test_api_image_set_serves_without_the_compositor(venv: Venv, image_wheel: BuildWheel) -> None:
    """``pip install .``: the API and the task managers' CLI start without jsonschema & co."""
    venv.pip_install(str(image_wheel(DOCKERFILE, "api")))

    venv.assert_installed_here(("backend", "taskmanager"))
    venv.assert_absent(COMPOSITOR_DEPENDENCIES)
    failures = venv.failures(
        [
            ["python", "-c", "import backend.app"],
            ["python", "-m", "backend", "--help"],
            ["clipyard", "--help"],
            ["clipyard", "worker", "--help"],
        ]
    )
    assert not failures, "the API image's commands fail:\n\n" + "\n\n".join(failures)


def test_worker_image_set_runs_the_compositor(venv: Venv, image_wheel: BuildWheel) -> None:
    """``pip install '.[jobimage]'``: the task managers and the compositor they run start."""
    venv.pip_install(f"{image_wheel(DOCKERFILE, 'worker')}[jobimage]")

    venv.assert_installed_here(("backend", "taskmanager", "jobimages", *COMPOSITOR_DEPENDENCIES))
    failures = venv.failures(
        [
            ["clipyard-composite", "--help"],
            ["python", "-c", "import jobimages.compositor, jobimages.builder"],
            ["clipyard", "worker", "--help"],
            ["clipyard", "templates", "load", "--help"],
        ]
    )
    assert not failures, "the worker image's commands fail:\n\n" + "\n\n".join(failures)
