//! evaluate-alert on memory adapters: results put in a record the way ingest-lab does, then the
//! `result-stored` event delivered.

use chrono::Utc;
use serde_json::{Value, json};
use wardwatch_adapters::{MemoryBus, MemoryEventLog, MemoryStateStore};
use wardwatch_domain::decide::result;
use wardwatch_domain::ports::{EventLog, PortError};
use wardwatch_domain::record::ResultEntry;
use wardwatch_domain::rules::CriticalLimits;
use wardwatch_records::{Locks, Records, Step};
use wardwatch_runtime::{Event, FailureKind, Function, Trigger};

type Repo = Records<MemoryStateStore, MemoryEventLog, MemoryBus>;
type Evaluate = evaluate_alert::EvaluateAlert<MemoryStateStore, MemoryEventLog, MemoryBus>;

async fn setup(value: f64) -> (Evaluate, Repo, MemoryBus) {
    let bus = MemoryBus::default();
    let records = Records::new(
        MemoryStateStore::default(),
        MemoryEventLog::default(),
        bus.clone(),
        Locks::default(),
    );
    let entry = ResultEntry {
        result_id: "r1".into(),
        loinc: "2823-3".into(),
        local_code: None,
        analyte: Some("potassium".into()),
        value: Some(value),
        unit: "mmol/L".into(),
        comparator: None,
        reported_value: Some(value),
        reported_unit: "mmol/L".into(),
        text: None,
        not_evaluable: None,
        status: "final".into(),
        effective: Some(Utc::now()),
        issued: Some(Utc::now()),
        message_id: None,
        digest: "d".into(),
        resource_key: "result-r1-d".into(),
    };
    records
        .update("p1", |r| {
            let d = result::decide(r, "p1", entry.clone(), None, Utc::now());
            Ok::<_, PortError>(Step::Write {
                record: d.record,
                resources: Vec::new(),
                out: (),
            })
        })
        .await
        .expect("seed");
    (
        evaluate_alert::EvaluateAlert::new(records.clone(), CriticalLimits::default()),
        records,
        bus,
    )
}

fn resulted() -> Event {
    let body = json!({"id": "1-0", "type": "result-stored", "at": "2026-11-27T10:00:00Z", "patient_id": "p1",
        "mrn": null, "ward": null, "result_id": "r1", "analyte": "potassium"});
    Event::new(Trigger::Memory, "lab-resulted", body.to_string())
}

fn alerts_lane(bus: &MemoryBus) -> Vec<Value> {
    bus.messages("alerts")
        .iter()
        .map(|m| serde_json::from_slice(m).expect("json"))
        .collect()
}

#[tokio::test]
async fn critical_potassium_raises_one_active_alert_in_the_record_the_log_and_the_lane() {
    let (f, records, bus) = setup(7.1).await;
    f.call(resulted()).await.expect("evaluated");
    let r = records.load("p1").await.expect("load").expect("record");
    assert_eq!(r.alerts.len(), 1);
    assert_eq!(r.alerts[0].rule, "critical-high:potassium");
    let lane = alerts_lane(&bus);
    assert_eq!(lane.len(), 1);
    assert_eq!(
        (lane[0]["type"].as_str(), lane[0]["alert_id"].as_str()),
        (Some("alert-raised"), Some(r.alerts[0].id.as_str()))
    );
    let logged = records.log.read(None, 10).await.expect("log").events;
    assert!(
        logged
            .iter()
            .any(|e| e.alert_id.as_deref() == Some(r.alerts[0].id.as_str()))
    );
    assert_eq!(
        records.members(wardwatch_domain::keys::UNPLACED).await.expect("list"),
        vec!["p1".to_owned()],
        "a patient on no ward with an alert is on the work list"
    );
}

#[tokio::test]
async fn a_redelivered_event_raises_and_publishes_nothing_new() {
    let (f, records, bus) = setup(7.1).await;
    f.call(resulted()).await.expect("first");
    f.call(resulted()).await.expect("again");
    assert_eq!(records.load("p1").await.expect("load").expect("record").alerts.len(), 1);
    assert_eq!(alerts_lane(&bus).len(), 1);
}

#[tokio::test]
async fn a_normal_potassium_raises_nothing() {
    let (f, records, bus) = setup(4.2).await;
    f.call(resulted()).await.expect("evaluated");
    assert!(
        records
            .load("p1")
            .await
            .expect("load")
            .expect("record")
            .alerts
            .is_empty()
    );
    assert!(bus.messages("alerts").is_empty());
}

#[tokio::test]
async fn a_malformed_event_is_invalid_and_one_for_no_record_is_not_found() {
    let (f, _, _) = setup(7.1).await;
    let err = f
        .call(Event::new(Trigger::Memory, "lab-resulted", "{\"result_id\": 3}"))
        .await
        .expect_err("refused");
    assert_eq!(err.kind, FailureKind::Invalid);
    let body = json!({"type": "result-stored", "at": "2026-11-27T10:00:00Z", "patient_id": "nobody",
        "mrn": null, "ward": null, "result_id": "r1"});
    let err = f
        .call(Event::new(Trigger::Memory, "lab-resulted", body.to_string()))
        .await
        .expect_err("refused");
    assert_eq!(err.kind, FailureKind::NotFound);
}
