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

fn encounter(id: &str, subject: &str) -> Value {
    json!({"resourceType": "Encounter", "id": id, "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": subject},
        "location": [{"location": {"display": "Ward 2"}, "physicalType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "wa"}]}}]})
}

async fn call_with(
    f: &Admit,
    method: &str,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Result<Output, Failure> {
    let mut e = Event::new(Trigger::Http, path, body.to_string());
    e.context.method = Some(method.to_owned());
    e.context.headers = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    f.call(e).await
}

#[tokio::test]
async fn if_match_star_needs_the_resource_to_exist_and_any_version_will_do() {
    let f = setup();
    let missing = call_with(&f, "PUT", "/fhir/Patient/p9", &patient("M9", "A"), &[("if-match", "*")]).await;
    assert_eq!(missing.expect_err("nothing to match").http_status(), 412);
    call(&f, "PUT", "/fhir/Patient/p9", None, Some(&patient("M9", "A")))
        .await
        .expect("created");
    let star = call_with(&f, "PUT", "/fhir/Patient/p9", &patient("M9", "B"), &[("if-match", "*")])
        .await
        .expect("any version");
    assert_eq!(star.status, 200);
}

#[tokio::test]
async fn a_bundle_put_with_a_stale_if_match_is_412_and_writes_nothing_of_the_transaction() {
    let f = setup();
    call(&f, "PUT", "/fhir/Patient/p1", None, Some(&patient("M1", "A")))
        .await
        .expect("v1");
    call(&f, "PUT", "/fhir/Patient/p1", None, Some(&patient("M1", "B")))
        .await
        .expect("v2");
    let bundle = |tag: &str, family: &str| {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "identifier": [{"system": MRN, "value": "M1"}], "name": [{"family": family}]},
             "request": {"method": "PUT", "url": "Patient/p1", "ifMatch": tag}}]})
    };
    let stale = call(&f, "POST", "/fhir", None, Some(&bundle("W/\"1\"", "C"))).await;
    assert_eq!(stale.expect_err("stale").http_status(), 412);
    let read = call(&f, "GET", "/fhir/Patient/p1", None, None).await.expect("read");
    assert_eq!(read.body.expect("body")["name"][0]["family"], "B");
    let fresh = call(&f, "POST", "/fhir", None, Some(&bundle("W/\"2\"", "C")))
        .await
        .expect("current");
    assert_eq!(fresh.body.expect("body")["entry"][0]["response"]["etag"], "W/\"3\"");
    // In a batch, the stale entry alone fails.
    let mut batch = bundle("W/\"1\"", "D");
    batch["type"] = json!("batch");
    let out = call(&f, "POST", "/fhir", None, Some(&batch))
        .await
        .expect("a batch answers");
    assert_eq!(
        out.body.expect("body")["entry"][0]["response"]["status"],
        "412 Precondition Failed"
    );
}

#[tokio::test]
async fn posting_a_deleted_admission_again_is_a_conflict_not_a_410() {
    let f = setup();
    call(&f, "PUT", "/fhir/Patient/p1", None, Some(&patient("M1", "A")))
        .await
        .expect("patient");
    let e = encounter("e1", "Patient/p1");
    call(&f, "POST", "/fhir/Encounter", None, Some(&e))
        .await
        .expect("admitted");
    call(&f, "DELETE", "/fhir/Encounter/e1", None, None)
        .await
        .expect("deleted");
    let again = call(&f, "POST", "/fhir/Encounter", None, Some(&e))
        .await
        .expect_err("stays deleted");
    assert_eq!(again.http_status(), 409, "{}", again.message);
    // A PUT restores it.
    let put = call(&f, "PUT", "/fhir/Encounter/e1", None, Some(&e))
        .await
        .expect("restored");
    assert!(matches!(put.status, 200 | 201));
    assert_eq!(
        call(&f, "GET", "/fhir/Encounter/e1", None, None)
            .await
            .expect("read")
            .status,
        200
    );
}
