//! Ports: the two capabilities a function needs from the outside world, kept small.
//!
//! The semantics are those of Dapr's state API so that every adapter (memory, Redis in Dapr's
//! layout, the Dapr sidecar) behaves the same: an ETag is the entry's version; a write with an
//! ETag that does not match is a [`PortError::Conflict`]; a write with an ETag to a missing key
//! creates it; a write without an ETag always wins.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// Key-value state with optimistic concurrency (Dapr state API semantics).
pub trait StateStore: Send + Sync + 'static {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Versioned>, PortError>> + Send;
    /// Write `data`; with `etag`, only if the stored version still equals it (or the key is
    /// missing).
    fn set(&self, key: &str, data: &[u8], etag: Option<&str>) -> impl Future<Output = Result<(), PortError>> + Send;
    fn delete(&self, key: &str, etag: Option<&str>) -> impl Future<Output = Result<(), PortError>> + Send;
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

/// An ETag no stored entry ever has (versions count up from 1): writing with it creates a
/// missing key and fails with a conflict on an existing one.
pub const CREATE_ONLY_ETAG: &str = "9223372036854775807";

/// Read a JSON value and its ETag.
pub async fn get_json<T: DeserializeOwned, S: StateStore>(
    store: &S,
    key: &str,
) -> Result<Option<(T, String)>, PortError> {
    match store.get(key).await? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v.data)
            .map(|t| Some((t, v.etag)))
            // The serde message can quote stored values (patient data): keep only the position.
            .map_err(|e| {
                PortError::Corrupt(format!(
                    "{}: unexpected JSON at line {} column {}",
                    key_kind(key),
                    e.line(),
                    e.column()
                ))
            }),
    }
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

/// Read-modify-write under optimistic concurrency: `change` gets the current value (or
/// `T::default()`) and returns whether it changed anything; on an ETag conflict the whole
/// cycle runs again, up to `attempts` times. Still contended after that, it is
/// [`PortError::Unavailable`]: transient, to be retried later as a whole.
pub async fn update_json<T, S, F>(store: &S, key: &str, attempts: u32, mut change: F) -> Result<T, PortError>
where
    T: Serialize + DeserializeOwned + Default,
    S: StateStore,
    F: FnMut(&mut T) -> bool,
{
    for _ in 0..attempts.max(1) {
        let (mut value, etag) = match get_json::<T, S>(store, key).await? {
            Some((v, e)) => (v, Some(e)),
            None => (T::default(), None),
        };
        if !change(&mut value) {
            return Ok(value);
        }
        // For a key that does not exist yet we still write with an ETag: Dapr's stores create a
        // missing key whatever the ETag, but a second writer racing to create it then finds
        // version 1 and an ETag that can never match, and gets a conflict instead of silently
        // overwriting the first.
        let etag = etag.unwrap_or_else(|| CREATE_ONLY_ETAG.to_owned());
        match put_json(store, key, &value, Some(&etag)).await {
            Ok(()) => return Ok(value),
            Err(PortError::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    Err(PortError::Unavailable(format!(
        "{} still contended after {attempts} attempts",
        key_kind(key)
    )))
}

/// What kind of key this is (`mrn-MRN0001` → `mrn`), for messages and logs: keys can hold
/// identifiers such as an MRN, which must not be logged.
pub fn key_kind(key: &str) -> &str {
    key.split('-').next().unwrap_or_default()
}

/// The id of the patient holding `mrn`, from the MRN index admit keeps.
pub async fn patient_for_mrn<S: StateStore>(store: &S, mrn: &str) -> Result<Option<String>, PortError> {
    #[derive(serde::Deserialize)]
    struct MrnIndex {
        patient_id: String,
    }
    Ok(get_json::<MrnIndex, S>(store, &crate::events::keys::mrn(mrn))
        .await?
        .map(|(i, _)| i.patient_id))
}

/// Readiness of a function's two ports, naming the one that does not answer.
pub async fn ready<S: StateStore, P: Publisher>(store: &S, bus: &P) -> Result<(), String> {
    store.ping().await.map_err(|e| format!("state store: {e}"))?;
    bus.ping().await.map_err(|e| format!("publisher: {e}"))
}
