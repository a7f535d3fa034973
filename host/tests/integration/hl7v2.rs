//! HL7 v2 ADT over HTTP (`POST /hl7v2`) into an embedded `wardwatch up`: the corpus messages of
//! `functions/admit/tests/corpus/adt` admit, transfer, discharge and cancel one stay, as the
//! board's API shows, each answered with its ACK.

use serde_json::Value;

use crate::helpers::{Host, admitted_events, adt_corpus, config, placed};

/// How the corpus's hospital names its identifiers.
const V2: &str = "RXH^MR=https://fhir.northgate.example/Id/mrn,NHS^NH=https://fhir.nhs.uk/Id/nhs-number";

/// POST the payload; the HTTP status and the ACK's MSA segments (code, acknowledged id).
async fn send(host: &Host, name: &str) -> (u16, Vec<(String, String)>, String) {
    let r = reqwest::Client::new()
        .post(host.url("/hl7v2"))
        .header("content-type", "x-application/hl7-v2+er7")
        .body(adt_corpus(name))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    assert_eq!(
        r.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("x-application/hl7-v2+er7")
    );
    let text = r.text().await.expect("body");
    let msa = text
        .split('\r')
        .filter(|s| s.starts_with("MSA|"))
        .map(|s| {
            let f: Vec<&str> = s.split('|').collect();
            (
                f.get(1).copied().unwrap_or_default().to_owned(),
                f.get(2).copied().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    (status, msa, text)
}

#[tokio::test]
async fn adt_admit_transfer_discharge_and_cancel_discharge_show_on_the_board_each_acknowledged() {
    let host = Host::spawn(config(&[("V2_IDENTIFIER_SYSTEMS", V2), ("ESCALATE_EVERY", "0")])).await;

    let (status, msa, ack) = send(&host, "01-a01-admit-inpatient-v251.hl7").await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(msa, [("AA".to_owned(), "NGH-ADT-000101".to_owned())]);
    assert!(
        ack.starts_with("MSH|^~\\&|WARDWATCH|NGH|PAS|NGH|"),
        "sender and receiver swapped: {ack}"
    );
    assert_eq!(placed(&host, "123456").await, Some(("WARD12".into(), "B04".into())));
    // The same message again: accepted, nothing new.
    let (status, msa, _) = send(&host, "01-a01-admit-inpatient-v251.hl7").await;
    assert_eq!((status, msa[0].0.as_str()), (200, "AA"));
    assert_eq!(admitted_events(&host).await, 1);

    let (status, msa, _) = send(&host, "02-a02-transfer-v251.hl7").await;
    assert_eq!((status, msa[0].0.as_str()), (200, "AA"));
    assert_eq!(placed(&host, "123456").await, Some(("WARD7".into(), "B02".into())));

    let (status, msa, _) = send(&host, "03-a03-discharge-v251.hl7").await;
    assert_eq!((status, msa[0].0.as_str()), (200, "AA"));
    assert_eq!(placed(&host, "123456").await, None, "discharged");

    let (status, msa, _) = send(&host, "08-a13-cancel-discharge-mllp-crlf.hl7").await;
    assert_eq!((status, msa[0].0.as_str()), (200, "AA"));
    assert_eq!(
        placed(&host, "123456").await,
        Some(("WARD7".into(), "B02".into())),
        "the discharge is cancelled"
    );

    // One patient, one stay throughout.
    let patients: Vec<Value> = host
        .get_json("/api/inpatients")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["mrn"] == "123456")
        .collect();
    assert_eq!(patients.len(), 1);
    host.stop().await;
}

#[tokio::test]
async fn a_cancelled_admission_leaves_the_board_and_what_cannot_be_taken_is_refused_with_its_condition() {
    let host = Host::spawn(config(&[("V2_IDENTIFIER_SYSTEMS", V2), ("ESCALATE_EVERY", "0")])).await;
    assert_eq!(send(&host, "01-a01-admit-inpatient-v251.hl7").await.0, 200);
    assert!(placed(&host, "123456").await.is_some());
    let (status, msa, _) = send(&host, "06-a11-cancel-admit.hl7").await;
    assert_eq!((status, msa[0].0.as_str()), (200, "AA"));
    assert_eq!(
        placed(&host, "123456").await,
        None,
        "a cancelled admission is no inpatient"
    );
    let page = host.get_json("/api/events?after=0&limit=1000").await;
    let kinds: Vec<&str> = page["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["admitted", "admission-cancelled"],
        "its own event, not a discharge"
    );

    // A merge of accounts is not supported: refused (AR) by name, condition 201.
    let (status, msa, ack) = send(&host, "refused-201-a35-merge-account.hl7").await;
    assert_eq!(
        (status, msa[0].0.as_str(), msa[0].1.as_str()),
        (400, "AR", "NGH-ADT-000201")
    );
    assert!(ack.contains("ERR|") && ack.contains("201"), "{ack}");
    // An identifier under an authority with no system: read, refused (AE), condition 204, and
    // the reason names no patient data.
    let (status, msa, ack) = send(&host, "refused-204-unknown-authority.hl7").await;
    assert_eq!((status, msa[0].0.as_str()), (422, "AE"));
    assert!(
        ack.contains("204") && !ack.contains("HARGREAVES") && !ack.contains("19410318"),
        "{ack}"
    );
    // Not an HL7 message at all.
    let r = reqwest::Client::new()
        .post(host.url("/hl7v2"))
        .body("hello")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    assert!(r.text().await.expect("body").contains("MSA|AR|"));
    let r = reqwest::get(host.url("/hl7v2")).await.expect("request");
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers().get("allow").and_then(|v| v.to_str().ok()), Some("POST"));
    host.stop().await;
}

#[tokio::test]
async fn every_accepted_corpus_message_passes_the_fhir_schema_and_is_acknowledged() {
    let host = Host::spawn(config(&[("V2_IDENTIFIER_SYSTEMS", V2), ("ESCALATE_EVERY", "0")])).await;
    for name in [
        "04-a04-ed-registration-v24.hl7",
        "05-a08-update-v23-lf.hl7",
        "07-a12-cancel-transfer.hl7",
        "09-a01-latin1-escapes.hl7",
        "10-a01-a02-batch.hl7",
    ] {
        let (status, msa, ack) = send(&host, name).await;
        assert_eq!(status, 200, "{name}: {ack}");
        assert!(
            !msa.is_empty() && msa.iter().all(|(code, _)| code == "AA"),
            "{name}: {ack}"
        );
    }
    host.stop().await;
}
