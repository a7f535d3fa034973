//! `validaterate`: FHIR parse + validate per second on one thread, from the request bytes, as
//! the functions do it (`crates/fhir/benches/flows`: the same work as `cargo bench -p
//! wardwatch-fhir`, here built like the functions — the parse at `opt-level = 3`, the validator
//! at 1). Inputs: the Patient and the Encounter of `schemas/examples/admission-bundle.json`, the
//! Observation of `schemas/examples/potassium-critical.json`, and that transaction Bundle.
//! Each with its ceiling, `serde_json::from_slice` alone of the same bytes. mimalloc is the
//! allocator, as in the functions.
//!
//! Prints one JSON object (the shape `loadtest/ajv/bench.js` prints); loadtest/validate-vs-ajv.sh
//! runs both and prints the table (BENCHMARKS.md, "Parse + validate").

// The results are printed on stdout for the driver script, by design.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

/// As in every Wardwatch process (`crates/adapters/src/launch.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../../../crates/fhir/benches/flows/mod.rs"]
mod flows;

#[derive(Parser)]
#[command(about = "FHIR parse + validate per second on one thread (wardwatch-fhir)")]
struct Args {
    /// Seconds measured per figure (after a warm-up of a quarter of that).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Only this input (patient, encounter, observation, transaction), e.g. under a profiler.
    #[arg(long)]
    input: Option<String>,
}

/// Calls per second of `f`, over `seconds` after a warm-up of a quarter of that.
fn rate(seconds: f64, mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    let mut run = |d: Duration| -> Result<f64, String> {
        let start = Instant::now();
        let mut n = 0u64;
        loop {
            for _ in 0..256 {
                f()?;
            }
            n += 256;
            let elapsed = start.elapsed();
            if elapsed >= d {
                return Ok(n as f64 / elapsed.as_secs_f64());
            }
        }
    };
    run(Duration::from_secs_f64(seconds / 4.0))?;
    run(Duration::from_secs_f64(seconds))
}

fn parse(bytes: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<Value>(black_box(bytes))
        .map(drop)
        .map_err(|e| e.to_string())
}

fn run(args: &Args) -> Result<Value, String> {
    let start = Instant::now();
    wardwatch_fhir::prepare(&["Bundle", "Patient", "Encounter", "Observation"]);
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;
    let patient = flows::entry_bytes("Patient")?;
    let encounter = flows::entry_bytes("Encounter")?;
    type Check<'a> = Box<dyn Fn(&[u8]) -> Result<(), String> + 'a>;
    let inputs: [(&str, &[u8], Check); 4] = [
        (
            "patient",
            &patient,
            Box::new(|b| flows::parse_validate_resource(b, "Patient")),
        ),
        (
            "encounter",
            &encounter,
            Box::new(|b| flows::parse_validate_resource(b, "Encounter")),
        ),
        (
            "observation",
            flows::OBSERVATION,
            Box::new(|b| flows::parse_validate_resource(b, "Observation")),
        ),
        (
            "transaction",
            flows::BUNDLE,
            Box::new(|b| flows::parse_validate_transaction(b).map(drop)),
        ),
    ];
    let mut figures = serde_json::Map::new();
    for (name, bytes, check) in inputs {
        if args.input.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        check(bytes).map_err(|e| format!("{name} is not valid: {e}"))?;
        figures.insert(
            name.into(),
            json!({
                "bytes": bytes.len(),
                "parse_per_s": rate(args.seconds, || parse(bytes))?.round(),
                "validate_per_s": rate(args.seconds, || check(black_box(bytes)))?.round(),
            }),
        );
    }
    Ok(json!({
        "validator": "wardwatch-fhir (jsonschema + fhir-model)",
        "runtime": "release build",
        "seconds": args.seconds,
        "compile_ms": (compile_ms * 10.0).round() / 10.0,
        "inputs": figures,
    }))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(out) => {
            println!("{out:#}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("validaterate: {e}");
            ExitCode::FAILURE
        }
    }
}
