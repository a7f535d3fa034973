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

#[tokio::test]
async fn posting_the_same_bundle_twice_announces_the_admission_once() {
    let (f, _, bus) = setup();
    let bundle = fixture("examples/admission-bundle.json");
    f.call(post(&bundle)).await.expect("first");
    f.call(post(&bundle)).await.expect("second");
    assert_eq!(bus.messages("admissions").len(), 1);
}

#[tokio::test]
async fn a_move_to_another_bed_is_announced_as_a_transfer() {
    let (f, store, bus) = setup();
    let mut bundle = fixture("examples/admission-bundle.json");
    f.call(post(&bundle)).await.expect("admitted");
    bundle["entry"][1]["resource"]["location"][1]["location"]["display"] = json!("Bed 9");
    f.call(post(&bundle)).await.expect("moved");
    let last: Value = serde_json::from_slice(bus.messages("admissions").last().expect("event")).expect("json");
    assert_eq!(
        (last["kind"].as_str(), last["bed"].as_str()),
        (Some("transferred"), Some("Bed 9"))
    );
    assert_eq!(
        census(&store)
            .await
            .patients
            .values()
            .next()
            .expect("entry")
            .bed
            .as_deref(),
        Some("Bed 9")
    );
}

/// A publisher that is down for its first `failures` calls.
#[derive(Clone)]
struct Flaky {
    bus: MemoryBus,
    failures: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl wardwatch_domain::ports::Publisher for Flaky {
    async fn publish(&self, lane: &str, payload: &[u8]) -> Result<(), wardwatch_domain::ports::PortError> {
        use std::sync::atomic::Ordering;
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(wardwatch_domain::ports::PortError::Unavailable("down".into()));
        }
        self.bus.publish(lane, payload).await
    }
    async fn ping(&self) -> Result<(), wardwatch_domain::ports::PortError> {
        Ok(())
    }
}

#[tokio::test]
async fn when_the_announcement_fails_the_retry_still_announces_the_admission() {
    let store = MemoryStateStore::default();
    let bus = MemoryBus::default();
    let flaky = Flaky {
        bus: bus.clone(),
        failures: std::sync::Arc::new(1.into()),
    };
    let f = admit::Admit::new(store.clone(), flaky, None);
    let bundle = fixture("examples/admission-bundle.json");
    let err = f.call(post(&bundle)).await.expect_err("publisher down");
    assert_eq!(err.http_status(), 503);
    f.call(post(&bundle)).await.expect("retried");
    let events = bus.messages("admissions");
    assert_eq!(events.len(), 1);
    let event: Value = serde_json::from_slice(&events[0]).expect("json");
    assert_eq!(event["kind"], "admitted", "not lost as an `updated`");
}

#[tokio::test]
async fn a_subject_that_cannot_be_a_key_is_refused_not_an_internal_error() {
    let (f, _, _) = setup();
    let bundle = fixture("examples/admission-bundle.json");
    let mut encounter = bundle["entry"][1]["resource"].clone();
    encounter["subject"] = json!({"reference": "Patient/a||b"});
    assert_eq!(
        f.call(post(&encounter)).await.expect_err("refused").kind,
        FailureKind::NotFound
    );
    encounter["subject"] = json!({"identifier": {"value": "a||b"}});
    assert_eq!(
        f.call(post(&encounter)).await.expect_err("refused").kind,
        FailureKind::NotFound
    );
}

#[tokio::test]
async fn a_resource_type_that_is_not_fhir_is_400_and_a_bundle_of_other_types_422() {
    let (f, _, _) = setup();
    assert_eq!(
        f.call(post(&json!({"resourceType": "Pateint"})))
            .await
            .expect_err("refused")
            .http_status(),
        400
    );
    let bundle = json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [{"resource": {"resourceType": "Observation"}, "request": {"method": "POST", "url": "Observation"}}]});
    let err = f.call(post(&bundle)).await.expect_err("refused");
    assert_eq!(
        (err.http_status(), err.issues[0].location.as_str()),
        (422, "/entry/0/resource/resourceType")
    );
}
