//! The embedded event log: a bounded ring in process memory, with the same exactly-once append
//! per (patient, outbox item) as the Redis one, and the same lane outbox. Ids are `<ms>-<seq>`
//! from the clock, never going backwards, so they keep increasing across restarts too. One
//! process holds it, so there is one relay: nothing is ever [`Backlog::Abandoned`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use wardwatch_domain::events::WardEvent;
use wardwatch_domain::ports::{Appended, Backlog, EventId, EventLog, LogPage, PortError, Unpublished};
use wardwatch_domain::record::Mark;

struct Inner {
    ring: VecDeque<(EventId, WardEvent)>,
    marks: HashMap<String, Mark>,
    last: EventId,
    capacity: usize,
    /// The lane outbox: not yet handed to a relay, and handed but not confirmed.
    waiting: VecDeque<(u64, WardEvent)>,
    handed: BTreeMap<u64, WardEvent>,
    next_handle: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    appended: Notify,
}

/// Cheap to clone (shared).
#[derive(Clone)]
pub struct MemoryEventLog(Arc<Shared>);

impl MemoryEventLog {
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(Shared {
            inner: Mutex::new(Inner {
                ring: VecDeque::new(),
                marks: HashMap::new(),
                last: EventId { ms: 0, seq: 0 },
                capacity: capacity.max(1),
                waiting: VecDeque::new(),
                handed: BTreeMap::new(),
                next_handle: 0,
            }),
            appended: Notify::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_new(&self, max: usize) -> Vec<Unpublished> {
        let mut inner = self.lock();
        let n = max.min(inner.waiting.len());
        let taken: Vec<(u64, WardEvent)> = inner.waiting.drain(..n).collect();
        taken
            .into_iter()
            .map(|(handle, event)| {
                inner.handed.insert(handle, event.clone());
                Unpublished {
                    handle: handle.to_string(),
                    event,
                }
            })
            .collect()
    }
}

impl Default for MemoryEventLog {
    fn default() -> Self {
        Self::new(10_000)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl EventLog for MemoryEventLog {
    async fn append(&self, owner: &str, seq: u64, event: &WardEvent) -> Result<Appended, PortError> {
        let mut inner = self.lock();
        if let Some(m) = inner.marks.get(owner) {
            if m.seq > seq {
                return Ok(Appended::Earlier);
            }
            if m.seq == seq {
                return Ok(Appended::Already(m.id.clone()));
            }
        }
        if inner.waiting.len() + inner.handed.len() >= inner.capacity {
            return Err(PortError::Unavailable(
                "the event log's lane outbox is full: events are not being published on the lanes".into(),
            ));
        }
        let ms = now_ms();
        let id = if ms > inner.last.ms {
            EventId { ms, seq: 0 }
        } else {
            EventId {
                ms: inner.last.ms,
                seq: inner.last.seq + 1,
            }
        };
        inner.last = id;
        let mut stored = event.clone();
        stored.id = id.to_string();
        if inner.ring.len() == inner.capacity {
            inner.ring.pop_front();
        }
        inner.ring.push_back((id, stored.clone()));
        let handle = inner.next_handle;
        inner.next_handle += 1;
        inner.waiting.push_back((handle, stored));
        inner.marks.insert(
            owner.to_owned(),
            Mark {
                seq,
                id: id.to_string(),
            },
        );
        drop(inner);
        self.0.appended.notify_waiters();
        Ok(Appended::New(id.to_string()))
    }

    async fn unpublished(
        &self,
        _relay: &str,
        which: Backlog,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Unpublished>, PortError> {
        match which {
            Backlog::Mine => Ok(self
                .lock()
                .handed
                .iter()
                .take(max)
                .map(|(h, e)| Unpublished {
                    handle: h.to_string(),
                    event: e.clone(),
                })
                .collect()),
            Backlog::Abandoned => Ok(Vec::new()),
            Backlog::New => {
                // Registered before looking, so an append in between still wakes us.
                let appended = self.0.appended.notified();
                let got = self.take_new(max);
                if !got.is_empty() || wait.is_zero() {
                    return Ok(got);
                }
                let _ = tokio::time::timeout(wait, appended).await;
                Ok(self.take_new(max))
            }
        }
    }

    async fn confirm_published(&self, handles: &[String]) -> Result<(), PortError> {
        let mut inner = self.lock();
        for h in handles {
            if let Ok(h) = h.parse::<u64>() {
                inner.handed.remove(&h);
            }
        }
        Ok(())
    }

    async fn mark(&self, owner: &str) -> Result<Option<Mark>, PortError> {
        Ok(self.lock().marks.get(owner).cloned())
    }

    async fn read(&self, after: Option<EventId>, limit: usize) -> Result<LogPage, PortError> {
        let inner = self.lock();
        let start = match after {
            Some(a) => inner.ring.partition_point(|(id, _)| *id <= a),
            None => 0,
        };
        Ok(LogPage {
            events: inner
                .ring
                .iter()
                .skip(start)
                .take(limit)
                .map(|(_, e)| e.clone())
                .collect(),
            oldest: inner.ring.front().map(|(id, _)| id.to_string()),
            newest: inner.ring.back().map(|(id, _)| id.to_string()),
        })
    }

    async fn newest(&self) -> Result<Option<String>, PortError> {
        Ok(self.lock().ring.back().map(|(id, _)| id.to_string()))
    }

    async fn newest_after(&self, seen: Option<&str>, wait: Duration) -> Result<Option<String>, PortError> {
        // Registered before looking, so an append in between still wakes us.
        let appended = self.0.appended.notified();
        let now = self.newest().await?;
        if now.as_deref() != seen || wait.is_zero() {
            return Ok(now);
        }
        let _ = tokio::time::timeout(wait, appended).await;
        self.newest().await
    }

    async fn ping(&self) -> Result<(), PortError> {
        Ok(())
    }
}
