#!/bin/sh
# Run one local "container": localshim.sh RUN_DIR COMMAND...
#
# The launcher starts this in a session of its own, with the container's environment,
# so it outlives any manager. It runs COMMAND in its own process group (setsid), with
# stdout and stderr appended to output.log, and records what a container runtime
# would: shim.pid, pgid, started_at, then times (CPU) and finished_at, and exit_code
# (128 + the signal number when killed by a signal). Each file appears atomically
# (written, then renamed). A shell, not Python: it starts in about a millisecond, and
# every millisecond here delays the container's start.
run_dir=$1
shift
cd "$run_dir" || exit 111
# Stopping a container signals its process group, not the shim, and the shim must live
# to record the exit code; a handler (not an ignore) leaves the container the default.
trap 'true' TERM INT HUP
echo $$ >.shim.pid && mv .shim.pid shim.pid
setsid "$@" <"/dev/null" >>output.log 2>&1 &
child=$!
echo "$child" >.pgid && mv .pgid pgid
date +%s.%N >.started_at && mv .started_at started_at
while :; do
    wait "$child"
    code=$?
    # A trapped signal interrupts wait: only a reaped child ends the loop.
    kill -0 "$child" 2>/dev/null || break
done
date +%s.%N >.finished_at && mv .finished_at finished_at
times >.times && mv .times times
echo "$code" >.exit_code && mv .exit_code exit_code
