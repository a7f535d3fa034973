//! The ORU^R01 corpus (`tests/corpus/oru`, written for this project): each message is read by
//! the pure mapping and compared field by field with its hand-written expectation, then sent
//! through ingest-lab; each refused one must say why, and store nothing.

use std::path::PathBuf;

use serde_json::{Value, json};
use wardwatch_adapters::{MemoryBus, MemoryEventLog, MemoryStateStore};
use wardwatch_domain::facts::parse_instant;
use wardwatch_domain::identity::IdentityRules;
use wardwatch_domain::lab::{MESSAGE_ID_EXTENSION, oru};
use wardwatch_records::{Locks, Records};
use wardwatch_runtime::{Event, FailureKind, Function, Trigger};

fn corpus() -> Vec<(String, Vec<u8>, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/oru");
    let mut cases: Vec<(String, Vec<u8>, Value)> = std::fs::read_dir(&dir)
        .expect("corpus folder")
        .filter_map(|e| {
            let path = e.expect("entry").path();
            (path.extension()? == "hl7").then_some(path)
        })
        .map(|path| {
            let name = path.file_stem().expect("name").to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).expect("message");
            let expect = std::fs::read_to_string(path.with_extension("json")).expect("expectation");
            (name, bytes, serde_json::from_str(&expect).expect("expectation json"))
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(cases.len() >= 20, "the corpus is there");
    cases
}

/// The identity table a hospital receiving these feeds would configure.
fn identity() -> IdentityRules {
    IdentityRules {
        systems: vec!["urn:example:mrn".into()],
        v2: IdentityRules::parse_v2_table(
            "RXH^MR=urn:example:rxh, STMH^MR=urn:example:stmh, DUNMORE^MR=urn:example:dunmore, \
             HALEWOOD^MR=urn:example:halewood, PAS^MR=urn:example:pas, ELM^MR=urn:example:elm, \
             NHS=https://fhir.nhs.uk/Id/nhs-number",
        )
        .expect("table"),
    }
}

fn system_for(authority: Option<&str>, type_code: Option<&str>) -> String {
    identity()
        .from_v2("x", authority, type_code)
        .map(|i| i.system)
        .expect("mapped")
}

fn s(v: &Value) -> Option<&str> {
    v.as_str()
}

fn check(case: &str, got: &Value, want: &Value) {
    let at = |what: &str| format!("{case}: {what}\n got {got:#}\nwant {want:#}");
    let p = &want["patient"];
    assert_eq!(
        s(&got["subject"]["identifier"]["value"]),
        s(&p["value"]),
        "{}",
        at("patient")
    );
    assert_eq!(
        s(&got["subject"]["identifier"]["system"]),
        Some(system_for(s(&p["authority"]), s(&p["type"])).as_str()),
        "{}",
        at("patient system")
    );
    let identity = s(&got["identifier"][0]["value"]).expect("identifier");
    let order = s(&want["order"]).expect("order");
    let code = s(&want["code"]).or_else(|| s(&want["alt_code"])).expect("code");
    let sub = s(&want["sub_id"]).unwrap_or("");
    assert!(
        identity.contains(order) && identity.ends_with(&format!("|{code}|{sub}")),
        "{}",
        at("identity = order + OBX-3 + OBX-4")
    );
    let codings = got["code"]["coding"].as_array().expect("codings");
    let loinc = codings
        .iter()
        .find(|c| c["system"] == "http://loinc.org")
        .and_then(|c| s(&c["code"]));
    assert_eq!(loinc, s(&want["loinc"]), "{}", at("LOINC"));
    for local in [s(&want["code"]), s(&want["alt_code"])].into_iter().flatten() {
        assert!(
            codings.iter().any(|c| s(&c["code"]) == Some(local)),
            "{}",
            at("every code kept")
        );
    }
    match &want["value"] {
        Value::Number(n) => {
            assert_eq!(got["valueQuantity"]["value"].as_f64(), n.as_f64(), "{}", at("value"));
            assert_eq!(
                s(&got["valueQuantity"]["comparator"]),
                s(&want["comparator"]),
                "{}",
                at("comparator")
            );
            assert_eq!(s(&got["valueQuantity"]["unit"]), s(&want["unit"]), "{}", at("unit"));
        }
        Value::String(t) => {
            let text = s(&got["valueString"]).or_else(|| s(&got["valueCodeableConcept"]["text"]));
            assert_eq!(text, Some(t.as_str()), "{}", at("text value"));
        }
        _ => assert!(
            got.get("valueQuantity").is_none() && got.get("valueString").is_none(),
            "{}",
            at("no value")
        ),
    }
    assert_eq!(s(&got["status"]), s(&want["status"]), "{}", at("status"));
    for (field, key) in [("effectiveDateTime", "effective"), ("issued", "issued")] {
        assert_eq!(
            s(&got[field]).and_then(parse_instant),
            s(&want[key]).and_then(parse_instant),
            "{}",
            at(key)
        );
    }
    assert_eq!(
        s(&got["referenceRange"][0]["text"]),
        s(&want["reference_range"]),
        "{}",
        at("reference range")
    );
    assert_eq!(
        s(&got["interpretation"][0]["coding"][0]["code"]),
        s(&want["interpretation"]),
        "{}",
        at("interpretation")
    );
    let message = got["extension"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["url"] == MESSAGE_ID_EXTENSION))
        .and_then(|e| s(&e["valueString"]));
    assert_eq!(message, s(&want["message_control_id"]), "{}", at("MSH-10"));
}

#[test]
fn every_corpus_message_maps_to_the_observations_it_should() {
    let rules = identity();
    let settings = oru::Settings {
        identity: &rules,
        zone: chrono_tz::Europe::London,
    };
    for (name, bytes, want) in corpus() {
        let read = oru::read(&bytes, &settings);
        if let Some(reason) = want.get("rejected").and_then(Value::as_str) {
            let e = read.expect_err(&name);
            assert!(e.to_lowercase().contains(reason), "{name}: `{e}` should say `{reason}`");
            continue;
        }
        let messages = read.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            messages.len() as u64,
            want["messages"].as_u64().expect("messages"),
            "{name}"
        );
        let got: Vec<&Value> = messages.iter().flat_map(|m| &m.observations).collect();
        let expected = want["observations"].as_array().expect("observations");
        assert_eq!(got.len(), expected.len(), "{name}: how many results");
        for (g, w) in got.iter().zip(expected) {
            check(&name, g, w);
        }
    }
}

type Repo = Records<MemoryStateStore, MemoryEventLog, MemoryBus>;

fn ingest() -> (ingest_lab::IngestLab<MemoryStateStore, MemoryEventLog, MemoryBus>, Repo) {
    let records = Records::new(
        MemoryStateStore::default(),
        MemoryEventLog::default(),
        MemoryBus::default(),
        Locks::default(),
    );
    (ingest_lab::IngestLab::new(records.clone(), identity()), records)
}

#[tokio::test]
async fn every_corpus_message_is_stored_or_refused_with_its_reason() {
    for (name, bytes, want) in corpus() {
        let (f, records) = ingest();
        let out = f.call(Event::new(Trigger::DaprBinding, "lab-feed", bytes)).await;
        let stored = records.store.keys().iter().filter(|k| k.starts_with("result-")).count();
        if let Some(reason) = want.get("rejected").and_then(Value::as_str) {
            let e = out.expect_err(&name);
            assert_eq!(e.kind, FailureKind::Invalid, "{name}: refused for good, not retried");
            assert!(e.message.to_lowercase().contains(reason), "{name}: `{}`", e.message);
            assert_eq!(stored, 0, "{name}: nothing stored");
            continue;
        }
        let body = out
            .unwrap_or_else(|e| panic!("{name}: {} {:?}", e.message, e.issues))
            .body
            .expect("body");
        let n = want["observations"].as_array().expect("observations").len();
        assert_eq!(body["results"], json!(n), "{name}");
        assert!(stored > 0 && stored <= n, "{name}: {stored} resources for {n} results");
    }
}

#[tokio::test]
async fn a_feed_sent_three_times_stores_each_result_once_corrections_replace_and_cancellations_retract() {
    let (f, records) = ingest();
    let feed: Vec<Vec<u8>> = corpus()
        .into_iter()
        .filter(|(name, _, _)| name.starts_with("13-") || name.starts_with("14-") || name.starts_with("15-"))
        .map(|(_, bytes, _)| bytes)
        .collect();
    assert_eq!(feed.len(), 3);
    for _ in 0..3 {
        for message in &feed {
            f.call(Event::new(Trigger::DaprBinding, "lab-feed", message.clone()))
                .await
                .expect("stored");
        }
    }
    // What a consumer sees: the lab-resulted lane (Records::new publishes inline).
    let announced: Vec<Value> = records
        .bus
        .messages("lab-resulted")
        .iter()
        .map(|m| serde_json::from_slice(m).expect("json"))
        .collect();
    // 13: sodium, potassium, urea; 14: potassium corrected (sodium and urea re-sent unchanged);
    // 15: sodium cancelled, urea entered in error. Nothing more for the two repeats.
    assert_eq!(announced.len(), 6, "{announced:#?}");
    let patient = announced[0]["patient_id"].as_str().expect("patient").to_owned();
    let r = records.load(&patient).await.expect("load").expect("record");
    assert_eq!(r.results.len(), 3);
    let by = |analyte: &str| {
        r.results
            .iter()
            .find(|e| e.analyte.as_deref() == Some(analyte))
            .expect(analyte)
    };
    assert_eq!(
        (by("potassium").status.as_str(), by("potassium").value),
        ("corrected", Some(4.9))
    );
    assert_eq!(by("potassium").message_id.as_deref(), Some("PL260305-000944"));
    assert!(by("sodium").is_retracted() && by("sodium").status == "cancelled");
    assert!(by("urea").is_retracted() && by("urea").status == "entered-in-error");
    let potassium_events = announced
        .iter()
        .filter(|e| e["result_id"] == json!(by("potassium").result_id))
        .count();
    assert_eq!(
        potassium_events, 2,
        "the correction is announced, so it is evaluated again"
    );
}

#[tokio::test]
async fn a_correction_naming_the_patient_by_another_identifier_corrects_the_same_result() {
    use wardwatch_domain::identity::Identifier;
    use wardwatch_domain::record::PatientRecord;
    let (f, records) = ingest();
    // An admitted patient known by both of the identifiers PID-3 carries.
    let mrn = Identifier {
        system: "urn:example:rxh".into(),
        value: "604418".into(),
    };
    let nhs = Identifier {
        system: "https://fhir.nhs.uk/Id/nhs-number".into(),
        value: "9990000069".into(),
    };
    let mut r = PatientRecord::new("p1", chrono::Utc::now());
    r.known = true;
    r.identity = Some(mrn.clone());
    r.identifiers = vec![mrn.clone(), nhs.clone()];
    records
        .update("p1", |_| {
            Ok::<_, wardwatch_domain::ports::PortError>(wardwatch_records::Step::Write {
                record: r.clone(),
                resources: Vec::new(),
                out: (),
            })
        })
        .await
        .expect("seed");
    records.claim(&mrn, "p1").await.expect("claim");
    records.claim(&nhs, "p1").await.expect("claim");

    let (_, original, _) = corpus().into_iter().find(|(n, _, _)| n.starts_with("13-")).expect("13");
    let (_, correction, _) = corpus().into_iter().find(|(n, _, _)| n.starts_with("14-")).expect("14");
    let by_nhs_only = String::from_utf8(correction)
        .expect("text")
        .replace("604418^^^RXH^MR~9990000069^^^NHS^NH", "9990000069^^^NHS^NH");
    for m in [original, by_nhs_only.into_bytes()] {
        f.call(Event::new(Trigger::DaprBinding, "lab-feed", m))
            .await
            .expect("stored");
    }
    let r = records.load("p1").await.expect("load").expect("record");
    let potassium: Vec<_> = r
        .results
        .iter()
        .filter(|e| e.analyte.as_deref() == Some("potassium"))
        .collect();
    assert_eq!(potassium.len(), 1, "one result, corrected");
    assert_eq!(
        (potassium[0].status.as_str(), potassium[0].value),
        ("corrected", Some(4.9))
    );
}
