#!/usr/bin/env bash
# CPU used by each process of a benchmark over a window, in cores (1.00 = one core busy), from
# /proc/<pid>/stat (user + system time) — run it beside a benchmark, e.g. while
# loadtest/labfeed.sh is sending:
#
#   loadtest/cpu-share.sh 20                         # wardwatch, labfeed, redis-server, beam.smp, k6, wrk
#   loadtest/cpu-share.sh 20 wardwatch redis-server  # only these (exact process names, pgrep -x)
#
# Prints one line per process name (all its processes summed) and the whole machine's busy share
# (/proc/stat) over the same window. Reads /proc only; Linux.
set -euo pipefail

SECONDS_WINDOW=${1:-20}
shift || true
NAMES=("$@")
[[ ${#NAMES[@]} -gt 0 ]] || NAMES=(wardwatch labfeed redis-server beam.smp k6 wrk)
[[ $SECONDS_WINDOW =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "cpu-share: the window must be a number of seconds" >&2; exit 2; }
TICKS=$(getconf CLK_TCK)

# name ticks, for every name with a process
snap() {
    local n p
    for n in "${NAMES[@]}"; do
        local total=0 found=0
        for p in $(pgrep -x "$n" || true); do
            # Fields 14 and 15 (utime, stime) after the ")" that ends the command name.
            local t
            t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }') || continue
            [[ -n $t ]] || continue
            total=$((total + t))
            found=1
        done
        [[ $found == 0 ]] || echo "$n $total"
    done
}
machine() { awk '/^cpu / { idle = $5 + $6; total = 0; for (i = 2; i <= NF; i++) total += $i; print total, idle }' /proc/stat; }

A=$(snap)
read -r M0 I0 < <(machine)
T0=$(date +%s.%N)
sleep "$SECONDS_WINDOW"
B=$(snap)
read -r M1 I1 < <(machine)
T1=$(date +%s.%N)

join <(sort <<<"$A") <(sort <<<"$B") | awk -v t0="$T0" -v t1="$T1" -v hz="$TICKS" \
    '{ printf "%-14s %.2f cores\n", $1, ($3 - $2) / hz / (t1 - t0) }'
awk -v m="$((M1 - M0))" -v i="$((I1 - I0))" -v cpus="$(nproc)" \
    'BEGIN { if (m > 0) printf "%-14s %.0f %% busy of %d CPUs\n", "machine", 100 * (m - i) / m, cpus }'
