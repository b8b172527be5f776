"""Serve the API with waitress (``python -m backend``); ``clipyard up`` runs this."""

from __future__ import annotations

import argparse

from waitress import serve

from backend.app import create_app
from taskmanager.logs import configure_logging
from taskmanager.settings import Settings


def main() -> None:
    """Parse --host/--port and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m backend")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    serve(create_app(settings), host=args.host, port=args.port, threads=args.threads)


if __name__ == "__main__":
    main()
