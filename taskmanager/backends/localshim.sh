#!/bin/bash
# Run one local "container": localshim.sh RUN_DIR COMMAND...
#
# The launcher starts this in a session of its own, with the container's environment,
# so it outlives any manager. It runs COMMAND in its own process group, with
# stdout and stderr appended to output.log, and records what a container runtime
# would: shim.pid, pgid, started_at, then finished_at, times (CPU) and last exit_code
# (128 + the signal number when killed by a signal), the sign that the rest is there.
#
# Every process this script forks is CPU the machine's containers do not get, and
# delays a container's start or its end: bash's clock ($EPOCHREALTIME) replaces
# `date`, and each record is one small write (no temporary file and `mv`) that
# readers take as absent while it is still empty.
run_dir=$1
shift
cd "$run_dir" || exit 111
# Stopping a container signals its process group, not the shim, and the shim must live
# to record the exit code; a handler (not an ignore) leaves the container the default.
trap 'true' TERM INT HUP
echo $$ >shim.pid
# Job control puts the background job in a process group of its own, and bash sets it
# from both sides of the fork, so the group exists before its id is recorded: a stop
# that comes at once cannot miss it (`setsid` in the child left that a race).
set -m
"$@" <"/dev/null" >>output.log 2>&1 &
child=$!
echo "$child" >pgid
echo "$EPOCHREALTIME" >started_at
while :; do
    wait "$child"
    code=$?
    # A trapped signal interrupts wait: only a reaped child ends the loop.
    kill -0 "$child" 2>/dev/null || break
done
echo "$EPOCHREALTIME" >finished_at
times >times
echo "$code" >exit_code
