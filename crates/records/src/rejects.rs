//! Rejected deliveries kept in the state store, because a queue cannot be listed or read by id
//! without consuming it: each record (payload, OperationOutcome) under `rejected-<handle>`, and a
//! bounded list of them (`rejected-index`: the newest `KEEP_REJECTED`, at most `KEEP_BYTES` of
//! payload, none older than `KEEP_DAYS`) that names them without patient data — when, which
//! lane, why (Wardwatch's own words and the locations of the problems; codes such as a status
//! or a character set may be named, never the payload's names, identifiers, dates or values).
//! What falls out of the bounds is deleted whenever a rejection is kept or the list is read.
//!
//! A delivery rejected again (redelivered before its ack landed) keeps one record: the handle
//! is derived from the lane and the payload. Replaying publishes the payload on its lane, then
//! forgets the record: at least once — a crash in between replays it twice, which ingest-lab's
//! idempotence absorbs. A record that kept only the payload's first bytes cannot be replayed.

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
    /// Whether the whole payload is kept (else only its first bytes: the sender must resend).
    #[serde(default = "yes")]
    pub replayable: bool,
    /// Why, in Wardwatch's own words.
    pub reason: String,
    /// Where in the payload (JSON pointers, HL7 positions), when known.
    #[serde(default)]
    pub locations: Vec<String>,
    pub bytes: usize,
}

fn yes() -> bool {
    true
}

/// What replaying a kept delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    Replayed,
    NotFound,
    /// Only the first `kept` of `of` bytes were kept: nothing was replayed.
    Truncated {
        kept: usize,
        of: usize,
    },
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
        let handle = ids::derived("rejected", &[&r.lane, &digest]);
        self.store.set(&keys::rejected(&handle), record, None).await?;
        let (reason, locations) = reason_of(&r.outcome);
        let summary = RejectedSummary {
            handle: handle.clone(),
            lane: r.lane.clone(),
            received_at: r.received_at,
            request_id: r.request_id.clone(),
            replayable: r.truncated_from.is_none(),
            reason,
            locations,
            bytes: payload_len,
        };
        let dropped = self
            .change(|index| {
                if !index.items.iter().any(|i| i.handle == summary.handle) {
                    index.items.push(summary.clone());
                }
                bound(index, now, Some(&summary.handle))
            })
            .await?;
        self.forget(&dropped).await?;
        Ok(handle)
    }

    async fn forget(&self, handles: &[String]) -> Result<(), PortError> {
        for h in handles {
            self.store.delete(&keys::rejected(h), None).await?;
        }
        Ok(())
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

    /// The kept rejected deliveries, newest first; those past the bounds are deleted first.
    pub async fn list(&self, now: DateTime<Utc>) -> Result<Vec<RejectedSummary>, PortError> {
        let Some((mut index, _)) = get_json::<Index, S>(&self.store, keys::REJECTED_INDEX).await? else {
            return Ok(Vec::new());
        };
        if !bound(&mut index, now, None).is_empty() {
            let dropped = self.change(|index| bound(index, now, None)).await?;
            self.forget(&dropped).await?;
        }
        Ok(index.items)
    }

    /// One kept rejected delivery, whole (its payload is patient data).
    pub async fn get(&self, handle: &str) -> Result<Option<Rejected>, PortError> {
        Ok(get_json::<Rejected, S>(&self.store, &keys::rejected(handle))
            .await?
            .map(|(r, _)| r))
    }

    /// Put a kept delivery back on its lane, then forget it.
    pub async fn replay<P: Publisher>(&self, handle: &str, bus: &P) -> Result<Replay, PortError> {
        let Some(r) = self.get(handle).await? else {
            return Ok(Replay::NotFound);
        };
        if let Some(of) = r.truncated_from {
            let kept =
                r.payload.as_ref().map_or(0, String::len) + r.payload_base64.as_ref().map_or(0, |b| b.len() / 4 * 3);
            return Ok(Replay::Truncated { kept, of });
        }
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
        Ok(Replay::Replayed)
    }
}

/// Keep the index within its bounds (newest first: at most `KEEP_REJECTED`, `KEEP_BYTES`, none
/// older than `KEEP_DAYS`; `keep` stays whatever its size). Returns the handles dropped.
fn bound(index: &mut Index, now: DateTime<Utc>, keep: Option<&str>) -> Vec<String> {
    index.items.sort_by_key(|i| std::cmp::Reverse(i.received_at));
    let cutoff = now - Duration::days(KEEP_DAYS);
    let (mut kept, mut total) = (0usize, 0usize);
    let mut dropped = Vec::new();
    index.items.retain(|i| {
        let within = kept < KEEP_REJECTED && i.received_at > cutoff && total + i.bytes <= KEEP_BYTES;
        if within || keep == Some(i.handle.as_str()) {
            kept += 1;
            total += i.bytes;
            true
        } else {
            dropped.push(i.handle.clone());
            false
        }
    });
    dropped
}
