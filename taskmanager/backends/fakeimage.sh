#!/bin/sh
# A stand-in container for tests and benchmarks: behaves as told, speaks the contract.
#
#   fakeimage.sh [--seconds S] [--steps N] [--exit-code C] [--hang] [--ignore-sigterm]
#                [--message TEXT]
#
# Prints the compositor's JSON-lines events (start, progress, then done or error) and
# exits with the chosen code. Like the real image it ends itself at CLIPYARD_DEADLINE_AT
# (epoch seconds): `timeout` sends TERM there (exit 124), KILL a second later. A shell, not Python: a stand-in that costs 30 ms of CPU to
# start would make every benchmark measure Python's start-up instead of clipyard.
if [ -n "${CLIPYARD_DEADLINE_AT:-}" ]; then
    left=$(awk -v d="$CLIPYARD_DEADLINE_AT" -v now="$(date +%s.%N)" \
        'BEGIN { left = d - now; if (left < 0.001) left = 0.001; printf "%.3f", left }')
    CLIPYARD_DEADLINE_AT="" exec timeout -k 1 "$left" /bin/sh "$0" "$@"
fi
seconds=1.0 steps=4 code=0 hang=0 message=""
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) seconds=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --exit-code) code=$2; shift 2 ;;
        --hang) hang=1; shift ;;
        --ignore-sigterm) trap '' TERM; shift ;;  # inherited: the sleeps ignore it too
        --message) message=$2; shift 2 ;;
        *) echo "fakeimage: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$steps" -ge 1 ] 2>/dev/null || steps=1
echo "{\"event\": \"start\", \"total\": $steps}"
if [ "$hang" = 1 ]; then
    echo "{\"event\": \"progress\", \"done\": 0, \"total\": $steps}"
    while :; do sleep 3600; done
fi
if [ "$steps" = 1 ]; then
    pause=$seconds
else
    pause=$(awk -v s="$seconds" -v n="$steps" 'BEGIN { printf "%.6f", s / n }')
fi
done=0
while [ "$done" -lt "$steps" ]; do
    sleep "$pause"
    done=$((done + 1))
    echo "{\"event\": \"progress\", \"done\": $done, \"total\": $steps}"
done
if [ "$code" = 0 ]; then
    echo "{\"event\": \"done\", \"bytes\": 0, \"duration\": $seconds}"
else
    text=$(printf '%s' "${message:-fake failure}" | sed 's/\\/\\\\/g; s/"/\\"/g')
    printf '{"event": "error", "code": %s, "message": "%s"}\n' "$code" "$text"
fi
exit "$code"
