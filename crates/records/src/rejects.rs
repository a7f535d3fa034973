//! Rejected deliveries kept in the state store, because a queue cannot be listed or read by id
//! without consuming it: each record (payload, OperationOutcome) under `rejected-<handle>`, and a
//! bounded list of them (`rejected-index`: the newest `KEEP_REJECTED`, at most `KEEP_BYTES` of
//! payload, none older than `KEEP_DAYS`) that names them without patient data — when, which
//! lane, why (our own words and JSON locations, never the payload or values quoted from it).
//!
//! A delivery rejected again (redelivered before its ack landed) keeps one record: the handle
//! is derived from the lane, the request id and the payload. Replaying publishes the payload on
//! its lane, then forgets the record: at least once — a crash in between replays it twice, which
//! ingest-lab's idempotence absorbs.

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use wardwatch_domain::events::Rejected;
use wardwatch_domain::ports::{CREATE_ONLY_ETAG, PortError, Publisher, StateStore, get_json, put_json};
use wardwatch_domain::{ids, keys};

/// How many rejected deliveries are kept.
pub const KEEP_REJECTED: usize = 1000;
/// How much payload they may hold together (a lab feed may be 16 MiB).
pub const KEEP_BYTES: usize = 256 * 1024 * 1024;
/// How long one is kept.
pub const KEEP_DAYS: i64 = 30;

/// One kept rejected delivery, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedSummary {
    pub handle: String,
    /// The lane it was delivered on (where a replay puts it back).
    pub lane: String,
    pub received_at: DateTime<Utc>,
    pub request_id: String,
    /// Why, in Wardwatch's own words.
    pub reason: String,
    /// Where in the payload (JSON pointers, HL7 positions), when known.
    #[serde(default)]
    pub locations: Vec<String>,
    pub bytes: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    #[serde(default)]
    items: Vec<RejectedSummary>,
}

/// Why, without what: the first issue's diagnostics up to the detail quoted from the payload.
fn reason_of(outcome: &serde_json::Value) -> (String, Vec<String>) {
    let issues = outcome
        .get("issue")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut locations: Vec<String> = issues
        .iter()
        .filter_map(|i| i.pointer("/expression/0").and_then(serde_json::Value::as_str))
        .map(str::to_owned)
        .collect();
    locations.dedup();
    let first = issues
        .first()
        .and_then(|i| i.get("diagnostics"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("rejected");
    // With locations, the diagnostics are "<our message>: <the validator's detail>", and the
    // detail may quote the payload.
    let reason = if locations.is_empty() {
        first.to_owned()
    } else {
        first.split(": ").next().unwrap_or(first).to_owned()
    };
    (reason, locations)
}

/// The kept rejected deliveries. Cheap to clone.
#[derive(Clone)]
pub struct Rejects<S> {
    store: S,
}

impl<S: StateStore> Rejects<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// Keep one rejected delivery (its serialised [`Rejected`]); returns its handle.
    pub async fn keep(&self, record: &[u8], now: DateTime<Utc>) -> Result<String, PortError> {
        let r: Rejected =
            serde_json::from_slice(record).map_err(|e| PortError::Corrupt(format!("a rejected record: {e}")))?;
        let payload_len = r.payload.as_ref().map_or(0, String::len) + r.payload_base64.as_ref().map_or(0, String::len);
        let digest =
            wardwatch_domain::decide::digest(r.payload.as_deref().or(r.payload_base64.as_deref()).unwrap_or(""));
        let handle = ids::derived("rejected", &[&r.lane, &r.request_id, &digest]);
        self.store.set(&keys::rejected(&handle), record, None).await?;
        let (reason, locations) = reason_of(&r.outcome);
        let summary = RejectedSummary {
            handle: handle.clone(),
            lane: r.lane.clone(),
            received_at: r.received_at,
            request_id: r.request_id.clone(),
            reason,
            locations,
            bytes: payload_len,
        };
        let dropped = self
            .change(|index| {
                if !index.items.iter().any(|i| i.handle == summary.handle) {
                    index.items.push(summary.clone());
                }
                index.items.sort_by_key(|i| std::cmp::Reverse(i.received_at));
                let cutoff = now - Duration::days(KEEP_DAYS);
                let (mut kept, mut total) = (0usize, 0usize);
                let mut dropped = Vec::new();
                index.items.retain(|i| {
                    let keep = i.handle == summary.handle
                        || (kept < KEEP_REJECTED && i.received_at > cutoff && total + i.bytes <= KEEP_BYTES);
                    if keep {
                        kept += 1;
                        total += i.bytes;
                    } else {
                        dropped.push(i.handle.clone());
                    }
                    keep
                });
                dropped
            })
            .await?;
        for h in dropped.iter().filter(|h| **h != handle) {
            self.store.delete(&keys::rejected(h), None).await?;
        }
        Ok(handle)
    }

    /// Change the index by compare-and-set on its ETag.
    async fn change<T>(&self, mut f: impl FnMut(&mut Index) -> T) -> Result<T, PortError> {
        for _ in 0..20 {
            let found = get_json::<Index, S>(&self.store, keys::REJECTED_INDEX).await?;
            let (mut index, etag) = match found {
                Some((i, e)) => (i, Some(e)),
                None => (Index::default(), None),
            };
            let out = f(&mut index);
            let etag = etag.as_deref().unwrap_or(CREATE_ONLY_ETAG);
            match put_json(&self.store, keys::REJECTED_INDEX, &index, Some(etag)).await {
                Ok(()) => return Ok(out),
                Err(PortError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(PortError::Unavailable(
            "the rejected list is changing too often: try again".into(),
        ))
    }

    /// The kept rejected deliveries, newest first.
    pub async fn list(&self) -> Result<Vec<RejectedSummary>, PortError> {
        Ok(get_json::<Index, S>(&self.store, keys::REJECTED_INDEX)
            .await?
            .map(|(i, _)| i.items)
            .unwrap_or_default())
    }

    /// One kept rejected delivery, whole (its payload is patient data).
    pub async fn get(&self, handle: &str) -> Result<Option<Rejected>, PortError> {
        Ok(get_json::<Rejected, S>(&self.store, &keys::rejected(handle))
            .await?
            .map(|(r, _)| r))
    }

    /// Put a kept delivery back on its lane, then forget it. `Ok(false)`: no such handle.
    pub async fn replay<P: Publisher>(&self, handle: &str, bus: &P) -> Result<bool, PortError> {
        let Some(r) = self.get(handle).await? else {
            return Ok(false);
        };
        let payload = match (&r.payload, &r.payload_base64) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| PortError::Corrupt(format!("rejected {handle}: its base64 payload is not base64")))?,
            (None, None) => Vec::new(),
        };
        bus.publish(&r.lane, &payload).await?;
        self.change(|index| index.items.retain(|i| i.handle != handle)).await?;
        self.store.delete(&keys::rejected(handle), None).await?;
        Ok(true)
    }
}
