//! admit's FHIR REST API on memory adapters, as a client's odd requests meet it.

use serde_json::{Value, json};
use wardwatch_adapters::{MemoryBus, MemoryEventLog, MemoryStateStore};
use wardwatch_records::{Locks, Records};
use wardwatch_runtime::{Event, Failure, Function, Output, Trigger};

type Admit = admit::Admit<MemoryStateStore, MemoryEventLog, MemoryBus>;
const MRN: &str = "https://fhir.example-hospital.nhs.uk/Id/mrn";

fn setup() -> Admit {
    let records = Records::new(
        MemoryStateStore::default(),
        MemoryEventLog::default(),
        MemoryBus::default(),
        Locks::default(),
    );
    admit::Admit::new(records, Default::default())
}

async fn call(
    f: &Admit,
    method: &str,
    path: &str,
    query: Option<&str>,
    body: Option<&Value>,
) -> Result<Output, Failure> {
    let mut e = Event::new(Trigger::Http, path, body.map(Value::to_string).unwrap_or_default());
    e.context.method = Some(method.to_owned());
    e.context.query = query.map(str::to_owned);
    f.call(e).await
}

fn patient(mrn: &str, family: &str) -> Value {
    json!({"resourceType": "Patient", "identifier": [{"system": MRN, "value": mrn}], "name": [{"family": family}]})
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .and_then(|l| l["url"].as_str())
        .map(str::to_owned)
}

#[tokio::test]
async fn any_offset_a_client_sends_is_answered_not_a_panic() {
    let f = setup();
    call(&f, "PUT", "/fhir/Patient/p1", None, Some(&patient("M1", "A")))
        .await
        .expect("stored");
    let far = call(
        &f,
        "GET",
        "/fhir/Patient",
        Some("_id=p1&_offset=18446744073709551615"),
        None,
    )
    .await
    .expect("an empty page");
    let body = far.body.expect("body");
    assert_eq!(body["total"], 1);
    assert_eq!(link(&body, "next"), None);
}

#[tokio::test]
async fn a_count_of_zero_answers_the_total_with_no_next_page() {
    let f = setup();
    call(&f, "PUT", "/fhir/Patient/p1", None, Some(&patient("M1", "A")))
        .await
        .expect("stored");
    let out = call(&f, "GET", "/fhir/Patient", Some("_id=p1&_count=0"), None)
        .await
        .expect("searched");
    let body = out.body.expect("body");
    assert_eq!(body["total"], 1);
    assert_eq!(
        link(&body, "next"),
        None,
        "a next link to the same page never ends: {body}"
    );
}

fn transaction(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn put_entry(url: &str, resource: Value) -> Value {
    json!({"resource": resource, "request": {"method": "PUT", "url": url}})
}

async fn read(f: &Admit, path: &str) -> Value {
    call(f, "GET", path, None, None)
        .await
        .expect("read")
        .body
        .expect("body")
}

#[tokio::test]
async fn a_transaction_put_after_a_rest_put_is_applied() {
    let f = setup();
    call(&f, "PUT", "/fhir/Patient/p1", None, Some(&patient("M1", "Before")))
        .await
        .expect("stored");
    let bundle = transaction(vec![put_entry("Patient/p1", patient("M1", "After"))]);
    let out = call(&f, "POST", "/fhir", None, Some(&bundle)).await.expect("taken");
    let body = out.body.expect("body");
    assert_eq!(body["entry"][0]["response"]["etag"], "W/\"2\"", "{body}");
    let stored = read(&f, "/fhir/Patient/p1").await;
    assert_eq!(stored["name"][0]["family"], "After");
}

#[tokio::test]
async fn a_resource_read_and_put_back_in_a_transaction_gets_a_new_version_only_when_changed() {
    let f = setup();
    call(&f, "PUT", "/fhir/Patient/p1", None, Some(&patient("M1", "Same")))
        .await
        .expect("stored");
    for _ in 0..3 {
        let as_read = read(&f, "/fhir/Patient/p1").await;
        let bundle = transaction(vec![put_entry("Patient/p1", as_read)]);
        call(&f, "POST", "/fhir", None, Some(&bundle)).await.expect("taken");
    }
    assert_eq!(read(&f, "/fhir/Patient/p1").await["meta"]["versionId"], "1");
    // Changed after the read, `meta.lastUpdated` sent back as read: applied, not dropped as older.
    let mut changed = read(&f, "/fhir/Patient/p1").await;
    changed["name"][0]["family"] = json!("Changed");
    let bundle = transaction(vec![put_entry("Patient/p1", changed)]);
    call(&f, "POST", "/fhir", None, Some(&bundle)).await.expect("taken");
    let stored = read(&f, "/fhir/Patient/p1").await;
    assert_eq!(
        (stored["name"][0]["family"].clone(), stored["meta"]["versionId"].clone()),
        (json!("Changed"), json!("2"))
    );
}

#[tokio::test]
async fn the_same_update_transaction_ten_times_makes_one_version_of_each() {
    let f = setup();
    let stay = json!({
        "resourceType": "Encounter", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-12-01T08:00:00Z"},
        "location": [{"location": {"display": "Ward 7B"}, "status": "active", "physicalType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "wa"}]}}]
    });
    let bundle = transaction(vec![
        put_entry("Patient/p1", patient("M1", "A")),
        put_entry("Encounter/e1", stay),
    ]);
    for _ in 0..10 {
        call(&f, "POST", "/fhir", None, Some(&bundle)).await.expect("taken");
    }
    assert_eq!(read(&f, "/fhir/Patient/p1").await["meta"]["versionId"], "1");
    assert_eq!(read(&f, "/fhir/Encounter/e1").await["meta"]["versionId"], "1");
}

#[tokio::test]
async fn two_entries_of_one_transaction_that_come_to_the_same_patient_are_refused_naming_the_second() {
    let f = setup();
    let post =
        |family: &str| json!({"resource": patient("M9", family), "request": {"method": "POST", "url": "Patient"}});
    let bundle = transaction(vec![post("One"), post("Two")]);
    let refused = call(&f, "POST", "/fhir", None, Some(&bundle))
        .await
        .expect_err("one patient twice");
    assert_eq!(refused.http_status(), 422);
    assert_eq!(refused.outcome()["issue"][0]["expression"][0], "Bundle.entry[1]");
    let found = call(&f, "GET", "/fhir/Patient", Some(&format!("identifier={MRN}|M9")), None)
        .await
        .expect("searched");
    assert_eq!(found.body.expect("body")["total"], 0, "nothing written");
}

/// Needs Redis on 127.0.0.1:6379 (the store that refuses keys with `||`).
#[tokio::test]
async fn a_patient_search_value_that_cannot_be_an_id_finds_nothing_on_redis_too() {
    let url = wardwatch_runtime::Secret::new("redis://127.0.0.1:6379".to_owned());
    let prefix = format!("admit-test-{}", uuid_like());
    let store = wardwatch_adapters::redis::RedisStateStore::new(&url, &prefix).expect("redis url");
    let records = Records::new(store, MemoryEventLog::default(), MemoryBus::default(), Locks::default());
    let f = admit::Admit::new(records, Default::default());
    for query in ["patient=a%7C%7Cb", "subject=Patient/a%7C%7Cb", "patient="] {
        let mut e = Event::new(Trigger::Http, "/fhir/Encounter", Vec::<u8>::new());
        e.context.method = Some("GET".into());
        e.context.query = Some(query.into());
        let out = f
            .call(e)
            .await
            .unwrap_or_else(|f| panic!("{query}: {} {}", f.http_status(), f.message));
        assert_eq!(out.body.expect("body")["total"], 0, "{query}");
    }
}

fn uuid_like() -> String {
    format!("{}-{:?}", std::process::id(), std::time::SystemTime::now())
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}
