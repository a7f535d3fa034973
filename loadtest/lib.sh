# shellcheck shell=bash
# Shell helpers shared by loadtest/bench-state.sh and loadtest/bench-all.sh (sourced, not run).
#
# They use these globals of the script that sources them: OUT (the run's directory: logs go
# there), HEX (this run's random hex: RabbitMQ virtual hosts are ww-bench-<HEX>-<suffix>), PREFIX
# (the Redis key prefix of everything the run writes: removed at exit), WARDWATCH (the
# `wardwatch` binary), PIDS and VHOSTS (what the run started and made, for `cleanup`).
# Everything contacts only 127.0.0.1.

VHOSTS=()
PIDS=()

die() {
    echo "$(basename "$0" .sh): $*" >&2
    exit 1
}
note() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# unlink_prefix <prefix>: removes every Redis key under <prefix> (whatever its type).
unlink_prefix() {
    redis-cli -h 127.0.0.1 --scan --pattern "$1*" | xargs -r -d '\n' -n 500 redis-cli -h 127.0.0.1 unlink >/dev/null
}

# Stops every process started and removes the virtual hosts and the Redis keys under PREFIX.
cleanup() {
    local pid v n
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    for v in "${VHOSTS[@]}"; do
        rabbitmqctl -q delete_vhost "$v" >/dev/null 2>&1 || echo "$(basename "$0" .sh): could not delete vhost $v" >&2
    done
    VHOSTS=()
    if [[ -n ${PREFIX:-} ]] && command -v redis-cli >/dev/null && [[ $(redis-cli -h 127.0.0.1 ping 2>/dev/null) == PONG ]]; then
        unlink_prefix "$PREFIX"
        n=$(redis-cli -h 127.0.0.1 --scan --pattern "$PREFIX*" | wc -l)
        [[ $n == 0 ]] || echo "$(basename "$0" .sh): $n Redis keys matching $PREFIX* are left" >&2
    fi
}

# new_vhost <suffix>: a fresh RabbitMQ virtual host for guest, named in VHOST (and deleted at exit).
new_vhost() {
    VHOST=ww-bench-$HEX-$1
    rabbitmqctl -q add_vhost "$VHOST" >/dev/null || die "rabbitmqctl add_vhost $VHOST failed"
    VHOSTS+=("$VHOST")
    rabbitmqctl -q set_permissions -p "$VHOST" guest ".*" ".*" ".*" >/dev/null ||
        die "rabbitmqctl set_permissions -p $VHOST failed"
}

# drop_vhost <vhost>: deletes a virtual host made by new_vhost before the end of the run.
drop_vhost() {
    local keep=() v
    rabbitmqctl -q delete_vhost "$1" >/dev/null 2>&1 || echo "$(basename "$0" .sh): could not delete vhost $1" >&2
    for v in "${VHOSTS[@]}"; do [[ $v == "$1" ]] || keep+=("$v"); done
    VHOSTS=("${keep[@]}")
}

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# Stop a process this script started: SIGTERM (graceful drain), SIGKILL after 30 s.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# Wait for "listening on http://127.0.0.1:<port>" in a log; prints the base URL.
wait_listening() {
    local log=$1 pid=$2 i url
    for i in $(seq 600); do
        url=$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$log" 2>/dev/null | head -1 | sed 's/^listening on //') || true
        if [[ -n $url ]]; then
            echo "$url"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || die "the process logging to $log exited: $(tail -5 "$log")"
        sleep 0.1
    done
    die "nothing listening after 60 s; see $log"
}

# start_wardwatch <name> [KEY=VALUE ...] -- [wardwatch up args]: sets WW_PID and WW_BASE.
start_wardwatch() {
    local name=$1
    shift
    local envs=()
    while [[ $1 != -- ]]; do
        envs+=("$1")
        shift
    done
    shift
    env -u REDIS_URL -u AMQP_URL -u STATE_BACKEND -u BUS_BACKEND -u DAPR_HTTP_PORT -u LISTEN -u PORT \
        -u STATE_KEY_PREFIX -u APP_API_TOKEN NO_COLOR=1 "${envs[@]}" \
        "$WARDWATCH" up --listen 127.0.0.1:0 "$@" >"$OUT/$name.log" 2>&1 &
    WW_PID=$!
    PIDS+=("$WW_PID")
    WW_BASE=$(wait_listening "$OUT/$name.log" "$WW_PID")
    # Ready = every backend answers.
    local i
    for i in $(seq 300); do
        curl -sf "$WW_BASE/readyz" >/dev/null && return 0
        sleep 0.1
    done
    die "$name: $WW_BASE/readyz did not turn 200 in 30 s; see $OUT/$name.log"
}

# Sum of a metric's samples whose label set contains <labels> (a substring like function="admit").
metric() {
    local base=$1 name=$2 labels=${3:-}
    curl -sf "$base/metrics" | awk -v n="$name" -v l="$labels" '
        (index($1, n "{") == 1 || $1 == n) && index($1, l) { s += $NF } END { printf "%d\n", s }'
}
admitted() { echo $(($(metric "$1" wardwatch_requests_total 'function="admit"') - $(metric "$1" wardwatch_failures_total 'function="admit"'))); }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
