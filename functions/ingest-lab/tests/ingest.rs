//! ingest-lab on memory adapters.

use chrono::Utc;
use serde_json::{Value, json};
use wardwatch_adapters::{MemoryBus, MemoryEventLog, MemoryStateStore};
use wardwatch_domain::identity::Identifier;
use wardwatch_domain::ports::PortError;
use wardwatch_domain::record::PatientRecord;
use wardwatch_records::{Locks, Records, Step};
use wardwatch_runtime::{Event, FailureKind, Function, Trigger};

type Ingest = ingest_lab::IngestLab<MemoryStateStore, MemoryEventLog, MemoryBus>;
type Repo = Records<MemoryStateStore, MemoryEventLog, MemoryBus>;

const MRN_SYSTEM: &str = "https://fhir.example-hospital.nhs.uk/Id/mrn";

fn potassium() -> Value {
    let path = format!(
        "{}/../../schemas/examples/potassium-critical.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// A known patient's record and its identifier index, as admit leaves them.
async fn seed(records: &Repo, id: &str, mrn: &str) {
    let identity = Identifier {
        system: MRN_SYSTEM.into(),
        value: mrn.into(),
    };
    let mut r = PatientRecord::new(id, Utc::now());
    r.known = true;
    r.identity = Some(identity.clone());
    r.identifiers = vec![identity.clone()];
    records
        .update(id, |_| {
            Ok::<_, PortError>(Step::Write {
                record: r.clone(),
                resources: Vec::new(),
                out: (),
            })
        })
        .await
        .expect("seed");
    records.claim(&identity, id).await.expect("claim");
}

/// Patient `p1`, MRN `MRN0001`.
async fn setup() -> (Ingest, Repo, MemoryBus) {
    let store = MemoryStateStore::default();
    let bus = MemoryBus::default();
    let records = Records::new(store, MemoryEventLog::default(), bus.clone(), Locks::default());
    seed(&records, "p1", "MRN0001").await;
    (
        ingest_lab::IngestLab::new(records.clone(), Default::default()),
        records,
        bus,
    )
}

fn deliver(body: &Value) -> Event {
    Event::new(Trigger::DaprBinding, "lab-feed", body.to_string())
}

async fn results(records: &Repo, id: &str) -> usize {
    records.load(id).await.expect("load").map_or(0, |r| r.results.len())
}

fn lane(bus: &MemoryBus, name: &str) -> Vec<Value> {
    bus.messages(name)
        .iter()
        .map(|m| serde_json::from_slice(m).expect("json"))
        .collect()
}

fn result_keys(records: &Repo) -> usize {
    records.store.keys().iter().filter(|k| k.starts_with("result-")).count()
}

#[tokio::test]
async fn a_result_by_identifier_is_stored_in_the_patients_record_and_announced() {
    let (f, records, bus) = setup().await;
    f.call(deliver(&potassium())).await.expect("stored");
    let r = records.load("p1").await.expect("load").expect("record");
    assert_eq!((r.results[0].value, r.results[0].unit.as_str()), (Some(7.1), "mmol/L"));
    let events = lane(&bus, "lab-resulted");
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0]["type"].as_str(),
            events[0]["patient_id"].as_str(),
            events[0]["analyte"].as_str()
        ),
        (Some("result-stored"), Some("p1"), Some("potassium"))
    );
    assert!(events[0].get("value").is_none(), "events carry ids, not values");
}

#[tokio::test]
async fn a_redelivered_result_is_stored_once() {
    let (f, records, bus) = setup().await;
    f.call(deliver(&potassium())).await.expect("first");
    f.call(deliver(&potassium())).await.expect("again");
    assert_eq!(results(&records, "p1").await, 1);
    assert_eq!(result_keys(&records), 1);
    assert_eq!(lane(&bus, "lab-resulted").len(), 1, "announced once");
}

#[tokio::test]
async fn a_reference_to_the_patient_works_as_well_as_the_identifier() {
    let (f, records, _) = setup().await;
    let mut obs = potassium();
    obs["subject"] = json!({"reference": "Patient/p1"});
    f.call(deliver(&obs)).await.expect("stored");
    assert_eq!(results(&records, "p1").await, 1);
}

#[tokio::test]
async fn creatinine_in_mg_per_dl_is_stored_in_micromol_per_litre() {
    let (f, records, _) = setup().await;
    let mut obs = potassium();
    obs["identifier"][0]["value"] = json!("LAB-CR-1");
    obs["code"]["coding"][0] = json!({"system": "http://loinc.org", "code": "2160-0"});
    obs["valueQuantity"] =
        json!({"value": 1.5, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"});
    f.call(deliver(&obs)).await.expect("stored");
    let r = records.load("p1").await.expect("load").expect("record");
    assert_eq!(
        (r.results[0].value, r.results[0].unit.as_str()),
        (Some(132.63), "umol/L")
    );
}

#[tokio::test]
async fn an_amended_result_processed_before_the_original_stays_amended() {
    let (f, records, bus) = setup().await;
    let mut amended = potassium();
    amended["status"] = json!("amended");
    amended["issued"] = json!("2026-11-27T11:00:00Z");
    amended["valueQuantity"]["value"] = json!(5.1);
    f.call(deliver(&amended)).await.expect("amended");
    f.call(deliver(&potassium())).await.expect("original, requeued");
    let r = records.load("p1").await.expect("load").expect("record");
    assert_eq!(
        (r.results[0].status.as_str(), r.results[0].value),
        ("amended", Some(5.1))
    );
    assert_eq!(
        lane(&bus, "lab-resulted").len(),
        1,
        "the stale original is not announced"
    );
    assert_eq!(result_keys(&records), 1, "nor stored over the amended resource");
}

#[tokio::test]
async fn a_result_for_a_patient_not_seen_yet_is_kept_in_a_record_of_its_own() {
    let (f, records, bus) = setup().await;
    let mut stranger = potassium();
    stranger["subject"] = json!({"identifier": {"system": MRN_SYSTEM, "value": "NEW-1"}});
    let out = f.call(deliver(&stranger)).await.expect("kept");
    let pid = out.body.expect("body")["patient_id"].as_str().expect("id").to_owned();
    let r = records.load(&pid).await.expect("load").expect("record");
    assert!(!r.known && r.results.len() == 1);
    assert_eq!(r.mrn().as_deref(), Some("NEW-1"));
    let identity = Identifier {
        system: MRN_SYSTEM.into(),
        value: "NEW-1".into(),
    };
    assert_eq!(records.lookup(&identity).await.expect("lookup"), Some(pid));
    assert_eq!(lane(&bus, "lab-resulted").len(), 1, "and evaluated like any other");
}

#[tokio::test]
async fn bad_input_is_refused_with_a_reason_and_nothing_is_stored() {
    let (f, records, bus) = setup().await;
    let before = records.store.keys().len();
    let mut no_subject = potassium();
    no_subject.as_object_mut().expect("object").remove("subject");
    let err = f.call(deliver(&no_subject)).await.expect_err("no subject");
    assert_eq!(
        (err.kind, err.issues[0].location.as_str()),
        (FailureKind::Invalid, "/subject")
    );

    let mut bare = potassium();
    bare["subject"] = json!({"identifier": {"value": "NOBODY"}});
    let err = f.call(deliver(&bare)).await.expect_err("no system");
    assert!(err.issues[0].message.contains("MRN_SYSTEMS"), "{:?}", err.issues);

    let hl7 = Event::new(Trigger::DaprBinding, "lab-feed", "MSH|^~\\&|LAB|...");
    assert!(
        f.call(hl7)
            .await
            .expect_err("hl7")
            .message
            .contains("MSH segment is truncated")
    );
    // One bad Observation in a Bundle refuses the Bundle: nothing of it is stored.
    let mut bad = potassium();
    bad["status"] = json!("not-a-status");
    let bundle = json!({"resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": potassium()}, {"resource": bad}]});
    let err = f.call(deliver(&bundle)).await.expect_err("invalid entry");
    assert!(err.message.contains("Observation 2"), "{}", err.message);
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

    assert_eq!(records.store.keys().len(), before, "nothing stored");
    assert!(bus.messages("lab-resulted").is_empty(), "nothing announced");
}

#[tokio::test]
async fn two_patients_results_with_the_same_lab_identifier_are_kept_apart() {
    let (f, records, bus) = setup().await;
    seed(&records, "p2", "MRN0002").await;
    let first = potassium();
    let mut second = potassium();
    second["subject"] = json!({"identifier": {"system": MRN_SYSTEM, "value": "MRN0002"}});
    f.call(deliver(&first)).await.expect("first");
    f.call(deliver(&second)).await.expect("second");
    assert_eq!(result_keys(&records), 2);
    assert_eq!((results(&records, "p1").await, results(&records, "p2").await), (1, 1));
    let ids: Vec<Value> = lane(&bus, "lab-resulted")
        .iter()
        .map(|e| e["result_id"].clone())
        .collect();
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn a_result_in_a_unit_the_table_does_not_accept_is_stored_not_evaluable_with_the_reason() {
    let (f, records, bus) = setup().await;
    let mut wrong_unit = potassium();
    wrong_unit["valueQuantity"] = json!({"value": 7.1, "unit": "mg/dL"});
    let out = f.call(deliver(&wrong_unit)).await.expect("stored");
    assert_eq!(out.body.expect("body")["not_evaluable"], 1);
    let r = records.load("p1").await.expect("load").expect("record");
    let e = &r.results[0];
    assert_eq!(
        (e.value, e.reported_value, e.reported_unit.as_str()),
        (None, Some(7.1), "mg/dL")
    );
    assert!(e.not_evaluable.as_deref().is_some_and(|w| w.contains("mg/dL")), "{e:?}");
    assert_eq!(
        lane(&bus, "lab-resulted").len(),
        1,
        "announced; evaluate-alert will not compare it"
    );
}

#[tokio::test]
async fn creatinine_in_mg_per_decilitre_and_in_micromol_per_litre_give_the_same_canonical_value() {
    let (f, records, _) = setup().await;
    let creatinine = |id: &str, value: f64, unit: &str, loinc: &str| {
        let mut o = potassium();
        o["identifier"] = json!([{"system": "urn:lab", "value": id}]);
        o["code"] = json!({"coding": [{"system": "http://loinc.org", "code": loinc}]});
        o["valueQuantity"] = json!({"value": value, "unit": unit});
        o
    };
    f.call(deliver(&creatinine("c1", 1.5, "mg/dL", "2160-0")))
        .await
        .expect("mass");
    f.call(deliver(&creatinine("c2", 132.63, "µmol/L", "14682-9")))
        .await
        .expect("substance");
    f.call(deliver(&creatinine("c3", 0.13263, "mmol/L", "14682-9")))
        .await
        .expect("scale trap");
    let r = records.load("p1").await.expect("load").expect("record");
    let values: Vec<Option<f64>> = r.results.iter().map(|e| e.value).collect();
    assert_eq!(values, vec![Some(132.63); 3]);
    assert!(
        r.results
            .iter()
            .all(|e| e.unit == "umol/L" && e.analyte.as_deref() == Some("creatinine"))
    );
}

#[tokio::test]
async fn a_bundle_a_diagnostic_report_and_ndjson_are_all_taken() {
    let (f, records, bus) = setup().await;
    let with_id = |id: &str| {
        let mut o = potassium();
        o["identifier"] = json!([{"system": "urn:lab", "value": id}]);
        o
    };
    let patient = json!({"resourceType": "Patient", "id": "x",
        "identifier": [{"system": MRN_SYSTEM, "value": "MRN0001"}]});
    let mut by_urn = with_id("b1");
    by_urn["subject"] = json!({"reference": "urn:uuid:0c6f"});
    let mut contained = with_id("b2");
    contained["id"] = json!("k");
    contained.as_object_mut().expect("object").remove("subject");
    let bundle = json!({"resourceType": "Bundle", "type": "message", "entry": [
        {"resource": {"resourceType": "MessageHeader", "eventUri": "urn:x", "source": {"endpoint": "urn:lab"}}},
        {"fullUrl": "urn:uuid:0c6f", "resource": patient},
        {"resource": by_urn},
        {"resource": {"resourceType": "DiagnosticReport", "status": "final",
            "code": {"text": "U&E"}, "subject": {"reference": "urn:uuid:0c6f"},
            "contained": [contained], "result": [{"reference": "#k"}]}}]});
    let out = f.call(deliver(&bundle)).await.expect("bundle").body.expect("body");
    assert_eq!((out["results"].clone(), out["stored"].clone()), (json!(2), json!(2)));
    assert_eq!(
        out["skipped"],
        json!({"MessageHeader": 1}),
        "other types skipped and counted"
    );
    let ndjson = format!("{}\n{}\n", with_id("n1"), with_id("n2"));
    let out = f
        .call(Event::new(Trigger::DaprBinding, "lab-feed", ndjson))
        .await
        .expect("ndjson")
        .body
        .expect("body");
    assert_eq!(out["stored"], 2);
    assert_eq!(results(&records, "p1").await, 4);
    assert_eq!(lane(&bus, "lab-resulted").len(), 4);
}
