"""``clipyard templates``: load the compositor's templates into storage and the database."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click

from taskmanager.cli.context import CliError, load_settings
from taskmanager.cli.users import database_sessions
from taskmanager.storage import create_storage
from taskmanager.templates import InvalidTemplateFolder, load_templates

# The job image's own command: templates are built by the compositor's code, which the
# manager talks to only through argv and exit codes, as it does inside a container.
COMPOSITE_COMMAND = "clipyard-composite"


def build_templates(folder: Path) -> None:
    """Build the built-in templates into ``folder`` with the job image's CLI."""
    beside_python = Path(sys.executable).parent / COMPOSITE_COMMAND
    command = str(beside_python) if beside_python.is_file() else shutil.which(COMPOSITE_COMMAND)
    if command is None:
        raise CliError(
            f"{COMPOSITE_COMMAND} is not installed here: install the job image's set "
            "(pip install 'clipyard[jobimage]') to build templates"
        )
    done = subprocess.run(
        [command, "build-templates", str(folder)],
        stdout=subprocess.DEVNULL,  # its JSON-lines events; the templates land in folder
        check=False,
    )
    if done.returncode != 0:
        raise CliError(
            f"building the templates failed ({COMPOSITE_COMMAND} exit {done.returncode})"
        )


@click.group()
def templates() -> None:
    """Manage template videos."""


@templates.command("load")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--build", is_flag=True, help="Build the templates into FOLDER first.")
def load(folder: Path | None, build: bool) -> None:
    """Load the templates in FOLDER (built by clipyard-composite build-templates).

    Without FOLDER the templates are built into DATA_DIR/templates (once) and loaded.
    Loading again updates rows and re-uploads only changed files.
    """
    settings = load_settings()
    if folder is None:
        folder = settings.data_dir / "templates"
        build = build or not (folder / "index.json").is_file()
    if build:
        click.echo(f"building templates into {folder} ...")
        build_templates(folder)
    if not (folder / "index.json").is_file():
        raise CliError(f"{folder} has no index.json: build it with --build")
    storage = create_storage(settings)
    with database_sessions() as sessions:
        try:
            loaded_templates = load_templates(sessions, storage, folder)
        except InvalidTemplateFolder as exc:
            raise CliError(str(exc)) from exc
        for loaded in loaded_templates:
            verb = "created" if loaded.created else "updated"
            click.echo(f"{loaded.name}: {verb}, {loaded.files_uploaded} files uploaded")
