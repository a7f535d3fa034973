//! admit on memory adapters: no socket, no services.

use serde_json::{Value, json};
use wardwatch_adapters::{MemoryBus, MemoryEventLog, MemoryStateStore};
use wardwatch_domain::keys;
use wardwatch_domain::ports::{EventLog, Publisher, StateStore};
use wardwatch_domain::record::PatientRecord;
use wardwatch_records::{Locks, Records};
use wardwatch_runtime::{Event, FailureKind, Function, Trigger};

type Admit<P = MemoryBus> = admit::Admit<MemoryStateStore, MemoryEventLog, P>;

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn with_bus<P: Publisher + Clone>(bus: P) -> (Admit<P>, MemoryStateStore, MemoryEventLog) {
    let store = MemoryStateStore::default();
    let log = MemoryEventLog::default();
    let records = Records::new(store.clone(), log.clone(), bus, Locks::default());
    (admit::Admit::new(records, Default::default()), store, log)
}

fn setup() -> (Admit, MemoryStateStore, MemoryBus) {
    let bus = MemoryBus::default();
    let (f, store, _) = with_bus(bus.clone());
    (f, store, bus)
}

fn post(body: &Value) -> Event {
    Event::new(Trigger::Http, "/fhir", body.to_string())
}

/// Every record in the store.
async fn records(store: &MemoryStateStore) -> Vec<PatientRecord> {
    let mut out = Vec::new();
    for k in store.keys().into_iter().filter(|k| k.starts_with("record-")) {
        let v = store.get(&k).await.expect("get").expect("some");
        out.push(serde_json::from_slice(&v.data).expect("record"));
    }
    out
}

/// The patients a ward's index lists.
async fn on_ward(store: &MemoryStateStore, ward: &str) -> Vec<String> {
    let records = Records::new(
        store.clone(),
        MemoryEventLog::default(),
        MemoryBus::default(),
        Locks::default(),
    );
    records.ward_members(ward).await.expect("members")
}

fn lane(bus: &MemoryBus, name: &str) -> Vec<Value> {
    bus.messages(name)
        .iter()
        .map(|m| serde_json::from_slice(m).expect("json"))
        .collect()
}

#[tokio::test]
async fn a_transaction_bundle_admits_the_patient_to_the_ward_and_announces_it() {
    let (f, store, bus) = setup();
    let out = f
        .call(post(&fixture("examples/admission-bundle.json")))
        .await
        .expect("admitted");
    assert_eq!(out.body.as_ref().expect("body")["type"], "transaction-response");
    let records = records(&store).await;
    let r = &records[0];
    let p = r.placement.as_ref().expect("placed");
    assert_eq!(
        (r.mrn().as_deref(), p.ward.as_deref(), p.bed.as_deref()),
        (Some("MRN0001"), Some("Ward 7B"), Some("Bed 4"))
    );
    assert_eq!(on_ward(&store, "Ward 7B").await, vec![r.id.clone()]);
    let events = lane(&bus, "admissions");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "admitted");
    assert!(
        events[0]["id"].as_str().is_some_and(|id| id.contains('-')),
        "carries its log id"
    );
    assert!(events[0].get("name").is_none(), "no patient data beyond the listed ids");
}

#[tokio::test]
async fn posting_the_same_bundle_twice_duplicates_nothing() {
    let (f, store, _) = setup();
    let bundle = fixture("examples/admission-bundle.json");
    let first = f.call(post(&bundle)).await.expect("first");
    let second = f.call(post(&bundle)).await.expect("second");
    let answer = |out: &wardwatch_runtime::Output, i: usize| {
        let body = out.body.as_ref().expect("body");
        (
            body["entry"][i]["response"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body["entry"][i]["response"]["location"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    assert_eq!(answer(&first, 0).0, "201 Created");
    assert_eq!(answer(&second, 0).0, "200 OK", "the second time creates nothing");
    for i in 0..2 {
        assert_eq!(
            answer(&first, i).1,
            answer(&second, i).1,
            "same ids and versions both times"
        );
    }
    assert_eq!(records(&store).await.len(), 1);
    let patients = store.keys().into_iter().filter(|k| k.starts_with("patient-")).count();
    assert_eq!(patients, 1, "the same Patient version is stored once");
}

#[tokio::test]
async fn a_finished_encounter_discharges_the_patient() {
    let (f, store, bus) = setup();
    let mut bundle = fixture("examples/admission-bundle.json");
    f.call(post(&bundle)).await.expect("admitted");
    bundle["entry"][1]["resource"]["status"] = json!("finished");
    f.call(post(&bundle)).await.expect("discharged");
    assert!(on_ward(&store, "Ward 7B").await.is_empty());
    assert!(records(&store).await[0].placement.is_none());
    let last = lane(&bus, "admissions").pop().expect("event");
    assert_eq!(last["type"], "discharged");
}

#[tokio::test]
async fn the_official_patient_example_is_accepted_on_its_own() {
    let (f, store, _) = setup();
    let out = f
        .call(post(&fixture("fhir/examples/patient-example.json")))
        .await
        .expect("accepted");
    assert_eq!(out.status, 201);
    assert!(store.get(&keys::record("example")).await.expect("get").is_some());
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
    assert_eq!(err.http_status(), 422);
    assert_eq!(err.issues[0].location, "Bundle.type");
    assert!(
        err.issues[0].message.contains("transaction or a batch"),
        "{:?}",
        err.issues
    );
}

#[tokio::test]
async fn a_resource_type_admit_does_not_take_is_422() {
    let (f, _, _) = setup();
    let err = f
        .call(post(&fixture("examples/potassium-critical.json")))
        .await
        .expect_err("refused");
    assert_eq!(err.http_status(), 422);
    assert_eq!(err.issues[0].location, "Observation.resourceType");
    assert!(err.issues[0].message.contains("lab feed"), "{:?}", err.issues);
}

#[tokio::test]
async fn a_schema_violation_inside_the_bundle_names_its_entry_and_writes_nothing() {
    let (f, store, _) = setup();
    let mut bundle = fixture("examples/admission-bundle.json");
    bundle["entry"][0]["resource"]["gender"] = json!("sometimes");
    let err = f.call(post(&bundle)).await.expect_err("refused");
    assert_eq!(err.http_status(), 422);
    assert!(
        err.issues
            .iter()
            .any(|i| i.location == "Bundle.entry[0].resource.gender"),
        "{:?}",
        err.issues
    );
    assert!(store.keys().is_empty(), "nothing written");
}

#[tokio::test]
async fn a_patient_without_a_usable_identifier_is_kept_but_never_on_the_board() {
    let (f, store, _) = setup();
    let mut bundle = fixture("examples/admission-bundle.json");
    bundle["entry"][0]["resource"]["identifier"] = json!([{"value": "x"}]);
    let out = f.call(post(&bundle)).await.expect("a FHIR resource like any other");
    assert_eq!(
        out.body.as_ref().expect("body")["entry"][0]["response"]["status"],
        "201 Created"
    );
    let r = &records(&store).await[0];
    assert!(r.known && r.identity.is_none());
    assert!(r.placement.is_none(), "the board needs an identifier");
    assert!(on_ward(&store, "Ward 7B").await.is_empty());
}

#[tokio::test]
async fn a_patient_with_a_system_only_identifier_is_admitted_with_no_configuration() {
    let (f, store, _) = setup();
    let mut bundle = fixture("examples/admission-bundle.json");
    bundle["entry"][0]["resource"]["identifier"] =
        json!([{"system": "urn:oid:2.16.840.1.113883.19.5", "value": "abc-1"}]);
    f.call(post(&bundle)).await.expect("admitted");
    let r = &records(&store).await[0];
    assert_eq!(r.mrn().as_deref(), Some("abc-1"));
    assert!(r.placement.is_some());
}

#[tokio::test]
async fn the_same_hospital_number_under_two_systems_is_two_patients() {
    let (f, store, _) = setup();
    for (system, bed) in [
        ("https://hospital-a.example/mrn", "Bed 1"),
        ("https://hospital-b.example/mrn", "Bed 2"),
    ] {
        let mut bundle = fixture("examples/admission-bundle.json");
        bundle["entry"][0]["resource"]["identifier"][0]["system"] = json!(system);
        bundle["entry"][0]["resource"]["identifier"][0]["value"] = json!("555");
        bundle["entry"][1]["resource"]["location"][1]["location"]["display"] = json!(bed);
        f.call(post(&bundle)).await.expect("admitted");
    }
    let records = records(&store).await;
    assert_eq!(records.len(), 2);
    assert_eq!(
        on_ward(&store, "Ward 7B").await.len(),
        2,
        "both on the ward, neither replaced"
    );
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
async fn an_identifier_held_by_another_patient_id_is_a_conflict() {
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
    let last = lane(&bus, "admissions").pop().expect("event");
    assert_eq!(last["type"], "transferred");
    assert_eq!(
        records(&store).await[0]
            .placement
            .as_ref()
            .and_then(|p| p.bed.as_deref()),
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
    let bus = MemoryBus::default();
    let flaky = Flaky {
        bus: bus.clone(),
        failures: std::sync::Arc::new(1.into()),
    };
    let (f, _, log) = with_bus(flaky);
    let bundle = fixture("examples/admission-bundle.json");
    let err = f.call(post(&bundle)).await.expect_err("publisher down");
    assert_eq!(err.http_status(), 503);
    f.call(post(&bundle)).await.expect("retried");
    let events = lane(&bus, "admissions");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "admitted", "re-driven from the outbox, not lost");
    let logged = log.read(None, 10).await.expect("log").events;
    assert_eq!(logged.len(), 1, "appended to the log once, although drained twice");
    assert_eq!(logged[0].id, events[0]["id"].as_str().expect("id"));
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
    encounter["subject"] = json!({"identifier": {"system": "urn:h", "value": "a||b"}});
    assert_eq!(
        f.call(post(&encounter)).await.expect_err("refused").kind,
        FailureKind::NotFound
    );
}

#[tokio::test]
async fn a_resource_type_that_is_not_fhir_is_400_and_an_entry_of_another_type_is_skipped() {
    let (f, _, _) = setup();
    assert_eq!(
        f.call(post(&json!({"resourceType": "Pateint"})))
            .await
            .expect_err("refused")
            .http_status(),
        400
    );
    // An entry of a type admit does not keep is accepted and skipped, never sinking the Bundle.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [{"resource": {"resourceType": "Observation"}, "request": {"method": "POST", "url": "Observation"}}]});
    let out = f.call(post(&bundle)).await.expect("accepted");
    let entry = &out.body.as_ref().expect("body")["entry"][0]["response"];
    assert_eq!(entry["status"], "202 Accepted");
    assert!(
        entry["outcome"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("not kept")
    );
}

/// A store that fails the `n`-th write of a patient record once (an outage part-way through
/// a request), and otherwise is the memory store.
#[derive(Clone)]
struct FailingOnce {
    inner: MemoryStateStore,
    record_writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    fail_at: usize,
}

impl StateStore for FailingOnce {
    async fn get(
        &self,
        key: &str,
    ) -> Result<Option<wardwatch_domain::ports::Versioned>, wardwatch_domain::ports::PortError> {
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, data: &[u8], etag: Option<&str>) -> Result<(), wardwatch_domain::ports::PortError> {
        if key.starts_with("record-")
            && self.record_writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == self.fail_at
        {
            return Err(wardwatch_domain::ports::PortError::Unavailable(
                "injected outage".into(),
            ));
        }
        self.inner.set(key, data, etag).await
    }
    async fn delete(&self, key: &str, etag: Option<&str>) -> Result<(), wardwatch_domain::ports::PortError> {
        self.inner.delete(key, etag).await
    }
    async fn ping(&self) -> Result<(), wardwatch_domain::ports::PortError> {
        Ok(())
    }
}

fn two_patient_transaction() -> Value {
    let mut bundle = fixture("examples/admission-bundle.json");
    let mut second = bundle["entry"].as_array().expect("entries").clone();
    second[0]["fullUrl"] = json!("urn:uuid:2f6b9f1e-0d2c-4c53-9a53-6f3c1c0a0011");
    second[0]["resource"]["identifier"][0]["value"] = json!("MRN0002");
    second[1]["fullUrl"] = json!("urn:uuid:2f6b9f1e-0d2c-4c53-9a53-6f3c1c0a0012");
    second[1]["resource"]["identifier"][0]["value"] = json!("SPELL0002");
    second[1]["resource"]["subject"]["reference"] = json!("urn:uuid:2f6b9f1e-0d2c-4c53-9a53-6f3c1c0a0011");
    second[1]["resource"]["location"][1]["location"]["display"] = json!("Bed 5");
    bundle["entry"].as_array_mut().expect("entries").extend(second);
    bundle
}

#[tokio::test]
async fn a_transaction_of_two_patients_cut_off_part_way_is_finished_at_start_up_and_by_a_retry() {
    let memory = MemoryStateStore::default();
    let failing = FailingOnce {
        inner: memory.clone(),
        record_writes: Default::default(),
        fail_at: 2,
    };
    let log = MemoryEventLog::default();
    let repo = Records::new(failing, log.clone(), MemoryBus::default(), Locks::default());
    let f = admit::Admit::new(repo, Default::default());
    let bundle = two_patient_transaction();
    let err = f.call(post(&bundle)).await.expect_err("cut off part-way");
    assert_eq!(err.http_status(), 503);
    // One patient written, the other not, and the intent kept.
    assert_eq!(records(&memory).await.len(), 1);
    assert!(memory.keys().iter().any(|k| k.starts_with("intent-")));
    assert_eq!(on_ward(&memory, "Ward 7B").await.len(), 1);

    // The next start-up finishes it (a fresh process on the same store).
    let restarted: Admit = admit::Admit::new(
        Records::new(memory.clone(), log.clone(), MemoryBus::default(), Locks::default()),
        Default::default(),
    );
    assert_eq!(restarted.roll_forward().await, Ok(1));
    assert_eq!(records(&memory).await.len(), 2);
    assert_eq!(on_ward(&memory, "Ward 7B").await.len(), 2);
    assert!(
        !memory.keys().iter().any(|k| k.starts_with("intent-")),
        "the intent is done"
    );
    assert_eq!(restarted.roll_forward().await, Ok(0));

    // A retry of the same Bundle instead: the same end, nothing twice.
    let store = MemoryStateStore::default();
    let failing = FailingOnce {
        inner: store.clone(),
        record_writes: Default::default(),
        fail_at: 2,
    };
    let bus = MemoryBus::default();
    let f = admit::Admit::new(
        Records::new(failing, MemoryEventLog::default(), bus.clone(), Locks::default()),
        Default::default(),
    );
    f.call(post(&bundle)).await.expect_err("cut off part-way");
    let out = f.call(post(&bundle)).await.expect("the retry finishes it");
    assert_eq!(out.status, 200);
    assert_eq!(records(&store).await.len(), 2);
    assert!(!store.keys().iter().any(|k| k.starts_with("intent-")));
    let admitted = lane(&bus, "admissions")
        .iter()
        .filter(|e| e["type"] == "admitted")
        .count();
    assert_eq!(admitted, 2, "each patient announced once");
}

#[tokio::test]
async fn an_intent_refused_for_good_at_start_up_is_dropped_not_retried_forever() {
    let (f, store, _) = setup();
    // A transaction left part-way whose rest now refers to nobody (as if what it named changed).
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"},
                     "subject": {"reference": "Patient/nobody"}},
        "request": {"method": "POST", "url": "Encounter"}
    }]});
    let intent = json!({"bundle": bundle, "received_at": "2026-01-01T00:00:00Z"});
    store
        .set(&keys::intent("abc"), intent.to_string().as_bytes(), None)
        .await
        .expect("set");
    store
        .set(keys::INTENTS, br#"{"intents":["abc"]}"#, None)
        .await
        .expect("set");
    assert_eq!(f.roll_forward().await, Ok(0));
    assert!(
        !store.keys().iter().any(|k| k.starts_with("intent-")),
        "dropped: {:?}",
        store.keys()
    );
    let list = store.get(keys::INTENTS).await.expect("get").expect("list");
    assert_eq!(
        serde_json::from_slice::<Value>(&list.data).expect("json")["intents"],
        json!([])
    );
}
