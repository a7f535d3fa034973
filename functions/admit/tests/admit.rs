//! admit on memory adapters: no socket, no services.

use serde_json::{Value, json};
use wardwatch_adapters::{MemoryBus, MemoryStateStore};
use wardwatch_domain::events::{Census, keys};
use wardwatch_domain::ports::{StateStore, get_json};
use wardwatch_runtime::{Event, FailureKind, Function, Trigger};

type Admit = admit::Admit<MemoryStateStore, MemoryBus>;

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn setup() -> (Admit, MemoryStateStore, MemoryBus) {
    let store = MemoryStateStore::default();
    let bus = MemoryBus::default();
    (admit::Admit::new(store.clone(), bus.clone(), None), store, bus)
}

fn post(body: &Value) -> Event {
    Event::new(Trigger::Http, "/fhir", body.to_string())
}

async fn census(store: &MemoryStateStore) -> Census {
    get_json(store, keys::CENSUS)
        .await
        .expect("get")
        .map(|(c, _)| c)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_transaction_bundle_admits_the_patient_to_the_census_and_announces_it() {
    let (f, store, bus) = setup();
    let out = f
        .call(post(&fixture("examples/admission-bundle.json")))
        .await
        .expect("admitted");
    assert_eq!(out.body.as_ref().expect("body")["type"], "transaction-response");
    let census = census(&store).await;
    let entry = census.patients.values().next().expect("one inpatient");
    assert_eq!(
        (entry.mrn.as_str(), entry.ward.as_deref(), entry.bed.as_deref()),
        ("MRN0001", Some("Ward 7B"), Some("Bed 4"))
    );
    let events = bus.messages("admissions");
    assert_eq!(events.len(), 1);
    let event: Value = serde_json::from_slice(&events[0]).expect("json");
    assert_eq!(event["kind"], "admitted");
}

#[tokio::test]
async fn posting_the_same_bundle_twice_duplicates_nothing() {
    let (f, store, _) = setup();
    let bundle = fixture("examples/admission-bundle.json");
    let first = f.call(post(&bundle)).await.expect("first");
    let second = f.call(post(&bundle)).await.expect("second");
    assert_eq!(first, second, "same ids both times");
    assert_eq!(census(&store).await.patients.len(), 1);
    let patients = store.keys().into_iter().filter(|k| k.starts_with("patient-")).count();
    assert_eq!(patients, 1);
}

#[tokio::test]
async fn a_finished_encounter_discharges_the_patient() {
    let (f, store, bus) = setup();
    let mut bundle = fixture("examples/admission-bundle.json");
    f.call(post(&bundle)).await.expect("admitted");
    bundle["entry"][1]["resource"]["status"] = json!("finished");
    f.call(post(&bundle)).await.expect("discharged");
    assert!(census(&store).await.patients.is_empty());
    let last: Value = serde_json::from_slice(bus.messages("admissions").last().expect("event")).expect("json");
    assert_eq!(last["kind"], "discharged");
}

#[tokio::test]
async fn the_official_patient_example_is_accepted_on_its_own() {
    let (f, store, _) = setup();
    let out = f
        .call(post(&fixture("fhir/examples/patient-example.json")))
        .await
        .expect("accepted");
    assert_eq!(out.status, 201);
    assert!(store.get("patient-example").await.expect("get").is_some());
}

#[tokio::test]
async fn malformed_json_is_invalid_with_its_position() {
    let (f, _, _) = setup();
    let err = f
        .call(Event::new(Trigger::Http, "/fhir", "{\"resourceType\":"))
        .await
        .expect_err("refused");
    assert_eq!((err.kind, err.http_status()), (FailureKind::Invalid, 400));
    assert!(err.message.contains("line 1"), "{}", err.message);
}

#[tokio::test]
async fn a_bundle_that_is_not_a_transaction_is_refused() {
    let (f, _, _) = setup();
    let mut bundle = fixture("examples/admission-bundle.json");
    bundle["type"] = json!("collection");
    let err = f.call(post(&bundle)).await.expect_err("refused");
    assert_eq!(err.http_status(), 400);
    assert!(err.message.contains("transaction"), "{}", err.message);
}

#[tokio::test]
async fn a_resource_type_admit_does_not_take_is_422() {
    let (f, _, _) = setup();
    let err = f
        .call(post(&fixture("examples/potassium-critical.json")))
        .await
        .expect_err("refused");
    assert_eq!(err.http_status(), 422);
}

#[tokio::test]
async fn a_schema_violation_inside_the_bundle_names_its_entry_and_writes_nothing() {
    let (f, store, _) = setup();
    let mut bundle = fixture("examples/admission-bundle.json");
    bundle["entry"][0]["resource"]["gender"] = json!("sometimes");
    let err = f.call(post(&bundle)).await.expect_err("refused");
    assert_eq!(err.http_status(), 400);
    assert!(
        err.issues.iter().any(|i| i.location == "/entry/0/resource/gender"),
        "{:?}",
        err.issues
    );
    assert!(store.keys().is_empty(), "nothing written");
}

#[tokio::test]
async fn a_patient_without_an_mrn_is_422_at_its_identifier() {
    let (f, _, _) = setup();
    let mut bundle = fixture("examples/admission-bundle.json");
    bundle["entry"][0]["resource"]["identifier"] = json!([{"value": "x"}]);
    let err = f.call(post(&bundle)).await.expect_err("refused");
    assert_eq!(err.http_status(), 422);
    assert_eq!(err.issues[0].location, "/entry/0/resource/identifier");
}

#[tokio::test]
async fn an_encounter_for_an_unknown_patient_is_refused() {
    let (f, _, _) = setup();
    let bundle = fixture("examples/admission-bundle.json");
    let mut encounter = bundle["entry"][1]["resource"].clone();
    encounter["subject"] = json!({"reference": "Patient/nobody"});
    let err = f.call(post(&encounter)).await.expect_err("refused");
    assert_eq!(err.kind, FailureKind::NotFound);
}

#[tokio::test]
async fn an_mrn_held_by_another_patient_id_is_a_conflict() {
    let (f, _, _) = setup();
    let bundle = fixture("examples/admission-bundle.json");
    let mut a = bundle["entry"][0]["resource"].clone();
    a["id"] = json!("pa");
    f.call(post(&a)).await.expect("first");
    a["id"] = json!("pb");
    let err = f.call(post(&a)).await.expect_err("refused");
    assert_eq!(err.http_status(), 409);
}

#[tokio::test]
async fn only_post_is_accepted() {
    let (f, _, _) = setup();
    let mut e = post(&fixture("examples/admission-bundle.json"));
    e.context.method = Some("DELETE".into());
    assert_eq!(f.call(e).await.expect_err("refused").http_status(), 405);
}
