//! The Dapr side, without daprd: a fake sidecar on port 0 that checks the exact paths, bodies
//! and headers of the Dapr HTTP API (shared/docs/dapr-knative.md §5, facts 11, 12, 15, 20), with
//! Dapr's state semantics behind it; and this test playing daprd's deliveries to the app.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use wardwatch_adapters::MemoryStateStore;
use wardwatch_domain::ports::{PortError, StateStore};

use crate::helpers::{Host, config, eventually, fixture};

const SIDECAR_TOKEN: &str = "sidecar-token";
const APP_TOKEN: &str = "app-token";

#[derive(Clone, Default)]
struct Sidecar {
    state: MemoryStateStore,
    /// (method, path) of every call.
    calls: Arc<Mutex<Vec<(String, String)>>>,
    /// (binding, body) of every output-binding call.
    bindings: Arc<Mutex<Vec<(String, Value)>>>,
    /// Calls without the right `dapr-api-token`.
    unauthorised: Arc<Mutex<u32>>,
}

fn reply(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    r
}

impl Sidecar {
    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        let path = parts.uri.path().to_owned();
        self.calls
            .lock()
            .expect("lock")
            .push((parts.method.to_string(), path.clone()));
        if parts.headers.get("dapr-api-token").and_then(|v| v.to_str().ok()) != Some(SIDECAR_TOKEN) {
            *self.unauthorised.lock().expect("lock") += 1;
            return reply(401, "");
        }
        let store = "/v1.0/state/statestore";
        // daprd's answer for a store it does not know (misspelt, not loaded, app not in the
        // component's scopes): 400 with ERR_STATE_STORE_NOT_FOUND (dapr-knative.md §5).
        if let Some(rest) = path.strip_prefix("/v1.0/state/") {
            let name = rest.split('/').next().unwrap_or_default();
            if name != "statestore" {
                return reply(
                    400,
                    format!(
                        r#"{{"errorCode":"ERR_STATE_STORE_NOT_FOUND","message":"state store {name} is not found"}}"#
                    ),
                );
            }
        }
        match (parts.method.as_str(), path.as_str()) {
            ("GET", "/v1.0/healthz") => reply(204, ""),
            ("GET", p) if p.starts_with(&format!("{store}/")) => {
                let key = percent_decode(&p[store.len() + 1..]);
                match self.state.get(&key).await.expect("get") {
                    Some(v) => {
                        let mut r = reply(200, v.data);
                        r.headers_mut().insert("ETag", v.etag.parse().expect("etag"));
                        r
                    }
                    None => reply(204, ""),
                }
            }
            ("POST", p) if p == store => {
                let items: Value = serde_json::from_slice(&body).expect("save body is JSON");
                for item in items.as_array().expect("save body is an array") {
                    let key = item["key"].as_str().expect("key");
                    assert!(
                        !item["value"].is_string(),
                        "values are JSON values, not strings: {item}"
                    );
                    let etag = item.get("etag").and_then(Value::as_str);
                    if let Some(e) = etag
                        && e.parse::<i64>().is_err()
                    {
                        return reply(400, r#"{"errorCode":"ERR_MALFORMED_REQUEST"}"#);
                    }
                    match self.state.set(key, item["value"].to_string().as_bytes(), etag).await {
                        Ok(()) => {}
                        Err(PortError::Conflict) => return reply(409, r#"{"errorCode":"ERR_STATE_SAVE"}"#),
                        Err(e) => panic!("{e}"),
                    }
                }
                reply(204, "")
            }
            ("POST", p) if p.starts_with("/v1.0/bindings/") => {
                let call: Value = serde_json::from_slice(&body).expect("binding body is JSON");
                assert_eq!(call["operation"], "create", "{call}");
                self.bindings
                    .lock()
                    .expect("lock")
                    .push((p["/v1.0/bindings/".len()..].to_owned(), call["data"].clone()));
                reply(204, "")
            }
            _ => reply(404, r#"{"errorCode":"ERR_NOT_FOUND"}"#),
        }
    }

    fn binding(&self, name: &str) -> Vec<Value> {
        self.bindings
            .lock()
            .expect("lock")
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf8")
}

async fn spawn_sidecar() -> (Sidecar, u16) {
    let sidecar = Sidecar::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let s = sidecar.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let s = s.clone();
                    async move { Ok::<_, Infallible>(s.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (sidecar, port)
}

/// Deliver `body` as daprd does: `POST`, `Content-Type: application/json` whatever the bytes,
/// and the app token.
async fn send_raw(host: &Host, path: &str, body: impl Into<reqwest::Body>) -> u16 {
    reqwest::Client::new()
        .post(host.url(path))
        .header("content-type", "application/json")
        .header("dapr-api-token", APP_TOKEN)
        .body(body)
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

async fn send(host: &Host, path: &str, body: &Value) -> u16 {
    send_raw(host, path, body.to_string()).await
}

/// The host on a fake sidecar, with tokens both ways; `store` is its `DAPR_STATE_STORE`.
async fn spawn_on_sidecar(store: &str) -> (Sidecar, Host) {
    let (sidecar, port) = spawn_sidecar().await;
    let port = port.to_string();
    let host = Host::spawn(config(&[
        ("DAPR_HTTP_PORT", &port),
        ("DAPR_API_TOKEN", SIDECAR_TOKEN),
        ("APP_API_TOKEN", APP_TOKEN),
        ("DAPR_STATE_STORE", store),
    ]))
    .await;
    (sidecar, host)
}

/// `/readyz` as a probe with the app token sees it: status and body.
async fn readyz(host: &Host) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(host.url("/readyz"))
        .header("dapr-api-token", APP_TOKEN)
        .send()
        .await
        .expect("readyz");
    (r.status().as_u16(), r.json().await.expect("json"))
}

/// Every output-binding call to a `-rejected` lane.
fn rejected_calls(sidecar: &Sidecar) -> Vec<(String, Value)> {
    sidecar
        .bindings
        .lock()
        .expect("lock")
        .iter()
        .filter(|(n, _)| n.ends_with("-rejected"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn through_the_sidecar_api_state_and_bindings_flow_with_tokens_both_ways() {
    let (sidecar, host) = spawn_on_sidecar("statestore").await;
    let (status, body) = readyz(&host).await;
    assert_eq!(status, 200, "the sidecar knows the store: ready ({body})");

    // daprd's subscription probe and a call without the app token.
    let options = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, host.url("/lab-feed"))
        .header("dapr-api-token", APP_TOKEN)
        .send()
        .await
        .expect("options");
    assert_eq!(options.status(), 200);
    let anonymous = reqwest::Client::new()
        .post(host.url("/fhir"))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(anonymous.status(), 401);

    assert_eq!(
        send(&host, "/fhir", &fixture("examples/admission-bundle.json")).await,
        200
    );
    let admissions = sidecar.binding("admissions");
    assert_eq!(admissions.len(), 1);
    assert_eq!(
        admissions[0]["type"], "admitted",
        "the binding's data is the event itself, not a string"
    );
    assert!(
        sidecar.state.keys().iter().any(|k| k.starts_with("record-")),
        "the patient record went through the state API"
    );

    // daprd delivers lab-feed; the app stores the result through the sidecar and calls the
    // lab-resulted output binding; this test plays daprd delivering that to evaluate-alert.
    assert_eq!(
        send(&host, "/lab-feed", &fixture("examples/potassium-critical.json")).await,
        200
    );
    let resulted = sidecar.binding("lab-resulted");
    assert_eq!(resulted.len(), 1);
    assert_eq!(send(&host, "/lab-resulted", &resulted[0]).await, 200);
    let alerts = sidecar.binding("alerts");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["type"], "alert-raised");

    // A bad delivery goes to the rejected lane through the sidecar, and is acked.
    assert_eq!(
        send(&host, "/lab-feed", &json!({"resourceType": "Observation"})).await,
        200
    );
    let rejected = eventually(std::time::Duration::from_secs(5), || async {
        let r = sidecar.binding("lab-feed-rejected");
        (!r.is_empty()).then_some(r)
    })
    .await
    .expect("rejected lane");
    assert_eq!(rejected[0]["outcome"]["resourceType"], "OperationOutcome");

    assert_eq!(
        *sidecar.unauthorised.lock().expect("lock"),
        0,
        "every call to the sidecar carried DAPR_API_TOKEN"
    );
    let calls = sidecar.calls.lock().expect("lock").clone();
    assert!(
        calls.iter().all(|(m, p)| p.starts_with("/v1.0/state/statestore")
            || p.starts_with("/v1.0/bindings/")
            || (m == "GET" && p == "/v1.0/healthz")),
        "{calls:?}"
    );
    host.stop().await;
}

#[tokio::test]
async fn a_daprd_delivery_of_5_mib_is_stored_and_one_over_16_mib_is_acked_and_recorded_as_too_large() {
    let (sidecar, host) = spawn_on_sidecar("statestore").await;
    // A lab result with a long report (5 MiB: over daprd's default 4 MB, within MAX_DELIVERY_BYTES).
    let mut long = fixture("examples/potassium-critical.json");
    long["note"] = json!([{"text": "y".repeat(5 << 20)}]);
    let long = long.to_string();
    assert_eq!(send_raw(&host, "/lab-feed", long).await, 200);
    assert!(sidecar.binding("lab-feed-rejected").is_empty(), "stored, not refused");
    assert_eq!(sidecar.binding("lab-resulted").len(), 1, "and announced");

    // A well-formed Observation, only too large (MAX_DELIVERY_BYTES is 16 MiB by default).
    let text = "x".repeat(17 << 20);
    let body = json!({"resourceType": "Observation", "status": "final", "note": [{"text": text}]}).to_string();
    assert!(body.len() > 17 << 20);
    assert_eq!(send_raw(&host, "/lab-feed", body.clone()).await, 200);

    let rejected = sidecar.binding("lab-feed-rejected");
    assert_eq!(rejected.len(), 1, "recorded once");
    let issue = &rejected[0]["outcome"]["issue"][0];
    assert_eq!(issue["code"], "too-costly", "{issue}");
    let diagnostics = issue["diagnostics"].as_str().expect("diagnostics");
    assert!(
        diagnostics.contains("too large") && diagnostics.contains(&format!("{} bytes", body.len())),
        "{diagnostics}"
    );
    // Too large for a lane message: the lane gets the first MiB, the state store keeps it whole.
    assert_eq!(rejected[0]["payload"].as_str().map(str::len), Some(1 << 20));
    assert_eq!(rejected[0]["truncated_from"], body.len());
    assert_eq!(rejected[0]["lane"], "lab-feed");
    let listed = host.get_json("/api/rejected").await;
    let item = &listed["rejected"][0];
    assert_eq!(
        (item["bytes"].as_u64(), item["replayable"].as_bool()),
        (Some(body.len() as u64), Some(true))
    );
    let kept = host
        .get_json(&format!("/api/rejected/{}", item["handle"].as_str().expect("handle")))
        .await;
    assert_eq!(kept["payload"].as_str().map(str::len), Some(body.len()), "kept whole");
    // The function never saw it: nothing more published on.
    assert_eq!(sidecar.binding("lab-resulted").len(), 1);
    host.stop().await;
}

#[tokio::test]
async fn a_malformed_daprd_delivery_is_acked_and_recorded_on_the_rejected_lane() {
    let (sidecar, host) = spawn_on_sidecar("statestore").await;
    let not_json = r#"{"resourceType": "Observation", "status": "#;
    assert_eq!(send_raw(&host, "/lab-feed", not_json).await, 200);
    let not_utf8: Vec<u8> = vec![0xff, 0xfe, b'{', 0x80];
    assert_eq!(send_raw(&host, "/lab-feed", not_utf8).await, 200);

    let rejected = sidecar.binding("lab-feed-rejected");
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0]["payload"], not_json, "kept as received");
    assert_eq!(rejected[0]["outcome"]["resourceType"], "OperationOutcome");
    assert_eq!(rejected[1]["payload_base64"], "//57gA==", "not UTF-8: base64");
    assert!(rejected[1].get("payload").is_none());
    host.stop().await;
}

#[tokio::test]
async fn with_a_state_store_the_sidecar_does_not_know_deliveries_get_503_readyz_says_why_and_nothing_is_rejected() {
    // DAPR_STATE_STORE misspelt: the fake sidecar, like daprd, answers 400 ERR_STATE_STORE_NOT_FOUND.
    let (sidecar, host) = spawn_on_sidecar("statestor").await;

    let (status, body) = readyz(&host).await;
    assert_eq!(status, 503, "{body}");
    let reason = body["reason"].as_str().expect("a reason").to_owned();
    for needle in ["state store", "`statestor`", "DAPR_STATE_STORE", "scopes"] {
        assert!(reason.contains(needle), "the reason should say {needle}: {reason}");
    }
    assert!(
        !reason.contains(SIDECAR_TOKEN) && !reason.contains(APP_TOKEN),
        "{reason}"
    );

    // A good delivery is not the message's fault: redelivered (503), never rejected.
    assert_eq!(
        send(&host, "/lab-feed", &fixture("examples/potassium-critical.json")).await,
        503
    );
    let calls = sidecar.calls.lock().expect("lock").clone();
    assert!(
        calls
            .iter()
            .any(|(m, p)| m == "GET" && p.starts_with("/v1.0/state/statestor/")),
        "the delivery did reach the sidecar's state API: {calls:?}"
    );
    assert!(rejected_calls(&sidecar).is_empty(), "{:?}", rejected_calls(&sidecar));
    // The HTTP trigger says the same: 503 with Retry-After, not a 4xx or 500.
    let r = reqwest::Client::new()
        .post(host.url("/fhir"))
        .header("content-type", "application/fhir+json")
        .header("dapr-api-token", APP_TOKEN)
        .body(fixture("examples/admission-bundle.json").to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(rejected_calls(&sidecar).is_empty());
    assert_eq!(*sidecar.unauthorised.lock().expect("lock"), 0);
    host.stop().await;
}
