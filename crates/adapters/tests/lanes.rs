//! The lane outbox in the real Redis (127.0.0.1:6379) and the relays that publish it: what a
//! lane's consumer sees is counted (the buses), not the outbox. Each test has a stream of its own.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::Value;
use tokio::sync::watch;
use wardwatch_adapters::{MemoryBus, MemoryEventLog, RedisEventLog};
use wardwatch_domain::events::{EventType, WardEvent};
use wardwatch_domain::ports::{Backlog, EventLog, PortError, Publisher};
use wardwatch_records::relay;
use wardwatch_runtime::Secret;

mod common;

use common::{REDIS, conn};

/// A fresh stream name, and a clean-up of its keys.
struct Stream {
    name: String,
    conn: redis::aio::MultiplexedConnection,
}

impl Stream {
    async fn new() -> Self {
        Self {
            name: format!("ww-lanes-{}:events", uuid::Uuid::new_v4().simple()),
            conn: conn().await,
        }
    }

    fn log(&self, max_len: usize) -> RedisEventLog {
        RedisEventLog::new(&Secret::new(REDIS), &self.name, max_len).expect("log")
    }

    async fn outbox_len(&mut self) -> usize {
        redis::cmd("XLEN")
            .arg(format!("{}:lanes", self.name))
            .query_async(&mut self.conn)
            .await
            .expect("xlen")
    }

    async fn clean_up(mut self) {
        let keys: Vec<String> = self.conn.keys(format!("{}*", self.name)).await.expect("keys");
        if !keys.is_empty() {
            let _: () = self.conn.del(keys).await.expect("del");
        }
    }
}

fn event(patient: &str, n: u64) -> WardEvent {
    WardEvent {
        id: String::new(),
        kind: EventType::ResultStored,
        at: chrono::Utc::now(),
        patient_id: patient.to_owned(),
        mrn: Some("mrn".into()),
        ward: None,
        encounter_id: None,
        result_id: Some(format!("r{n}")),
        alert_id: None,
        analyte: None,
        merged_id: None,
    }
}

/// Every message on the `lab-resulted` lane of these buses, by event id.
fn seen(buses: &[&MemoryBus]) -> Vec<String> {
    buses
        .iter()
        .flat_map(|b| b.messages("lab-resulted"))
        .map(|m| {
            let v: Value = serde_json::from_slice(&m).expect("json");
            v["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10 s: {what}");
}

#[tokio::test]
async fn two_relays_publish_every_event_appended_by_concurrent_writers_exactly_once() {
    let mut stream = Stream::new().await;
    let (a, b) = (MemoryBus::default(), MemoryBus::default());
    let (stop_tx, stop) = watch::channel(false);
    let relays = [
        tokio::spawn(relay(stream.log(10_000), a.clone(), stop.clone())),
        tokio::spawn(relay(stream.log(10_000), b.clone(), stop.clone())),
    ];
    // 20 writers ("processes" of their own), 10 patients each, 4 events per patient (a memory
    // bus keeps the last 1,000 messages of a lane).
    let mut writers = Vec::new();
    for w in 0..20 {
        let log = stream.log(10_000);
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for p in 0..10 {
                let owner = format!("p{w}-{p}.0");
                for seq in 1..=4 {
                    match log.append(&owner, seq, &event(&owner, seq)).await.expect("append") {
                        wardwatch_domain::ports::Appended::New(id) => ids.push(id),
                        other => panic!("a first append answered {other:?}"),
                    }
                }
            }
            ids
        }));
    }
    let mut appended = HashSet::new();
    for w in writers {
        appended.extend(w.await.expect("writer"));
    }
    assert_eq!(appended.len(), 800);
    until("every event on the lane", || seen(&[&a, &b]).len() >= 800).await;
    let _ = stop_tx.send(true);
    for r in relays {
        r.await.expect("relay");
    }
    let seen = seen(&[&a, &b]);
    assert_eq!(seen.len(), 800, "each event published once, by one relay or the other");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), appended);
    assert_eq!(stream.outbox_len().await, 0, "confirmed events are forgotten");
    stream.clean_up().await;
}

#[tokio::test]
async fn events_a_stopped_relay_took_and_never_confirmed_are_published_by_another() {
    let mut stream = Stream::new().await;
    let log = stream.log(1_000).abandoned_after(Duration::from_millis(300));
    for seq in 1..=5 {
        log.append("p1.0", seq, &event("p1", seq)).await.expect("append");
    }
    // A relay takes them and stops before publishing: they stay pending in its name.
    let taken = log
        .unpublished("gone", Backlog::New, 10, Duration::ZERO)
        .await
        .expect("take");
    assert_eq!(taken.len(), 5);
    let early = log
        .unpublished("other", Backlog::Abandoned, 10, Duration::ZERO)
        .await
        .expect("look");
    assert!(
        early.is_empty(),
        "not taken over while the first relay may still publish them"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // A relay starting now looks for abandoned events at once.
    let bus = MemoryBus::default();
    let (stop_tx, stop) = watch::channel(false);
    let r = tokio::spawn(relay(log.clone(), bus.clone(), stop));
    until("the abandoned events on the lane", || seen(&[&bus]).len() >= 5).await;
    let _ = stop_tx.send(true);
    r.await.expect("relay");
    let ids: Vec<String> = taken.iter().map(|u| u.event.id.clone()).collect();
    assert_eq!(seen(&[&bus]), ids, "each once, in order");
    assert_eq!(stream.outbox_len().await, 0);
    stream.clean_up().await;
}

/// The names in the lane outbox's consumer group, with how many events each holds unconfirmed.
async fn relay_names(stream: &mut Stream) -> Vec<(String, i64)> {
    let reply: redis::Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(format!("{}:lanes", stream.name))
        .arg("relays")
        .query_async(&mut stream.conn)
        .await
        .expect("xinfo consumers");
    let redis::Value::Array(consumers) = reply else {
        return Vec::new();
    };
    consumers
        .into_iter()
        .map(|c| {
            let fields: Vec<redis::Value> = match c {
                redis::Value::Array(f) => f,
                redis::Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                other => panic!("a consumer is not a list: {other:?}"),
            };
            let text = |v: &redis::Value| match v {
                redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                redis::Value::SimpleString(s) => s.clone(),
                other => format!("{other:?}"),
            };
            let mut name = String::new();
            let mut pending = -1;
            for pair in fields.chunks(2) {
                match (text(&pair[0]).as_str(), &pair[1]) {
                    ("name", v) => name = text(v),
                    ("pending", redis::Value::Int(n)) => pending = *n,
                    _ => {}
                }
            }
            (name, pending)
        })
        .collect()
}

#[tokio::test]
async fn a_relay_that_stops_forgets_its_name_unless_it_holds_unconfirmed_events() {
    let mut stream = Stream::new().await;
    let log = stream.log(1_000).abandoned_after(Duration::from_millis(200));
    for seq in 1..=3 {
        log.append("p1.0", seq, &event("p1", seq)).await.expect("append");
    }
    // Two relays start, publish, stop: as a process that restarts, or scales to zero and back.
    for _ in 0..2 {
        let bus = MemoryBus::default();
        let (stop_tx, stop) = watch::channel(false);
        let r = tokio::spawn(relay(log.clone(), bus.clone(), stop));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = stop_tx.send(true);
        r.await.expect("relay");
    }
    assert_eq!(
        relay_names(&mut stream).await,
        Vec::<(String, i64)>::new(),
        "no name left behind by a relay that stopped"
    );
    // A relay that took events and stopped before confirming them keeps its name, and them,
    // for another relay to take over.
    log.append("p1.0", 4, &event("p1", 4)).await.expect("append");
    let taken = log
        .unpublished("holder", Backlog::New, 10, Duration::ZERO)
        .await
        .expect("take");
    assert_eq!(taken.len(), 1);
    assert!(
        !log.retire_relay("holder").await.expect("retire"),
        "not forgotten while it holds one"
    );
    assert_eq!(relay_names(&mut stream).await, vec![("holder".to_owned(), 1)]);
    // What it holds is not lost: another relay takes it over, and then neither name is needed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let adopted = log
        .unpublished("adopter", Backlog::Abandoned, 10, Duration::ZERO)
        .await
        .expect("take over");
    let ids = |u: &[wardwatch_domain::ports::Unpublished]| u.iter().map(|u| u.event.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&adopted), ids(&taken), "the held event is taken over, not dropped");
    let handles: Vec<String> = adopted.iter().map(|u| u.handle.clone()).collect();
    log.confirm_published(&handles).await.expect("confirm");
    assert!(log.retire_relay("holder").await.expect("retire"));
    assert!(log.retire_relay("adopter").await.expect("retire"));
    assert!(relay_names(&mut stream).await.is_empty());
    // A log whose lane outbox was never read has no names to forget.
    let fresh = Stream::new().await;
    assert!(fresh.log(10).retire_relay("nobody").await.expect("retire"));
    fresh.clean_up().await;
    stream.clean_up().await;
}

#[tokio::test]
async fn an_entry_that_is_not_an_event_never_holds_up_the_ones_behind_it() {
    let mut stream = Stream::new().await;
    let log = stream.log(1_000);
    let _: String = redis::cmd("XADD")
        .arg(format!("{}:lanes", stream.name))
        .arg("*")
        .arg("e")
        .arg("not an event")
        .query_async(&mut stream.conn)
        .await
        .expect("xadd");
    log.append("p1.0", 1, &event("p1", 1)).await.expect("append");
    let bus = MemoryBus::default();
    let (_tx, stop) = watch::channel(true);
    relay(log.clone(), bus.clone(), stop).await;
    assert_eq!(seen(&[&bus]).len(), 1, "the event behind it is published");
    assert_eq!(stream.outbox_len().await, 0, "and the unreadable entry removed");
    stream.clean_up().await;
}

/// A publisher that is down for its first `failures` calls.
#[derive(Clone)]
struct Flaky {
    bus: MemoryBus,
    failures: Arc<AtomicU32>,
}

impl Publisher for Flaky {
    async fn publish(&self, lane: &str, payload: &[u8]) -> Result<(), PortError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(PortError::Unavailable("down".into()));
        }
        self.bus.publish(lane, payload).await
    }
    async fn ping(&self) -> Result<(), PortError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_broker_that_refuses_stops_nothing_and_a_full_lane_outbox_refuses_appends_until_it_drains() {
    let mut stream = Stream::new().await;
    let log = stream.log(5);
    for seq in 1..=5 {
        log.append("p1.0", seq, &event("p1", seq)).await.expect("append");
    }
    assert!(
        matches!(
            log.append("p1.0", 6, &event("p1", 6)).await,
            Err(PortError::Unavailable(_))
        ),
        "a full lane outbox is a transient refusal"
    );
    // The broker refuses the first three publishes: the relay retries its own, in a while.
    let bus = MemoryBus::default();
    let flaky = Flaky {
        bus: bus.clone(),
        failures: Arc::new(AtomicU32::new(3)),
    };
    let (stop_tx, stop) = watch::channel(false);
    let r = tokio::spawn(relay(log.clone(), flaky, stop));
    until("the five on the lane", || seen(&[&bus]).len() >= 5).await;
    let mut appended = false;
    for _ in 0..100 {
        if log.append("p1.0", 6, &event("p1", 6)).await.is_ok() {
            appended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(appended, "accepted again once the lane outbox drained");
    until("the sixth on the lane", || seen(&[&bus]).len() >= 6).await;
    let _ = stop_tx.send(true);
    r.await.expect("relay");
    let seen = seen(&[&bus]);
    assert_eq!(seen.len(), 6, "each once: {seen:?}");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 6);
    assert_eq!(stream.outbox_len().await, 0);
    stream.clean_up().await;
}

#[tokio::test]
async fn in_memory_the_lane_outbox_is_bounded_too_and_a_stopping_relay_publishes_what_waits() {
    let log = MemoryEventLog::new(3);
    for seq in 1..=3 {
        log.append("p1.0", seq, &event("p1", seq)).await.expect("append");
    }
    assert!(matches!(
        log.append("p1.0", 4, &event("p1", 4)).await,
        Err(PortError::Unavailable(_))
    ));
    let bus = MemoryBus::default();
    // Stopped before it starts: it still publishes everything waiting, then returns.
    let (_tx, stop) = watch::channel(true);
    relay(log.clone(), bus.clone(), stop).await;
    assert_eq!(seen(&[&bus]).len(), 3);
    log.append("p1.0", 4, &event("p1", 4)).await.expect("room again");
}

/// What `newest_after` must do for the board's event stream, for either log: answer at once when
/// the log is already past `seen`, wake on an append (well before its wait runs out), and answer
/// `seen` again when nothing was appended within the wait.
async fn newest_after_wakes_on_an_append(log: impl EventLog + Clone) {
    let first = log.append("p-wake", 1, &event("p-wake", 1)).await.expect("append");
    let first = match first {
        wardwatch_domain::ports::Appended::New(id) => id,
        other => panic!("a first append is new, not {other:?}"),
    };
    assert_eq!(
        log.newest_after(None, Duration::from_secs(5)).await.expect("read"),
        Some(first.clone()),
        "a log past `seen` answers at once"
    );
    assert_eq!(
        log.newest_after(Some(&first), Duration::from_millis(50))
            .await
            .expect("read"),
        Some(first.clone()),
        "nothing appended: the same id after the wait"
    );
    let writer = log.clone();
    let append = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer.append("p-wake", 2, &event("p-wake", 2)).await.expect("append")
    });
    // The wait is far longer than the append takes to come: an answer well before it runs out
    // means the append woke the reader (not the clock).
    let started = std::time::Instant::now();
    let woken = log
        .newest_after(Some(&first), Duration::from_secs(5))
        .await
        .expect("read");
    let waited = started.elapsed();
    let second = match append.await.expect("task") {
        wardwatch_domain::ports::Appended::New(id) => id,
        other => panic!("a second append is new, not {other:?}"),
    };
    assert_eq!(woken, Some(second));
    assert!(
        waited < Duration::from_secs(4),
        "woken by the append, not the wait's end ({waited:?})"
    );
}

#[tokio::test]
async fn a_reader_waiting_on_the_redis_log_is_woken_by_an_append() {
    let stream = Stream::new().await;
    newest_after_wakes_on_an_append(stream.log(1_000)).await;
    stream.clean_up().await;
}

#[tokio::test]
async fn a_reader_waiting_on_the_memory_log_is_woken_by_an_append() {
    newest_after_wakes_on_an_append(MemoryEventLog::default()).await;
}
