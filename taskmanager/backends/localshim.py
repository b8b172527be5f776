"""Run one local "container": a detached process that outlives any manager.

Started as ``python -I -S localshim.py RUN_DIR -- COMMAND...`` (standard library only,
so it starts in milliseconds). It detaches (double fork, new session), runs COMMAND in
its own process group with stdout and stderr appended to ``RUN_DIR/output.log``, and
records what a container runtime would: ``shim.pid``, ``pgid``, ``started_at``, then
``usage.json`` and ``exit_code`` (128 + signal number when killed by a signal).
Files appear atomically (written then renamed) so readers never see half a value.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time


def _write(run_dir: str, name: str, value: str) -> None:
    temporary = os.path.join(run_dir, f".{name}.tmp")
    with open(temporary, "w") as handle:
        handle.write(value)
    os.replace(temporary, os.path.join(run_dir, name))


def main(argv: list[str]) -> int:
    """Detach, run the command, record its exit code."""
    run_dir, separator, *command = argv
    if separator != "--" or not command:
        print("usage: localshim.py RUN_DIR -- COMMAND...", file=sys.stderr)
        return 2
    if os.fork() > 0:
        return 0  # the launcher reaps this parent at once; the grandchild is adopted by init
    os.setsid()
    # Stopping a container signals its process group, not the shim: the shim must live
    # to record the exit code. A handler (not SIG_IGN) resets to default in the child.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    env_file = os.path.join(run_dir, "env.json")
    env = dict(os.environ)
    if os.path.exists(env_file):
        with open(env_file) as handle:
            env.update(json.load(handle))
        os.unlink(env_file)  # secrets live only in the container's environment
    _write(run_dir, "shim.pid", str(os.getpid()))
    with open(os.path.join(run_dir, "output.log"), "ab", buffering=0) as log:
        try:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=run_dir,
                process_group=0,
            )
        except OSError as exc:
            log.write(f"cannot start {command[0]}: {exc}\n".encode())
            _write(run_dir, "started_at", repr(time.time()))
            _write(run_dir, "exit_code", "127")
            return 0
        _write(run_dir, "pgid", str(child.pid))
        _write(run_dir, "started_at", repr(time.time()))
        while True:
            try:
                returncode = child.wait()
                break
            except InterruptedError:
                continue
    finished_at = time.time()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    _write(
        run_dir,
        "usage.json",
        json.dumps(
            {
                "peak_rss_mb": usage.ru_maxrss / 1024,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "finished_at": finished_at,
            }
        ),
    )
    _write(run_dir, "exit_code", str(returncode if returncode >= 0 else 128 - returncode))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
