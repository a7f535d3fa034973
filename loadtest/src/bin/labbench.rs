//! `labbench`: the lab-feed half of the benchmark, and the helpers loadtest/bench-state.sh needs.
//!
//! - `raw`: the broker's own speed — publish N persistent lab Observations with publisher
//!   confirms to a fresh durable queue, then consume them with manual acks (prefetch 16).
//! - `admit`: POST one admission Bundle per lab patient to a running Wardwatch.
//! - `feed`: publish the same N Observations to `lab-feed` (persistent, confirmed).
//! - `watch`: poll a running Wardwatch's `/metrics` until ingest-lab and evaluate-alert have
//!   each processed N deliveries; report the drain rate, failures, rejections and alerts.
//!
//! Each prints one JSON object on stdout.

// The results are printed on stdout for the driver script, by design.
#![allow(clippy::print_stdout)]

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use http::Method;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use serde_json::{Value, json};
use wardwatch_loadtest::amqp::{check, confirm_channel, connect, consume_channel, durable, publish};
use wardwatch_loadtest::client::{admit, http_call, http_client};
use wardwatch_loadtest::{alerting_patients, critical_count, observation, oru, parse_metrics, sum};

/// The queue ingest-lab consumes (README, "Routes").
const LAB_FEED: &str = "lab-feed";

#[derive(Parser)]
#[command(
    name = "labbench",
    about = "Lab-feed benchmark: raw RabbitMQ vs the Wardwatch pipeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How the lab results are written.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// A FHIR Observation per message
    Fhir,
    /// An HL7 v2.5.1 ORU^R01 per message (needs V2_IDENTIFIER_SYSTEMS=WWBENCH^MR=<MRN system>)
    Hl7,
}

#[derive(clap::Args, Clone)]
struct Payloads {
    /// How the results are written
    #[arg(long, value_enum, default_value_t = Format::Fhir)]
    format: Format,
    /// Number of lab results (Observations)
    #[arg(long, short = 'n', default_value_t = 20_000)]
    count: u64,
    /// Number of patients the results are spread over
    #[arg(long, default_value_t = 300)]
    patients: u64,
    /// Run tag: makes MRNs and result identifiers unique to this run
    #[arg(long)]
    tag: String,
}

#[derive(Subcommand)]
enum Command {
    /// Raw broker: publish N persistent messages with confirms to a fresh durable queue, then consume them (manual ack)
    Raw {
        /// amqp://user:pass@127.0.0.1:5672/<vhost>
        #[arg(long)]
        amqp: String,
        #[command(flatten)]
        payloads: Payloads,
        /// Queue to create (durable) and delete afterwards [default: bench-raw-<tag>]
        #[arg(long)]
        queue: Option<String>,
        /// Publishes awaiting their confirm at once
        #[arg(long, default_value_t = 256)]
        window: usize,
        /// Unacknowledged deliveries the consumer may hold (Wardwatch's AMQP_PREFETCH default)
        #[arg(long, default_value_t = 16)]
        prefetch: u16,
    },
    /// Admit the lab run's patients through POST /fhir
    Admit {
        /// Wardwatch's base URL, http://127.0.0.1:<port>
        #[arg(long)]
        base: String,
        #[arg(long, default_value_t = 300)]
        patients: u64,
        #[arg(long)]
        tag: String,
        /// Requests in flight at once
        #[arg(long, default_value_t = 16)]
        concurrency: u64,
    },
    /// Publish the N Observations to queue lab-feed (persistent, with confirms)
    Feed {
        #[arg(long)]
        amqp: String,
        #[command(flatten)]
        payloads: Payloads,
        #[arg(long, default_value_t = 256)]
        window: usize,
    },
    /// Poll /metrics until ingest-lab and evaluate-alert have each processed N deliveries
    Watch {
        #[arg(long)]
        base: String,
        #[command(flatten)]
        payloads: Payloads,
        /// Give up after this many seconds
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Poll interval in milliseconds
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
    },
}

async fn confirm_channel_to(url: &str) -> Result<(Connection, Channel), String> {
    let conn = connect(url).await?;
    let channel = confirm_channel(&conn).await?;
    Ok((conn, channel))
}

fn payloads(p: &Payloads) -> Vec<(String, Vec<u8>)> {
    (0..p.count)
        .map(|i| {
            let o = observation(&p.tag, i, p.patients);
            let id = o["identifier"][0]["value"].as_str().unwrap_or_default().to_owned();
            match p.format {
                Format::Fhir => (id, o.to_string().into_bytes()),
                Format::Hl7 => (id, oru(&p.tag, i, p.patients).into_bytes()),
            }
        })
        .collect()
}

/// Publish every payload to `queue` (persistent, mandatory) with at most `window` confirms
/// outstanding; returns once the broker has confirmed the last one.
async fn publish_all(
    channel: &Channel,
    queue: &str,
    messages: &[(String, Vec<u8>)],
    window: usize,
) -> Result<Duration, String> {
    let window = window.max(1);
    let start = Instant::now();
    let mut pending = VecDeque::with_capacity(window);
    for (id, body) in messages {
        if pending.len() >= window
            && let Some(confirm) = pending.pop_front()
        {
            check(confirm.await, queue)?;
        }
        let confirm = publish(channel, queue, id, "application/json", body).await?;
        pending.push_back(confirm);
    }
    while let Some(confirm) = pending.pop_front() {
        check(confirm.await, queue)?;
    }
    Ok(start.elapsed())
}

fn rate(n: u64, d: Duration) -> f64 {
    let secs = d.as_secs_f64();
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

async fn raw(amqp: &str, p: &Payloads, queue: Option<String>, window: usize, prefetch: u16) -> Result<Value, String> {
    let queue = queue.unwrap_or_else(|| format!("bench-raw-{}", p.tag));
    let messages = payloads(p);
    let bytes: usize = messages.iter().map(|(_, b)| b.len()).sum();
    let (conn, channel) = confirm_channel_to(amqp).await?;
    channel
        .queue_declare(queue.as_str().into(), durable(), FieldTable::default())
        .await
        .map_err(|e| format!("cannot declare `{queue}`: {e}"))?;
    let published = publish_all(&channel, &queue, &messages, window).await?;

    let consumer_channel = consume_channel(&conn, prefetch).await?;
    let start = Instant::now();
    let mut consumer = consumer_channel
        .basic_consume(
            queue.as_str().into(),
            "labbench-raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot consume `{queue}`: {e}"))?;
    let mut received = 0u64;
    let mut received_bytes = 0usize;
    while received < p.count {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .map_err(|_| format!("no delivery for 30 s after {received} of {}", p.count))?
            .ok_or("the consumer stream ended")?
            .map_err(|e| format!("consume failed: {e}"))?;
        received_bytes += delivery.data.len();
        delivery
            .ack(BasicAckOptions::default())
            .await
            .map_err(|e| format!("ack failed: {e}"))?;
        received += 1;
    }
    let consumed = start.elapsed();
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "done".into()).await;
    if received_bytes != bytes {
        return Err(format!("consumed {received_bytes} bytes, published {bytes}"));
    }
    let both = published + consumed;
    Ok(json!({
        "messages": p.count,
        "bytes": bytes,
        "window": window,
        "prefetch": prefetch,
        "publish_s": published.as_secs_f64(),
        "consume_s": consumed.as_secs_f64(),
        "publish_per_s": round(rate(p.count, published)),
        "consume_per_s": round(rate(p.count, consumed)),
        "publish_and_consume_per_s": round(rate(p.count, both)),
    }))
}

async fn feed(amqp: &str, p: &Payloads, window: usize) -> Result<Value, String> {
    let messages = payloads(p);
    let (conn, channel) = confirm_channel_to(amqp).await?;
    channel
        .queue_declare(LAB_FEED.into(), durable(), FieldTable::default())
        .await
        .map_err(|e| format!("cannot declare `{LAB_FEED}`: {e}"))?;
    let published = publish_all(&channel, LAB_FEED, &messages, window).await?;
    let queued = channel
        .queue_declare(
            LAB_FEED.into(),
            QueueDeclareOptions {
                passive: true,
                ..durable()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot inspect `{LAB_FEED}`: {e}"))?
        .message_count();
    let _ = conn.close(200, "done".into()).await;
    Ok(json!({
        "messages": p.count,
        "critical": critical_count(p.count),
        "queued": queued,
        "publish_s": published.as_secs_f64(),
        "publish_per_s": round(rate(p.count, published)),
    }))
}

/// Deliveries a function has finished: invocations minus those that failed transiently (a
/// transient failure is nacked and delivered again, so it is counted again).
fn processed(samples: &[wardwatch_loadtest::Sample], function: &str) -> f64 {
    sum(samples, "wardwatch_requests_total", &[("function", function)])
        - sum(
            samples,
            "wardwatch_failures_total",
            &[("function", function), ("kind", "transient")],
        )
}

async fn watch(base: &str, p: &Payloads, timeout: u64, interval_ms: u64) -> Result<(Value, bool), String> {
    let client = http_client();
    let base = base.trim_end_matches('/');
    let metrics_url = format!("{base}/metrics");
    let n = p.count as f64;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(timeout);
    let interval = Duration::from_millis(interval_ms.max(1));
    // The last poll that saw nothing processed yet: the drain started after it.
    let mut before_first: Option<Duration> = None;
    let mut first_seen: Option<Duration> = None;
    // Whether the first answer already showed deliveries processed (the drain's start then lies
    // between the last refused poll and that answer).
    let mut answered = false;
    let mut start_missed = false;
    let mut progress = Vec::new();
    let mut next_progress = Duration::ZERO;
    let (samples, done_at) = loop {
        let now = start.elapsed();
        let samples = match http_call(&client, Method::GET, &metrics_url, None).await {
            Ok((status, body)) if status.is_success() => Some(parse_metrics(&String::from_utf8_lossy(&body))),
            _ => None, // not listening yet
        };
        if let Some(samples) = samples {
            let (ingest, evaluate) = (processed(&samples, "ingest-lab"), processed(&samples, "evaluate-alert"));
            if !answered {
                answered = true;
                start_missed = ingest > 0.0;
            }
            if ingest <= 0.0 {
                before_first = Some(now);
            } else if first_seen.is_none() {
                first_seen = Some(now);
            }
            if now >= next_progress {
                progress
                    .push(json!({"t_s": round(now.as_secs_f64()), "ingest_lab": ingest, "evaluate_alert": evaluate}));
                next_progress = now + Duration::from_secs(1);
            }
            if ingest >= n && evaluate >= n {
                break (samples, Some(start.elapsed()));
            }
            if Instant::now() >= deadline {
                break (samples, None);
            }
        } else {
            // Not answering yet: the process is still starting, so nothing has been processed.
            before_first = Some(now);
            if Instant::now() >= deadline {
                return Err(format!("{metrics_url} did not answer within {timeout} s"));
            }
        }
        tokio::time::sleep(interval).await;
    };
    let failures: Vec<Value> = samples
        .iter()
        .filter(|s| s.name == "wardwatch_failures_total" && s.value > 0.0)
        .map(|s| json!({"function": s.label("function"), "kind": s.label("kind"), "count": s.value}))
        .collect();
    let rejected: Vec<Value> = samples
        .iter()
        .filter(|s| s.name == "wardwatch_rejected_total" && s.value > 0.0)
        .map(|s| json!({"lane": s.label("lane"), "count": s.value}))
        .collect();
    let failed = sum(&samples, "wardwatch_failures_total", &[("function", "ingest-lab")])
        + sum(&samples, "wardwatch_failures_total", &[("function", "evaluate-alert")]);
    // Alerts of this run that the board lists as active.
    let prefix = format!("{}-", p.tag);
    let alerts = match http_call(&client, Method::GET, &format!("{base}/api/alerts?status=active"), None).await {
        Ok((status, body)) if status.is_success() => serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .map(|a| {
                a.iter()
                    .filter(|x| x["mrn"].as_str().is_some_and(|m| m.starts_with(&prefix)))
                    .count()
            }),
        _ => None,
    };
    let complete = done_at.is_some();
    let end = done_at.unwrap_or_else(|| start.elapsed());
    // The drain began between the last poll that saw nothing and the first that saw something.
    let began = before_first.unwrap_or(Duration::ZERO);
    let drain = end.saturating_sub(began);
    let result = json!({
        "messages": p.count,
        "complete": complete,
        "ingest_lab_processed": processed(&samples, "ingest-lab"),
        "evaluate_alert_processed": processed(&samples, "evaluate-alert"),
        "from_watch_start_s": end.as_secs_f64(),
        "first_processed_seen_s": first_seen.map(|d| d.as_secs_f64()),
        "drain_started_at_s": began.as_secs_f64(),
        "drain_start_before_first_answer": start_missed,
        "drain_s": drain.as_secs_f64(),
        "drain_per_s": round(rate(p.count, drain)),
        "from_start_per_s": round(rate(p.count, end)),
        "failures": failures,
        "failures_total": failed,
        "rejected": rejected,
        "critical_results": critical_count(p.count),
        "alerts_expected": alerting_patients(p.count, p.patients),
        "alerts_active": alerts,
        "progress": progress,
    });
    Ok((
        result,
        complete && failed == 0.0 && alerts == Some(alerting_patients(p.count, p.patients) as usize),
    ))
}

#[tokio::main]
async fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Raw {
            amqp,
            payloads,
            queue,
            window,
            prefetch,
        } => raw(&amqp, &payloads, queue, window, prefetch).await.map(|v| (v, true)),
        Command::Admit {
            base,
            patients,
            tag,
            concurrency,
        } => admit(&base, patients, &tag, concurrency).await.map(|v| (v, true)),
        Command::Feed { amqp, payloads, window } => feed(&amqp, &payloads, window).await.map(|v| (v, true)),
        Command::Watch {
            base,
            payloads,
            timeout,
            interval_ms,
        } => watch(&base, &payloads, timeout, interval_ms).await,
    };
    match outcome {
        Ok((value, ok)) => {
            println!("{value}");
            if ok { ExitCode::SUCCESS } else { ExitCode::from(3) }
        }
        Err(e) => {
            eprintln!("labbench: {e}");
            ExitCode::FAILURE
        }
    }
}
