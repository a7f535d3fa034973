//! evaluate-alert on memory adapters.

use serde_json::{Value, json};
use wardwatch_adapters::{MemoryBus, MemoryStateStore};
use wardwatch_domain::events::{OpenAlerts, keys};
use wardwatch_domain::ports::get_json;
use wardwatch_domain::rules::CriticalLimits;
use wardwatch_runtime::{Event, FailureKind, Function, Trigger};

fn setup() -> (
    evaluate_alert::EvaluateAlert<MemoryStateStore, MemoryBus>,
    MemoryStateStore,
    MemoryBus,
) {
    let store = MemoryStateStore::default();
    let bus = MemoryBus::default();
    (
        evaluate_alert::EvaluateAlert::new(store.clone(), bus.clone(), CriticalLimits::default()),
        store,
        bus,
    )
}

fn resulted(value: f64) -> Event {
    let body = json!({"result_id": "r1", "patient_id": "p1", "mrn": "MRN0001", "loinc": "2823-3",
        "analyte": "potassium", "value": value, "unit": "mmol/L", "status": "final", "effective": null});
    Event::new(Trigger::Memory, "lab-resulted", body.to_string())
}

async fn open(store: &MemoryStateStore) -> OpenAlerts {
    get_json(store, keys::OPEN_ALERTS)
        .await
        .expect("get")
        .map(|(o, _)| o)
        .unwrap_or_default()
}

#[tokio::test]
async fn critical_potassium_raises_one_active_alert_stored_listed_and_published() {
    let (f, store, bus) = setup();
    f.call(resulted(7.1)).await.expect("evaluated");
    let open = open(&store).await;
    assert_eq!(open.ids.len(), 1);
    let alerts = bus.messages("alerts");
    assert_eq!(alerts.len(), 1);
    let a: Value = serde_json::from_slice(&alerts[0]).expect("json");
    assert_eq!(
        (a["rule"].as_str(), a["status"].as_str(), a["severity"].as_str()),
        (Some("critical-high:potassium"), Some("active"), Some("critical"))
    );
    let (stored, _): (Value, String) = get_json(&store, &keys::alert(&open.ids[0]))
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored["published"], true);
}

#[tokio::test]
async fn a_redelivered_event_raises_and_publishes_nothing_new() {
    let (f, store, bus) = setup();
    f.call(resulted(7.1)).await.expect("first");
    f.call(resulted(7.1)).await.expect("again");
    assert_eq!(open(&store).await.ids.len(), 1);
    assert_eq!(bus.messages("alerts").len(), 1);
}

#[tokio::test]
async fn a_normal_potassium_raises_nothing() {
    let (f, store, bus) = setup();
    f.call(resulted(4.2)).await.expect("evaluated");
    assert!(open(&store).await.ids.is_empty());
    assert!(bus.messages("alerts").is_empty());
}

#[tokio::test]
async fn a_malformed_event_is_invalid() {
    let (f, _, _) = setup();
    let err = f
        .call(Event::new(Trigger::Memory, "lab-resulted", "{\"result_id\": 3}"))
        .await
        .expect_err("refused");
    assert_eq!(err.kind, FailureKind::Invalid);
}
