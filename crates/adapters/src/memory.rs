//! The embedded default: state and bus in process memory. Same semantics as the real ones.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use wardwatch_domain::ports::{PortError, Publisher, StateStore, Versioned};

/// Value bytes and version, by key.
type Entries = HashMap<String, (Vec<u8>, u64)>;

/// Key-value state with Dapr's ETag rules. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct MemoryStateStore {
    entries: Arc<Mutex<Entries>>,
}

impl MemoryStateStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Every key (for tests and diagnostics).
    pub fn keys(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

impl StateStore for MemoryStateStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, PortError> {
        Ok(self.lock().get(key).map(|(data, v)| Versioned {
            data: data.clone(),
            etag: v.to_string(),
        }))
    }

    async fn set(&self, key: &str, data: &[u8], etag: Option<&str>) -> Result<(), PortError> {
        let mut map = self.lock();
        let current = map.get(key).map(|(_, v)| *v);
        // Dapr: allowed when the key is missing, when no ETag is given, or when it matches.
        if let (Some(version), Some(etag)) = (current, etag)
            && etag != version.to_string()
        {
            return Err(PortError::Conflict);
        }
        let next = current.unwrap_or(0) + 1;
        map.insert(key.to_owned(), (data.to_vec(), next));
        Ok(())
    }

    async fn delete(&self, key: &str, etag: Option<&str>) -> Result<(), PortError> {
        let mut map = self.lock();
        if let (Some((_, version)), Some(etag)) = (map.get(key), etag)
            && etag != version.to_string()
        {
            return Err(PortError::Conflict);
        }
        map.remove(key);
        Ok(())
    }

    async fn ping(&self) -> Result<(), PortError> {
        Ok(())
    }
}

/// How many messages per lane the in-process bus remembers for inspection.
const KEEP: usize = 1000;

#[derive(Default)]
struct Lane {
    recent: VecDeque<Bytes>,
    subscriber: Option<mpsc::Sender<Bytes>>,
}

/// In-process bus: published messages go to the lane's subscriber (if any) and are kept (the
/// last 1000 per lane) for inspection. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct MemoryBus {
    lanes: Arc<Mutex<HashMap<String, Lane>>>,
}

impl MemoryBus {
    /// Take delivery of everything published on `lane` from now on (one subscriber per lane).
    pub fn subscribe(&self, lane: &str) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(1024);
        self.lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(lane.to_owned())
            .or_default()
            .subscriber = Some(tx);
        rx
    }

    /// The most recent messages published on `lane`, oldest first.
    pub fn messages(&self, lane: &str) -> Vec<Bytes> {
        self.lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(lane)
            .map(|l| l.recent.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Publisher for MemoryBus {
    async fn publish(&self, lane: &str, payload: &[u8]) -> Result<(), PortError> {
        let payload = Bytes::copy_from_slice(payload);
        let subscriber = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
            let entry = lanes.entry(lane.to_owned()).or_default();
            if entry.recent.len() == KEEP {
                entry.recent.pop_front();
            }
            entry.recent.push_back(payload.clone());
            entry.subscriber.clone()
        };
        if let Some(tx) = subscriber {
            tx.send(payload)
                .await
                .map_err(|_| PortError::Unavailable(format!("no consumer for `{lane}`")))?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), PortError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardwatch_domain::ports::CREATE_ONLY_ETAG;

    #[tokio::test]
    async fn versions_count_from_one_and_a_stale_etag_conflicts() {
        let s = MemoryStateStore::default();
        s.set("k", b"1", None).await.expect("first");
        assert_eq!(s.get("k").await.expect("get").expect("some").etag, "1");
        s.set("k", b"2", Some("1")).await.expect("matching etag");
        assert_eq!(s.set("k", b"3", Some("1")).await, Err(PortError::Conflict));
        assert_eq!(s.get("k").await.expect("get").expect("some").data, b"2");
    }

    #[tokio::test]
    async fn the_create_only_etag_creates_once_and_then_conflicts() {
        let s = MemoryStateStore::default();
        s.set("k", b"1", Some(CREATE_ONLY_ETAG)).await.expect("creates");
        assert_eq!(s.set("k", b"2", Some(CREATE_ONLY_ETAG)).await, Err(PortError::Conflict));
    }

    #[tokio::test]
    async fn concurrent_updates_all_land() {
        let s = MemoryStateStore::default();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                wardwatch_records::Records::new(
                    s,
                    crate::MemoryEventLog::default(),
                    MemoryBus::default(),
                    wardwatch_records::Locks::default(),
                )
                .cas::<Vec<u32>, _>("list", |l| {
                    l.push(i);
                    true
                })
                .await
            }));
        }
        for t in tasks {
            t.await.expect("join").expect("update");
        }
        let list: Vec<u32> =
            serde_json::from_slice(&s.get("list").await.expect("get").expect("some").data).expect("json");
        assert_eq!(list.len(), 20);
    }

    #[tokio::test]
    async fn a_subscriber_receives_what_is_published_and_the_lane_keeps_it() {
        let bus = MemoryBus::default();
        let mut rx = bus.subscribe("a");
        bus.publish("a", b"x").await.expect("publish");
        assert_eq!(rx.recv().await.expect("message"), Bytes::from_static(b"x"));
        assert_eq!(bus.messages("a"), vec![Bytes::from_static(b"x")]);
    }
}
