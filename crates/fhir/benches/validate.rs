//! Parse + validate of what admit receives, from the request bytes: a Patient, an Encounter and
//! the 2-entry transaction Bundle of `schemas/examples/admission-bundle.json` (the Patient and
//! the Encounter are its entries). Each group has its ceiling, `serde_json::from_slice` of the
//! same bytes alone, measured in the same run: compare `parse+validate` with `parse`.
//!
//! Before any of it, once: the first transaction after start-up, which compiles the schema
//! validators (`prepare` does this at start-up, off the request path; a request that comes
//! first waits for it). Printed to stderr, not a criterion figure: it happens once per process.
//!
//! `cargo bench -p wardwatch-fhir` (BENCHMARKS.md).

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;

const BUNDLE: &[u8] = include_bytes!("../../../schemas/examples/admission-bundle.json");

/// The types admit keeps (`functions/admit/src/rest.rs`, `KEPT`); other entries are skipped.
const KEPT: &[&str] = &["Patient", "Encounter"];

/// A single resource, as `POST /fhir/Patient` or `/fhir/Encounter` checks it
/// (`rest::check_resource`): the type named by the URL, then schema and typed check.
fn parse_validate_resource(bytes: &[u8], expected: &str) -> Result<(), String> {
    let resource: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let rt = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    if rt != expected {
        return Err(format!("a {rt}, not a {expected}"));
    }
    wardwatch_fhir::validate_resource(&resource).map_err(|i| format!("{i:?}"))
}

/// A transaction Bundle, as `POST /fhir` checks it before anything is written
/// (`bundle::process` then `transaction`): its type, the shell, then each kept entry's resource
/// on its own. The copies admit makes (the entries, each kept resource) are made here too.
fn parse_validate_transaction(bytes: &[u8]) -> Result<usize, String> {
    let bundle: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let kind = bundle.get("type").and_then(Value::as_str).unwrap_or_default();
    if !matches!(kind, "transaction" | "batch") {
        return Err(format!("a Bundle of type `{kind}`"));
    }
    wardwatch_fhir::validate_bundle_shell(&bundle).map_err(|i| format!("{i:?}"))?;
    let entries: Vec<Value> = bundle
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut checked = 0;
    for entry in &entries {
        let Some(resource) = entry.get("resource") else {
            continue;
        };
        let rt = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        if KEPT.contains(&rt) {
            let resource = resource.clone();
            wardwatch_fhir::validate_resource(&resource).map_err(|i| format!("{i:?}"))?;
            checked += 1;
        }
    }
    Ok(checked)
}

/// The Bundle's entries' resources, each as the body of its own request.
fn entry_bytes(resource_type: &str) -> Vec<u8> {
    let bundle: Value = serde_json::from_slice(BUNDLE).expect("the example Bundle is JSON");
    let resource = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == resource_type)
        .expect("the example Bundle has the resource");
    serde_json::to_vec(resource).expect("serializable")
}

/// Once, before anything has compiled a validator: the first transaction after start-up.
fn first_request(_: &mut Criterion) {
    let start = Instant::now();
    let checked = parse_validate_transaction(black_box(BUNDLE)).expect("the example Bundle is valid");
    let first = start.elapsed();
    assert_eq!(checked, 2);
    let start = Instant::now();
    parse_validate_transaction(black_box(BUNDLE)).expect("the example Bundle is valid");
    let second = start.elapsed();
    eprintln!(
        "first transaction after start-up (compiles the Bundle, Patient and Encounter validators): {:.1} ms; the second: {:.1} µs",
        first.as_secs_f64() * 1e3,
        second.as_secs_f64() * 1e6
    );
}

fn resources(c: &mut Criterion) {
    for rt in KEPT {
        let bytes = entry_bytes(rt);
        // Warm: compiled validators, and a check that the input is valid.
        parse_validate_resource(&bytes, rt).expect("the example resource is valid");
        let mut group = c.benchmark_group(rt.to_lowercase());
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("parse", |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(&bytes)).expect("JSON"))
        });
        group.bench_function("parse+validate", |b| {
            b.iter(|| parse_validate_resource(black_box(&bytes), rt).expect("valid"))
        });
        group.finish();
    }
}

fn transaction(c: &mut Criterion) {
    parse_validate_transaction(BUNDLE).expect("the example Bundle is valid");
    let mut group = c.benchmark_group("transaction");
    group.throughput(Throughput::Bytes(BUNDLE.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(BUNDLE)).expect("JSON"))
    });
    group.bench_function("parse+validate", |b| {
        b.iter(|| parse_validate_transaction(black_box(BUNDLE)).expect("valid"))
    });
    group.finish();
}

criterion_group!(benches, first_request, resources, transaction);
criterion_main!(benches);
