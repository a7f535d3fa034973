//! The FHIR REST API of admit over real HTTP, as a FHIR client meets it: the
//! CapabilityStatement, create / read / vread / update with versions and `If-Match`,
//! conditional create and update, search with paging, delete of a mistaken admission,
//! conformant `transaction` and `batch` Bundles, media types, and every official example of
//! the kept types stored and readable (its broken variants refused naming the element).

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Host, config, fixture};

const MRN: &str = "https://fhir.example-hospital.nhs.uk/Id/mrn";

struct Api {
    host: Host,
    client: reqwest::Client,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Api {
    async fn new() -> Self {
        Self {
            host: Host::spawn(config(&[("ESCALATE_EVERY", "0")])).await,
            client: reqwest::Client::new(),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Answer {
        let mut r = self.client.request(method, self.host.url(path));
        if let Some(body) = body {
            r = r.header("content-type", "application/fhir+json").body(body.to_string());
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let r = r.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
        };
        Answer { status, headers, body }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, &[]).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    async fn put(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
        self.send(Method::PUT, path, Some(body), headers).await
    }

    /// Who is on the board: (mrn, ward, bed).
    async fn board(&self) -> Vec<(String, String, String)> {
        let list = self.host.get_json("/api/inpatients").await;
        list.as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let s = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
                (s("mrn"), s("ward"), s("bed"))
            })
            .collect()
    }
}

fn patient(mrn: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": MRN, "value": mrn}],
        "name": [{"family": "Example", "given": ["Sam"]}],
        "gender": "female",
        "birthDate": "1951-02-03"
    })
}

fn stay(subject: &str, ward: &str, bed: &str, status: &str) -> Value {
    let loc = |name: &str, code: &str| json!({"location": {"display": name}, "status": "active", "physicalType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": code}]}});
    json!({
        "resourceType": "Encounter",
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": subject},
        "period": {"start": "2026-12-01T08:00:00Z"},
        "location": [loc(ward, "wa"), loc(bed, "bd")]
    })
}

#[tokio::test]
async fn a_client_reads_the_capability_statement_and_unsupported_methods_say_what_is_allowed() {
    let api = Api::new().await;
    let r = api.get("/fhir/metadata").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/fhir+json"));
    assert_eq!(r.body["resourceType"], "CapabilityStatement");
    assert_eq!(r.body["fhirVersion"], "4.0.1");
    let types: Vec<&str> = r.body["rest"][0]["resource"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["type"].as_str())
        .collect();
    assert_eq!(types, ["Patient", "Encounter", "Observation"]);
    let delete = r.body["rest"][0]["resource"][1]["interaction"]
        .as_array()
        .expect("interactions")
        .iter()
        .find(|i| i["code"] == "delete")
        .expect("Encounter delete is declared");
    assert!(delete["documentation"].as_str().unwrap_or_default().contains("board"));

    for (method, path, allow) in [
        (Method::DELETE, "/fhir/Patient/p1", "GET, PUT"),
        (Method::PATCH, "/fhir/Encounter/e1", "GET, PUT, DELETE"),
        (Method::PUT, "/fhir/Observation", "GET"),
        (Method::POST, "/fhir/metadata", "GET"),
        (Method::GET, "/fhir", "POST"),
    ] {
        let r = api.send(method.clone(), path, Some(&json!({})), &[]).await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(r.body["resourceType"], "OperationOutcome");
    }
    api.host.stop().await;
}

#[tokio::test]
async fn create_read_update_with_versions_conditional_create_and_search() {
    let api = Api::new().await;
    // Create: 201, Location with the version, ETag, Last-Modified, meta set by the server.
    let created = api.post("/fhir/Patient", &patient("V100")).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let location = created.header("location").expect("Location");
    assert!(
        location.ends_with(&format!("/fhir/Patient/{id}/_history/1")),
        "{location}"
    );
    assert!(location.starts_with("http://"), "an absolute URL: {location}");
    assert_eq!(created.header("etag"), Some("W/\"1\""));
    assert!(created.header("last-modified").is_some_and(|d| d.ends_with("GMT")));
    assert_eq!(created.body["meta"]["versionId"], "1");
    assert!(created.body["meta"]["lastUpdated"].is_string());

    // Read and vread of the current version; another version is 404.
    let read = api.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!((read.status.as_u16(), read.header("etag")), (200, Some("W/\"1\"")));
    assert_eq!(read.body["identifier"][0]["value"], "V100");
    assert_eq!(api.get(&format!("/fhir/Patient/{id}/_history/1")).await.status, 200);
    assert_eq!(api.get(&format!("/fhir/Patient/{id}/_history/7")).await.status, 404);
    assert_eq!(api.get("/fhir/Patient/nobody").await.status, 404);

    // Conditional create finds the patient: 200 with it, nothing new.
    let again = api
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&patient("V100")),
            &[("if-none-exist", &format!("identifier={MRN}|V100"))],
        )
        .await;
    assert_eq!(
        (again.status.as_u16(), again.body["id"].as_str()),
        (200, Some(id.as_str()))
    );
    assert_eq!(again.body["meta"]["versionId"], "1");

    // Update with If-Match: a stale version is 412, the current one moves it to version 2.
    let mut changed = read.body.clone();
    changed["gender"] = json!("male");
    let stale = api
        .put(&format!("/fhir/Patient/{id}"), &changed, &[("if-match", "W/\"9\"")])
        .await;
    assert_eq!(stale.status, 412, "{}", stale.body);
    let updated = api
        .put(&format!("/fhir/Patient/{id}"), &changed, &[("if-match", "W/\"1\"")])
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.header("etag"), Some("W/\"2\""));
    assert_eq!(api.get(&format!("/fhir/Patient/{id}")).await.body["gender"], "male");
    // The same update again changes nothing: still version 2.
    let same = api.put(&format!("/fhir/Patient/{id}"), &changed, &[]).await;
    assert_eq!(same.header("etag"), Some("W/\"2\""));

    // PUT to a new id creates (201); the body's id must be the URL's.
    let mut other = patient("V101");
    other["id"] = json!("chosen-id");
    let put_new = api.put("/fhir/Patient/chosen-id", &other, &[]).await;
    assert_eq!(put_new.status, 201, "{}", put_new.body);
    assert_eq!(api.put("/fhir/Patient/another-id", &other, &[]).await.status, 400);

    // Conditional update by identifier.
    let mut renamed = patient("V101");
    renamed["name"] = json!([{"family": "Renamed"}]);
    let cond = api
        .put(&format!("/fhir/Patient?identifier={MRN}|V101"), &renamed, &[])
        .await;
    assert_eq!(
        (cond.status.as_u16(), cond.body["id"].as_str()),
        (200, Some("chosen-id"))
    );

    // Search by identifier: a searchset with total and self link.
    let found = api.get(&format!("/fhir/Patient?identifier={MRN}|V100")).await;
    assert_eq!(found.body["resourceType"], "Bundle");
    assert_eq!(
        (found.body["type"].as_str(), found.body["total"].as_u64()),
        (Some("searchset"), Some(1))
    );
    assert_eq!(found.body["entry"][0]["resource"]["id"], id.as_str());
    assert_eq!(found.body["link"][0]["relation"], "self");
    let none = api.get(&format!("/fhir/Patient?identifier={MRN}|NOPE")).await;
    assert_eq!(none.body["total"], 0);
    assert_eq!(api.get("/fhir/Patient?name=x").await.status, 400);

    // Prefer: return=minimal → no body, headers still there.
    let minimal = api
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&patient("V102")),
            &[("prefer", "return=minimal")],
        )
        .await;
    assert_eq!((minimal.status.as_u16(), minimal.body.is_null()), (201, true));
    assert!(minimal.header("location").is_some());
    api.host.stop().await;
}

#[tokio::test]
async fn media_types_paths_and_bodies_are_checked() {
    let api = Api::new().await;
    // The path's type must be the body's.
    let wrong = api.post("/fhir/Encounter", &patient("M1")).await;
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    // XML is not spoken: 415 whether asked by _format, Accept or Content-Type.
    assert_eq!(api.get("/fhir/Patient/x?_format=xml").await.status, 415);
    let accept = api
        .send(
            Method::GET,
            "/fhir/Patient/x",
            None,
            &[("accept", "application/fhir+xml")],
        )
        .await;
    assert_eq!(accept.status, 415);
    let xml = api
        .client
        .post(api.host.url("/fhir/Patient"))
        .header("content-type", "application/fhir+xml")
        .body("<Patient/>")
        .send()
        .await
        .expect("request");
    assert_eq!(xml.status(), 415);
    // _format=json is fine.
    let ok = api.post("/fhir/Patient?_format=json", &patient("M2")).await;
    assert_eq!(ok.status, 201);
    // Valid JSON that is not a valid resource: 422, the expression a FHIRPath.
    let mut bad = patient("M3");
    bad["gender"] = json!("sometimes");
    let r = api.post("/fhir/Patient", &bad).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["issue"][0]["expression"][0], "Patient.gender", "{}", r.body);
    assert_eq!(
        api.post("/fhir/Patient", &json!("not an object")).await.status.as_u16() / 100,
        4
    );
    api.host.stop().await;
}

#[tokio::test]
async fn encounters_are_searched_by_patient_and_ward_and_a_deleted_admission_leaves_the_board() {
    let api = Api::new().await;
    let mut ids = Vec::new();
    for (i, bed) in ["Bed 1", "Bed 2", "Bed 3"].iter().enumerate() {
        let p = api.post("/fhir/Patient", &patient(&format!("E{i}"))).await;
        let pid = p.body["id"].as_str().expect("id").to_owned();
        let eid = format!("stay-{i}");
        let mut e = stay(&format!("Patient/{pid}"), "Ward 9", bed, "in-progress");
        e["id"] = json!(eid);
        let r = api.put(&format!("/fhir/Encounter/{eid}"), &e, &[]).await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.header("etag"), Some("W/\"1\""));
        ids.push((pid, eid));
    }
    assert_eq!(api.board().await.len(), 3);

    let by_patient = api.get(&format!("/fhir/Encounter?patient=Patient/{}", ids[0].0)).await;
    assert_eq!(by_patient.body["total"], 1);
    assert_eq!(by_patient.body["entry"][0]["resource"]["id"], "stay-0");

    // Paged: _count=2 gives two and a next link that gives the last.
    let page = api
        .get("/fhir/Encounter?status=in-progress&location=Ward%209&_count=2")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        (page.body["total"].as_u64(), page.body["entry"].as_array().map(Vec::len)),
        (Some(3), Some(2))
    );
    let next = page.body["link"]
        .as_array()
        .expect("links")
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .expect("a next link")
        .to_owned();
    let path = next.strip_prefix(&api.host.base).expect("same host");
    let rest = api.get(path).await;
    assert_eq!(rest.body["entry"].as_array().map(Vec::len), Some(1));
    assert!(
        !rest.body["link"]
            .as_array()
            .expect("links")
            .iter()
            .any(|l| l["relation"] == "next")
    );

    // Delete a mistaken admission: off the board, 410 on read, a second delete is fine.
    let del = api.send(Method::DELETE, "/fhir/Encounter/stay-1", None, &[]).await;
    assert_eq!(del.status, 200, "{}", del.body);
    let board = api.board().await;
    assert_eq!(board.len(), 2);
    assert!(!board.iter().any(|(mrn, _, _)| mrn == "E1"));
    assert_eq!(api.get("/fhir/Encounter/stay-1").await.status, 410);
    assert_eq!(
        api.send(Method::DELETE, "/fhir/Encounter/stay-1", None, &[])
            .await
            .status,
        200
    );
    assert_eq!(
        api.send(Method::DELETE, "/fhir/Encounter/nothing", None, &[])
            .await
            .status,
        404
    );

    // Transfer by update: the board follows, the version moves on.
    let read = api.get("/fhir/Encounter/stay-2").await;
    let mut moved = read.body.clone();
    moved["location"][1]["location"]["display"] = json!("Bed 8");
    let r = api
        .put("/fhir/Encounter/stay-2", &moved, &[("if-match", "W/\"1\"")])
        .await;
    assert_eq!(
        (r.status.as_u16(), r.header("etag")),
        (200, Some("W/\"2\"")),
        "{}",
        r.body
    );
    assert!(
        api.board()
            .await
            .iter()
            .any(|(mrn, _, bed)| mrn == "E2" && bed == "Bed 8")
    );
    // An encounter id cannot move to another patient.
    let mut stolen = moved.clone();
    stolen["subject"] = json!({"reference": format!("Patient/{}", ids[0].0)});
    assert_eq!(api.put("/fhir/Encounter/stay-2", &stolen, &[]).await.status, 409);
    api.host.stop().await;
}

fn transaction(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

#[tokio::test]
async fn a_transaction_answers_in_request_order_resolves_references_and_skips_what_is_not_kept() {
    let api = Api::new().await;
    let org = json!({"resourceType": "Organization", "name": "Northgate"});
    let mut enc = stay(
        "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001",
        "Ward 3",
        "Bed 1",
        "in-progress",
    );
    enc["serviceProvider"] =
        json!({"reference": "Organization?identifier=https://org.example|N1", "display": "Northgate"});
    let bundle = transaction(vec![
        // The Encounter first, referring to the Patient after it by urn:uuid.
        json!({"fullUrl": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000002", "resource": enc, "request": {"method": "POST", "url": "Encounter"}}),
        json!({"fullUrl": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000003", "resource": org, "request": {"method": "POST", "url": "Organization"}}),
        json!({"fullUrl": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001", "resource": patient("T1"), "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={MRN}|T1")}}),
        json!({"request": {"method": "GET", "url": format!("Patient?identifier={MRN}|T1")}}),
    ]);
    let r = api.post("/fhir", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["type"], "transaction-response");
    let entries = r.body["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["response"]["status"], "201 Created");
    assert!(
        entries[0]["response"]["location"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Encounter/")
    );
    assert_eq!(entries[0]["response"]["etag"], "W/\"1\"");
    assert!(entries[0]["response"]["lastModified"].is_string());
    assert_eq!(entries[1]["response"]["status"], "202 Accepted");
    assert_eq!(entries[2]["response"]["status"], "201 Created");
    assert!(
        entries[2]["response"]["location"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Patient/")
    );
    assert_eq!(entries[3]["response"]["status"], "200 OK");
    assert_eq!(entries[3]["resource"]["total"], 1, "the GET sees the writes");
    // The stored Encounter refers to the stored Patient; the Organization reference is kept.
    let eloc = entries[0]["response"]["location"].as_str().expect("location");
    let eid = eloc.split('/').nth(1).expect("id");
    let e = api.get(&format!("/fhir/Encounter/{eid}")).await;
    let pid = entries[2]["response"]["location"]
        .as_str()
        .expect("location")
        .split('/')
        .nth(1)
        .expect("id");
    assert_eq!(e.body["subject"]["reference"], format!("Patient/{pid}"));
    assert_eq!(e.body["serviceProvider"]["display"], "Northgate");
    assert_eq!(api.board().await, vec![("T1".into(), "Ward 3".into(), "Bed 1".into())]);

    // A conditional reference to the patient, and a DELETE of the stay, in a second transaction.
    let transfer = transaction(vec![
        json!({"resource": stay(&format!("Patient?identifier={MRN}|T1"), "Ward 4", "Bed 2", "in-progress"), "request": {"method": "POST", "url": "Encounter"}}),
        json!({"request": {"method": "DELETE", "url": format!("Encounter/{eid}")}}),
    ]);
    let r = api.post("/fhir", &transfer).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["entry"][1]["response"]["status"], "204 No Content");
    assert_eq!(api.board().await, vec![("T1".into(), "Ward 4".into(), "Bed 2".into())]);

    // One broken entry refuses the whole transaction, naming it; nothing is written.
    let mut bad = patient("T2");
    bad["birthDate"] = json!("yesterday");
    let r = api
        .post(
            "/fhir",
            &transaction(vec![
                json!({"resource": patient("T3"), "request": {"method": "POST", "url": "Patient"}}),
                json!({"resource": bad, "request": {"method": "POST", "url": "Patient"}}),
            ]),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        r.body["issue"][0]["expression"][0],
        "Bundle.entry[1].resource.birthDate"
    );
    assert_eq!(
        api.get(&format!("/fhir/Patient?identifier={MRN}|T3")).await.body["total"],
        0
    );
    api.host.stop().await;
}

#[tokio::test]
async fn the_same_admission_transaction_ten_times_is_one_patient_and_one_stay() {
    let api = Api::new().await;
    let bundle = fixture("examples/admission-bundle.json");
    let mut locations = Vec::new();
    for i in 0..10 {
        let r = api.post("/fhir", &bundle).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let want = if i == 0 { "201 Created" } else { "200 OK" };
        assert_eq!(r.body["entry"][0]["response"]["status"], want, "send {i}");
        locations.push(r.body["entry"].clone());
    }
    assert!(
        locations
            .windows(2)
            .all(|w| w[0][0]["response"]["location"] == w[1][0]["response"]["location"])
    );
    assert!(
        locations
            .windows(2)
            .all(|w| w[0][1]["response"]["location"] == w[1][1]["response"]["location"])
    );
    let found = api
        .get("/fhir/Patient?identifier=https://fhir.example-hospital.nhs.uk/Id/mrn|MRN0001")
        .await;
    assert_eq!(found.body["total"], 1);
    let pid = found.body["entry"][0]["resource"]["id"].as_str().expect("id");
    assert_eq!(found.body["entry"][0]["resource"]["meta"]["versionId"], "1");
    let stays = api.get(&format!("/fhir/Encounter?patient={pid}")).await;
    assert_eq!(stays.body["total"], 1);
    assert_eq!(stays.body["entry"][0]["resource"]["meta"]["versionId"], "1");
    assert_eq!(api.board().await.len(), 1);
    // One admission announced, as a consumer of the event log sees it.
    let events = api.host.get_json("/api/events?limit=100").await;
    let admitted = events
        .as_array()
        .or_else(|| events["events"].as_array())
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "admitted")
        .count();
    assert_eq!(admitted, 1, "{events}");
    api.host.stop().await;
}

#[tokio::test]
async fn a_batch_answers_each_entry_on_its_own() {
    let api = Api::new().await;
    let mut bad = patient("B2");
    bad["gender"] = json!("sometimes");
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient("B1"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": bad, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
        {"resource": {"resourceType": "Practitioner"}, "request": {"method": "POST", "url": "Practitioner"}},
    ]});
    let r = api.post("/fhir", &batch).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["type"], "batch-response");
    let status = |i: usize| {
        r.body["entry"][i]["response"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(status(0), "201 Created");
    assert_eq!(status(1), "422 Unprocessable Entity");
    assert_eq!(
        r.body["entry"][1]["response"]["outcome"]["issue"][0]["expression"][0],
        "Bundle.entry[1].resource.gender"
    );
    assert_eq!(status(2), "404 Not Found");
    assert_eq!(status(3), "202 Accepted");
    assert_eq!(
        api.get(&format!("/fhir/Patient?identifier={MRN}|B1")).await.body["total"],
        1
    );
    api.host.stop().await;
}

fn official(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/fhir/examples")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("example")).expect("json")
}

#[tokio::test]
async fn every_official_example_of_a_kept_type_is_stored_and_readable_and_its_broken_variant_named() {
    let api = Api::new().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/fhir/examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("examples")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    let mut patients: Vec<Value> = Vec::new();
    let mut encounters: Vec<Value> = Vec::new();
    for name in &names {
        let example = official(name);
        match example["resourceType"].as_str() {
            Some("Patient") => patients.push(example),
            Some("Encounter") => encounters.push(example),
            // A collection of Patients: each of them.
            Some("Bundle") if name.starts_with("patient") => patients.extend(
                example["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["resource"].clone()),
            ),
            _ => {}
        }
    }
    assert!(
        patients.len() >= 10 && encounters.len() >= 4,
        "{} {}",
        patients.len(),
        encounters.len()
    );
    // Patients first (the Encounters refer to them), each by PUT to its own id.
    for resource in patients.iter().chain(encounters.iter()) {
        let rt = resource["resourceType"].as_str().expect("type");
        let id = resource["id"].as_str().expect("the examples have ids");
        let r = api.put(&format!("/fhir/{rt}/{id}"), resource, &[]).await;
        assert!(r.status.is_success(), "{rt}/{id}: {} {}", r.status, r.body);
        let read = api.get(&format!("/fhir/{rt}/{id}")).await;
        assert_eq!(read.status, 200, "{rt}/{id}");
        let mut expected = resource.clone();
        let mut got = read.body.clone();
        for v in [&mut expected, &mut got] {
            v.as_object_mut().expect("object").remove("meta");
        }
        if rt == "Encounter" {
            got.as_object_mut().expect("object").remove("subject");
            expected.as_object_mut().expect("object").remove("subject");
        }
        assert_eq!(got, expected, "{rt}/{id} reads back as sent");
        // Broken: an element with a value its type does not allow.
        let mut broken = resource.clone();
        let element = if rt == "Patient" { "gender" } else { "status" };
        broken[element] = json!("not-a-code");
        let r = api.put(&format!("/fhir/{rt}/{id}"), &broken, &[]).await;
        assert!(r.status.is_client_error(), "{rt}/{id} broken: {}", r.status);
        assert_eq!(r.body["resourceType"], "OperationOutcome");
        let named = r.body["issue"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["expression"][0] == format!("{rt}.{element}"));
        assert!(named, "{rt}/{id}: {}", r.body);
    }
    api.host.stop().await;
}

#[tokio::test]
async fn odd_requests_get_a_4xx_outcome_never_a_5xx() {
    let api = Api::new().await;
    let long_id = "x".repeat(200);
    let bodies = [
        json!([]),
        json!(null),
        json!(42),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": "nope"}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [{}]}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "PATCH", "url": "Patient/1"}}]}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "DELETE", "url": "Patient/1"}}]}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "DELETE", "url": "Encounter/none"}}]}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": patient("Q1"), "request": {"method": "PUT", "url": "Patient?identifier="}}]}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": patient("Q1"), "request": {"method": "PUT", "url": "Patient/bad id"}}]}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": patient("Q1"), "request": {"method": "POST", "url": "Encounter"}}]}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Nonsense"}, "request": {"method": "POST", "url": "Nonsense"}}]}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": patient("Q2"), "request": {"method": "PUT", "url": "Patient/q2"}},
            {"resource": patient("Q2"), "request": {"method": "PUT", "url": "Patient/q2"}}]}),
        json!({"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": "Patient?name=x"}}]}),
        json!({"resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"}, "subject": {"reference": "Patient/nobody"}}),
        json!({"resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"}, "subject": {"reference": "Patient?identifier=nonsense"}}),
    ];
    for body in &bodies {
        let r = api.post("/fhir", body).await;
        let batch_ok = body["type"] == "batch" && r.status == 200;
        assert!(
            r.status.is_client_error() || batch_ok,
            "{body}: {} {}",
            r.status,
            r.body
        );
        assert!(
            r.body["resourceType"] == "OperationOutcome" || batch_ok,
            "{body}: {}",
            r.body
        );
    }
    for (method, path) in [
        (Method::GET, format!("/fhir/Patient/{long_id}")),
        (Method::GET, "/fhir/Patient?identifier=".to_owned()),
        (Method::GET, "/fhir/Patient?identifier=%7C".to_owned()),
        (Method::GET, "/fhir/Patient?_count=abc&identifier=a%7Cb".to_owned()),
        (Method::GET, "/fhir/Encounter".to_owned()),
        (Method::GET, "/fhir/Encounter?status=finished".to_owned()),
        (Method::GET, "/fhir/Encounter/x/_history".to_owned()),
        (Method::GET, "/fhir/Patient/x/_history/y/z".to_owned()),
        (Method::GET, "/fhir/Nonsense/1".to_owned()),
        (Method::GET, "/fhir/Organization/1".to_owned()),
        (Method::PUT, "/fhir/Encounter?identifier=a%7Cb".to_owned()),
        (Method::DELETE, format!("/fhir/Encounter/{long_id}")),
    ] {
        let r = api.send(method.clone(), &path, Some(&patient("Q3")), &[]).await;
        assert!(r.status.is_client_error(), "{method} {path}: {} {}", r.status, r.body);
        assert_eq!(r.body["resourceType"], "OperationOutcome", "{method} {path}");
    }
    // An Encounter whose subject is nowhere: 422 naming the entry's subject.
    let orphan = transaction(vec![json!({
        "resource": stay("urn:uuid:00000000-0000-0000-0000-000000000000", "Ward 1", "Bed 1", "in-progress"),
        "request": {"method": "POST", "url": "Encounter"}
    })]);
    let r = api.post("/fhir", &orphan).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        r.body["issue"][0]["expression"][0],
        "Bundle.entry[0].resource.subject.reference"
    );
    // Paging beyond the end, and a huge _count, are fine.
    let far = api
        .get("/fhir/Encounter?status=in-progress&_offset=1000000&_count=100000")
        .await;
    assert_eq!(far.status, 200, "{}", far.body);
    api.host.stop().await;
}
