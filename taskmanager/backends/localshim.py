"""Run one local "container": a detached process that outlives any manager.

Started as ``python -I -S localshim.py RUN_DIR -- COMMAND...``. It detaches (double
fork, new session), runs COMMAND in its own process group with stdout and stderr
appended to ``RUN_DIR/output.log``, and records what a container runtime would:
``shim.pid``, ``pgid``, ``started_at``, then ``usage.json`` and ``exit_code`` (128 +
signal number when killed by a signal). Files appear atomically (written, then
renamed) so readers never see half a value.

It imports only small standard modules: every millisecond of start-up here delays the
container's start (json and subprocess alone would cost 12 ms).
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _write(run_dir: str, name: str, value: str) -> None:
    temporary = os.path.join(run_dir, f".{name}.tmp")
    with open(temporary, "w") as handle:
        handle.write(value)
    os.replace(temporary, os.path.join(run_dir, name))


def _read_env(run_dir: str) -> dict[str, str]:
    """Read the container's environment (NUL-separated NAME=VALUE) and delete the file."""
    env = dict(os.environ)
    path = os.path.join(run_dir, "env")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return env
    os.unlink(path)  # secrets live only in the container's environment from here on
    for item in data.split(b"\0"):
        name, separator, value = item.partition(b"=")
        if separator:
            env[name.decode()] = value.decode()
    return env


def _exec_child(run_dir: str, command: list[str], env: dict[str, str]) -> None:
    """In the forked child: own process group, output to the log, then exec."""
    os.setpgid(0, 0)
    # Stopping a container signals its group, and the shim ignores SIGTERM below:
    # the container itself must get the default dispositions back.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    log = os.open(os.path.join(run_dir, "output.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(run_dir)
    try:
        os.execvpe(command[0], command, env)  # noqa: S606 - argv as given, no shell
    except OSError as exc:
        os.write(2, f"cannot start {command[0]}: {exc}\n".encode())
        os._exit(127)


def main(argv: list[str]) -> int:
    """Detach, run the command, record its exit code and usage."""
    run_dir, separator, *command = argv
    if separator != "--" or not command:
        print("usage: localshim.py RUN_DIR -- COMMAND...", file=sys.stderr)
        return 2
    if os.fork() > 0:
        return 0  # the launcher reaps this parent at once; the grandchild is adopted by init
    os.setsid()
    # The shim must outlive a stop to record the exit code.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    env = _read_env(run_dir)
    _write(run_dir, "shim.pid", str(os.getpid()))
    pid = os.fork()
    if pid == 0:
        _exec_child(run_dir, command, env)
    # Also here, so the group exists before we name it; it fails harmlessly when the
    # child already exec'ed (having set its group itself) or already exited.
    try:  # noqa: SIM105 - contextlib would add 5 ms to every container start
        os.setpgid(pid, pid)
    except (PermissionError, ProcessLookupError):
        pass
    _write(run_dir, "pgid", str(pid))
    _write(run_dir, "started_at", repr(time.time()))
    _, status, usage = os.wait4(pid, 0)
    finished_at = time.time()
    code = os.waitstatus_to_exitcode(status)
    _write(
        run_dir,
        "usage.json",
        f'{{"peak_rss_mb": {usage.ru_maxrss / 1024!r}, '
        f'"cpu_seconds": {usage.ru_utime + usage.ru_stime!r}, "finished_at": {finished_at!r}}}',
    )
    _write(run_dir, "exit_code", str(code if code >= 0 else 128 - code))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
