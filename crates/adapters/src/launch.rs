//! Start-up shared by every binary: choose the adapters from the [`Config`], serve the app,
//! run the queue consumers the bus needs, and drain everything on shutdown.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};
use wardwatch_domain::ports::{PortError, Publisher};
use wardwatch_runtime::amqp::{consume, drain_channel};
use wardwatch_runtime::{
    App, AppBuilder, BoxFuture, Config, ConfigError, Metrics, RejectLane, serve, shutdown_signal, telemetry,
};

use wardwatch_records::rejects::Rejects;
use wardwatch_records::{Locks, Records, relay};

use crate::{Bus, Log, Store};

/// Every Wardwatch process allocates through mimalloc: a request handles many small JSON
/// values across two threads, and glibc's allocator spent a quarter of admit's CPU time in
/// `malloc`/`free` (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long in-flight requests and deliveries may take to finish after SIGTERM: under
/// Kubernetes' default termination grace period (30 s), before SIGKILL.
pub const DRAIN: Duration = Duration::from_secs(25);

/// The adapters and shared pieces a binary wires its functions with.
pub struct Wiring {
    pub config: Config,
    pub store: Store,
    pub bus: Bus,
    pub log: Log,
    /// Per-patient turn-taking, shared by every function of the process.
    pub locks: Locks,
    pub metrics: Metrics,
}

impl Wiring {
    pub fn new(config: Config, metrics: Metrics) -> Result<Self, String> {
        let store = Store::from_config(&config)?;
        let bus = Bus::from_config(&config)?;
        let log = Log::from_config(&config)?;
        Ok(Self {
            config,
            store,
            bus,
            log,
            locks: Locks::default(),
            metrics,
        })
    }

    /// The patient-record repository over this process's adapters. Its events reach the lanes
    /// through the process's relay, which [`run`] starts.
    pub fn records(&self) -> Records<Store, Log, Bus> {
        Records::new(
            self.store.clone(),
            self.log.clone(),
            self.bus.clone(),
            self.locks.clone(),
        )
        .relayed()
    }

    /// An app builder with the rejected lanes (kept in the state store too), token and size
    /// limits set.
    pub fn app(&self) -> AppBuilder {
        App::builder(
            self.metrics.clone(),
            KeepRejects {
                rejects: Rejects::new(self.store.clone()),
                bus: self.bus.clone(),
            },
        )
        .token(self.config.app_api_token.clone())
        .max_body(self.config.max_body_bytes)
        .max_delivery(self.config.max_delivery_bytes)
    }
}

/// A rejected delivery is kept in the state store (to be listed and replayed), then published
/// on its rejected lane. Either failing transiently leaves the delivery unacked: it comes back,
/// and is kept under the same handle.
struct KeepRejects {
    rejects: Rejects<Store>,
    bus: Bus,
}

/// The largest rejected record published whole on a lane (RabbitMQ 4 refuses messages over
/// 16 MiB by default); a larger one is kept whole in the state store and published with only
/// the payload's first MiB.
const LANE_RECORD_MAX: usize = 15 * 1024 * 1024;
const LANE_HEAD_BYTES: usize = 1024 * 1024;

impl RejectLane for KeepRejects {
    fn record<'a>(&'a self, lane: &'a str, payload: Vec<u8>) -> BoxFuture<'a, Result<(), PortError>> {
        Box::pin(async move {
            let handle = self.rejects.keep(&payload, chrono::Utc::now()).await?;
            info!(%handle, lane, "rejected delivery kept for replay");
            if payload.len() <= LANE_RECORD_MAX {
                return self.bus.publish(lane, &payload).await;
            }
            let head = headed(&payload, &handle)?;
            warn!(%handle, lane, bytes = payload.len(), "rejected record too large for the lane: its head is published, the whole is kept");
            self.bus.publish(lane, &head).await
        })
    }
}

/// A rejected record with only its payload's first MiB, saying where the whole is kept.
fn headed(record: &[u8], handle: &str) -> Result<Vec<u8>, PortError> {
    let mut r: wardwatch_domain::events::Rejected =
        serde_json::from_slice(record).map_err(|e| PortError::Corrupt(format!("a rejected record: {e}")))?;
    let whole = r.payload.as_ref().map_or(0, String::len) + r.payload_base64.as_ref().map_or(0, String::len);
    if let Some(text) = r.payload.as_mut() {
        let mut cut = LANE_HEAD_BYTES.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    if let Some(b64) = r.payload_base64.as_mut() {
        b64.truncate(LANE_HEAD_BYTES / 4 * 4);
    }
    r.truncated_from = Some(r.truncated_from.unwrap_or(whole));
    if let Some(issues) = r.outcome.get_mut("issue").and_then(serde_json::Value::as_array_mut) {
        issues.push(serde_json::json!({"severity": "information", "code": "too-costly",
            "diagnostics": format!("too large for the lane: the whole payload is kept in the state store, rejected handle {handle} (GET /api/rejected/{handle})")}));
    }
    serde_json::to_vec(&r).map_err(|e| PortError::Corrupt(e.to_string()))
}

/// Serve `app` on `listener` and consume `inputs` from the bus (RabbitMQ queues directly, or the
/// in-process bus; with Dapr, daprd delivers instead) until `shutdown`; then drain.
pub async fn run(
    wiring: &Wiring,
    app: App,
    listener: TcpListener,
    inputs: &[&str],
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // Compile the FHIR schema validators off the request path while the server starts.
    let warm = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || app.prepare())
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut consumers = JoinSet::new();
    for input in inputs {
        let Some(deliverer) = app.deliverer(input) else {
            continue;
        };
        match (&wiring.bus, &wiring.config.amqp_url) {
            (Bus::Amqp(_), Some(url)) => {
                consumers.spawn(consume(
                    url.clone(),
                    deliverer,
                    wiring.config.amqp_prefetch,
                    stop_rx.clone(),
                ));
            }
            (Bus::Memory(bus), _) => {
                consumers.spawn(drain_channel(bus.subscribe(input), deliverer, stop_rx.clone()));
            }
            _ => {}
        }
    }
    // The lane outbox's relay: it stops last, once nothing can append any more.
    let (relay_stop_tx, relay_stop_rx) = watch::channel(false);
    let relay = tokio::spawn(relay(wiring.log.clone(), wiring.bus.clone(), relay_stop_rx));
    // On shutdown the HTTP server and the consumers stop taking work at the same time.
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let served = serve(listener, app, shutdown, DRAIN).await;
    let _ = warm.await;
    let _ = tokio::time::timeout(DRAIN, async { while consumers.join_next().await.is_some() {} }).await;
    let _ = relay_stop_tx.send(true);
    if tokio::time::timeout(Duration::from_secs(5), relay).await.is_err() {
        warn!("the relay did not finish in 5 s: what it had not published is published by the next one to start");
    }
    info!("stopped");
    served
}

/// The whole `main` of a single-function binary: configuration from the environment, the
/// adapters it selects, `build` to mount the function, serve on `$PORT` until SIGTERM.
pub fn main(name: &'static str, inputs: &[&str], build: impl FnOnce(&Wiring) -> AppBuilder) -> ExitCode {
    let metrics = Metrics::new();
    serve_main(name, Config::from_env(), metrics, inputs, |w| build(w).build())
}

/// Run a process until SIGTERM / Ctrl-C: logging, the async runtime, the adapters `config`
/// selects, `app` on `config.listen`, and the consumers of `inputs`. A configuration error
/// exits with code 2, any other start-up failure with 1. `metrics` should be created first
/// thing in `main` (it starts the cold-start clock).
pub fn serve_main(
    name: &'static str,
    config: Result<Config, ConfigError>,
    metrics: Metrics,
    inputs: &[&str],
    app: impl FnOnce(&Wiring) -> App,
) -> ExitCode {
    serve_main_with(name, config, metrics, inputs, app, |_, _| async {})
}

/// [`serve_main`], and once listening, `companion` runs beside the server, made from the
/// wiring and the address, until the process stops (`wardwatch demo`'s synthetic hospital).
pub fn serve_main_with<F>(
    name: &'static str,
    config: Result<Config, ConfigError>,
    metrics: Metrics,
    inputs: &[&str],
    app: impl FnOnce(&Wiring) -> App,
    companion: impl FnOnce(&Wiring, std::net::SocketAddr) -> F,
) -> ExitCode
where
    F: Future<Output = ()> + Send + 'static,
{
    let inputs: Vec<String> = inputs.iter().map(|s| (*s).to_owned()).collect();
    serve_main_up(name, config, metrics, companion, move |wiring, listener, shutdown| {
        let app = app(wiring);
        Box::pin(async move {
            let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            run(wiring, app, listener, &inputs, shutdown).await
        })
    })
}

/// [`serve_main_with`], with the serving itself given: `up` serves on the listener until the
/// shutdown future (SIGTERM / Ctrl-C) resolves, then drains — [`run`] with more beside it
/// (`wardwatch up`'s MLLP listener and escalation ticker).
pub fn serve_main_up<F>(
    name: &'static str,
    config: Result<Config, ConfigError>,
    metrics: Metrics,
    companion: impl FnOnce(&Wiring, std::net::SocketAddr) -> F,
    up: impl for<'w> FnOnce(&'w Wiring, TcpListener, BoxFuture<'static, ()>) -> BoxFuture<'w, std::io::Result<()>>,
) -> ExitCode
where
    F: Future<Output = ()> + Send + 'static,
{
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            telemetry::init(false);
            error!(process = name, "configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let wiring = match Wiring::new(config, metrics) {
            Ok(w) => w,
            Err(e) => {
                error!(process = name, "configuration error: {e}");
                return ExitCode::from(2);
            }
        };
        info!("{}", wiring.config.identity.describe());
        if matches!(wiring.store, Store::Dapr(_)) {
            // The sidecar may not answer before this process listens (daprd waits for the app
            // port), so the layout is not checked here; DEPLOY.md says so.
        } else if let Err(e) = wardwatch_records::check_layout(&wiring.store).await {
            error!(process = name, "{e}");
            return ExitCode::from(2);
        }
        if matches!(wiring.log, Log::Memory(_)) && !matches!(wiring.store, Store::Memory(_)) {
            warn!("the event log is in process memory: set EVENTS_REDIS_URL so that readers resume across restarts and replicas");
        }
        let listener = match TcpListener::bind(wiring.config.listen).await {
            Ok(l) => l,
            Err(e) => {
                error!(listen = %wiring.config.listen, "cannot listen: {e}");
                return ExitCode::FAILURE;
            }
        };
        let local = listener.local_addr().ok();
        let addr = local.map(|a| a.to_string()).unwrap_or_default();
        info!(
            "{name} listening on http://{addr} ({})",
            wiring.config.describe_backends()
        );
        if let Some(local) = local {
            tokio::spawn(companion(&wiring, local));
        }
        if matches!(wiring.bus, Bus::Memory(_)) && !matches!(wiring.store, Store::Memory(_)) {
            warn!("durable state with the in-process bus: events between functions are lost if the process stops");
        }
        match up(&wiring, listener, Box::pin(shutdown_signal())).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("server failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_too_large_for_the_lane_is_published_with_its_head_and_says_where_the_whole_is() {
        let record = serde_json::to_vec(&wardwatch_domain::events::Rejected {
            lane: "lab-feed".into(),
            received_at: chrono::Utc::now(),
            request_id: "r".into(),
            outcome: serde_json::json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid"}]}),
            payload: Some("é".repeat(LANE_RECORD_MAX)),
            payload_base64: None,
            truncated_from: None,
        })
        .expect("json");
        let head: wardwatch_domain::events::Rejected =
            serde_json::from_slice(&headed(&record, "h1").expect("head")).expect("json");
        let kept = head.payload.expect("text");
        assert!(
            kept.len() <= LANE_HEAD_BYTES && kept.len() > LANE_HEAD_BYTES - 2,
            "{}",
            kept.len()
        );
        assert_eq!(head.truncated_from, Some(2 * LANE_RECORD_MAX));
        assert!(head.outcome.to_string().contains("/api/rejected/h1"));
    }
}
