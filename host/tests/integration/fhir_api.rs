//! The FHIR base as a client library first meets it: `GET /fhir/metadata`, and `405` with
//! `Allow` for what is not supported (issue 9, first part).

use crate::helpers::{Host, config};

#[tokio::test]
async fn a_client_reads_the_capability_statement_and_is_told_what_is_not_supported() {
    let host = Host::spawn(config(&[("ESCALATE_EVERY", "0")])).await;
    let r = reqwest::get(host.url("/fhir/metadata")).await.expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/fhir+json")
    );
    let statement: serde_json::Value = r.json().await.expect("json");
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    let types: Vec<&str> = statement["rest"][0]["resource"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["type"].as_str())
        .collect();
    assert_eq!(types, ["Patient", "Encounter", "Observation"]);

    let client = reqwest::Client::new();
    for (method, path, allow) in [
        (reqwest::Method::PUT, "/fhir/Patient/p1", "POST"),
        (reqwest::Method::DELETE, "/fhir/Encounter/e1", "POST"),
        (reqwest::Method::GET, "/fhir/Patient/p1", "POST"),
        (reqwest::Method::PUT, "/fhir/Observation", "GET, POST"),
    ] {
        let r = client
            .request(method.clone(), host.url(path))
            .header("content-type", "application/fhir+json")
            .body("{}")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(
            r.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
        let outcome: serde_json::Value = r.json().await.expect("an OperationOutcome");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
    }
    host.stop().await;
}
