"""A stand-in container for tests and benchmarks: behaves as told, speaks the contract.

Prints the compositor's JSON-lines events and exits with a chosen code. Standard
library only, run as ``python -I -S fakeimage.py [options]``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time


def _emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def main(argv: list[str]) -> int:
    """Pretend to composite a video."""
    parser = argparse.ArgumentParser(prog="fakeimage")
    parser.add_argument("--seconds", type=float, default=1.0, help="how long to work")
    parser.add_argument("--steps", type=int, default=4, help="progress events to print")
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--hang", action="store_true", help="stop reporting progress")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--message", default="", help="printed in the final error event")
    args = parser.parse_args(argv)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    steps = max(1, args.steps)
    _emit("start", total=steps)
    if args.hang:
        _emit("progress", done=0, total=steps)
        while True:
            time.sleep(3600)
    for done in range(1, steps + 1):
        time.sleep(args.seconds / steps)
        _emit("progress", done=done, total=steps)
    if args.exit_code == 0:
        _emit("done", bytes=0, duration=args.seconds)
    else:
        _emit("error", code=args.exit_code, message=args.message or "fake failure")
    return int(args.exit_code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
