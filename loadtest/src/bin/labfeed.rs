//! `labfeed`: the lab-feed generator. Publishes a reproducible hospital day of lab results (FHIR
//! Observations and HL7 v2 ORU^R01 messages, a known share critical: `wardwatch_loadtest::feed`)
//! to RabbitMQ's `lab-feed` queue at a fixed rate, stamps each with its send time, follows the
//! board's event stream (`GET /api/events/stream`) and reports the lab→alert latency (send →
//! `alert-raised` on the stream) p50/p90/p99/max, alerts expected vs seen (exact: one per critical
//! result), where that time goes (cut at the result's and the alert's log appends, by the event
//! ids' milliseconds), and throughput — beside the broker's own publish → consume latency for
//! two hops (`lab-feed`, then `lab-resulted`, as each result crosses it) measured in the same run
//! at the same rate. Prints one JSON object; with `--out`, also writes it and a per-second CSV there.
//! Exits 1 when alerts seen differ from alerts expected.

// The report is printed on stdout, by design.
#![allow(clippy::print_stdout)]

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, PublisherConfirm};
use serde_json::{Value, json};
use wardwatch_loadtest::amqp::{check, confirm_channel, connect, consume_channel, durable, publish};
use wardwatch_loadtest::client::{admit, http_call, http_client};
use wardwatch_loadtest::feed::{Clock, Plan, Second, Settings, Stages, distribution, log_id_ms, series_csv};

/// The queue ingest-lab consumes.
const LAB_FEED: &str = "lab-feed";

#[derive(Parser)]
#[command(
    name = "labfeed",
    about = "Lab-feed generator: results to RabbitMQ at a fixed rate, the lab→alert latency from the board's event stream"
)]
struct Cli {
    /// Wardwatch's base URL (the board and admit: `wardwatch up`)
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// The broker Wardwatch consumes `lab-feed` from: amqp://user:pass@host:5672/<vhost>
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    /// Results a second
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of sending
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Fixes the run's results (analytes, values, which are critical, which are HL7 v2)
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Patients with everyday results (each critical result gets a patient of its own besides)
    #[arg(long, default_value_t = 1000)]
    patients: u64,
    /// Critical results per 1,000
    #[arg(long, default_value_t = 20)]
    critical_per_mille: u64,
    /// HL7 v2 ORU^R01 messages per 100 (needs V2_IDENTIFIER_SYSTEMS=WWBENCH^MR=https://fhir.example-hospital.nhs.uk/Id/mrn in Wardwatch)
    #[arg(long, default_value_t = 33)]
    hl7_percent: u64,
    /// Run tag in hospital numbers and result identifiers [default: f<seed>-<random hex>]
    #[arg(long)]
    tag: Option<String>,
    /// After the last send, wait at most this many seconds for the alerts and stored results
    #[arg(long, default_value_t = 60)]
    settle: u64,
    /// Skip the broker's own two-hop measurement
    #[arg(long)]
    no_baseline: bool,
    /// Directory for summary.json, series.csv (per second) and baseline-series.csv
    #[arg(long)]
    out: Option<PathBuf>,
    /// Admissions in flight at once before the run
    #[arg(long, default_value_t = 16)]
    admit_concurrency: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// One of this run's events, as the event-stream follower saw it.
#[derive(Clone)]
struct Observed {
    /// When the follower read it.
    at: Instant,
    kind: String,
    mrn: String,
    /// The millisecond of its log id (`<ms>-<seq>`, Redis's clock when it was appended).
    logged_ms: Option<u64>,
}

/// What the event-stream follower saw of this run's events.
#[derive(Default)]
struct Seen {
    events: Mutex<Vec<Observed>>,
    alerts_raised: AtomicU64,
    stored: AtomicU64,
}

/// Open the board's event stream from just before now and record this run's events until the
/// task is aborted. Returns once the stream answers 200.
async fn follow(base: &str, tag: &str, seen: Arc<Seen>) -> Result<tokio::task::JoinHandle<Result<(), String>>, String> {
    // From 1 ms before now: nothing this run does is missed, and nothing older is replayed.
    let url = format!("{base}/api/events/stream?after={}", unix_ms().saturating_sub(1));
    let client = http_client();
    let request = Request::builder()
        .method(Method::GET)
        .uri(&url)
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("bad request for {url}: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| format!("{url}: no answer within 10 s"))?
        .map_err(|e| format!("{url}: {e}"))?;
    if response.status() != StatusCode::OK {
        return Err(format!("{url} answered {}", response.status()));
    }
    let prefix = format!("{tag}-");
    let mut events = response.into_body().into_data_stream().eventsource();
    Ok(tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let now = Instant::now();
            let event = event.map_err(|e| format!("the event stream failed: {e}"))?;
            match event.event.as_str() {
                "message" => {}
                "reset" => return Err("the event stream was reset (the log no longer held our position)".into()),
                _ => continue,
            }
            let Ok(v) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            let (Some(kind), Some(mrn)) = (v["type"].as_str(), v["mrn"].as_str()) else {
                continue;
            };
            if !mrn.starts_with(&prefix) {
                continue;
            }
            match kind {
                "alert-raised" => seen.alerts_raised.fetch_add(1, Ordering::Relaxed),
                "result-stored" => seen.stored.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
            if let Ok(mut e) = seen.events.lock() {
                e.push(Observed {
                    at: now,
                    kind: kind.to_owned(),
                    mrn: mrn.to_owned(),
                    logged_ms: log_id_ms(&event.id),
                });
            }
        }
        Err("the event stream ended".into())
    }))
}

/// Send the first `n` results of the plan to `queue` at the plan's rate, persistent with
/// publisher confirms (at most 4,096 awaiting theirs), `id_of` naming each message. Returns each
/// result's send time (just before its publish) and when the last confirm came.
async fn paced(
    channel: &Channel,
    queue: &str,
    plan: &Plan,
    n: usize,
    id_of: impl Fn(usize, &str) -> String,
) -> Result<(Vec<Instant>, Instant), String> {
    let rate = plan.settings.rate.max(1) as f64;
    let mut sent = Vec::with_capacity(n);
    let mut pending: VecDeque<PublisherConfirm> = VecDeque::new();
    let start = tokio::time::Instant::now();
    for (i, p) in plan.results.iter().take(n).enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let (id, content_type, body) = plan.payload(p);
        sent.push(Instant::now());
        pending.push_back(publish(channel, queue, &id_of(i, &id), content_type, &body).await?);
        if pending.len() >= 4096
            && let Some(c) = pending.pop_front()
        {
            check(c.await, queue)?;
        }
    }
    while let Some(c) = pending.pop_front() {
        check(c.await, queue)?;
    }
    Ok((sent, Instant::now()))
}

/// The broker alone, at the run's rate: publish → queue 1 → a relay (consume, publish
/// persistent with confirm, then ack: what ingest-lab does) → queue 2 → consume and ack. Each
/// message's latency from its publish to its arrival at the last consumer.
async fn baseline(amqp: &str, plan: &Plan, n: usize) -> Result<Value, String> {
    let tag = &plan.settings.tag;
    let (q1, q2) = (format!("labfeed-hop1-{tag}"), format!("labfeed-hop2-{tag}"));
    let conn = connect(amqp).await?;
    let setup = conn
        .create_channel()
        .await
        .map_err(|e| format!("cannot open a channel: {e}"))?;
    for q in [&q1, &q2] {
        setup
            .queue_declare(q.as_str().into(), durable(), FieldTable::default())
            .await
            .map_err(|e| format!("cannot declare `{q}`: {e}"))?;
    }
    // The relay: prefetch 16 as Wardwatch's AMQP_PREFETCH, deliveries handled concurrently.
    let relay_in = consume_channel(&conn, 16).await?;
    let relay_out = confirm_channel(&conn).await?;
    let consumer = relay_in
        .basic_consume(
            q1.as_str().into(),
            "labfeed-relay".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot consume `{q1}`: {e}"))?;
    let q2_name = q2.clone();
    let relay = tokio::spawn(async move {
        consumer
            .for_each_concurrent(16, |delivery| {
                let (relay_out, q2) = (relay_out.clone(), q2_name.clone());
                async move {
                    let Ok(delivery) = delivery else { return };
                    let id = delivery
                        .properties
                        .message_id()
                        .as_ref()
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    if let Ok(confirm) = publish(&relay_out, &q2, &id, "application/octet-stream", &delivery.data).await
                        && check(confirm.await, &q2).is_ok()
                    {
                        let _ = delivery.ack(BasicAckOptions::default()).await;
                    }
                }
            })
            .await;
    });
    // The last consumer: arrival times by message number.
    let last_in = consume_channel(&conn, 16).await?;
    let mut arrivals_stream = last_in
        .basic_consume(
            q2.as_str().into(),
            "labfeed-last".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot consume `{q2}`: {e}"))?;
    let collector = tokio::spawn(async move {
        let mut arrived: Vec<(usize, Instant)> = Vec::with_capacity(n);
        while arrived.len() < n {
            let next = tokio::time::timeout(Duration::from_secs(30), arrivals_stream.next()).await;
            let Ok(Some(Ok(delivery))) = next else { break };
            let now = Instant::now();
            let i = delivery
                .properties
                .message_id()
                .as_ref()
                .and_then(|s| s.as_str().parse::<usize>().ok());
            let _ = delivery.ack(BasicAckOptions::default()).await;
            if let Some(i) = i {
                arrived.push((i, now));
            }
        }
        arrived
    });
    let publisher = confirm_channel(&conn).await?;
    let (sent, _) = paced(&publisher, &q1, plan, n, |i, _| i.to_string()).await?;
    let arrived = collector
        .await
        .map_err(|e| format!("the baseline consumer failed: {e}"))?;
    relay.abort();
    for q in [&q1, &q2] {
        let _ = setup
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
    let start = sent.first().copied().unwrap_or_else(Instant::now);
    let mut seconds: Vec<Second> = Vec::new();
    let mut latencies = Vec::with_capacity(arrived.len());
    for (i, at) in &arrived {
        if let Some(s) = sent.get(*i) {
            let l = ms(at.saturating_duration_since(*s));
            latencies.push(l);
            bucket(&mut seconds, at.saturating_duration_since(start))
                .latencies
                .push(l);
        }
    }
    for s in &sent {
        bucket(&mut seconds, s.saturating_duration_since(start)).sent += 1;
    }
    Ok(json!({
        "messages": n,
        "arrived": arrived.len(),
        "two_hop_latency_ms": distribution(&latencies),
        "series_csv": series_csv(&seconds),
    }))
}

fn bucket(seconds: &mut Vec<Second>, since_start: Duration) -> &mut Second {
    let i = since_start.as_secs() as usize;
    if seconds.len() <= i {
        seconds.resize(i + 1, Second::default());
    }
    &mut seconds[i]
}

async fn run(cli: &Cli) -> Result<Value, String> {
    let base = cli.base.trim_end_matches('/').to_owned();
    let tag = cli
        .tag
        .clone()
        .unwrap_or_else(|| format!("f{}-{:08x}", cli.seed, fastrand::u32(..)));
    let plan = Plan::new(Settings {
        seed: cli.seed,
        rate: cli.rate.max(1),
        duration: cli.duration,
        patients: cli.patients,
        critical_per_mille: cli.critical_per_mille.min(1000),
        hl7_percent: cli.hl7_percent.min(100),
        tag: tag.clone(),
    });
    let n = plan.results.len();
    let client = http_client();
    let (status, _) = http_call(&client, Method::GET, &format!("{base}/healthz"), None)
        .await
        .map_err(|e| format!("Wardwatch is not answering at {base} ({e}); start it with: target/release/wardwatch up --redis … --amqp …"))?;
    if !status.is_success() {
        return Err(format!("{base}/healthz answered {status}"));
    }
    eprintln!("labfeed: admitting {} patients ({tag})", plan.admitted);
    let admitted = admit(&base, plan.admitted, &tag, cli.admit_concurrency).await?;

    let baseline = if cli.no_baseline {
        Value::Null
    } else {
        eprintln!("labfeed: the broker alone, two hops, {n} messages at {}/s", cli.rate);
        baseline(&cli.amqp, &plan, n).await?
    };

    let clock = Clock::now();
    let seen = Arc::new(Seen::default());
    let follower = follow(&base, &tag, seen.clone()).await?;
    let conn = connect(&cli.amqp).await?;
    let channel = confirm_channel(&conn).await?;
    channel
        .queue_declare(
            LAB_FEED.into(),
            QueueDeclareOptions {
                passive: true,
                ..durable()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("there is no `{LAB_FEED}` queue on this broker: is Wardwatch running with --amqp on this virtual host? ({e})"))?;
    eprintln!("labfeed: sending {n} results at {}/s for {} s", cli.rate, cli.duration);
    let (sent, confirmed) = paced(&channel, LAB_FEED, &plan, n, |_, id| id.to_owned()).await?;
    let _ = conn.close(200, "done".into()).await;

    // Wait for every alert and every stored result, or the settle time.
    let expected = plan.critical().count() as u64;
    let deadline = Instant::now() + Duration::from_secs(cli.settle);
    while Instant::now() < deadline
        && !follower.is_finished()
        && (seen.alerts_raised.load(Ordering::Relaxed) < expected || seen.stored.load(Ordering::Relaxed) < n as u64)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A little longer, so a duplicate alert would be seen too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stream_error = if follower.is_finished() {
        follower.await.ok().and_then(Result::err)
    } else {
        follower.abort();
        None
    };
    let events = seen
        .events
        .lock()
        .map(|e| e.clone())
        .map_err(|_| "the event record is unreadable".to_owned())?;

    // Match each alert-raised to the one critical result of its patient.
    let critical: HashMap<String, usize> = plan.critical().map(|p| (plan.mrn(p.patient), p.seq as usize)).collect();
    let start = sent.first().copied().unwrap_or_else(Instant::now);
    let mut seconds: Vec<Second> = Vec::new();
    for s in &sent {
        bucket(&mut seconds, s.saturating_duration_since(start)).sent += 1;
    }
    let mut matched: HashMap<&str, f64> = HashMap::new();
    let (mut duplicates, mut unexpected, mut stored) = (0u64, 0u64, 0u64);
    let mut other: HashMap<String, u64> = HashMap::new();
    let mut last_event = start;
    // Where the time goes, from the log ids' milliseconds (Redis's clock, this machine's).
    let mut stages = Stages::default();
    let mut stored_at: HashMap<&str, u64> = HashMap::new();
    for Observed {
        at,
        kind,
        mrn,
        logged_ms,
    } in &events
    {
        let second = bucket(&mut seconds, at.saturating_duration_since(start));
        match kind.as_str() {
            "result-stored" => {
                stored += 1;
                second.stored += 1;
                last_event = last_event.max(*at);
                if let (Some(logged), true) = (logged_ms, critical.contains_key(mrn)) {
                    stored_at.entry(mrn).or_insert(*logged);
                }
            }
            "alert-raised" => match critical.get(mrn) {
                Some(&seq) if !matched.contains_key(mrn.as_str()) => {
                    let latency = ms(at.saturating_duration_since(sent[seq]));
                    if let (Some(&stored_ms), Some(alert_ms)) = (stored_at.get(mrn.as_str()), logged_ms) {
                        stages.add(clock.wall_ms(sent[seq]), stored_ms, *alert_ms, clock.wall_ms(*at));
                    }
                    matched.insert(mrn, latency);
                    second.alerts += 1;
                    second.latencies.push(latency);
                    last_event = last_event.max(*at);
                }
                Some(_) => duplicates += 1,
                None => unexpected += 1,
            },
            _ => *other.entry(kind.clone()).or_default() += 1,
        }
    }
    let latencies: Vec<f64> = matched.values().copied().collect();
    let sending = confirmed.saturating_duration_since(start).as_secs_f64();
    let processing = last_event.saturating_duration_since(start).as_secs_f64();
    let exact = matched.len() as u64 == expected && duplicates == 0 && unexpected == 0;
    let hl7 = plan.results.iter().filter(|p| p.hl7).count();
    let mut report = json!({
        "tag": tag,
        "seed": cli.seed,
        "rate": cli.rate,
        "duration_s": cli.duration,
        "results": n,
        "hl7_v2": hl7,
        "fhir": n - hl7,
        "patients": {"everyday": cli.patients, "critical": expected, "admitted": admitted},
        "sent_per_s": round1(if sending > 0.0 { n as f64 / sending } else { 0.0 }),
        "stored_seen": stored,
        "stored_per_s": round1(if processing > 0.0 { stored as f64 / processing } else { 0.0 }),
        "alerts": {
            "expected": expected,
            "seen": matched.len(),
            "duplicates": duplicates,
            "unexpected": unexpected,
            "exact": exact,
        },
        "other_events": other,
        "lab_to_alert_ms": distribution(&latencies),
        "stages_ms": stages.report(),
        "broker_two_hops": baseline.get("two_hop_latency_ms").cloned().unwrap_or(Value::Null),
        "broker_arrived": baseline.get("arrived").cloned().unwrap_or(Value::Null),
        "stream_error": stream_error,
    });
    if let Some(dir) = &cli.out {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).map_err(|e| format!("cannot write {name}: {e}"))
        };
        write("series.csv", &series_csv(&seconds))?;
        if let Some(csv) = baseline.get("series_csv").and_then(Value::as_str) {
            write("baseline-series.csv", csv)?;
        }
        write(
            "summary.json",
            &serde_json::to_string_pretty(&report).unwrap_or_default(),
        )?;
        report["out"] = json!(dir.display().to_string());
    }
    Ok(report)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            if report["alerts"]["exact"] == true {
                ExitCode::SUCCESS
            } else {
                eprintln!("labfeed: alerts seen differ from alerts expected");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("labfeed: {e}");
            ExitCode::from(2)
        }
    }
}
