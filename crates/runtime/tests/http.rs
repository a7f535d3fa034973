//! The runtime's HTTP surface on a real socket (127.0.0.1:0) with a real HTTP client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wardwatch_domain::ports::{PortError, Publisher};
use wardwatch_runtime::{App, AppBuilder, Event, Failure, FailureKind, Function, Metrics, Output, Secret, serve};

/// Answers by payload: `ok`, `bad` (invalid), `down` (transient), `bug`.
struct Echo;

impl Function for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    async fn call(&self, event: Event) -> Result<Output, Failure> {
        match &event.payload[..] {
            b"bad" => Err(Failure::invalid("bad input")),
            b"down" => Err(Failure::new(FailureKind::Transient, "down")),
            b"bug" => Err(Failure::new(FailureKind::Bug, "oops")),
            b"slow" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(Output::ok(json!({"slow": true})))
            }
            other => Ok(Output::ok(
                json!({"echo": String::from_utf8_lossy(other), "trigger": event.context.trigger.as_str()}),
            )),
        }
    }
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A rejected lane that keeps what it is given, or fails when told to: always (`broken`), or
/// for good on records larger than `max_record` bytes, as daprd refuses bodies over its limit.
#[derive(Clone, Default)]
struct Lane {
    got: Arc<Mutex<Vec<(String, Value)>>>,
    broken: Arc<Mutex<bool>>,
    max_record: Arc<Mutex<Option<usize>>>,
}

impl Publisher for Lane {
    async fn publish(&self, lane: &str, payload: &[u8]) -> Result<(), PortError> {
        if *self.broken.lock().expect("lock") {
            return Err(PortError::Unavailable("lane down".into()));
        }
        if let Some(max) = *self.max_record.lock().expect("lock")
            && payload.len() > max
        {
            return Err(PortError::Corrupt("too large (413)".into()));
        }
        let v: Value = serde_json::from_slice(payload).expect("json");
        self.got.lock().expect("lock").push((lane.to_owned(), v));
        Ok(())
    }
    async fn ping(&self) -> Result<(), PortError> {
        Ok(())
    }
}

struct Server {
    base: String,
    lane: Lane,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn spawn(configure: impl FnOnce(AppBuilder) -> AppBuilder) -> Server {
    let lane = Lane::default();
    let builder = App::builder(Metrics::new(), lane.clone())
        .binding("lab-feed", Arc::new(Echo))
        .fhir("/fhir", Arc::new(Echo))
        .cloudevents_default("lab-feed");
    let app = configure(builder).build();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(serve(
        listener,
        app,
        async {
            let _ = rx.await;
        },
        Duration::from_secs(5),
    ));
    Server {
        base,
        lane,
        stop: Some(tx),
        done,
    }
}

impl Server {
    /// POST `body` to `path`.
    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        client()
            .post(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .expect("send")
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

impl Server {
    /// What the rejected lane got so far.
    fn rejected(&self) -> Vec<(String, Value)> {
        self.lane.got.lock().expect("lock").clone()
    }
}

/// The diagnostics of an OperationOutcome's first issue, and its code.
fn first_issue(outcome: &Value) -> (String, String) {
    let issue = &outcome["issue"][0];
    (
        issue["code"].as_str().expect("code").to_owned(),
        issue["diagnostics"].as_str().expect("diagnostics").to_owned(),
    )
}

#[tokio::test]
async fn healthz_answers_200_and_readyz_reports_ready() {
    let s = spawn(|b| b).await;
    let r = client().get(format!("{}/healthz", s.base)).send().await.expect("send");
    assert_eq!(r.status(), 200);
    let r = client().get(format!("{}/readyz", s.base)).send().await.expect("send");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_binding_delivery_is_acked_with_exactly_200() {
    let s = spawn(|b| b).await;
    let r = client()
        .post(format!("{}/lab-feed", s.base))
        .header("content-type", "application/json")
        .body("ok")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    assert!(s.lane.got.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn daprs_options_probe_subscribes_and_unknown_routes_are_404() {
    let s = spawn(|b| b).await;
    let r = client()
        .request(reqwest::Method::OPTIONS, format!("{}/lab-feed", s.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let r = client()
        .request(reqwest::Method::OPTIONS, format!("{}/alerts", s.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test]
async fn a_bad_delivery_is_recorded_on_the_rejected_lane_with_an_outcome_and_acked() {
    let s = spawn(|b| b).await;
    let r = s.post("/lab-feed", "bad").await;
    assert_eq!(r.status().as_u16(), 200);
    let got = s.lane.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "lab-feed-rejected");
    assert_eq!(got[0].1["payload"], "bad");
    assert_eq!(got[0].1["outcome"]["resourceType"], "OperationOutcome");
    assert_eq!(got[0].1["outcome"]["issue"][0]["diagnostics"], "bad input");
}

#[tokio::test]
async fn a_transient_failure_answers_503_so_daprd_redelivers() {
    let s = spawn(|b| b).await;
    let r = s.post("/lab-feed", "down").await;
    assert_eq!(r.status().as_u16(), 503);
    assert!(
        s.lane.got.lock().expect("lock").is_empty(),
        "nothing is rejected on a transient failure"
    );
}

#[tokio::test]
async fn when_the_rejected_lane_is_down_a_bad_delivery_is_not_acked() {
    let s = spawn(|b| b).await;
    *s.lane.broken.lock().expect("lock") = true;
    let r = s.post("/lab-feed", "bad").await;
    assert_eq!(r.status().as_u16(), 503);
}

#[tokio::test]
async fn the_http_trigger_maps_failures_to_status_and_operation_outcome() {
    let s = spawn(|b| b).await;
    let r = s.post("/fhir", "bad").await;
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.headers()["content-type"], "application/fhir+json");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["resourceType"], "OperationOutcome");
    let r = s.post("/fhir", "down").await;
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let r = s.post("/fhir", "bug").await;
    assert_eq!(r.status().as_u16(), 500);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["issue"][0]["code"], "exception");
}

#[tokio::test]
async fn with_an_app_token_every_route_but_healthz_needs_it() {
    let s = spawn(|b| b.token(Some(Secret::new("s3cret")))).await;
    let c = client();
    assert_eq!(
        c.get(format!("{}/healthz", s.base))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
    assert_eq!(
        c.post(format!("{}/lab-feed", s.base))
            .body("ok")
            .send()
            .await
            .expect("send")
            .status(),
        401
    );
    assert_eq!(
        c.get(format!("{}/readyz", s.base)).send().await.expect("send").status(),
        401
    );
    let wrong = c
        .post(format!("{}/lab-feed", s.base))
        .header("dapr-api-token", "s3creT")
        .body("ok")
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);
    let right = c
        .post(format!("{}/lab-feed", s.base))
        .header("dapr-api-token", "s3cret")
        .body("ok")
        .send()
        .await
        .expect("send");
    assert_eq!(right.status(), 200);
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let s = spawn(|b| b.max_body(1024)).await;
    let r = s.post("/fhir", vec![b'x'; 4096]).await;
    assert_eq!(r.status().as_u16(), 413);
}

#[tokio::test]
async fn a_delivery_larger_than_the_http_body_limit_but_within_the_delivery_limit_reaches_the_function() {
    let s = spawn(|b| b.max_body(1024).max_delivery(8192)).await;
    assert_eq!(s.post("/lab-feed", vec![b'x'; 4096]).await.status().as_u16(), 200);
    assert!(s.rejected().is_empty(), "delivered, not refused as too large");
    assert_eq!(
        s.post("/fhir", vec![b'x'; 4096]).await.status().as_u16(),
        413,
        "the HTTP limit still holds"
    );
}

#[tokio::test]
async fn a_binding_payload_over_the_accepted_size_is_recorded_whole_as_too_costly_and_acked() {
    let s = spawn(|b| b.max_body(1024).max_delivery(1024)).await;
    let at_limit = s.post("/lab-feed", vec![b'x'; 1024]).await;
    assert_eq!(at_limit.status().as_u16(), 200);
    assert!(
        s.rejected().is_empty(),
        "a payload at the accepted size reaches the function"
    );

    let over = "x".repeat(4096);
    let r = client()
        .post(format!("{}/lab-feed", s.base))
        .header("content-type", "application/json")
        .header("x-request-id", "big-1")
        .body(over.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200, "daprd must not redeliver it forever");
    let got = s.rejected();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "lab-feed-rejected");
    assert_eq!(got[0].1["payload"], over.as_str(), "kept whole");
    assert_eq!(got[0].1["request_id"], "big-1");
    let (code, diagnostics) = first_issue(&got[0].1["outcome"]);
    assert_eq!(code, "too-costly");
    assert!(
        diagnostics.contains("too large") && diagnostics.contains("4096 bytes"),
        "{diagnostics}"
    );

    // The same on `/` as a CloudEvent, recorded as received; the FHIR route keeps its 413.
    let r = client()
        .post(format!("{}/", s.base))
        .header("ce-specversion", "1.0")
        .header("ce-id", "ce-big")
        .header("ce-type", "t")
        .header("ce-source", "s")
        .body(over.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let got = s.rejected();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].1["request_id"], "ce-big");
    assert_eq!(first_issue(&got[1].1["outcome"]).0, "too-costly");
    assert_eq!(s.post("/fhir", over).await.status().as_u16(), 413);
    assert_eq!(s.rejected().len(), 2, "the FHIR route records nothing");
}

#[tokio::test]
async fn a_binding_payload_beyond_the_read_limit_is_acked_with_its_head_and_its_size_recorded() {
    use base64::Engine;
    let s = spawn(|b| b.max_body(1024).max_delivery(1024).binding_read_limit(8192)).await;
    let r = s.post("/lab-feed", vec![0xff_u8; 100_000]).await;
    assert_eq!(r.status().as_u16(), 200);
    let got = s.rejected();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].1.get("payload").is_none(), "not UTF-8: base64 only");
    let head = base64::engine::general_purpose::STANDARD
        .decode(got[0].1["payload_base64"].as_str().expect("base64"))
        .expect("valid base64");
    assert_eq!(head, vec![0xff_u8; 8192], "the head up to the read limit");
    let (code, diagnostics) = first_issue(&got[0].1["outcome"]);
    assert_eq!(code, "too-costly");
    assert!(
        diagnostics.contains("100000 bytes") && diagnostics.contains("first 8192 bytes"),
        "{diagnostics}"
    );
}

#[tokio::test]
async fn when_the_lane_refuses_a_record_that_large_for_good_the_first_mib_is_recorded() {
    let s = spawn(|b| b.max_body(1024).max_delivery(1024).binding_read_limit(4 << 20)).await;
    *s.lane.max_record.lock().expect("lock") = Some(3 << 19); // 1.5 MiB
    let r = s.post("/lab-feed", "y".repeat(2 << 20)).await;
    assert_eq!(r.status().as_u16(), 200);
    let got = s.rejected();
    assert_eq!(got.len(), 1, "{}", got.len());
    assert_eq!(got[0].1["payload"].as_str().map(str::len), Some(1 << 20));
    let note = got[0].1["outcome"]["issue"][1]["diagnostics"]
        .as_str()
        .expect("a second issue");
    assert!(note.contains("first 1048576 of 2097152 bytes"), "{note}");

    // A refusal that is not for good (the lane is down) is still not acked.
    *s.lane.broken.lock().expect("lock") = true;
    assert_eq!(s.post("/lab-feed", "y".repeat(2 << 20)).await.status().as_u16(), 503);
}

#[tokio::test]
async fn a_binding_body_that_does_not_arrive_in_time_gets_503_and_the_fhir_route_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = spawn(|b| b.body_timeout(Duration::from_millis(200))).await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    for (path, expected) in [("/lab-feed", "HTTP/1.1 503"), ("/fhir", "HTTP/1.1 408")] {
        let mut raw = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let head = format!("POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: 100\r\n\r\n0123456789");
        raw.write_all(head.as_bytes()).await.expect("write");
        let mut answer = vec![0_u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), raw.read(&mut answer))
            .await
            .expect("answered")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(answer.starts_with(expected), "{path}: {answer}");
    }
    assert!(
        s.rejected().is_empty(),
        "an unread delivery is redelivered, not rejected"
    );
}

#[tokio::test]
async fn binding_routes_refuse_other_methods_with_405() {
    let s = spawn(|b| b).await;
    let r = client().get(format!("{}/lab-feed", s.base)).send().await.expect("send");
    assert_eq!(r.status().as_u16(), 405);
    let r = client()
        .delete(format!("{}/lab-feed", s.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 405);
}

#[tokio::test]
async fn cloudevents_in_binary_and_structured_mode_reach_the_default_binding() {
    let s = spawn(|b| b).await;
    let r = client()
        .post(format!("{}/", s.base))
        .header("ce-specversion", "1.0")
        .header("ce-id", "1")
        .header("ce-type", "dev.knative.rabbitmq.event")
        .header("ce-source", "test")
        .body("bad")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let structured = json!({"specversion": "1.0", "id": "2", "type": "t", "source": "s", "data": "bad"});
    let r = client()
        .post(format!("{}/", s.base))
        .header("content-type", "application/cloudevents+json")
        .body(structured.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let got = s.lane.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 2, "both reached the function and were rejected: {got:?}");
    assert_eq!(got[0].1["request_id"], "1");
    let r = client()
        .post(format!("{}/", s.base))
        .header("ce-specversion", "1.0")
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status().as_u16(),
        200,
        "a CloudEvent without ce-id is malformed: recorded and acked"
    );
    let got = s.lane.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].1["payload"], "x");
    let reason = got[2].1["outcome"]["issue"][0]["diagnostics"].as_str().expect("text");
    assert!(reason.contains("ce-id"), "{reason}");
}

#[tokio::test]
async fn metrics_count_requests_and_failures_by_kind() {
    let s = spawn(|b| b).await;
    s.post("/lab-feed", "bad").await;
    let text = client()
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(r#"wardwatch_failures_total{function="echo",kind="invalid"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"wardwatch_rejected_total{lane="lab-feed-rejected"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let mut s = spawn(|b| b).await;
    let url = format!("{}/fhir", s.base);
    let pending = tokio::spawn(async move { client().post(url).body("slow").send().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = s.stop.take().expect("stop").send(());
    let r = pending.await.expect("join").expect("the in-flight request is answered");
    assert_eq!(r.status(), 200);
    s.done.await.expect("join").expect("server stopped cleanly");
    assert!(
        client().get(format!("{}/healthz", s.base)).send().await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn garbage_on_the_socket_does_not_take_the_server_down() {
    use tokio::io::AsyncWriteExt;
    let s = spawn(|b| b).await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut raw = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    raw.write_all(b"\x00\x01NOT HTTP\r\n\r\n").await.expect("write");
    drop(raw);
    let r = client().get(format!("{}/healthz", s.base)).send().await.expect("send");
    assert_eq!(r.status(), 200);
}
