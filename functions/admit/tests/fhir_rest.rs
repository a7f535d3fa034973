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
