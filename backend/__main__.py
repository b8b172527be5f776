"""Serve the API in production (``python -m backend``); ``clipyard up`` runs this.

gunicorn with the ``gthread`` worker: ``api_workers`` processes of ``api_threads``
threads each. A Server-Sent Events client holds one thread while connected, so the
threads, not the processes, bound how many can follow jobs at once; the workers'
heartbeat runs on the main thread and is not blocked by long streams.
"""

from __future__ import annotations

import argparse
from typing import Any

from gunicorn.app.base import BaseApplication

from backend.app import create_app
from taskmanager.logs import configure_logging
from taskmanager.settings import Settings


class _Server(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured from code instead of a config file."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Built in each worker after the fork: no database pool or Redis connection is
        # shared between processes.
        configure_logging(self.settings.log_level, self.settings.log_format)
        return create_app(self.settings)


def server_options(settings: Settings, host: str, port: int) -> dict[str, Any]:
    """Return gunicorn's settings for the API; each says why it is set."""
    return {
        "bind": f"{host}:{port}",
        "worker_class": "gthread",
        "workers": settings.api_workers,
        "threads": settings.api_threads,
        # Accept many more idle keep-alive and SSE connections than there are threads.
        "worker_connections": 1000,
        # gthread's heartbeat is independent of request length: SSE streams may last.
        "timeout": 60,
        "graceful_timeout": 20,
        "keepalive": 5,
        # The request log is the app's structured "request" event; no second access log.
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "clipyard-api",
    }


def main() -> None:
    """Parse --host/--port and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m backend")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, help="processes (default: api_workers)")
    parser.add_argument("--threads", type=int, help="threads per process (default: api_threads)")
    args = parser.parse_args()
    settings = Settings.from_env()
    options = server_options(settings, args.host, args.port)
    if args.workers:
        options["workers"] = args.workers
    if args.threads:
        options["threads"] = args.threads
    _Server(settings, options).run()


if __name__ == "__main__":
    main()
