//! The embedded event log: a bounded ring in process memory, with the same exactly-once append
//! per (patient, outbox item) as the Redis one. Ids are `<ms>-<seq>` from the clock, never going
//! backwards, so they keep increasing across restarts too.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use wardwatch_domain::events::WardEvent;
use wardwatch_domain::ports::{Appended, EventId, EventLog, LogPage, PortError};
use wardwatch_domain::record::Mark;

struct Inner {
    ring: VecDeque<(EventId, WardEvent)>,
    marks: HashMap<String, Mark>,
    last: EventId,
    capacity: usize,
}

/// Cheap to clone (shared).
#[derive(Clone)]
pub struct MemoryEventLog(Arc<Mutex<Inner>>);

impl MemoryEventLog {
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(Mutex::new(Inner {
            ring: VecDeque::new(),
            marks: HashMap::new(),
            last: EventId { ms: 0, seq: 0 },
            capacity: capacity.max(1),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
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
        inner.ring.push_back((id, stored));
        inner.marks.insert(
            owner.to_owned(),
            Mark {
                seq,
                id: id.to_string(),
                published: false,
            },
        );
        Ok(Appended::New(id.to_string()))
    }

    async fn published(&self, owner: &str, seq: u64) -> Result<(), PortError> {
        if let Some(m) = self.lock().marks.get_mut(owner)
            && m.seq == seq
        {
            m.published = true;
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

    async fn ping(&self) -> Result<(), PortError> {
        Ok(())
    }
}
