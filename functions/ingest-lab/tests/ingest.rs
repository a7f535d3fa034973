//! ingest-lab on memory adapters.

use serde_json::{Value, json};
use wardwatch_adapters::{MemoryBus, MemoryStateStore};
use wardwatch_domain::events::{ResultHistory, keys};
use wardwatch_domain::ports::{get_json, put_json};
use wardwatch_runtime::{Event, FailureKind, Function, Trigger};

type Ingest = ingest_lab::IngestLab<MemoryStateStore, MemoryBus>;

fn potassium() -> Value {
    let path = format!(
        "{}/../../schemas/examples/potassium-critical.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// A store with patient `p1`, MRN `MRN0001`.
async fn setup() -> (Ingest, MemoryStateStore, MemoryBus) {
    let store = MemoryStateStore::default();
    let bus = MemoryBus::default();
    let patient = json!({"resourceType": "Patient", "id": "p1",
        "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "MRN0001"}]});
    put_json(&store, &keys::patient("p1"), &patient, None)
        .await
        .expect("seed");
    put_json(&store, &keys::mrn("MRN0001"), &json!({"patient_id": "p1"}), None)
        .await
        .expect("seed");
    (ingest_lab::IngestLab::new(store.clone(), bus.clone(), None), store, bus)
}

fn deliver(body: &Value) -> Event {
    Event::new(Trigger::DaprBinding, "lab-feed", body.to_string())
}

async fn history(store: &MemoryStateStore) -> ResultHistory {
    get_json(store, &keys::results_of("p1"))
        .await
        .expect("get")
        .map(|(h, _)| h)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_result_by_mrn_is_stored_against_the_patient_and_announced() {
    let (f, store, bus) = setup().await;
    f.call(deliver(&potassium())).await.expect("stored");
    assert_eq!(history(&store).await.results.len(), 1);
    let events = bus.messages("lab-resulted");
    assert_eq!(events.len(), 1);
    let e: Value = serde_json::from_slice(&events[0]).expect("json");
    assert_eq!(
        (e["patient_id"].as_str(), e["analyte"].as_str(), e["value"].as_f64()),
        (Some("p1"), Some("potassium"), Some(7.1))
    );
}

#[tokio::test]
async fn a_redelivered_result_is_stored_once() {
    let (f, store, _) = setup().await;
    f.call(deliver(&potassium())).await.expect("first");
    f.call(deliver(&potassium())).await.expect("again");
    assert_eq!(history(&store).await.results.len(), 1);
    assert_eq!(store.keys().iter().filter(|k| k.starts_with("result-")).count(), 1);
}

#[tokio::test]
async fn a_reference_to_the_patient_works_as_well_as_the_mrn() {
    let (f, store, _) = setup().await;
    let mut obs = potassium();
    obs["subject"] = json!({"reference": "Patient/p1"});
    f.call(deliver(&obs)).await.expect("stored");
    assert_eq!(history(&store).await.results.len(), 1);
}

#[tokio::test]
async fn creatinine_in_mg_per_dl_is_stored_in_micromol_per_litre() {
    let (f, _, bus) = setup().await;
    let mut obs = potassium();
    obs["identifier"][0]["value"] = json!("LAB-CR-1");
    obs["code"]["coding"][0] = json!({"system": "http://loinc.org", "code": "2160-0"});
    obs["valueQuantity"] =
        json!({"value": 1.5, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"});
    f.call(deliver(&obs)).await.expect("stored");
    let e: Value = serde_json::from_slice(&bus.messages("lab-resulted")[0]).expect("json");
    assert_eq!(
        (e["value"].as_f64(), e["unit"].as_str()),
        (Some(132.63), Some("umol/L"))
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_a_reason_and_nothing_is_stored() {
    let (f, store, bus) = setup().await;
    let before = store.keys().len();
    let mut no_subject = potassium();
    no_subject.as_object_mut().expect("object").remove("subject");
    let err = f.call(deliver(&no_subject)).await.expect_err("no subject");
    assert_eq!(
        (err.kind, err.issues[0].location.as_str()),
        (FailureKind::Invalid, "/subject")
    );

    let mut wrong_unit = potassium();
    wrong_unit["valueQuantity"] = json!({"value": 7.1, "unit": "mg/dL"});
    assert_eq!(f.call(deliver(&wrong_unit)).await.expect_err("unit").http_status(), 422);

    let mut stranger = potassium();
    stranger["subject"] = json!({"identifier": {"value": "NOBODY"}});
    assert_eq!(
        f.call(deliver(&stranger)).await.expect_err("unknown").kind,
        FailureKind::NotFound
    );

    let hl7 = Event::new(Trigger::DaprBinding, "lab-feed", "MSH|^~\\&|LAB|...");
    assert!(f.call(hl7).await.expect_err("hl7").message.contains("HL7 v2"));
    assert_eq!(
        f.call(Event::new(Trigger::DaprBinding, "lab-feed", "nope"))
            .await
            .expect_err("json")
            .kind,
        FailureKind::Invalid
    );
    assert_eq!(
        f.call(deliver(&json!({"resourceType": "Patient"})))
            .await
            .expect_err("type")
            .kind,
        FailureKind::Invalid
    );
    assert_eq!(
        f.call(deliver(&json!([1, 2]))).await.expect_err("array").kind,
        FailureKind::Invalid
    );

    assert_eq!(store.keys().len(), before, "nothing stored");
    assert!(bus.messages("lab-resulted").is_empty(), "nothing announced");
}

#[tokio::test]
async fn two_patients_results_with_the_same_lab_identifier_are_kept_apart() {
    let (f, store, bus) = setup().await;
    let other = json!({"resourceType": "Patient", "id": "p2",
        "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "MRN0002"}]});
    put_json(&store, &keys::patient("p2"), &other, None)
        .await
        .expect("seed");
    put_json(&store, &keys::mrn("MRN0002"), &json!({"patient_id": "p2"}), None)
        .await
        .expect("seed");
    let first = potassium();
    let mut second = potassium();
    second["subject"] = json!({"identifier": {"value": "MRN0002"}});
    f.call(deliver(&first)).await.expect("first");
    f.call(deliver(&second)).await.expect("second");
    assert_eq!(store.keys().iter().filter(|k| k.starts_with("result-")).count(), 2);
    let ids: Vec<Value> = bus
        .messages("lab-resulted")
        .iter()
        .map(|m| serde_json::from_slice::<Value>(m).expect("json")["result_id"].clone())
        .collect();
    assert_ne!(ids[0], ids[1]);
}
