"""``clipyard up`` and ``clipyard services``: the single-machine mode.

Starts whatever is not configured externally (embedded PostgreSQL and Redis), applies
the migrations and runs the API until Ctrl-C, then stops everything it started.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import click

from taskmanager.cli.context import load_settings
from taskmanager.localservices import child_environment, local_services
from taskmanager.migrate import upgrade_database
from taskmanager.settings import redact_url


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


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--fresh", is_flag=True, help="Use throwaway services; nothing is kept.")
def up(host: str, port: int, fresh: bool) -> None:
    """Run clipyard on this machine: services, migrations and the API, until Ctrl-C."""
    settings = load_settings()
    with local_services(settings, is_throwaway=fresh) as urls:
        upgrade_database(urls.database_url)
        click.echo(f"database: {redact_url(urls.database_url)}")
        click.echo(f"redis:    {redact_url(urls.redis_url)}")
        env = child_environment(urls)
        clipyard = str(Path(sys.executable).parent / "clipyard")
        children = {
            "api": subprocess.Popen(
                [sys.executable, "-m", "backend", "--host", host, "--port", str(port)], env=env
            ),
            # Separate pools: a large batch never holds the web app's jobs back.
            "interactive managers": subprocess.Popen(
                [clipyard, "worker", "--queues", settings.interactive_queue, "-n", "2"], env=env
            ),
            "batch managers": subprocess.Popen(
                [clipyard, "worker", "--queues", settings.batch_queue, "-n", "2", "--no-reconcile"],
                env=env,
            ),
        }
        click.echo(f"clipyard is up at http://{host}:{port}/ (Ctrl-C stops it)")
        try:
            _wait_for_interrupt(children)
        finally:
            for child in children.values():
                child.send_signal(signal.SIGTERM)
            for child in children.values():
                try:
                    child.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        click.echo("stopped")
