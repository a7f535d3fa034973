#!/usr/bin/env bash
# FHIR parse + validate per second on one core: wardwatch-fhir (`validaterate`, the release
# build the functions use) vs ajv 8 (loadtest/ajv/bench.js), same inputs, same official R4
# JSON Schema (schemas/fhir/fhir.schema.json: ajv gets all of it, each type as a $ref into it;
# wardwatch-fhir its build-time pruning to what the type reaches), string -> parsed ->
# validated. Each figure beside its ceiling (the parse alone, serde_json / JSON.parse), one
# after the other on the same core (`taskset -c $CORE`). Prints a table and writes JSON to
# target/bench/validate-vs-ajv.json. Needs node, npm and jq. BENCHMARKS.md, "Parse + validate".
#
# Settings (environment): SECONDS_EACH (s measured per figure, 3), CORE (1).
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_EACH=${SECONDS_EACH:-3}
CORE=${CORE:-1}

die() {
    echo "validate-vs-ajv: $*" >&2
    exit 1
}
for tool in node npm jq taskset cargo; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

# The same packages as bench-state.sh builds: the same features, so the same build is reused.
cargo build --release -q -p wardwatch -p wardwatch-loadtest
[[ -d loadtest/ajv/node_modules/ajv ]] || npm ci --prefix loadtest/ajv --no-audit --no-fund --silent

mkdir -p target/bench
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
rust=$(taskset -c "$CORE" target/release/validaterate --seconds "$SECONDS_EACH")
ajv=$(taskset -c "$CORE" node loadtest/ajv/bench.js --seconds "$SECONDS_EACH")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

jq -n --argjson rust "$rust" --argjson ajv "$ajv" --arg before "$load_before" --arg after "$load_after" \
    '{load_before: $before, load_after: $after, wardwatch: $rust, ajv: $ajv}' >target/bench/validate-vs-ajv.json

echo "load average: before $load_before, after $load_after; one core (cpu $CORE), ${SECONDS_EACH} s per figure"
echo "compile at start-up: wardwatch-fhir $(jq -r .compile_ms <<<"$rust") ms (Bundle, Patient, Encounter, Observation);" \
    "ajv $(jq -r .compile_ms <<<"$ajv") ms (the same four)"
echo
echo "| input | bytes | wardwatch-fhir /s (parse alone) | ajv /s (parse alone) | ratio |"
echo "|---|---|---|---|---|"
jq -r --argjson ajv "$ajv" '
    .inputs | to_entries[] | .key as $k | .value as $w | $ajv.inputs[$k] as $a |
    "| \($k) | \($w.bytes) | \($w.validate_per_s) (\($w.parse_per_s)) | \($a.validate_per_s) (\($a.parse_per_s)) | **\(($w.validate_per_s / $a.validate_per_s * 100 | round) / 100)x** |"
' <<<"$rust"
jq -r '.inputs.transaction_unedited | "| transaction, ajv on the unedited schema (entries through ResourceList'"'"'s oneOf) | \(.bytes) | | \(.validate_per_s) (\(.parse_per_s)) | |"' <<<"$ajv"
