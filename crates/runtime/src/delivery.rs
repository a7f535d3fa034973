//! One invocation, whatever the trigger: span, metrics, a single log line; and for queued
//! deliveries the ack / reject / retry decision.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use chrono::Utc;
use tracing::{Instrument, debug, error, info, info_span, warn};
use wardwatch_domain::events::Rejected;
use wardwatch_domain::ports::{PortError, Publisher};

use crate::function::{BoxFuture, Context, DynFunction, Event, Failure, FailureKind, Output, Trigger};
use crate::metrics::Metrics;

/// Where permanently failed deliveries are recorded (`<lane>-rejected`). Object-safe, and
/// implemented by every [`Publisher`].
pub trait RejectLane: Send + Sync + 'static {
    fn record<'a>(&'a self, lane: &'a str, payload: Vec<u8>) -> BoxFuture<'a, Result<(), PortError>>;
}

impl<P: Publisher> RejectLane for P {
    fn record<'a>(&'a self, lane: &'a str, payload: Vec<u8>) -> BoxFuture<'a, Result<(), PortError>> {
        Box::pin(async move { self.publish(lane, &payload).await })
    }
}

/// Run one invocation under its span, count it, and log its outcome once. Logs carry ids,
/// kinds and JSON locations, never payload contents or client-facing messages.
pub(crate) async fn invoke(function: &dyn DynFunction, metrics: &Metrics, event: Event) -> Result<Output, Failure> {
    let name = function.name();
    let trigger = event.context.trigger.as_str();
    let span = info_span!(
        "invoke",
        function = name,
        trigger,
        source = %event.context.source,
        request_id = %event.context.request_id,
    );
    async move {
        let timer = metrics.start(name, trigger);
        let result = function.call(event).await;
        match &result {
            Ok(output) => debug!(status = output.status, "handled"),
            Err(failure) => {
                metrics.failure(name, failure.kind.as_str());
                let locations: Vec<&str> = failure.issues.iter().map(|i| i.location.as_str()).collect();
                match failure.kind {
                    FailureKind::Transient => warn!(
                        kind = "transient",
                        detail = failure.detail.as_deref().unwrap_or(""),
                        "backend unavailable"
                    ),
                    FailureKind::Bug => error!(
                        kind = "bug",
                        detail = failure.detail.as_deref().unwrap_or(""),
                        "internal error"
                    ),
                    kind => info!(kind = kind.as_str(), ?locations, "input refused"),
                }
            }
        }
        timer.finish();
        result
    }
    .instrument(span)
    .await
}

/// A sender's id for the request (`x-request-id`, CloudEvent `id`, AMQP `message-id`) when it
/// is short printable ASCII — it is logged — else a new UUID.
pub(crate) fn request_id_or_new(given: Option<&str>) -> String {
    given
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// What to tell the queue about a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Processed: ack (HTTP 200).
    Done,
    /// Permanently failed and recorded on the rejected lane: ack (HTTP 200), nothing loops.
    Rejected,
    /// Transient failure (or the rejected lane itself is unreachable): do not ack; redeliver.
    Retry,
}

/// Delivers queued payloads for one binding to its function. Cheap to clone.
#[derive(Clone)]
pub struct Deliverer {
    pub(crate) binding: Arc<str>,
    pub(crate) function: Arc<dyn DynFunction>,
    pub(crate) rejects: Arc<dyn RejectLane>,
    pub(crate) metrics: Metrics,
}

impl Deliverer {
    pub fn binding(&self) -> &str {
        &self.binding
    }

    pub async fn deliver(&self, payload: Bytes, trigger: Trigger, request_id: Option<String>) -> Disposition {
        let request_id = request_id_or_new(request_id.as_deref());
        let event = Event {
            payload: payload.clone(),
            context: Context {
                request_id: request_id.clone(),
                trigger,
                source: self.binding.to_string(),
                method: None,
                content_type: None,
                received_at: Utc::now(),
            },
        };
        match invoke(self.function.as_ref(), &self.metrics, event).await {
            Ok(_) => Disposition::Done,
            Err(f) if f.kind == FailureKind::Transient => Disposition::Retry,
            Err(failure) => self.reject(&payload, &failure, request_id).await,
        }
    }

    /// Record `payload` on the rejected lane without calling the function (it could not even
    /// be unwrapped, e.g. a malformed CloudEvent).
    pub(crate) async fn reject_unread(&self, payload: &[u8], failure: &Failure) -> Disposition {
        self.reject(payload, failure, request_id_or_new(None)).await
    }

    async fn reject(&self, payload: &[u8], failure: &Failure, request_id: String) -> Disposition {
        let lane = wardwatch_domain::lanes::rejected(&self.binding);
        let (text, b64) = match std::str::from_utf8(payload) {
            Ok(t) => (Some(t.to_owned()), None),
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(payload))),
        };
        let record = Rejected {
            lane: self.binding.to_string(),
            received_at: Utc::now(),
            request_id: request_id.clone(),
            outcome: failure.outcome(),
            payload: text,
            payload_base64: b64,
        };
        let bytes = match serde_json::to_vec(&record) {
            Ok(b) => b,
            Err(_) => return Disposition::Retry,
        };
        match self.rejects.record(&lane, bytes).await {
            Ok(()) => {
                self.metrics.rejected(&lane);
                info!(%request_id, lane = %lane, kind = failure.kind.as_str(), "delivery recorded on the rejected lane");
                Disposition::Rejected
            }
            Err(e) => {
                warn!(%request_id, lane = %lane, error = %e, "rejected lane unavailable: delivery will be retried");
                Disposition::Retry
            }
        }
    }
}
