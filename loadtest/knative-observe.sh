#!/usr/bin/env bash
# Observe Knative's autoscaler on a cluster: run a k6 ramp against one Knative Service while
# sampling, once a second, the pods the KPA asks for and the pods that are ready; then chart it
# and replay the same concurrency through `kpa replay` (loadtest/src/kpa.rs) for comparison.
#
# Not run by the project's tests (they have no cluster): written from Knative's documented
# resources (shared/docs/dapr-knative.md §7) and k6's CLI.
#
# Usage (from the repository root):
#   NAMESPACE=wardwatch SERVICE=admit loadtest/knative-observe.sh [kpa replay settings…]
#
# Environment:
#   NAMESPACE   namespace of the Knative Service (default wardwatch)
#   SERVICE     the Knative Service (default admit)
#   URL         the URL k6 requests (default: the ksvc's .status.url + REQ_PATH)
#   REQ_PATH    path of the built-in k6 script's GET (default /healthz)
#   K6_SCRIPT   your own k6 script instead of the built-in GET loop; it gets TARGET_URL in
#               __ENV and must not define scenarios (the ramp is given with --stage)
#   STAGES      k6 ramp, comma-separated duration:VUs (default 30s:10,60s:50,60s:50,60s:0)
#   TAIL        seconds to keep sampling after k6 ends, to see scale-down and scale-to-zero
#               (default 150: a 60-s stable window + 30-s grace + slack)
#   OUT         output folder (default loadtest/results/knative-$SERVICE-<UTC time>)
#   AUTOSCALER_METRICS=1  also read the autoscaler's stable/panic concurrency from its
#               Prometheus endpoint (knative-serving/autoscaler:9090; the metric names differ
#               between Knative releases, so the columns may stay empty)
#
# Arguments are passed to `kpa replay` (e.g. --pod-start 4). Without arguments the replay uses
# the revision's own autoscaling annotations and containerConcurrency; Knative's cluster-wide
# config-autoscaler values are not read — pass them if you changed them — nor are the legacy
# camelCase annotation keys (minScale, …).
#
# Writes into OUT:
#   samples.csv   unix,desired,actual,ready[,stable_concurrency,panic_concurrency]
#   k6.csv        k6's own CSV output (the vus metric is the concurrency)
#   observed.csv  second,concurrency,desired,actual,ready[,…] — concurrency = k6's VUs: the
#                 built-in script has no sleep, so each VU keeps one request in flight
#   observed.svg  chart of observed.csv (and observed.png, the same as a PNG)
#   replay.csv    second,concurrency,desired,ready,panic from `kpa replay --timeline observed.csv`
#   replay.svg    chart of the replay with the observed desired/actual/ready drawn dashed (and replay.png)
set -euo pipefail
cd "$(dirname "$0")/.." # paths (OUT, K6_SCRIPT) are relative to the repository root

NAMESPACE=${NAMESPACE:-wardwatch}
SERVICE=${SERVICE:-admit}
REQ_PATH=${REQ_PATH:-/healthz}
STAGES=${STAGES:-30s:10,60s:50,60s:50,60s:0}
TAIL=${TAIL:-150}
OUT=${OUT:-loadtest/results/knative-$SERVICE-$(date -u +%Y%m%dT%H%M%SZ)}
AUTOSCALER_METRICS=${AUTOSCALER_METRICS:-0}

die() { echo "knative-observe: $*" >&2; exit 1; }
for tool in kubectl k6 cargo; do
    command -v "$tool" >/dev/null || die "$tool is not on PATH"
done

kc() { kubectl -n "$NAMESPACE" "$@"; }

rev=$(kc get ksvc "$SERVICE" -o jsonpath='{.status.latestReadyRevisionName}') \
    || die "no Knative Service $SERVICE in $NAMESPACE"
[[ -n $rev ]] || die "ksvc $SERVICE has no ready revision"
URL=${URL:-$(kc get ksvc "$SERVICE" -o jsonpath='{.status.url}')$REQ_PATH}
mkdir -p "$OUT"
echo "revision $rev, load on $URL, results in $OUT" >&2

# The replay's settings from the revision's annotations (those set; the rest stay Knative's
# defaults), unless the caller gave settings.
annotation() {
    kc get revision "$rev" -o "jsonpath={.metadata.annotations.autoscaling\.knative\.dev/$1}"
}
seconds() { # a Go duration such as 90s, 2m or 1m30s → seconds; empty if not understood
    local d=$1 m=0 s=0
    [[ $d =~ ^(([0-9]+)m)?(([0-9]+)s)?$ ]] || { echo ""; return; }
    m=${BASH_REMATCH[2]:-0}; s=${BASH_REMATCH[4]:-0}
    echo $((m * 60 + s))
}
metric=$(annotation metric)
if [[ -n $metric && $metric != concurrency ]]; then
    echo "knative-observe: warning: metric $metric; kpa replay models concurrency only" >&2
fi
replay_args=("$@")
if [[ $# -eq 0 ]]; then
    for key in target min-scale max-scale initial-scale activation-scale \
        panic-window-percentage panic-threshold-percentage target-burst-capacity; do
        value=$(annotation "$key")
        [[ -n $value ]] && replay_args+=("--$key" "$value")
    done
    value=$(annotation target-utilization-percentage)
    [[ -n $value ]] && replay_args+=(--utilisation "$(awk -v p="$value" 'BEGIN { print p / 100 }')")
    for key in window scale-down-delay; do
        value=$(annotation "$key")
        if [[ -n $value ]]; then
            secs=$(seconds "$value")
            [[ -n $secs ]] || die "annotation $key=$value: pass it to kpa replay yourself"
            replay_args+=("--$key" "$secs")
        fi
    done
    cc=$(kc get revision "$rev" -o jsonpath='{.spec.containerConcurrency}')
    [[ -n $cc ]] && replay_args+=(--container-concurrency "$cc")
fi
echo "kpa replay settings: ${replay_args[*]:-(Knative defaults)}" >&2

# The k6 script: one GET after another, no sleep, so VUs = requests in flight at the client.
script=${K6_SCRIPT:-$OUT/ramp.js}
if [[ -z ${K6_SCRIPT:-} ]]; then
    cat >"$script" <<'JS'
import http from 'k6/http';
export default function () {
  http.get(__ENV.TARGET_URL);
}
JS
fi
stage_args=()
IFS=',' read -r -a stages <<<"$STAGES"
for stage in "${stages[@]}"; do stage_args+=(--stage "$stage"); done

autoscaler_concurrency() { # stable,panic for this revision, or "," if not found
    kubectl get --raw \
        "/api/v1/namespaces/knative-serving/services/autoscaler:9090/proxy/metrics" 2>/dev/null |
        awk -v rev="revision_name=\"$rev\"" '
            index($0, rev) && /^[a-z_]*stable_request_concurrency/ { s = $NF }
            index($0, rev) && /^[a-z_]*panic_request_concurrency/ { p = $NF }
            END { printf "%s,%s", s, p }'
}

sample() { # one line of samples.csv
    local now pa ready extra=""
    now=$(date +%s)
    pa=$(kc get podautoscalers.autoscaling.internal.knative.dev "$rev" \
        -o jsonpath='{.status.desiredScale},{.status.actualScale}' 2>/dev/null || echo ",")
    ready=$(kc get pods -l "serving.knative.dev/revision=$rev" -o \
        jsonpath='{range .items[*]}{range .status.conditions[?(@.type=="Ready")]}{.status}{"\n"}{end}{end}' \
        2>/dev/null | grep -c '^True$' || true)
    [[ $AUTOSCALER_METRICS == 1 ]] && extra=",$(autoscaler_concurrency)"
    echo "$now,$pa,$ready$extra"
}

sampler() { # once a second until killed
    local next
    next=$(date +%s)
    while true; do
        while (($(date +%s) < next)); do sleep 0.1; done
        sample
        next=$((next + 1))
        # A slow kubectl round: skip the seconds already gone rather than bunch the samples.
        if ((next < $(date +%s))); then next=$(date +%s); fi
    done
}

header="unix,desired,actual,ready"
[[ $AUTOSCALER_METRICS == 1 ]] && header+=",stable_concurrency,panic_concurrency"
echo "$header" >"$OUT/samples.csv"
sampler >>"$OUT/samples.csv" &
sampler_pid=$!
trap 'kill "$sampler_pid" 2>/dev/null || true' EXIT

start=$(date +%s)
k6 run --quiet "${stage_args[@]}" -e TARGET_URL="$URL" --out "csv=$OUT/k6.csv" "$script" ||
    echo "knative-observe: k6 exited with $? (thresholds or errors); the samples are kept" >&2
echo "k6 done; sampling $TAIL s more" >&2
sleep "$TAIL"
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
trap - EXIT

# observed.csv: one row per sample, concurrency = k6's vus in that second (0 outside the run;
# the last value seen when k6 skipped a second).
awk -F, -v start="$start" '
    FNR == 1 { next }
    FILENAME ~ /k6\.csv$/ { if ($1 == "vus") { vus[$2] = $3; if ($2 > last) last = $2 } ; next }
    {
        t = $1
        if (t in vus) { c = vus[t]; seen = 1 }
        else if (!seen || t > last) c = 0
        row = t - start "," c
        for (i = 2; i <= NF; i++) row = row "," $i
        print row
    }' "$OUT/k6.csv" "$OUT/samples.csv" >"$OUT/observed.body"
{
    echo "second,concurrency,${header#unix,}"
    awk -F, '$1 >= 0' "$OUT/observed.body"
} >"$OUT/observed.csv"
rm -f "$OUT/observed.body"

kpa() { cargo run -q -p wardwatch-loadtest --bin kpa -- "$@"; }
kpa chart --input "$OUT/observed.csv" --chart "$OUT/observed.svg" \
    --title "Knative $SERVICE ($rev): observed"
kpa replay --timeline "$OUT/observed.csv" --out "$OUT/replay.csv" --chart "$OUT/replay.svg" \
    "${replay_args[@]}"
echo "wrote $OUT/observed.csv, observed.svg, replay.csv, replay.svg" >&2
