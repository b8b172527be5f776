"""Read the deployment files the way their tools would, without the tools.

Docker, Compose and the Bicep CLI are not installed here: these helpers parse just
enough of each format (compose interpolation, Dockerfile instructions, Bicep params,
module arguments and literal lists) to check the files against the code.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import click
import yaml
from click.testing import CliRunner

from taskmanager.cli import main as clipyard_main
from taskmanager.settings import Settings

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
COMPOSE_FILE = INFRA / "docker-compose.yml"
DOCKERFILE = INFRA / "Dockerfile"
JOB_DOCKERFILE = REPO / "jobimages" / "Dockerfile"
AZURE = INFRA / "azure"

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


# --- compose ---------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    """Return the compose file as YAML (anchors and merge keys resolved)."""
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Resolve compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` with ``env``."""
    env = env or {}

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        given = env.get(name)
        if op in (":?", "?"):
            return given if given else "set-by-operator"
        if op in (":-", "-"):
            return given if given else arg
        return given or ""

    return _VARIABLE.sub(replace, value)


def compose_variables() -> set[str]:
    """Return every variable name the compose file interpolates."""
    return {m["name"] for m in _VARIABLE.finditer(COMPOSE_FILE.read_text())}


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    """Return a service's environment with the compose defaults filled in."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {str(k): interpolate(str(v)) for k, v in environment.items()}


def service_command(service: dict[str, Any]) -> list[str]:
    """Return a service's command as a list, interpolated."""
    command = service.get("command")
    assert isinstance(command, list), "write commands in exec (list) form"
    return [interpolate(str(part)) for part in command]


def is_long_running(service: dict[str, Any]) -> bool:
    """Tell whether a service is meant to stay up (one-shot jobs say restart: "no")."""
    return str(service.get("restart", "no")) != "no"


# --- settings ----------------------------------------------------------------------------


def settings_env_names() -> set[str]:
    """Return every environment variable name that sets a Settings field."""
    names: set[str] = set()
    prefix = str(Settings.model_config.get("env_prefix", ""))
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            names.update(str(c) for c in choices)
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


# --- the clipyard command line -----------------------------------------------------------


def check_clipyard_command(args: list[str]) -> click.Command:
    """Fail unless ``clipyard ARGS`` names a real command whose options parse.

    Runs ``clipyard <command> --help`` through click, then parses ARGS for real
    (option names, types and ranges) without invoking the command.
    """
    command: click.Command = clipyard_main
    path: list[str] = []
    rest = list(args)
    context = click.Context(clipyard_main, info_name="clipyard")
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        found = command.get_command(context, rest[0])
        assert found is not None, f"clipyard has no command {' '.join([*path, rest[0]])!r}"
        command, path, rest = found, [*path, rest.pop(0)], rest
    assert not isinstance(command, click.Group), f"'clipyard {' '.join(path)}' needs a subcommand"
    result = CliRunner().invoke(clipyard_main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    with command.make_context(f"clipyard {' '.join(path)}", rest) as parsed:
        assert parsed.command is command
    return command


# --- Dockerfiles -------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile_stages(path: Path) -> list[str]:
    """Return the names of the build stages (``FROM ... AS name``)."""
    stages = []
    for keyword, rest in dockerfile_instructions(path):
        parts = rest.split()
        if keyword == "FROM" and len(parts) == 3 and parts[1].upper() == "AS":
            stages.append(parts[2])
    return stages


def stage_instructions(
    path: Path, stage: str | None = None, *, inherited: bool = True
) -> list[tuple[str, str]]:
    """Return a stage's instructions after its FROM (None: the last stage).

    With ``inherited``, the instructions of the stages it is built FROM come first, as
    the image holds their results too.
    """
    stages: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, rest in dockerfile_instructions(path):
        if keyword == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            named = len(parts) == 3 and parts[1].upper() == "AS"
            current = []
            stages[parts[2] if named else f"#{len(stages)}"] = (parts[0], current)
        elif current is not None:
            current.append((keyword, rest))
    name = stage if stage is not None else list(stages)[-1]
    assert name in stages, f"{path.name} has no stage {name!r}"
    base, own = stages[name]
    if inherited and base in stages:
        return [*stage_instructions(path, base), *own]
    return list(own)


def context_copies(path: Path, stage: str | None = None) -> list[tuple[str, str]]:
    """Return (source, destination) of each build-context COPY into a stage's WORKDIR.

    COPYs from other stages and to absolute paths (a script into /usr/local/bin) are left
    out: what remains is the source tree the stage's ``pip install`` builds.
    """
    copies: list[tuple[str, str]] = []
    for keyword, rest in stage_instructions(path, stage):
        parts = rest.split()
        if keyword not in ("COPY", "ADD") or any(p.startswith("--from=") for p in parts):
            continue
        *sources, destination = [p for p in parts if not p.startswith("--")]
        if not destination.startswith("/"):
            copies.extend((source, destination) for source in sources)
    return copies


def stage_build_context(path: Path, stage: str | None, into: Path) -> Path:
    """Copy from the repository what a stage COPYs into its WORKDIR, laid out as there.

    Caches and build leftovers stay behind, as ``Dockerfile.dockerignore`` keeps them.
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "node_modules")
    into.mkdir(parents=True, exist_ok=True)
    for source, destination in context_copies(path, stage):
        matches = sorted(REPO.glob(source.rstrip("/")))
        assert matches or source.endswith("*"), f"{path.name}: COPY {source} is missing"
        for match in matches:
            target = into / destination
            if match.is_dir():
                shutil.copytree(match, target, ignore=ignore, dirs_exist_ok=True)
            elif destination.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(match, target / match.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(match, target)
    return into


def shell_commands(instructions: list[tuple[str, str]]) -> list[list[str]]:
    """Return the simple commands of each RUN, split at ``&&``, ``||``, ``;`` and ``|``.

    Redirections (``> FILE``) are dropped from the words.
    """
    commands: list[list[str]] = []
    for keyword, rest in instructions:
        if keyword != "RUN":
            continue
        lexer = shlex.shlex(rest, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        redirect = False
        for token in lexer:
            if token in ("&&", "||", ";", "|"):
                commands.append(words)
                words = []
            elif token in (">", ">>", "<", "2>"):
                redirect = True
            elif redirect:
                redirect = False
            else:
                words.append(token)
        commands.append(words)
    return [command for command in commands if command]


def pip_installs(instructions: list[tuple[str, str]]) -> list[list[str]]:
    """Return the arguments of each ``pip install`` the RUN instructions make."""
    return [c[2:] for c in shell_commands(instructions) if c[:2] == ["pip", "install"]]


def copy_sources(path: Path) -> list[str]:
    """Return the build-context paths COPY takes (not those from other stages)."""
    sources = []
    for keyword, rest in dockerfile_instructions(path):
        if keyword not in ("COPY", "ADD"):
            continue
        parts = rest.split()
        if any(p.startswith("--from=") for p in parts):
            continue
        parts = [p for p in parts if not p.startswith("--")]
        sources.extend(parts[:-1])
    return sources


# --- Bicep -------------------------------------------------------------------------------


def bicep_params(path: Path) -> dict[str, bool]:
    """Return each ``param`` of a Bicep file, mapped to whether it has a default."""
    found = {}
    for match in re.finditer(r"^param\s+(\w+)\s+\w+(\s*=)?", path.read_text(), re.MULTILINE):
        found[match[1]] = bool(match[2])
    return found


def bicep_secure_params(path: Path) -> set[str]:
    """Return the params declared ``@secure()`` (possibly among other decorators)."""
    secure = set()
    decorators: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("@"):
            decorators.append(stripped)
            continue
        match = re.match(r"param\s+(\w+)", stripped)
        if match and any(d.startswith("@secure()") for d in decorators):
            secure.add(match[1])
        decorators = []
    return secure


def _block_after(text: str, start: int) -> str:
    """Return the text of the ``{...}`` or ``[...]`` block opening at or after ``start``."""
    opening = min(i for i in (text.find("{", start), text.find("[", start)) if i >= 0)
    closer = {"{": "}", "[": "]"}[text[opening]]
    depth = 0
    for index in range(opening, len(text)):
        if text[index] == text[opening]:
            depth += 1
        elif text[index] == closer:
            depth -= 1
            if depth == 0:
                return text[opening + 1 : index]
    raise AssertionError(f"unbalanced block at {opening}")


def _top_level_keys(block: str) -> set[str]:
    keys, depth = set(), 0
    for line in block.splitlines():
        if depth == 0:
            match = re.match(r"\s*(\w+)\s*:", line)
            if match:
                keys.add(match[1])
        depth += line.count("{") + line.count("[") - line.count("}") - line.count("]")
    return keys


def bicep_module_calls(path: Path) -> list[tuple[Path, set[str]]]:
    """Return each module a Bicep file uses, with the params it passes."""
    text = path.read_text()
    calls = []
    for match in re.finditer(r"^module\s+\w+\s+'([^']+)'", text, re.MULTILINE):
        body = _block_after(text, match.end())
        params_at = re.search(r"^\s*params\s*:", body, re.MULTILINE)
        passed = _top_level_keys(_block_after(body, params_at.end())) if params_at else set()
        calls.append((path.parent / match[1], passed))
    return calls


def bicep_env_names(path: Path) -> set[str]:
    """Return every environment variable name a Bicep file sets on a container."""
    pattern = r"\{\s*name:\s*'([A-Z][A-Z0-9_]*)'\s*,\s*(?:value|secretRef)\s*:"
    return set(re.findall(pattern, path.read_text()))


def bicep_string_list(path: Path, key: str) -> list[list[str]]:
    """Return every ``key: [...]`` list in the file, split into its top-level items."""
    text = path.read_text()
    lists = []
    for match in re.finditer(rf"\b{key}:\s*\[", text):
        body = _block_after(text, match.end() - 1)
        lists.append([item.strip() for item in body.split(",") if item.strip()])
    return lists
