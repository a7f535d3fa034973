//! Parse + validate of what admit and ingest-lab receive, from the request bytes: a Patient, an
//! Encounter, the 2-entry transaction Bundle of `schemas/examples/admission-bundle.json` (the
//! Patient and the Encounter are its entries) and the Observation of
//! `schemas/examples/potassium-critical.json`. Each group has its ceiling,
//! `serde_json::from_slice` of the same bytes alone, measured in the same run: compare
//! `parse+validate` with `parse`. The work itself is in `flows/` (shared with `validaterate`).
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

mod flows;
use flows::{BUNDLE, OBSERVATION, entry_bytes, parse_validate_resource, parse_validate_transaction};

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
    let inputs = [
        ("Patient", entry_bytes("Patient").expect("a Patient")),
        ("Encounter", entry_bytes("Encounter").expect("an Encounter")),
        ("Observation", OBSERVATION.to_vec()),
    ];
    for (rt, bytes) in &inputs {
        // Warm: compiled validators, and a check that the input is valid.
        parse_validate_resource(bytes, rt).expect("the example resource is valid");
        let mut group = c.benchmark_group(rt.to_lowercase());
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("parse", |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(bytes)).expect("JSON"))
        });
        group.bench_function("parse+validate", |b| {
            b.iter(|| parse_validate_resource(black_box(bytes), rt).expect("valid"))
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
