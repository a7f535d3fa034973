//! `wardwatch up` on embedded defaults: no services at all.

use std::time::Duration;

use serde_json::{Value, json};
use wardwatch_adapters::Bus;

use crate::helpers::{Host, alerts_for, config, fixture};

#[tokio::test]
async fn admit_then_a_critical_potassium_gives_an_active_alert_for_that_patient() {
    let host = Host::spawn(config(&[])).await;
    assert_eq!(reqwest::get(host.url("/healthz")).await.expect("healthz").status(), 200);

    let r = host
        .post_json("/fhir", &fixture("examples/admission-bundle.json"))
        .await;
    assert_eq!(r.status(), 200);
    let inpatients = host.get_json("/api/inpatients").await;
    let patient = &inpatients[0];
    assert_eq!(
        (
            patient["mrn"].as_str(),
            patient["ward"].as_str(),
            patient["bed"].as_str()
        ),
        (Some("MRN0001"), Some("Ward 7B"), Some("Bed 4"))
    );
    assert_eq!(patient["name"], "Alex Example");
    assert_eq!(patient["admitted_at"], "2026-11-27T08:00:00Z");

    let r = host
        .post_json("/lab-feed", &fixture("examples/potassium-critical.json"))
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let alerts = alerts_for(&host, "MRN0001", Duration::from_secs(10))
        .await
        .expect("an alert arrives");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["patient_id"], patient["patient_id"]);
    assert_eq!(
        (alerts[0]["rule"].as_str(), alerts[0]["severity"].as_str()),
        (Some("critical-high:potassium"), Some("critical"))
    );
    let inpatients = host.get_json("/api/inpatients").await;
    assert_eq!(inpatients[0]["active_alerts"].as_array().map(Vec::len), Some(1));
    host.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_4xx_outcome_over_http_and_the_rejected_lane_on_the_queue() {
    let host = Host::spawn(config(&[])).await;
    let client = reqwest::Client::new();
    for (body, status) in [
        ("{not json", 400),
        (r#"{"resourceType":"Bundle","type":"collection"}"#, 422),
        (r#"{"resourceType":"Pateint"}"#, 400),
        (
            r#"{"resourceType":"Observation","status":"final","code":{"text":"K"}}"#,
            422,
        ),
    ] {
        let r = client
            .post(host.url("/fhir"))
            .header("content-type", "application/fhir+json")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), status, "{body}");
        let outcome: Value = r.json().await.expect("json");
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{body}");
    }

    let mut no_patient = fixture("examples/potassium-critical.json");
    no_patient.as_object_mut().expect("object").remove("subject");
    for body in [
        no_patient.to_string(),
        "garbage".to_owned(),
        json!({"resourceType": "Patient"}).to_string(),
    ] {
        let r = client
            .post(host.url("/lab-feed"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 200, "acked: recorded on the rejected lane");
    }
    let Bus::Memory(bus) = &host.bus else {
        panic!("embedded bus")
    };
    let rejected = bus.messages("lab-feed-rejected");
    assert_eq!(rejected.len(), 3);
    let first: Value = serde_json::from_slice(&rejected[0]).expect("json");
    assert_eq!(first["outcome"]["issue"][0]["expression"][0], "/subject");
    assert_eq!(
        serde_json::from_str::<Value>(first["payload"].as_str().expect("payload")).expect("json"),
        no_patient
    );
    host.stop().await;
}

#[tokio::test]
async fn readyz_is_ready_and_metrics_are_served_without_any_backend() {
    let host = Host::spawn(config(&[])).await;
    let ready = host.get_json("/readyz").await;
    assert_eq!(ready["status"], "ready");
    let text = host.metrics_text().await;
    assert!(text.contains("wardwatch_start_to_first_request_seconds"), "{text}");
    host.stop().await;
}

#[tokio::test]
async fn every_official_example_gets_an_answer_and_never_a_5xx() {
    let host = Host::spawn(config(&[])).await;
    let dir = format!("{}/../schemas/fhir/examples", env!("CARGO_MANIFEST_DIR"));
    let client = reqwest::Client::new();
    let mut answered = 0;
    for entry in std::fs::read_dir(dir).expect("examples") {
        let body = std::fs::read(entry.expect("entry").path()).expect("read");
        for route in ["/fhir", "/lab-feed"] {
            let r = client
                .post(host.url(route))
                .header("content-type", "application/fhir+json")
                .body(body.clone())
                .send()
                .await
                .expect("send");
            assert!(r.status().as_u16() < 500, "{route}: {}", r.status());
            answered += 1;
        }
    }
    assert_eq!(answered, 62);
    // The official Patient examples were admitted; none of them is an inpatient.
    assert!(host.get_json("/api/inpatients").await.as_array().is_some());
    host.stop().await;
}
