"""``clipyard templates``: load the compositor's templates into storage and the database."""

from __future__ import annotations

from pathlib import Path

import click

from taskmanager.cli.context import CliError, load_settings
from taskmanager.cli.users import database_sessions
from taskmanager.storage import create_storage
from taskmanager.templates import load_templates


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
        from jobimages.builder import build_templates

        click.echo(f"building templates into {folder} ...")
        build_templates(folder)
    if not (folder / "index.json").is_file():
        raise CliError(f"{folder} has no index.json: build it with --build")
    storage = create_storage(settings)
    with database_sessions() as sessions:
        for loaded in load_templates(sessions, storage, folder):
            verb = "created" if loaded.created else "updated"
            click.echo(f"{loaded.name}: {verb}, {loaded.files_uploaded} files uploaded")
