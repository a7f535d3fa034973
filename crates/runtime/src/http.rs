//! The HTTP server: routes, the daprd → app contract, the FHIR trigger, probes and metrics.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | always 200 (no token: daprd's probe does not send one) |
//! | `GET /readyz` | 200 when every function's backends answer, else 503 |
//! | `GET /metrics` | Prometheus text |
//! | `<any method> <fhir prefix>[/…]` | the HTTP trigger (method, path, query and the conditional / negotiation headers of [`crate::function::HTTP_HEADERS`] handed over): the function's output with its headers, or an OperationOutcome |
//! | `GET <fhir prefix>/<type>` | a read [`Endpoint`] mounted there (`/fhir/Observation` search) |
//! | `OPTIONS /<binding>` | 200: daprd's subscription probe |
//! | `POST /<binding>` | a Dapr input-binding delivery (or a CloudEvent): `200` ack, `503` retry |
//! | `POST /` | a CloudEvent for the default binding |
//! | other prefixes | [`Endpoint`]s such as the board's read API |
//!
//! Request bodies: the FHIR route and the endpoints take at most the accepted size
//! (`MAX_BODY_BYTES`) and answer 413 beyond it. A binding delivery is answered `200` or `503`
//! and nothing else, since daprd redelivers anything else forever (a 401 for a wrong
//! `dapr-api-token` is a misconfiguration, not a delivery). So a binding route reads more: a
//! payload over the accepted size is recorded whole on `<binding>-rejected` (`too-costly`) and
//! acked, up to the route's read limit (16 × the accepted size: 64 MiB by default); a payload
//! beyond that is still read to its end, so that the `200` reaches daprd on a clean connection,
//! but only its first MiB is kept, with its size in the OperationOutcome. A body that does not
//! arrive within the body timeout (30 s) gets `503`: daprd redelivers it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};
use wardwatch_domain::outcome::operation_outcome;

use crate::cloudevents;
use crate::config::Secret;
use crate::delivery::{Deliverer, Disposition, RECORD_HEAD_BYTES, RejectLane, invoke, request_id_or_new, utf8_head};
use crate::function::{BoxFuture, Context, DynFunction, Event, Failure, Function, Trigger};
use crate::metrics::Metrics;

/// How long a client may take to send a request body (headers: 30 s too, in `serve`).
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The accepted request body size unless set (`MAX_BODY_BYTES`): daprd's own limit.
const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// The accepted queue delivery size unless set (`MAX_DELIVERY_BYTES`): a patient's history
/// bundle is often over 1 MiB.
const DEFAULT_MAX_DELIVERY: usize = 16 * 1024 * 1024;

/// Unless set, a binding route reads up to this many times the accepted size (64 MiB by
/// default): a payload in between is kept whole on the rejected lane, one beyond it only in
/// part. It bounds the memory one delivery can take.
const READ_LIMIT_FACTOR: usize = 16;

/// Every response body.
pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn response(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON response.
pub fn json_response(status: u16, value: &Value) -> Response<Body> {
    response(status, "application/json", value.to_string())
}

fn fhir_response(status: u16, value: &Value) -> Response<Body> {
    response(status, "application/fhir+json", value.to_string())
}

fn outcome_response(status: u16, code: &str, message: &str) -> Response<Body> {
    fhir_response(status, &operation_outcome(code, message, &[]))
}

/// A plain HTTP handler mounted under a path prefix (the ward board: its pages and API).
pub trait Endpoint: Send + Sync + 'static {
    fn handle(&self, request: Request<Bytes>) -> BoxFuture<'_, Response<Body>>;
    /// Whether `dapr-api-token` (daprd's token, `APP_API_TOKEN`) guards this endpoint. The
    /// board's routes are for people and programs, not daprd: they answer to access of their own.
    fn behind_app_token(&self) -> bool {
        true
    }
    /// The server stops: end long-lived responses (event streams) so the drain can finish.
    fn close(&self) {}
}

struct Inner {
    fhir: Option<(String, Arc<dyn DynFunction>)>,
    bindings: HashMap<String, Deliverer>,
    cloudevents_default: Option<String>,
    endpoints: Vec<(String, Arc<dyn Endpoint>)>,
    functions: Vec<Arc<dyn DynFunction>>,
    token: Option<Secret>,
    max_body: usize,
    max_delivery: usize,
    binding_read_limit: usize,
    body_timeout: Duration,
    metrics: Metrics,
}

/// The routes one process serves. Cheap to clone.
#[derive(Clone)]
pub struct App(Arc<Inner>);

/// Builds an [`App`].
pub struct AppBuilder {
    fhir: Option<(String, Arc<dyn DynFunction>)>,
    bindings: Vec<(String, Arc<dyn DynFunction>)>,
    cloudevents_default: Option<String>,
    endpoints: Vec<(String, Arc<dyn Endpoint>)>,
    rejects: Arc<dyn RejectLane>,
    token: Option<Secret>,
    max_body: usize,
    max_delivery: usize,
    binding_read_limit: Option<usize>,
    body_timeout: Duration,
    metrics: Metrics,
}

/// A binding delivery's body, read up to the route's read limit.
enum BindingBody {
    /// All of it.
    Whole(Bytes),
    /// More than the read limit: its first bytes, and how many it had in all.
    Beyond { head: Bytes, total: u64 },
    /// It did not arrive within the body timeout, or the connection broke: not acked.
    Unread,
}

/// Read `body` to its end within `timeout`, keeping at most `limit` bytes; beyond `limit` keep
/// only the first `head_len` and count the rest without storing it.
async fn read_binding_body(mut body: Incoming, limit: usize, head_len: usize, timeout: Duration) -> BindingBody {
    let read = async {
        let mut kept: Vec<u8> = Vec::new();
        let mut total: u64 = 0;
        let mut beyond = false;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.ok()?.into_data() else {
                continue; // trailers
            };
            total += data.len() as u64;
            if beyond {
                continue;
            }
            if kept.len() + data.len() <= limit {
                kept.extend_from_slice(&data);
            } else {
                beyond = true;
                kept.truncate(head_len);
                let room = head_len - kept.len();
                kept.extend_from_slice(&data[..room.min(data.len())]);
                kept.shrink_to_fit();
            }
        }
        Some(if beyond {
            BindingBody::Beyond {
                head: kept.into(),
                total,
            }
        } else {
            BindingBody::Whole(kept.into())
        })
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Some(body)) => body,
        Ok(None) | Err(_) => BindingBody::Unread,
    }
}

impl App {
    /// `rejects` records permanently failed deliveries on `<binding>-rejected`.
    pub fn builder(metrics: Metrics, rejects: impl RejectLane) -> AppBuilder {
        AppBuilder {
            fhir: None,
            bindings: Vec::new(),
            cloudevents_default: None,
            endpoints: Vec::new(),
            rejects: Arc::new(rejects),
            token: None,
            max_body: DEFAULT_MAX_BODY,
            max_delivery: DEFAULT_MAX_DELIVERY,
            binding_read_limit: None,
            body_timeout: BODY_TIMEOUT,
            metrics,
        }
    }

    /// The deliverer for a binding (for queue consumers).
    pub fn deliverer(&self, binding: &str) -> Option<Deliverer> {
        self.0.bindings.get(binding).cloned()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Run every function's one-off preparation (blocking: call it from `spawn_blocking`).
    pub fn prepare(&self) {
        for f in &self.0.functions {
            f.prepare();
        }
    }

    /// Whether every function's backends answer; the error names the first that does not.
    pub async fn ready(&self) -> Result<(), String> {
        for f in &self.0.functions {
            f.ready().await.map_err(|e| format!("{}: {e}", f.name()))?;
        }
        Ok(())
    }

    /// Answer one request. Never panics on what a client sends.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_owned();
        if path == "/healthz" && parts.method == Method::GET {
            return response(200, "text/plain", "ok");
        }
        if let Some(token) = &self.0.token
            && self
                .endpoint_for(&parts.method, &path)
                .is_none_or(|e| e.behind_app_token())
        {
            let sent = parts
                .headers
                .get("dapr-api-token")
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            if !bool::from(sent.ct_eq(token.expose().as_bytes())) {
                return outcome_response(401, "security", "missing or wrong dapr-api-token");
            }
        }
        if let Some(binding) = self.binding_target(&parts) {
            let binding = binding.to_owned();
            let limit = self.0.binding_read_limit;
            let read = read_binding_body(body, limit, RECORD_HEAD_BYTES.min(limit), self.0.body_timeout).await;
            let answer = self.binding(&binding, parts, read).await;
            self.0.metrics.served();
            return answer;
        }
        let probe = matches!(path.as_str(), "/readyz" | "/metrics");
        let body = match tokio::time::timeout(self.0.body_timeout, Limited::new(body, self.0.max_body).collect()).await
        {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return outcome_response(
                    413,
                    "too-costly",
                    &format!("request body larger than {} bytes", self.0.max_body),
                );
            }
            Ok(Err(_)) => return outcome_response(400, "incomplete", "the request body could not be read"),
            Err(_) => return outcome_response(408, "timeout", "the request body did not arrive in time"),
        };
        let request = Request::from_parts(parts, body);
        let answer = self.route(request).await;
        if !probe {
            self.0.metrics.served();
        }
        answer
    }

    /// The binding a request delivers to, when it is a delivery (`POST|PUT /<binding>`, or a
    /// CloudEvent `POST /` with a default binding). Mirrors [`App::route`]'s order: the FHIR
    /// prefix wins.
    fn binding_target(&self, parts: &Parts) -> Option<&str> {
        if !matches!(parts.method, Method::POST | Method::PUT) {
            return None;
        }
        let path = parts.uri.path();
        if let Some((prefix, _)) = &self.0.fhir
            && (path == prefix || path.starts_with(&format!("{prefix}/")))
        {
            return None;
        }
        if path == "/" {
            return if parts.method == Method::POST {
                self.0.cloudevents_default.as_deref()
            } else {
                None
            };
        }
        let name = path.trim_start_matches('/');
        self.0.bindings.get_key_value(name).map(|(k, _)| k.as_str())
    }

    async fn route(&self, request: Request<Bytes>) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        match (method.clone(), path.as_str()) {
            (Method::GET, "/readyz") => {
                return match self.ready().await {
                    Ok(()) => json_response(200, &json!({"status": "ready"})),
                    Err(reason) => json_response(503, &json!({"status": "unavailable", "reason": reason})),
                };
            }
            (Method::GET, "/metrics") => {
                return response(200, "text/plain; version=0.0.4; charset=utf-8", self.0.metrics.render());
            }
            _ => {}
        }
        if let Some(endpoint) = self.fhir_read(&method, &path) {
            return endpoint.handle(request).await;
        }
        // A read endpoint's own path inside the FHIR prefix (`/fhir/metadata`, a search) takes
        // GET only: any other method there is 405, not the function's.
        if method != Method::GET
            && self.0.endpoints.iter().any(|(p, _)| *p == path)
            && self.fhir_read(&Method::GET, &path).is_some()
        {
            let mut r = outcome_response(405, "not-supported", &format!("{path} is read with GET"));
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
            return r;
        }
        if let Some((prefix, function)) = &self.0.fhir
            && (path == *prefix || path.starts_with(&format!("{prefix}/")))
        {
            return self.fhir(function.as_ref(), request).await;
        }
        // Deliveries (POST to a binding, CloudEvents on `/`) were answered by `handle`.
        if path == "/" && method == Method::POST {
            return outcome_response(404, "not-found", "no CloudEvents binding is served at /");
        }
        let name = path.trim_start_matches('/');
        if self.0.bindings.contains_key(name) {
            return match method {
                Method::OPTIONS => response(200, "text/plain", ""),
                _ => outcome_response(405, "not-supported", "binding routes take POST (and OPTIONS)"),
            };
        }
        if let Some(endpoint) = self.endpoint_for(&method, &path) {
            return endpoint.handle(request).await;
        }
        outcome_response(404, "not-found", &format!("no route for {method} {path}"))
    }

    /// A read endpoint mounted inside the FHIR prefix (such as `GET /fhir/Observation`): the
    /// GET requests it claims go to it; everything else under the prefix goes to the FHIR
    /// function.
    fn fhir_read(&self, method: &Method, path: &str) -> Option<&Arc<dyn Endpoint>> {
        let (prefix, _) = self.0.fhir.as_ref()?;
        if *method != Method::GET {
            return None;
        }
        let inside = format!("{prefix}/");
        self.0
            .endpoints
            .iter()
            .find(|(p, _)| p.starts_with(&inside) && (path == p || path.starts_with(&format!("{p}/"))))
            .map(|(_, e)| e)
    }

    /// The endpoint a request goes to, unless a FHIR route, a binding or a probe takes it first
    /// (mirrors [`App::route`]).
    fn endpoint_for(&self, method: &Method, path: &str) -> Option<&Arc<dyn Endpoint>> {
        if matches!(path, "/readyz" | "/metrics" | "/healthz") && *method == Method::GET {
            return None;
        }
        if let Some((prefix, _)) = &self.0.fhir
            && (path == prefix || path.starts_with(&format!("{prefix}/")))
        {
            return self.fhir_read(method, path);
        }
        if self.0.bindings.contains_key(path.trim_start_matches('/'))
            || (path == "/" && *method == Method::POST && self.0.cloudevents_default.is_some())
        {
            return None;
        }
        self.0
            .endpoints
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, e)| e)
    }

    /// The server stops taking requests: let endpoints end their long-lived responses.
    pub fn close(&self) {
        for (_, endpoint) in &self.0.endpoints {
            endpoint.close();
        }
    }

    /// The HTTP trigger: call the function and answer with its output or its failure.
    async fn fhir(&self, function: &dyn DynFunction, request: Request<Bytes>) -> Response<Body> {
        let (parts, payload) = request.into_parts();
        let headers = crate::function::HTTP_HEADERS
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), value.to_owned()))
            })
            .collect();
        let event = Event {
            payload,
            context: Context {
                request_id: request_id(&parts.headers),
                trigger: Trigger::Http,
                source: parts.uri.path().to_owned(),
                method: Some(parts.method.to_string()),
                content_type: parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                received_at: Utc::now(),
                query: parts.uri.query().map(str::to_owned),
                headers,
            },
        };
        match invoke(function, &self.0.metrics, event).await {
            Ok(output) => {
                let mut r = match output.body {
                    Some(body) => fhir_response(output.status, &body),
                    None => {
                        let mut r = Response::new(full(Bytes::new()));
                        *r.status_mut() = StatusCode::from_u16(output.status).unwrap_or(StatusCode::OK);
                        r
                    }
                };
                for (name, value) in output.headers {
                    if let Ok(v) = HeaderValue::from_str(&value) {
                        r.headers_mut().append(name, v);
                    }
                }
                r
            }
            Err(failure) => {
                let mut r = fhir_response(failure.http_status(), &failure.outcome());
                if failure.http_status() == 503 {
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                if failure.http_status() == 405 {
                    // Allowed here: what the function says, else POST (the function), and GET
                    // where a read endpoint (the CapabilityStatement, a search) claims the path.
                    // Worked out only for a 405.
                    let allow = failure.allow.unwrap_or_else(|| {
                        if self.fhir_read(&Method::GET, parts.uri.path()).is_some() {
                            "GET, POST"
                        } else {
                            "POST"
                        }
                    });
                    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
                }
                r
            }
        }
    }

    /// A queued delivery over HTTP: daprd's binding call, or a CloudEvent. Answers exactly
    /// `200` (done, or recorded on the rejected lane) or `503` (redeliver).
    async fn binding(&self, name: &str, parts: Parts, body: BindingBody) -> Response<Body> {
        let Some(deliverer) = self.0.bindings.get(name) else {
            return outcome_response(404, "not-found", "unknown binding");
        };
        let is_cloudevent = cloudevents::is_cloudevent(&parts.headers);
        // The sender's id, as far as it can be had without unwrapping the body.
        let sender_id = if is_cloudevent {
            parts.headers.get("ce-id")
        } else {
            parts.headers.get("x-request-id")
        }
        .and_then(|v| v.to_str().ok());
        let body = match body {
            BindingBody::Whole(body) if body.len() <= self.0.max_delivery => body,
            BindingBody::Whole(body) => {
                warn!(
                    binding = name,
                    bytes = body.len(),
                    "delivery larger than the function accepts: recording it on the rejected lane"
                );
                let message = format!(
                    "the payload is too large: {} bytes, and `{name}` accepts at most {} bytes (MAX_DELIVERY_BYTES)",
                    body.len(),
                    self.0.max_delivery
                );
                let outcome = operation_outcome("too-costly", &message, &[]);
                return binding_reply(
                    deliverer
                        .reject_unread(&body, outcome, "too-costly", sender_id, None)
                        .await,
                );
            }
            BindingBody::Beyond { head, total } => {
                warn!(
                    binding = name,
                    bytes = total,
                    "delivery larger than the route reads: recording its head on the rejected lane"
                );
                let head = utf8_head(&head, head.len());
                let message = format!(
                    "the payload is too large: {total} bytes, and `{name}` accepts at most {} bytes \
                     (MAX_DELIVERY_BYTES) and reads at most {} bytes; only its first {} bytes are kept here",
                    self.0.max_delivery,
                    self.0.binding_read_limit,
                    head.len()
                );
                let outcome = operation_outcome("too-costly", &message, &[]);
                return binding_reply(
                    deliverer
                        .reject_unread(
                            head,
                            outcome,
                            "too-costly",
                            sender_id,
                            Some(usize::try_from(total).unwrap_or(usize::MAX)),
                        )
                        .await,
                );
            }
            BindingBody::Unread => {
                warn!(
                    binding = name,
                    "delivery body did not arrive in time or the connection broke: not acked"
                );
                return binding_reply(Disposition::Retry);
            }
        };
        let (payload, trigger, id) = if is_cloudevent {
            match cloudevents::from_http(&parts.headers, body.clone()) {
                Ok(ce) => (ce.data, Trigger::CloudEvent, Some(ce.id)),
                Err(reason) => {
                    // Not even a CloudEvent: recorded as received, so that nothing is lost and
                    // the sender (Knative) does not retry it forever.
                    warn!(
                        binding = name,
                        "malformed CloudEvent: recording it on the rejected lane"
                    );
                    let outcome = Failure::invalid(reason).outcome();
                    return binding_reply(deliverer.reject_unread(&body, outcome, "invalid", None, None).await);
                }
            }
        } else {
            (body, Trigger::DaprBinding, Some(request_id(&parts.headers)))
        };
        binding_reply(deliverer.deliver(payload, trigger, id).await)
    }
}

/// Exactly 200 to ack: with a resiliency policy daprd treats any other 2xx as a failure.
fn binding_reply(disposition: Disposition) -> Response<Body> {
    match disposition {
        Disposition::Done | Disposition::Rejected => response(200, "text/plain", ""),
        Disposition::Retry => {
            let mut r = outcome_response(503, "transient", "a backend is unavailable; redeliver later");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}

fn request_id(headers: &http::HeaderMap) -> String {
    request_id_or_new(headers.get("x-request-id").and_then(|v| v.to_str().ok()))
}

impl AppBuilder {
    /// Serve `function` as the HTTP trigger under `prefix` (e.g. `/fhir`).
    pub fn fhir(mut self, prefix: &str, function: Arc<impl Function>) -> Self {
        let f: Arc<dyn DynFunction> = function;
        self.fhir = Some((prefix.trim_end_matches('/').to_owned(), f));
        self
    }

    /// Deliver binding / queue `name` to `function` (`POST /<name>`, `OPTIONS /<name>`).
    pub fn binding(mut self, name: &str, function: Arc<impl Function>) -> Self {
        let f: Arc<dyn DynFunction> = function;
        self.bindings.push((name.to_owned(), f));
        self
    }

    /// CloudEvents posted to `/` go to this binding.
    pub fn cloudevents_default(mut self, binding: &str) -> Self {
        self.cloudevents_default = Some(binding.to_owned());
        self
    }

    pub fn endpoint(mut self, prefix: &str, endpoint: impl Endpoint) -> Self {
        self.endpoints.push((prefix.to_owned(), Arc::new(endpoint)));
        self
    }

    /// Require `dapr-api-token` on every route but `/healthz`.
    pub fn token(mut self, token: Option<Secret>) -> Self {
        self.token = token;
        self
    }

    /// The largest request body a function accepts (`MAX_BODY_BYTES`): larger gets 413 on the
    /// FHIR route and the rejected lane on a binding route.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The largest queue delivery a binding accepts (`MAX_DELIVERY_BYTES`, default 16 MiB):
    /// larger is recorded on the rejected lane. Separate from the HTTP body limit.
    pub fn max_delivery(mut self, bytes: usize) -> Self {
        self.max_delivery = bytes;
        self
    }

    /// How much of a delivery a binding route reads (default 16 × [`AppBuilder::max_body`]);
    /// never less than the accepted size.
    pub fn binding_read_limit(mut self, bytes: usize) -> Self {
        self.binding_read_limit = Some(bytes);
        self
    }

    /// How long a client may take to send a request body (default 30 s).
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    pub fn build(self) -> App {
        let mut functions: Vec<Arc<dyn DynFunction>> = Vec::new();
        let mut push = |f: &Arc<dyn DynFunction>| {
            if !functions.iter().any(|g| g.name() == f.name()) {
                functions.push(f.clone());
            }
        };
        if let Some((_, f)) = &self.fhir {
            push(f);
        }
        for (_, f) in &self.bindings {
            push(f);
        }
        let bindings = self
            .bindings
            .into_iter()
            .map(|(name, function)| {
                let d = Deliverer {
                    binding: name.as_str().into(),
                    function,
                    rejects: self.rejects.clone(),
                    metrics: self.metrics.clone(),
                };
                (name, d)
            })
            .collect();
        App(Arc::new(Inner {
            fhir: self.fhir,
            bindings,
            cloudevents_default: self.cloudevents_default,
            endpoints: self.endpoints,
            functions,
            token: self.token,
            max_body: self.max_body,
            max_delivery: self.max_delivery,
            binding_read_limit: self
                .binding_read_limit
                .unwrap_or(self.max_body.saturating_mul(READ_LIMIT_FACTOR))
                .max(self.max_body)
                .max(self.max_delivery),
            body_timeout: self.body_timeout,
            metrics: self.metrics,
        }))
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then stop accepting and let in-flight
/// requests finish (at most `drain`). The caller owns the socket and the stop signal.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off rather than spin.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // A response written in more than one segment must not wait for the client's
                // delayed ACK (Nagle): ~1 % of keep-alive requests took 40 ms+ without this.
                if let Err(e) = stream.set_nodelay(true) {
                    debug!(%peer, error = %e, "TCP_NODELAY not set");
                }
                let app = app.clone();
                let service = service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(app.handle(req).await) }
                });
                let conn = http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    app.close();
    info!("no longer accepting connections; draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => info!("drained"),
        () = tokio::time::sleep(drain) => warn!("drain timed out; closing remaining connections"),
    }
    Ok(())
}
