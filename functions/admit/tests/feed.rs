//! The `adt-feed` function on memory adapters: what it takes, and how it classifies what it
//! does not (the runtime acks, keeps on the rejected lane, or redelivers by that kind).

use std::sync::Arc;

use admit::feed::AdtFeed;
use wardwatch_adapters::{MemoryBus, MemoryEventLog, MemoryStateStore};
use wardwatch_domain::identity::IdentityRules;
use wardwatch_domain::ports::EventLog;
use wardwatch_records::{Locks, Records};
use wardwatch_runtime::{Event, FailureKind, Function, Trigger};

type Feed = AdtFeed<MemoryStateStore, MemoryEventLog, MemoryBus>;

fn feed() -> (Feed, MemoryEventLog) {
    let identity = IdentityRules {
        systems: Vec::new(),
        v2: IdentityRules::parse_v2_table("RXH^MR=https://fhir.northgate.example/Id/mrn").expect("table"),
    };
    let log = MemoryEventLog::default();
    let records = Records::new(
        MemoryStateStore::default(),
        log.clone(),
        MemoryBus::default(),
        Locks::default(),
    );
    let admit = Arc::new(admit::Admit::new(records, identity.clone()));
    (AdtFeed::new(admit, identity, chrono_tz::Europe::London), log)
}

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/corpus/adt/{name}", env!("CARGO_MANIFEST_DIR"))).expect("corpus")
}

fn delivery(payload: impl Into<bytes::Bytes>) -> Event {
    Event::new(Trigger::Amqp, "adt-feed", payload)
}

async fn logged(log: &MemoryEventLog) -> usize {
    log.read(None, 1000).await.expect("read").events.len()
}

#[tokio::test]
async fn an_adt_message_is_admitted_and_the_same_one_again_changes_nothing() {
    let (feed, log) = feed();
    feed.call(delivery(corpus("01-a01-admit-inpatient-v251.hl7")))
        .await
        .expect("admitted");
    let after_one = logged(&log).await;
    assert!(after_one > 0, "its events are logged");
    feed.call(delivery(corpus("01-a01-admit-inpatient-v251.hl7")))
        .await
        .expect("again");
    assert_eq!(logged(&log).await, after_one, "nothing new");
}

#[tokio::test]
async fn what_cannot_be_taken_is_refused_for_good_with_its_condition_never_as_transient() {
    let (feed, _) = feed();
    let f = feed
        .call(delivery(corpus("refused-201-a35-merge-account.hl7")))
        .await
        .expect_err("a merge");
    assert_eq!(f.kind, FailureKind::Invalid);
    assert!(f.message.contains("201") && f.message.contains("A35"), "{}", f.message);
    let f = feed
        .call(delivery(corpus("refused-204-unknown-authority.hl7")))
        .await
        .expect_err("unknown authority");
    assert_eq!(f.kind, FailureKind::Invalid);
    assert!(
        f.message.contains("204") && !f.message.contains("HARGREAVES"),
        "{}",
        f.message
    );
    let f = feed.call(delivery("hello")).await.expect_err("neither");
    assert_eq!(f.kind, FailureKind::Invalid);
    assert!(f.message.contains("adt-feed takes"), "{}", f.message);
}
