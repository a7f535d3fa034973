//! HL7 v2 merges (A40, A34) over `POST /hl7v2` into an embedded `wardwatch up`: two admitted
//! patients become one on the board — the merged one's results and alert on the survivor — and
//! the same merge again changes nothing, as the event log shows.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Host, adt_corpus, alerts_for, config, eventually};

/// How the corpus's hospital names its identifiers.
const V2: &str = "RXH^MR=https://fhir.northgate.example/Id/mrn,NHS^NH=https://fhir.nhs.uk/Id/nhs-number";
const ER7: &str = "x-application/hl7-v2+er7";

async fn post(host: &Host, path: &str, body: Vec<u8>) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(host.url(path))
        .header("content-type", ER7)
        .body(body)
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// POST a corpus message to `/hl7v2`: the HTTP status, MSA-1 and the whole ACK.
async fn send(host: &Host, name: &str) -> (u16, String, String) {
    let (status, ack) = post(host, "/hl7v2", adt_corpus(name)).await;
    let code = ack
        .split('\r')
        .find(|s| s.starts_with("MSA|"))
        .and_then(|s| s.split('|').nth(1))
        .unwrap_or_default()
        .to_owned();
    (status, code, ack)
}

/// An ORU^R01 with one potassium result for the patient of hospital number `mrn`.
fn potassium(mrn: &str, filler: &str, value: &str) -> Vec<u8> {
    [
        format!("MSH|^~\\&|PATHLIS|NGH_PATH|WARDWATCH|NGH|20261127120002||ORU^R01^ORU_R01|PL-{filler}|P|2.5.1|||NE|AL|GBR"),
        format!("PID|1||{mrn}^^^RXH^MR||HARGREAVES^Mabel||19410318|F"),
        format!(
            "OBR|1|NGW-{filler}^WARDWATCH|{filler}^PATHLIS|UE^Urea and electrolytes^99NGH|||20261127113000|||||||20261127113500||||||||20261127120000|||F"
        ),
        format!("OBX|1|NM|2823-3^Potassium^LN||{value}|mmol/L|3.5-5.3|HH|||F|||20261127115000"),
    ]
    .join("\r")
    .into_bytes()
}

/// The board's inpatients among the two records of the corpus patient.
async fn hargreaves(host: &Host) -> Vec<Value> {
    host.get_json("/api/inpatients")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["mrn"] == "123456" || p["mrn"] == "777777")
        .collect()
}

/// Every event in the log.
async fn events(host: &Host) -> Vec<Value> {
    host.get_json("/api/events?after=0&limit=1000").await["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn an_a40_merges_two_admitted_patients_into_one_on_the_board_with_the_alert_and_results_once() {
    let host = Host::spawn(config(&[("V2_IDENTIFIER_SYSTEMS", V2), ("ESCALATE_EVERY", "0")])).await;
    for name in ["01-a01-admit-inpatient-v251.hl7", "11-a01-second-record-v251.hl7"] {
        let (status, code, ack) = send(&host, name).await;
        assert_eq!((status, code.as_str()), (200, "AA"), "{name}: {ack}");
    }
    // The second record has a critical potassium, through the lab path.
    let (status, body) = post(&host, "/lab-feed", potassium("777777", "26N900001", "7.1")).await;
    assert_eq!(status, 200, "{body}");
    let alert = alerts_for(&host, "777777", Duration::from_secs(10))
        .await
        .expect("the second record's alert")
        .remove(0);
    let before = hargreaves(&host).await;
    assert_eq!(before.len(), 2, "two records, two beds: {before:#?}");
    let id_of = |mrn: &str| {
        before
            .iter()
            .find(|p| p["mrn"] == mrn)
            .and_then(|p| p["patient_id"].as_str())
            .expect("patient")
            .to_owned()
    };
    let (survivor, merged) = (id_of("123456"), id_of("777777"));

    let (status, code, ack) = send(&host, "12-a40-merge-v251.hl7").await;
    assert_eq!((status, code.as_str()), (200, "AA"), "{ack}");
    assert!(ack.contains("MSA|AA|NGH-ADT-000112"), "{ack}");

    // One patient on the board: the survivor, in its own bed, with the merged record's alert.
    let after = hargreaves(&host).await;
    assert_eq!(after.len(), 1, "{after:#?}");
    let p = &after[0];
    assert_eq!(
        (p["patient_id"].as_str(), p["ward"].as_str(), p["bed"].as_str()),
        (Some(survivor.as_str()), Some("WARD12"), Some("B04"))
    );
    let active: Vec<&Value> = p["active_alerts"].as_array().expect("alerts").iter().collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["id"], alert["id"]);
    let listed = host.get_json("/api/alerts?status=active").await;
    let listed: Vec<&Value> = listed
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["id"] == alert["id"])
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0]["patient_id"].as_str(), listed[0]["mrn"].as_str()),
        (Some(survivor.as_str()), Some("123456"))
    );

    let record = host.get_json(&format!("/api/patients/{survivor}")).await;
    let results = record["results"].as_array().expect("results");
    assert_eq!(results.len(), 1);
    assert_eq!(
        (results[0]["analyte"].as_str(), results[0]["value"].as_f64()),
        (Some("potassium"), Some(7.1))
    );
    assert_eq!(record["merged_from"], serde_json::json!([merged]));
    assert!(
        record["identifiers"]
            .as_array()
            .expect("identifiers")
            .iter()
            .any(|i| i["value"] == "777777"),
        "{record:#}"
    );
    assert!(
        record["audit"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["alert_id"] == alert["id"])),
        "the alert's audit trail came along"
    );
    // The merged patient's id leads to the survivor, and says so.
    let followed = host.get_json(&format!("/api/patients/{merged}")).await;
    assert_eq!(
        (followed["id"].as_str(), followed["followed_from"].as_str()),
        (Some(survivor.as_str()), Some(merged.as_str()))
    );

    // Over FHIR: the merged Patient is inactive and replaced by the survivor, and a search by
    // either patient's identifier finds the survivor.
    let fhir = host.get_json(&format!("/fhir/Patient/{merged}")).await;
    assert_eq!(fhir["active"], false);
    assert_eq!(fhir["link"][0]["type"], "replaced-by");
    assert_eq!(fhir["link"][0]["other"]["reference"], format!("Patient/{survivor}"));

    let log = events(&host).await;
    let merges: Vec<&Value> = log.iter().filter(|e| e["type"] == "patient-merged").collect();
    assert_eq!(merges.len(), 1, "{log:#?}");
    assert_eq!(
        (merges[0]["patient_id"].as_str(), merges[0]["merged_id"].as_str()),
        (Some(survivor.as_str()), Some(merged.as_str()))
    );

    // The same A40 again: accepted, and nothing new in the log.
    let (status, code, ack) = send(&host, "12-a40-merge-v251.hl7").await;
    assert_eq!((status, code.as_str()), (200, "AA"), "{ack}");
    assert_eq!(
        events(&host).await.len(),
        log.len(),
        "the same merge twice changes nothing"
    );
    assert_eq!(hargreaves(&host).await.len(), 1);

    // A later result under the merged hospital number reaches the survivor.
    let (status, body) = post(&host, "/lab-feed", potassium("777777", "26N900002", "4.4")).await;
    assert_eq!(status, 200, "{body}");
    let results = eventually(Duration::from_secs(10), || async {
        let r = host.get_json(&format!("/api/patients/{survivor}")).await;
        r["results"].as_array().filter(|a| a.len() == 2).cloned()
    })
    .await
    .expect("the later result is the survivor's");
    assert_eq!(results.len(), 2);
    host.stop().await;
}

#[tokio::test]
async fn a_merge_into_an_unknown_survivor_is_refused_and_one_of_an_unknown_patient_keeps_its_identifier() {
    let host = Host::spawn(config(&[("V2_IDENTIFIER_SYSTEMS", V2), ("ESCALATE_EVERY", "0")])).await;
    // Nobody admitted yet: the survivor is unknown.
    let (status, code, ack) = send(&host, "12-a40-merge-v251.hl7").await;
    assert_eq!((status, code.as_str()), (422, "AE"), "{ack}");
    assert!(ack.contains("204^") && ack.contains("not known here"), "{ack}");
    assert!(
        !ack.contains("HARGREAVES") && !ack.contains("777777"),
        "no patient data: {ack}"
    );
    assert!(events(&host).await.is_empty(), "a refused merge writes nothing");

    let (status, code, _) = send(&host, "01-a01-admit-inpatient-v251.hl7").await;
    assert_eq!((status, code.as_str()), (200, "AA"));
    let survivor = hargreaves(&host).await[0]["patient_id"]
        .as_str()
        .expect("id")
        .to_owned();
    // A34 of a patient never seen here: the survivor takes the identifier.
    let (status, code, ack) = send(&host, "13-a34-merge-v23.hl7").await;
    assert_eq!((status, code.as_str()), (200, "AA"), "{ack}");
    assert!(
        !events(&host).await.iter().any(|e| e["type"] == "patient-merged"),
        "no record was merged"
    );
    let (status, body) = post(&host, "/lab-feed", potassium("888888", "26N900003", "4.4")).await;
    assert_eq!(status, 200, "{body}");
    let record = host.get_json(&format!("/api/patients/{survivor}")).await;
    assert_eq!(
        record["results"].as_array().map(Vec::len),
        Some(1),
        "a result under the merged identifier is the survivor's: {record:#}"
    );
    // A merge into itself is refused (205).
    let (status, code, ack) = send(&host, "refused-205-a40-into-itself.hl7").await;
    assert_eq!((status, code.as_str()), (422, "AE"), "{ack}");
    assert!(ack.contains("205^"), "{ack}");
    host.stop().await;
}
