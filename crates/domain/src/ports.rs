//! Ports: the three capabilities a function needs from the outside world, kept small.
//!
//! The state semantics are those of Dapr's state API so that every adapter (memory, Redis in
//! Dapr's layout, the Dapr sidecar) behaves the same: an ETag is the entry's version; a write
//! with an ETag that does not match is a [`PortError::Conflict`]; a write with an ETag to a
//! missing key creates it; a write without an ETag always wins.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::events::WardEvent;
use crate::record::Mark;

/// Why a port call failed. Only `Unavailable` is worth retrying as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The backend could not be reached or timed out: transient, retry later, ack nothing.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The ETag did not match: someone else wrote first. Reload and try again.
    #[error("concurrent update (ETag mismatch)")]
    Conflict,
    /// The backend answered with something that is not what we stored.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// One stored value with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub data: Vec<u8>,
    pub etag: String,
}

/// A change to a membership index (`{"patients": {id: seq}}`): add (`present`) or remove
/// `member`, unless a later `seq` already did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub key: String,
    pub member: String,
    pub seq: u64,
    pub present: bool,
}

/// Key-value state with optimistic concurrency (Dapr state API semantics).
pub trait StateStore: Send + Sync + 'static {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Versioned>, PortError>> + Send;
    /// Write `data`; with `etag`, only if the stored version still equals it (or the key is
    /// missing).
    fn set(&self, key: &str, data: &[u8], etag: Option<&str>) -> impl Future<Output = Result<(), PortError>> + Send;
    fn delete(&self, key: &str, etag: Option<&str>) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Several writes in order, each as [`StateStore::set`]; stops at the first that fails and
    /// returns its error (the earlier ones stay written: like Dapr's transactions, no rollback).
    /// Adapters that can do it in one round trip do.
    fn set_many(
        &self,
        items: &[(String, Vec<u8>, Option<String>)],
    ) -> impl Future<Output = Result<(), PortError>> + Send {
        async move {
            for (key, data, etag) in items {
                self.set(key, data, etag.as_deref()).await?;
            }
            Ok(())
        }
    }
    /// [`StateStore::set_many`], then create each of `claims` (key → data) that does not exist
    /// yet, leaving an existing one as it is — in the same step where the store can, so a claim is
    /// never written without the items before it. Per claim, whether it was created here; `false`
    /// (it exists, or this store could not tell) sends the caller down its slower path.
    fn set_many_and_claim(
        &self,
        items: &[(String, Vec<u8>, Option<String>)],
        claims: &[(String, Vec<u8>)],
    ) -> impl Future<Output = Result<Vec<bool>, PortError>> + Send {
        async move {
            self.set_many(items).await?;
            let mut created = Vec::with_capacity(claims.len());
            for (key, data) in claims {
                created.push(match self.set(key, data, Some(CREATE_ONLY_ETAG)).await {
                    Ok(()) => true,
                    Err(PortError::Conflict) => false,
                    Err(e) => return Err(e),
                });
            }
            Ok(created)
        }
    }
    /// [`StateStore::set_many_and_claim`], and after its writes each of `members` as
    /// [`StateStore::set_member`] would — in the same step where the store can. With the claims'
    /// answer, whether the memberships were applied: `false` (this store cannot) leaves them to
    /// the caller.
    fn set_many_claim_and_members(
        &self,
        items: &[(String, Vec<u8>, Option<String>)],
        claims: &[(String, Vec<u8>)],
        members: &[Membership],
    ) -> impl Future<Output = Result<(Vec<bool>, bool), PortError>> + Send {
        let _ = members;
        async move { Ok((self.set_many_and_claim(items, claims).await?, false)) }
    }
    /// Add (`present`) or remove `member` in a membership index (`{"patients": {id: seq}}`) in
    /// one step, unless a later `seq` already did. `Ok(false)`: this store cannot, and the caller
    /// does a read-modify-write under the ETag instead.
    fn set_member(
        &self,
        key: &str,
        member: &str,
        seq: u64,
        present: bool,
    ) -> impl Future<Output = Result<bool, PortError>> + Send {
        let _ = (key, member, seq, present);
        async { Ok(false) }
    }
    /// Several keys at once (for the board's reads), in order. Adapters that can pipeline do.
    fn get_many(&self, keys: &[String]) -> impl Future<Output = Result<Vec<Option<Versioned>>, PortError>> + Send {
        async move {
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(self.get(k).await?);
            }
            Ok(out)
        }
    }
    /// Cheap liveness check for `/readyz`.
    fn ping(&self) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// At-least-once publication of one message to a named lane (queue / binding / topic).
pub trait Publisher: Send + Sync + 'static {
    /// Returns once the message has been handed on: for RabbitMQ, once the broker confirmed it
    /// (publisher confirm); through Dapr, once daprd published it (its RabbitMQ binding uses no
    /// confirms, dapr-knative.md fact 21); in process, once the subscriber's channel has it.
    fn publish(&self, lane: &str, payload: &[u8]) -> impl Future<Output = Result<(), PortError>> + Send;
    fn ping(&self) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// What an append found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Appended now, with this log id.
    New(String),
    /// Already appended (a re-drive), with this id.
    Already(String),
    /// A later item of this patient is already in the log, so this one was appended before it.
    Earlier,
}

/// Which of the lane outbox's events [`EventLog::unpublished`] hands a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backlog {
    /// Those this relay was handed before and has not confirmed (a publish that failed).
    Mine,
    /// Those no relay was handed yet; waits up to the given time for one when there are none.
    New,
    /// Those another relay was handed long ago and never confirmed (it stopped or crashed):
    /// taken over by this one.
    Abandoned,
}

/// An event waiting in the lane outbox, with the handle that confirms it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unpublished {
    pub handle: String,
    /// With its log `id`.
    pub event: WardEvent,
}

/// One page of the event log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogPage {
    /// Oldest first, each with its `id`.
    pub events: Vec<WardEvent>,
    /// The oldest id the log still holds (it is bounded): a reader who last saw an id before
    /// this one has missed events.
    pub oldest: Option<String>,
    /// The newest id in the log.
    pub newest: Option<String>,
}

/// The ordered event log every function appends to: bounded, ids `<ms>-<seq>` that increase
/// across restarts. Appends are exactly-once per (outbox owner, outbox seq) thanks to a mark per
/// owner kept atomically with the append. The owner is a record's
/// [`crate::record::PatientRecord::outbox_owner`]: its patient id and incarnation.
///
/// Each append also queues the event, in the same atomic step, on the log's **lane outbox**:
/// what relays publish on the lanes, confirm, and only then forget. The lane outbox is never
/// trimmed; when it holds as many events as the log keeps, appends are refused as
/// `Unavailable` (lanes are not being published) rather than anything being lost.
pub trait EventLog: Send + Sync + 'static {
    fn append(
        &self,
        owner: &str,
        seq: u64,
        event: &WardEvent,
    ) -> impl Future<Output = Result<Appended, PortError>> + Send;
    /// At most `max` events from the lane outbox for the relay named `relay`, oldest first.
    fn unpublished(
        &self,
        relay: &str,
        which: Backlog,
        max: usize,
        wait: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<Unpublished>, PortError>> + Send;
    /// These lane-outbox events are on their lanes: forget them.
    fn confirm_published(&self, handles: &[String]) -> impl Future<Output = Result<(), PortError>> + Send;
    /// The relay named `relay` has stopped: forget its name, unless it still holds events taken
    /// and not confirmed (they wait for another relay to take them over). Whether it was
    /// forgotten. A log that keeps no names has nothing to do.
    fn retire_relay(&self, relay: &str) -> impl Future<Output = Result<bool, PortError>> + Send {
        let _ = relay;
        std::future::ready(Ok(true))
    }
    fn mark(&self, owner: &str) -> impl Future<Output = Result<Option<Mark>, PortError>> + Send;
    /// Events after `after` (exclusive; none = from the oldest), oldest first, at most `limit`.
    fn read(&self, after: Option<EventId>, limit: usize) -> impl Future<Output = Result<LogPage, PortError>> + Send;
    /// The newest id, without reading events.
    fn newest(&self) -> impl Future<Output = Result<Option<String>, PortError>> + Send;
    /// The newest id once it is not `seen`: at once when it already is not, else as soon as an
    /// event is appended, or after `wait` (then the newest as it is, perhaps still `seen`). How a
    /// reader follows the log without polling it.
    fn newest_after(
        &self,
        seen: Option<&str>,
        wait: std::time::Duration,
    ) -> impl Future<Output = Result<Option<String>, PortError>> + Send;
    fn ping(&self) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// A log id, `<ms>-<seq>`, ordered as Redis Stream ids are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub ms: u64,
    pub seq: u64,
}

impl EventId {
    /// `<ms>-<seq>`, or `<ms>` alone (seq 0), as Redis accepts; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        let id = Self {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        };
        // Nothing can follow the largest id; Redis refuses to read after it.
        (id.ms < u64::MAX && id.seq < u64::MAX).then_some(id)
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// An ETag no stored entry ever has (versions count up from 1): writing with it creates a
/// missing key and fails with a conflict on an existing one.
pub const CREATE_ONLY_ETAG: &str = "9223372036854775807";

/// Read a JSON value and its ETag.
pub async fn get_json<T: DeserializeOwned, S: StateStore>(
    store: &S,
    key: &str,
) -> Result<Option<(T, String)>, PortError> {
    store.get(key).await?.map(|v| parse_json(key, v)).transpose()
}

/// A stored entry's JSON value and its ETag; `key` names it in the error.
pub fn parse_json<T: DeserializeOwned>(key: &str, v: Versioned) -> Result<(T, String), PortError> {
    serde_json::from_slice(&v.data)
        .map(|t| (t, v.etag))
        // The serde message can quote stored values (patient data): keep only the position.
        .map_err(|e| {
            PortError::Corrupt(format!(
                "{}: unexpected JSON at line {} column {}",
                key_kind(key),
                e.line(),
                e.column()
            ))
        })
}

/// Write a JSON value (last write wins unless `etag` is given).
pub async fn put_json<T: Serialize, S: StateStore>(
    store: &S,
    key: &str,
    value: &T,
    etag: Option<&str>,
) -> Result<(), PortError> {
    let data = serde_json::to_vec(value).map_err(|e| PortError::Corrupt(e.to_string()))?;
    store.set(key, &data, etag).await
}

/// What kind of key this is, for messages and logs (keys never hold patient data, but the
/// kind is all a log line needs).
pub fn key_kind(key: &str) -> &str {
    crate::keys::kind(key)
}

/// Readiness of a function's ports, naming the one that does not answer.
pub async fn ready<S: StateStore, L: EventLog, P: Publisher>(store: &S, log: &L, bus: &P) -> Result<(), String> {
    store.ping().await.map_err(|e| format!("state store: {e}"))?;
    log.ping().await.map_err(|e| format!("event log: {e}"))?;
    bus.ping().await.map_err(|e| format!("publisher: {e}"))
}

#[cfg(test)]
mod tests {
    use super::EventId;

    #[test]
    fn event_ids_order_by_time_then_sequence_and_bad_ones_are_refused() {
        let a = EventId::parse("1700000000000-9").expect("id");
        let b = EventId::parse("1700000000001-0").expect("id");
        assert!(a < b);
        assert_eq!(EventId::parse("5"), Some(EventId { ms: 5, seq: 0 }));
        assert_eq!(a.to_string(), "1700000000000-9");
        assert_eq!(EventId::parse("x-1"), None);
        assert_eq!(EventId::parse("1-2-3"), None);
        assert_eq!(EventId::parse("18446744073709551615-18446744073709551615"), None);
    }
}
