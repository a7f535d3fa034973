//! The handler shape: an event in, an output or a classified failure out.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use wardwatch_domain::Issue;
use wardwatch_domain::ports::PortError;

/// How an event reached the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A client's HTTP request (the FHIR endpoint): the output goes back to the client.
    Http,
    /// daprd delivering an input-binding message.
    DaprBinding,
    /// A CloudEvent over HTTP (Knative Eventing).
    CloudEvent,
    /// The runtime's own RabbitMQ consumer.
    Amqp,
    /// The in-process bus of `wardwatch up`.
    Memory,
    /// An HL7 v2 message over MLLP/TCP (`wardwatch up --mllp`).
    Mllp,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::DaprBinding => "dapr-binding",
            Trigger::CloudEvent => "cloudevent",
            Trigger::Amqp => "amqp",
            Trigger::Memory => "memory",
            Trigger::Mllp => "mllp",
        }
    }
}

/// One invocation's context.
#[derive(Debug, Clone)]
pub struct Context {
    pub request_id: String,
    pub trigger: Trigger,
    /// The binding / queue name, or the HTTP path for the HTTP trigger.
    pub source: String,
    /// The HTTP method for the HTTP trigger.
    pub method: Option<String>,
    pub content_type: Option<String>,
    pub received_at: DateTime<Utc>,
    /// The HTTP trigger's query string (without `?`), when there is one.
    pub query: Option<String>,
    /// The HTTP trigger's request headers a function may act on ([`HTTP_HEADERS`]), names in
    /// lower case. Empty for queue triggers.
    pub headers: Vec<(String, String)>,
}

/// The request headers the HTTP trigger hands a function: conditional requests and content
/// negotiation (FHIR's `If-Match`, `If-None-Exist`, `If-None-Match`, `Prefer`, `Accept`), and
/// the base URL a proxy says the client used.
pub const HTTP_HEADERS: &[&str] = &[
    "if-match",
    "if-none-exist",
    "if-none-match",
    "if-modified-since",
    "prefer",
    "accept",
    "x-forwarded-proto",
    "x-forwarded-host",
    "host",
];

impl Context {
    /// A request header the trigger handed over (lower-case `name`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A payload and its context.
#[derive(Debug, Clone)]
pub struct Event {
    pub payload: Bytes,
    pub context: Context,
}

impl Event {
    /// An event with a fresh request id, received now.
    pub fn new(trigger: Trigger, source: &str, payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            context: Context {
                request_id: uuid::Uuid::new_v4().to_string(),
                trigger,
                source: source.to_owned(),
                method: (trigger == Trigger::Http).then(|| "POST".to_owned()),
                content_type: None,
                received_at: Utc::now(),
                query: None,
                headers: Vec::new(),
            },
        }
    }
}

/// What a function answers. Only the HTTP trigger sends it back; queue triggers just ack.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub status: u16,
    pub body: Option<serde_json::Value>,
    /// Response headers (`Location`, `ETag`, `Last-Modified`, …).
    pub headers: Vec<(&'static str, String)>,
}

impl Output {
    pub fn ok(body: serde_json::Value) -> Self {
        Self {
            status: 200,
            body: Some(body),
            headers: Vec::new(),
        }
    }
    pub fn created(body: serde_json::Value) -> Self {
        Self {
            status: 201,
            body: Some(body),
            headers: Vec::new(),
        }
    }
    pub fn accepted() -> Self {
        Self {
            status: 200,
            body: None,
            headers: Vec::new(),
        }
    }
    /// Another status, same body and headers.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    /// No body (`Prefer: return=minimal`).
    pub fn without_body(mut self) -> Self {
        self.body = None;
        self
    }
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// The runtime's single failure classification; every function error maps onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The input is wrong and always will be: 4xx, rejected lane.
    Invalid,
    /// Something the input refers to does not exist: 404, rejected lane.
    NotFound,
    /// A concurrent change won: 409 (queue triggers treat it like Invalid).
    Conflict,
    /// A backend is unreachable: 503, requeue, nothing acked.
    Transient,
    /// Our own fault: 500, rejected lane so it can be replayed once fixed.
    Bug,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Invalid => "invalid",
            FailureKind::NotFound => "not-found",
            FailureKind::Conflict => "conflict",
            FailureKind::Transient => "transient",
            FailureKind::Bug => "bug",
        }
    }
    /// The FHIR issue-type code for an OperationOutcome.
    pub fn issue_code(self) -> &'static str {
        match self {
            FailureKind::Invalid => "invalid",
            FailureKind::NotFound => "not-found",
            FailureKind::Conflict => "conflict",
            FailureKind::Transient => "transient",
            FailureKind::Bug => "exception",
        }
    }
}

/// A classified failure. `message` and `issues` are for the sender of the input (they describe
/// the input, never our internals); `detail` is internal and only logged.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    pub issues: Vec<Issue>,
    /// An HTTP status more precise than the kind's default (413, 415, 422).
    pub status: Option<u16>,
    pub detail: Option<String>,
    /// For a 405: the methods the resource does take (the `Allow` header).
    pub allow: Option<&'static str>,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            issues: Vec::new(),
            status: None,
            detail: None,
            allow: None,
        }
    }
    /// A 405 naming the methods that are allowed.
    pub fn method_not_allowed(message: impl Into<String>, allow: &'static str) -> Self {
        let mut f = Self::invalid(message).with_status(405);
        f.allow = Some(allow);
        f
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Invalid, message)
    }
    pub fn with_issues(mut self, issues: Vec<Issue>) -> Self {
        self.issues = issues;
        self
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    pub fn http_status(&self) -> u16 {
        self.status.unwrap_or(match self.kind {
            FailureKind::Invalid => 400,
            FailureKind::NotFound => 404,
            FailureKind::Conflict => 409,
            FailureKind::Transient => 503,
            FailureKind::Bug => 500,
        })
    }
    /// The OperationOutcome told to the client or recorded on the rejected lane.
    pub fn outcome(&self) -> serde_json::Value {
        wardwatch_domain::outcome::operation_outcome(self.kind.issue_code(), &self.message, &self.issues)
    }
}

impl From<PortError> for Failure {
    fn from(e: PortError) -> Self {
        match e {
            PortError::Unavailable(_) => {
                Failure::new(FailureKind::Transient, "a backend is unavailable; try again later")
                    .with_detail(e.to_string())
            }
            PortError::Conflict => {
                Failure::new(FailureKind::Transient, "concurrent update; try again").with_detail(e.to_string())
            }
            PortError::Corrupt(_) => {
                Failure::new(FailureKind::Bug, "stored data could not be read").with_detail(e.to_string())
            }
        }
    }
}

/// A function handler. Native async-in-trait with an explicit `Send` bound.
pub trait Function: Send + Sync + 'static {
    /// Kebab-case name used in logs and metrics (`admit`, `ingest-lab`, …).
    fn name(&self) -> &'static str;
    fn call(&self, event: Event) -> impl Future<Output = Result<Output, Failure>> + Send;
    /// Whether the function's backends answer (for `/readyz`). The error names the backend.
    fn ready(&self) -> impl Future<Output = Result<(), String>> + Send;
    /// Slow one-off preparation (compiling validators), run off the request path at start-up.
    fn prepare(&self) {}
}

/// A boxed, sendable future (object-safe traits such as [`crate::RejectLane`] return one).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Object-safe twin of [`Function`], so one server can route to several functions.
pub(crate) trait DynFunction: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn call(&self, event: Event) -> BoxFuture<'_, Result<Output, Failure>>;
    fn ready(&self) -> BoxFuture<'_, Result<(), String>>;
    fn prepare(&self);
}

impl<F: Function> DynFunction for F {
    fn name(&self) -> &'static str {
        Function::name(self)
    }
    fn call(&self, event: Event) -> BoxFuture<'_, Result<Output, Failure>> {
        Box::pin(Function::call(self, event))
    }
    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(Function::ready(self))
    }
    fn prepare(&self) {
        Function::prepare(self)
    }
}
