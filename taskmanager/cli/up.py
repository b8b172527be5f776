"""``clipyard up`` and ``clipyard services``: the single-machine mode.

``up`` starts whatever is not configured externally (embedded PostgreSQL and Redis),
applies the migrations, builds and loads the templates, makes sure a demo operator
exists, then runs the API and the task managers (interactive and batch pools, one of
them reconciling) with one prefixed log on stdout until Ctrl-C, and stops everything
it started. Everything lives under ``data_dir``, so a second run finds its data again.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import click

from taskmanager.accounts import EmailTaken, create_user
from taskmanager.cli.context import load_settings
from taskmanager.cli.templates import build_templates
from taskmanager.db import create_db_engine, create_session_factory
from taskmanager.localservices import child_environment, local_services
from taskmanager.migrate import upgrade_database
from taskmanager.settings import Settings, redact_url
from taskmanager.storage import create_storage
from taskmanager.templates import load_templates

DEMO_EMAIL = "demo@clipyard.local"
DEMO_CREDENTIALS_FILE = "demo-operator.json"
# What --fresh deletes: the data, not the (deterministic, slow to build) templates.
_FRESH_REMOVES = ("postgres", "redis", "blobs", "containers", DEMO_CREDENTIALS_FILE)
_STOP_TIMEOUT_S = 60


def _wait_for_interrupt(children: dict[str, subprocess.Popen[bytes]] | None = None) -> None:
    """Return on Ctrl-C or SIGTERM, or as soon as any child process has exited."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        for name, child in (children or {}).items():
            if child.poll() is not None:
                click.echo(f"{name} exited with {child.returncode}; stopping", err=True)
                return


@click.command()
@click.option("--fresh", is_flag=True, help="Use throwaway services; nothing is kept.")
def services(fresh: bool) -> None:
    """Start the embedded PostgreSQL and Redis, print their URLs, and wait for Ctrl-C."""
    settings = load_settings()
    with local_services(settings, is_throwaway=fresh) as urls:
        upgrade_database(urls.database_url)
        click.echo(f"DATABASE_URL={urls.database_url}")
        click.echo(f"REDIS_URL={urls.redis_url}")
        click.echo("press Ctrl-C to stop", err=True)
        _wait_for_interrupt()


def _start_over(data_dir: Path) -> None:
    for name in _FRESH_REMOVES:
        path = data_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _prepare_templates(settings: Settings, database_url: str) -> None:
    """Build the templates once into data_dir/templates and load them (idempotent)."""
    folder = settings.data_dir / "templates"
    if not (folder / "index.json").is_file():
        click.echo(f"building the templates into {folder} (once) ...")
        build_templates(folder)
    engine = create_db_engine(database_url, pool_size=1)
    try:
        loaded = load_templates(create_session_factory(engine), create_storage(settings), folder)
    finally:
        engine.dispose()
    click.echo(f"templates: {', '.join(t.name for t in loaded)}")


def ensure_demo_operator(settings: Settings, database_url: str) -> dict[str, str]:
    """Return the demo operator's sign-in, creating the account on the first run.

    The password is random, kept in data_dir readable by its owner only, and shown on
    the terminal (never logged) so whoever started the demo can sign in.
    """
    path = settings.data_dir / DEMO_CREDENTIALS_FILE
    if path.is_file():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    credentials = {"email": DEMO_EMAIL, "password": secrets.token_urlsafe(12)}
    engine = create_db_engine(database_url, pool_size=1)
    try:
        create_user(
            create_session_factory(engine), DEMO_EMAIL, credentials["password"], role="operator"
        )
    except EmailTaken:
        # The file was deleted but the account kept: its password is unknown here.
        click.echo(
            f"{DEMO_EMAIL} exists but {path} is gone: reset it with"
            " `clipyard up --fresh` or create another operator with `clipyard user create`",
            err=True,
        )
        return {"email": DEMO_EMAIL, "password": "(unknown)"}
    finally:
        engine.dispose()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(credentials, out)
    return credentials


def _relay(name: str, stream: IO[bytes]) -> None:
    """Copy a child's output to ours, each line prefixed with the child's name."""
    prefix = f"{name:<11}| ".encode()
    for line in iter(stream.readline, b""):
        sys.stdout.buffer.write(prefix + line)
        sys.stdout.buffer.flush()


@contextmanager
def _children(
    commands: dict[str, list[str]], env: dict[str, str]
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Start each command with its output relayed; on exit SIGTERM all and wait."""
    started: dict[str, subprocess.Popen[bytes]] = {}
    relays = []
    try:
        for name, command in commands.items():
            child = subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            started[name] = child
            assert child.stdout is not None
            relay = threading.Thread(target=_relay, args=(name, child.stdout), daemon=True)
            relay.start()
            relays.append(relay)
        yield started
    finally:
        for child in started.values():
            child.send_signal(signal.SIGTERM)
        for child in started.values():
            try:
                child.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for relay in relays:
            relay.join(timeout=5)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--fresh", is_flag=True, help="Delete the kept data (not the templates) first.")
@click.option(
    "--managers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Task managers per queue (interactive and batch).",
)
def up(host: str, port: int, fresh: bool, managers: int) -> None:
    """Run clipyard on this machine until Ctrl-C; a second run reuses the data."""
    settings = load_settings()
    if fresh:
        _start_over(settings.data_dir)
    with local_services(settings) as urls:
        upgrade_database(urls.database_url)
        click.echo(f"data:     {settings.data_dir.resolve()}")
        click.echo(f"database: {redact_url(urls.database_url)}")
        click.echo(f"redis:    {redact_url(urls.redis_url)}")
        _prepare_templates(settings, urls.database_url)
        operator = ensure_demo_operator(settings, urls.database_url)
        clipyard = str(Path(sys.executable).parent / "clipyard")
        count = str(managers)
        commands = {
            "api": [sys.executable, "-m", "backend", "--host", host, "--port", str(port)],
            # Separate pools: a large batch never holds the web app's jobs back.
            "interactive": [
                clipyard,
                "worker",
                "--queues",
                settings.interactive_queue,
                "-n",
                count,
            ],
            "batch": [
                clipyard,
                "worker",
                "--queues",
                settings.batch_queue,
                "-n",
                count,
                "--no-reconcile",
            ],
        }
        if not (Path(__file__).resolve().parents[2] / "frontend" / "dist").is_dir():
            click.echo("note: the web app is not built (make demo builds it); API only", err=True)
        with _children(commands, child_environment(urls)) as children:
            click.echo(
                f"clipyard is up at http://{host}:{port}/ — sign in as {operator['email']}"
                f" with password {operator['password']} (Ctrl-C stops it)"
            )
            _wait_for_interrupt(children)
    click.echo("stopped")
