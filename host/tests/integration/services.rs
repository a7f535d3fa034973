//! `wardwatch up --redis --amqp` against the real Redis and RabbitMQ.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use redis::AsyncCommands;
use serde_json::Value;

use crate::helpers::{Host, REDIS, VHost, alerts_for, clean_up, config, eventually, fixture, require_redis, unique};

/// Publish one persistent message to `queue` (declared durable, as Wardwatch declares it).
pub(crate) async fn publish(url: &str, queue: &str, body: &[u8]) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    let _ = conn.close(200, "done".into()).await;
}

/// Take one message from `queue`, if any (none when the queue does not exist yet).
pub(crate) async fn get_one(url: &str, queue: &str) -> Option<Vec<u8>> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    // A queue not declared yet (its first message not published yet) holds nothing.
    let got = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .ok()
        .flatten();
    let _ = conn.close(200, "done".into()).await;
    got.map(|m| m.delivery.data.clone())
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// `wardwatch up --redis --amqp` with a Redis key prefix and a RabbitMQ vhost of its own.
async fn direct_host() -> (VHost, String, Host) {
    direct_host_with(&[]).await
}

/// The same, with more settings.
pub(crate) async fn direct_host_with(extra: &[(&str, &str)]) -> (VHost, String, Host) {
    require_redis().await;
    let vhost = VHost::new().await;
    let prefix = unique("ww-test");
    let url = vhost.url();
    let mut vars = vec![
        ("REDIS_URL", REDIS),
        ("AMQP_URL", url.as_str()),
        ("STATE_KEY_PREFIX", prefix.as_str()),
    ];
    vars.extend_from_slice(extra);
    let host = Host::spawn(config(&vars)).await;
    (vhost, prefix, host)
}

#[tokio::test]
async fn through_redis_and_rabbitmq_an_observation_on_the_queue_raises_the_alert() {
    let (vhost, prefix, host) = direct_host().await;

    host.admit_example().await;
    publish(
        &vhost.url(),
        "lab-feed",
        fixture("examples/potassium-critical.json").to_string().as_bytes(),
    )
    .await;
    let alerts = alerts_for(&host, "MRN0001", Duration::from_secs(20))
        .await
        .expect("the alert arrives through RabbitMQ");
    assert_eq!(alerts[0]["rule"], "critical-high:potassium");

    // The alert went out on the `alerts` queue too.
    let url = vhost.url();
    let published = eventually(Duration::from_secs(10), || get_one(&url, "alerts"))
        .await
        .expect("alert published");
    let published: Value = serde_json::from_slice(&published).expect("json");
    assert_eq!(published["type"], "alert-raised");
    assert_eq!(published["alert_id"], alerts[0]["id"]);

    // Every value is in Dapr's layout: `<prefix>||<key>`, a HASH with `data` and `version`.
    let mut conn = redis_conn(REDIS).await;
    let keys: Vec<String> = conn.keys(format!("{prefix}||*")).await.expect("keys");
    assert!(
        keys.len() >= 7,
        "record, patient, encounter, result, ident, ward, wards…: {keys:?}"
    );
    for key in &keys {
        let kind: String = redis::cmd("TYPE").arg(key).query_async(&mut conn).await.expect("type");
        assert_eq!(kind, "hash", "{key}");
        let fields: std::collections::HashMap<String, Vec<u8>> = conn.hgetall(key).await.expect("hgetall");
        let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["data", "version"], "{key}");
        let version: i64 = String::from_utf8_lossy(&fields["version"])
            .parse()
            .expect("integer version");
        assert!(version >= 1);
        serde_json::from_slice::<Value>(&fields["data"]).expect("data is JSON");
    }
    assert!(keys.iter().any(|k| k.starts_with(&format!("{prefix}||record-"))));
    assert!(
        !keys
            .iter()
            .any(|k| k.ends_with("||census") || k.ends_with("||alerts-open"))
    );
    host.stop().await;
    clean_up(&prefix).await;
}

/// A Redis server of this test's own, so that it can be killed and restarted.
struct OwnRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    fn start(port: u16, dir: &std::path::Path) -> Child {
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed (apt-get install redis-server)")
    }

    async fn new() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let dir = std::env::temp_dir().join(unique("ww-redis"));
        std::fs::create_dir_all(&dir).expect("dir");
        let child = Self::start(port, &dir);
        let me = Self {
            port,
            dir,
            child: Some(child),
        };
        me.wait_up().await;
        me
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_up(&self) {
        let url = self.url();
        eventually(Duration::from_secs(10), || async {
            let client = redis::Client::open(url.as_str()).ok()?;
            let mut c = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING").query_async::<String>(&mut c).await.ok()
        })
        .await
        .expect("own redis-server started");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn restart(&mut self) {
        self.child = Some(Self::start(self.port, &self.dir));
        self.wait_up().await;
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn metric(host: &Host, needle: &str) -> u64 {
    let text = host.metrics_text().await;
    text.lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn with_redis_killed_deliveries_answer_503_and_are_not_acked_and_the_alert_arrives_once_it_is_back() {
    let mut redis = OwnRedis::new().await;
    let vhost = VHost::new().await;
    let host = Host::spawn(config(&[("REDIS_URL", &redis.url()), ("AMQP_URL", &vhost.url())])).await;
    host.admit_example().await;

    redis.kill();
    let r = host
        .post_json("/lab-feed", &fixture("examples/potassium-critical.json"))
        .await;
    assert_eq!(r.status().as_u16(), 503, "daprd must redeliver");
    assert_eq!(reqwest::get(host.url("/readyz")).await.expect("readyz").status(), 503);

    publish(
        &vhost.url(),
        "lab-feed",
        fixture("examples/potassium-critical.json").to_string().as_bytes(),
    )
    .await;
    let transient = r#"wardwatch_failures_total{function="ingest-lab",kind="transient"}"#;
    eventually(Duration::from_secs(20), || async {
        (metric(&host, transient).await >= 2).then_some(())
    })
    .await
    .expect("the consumer got the message and failed transiently");
    // Still unacked: the broker holds the message for redelivery (the consumer holds it now,
    // or it is back in the queue); nothing was rejected.
    let rejected = r#"wardwatch_rejected_total{lane="lab-feed-rejected"}"#;
    assert_eq!(metric(&host, rejected).await, 0);

    redis.restart().await;
    let alerts = alerts_for(&host, "MRN0001", Duration::from_secs(30))
        .await
        .expect("the alert arrives once Redis is back");
    assert_eq!(alerts.len(), 1, "raised once");
    assert_eq!(reqwest::get(host.url("/readyz")).await.expect("readyz").status(), 200);
    host.stop().await;
}

#[tokio::test]
async fn after_rabbitmq_drops_every_connection_consumers_and_publishers_reconnect_and_nothing_is_lost() {
    let (vhost, prefix, host) = direct_host().await;
    host.admit_example().await;
    // Once both consumers (lab-feed, lab-resulted) and the publisher are connected, have the
    // broker close every connection of this vhost.
    let name = vhost.name.clone();
    let before = eventually(Duration::from_secs(20), || {
        let name = name.clone();
        async move { Some(connections(&name).await).filter(|c| c.len() >= 3) }
    })
    .await
    .expect("consumers and publisher connected");
    let n = name.clone();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("rabbitmqctl")
            .args(["close_all_connections", "-p", &n, "test: broker drops connections"])
            .output()
            .expect("rabbitmqctl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    })
    .await
    .expect("join");
    // Both consumers come back on new connections (the old ones are gone).
    eventually(Duration::from_secs(30), || {
        let (name, before) = (name.clone(), before.clone());
        async move {
            let now = connections(&name).await;
            (now.len() >= 2 && now.is_disjoint(&before)).then_some(())
        }
    })
    .await
    .expect("the consumers reconnected");

    publish(
        &vhost.url(),
        "lab-feed",
        fixture("examples/potassium-critical.json").to_string().as_bytes(),
    )
    .await;
    let alerts = alerts_for(&host, "MRN0001", Duration::from_secs(60))
        .await
        .expect("the alert arrives after reconnecting");
    assert_eq!(alerts.len(), 1);
    host.stop().await;
    clean_up(&prefix).await;
}

/// The names (client address → server address) of the broker's connections in `vhost`.
async fn connections(vhost: &str) -> std::collections::HashSet<String> {
    let vhost = vhost.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("rabbitmqctl")
            .args(["-q", "list_connections", "-p", &vhost, "name"])
            .output()
            .expect("rabbitmqctl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| l.contains("->"))
            .map(str::to_owned)
            .collect()
    })
    .await
    .expect("join")
}
