#!/usr/bin/env bash
# The benchmark of issue 5 ("Speed"), in one run, each figure beside its ceiling:
#   1. admissions: `wardwatch up --redis --amqp` vs a bare hyper "200" server, same wrk load
#      (32 connections, a new patient per request, 200 wards x 30 beds);
#   2. embedded `wardwatch up`: admissions/s at the start vs after 50,000 admissions;
#   3. lab pipeline: N Observations waiting on lab-feed drained by ingest-lab + evaluate-alert
#      vs raw RabbitMQ publish (confirms) + consume (manual ack) of the same payloads;
#   4. lab→alert: `labfeed` sends results at a fixed rate through `wardwatch up --redis --amqp`
#      and times each critical one to its alert on the board's event stream, beside the
#      broker's own two-hop publish → consume latency at the same rate.
# Prints a summary table and writes the raw results as JSON to target/bench/<run>/results.json
# (and target/bench/latest.json). Only 127.0.0.1 is contacted. See loadtest/README.md.
#
# Settings (environment): DURATION (s, each measured HTTP run, default 20), WARMUP (s, 5),
# CONNECTIONS (32), THREADS (wrk threads, 2), EMBED_WINDOW (s, 10), EMBED_TARGET (50000),
# EMBED_FILL_MAX (s, longest allowed to reach EMBED_TARGET, 5400), EMBED_FILL_CONNECTIONS (1), LAB_N (20000),
# LAB_PATIENTS (300), LAB_TIMEOUT (s, 900), LAB_FORMAT (fhir: FHIR Observations, or hl7: HL7 v2
# ORU^R01 messages), FEED_RATE (results/s, 1000), FEED_DURATION (s, 30), FEED_SEED (1),
# PARTS (admissions,embedded,lab,labfeed).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
EMBED_WINDOW=${EMBED_WINDOW:-10}
EMBED_TARGET=${EMBED_TARGET:-50000}
EMBED_FILL_MAX=${EMBED_FILL_MAX:-5400}
EMBED_FILL_CONNECTIONS=${EMBED_FILL_CONNECTIONS:-1}
LAB_N=${LAB_N:-20000}
LAB_PATIENTS=${LAB_PATIENTS:-300}
LAB_TIMEOUT=${LAB_TIMEOUT:-900}
LAB_FORMAT=${LAB_FORMAT:-fhir}
# The benchmark's HL7 v2 patients (PID-3 authority WWBENCH) are the admitted MRNs.
export V2_IDENTIFIER_SYSTEMS="WWBENCH^MR=https://fhir.example-hospital.nhs.uk/Id/mrn"
FEED_RATE=${FEED_RATE:-1000}
FEED_DURATION=${FEED_DURATION:-30}
FEED_SEED=${FEED_SEED:-1}
PARTS=${PARTS:-admissions,embedded,lab,labfeed}

REDIS_URL=redis://127.0.0.1:6379
AMQP_BASE=amqp://guest:guest@127.0.0.1:5672

die() {
    echo "bench-state: $*" >&2
    exit 1
}
note() { echo "[$(date +%H:%M:%S)] $*" >&2; }
part() { [[ ",$PARTS," == *",$1,"* ]]; }

# --- what the run needs ---------------------------------------------------------------------
command -v wrk >/dev/null || die "wrk is not installed. Install it with: apt-get update && apt-get install -y wrk"
command -v jq >/dev/null || die "jq is not installed. Install it with: apt-get update && apt-get install -y jq"
command -v curl >/dev/null || die "curl is not installed. Install it with: apt-get update && apt-get install -y curl"
command -v cargo >/dev/null || die "cargo is not on PATH"
if part admissions || part lab || part labfeed; then
    command -v redis-cli >/dev/null || die "redis-cli is not installed (it comes with redis-server: apt-get install -y redis-server)"
    [[ $(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null) == PONG ]] ||
        die "Redis is not answering on 127.0.0.1:6379. Start it with:
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
    command -v rabbitmqctl >/dev/null || die "rabbitmqctl is not installed (it comes with rabbitmq-server: apt-get install -y rabbitmq-server)"
    (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && rabbitmqctl -q list_vhosts >/dev/null 2>&1 ||
        die "RabbitMQ is not answering on 127.0.0.1:5672. Start it with: rabbitmq-server -detached (and wait for: rabbitmqctl await_startup)"
fi

# --- build ----------------------------------------------------------------------------------
note "building (release): wardwatch, wardwatch-loadtest"
cargo build --release --quiet -p wardwatch -p wardwatch-loadtest || die "the release build failed"
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
WARDWATCH=$TARGET_DIR/release/wardwatch
CEILING=$TARGET_DIR/release/ceiling
LABBENCH=$TARGET_DIR/release/labbench
LABFEED=$TARGET_DIR/release/labfeed

# --- this run's names, and clean-up of everything it creates ---------------------------------
HEX=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
RUN=$(date -u +%Y%m%dT%H%M%SZ)-$HEX
TAG=b$HEX                  # MRNs, Encounter and result identifiers
PREFIX=bench$HEX           # Redis key prefix (STATE_KEY_PREFIX); keys are <prefix>||<key>
OUT=$ROOT/target/bench/$RUN
mkdir -p "$OUT"
VHOSTS=()
PIDS=()

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
        rabbitmqctl -q delete_vhost "$v" >/dev/null 2>&1 || echo "bench-state: could not delete vhost $v" >&2
    done
    VHOSTS=()
    if command -v redis-cli >/dev/null && [[ $(redis-cli -h 127.0.0.1 ping 2>/dev/null) == PONG ]]; then
        redis-cli -h 127.0.0.1 --scan --pattern "$PREFIX*" | xargs -r -d '\n' -n 500 redis-cli -h 127.0.0.1 unlink >/dev/null
        n=$(redis-cli -h 127.0.0.1 --scan --pattern "$PREFIX*" | wc -l)
        [[ $n == 0 ]] || echo "bench-state: $n Redis keys matching $PREFIX* are left" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# new_vhost <suffix>: a fresh RabbitMQ virtual host for guest, named in VHOST (and deleted at exit).
new_vhost() {
    VHOST=ww-bench-$HEX-$1
    rabbitmqctl -q add_vhost "$VHOST" >/dev/null || die "rabbitmqctl add_vhost $VHOST failed"
    VHOSTS+=("$VHOST")
    rabbitmqctl -q set_permissions -p "$VHOST" guest ".*" ".*" ".*" >/dev/null ||
        die "rabbitmqctl set_permissions -p $VHOST failed"
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

# wrk_run <name> <url> <seconds> <tag>: runs the admissions load; prints its WRKJSON object.
wrk_run() {
    local name=$1 url=$2 secs=$3 tag=$4
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --timeout 10s --latency \
        -s "$ROOT/loadtest/admissions.lua" "$url" -- "$tag" "$THREADS" >"$OUT/$name.wrk.txt" 2>&1 ||
        die "wrk failed: $(tail -5 "$OUT/$name.wrk.txt")"
    grep '^WRKJSON ' "$OUT/$name.wrk.txt" | sed 's/^WRKJSON //' || die "no WRKJSON line in $OUT/$name.wrk.txt"
}

# Sum of a metric's samples whose label set contains <labels> (a substring like function="admit").
metric() {
    local base=$1 name=$2 labels=${3:-}
    curl -sf "$base/metrics" | awk -v n="$name" -v l="$labels" '
        (index($1, n "{") == 1 || $1 == n) && index($1, l) { s += $NF } END { printf "%d\n", s }'
}
admitted() { echo $(($(metric "$1" wardwatch_requests_total 'function="admit"') - $(metric "$1" wardwatch_failures_total 'function="admit"'))); }
failures_json() {
    curl -sf "$1/metrics" | awk '/^wardwatch_failures_total\{/ { print }' |
        sed -E 's/^wardwatch_failures_total\{function="([^"]*)",kind="([^"]*)"\} ([0-9.e+]+)$/{"function":"\1","kind":"\2","count":\3}/' |
        jq -s .
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# A TCP port nothing listens on.
free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 40000))
        [[ -z $(ss -Hltn "sport = :$p" 2>/dev/null) ]] && ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && {
            echo "$p"
            return 0
        }
    done
    die "no free port found"
}

META=$(jq -n --arg run "$RUN" --arg commit "$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    --arg dirty "$(git status --porcelain 2>/dev/null | grep -c . || true)" --arg cpus "$(nproc)" \
    --arg load "$(loadavg)" --arg wrk "$(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)" \
    --argjson duration "$DURATION" --argjson warmup "$WARMUP" --argjson connections "$CONNECTIONS" \
    --argjson threads "$THREADS" \
    '{run: $run, commit: $commit, uncommitted_files: ($dirty|tonumber), cpus: ($cpus|tonumber),
      loadavg_at_start: $load, wrk: $wrk, duration_s: $duration, warmup_s: $warmup,
      connections: $connections, wrk_threads: $threads}')
ADMISSIONS=null
EMBEDDED=null
LAB=null
FEED=null

# --- 1. admissions vs the HTTP ceiling --------------------------------------------------------
if part admissions; then
    note "1a. HTTP ceiling: bare hyper 200 server, ${WARMUP}s warm-up + ${DURATION}s"
    "$CEILING" --listen 127.0.0.1:0 >"$OUT/ceiling.log" 2>&1 &
    CPID=$!
    PIDS+=("$CPID")
    CBASE=$(wait_listening "$OUT/ceiling.log" "$CPID")
    wrk_run ceiling-warmup "$CBASE/fhir" "$WARMUP" "${TAG}cw" >/dev/null
    CEIL=$(wrk_run ceiling "$CBASE/fhir" "$DURATION" "${TAG}c")
    stop_pid "$CPID"
    note "    $(jq -r '"\(.rps) req/s, p99 \(.latency_ms.p99) ms, non-2xx \(.non2xx)"' <<<"$CEIL")"

    note "1b. wardwatch up --redis --amqp (fresh vhost, STATE_KEY_PREFIX=$PREFIX), same load"
    new_vhost adm
    VH=$VHOST
    LOAD_BEFORE=$(loadavg)
    start_wardwatch admissions "STATE_KEY_PREFIX=$PREFIX" -- --redis "$REDIS_URL" --amqp "$AMQP_BASE/$VH"
    wrk_run admissions-warmup "$WW_BASE/fhir" "$WARMUP" "${TAG}aw" >/dev/null
    BEFORE=$(admitted "$WW_BASE")
    FAILS_BEFORE=$(metric "$WW_BASE" wardwatch_failures_total 'function="admit"')
    ADM=$(wrk_run admissions "$WW_BASE/fhir" "$DURATION" "${TAG}a")
    AFTER=$(admitted "$WW_BASE")
    FAILS=$(($(metric "$WW_BASE" wardwatch_failures_total 'function="admit"') - FAILS_BEFORE))
    FAILJSON=$(failures_json "$WW_BASE")
    stop_pid "$WW_PID"
    ADMISSIONS=$(jq -n --argjson ceiling "$CEIL" --argjson wardwatch "$ADM" --argjson admitted $((AFTER - BEFORE)) \
        --argjson failed "$FAILS" --argjson failures "$FAILJSON" --arg load "$LOAD_BEFORE" --arg vhost "$VH" \
        '{ceiling: $ceiling, wardwatch: ($wardwatch + {admitted_in_window: $admitted,
            admit_failures_in_window: $failed, failures_by_kind_whole_process: $failures}),
          loadavg_before: $load, vhost: $vhost,
          ratio: (if $ceiling.rps > 0 then (($wardwatch.rps / $ceiling.rps) * 10000 | round) / 10000 else null end)}')
    note "    $(jq -r '"\(.wardwatch.rps) admissions/s, p99 \(.wardwatch.latency_ms.p99) ms, non-2xx \(.wardwatch.non2xx), ratio \(.ratio)"' <<<"$ADMISSIONS")"
fi

# --- 2. embedded: at the start vs after EMBED_TARGET admissions -------------------------------
if part embedded; then
    note "2. embedded wardwatch up: ${EMBED_WINDOW}s at the start, fill to $EMBED_TARGET admissions (at most ${EMBED_FILL_MAX}s), ${EMBED_WINDOW}s again"
    start_wardwatch embedded --
    wrk_run embedded-warmup "$WW_BASE/fhir" 2 "${TAG}ew" >/dev/null
    N0=$(admitted "$WW_BASE")
    START=$(wrk_run embedded-start "$WW_BASE/fhir" "$EMBED_WINDOW" "${TAG}es")
    N1=$(admitted "$WW_BASE")
    # Fill: one long wrk run, stopped (SIGINT) once the target is reached.
    # One connection by default: the fill is not a measured figure, only the way to 50,000
    # patients, and concurrent admissions that conflict on shared keys only slow it down.
    wrk -t1 -c"$EMBED_FILL_CONNECTIONS" -d"${EMBED_FILL_MAX}s" --timeout 30s \
        -s "$ROOT/loadtest/admissions.lua" "$WW_BASE/fhir" -- "${TAG}ef" 1 >"$OUT/embedded-fill.wrk.txt" 2>&1 &
    WRK_PID=$!
    PIDS+=("$WRK_PID")
    FILL_T0=$(date +%s)
    : >"$OUT/embedded-fill.progress"
    while kill -0 "$WRK_PID" 2>/dev/null; do
        sleep 5
        N=$(admitted "$WW_BASE")
        echo "$(($(date +%s) - FILL_T0)) $N $(ps -o rss= -p "$WW_PID" | tr -d ' ')" >>"$OUT/embedded-fill.progress"
        ((N >= EMBED_TARGET)) && break
    done
    kill -INT "$WRK_PID" 2>/dev/null || true
    wait "$WRK_PID" 2>/dev/null || true
    forget_pid "$WRK_PID"
    FILL_S=$(($(date +%s) - FILL_T0))
    N2=$(admitted "$WW_BASE")
    AFTER50=$(wrk_run embedded-after "$WW_BASE/fhir" "$EMBED_WINDOW" "${TAG}ea")
    N3=$(admitted "$WW_BASE")
    RSS=$(ps -o rss= -p "$WW_PID" | tr -d ' ')
    FAILJSON=$(failures_json "$WW_BASE")
    stop_pid "$WW_PID"
    PROGRESS=$(awk '{ printf "%s{\"t_s\":%d,\"admitted\":%d,\"rss_kib\":%d}", (NR>1?",":"["), $1, $2, $3 } END { print (NR?"]":"[]") }' "$OUT/embedded-fill.progress")
    EMBEDDED=$(jq -n --argjson start "$START" --argjson after "$AFTER50" --argjson n0 "$N0" --argjson n1 "$N1" \
        --argjson n2 "$N2" --argjson n3 "$N3" --argjson target "$EMBED_TARGET" --argjson fill_s "$FILL_S" --argjson fill_c "$EMBED_FILL_CONNECTIONS" \
        --argjson progress "$PROGRESS" --argjson failures "$FAILJSON" --argjson rss "${RSS:-0}" \
        '{start: ($start + {admitted_before: $n0, admitted_in_window: ($n1 - $n0)}),
          after: ($after + {admitted_before: $n2, admitted_in_window: ($n3 - $n2)}),
          target: $target, target_reached: ($n2 >= $target), fill_s: $fill_s, fill_connections: $fill_c,
          fill_progress: $progress,
          rss_kib_at_end: $rss, failures_by_kind: $failures,
          ratio: (if $start.rps > 0 then (($after.rps / $start.rps) * 10000 | round) / 10000 else null end)}')
    note "    start $(jq -r .start.rps <<<"$EMBEDDED")/s, after $N2 admissions $(jq -r .after.rps <<<"$EMBEDDED")/s, ratio $(jq -r .ratio <<<"$EMBEDDED")"
fi

# --- 3. lab pipeline vs the raw broker --------------------------------------------------------
if part lab; then
    new_vhost lab
    LVH=$VHOST
    LPREFIX=${PREFIX}lab
    LAMQP=$AMQP_BASE/$LVH
    note "3a. raw RabbitMQ: $LAB_N persistent messages, confirms, then consume with manual ack (prefetch 16)"
    RAW=$("$LABBENCH" raw --amqp "$LAMQP" --tag "$TAG" --count "$LAB_N" --patients "$LAB_PATIENTS" --format "$LAB_FORMAT") ||
        die "labbench raw failed"
    note "    publish $(jq -r .publish_per_s <<<"$RAW")/s, consume $(jq -r .consume_per_s <<<"$RAW")/s, publish+consume $(jq -r .publish_and_consume_per_s <<<"$RAW")/s"

    note "3b. wardwatch: admit $LAB_PATIENTS patients, queue $LAB_N Observations on lab-feed, then start and drain"
    start_wardwatch lab-admit "STATE_KEY_PREFIX=$LPREFIX" -- --redis "$REDIS_URL" --amqp "$LAMQP"
    LADMIT=$("$LABBENCH" admit --base "$WW_BASE" --tag "$TAG" --patients "$LAB_PATIENTS") || die "labbench admit failed"
    stop_pid "$WW_PID"
    FEED=$("$LABBENCH" feed --amqp "$LAMQP" --tag "$TAG" --count "$LAB_N" --patients "$LAB_PATIENTS" --format "$LAB_FORMAT") ||
        die "labbench feed failed"
    LOAD_BEFORE=$(loadavg)
    # A port chosen here, so that the watch polls from the moment the process starts.
    PORT=$(free_port)
    env -u REDIS_URL -u AMQP_URL -u STATE_BACKEND -u BUS_BACKEND -u DAPR_HTTP_PORT -u LISTEN -u PORT -u APP_API_TOKEN \
        NO_COLOR=1 STATE_KEY_PREFIX="$LPREFIX" \
        "$WARDWATCH" up --listen "127.0.0.1:$PORT" --redis "$REDIS_URL" --amqp "$LAMQP" >"$OUT/lab-drain.log" 2>&1 &
    WW_PID=$!
    PIDS+=("$WW_PID")
    WW_BASE=http://127.0.0.1:$PORT
    WATCH_RC=0
    WATCH=$("$LABBENCH" watch --base "$WW_BASE" --tag "$TAG" --count "$LAB_N" --patients "$LAB_PATIENTS" \
        --timeout "$LAB_TIMEOUT") || WATCH_RC=$?
    [[ -n $WATCH ]] || die "labbench watch failed (exit $WATCH_RC)"
    QUEUES=$(rabbitmqctl -q list_queues -p "$LVH" name messages --formatter json 2>/dev/null || echo '[]')
    stop_pid "$WW_PID"
    LAB=$(jq -n --argjson raw "$RAW" --argjson admit "$LADMIT" --argjson feed "$FEED" --argjson watch "$WATCH" \
        --argjson queues "$QUEUES" --arg load "$LOAD_BEFORE" --arg vhost "$LVH" --argjson ok "$([[ $WATCH_RC == 0 ]] && echo true || echo false)" \
        --arg format "$LAB_FORMAT" \
        '{format: $format, raw: $raw, admit: $admit, feed: $feed, wardwatch: $watch, queues_after: $queues, loadavg_before: $load,
          vhost: $vhost, checks_passed: $ok,
          ratio_vs_publish_and_consume: (($watch.drain_per_s / $raw.publish_and_consume_per_s) * 10000 | round / 10000),
          ratio_vs_consume: (($watch.drain_per_s / $raw.consume_per_s) * 10000 | round / 10000)}')
    note "    drain $(jq -r .wardwatch.drain_per_s <<<"$LAB")/s, ratio $(jq -r .ratio_vs_publish_and_consume <<<"$LAB") of raw publish+consume"
fi

# --- 4. lab→alert latency at a fixed rate ------------------------------------------------------
if part labfeed; then
    new_vhost feed
    FVH=$VHOST
    note "4. labfeed: $FEED_RATE results/s for ${FEED_DURATION}s (seed $FEED_SEED) through wardwatch up --redis --amqp; lab→alert on the board's event stream, the broker's two hops at the same rate first"
    start_wardwatch labfeed "STATE_KEY_PREFIX=${PREFIX}feed" -- --redis "$REDIS_URL" --amqp "$AMQP_BASE/$FVH"
    LOAD_BEFORE=$(loadavg)
    FEED_RC=0
    FEEDJSON=$("$LABFEED" --base "$WW_BASE" --amqp "$AMQP_BASE/$FVH" --rate "$FEED_RATE" --duration "$FEED_DURATION" \
        --seed "$FEED_SEED" --out "$OUT/labfeed") || FEED_RC=$?
    [[ -n $FEEDJSON ]] || die "labfeed failed (exit $FEED_RC)"
    FAILJSON=$(failures_json "$WW_BASE")
    stop_pid "$WW_PID"
    FEED=$(jq -n --argjson feed "$FEEDJSON" --arg load "$LOAD_BEFORE" --arg vhost "$FVH" --argjson failures "$FAILJSON" \
        '$feed + {loadavg_before: $load, vhost: $vhost, failures_by_kind: $failures}')
    note "    lab→alert p99 $(jq -r .lab_to_alert_ms.p99 <<<"$FEED") ms (p50 $(jq -r .lab_to_alert_ms.p50 <<<"$FEED")), alerts $(jq -r '"\(.alerts.seen)/\(.alerts.expected)"' <<<"$FEED"); broker two hops p99 $(jq -r .broker_two_hops.p99 <<<"$FEED") ms"
fi

# --- results ------------------------------------------------------------------------------
RESULTS=$(jq -n --argjson meta "$META" --argjson admissions "$ADMISSIONS" --argjson embedded "$EMBEDDED" \
    --argjson lab "$LAB" --argjson feed "$FEED" --arg load "$(loadavg)" \
    '{meta: ($meta + {loadavg_at_end: $load}), admissions: $admissions, embedded: $embedded, lab: $lab, labfeed: $feed}')
echo "$RESULTS" >"$OUT/results.json"
cp "$OUT/results.json" "$ROOT/target/bench/latest.json"

jq -r '
  def f: if . == null then "-" else tostring end;
  def row($a; $b; $c; $d): "| \($a) | \($b) | \($c) | \($d) |";
  "",
  "Wardwatch benchmark \(.meta.run) — commit \(.meta.commit[0:10]) — \(.meta.cpus) CPUs, load \(.meta.loadavg_at_start) at start (shared machine: figures are noisy)",
  "",
  row("figure"; "measured"; "ceiling / reference"; "ratio"),
  "|---|---|---|---|",
  (.admissions | select(. != null) |
    row("admissions/s, wardwatch up --redis --amqp vs bare hyper";
        "\(.wardwatch.rps) req/s (p50 \(.wardwatch.latency_ms.p50) ms, p99 \(.wardwatch.latency_ms.p99) ms, non-2xx \(.wardwatch.non2xx), socket errors \(.wardwatch.errors | add))";
        "\(.ceiling.rps) req/s (p99 \(.ceiling.latency_ms.p99) ms, non-2xx \(.ceiling.non2xx))";
        (.ratio | f))),
  (.embedded | select(. != null) |
    row("embedded admissions/s: after \(.after.admitted_before) vs start";
        "\(.after.rps) req/s (p99 \(.after.latency_ms.p99) ms, non-2xx \(.after.non2xx))";
        "\(.start.rps) req/s at the start (p99 \(.start.latency_ms.p99) ms, non-2xx \(.start.non2xx))";
        (.ratio | f))),
  (.lab | select(. != null) |
    row("lab-feed drain, \(.raw.messages) results as \(.format // "fhir") (ingest-lab + evaluate-alert)";
        "\(.wardwatch.drain_per_s)/s (failures \(.wardwatch.failures_total), alerts \(.wardwatch.alerts_active | f)/\(.wardwatch.alerts_expected))";
        "raw publish+consume \(.raw.publish_and_consume_per_s)/s (publish \(.raw.publish_per_s)/s, consume \(.raw.consume_per_s)/s)";
        "\(.ratio_vs_publish_and_consume) (vs consume only: \(.ratio_vs_consume))")),
  (.labfeed | select(. != null) |
    row("lab→alert at \(.rate)/s for \(.duration_s) s (\(.results) results, \(.hl7_v2) HL7 v2), send → alert-raised on the event stream";
        "p50 \(.lab_to_alert_ms.p50) ms, p99 \(.lab_to_alert_ms.p99) ms, max \(.lab_to_alert_ms.max) ms; alerts \(.alerts.seen)/\(.alerts.expected) (exact: \(.alerts.exact)); stored \(.stored_per_s)/s";
        "broker alone, two hops: p50 \(.broker_two_hops.p50 | f) ms, p99 \(.broker_two_hops.p99 | f) ms";
        "-")),
  "",
  (.embedded | select(. != null and (.target_reached | not)) |
    "NOTE: the embedded fill stopped at \(.after.admitted_before) admissions (target \(.target)) after \(.fill_s) s (EMBED_FILL_MAX)."),
  (.lab | select(. != null and (.checks_passed | not)) |
    "NOTE: lab checks failed (incomplete, failures or missing alerts): see lab.wardwatch in the JSON."),
  (.labfeed | select(. != null and (.alerts.exact | not)) |
    "NOTE: labfeed saw \(.alerts.seen) of \(.alerts.expected) alerts (\(.alerts.duplicates) duplicates, \(.alerts.unexpected) unexpected): see labfeed in the JSON.")
' <<<"$RESULTS"
echo "raw results: $OUT/results.json (also target/bench/latest.json); logs and wrk output in $OUT/"
