//! Spawning the host on port 0 with randomised configuration, and checks that the services
//! the tests need are running (a missing one fails the test and says how to start it).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wardwatch_adapters::Bus;
use wardwatch_adapters::launch::Wiring;
use wardwatch_runtime::{Config, Metrics};

pub const REDIS: &str = "redis://127.0.0.1:6379";
pub const RABBITMQ: &str = "amqp://guest:guest@127.0.0.1:5672";

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/../schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Fail (never skip) when Redis is not reachable.
pub async fn require_redis() {
    let ok = async {
        let client = redis::Client::open(REDIS).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.ok()
    };
    if tokio::time::timeout(Duration::from_secs(3), ok)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        panic!(
            "Redis is not running on 127.0.0.1:6379. Start it with:\n  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no\n(or run .ci/run, which installs and starts it)"
        );
    }
}

/// Fail (never skip) when RabbitMQ is not reachable.
pub async fn require_rabbitmq() {
    let ok = async {
        lapin::Connection::connect(RABBITMQ, lapin::ConnectionProperties::default())
            .await
            .ok()
    };
    if tokio::time::timeout(Duration::from_secs(5), ok)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        panic!(
            "RabbitMQ is not running on 127.0.0.1:5672 (guest/guest). Start it with:\n  rabbitmq-server -detached\n(or run .ci/run, which installs and starts it)"
        );
    }
}

/// Delete every key under a test's Redis prefix: the state entries and the event log.
pub async fn clean_up(prefix: &str) {
    use redis::AsyncCommands;
    let mut conn = redis::Client::open(REDIS)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut keys: Vec<String> = conn.keys(format!("{prefix}||*")).await.expect("keys");
    let log: Vec<String> = conn.keys(format!("{prefix}:events*")).await.expect("keys");
    keys.extend(log);
    if !keys.is_empty() {
        let _: () = conn.del(keys).await.expect("clean up");
    }
}

/// A RabbitMQ virtual host of this test's own, so queue names stay the real ones (`lab-feed`)
/// and tests still run in parallel. Deleted on drop.
pub struct VHost {
    pub name: String,
}

fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl is needed to make a per-test virtual host (it comes with rabbitmq-server; run as root)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl VHost {
    pub async fn new() -> Self {
        require_rabbitmq().await;
        let name = unique("ww-test");
        let n = name.clone();
        tokio::task::spawn_blocking(move || {
            rabbitmqctl(&["add_vhost", &n]);
            rabbitmqctl(&["set_permissions", "-p", &n, "guest", ".*", ".*", ".*"]);
        })
        .await
        .expect("join");
        Self { name }
    }
    pub fn url(&self) -> String {
        format!("{RABBITMQ}/{}", self.name)
    }
}

impl Drop for VHost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

pub fn config(vars: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Config::from_lookup(|k| map.get(k).cloned()).expect("valid test config")
}

/// The whole `wardwatch up` process, in this test's runtime, on an ephemeral port.
pub struct Host {
    pub base: String,
    pub bus: Bus,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Host {
    pub async fn spawn(config: Config) -> Self {
        Self::spawn_with(config, None).await
    }

    /// The host with its MLLP listener on an ephemeral port too, and that port's address.
    pub async fn spawn_with_mllp(config: Config) -> (Self, std::net::SocketAddr) {
        let mllp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = mllp.local_addr().expect("addr");
        (Self::spawn_with(config, Some(mllp)).await, addr)
    }

    async fn spawn_with(config: Config, mllp: Option<TcpListener>) -> Self {
        let wiring = Wiring::new(config, Metrics::new()).expect("wiring");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let bus = wiring.bus.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            wardwatch_host::up_with(&wiring, listener, mllp, async {
                let _ = rx.await;
            })
            .await
            .expect("host ran");
        });
        Self {
            base,
            bus,
            stop: Some(tx),
            done: Some(done),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url(path))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = reqwest::get(self.url(path)).await.expect("request");
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("json")
    }

    /// Admit the example patient (MRN0001) with the example transaction Bundle.
    pub async fn admit_example(&self) {
        let r = self
            .post_json("/fhir", &fixture("examples/admission-bundle.json"))
            .await;
        assert_eq!(r.status(), 200, "the example Bundle is admitted");
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Stop and wait for the drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.expect("host stopped");
        }
    }
}

/// Poll `check` until it returns `Some`, for at most `limit`. Not a speed assertion: the
/// limit is generous, and how fast it is lives in the benchmarks.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The active alerts of patient `mrn`, once there is at least one.
pub async fn alerts_for(host: &Host, mrn: &str, limit: Duration) -> Option<Vec<Value>> {
    eventually(limit, || async {
        let alerts = host.get_json("/api/alerts?status=active").await;
        let mine: Vec<Value> = alerts.as_array()?.iter().filter(|a| a["mrn"] == mrn).cloned().collect();
        (!mine.is_empty()).then_some(mine)
    })
    .await
}

/// A message of the HL7 v2 ADT corpus (`functions/admit/tests/corpus/adt/<name>`).
pub fn adt_corpus(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../functions/admit/tests/corpus/adt")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first message of the ORU^R01 corpus whose file name starts with `prefix`.
pub fn oru_corpus(prefix: &str) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/ingest-lab/tests/corpus/oru");
    let name = std::fs::read_dir(&dir)
        .expect("corpus")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .find(|n| n.starts_with(prefix) && n.ends_with(".hl7"))
        .expect("corpus file");
    std::fs::read(dir.join(name)).expect("message")
}

/// Where the patient with hospital number `mrn` is on the board: (ward, bed), or none.
pub async fn placed(host: &Host, mrn: &str) -> Option<(String, String)> {
    let inpatients = host.get_json("/api/inpatients").await;
    inpatients
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["mrn"] == mrn)
        .map(|p| {
            (
                p["ward"].as_str().unwrap_or_default().to_owned(),
                p["bed"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// How many `admitted` events the event log holds (its first 1,000).
pub async fn admitted_events(host: &Host) -> usize {
    let page = host.get_json("/api/events?after=0&limit=1000").await;
    page["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "admitted")
        .count()
}
