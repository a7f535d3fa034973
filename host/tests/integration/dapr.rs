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

async fn send(host: &Host, path: &str, body: &Value) -> u16 {
    reqwest::Client::new()
        .post(host.url(path))
        .header("content-type", "application/json")
        .header("dapr-api-token", APP_TOKEN)
        .body(body.to_string())
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

#[tokio::test]
async fn through_the_sidecar_api_state_and_bindings_flow_with_tokens_both_ways() {
    let (sidecar, port) = spawn_sidecar().await;
    let port = port.to_string();
    let host = Host::spawn(config(&[
        ("DAPR_HTTP_PORT", &port),
        ("DAPR_API_TOKEN", SIDECAR_TOKEN),
        ("APP_API_TOKEN", APP_TOKEN),
    ]))
    .await;

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
        admissions[0]["kind"], "admitted",
        "the binding's data is the event itself, not a string"
    );
    assert!(sidecar.state.get("census").await.expect("get").is_some());

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
    assert_eq!(alerts[0]["rule"], "critical-high:potassium");

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
