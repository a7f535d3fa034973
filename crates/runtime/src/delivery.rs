//! One invocation, whatever the trigger: span, metrics, a single log line; and for queued
//! deliveries the ack / reject / retry decision.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use chrono::Utc;
use serde_json::{Value, json};
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

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub async fn deliver(&self, payload: Bytes, trigger: Trigger, request_id: Option<String>) -> Disposition {
        self.deliver_told(payload, trigger, request_id).await.0
    }

    /// [`Self::deliver`], and the failure when there was one, for a trigger that answers its
    /// sender (an MLLP ACK says why a message was refused).
    pub async fn deliver_told(
        &self,
        payload: Bytes,
        trigger: Trigger,
        request_id: Option<String>,
    ) -> (Disposition, Option<Failure>) {
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
                query: None,
                headers: Vec::new(),
            },
        };
        match invoke(self.function.as_ref(), &self.metrics, event).await {
            Ok(_) => (Disposition::Done, None),
            Err(f) if f.kind == FailureKind::Transient => (Disposition::Retry, Some(f)),
            Err(failure) => {
                let disposition = self
                    .reject(&payload, failure.outcome(), failure.kind.as_str(), request_id, None)
                    .await;
                (disposition, Some(failure))
            }
        }
    }

    /// Record `payload` on the rejected lane without calling the function: it could not even
    /// be unwrapped (a malformed CloudEvent) or is larger than the function accepts. `outcome`
    /// is the OperationOutcome saying why; `kind` names the reason in the log.
    /// `truncated_from`: the payload is only the first bytes of a delivery this large.
    pub(crate) async fn reject_unread(
        &self,
        payload: &[u8],
        outcome: Value,
        kind: &'static str,
        request_id: Option<&str>,
        truncated_from: Option<usize>,
    ) -> Disposition {
        self.reject(payload, outcome, kind, request_id_or_new(request_id), truncated_from)
            .await
    }

    async fn reject(
        &self,
        payload: &[u8],
        outcome: Value,
        kind: &str,
        request_id: String,
        truncated_from: Option<usize>,
    ) -> Disposition {
        let lane = wardwatch_domain::lanes::rejected(&self.binding);
        let refused = match self
            .record(&lane, payload, outcome.clone(), &request_id, truncated_from)
            .await
        {
            Ok(()) => return self.recorded(&lane, kind, &request_id),
            Err(PortError::Unavailable(e)) => {
                warn!(%request_id, lane = %lane, error = %e, "rejected lane unavailable: delivery will be retried");
                return Disposition::Retry;
            }
            Err(e) => e,
        };
        // The lane refused this record for good, not for now: most likely it is too large for
        // it (daprd takes at most 4 MB per request by default). Redelivering would meet the same
        // refusal forever, so keep the payload's first MiB and say so.
        if payload.len() > RECORD_HEAD_BYTES {
            let head = utf8_head(payload, RECORD_HEAD_BYTES);
            let note = format!(
                "the {lane} lane refused the whole payload ({refused}); only its first {} of {} bytes are kept",
                head.len(),
                payload.len()
            );
            let whole = truncated_from.unwrap_or(payload.len());
            match self
                .record(&lane, head, with_note(outcome, &note), &request_id, Some(whole))
                .await
            {
                Ok(()) => {
                    warn!(%request_id, lane = %lane, bytes = payload.len(), "rejected lane refused the whole payload: its head is recorded");
                    return self.recorded(&lane, kind, &request_id);
                }
                Err(e) => {
                    warn!(%request_id, lane = %lane, error = %e, "rejected lane refused the record: delivery will be retried");
                    return Disposition::Retry;
                }
            }
        }
        warn!(%request_id, lane = %lane, error = %refused, "rejected lane refused the record: delivery will be retried");
        Disposition::Retry
    }

    /// Publish one `Rejected` record: the payload as text, or base64 when it is not UTF-8.
    async fn record(
        &self,
        lane: &str,
        payload: &[u8],
        outcome: Value,
        request_id: &str,
        truncated_from: Option<usize>,
    ) -> Result<(), PortError> {
        let (text, b64) = match std::str::from_utf8(payload) {
            Ok(t) => (Some(t.to_owned()), None),
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(payload))),
        };
        let record = Rejected {
            lane: self.binding.to_string(),
            received_at: Utc::now(),
            request_id: request_id.to_owned(),
            outcome,
            payload: text,
            payload_base64: b64,
            truncated_from,
        };
        // Only the serialisation of our own record can fail here: transient is the safe answer.
        let bytes = serde_json::to_vec(&record).map_err(|e| PortError::Unavailable(e.to_string()))?;
        self.rejects.record(lane, bytes).await
    }

    fn recorded(&self, lane: &str, kind: &str, request_id: &str) -> Disposition {
        self.metrics.rejected(lane);
        info!(%request_id, lane = %lane, kind, "delivery recorded on the rejected lane");
        Disposition::Rejected
    }
}

/// How much of a payload a rejected record keeps when it cannot keep all of it.
pub(crate) const RECORD_HEAD_BYTES: usize = 1024 * 1024;

/// The first `n` bytes of `payload`, shortened to end on a character boundary when the payload
/// is UTF-8 text, so that the head is still recorded as text.
pub(crate) fn utf8_head(payload: &[u8], n: usize) -> &[u8] {
    let head = &payload[..n.min(payload.len())];
    match std::str::from_utf8(head) {
        Err(e) if e.error_len().is_none() => &head[..e.valid_up_to()],
        _ => head,
    }
}

/// `outcome` with one more issue, of severity `information`, saying `note`.
fn with_note(mut outcome: Value, note: &str) -> Value {
    if let Some(issues) = outcome.get_mut("issue").and_then(Value::as_array_mut) {
        issues.push(json!({"severity": "information", "code": "too-costly", "diagnostics": note}));
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::utf8_head;

    #[test]
    fn a_head_of_text_ends_on_a_character_boundary() {
        let text = "ééé".as_bytes();
        assert_eq!(utf8_head(text, 3), "é".as_bytes());
        assert_eq!(utf8_head(text, 4), "éé".as_bytes());
        assert_eq!(utf8_head(text, 100), text);
        assert_eq!(utf8_head(&[0xff, 0xfe, 0xfd], 2), &[0xff, 0xfe]);
    }
}
