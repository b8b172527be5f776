#!/usr/bin/env python3
"""Container health checks for the clipyard images (installed as ``clipyard-healthcheck``).

``clipyard-healthcheck http URL``: healthy when URL answers 2xx within the timeout
(``/healthz`` for liveness, ``/readyz`` for database, Redis and storage).
``clipyard-healthcheck managers``: healthy when at least one task manager
(``python -m taskmanager.supervision.worker``, started by ``clipyard worker``) is alive here.

Standard library only: the slim images carry neither curl nor procps.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

_MANAGER_MARK = b"taskmanager.supervision.worker"


def is_url_healthy(url: str, timeout_s: float = 4.0) -> bool:
    """Tell whether ``url`` answers with a 2xx status within ``timeout_s``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def count_managers(proc: Path = Path("/proc")) -> int:
    """Count the live task-manager processes visible in ``proc``."""
    count = 0
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended while we looked
            continue
        if _MANAGER_MARK in args:
            count += 1
    return count


def main(argv: list[str]) -> int:
    """Run the check named in ``argv``; return 0 when healthy, 1 when not, 2 on bad usage."""
    if len(argv) == 2 and argv[0] == "http":
        return 0 if is_url_healthy(argv[1]) else 1
    if argv == ["managers"]:
        return 0 if count_managers() > 0 else 1
    print("usage: clipyard-healthcheck http URL | managers", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
