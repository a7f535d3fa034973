//! Cold start and footprint of every binary (issue 10): for each, exec → the first successful
//! answer to a *real* request (an admission, a lab result, an escalation tick, a board read),
//! exec → the first `GET /healthz`, resident memory when idle and after a burst of real
//! requests, and the binary's size.
//!
//!     cargo build --release -p wardwatch -p admit -p ingest-lab -p evaluate-alert -p wardwatch-board -p wardwatch-loadtest
//!     target/release/coldstart [--runs 5] [--burst 1000] [--bin-dir target/release]
//!
//! Every process runs embedded (no `REDIS_URL`, `AMQP_URL` or Dapr: memory state, in-process
//! lanes) on a port of its own on 127.0.0.1, so the figure is the process's own start-up, not
//! a backend's. The clock starts just before `exec`; requests are retried every 0.5 ms until
//! one succeeds. Prints a Markdown table (medians over `--runs`) and writes JSON to
//! `target/bench/coldstart.json`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Cold start and footprint of every Wardwatch binary")]
struct Args {
    /// Starts of each binary (the table shows medians)
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Real requests sent after start-up before resident memory is read again
    #[arg(long, default_value_t = 1000)]
    burst: u64,
    /// Where the release binaries are
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
}

/// One binary and the real request that proves it serves.
struct Target {
    name: &'static str,
    bin: &'static str,
    args: &'static [&'static str],
    method: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: fn(u64) -> Vec<u8>,
}

fn admission(i: u64) -> Vec<u8> {
    let (ward, bed) = wardwatch_loadtest::ward_and_bed(i);
    wardwatch_loadtest::admission_bundle(&format!("CS-{i}"), &format!("CS-S{i}"), &ward, &bed, i)
        .to_string()
        .into_bytes()
}

fn result(i: u64) -> Vec<u8> {
    wardwatch_loadtest::observation("CS", i, 50).to_string().into_bytes()
}

fn empty(_: u64) -> Vec<u8> {
    Vec::new()
}

const TARGETS: &[Target] = &[
    Target {
        name: "wardwatch up",
        bin: "wardwatch",
        args: &["up"],
        method: "POST",
        path: "/fhir",
        content_type: "application/fhir+json",
        body: admission,
    },
    Target {
        name: "admit",
        bin: "admit",
        args: &[],
        method: "POST",
        path: "/fhir",
        content_type: "application/fhir+json",
        body: admission,
    },
    Target {
        name: "ingest-lab",
        bin: "ingest-lab",
        args: &[],
        method: "POST",
        path: "/lab-feed",
        content_type: "application/json",
        body: result,
    },
    Target {
        name: "evaluate-alert",
        bin: "evaluate-alert",
        args: &[],
        method: "POST",
        path: "/escalate",
        content_type: "application/json",
        body: empty,
    },
    Target {
        name: "board",
        bin: "board",
        args: &[],
        method: "GET",
        path: "/api/inpatients",
        content_type: "application/json",
        body: empty,
    },
];

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// One request; whether it answered 2xx.
async fn send(client: &HttpClient, port: u16, t: &Target, i: u64) -> bool {
    let request = http::Request::builder()
        .method(t.method)
        .uri(format!("http://127.0.0.1:{port}{}", t.path))
        .header("content-type", t.content_type)
        .body(Full::new(Bytes::from((t.body)(i))));
    let Ok(request) = request else { return false };
    match client.request(request).await {
        Ok(r) => {
            let ok = r.status().is_success();
            let _ = r.into_body().collect().await;
            ok
        }
        Err(_) => false,
    }
}

async fn healthz(client: &HttpClient, port: u16) -> bool {
    let request = http::Request::get(format!("http://127.0.0.1:{port}/healthz")).body(Full::new(Bytes::new()));
    let Ok(request) = request else { return false };
    matches!(client.request(request).await, Ok(r) if r.status().is_success())
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Resident memory of a process, in MB (`VmRSS` of `/proc/<pid>/status`).
fn rss_mb(child: &Child) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

struct Run {
    healthz_ms: f64,
    first_real_ms: f64,
    idle_mb: f64,
    loaded_mb: f64,
}

async fn one_run(bin: &Path, t: &Target, burst: u64) -> Result<Run, String> {
    let port = free_port().map_err(|e| e.to_string())?;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let start = Instant::now();
    let mut child = Command::new(bin)
        .args(t.args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("ESCALATE_EVERY", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let deadline = start + Duration::from_secs(30);
    let mut healthz_ms = None;
    let first_real_ms = loop {
        if healthz_ms.is_none() && healthz(&client, port).await {
            healthz_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
        }
        if healthz_ms.is_some() && send(&client, port, t, 0).await {
            break start.elapsed().as_secs_f64() * 1000.0;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("{} did not answer {} {} within 30 s", t.name, t.method, t.path));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{} exited with {status} before answering", t.name));
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_mb = rss_mb(&child).unwrap_or(f64::NAN);
    for i in 1..=burst {
        send(&client, port, t, i).await;
    }
    let loaded_mb = rss_mb(&child).unwrap_or(f64::NAN);
    let _ = child.kill();
    let _ = child.wait();
    Ok(Run {
        healthz_ms: healthz_ms.unwrap_or(f64::NAN),
        first_real_ms,
        idle_mb,
        loaded_mb,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut rows = Vec::new();
    let mut out = std::io::stdout().lock();
    use std::io::Write as _;
    let _ = writeln!(
        out,
        "| binary | size | exec → /healthz | exec → first real 2xx | request | idle RSS | RSS after {} requests |\n|---|---|---|---|---|---|---|",
        args.burst
    );
    for t in TARGETS {
        let bin = args.bin_dir.join(t.bin);
        let size_mb = match std::fs::metadata(&bin) {
            Ok(m) => m.len() as f64 / 1_048_576.0,
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "coldstart: {}: {e} (build it: cargo build --release -p wardwatch -p admit -p ingest-lab -p evaluate-alert -p wardwatch-board)",
                    bin.display()
                );
                return std::process::ExitCode::FAILURE;
            }
        };
        let mut runs = Vec::new();
        for _ in 0..args.runs {
            match one_run(&bin, t, args.burst).await {
                Ok(r) => runs.push(r),
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "coldstart: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
        let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        let (h, first, idle, loaded) = (
            m(|r| r.healthz_ms),
            m(|r| r.first_real_ms),
            m(|r| r.idle_mb),
            m(|r| r.loaded_mb),
        );
        let _ = writeln!(
            out,
            "| {} | {size_mb:.1} MB | {h:.1} ms | {first:.1} ms | {} {} | {idle:.1} MB | {loaded:.1} MB |",
            t.name, t.method, t.path
        );
        rows.push(json!({
            "binary": t.name, "size_mb": size_mb, "healthz_ms": h, "first_real_ms": first,
            "request": format!("{} {}", t.method, t.path), "idle_rss_mb": idle, "loaded_rss_mb": loaded,
            "runs": runs.iter().map(|r| json!({"healthz_ms": r.healthz_ms, "first_real_ms": r.first_real_ms,
                "idle_rss_mb": r.idle_mb, "loaded_rss_mb": r.loaded_mb})).collect::<Vec<Value>>(),
        }));
    }
    let report = json!({"runs": args.runs, "burst": args.burst, "binaries": rows});
    let _ = std::fs::create_dir_all("target/bench");
    if let Err(e) = std::fs::write("target/bench/coldstart.json", report.to_string()) {
        let _ = writeln!(std::io::stderr(), "coldstart: target/bench/coldstart.json: {e}");
    }
    std::process::ExitCode::SUCCESS
}
