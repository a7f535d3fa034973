//! Lab feeds through the real RabbitMQ and Redis: HL7 v2 messages sent again and again, a
//! correction, a cancellation; a message that cannot be stored kept, listed and replayed with
//! the real `wardwatch replay-rejected` once its cause is fixed.

use std::time::Duration;

use serde_json::Value;
use wardwatch_domain::ids;

use crate::helpers::{Host, REDIS, VHost, clean_up, config, eventually, oru_corpus, require_redis, unique};
use crate::services::{direct_host_with, get_one, publish};

const RXH: &str = "urn:example:rxh";

/// The events of one patient in the log, oldest first.
async fn events_of(host: &Host, patient_id: &str) -> Vec<Value> {
    let page = host.get_json("/api/events?after=0&limit=1000").await;
    page["events"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["patient_id"] == patient_id).cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn through_rabbitmq_a_feed_sent_three_times_stores_each_result_once_and_corrections_and_cancellations_apply() {
    let (vhost, prefix, host) = direct_host_with(&[("V2_IDENTIFIER_SYSTEMS", &format!("RXH^MR={RXH}"))]).await;
    let feed = [oru_corpus("13-"), oru_corpus("14-"), oru_corpus("15-")];
    for _ in 0..3 {
        for message in &feed {
            publish(&vhost.url(), "lab-feed", message).await;
        }
    }
    let patient = ids::derived("patient", &[RXH, "604418"]);
    // 13: sodium, potassium, urea; 14: the potassium correction; 15: sodium cancelled, urea
    // entered in error. Each stored once: the log is what every consumer sees.
    let stored = eventually(Duration::from_secs(30), || async {
        let e: Vec<Value> = events_of(&host, &patient)
            .await
            .into_iter()
            .filter(|e| e["type"] == "result-stored")
            .collect();
        (e.len() >= 6).then_some(e)
    })
    .await
    .expect("the six changes arrive");
    // Give a duplicate the time to show itself: every delivery of the nine must be done.
    eventually(Duration::from_secs(30), || async {
        let m = host.metrics_text().await;
        m.lines()
            .find(|l| l.starts_with("wardwatch_invocation_duration_seconds_count") && l.contains("ingest-lab"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .filter(|n| *n >= 9.0)
    })
    .await
    .expect("all nine deliveries handled");
    // The consumer reports its queue's depth as the broker counts it (asked at once on start).
    let metrics = host.metrics_text().await;
    assert!(
        metrics.contains(r#"wardwatch_queue_messages{queue="lab-feed"}"#),
        "{metrics}"
    );
    let again: Vec<Value> = events_of(&host, &patient)
        .await
        .into_iter()
        .filter(|e| e["type"] == "result-stored")
        .collect();
    assert_eq!(again.len(), 6, "{stored:#?}");
    let record = host.get_json(&format!("/api/patients/{patient}")).await;
    let results = record["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    let by = |a: &str| results.iter().find(|r| r["analyte"] == a).expect(a).clone();
    assert_eq!(
        (by("potassium")["status"].clone(), by("potassium")["value"].clone()),
        ("corrected".into(), 4.9.into())
    );
    assert_eq!(by("sodium")["status"], "cancelled");
    assert_eq!(by("urea")["status"], "entered-in-error");
    // The critical 6.9 raised an alert; the correction was evaluated again (issue 8 resolves).
    host.stop().await;
    clean_up(&prefix).await;
}

#[tokio::test]
async fn a_message_that_cannot_be_stored_is_kept_listed_without_patient_data_and_replayed_once_fixed() {
    require_redis().await;
    let vhost = VHost::new().await;
    let prefix = unique("ww-test");
    let amqp = vhost.url();
    let base = [
        ("REDIS_URL", REDIS),
        ("AMQP_URL", amqp.as_str()),
        ("STATE_KEY_PREFIX", prefix.as_str()),
    ];
    // No V2_IDENTIFIER_SYSTEMS: RXH identifiers have no FHIR system yet.
    let host = Host::spawn(config(&base)).await;
    let message = oru_corpus("01-");
    publish(&vhost.url(), "lab-feed", &message).await;
    let listed = eventually(Duration::from_secs(20), || async {
        let l = host.get_json("/api/rejected").await;
        l["rejected"].as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await
    .expect("the refusal is kept and listed");
    assert_eq!(listed.len(), 1);
    let item = &listed[0];
    assert_eq!(item["lane"], "lab-feed");
    assert!(
        item["reason"]
            .as_str()
            .expect("reason")
            .contains("V2_IDENTIFIER_SYSTEMS"),
        "{item}"
    );
    let text = serde_json::to_string(&listed).expect("json");
    for private in ["123456", "HARGREAVES", "Mabel", "19410318", "9434765919", "Ashcombe"] {
        assert!(
            !text.contains(private),
            "the list carries no patient data: {private} in {text}"
        );
    }
    // Also published on the rejected lane, with the original bytes.
    let url = vhost.url();
    let published = eventually(Duration::from_secs(10), || get_one(&url, "lab-feed-rejected"))
        .await
        .expect("on lab-feed-rejected");
    let published: Value = serde_json::from_slice(&published).expect("json");
    assert_eq!(published["payload"].as_str().map(str::as_bytes), Some(&message[..]));
    // The whole record, by its handle.
    let handle = item["handle"].as_str().expect("handle").to_owned();
    let kept = host.get_json(&format!("/api/rejected/{handle}")).await;
    assert_eq!(kept["payload"].as_str().map(str::as_bytes), Some(&message[..]));
    host.stop().await;

    // Fixed: the authority is mapped. The real command puts the message back on the queue.
    let mut fixed = base.to_vec();
    fixed.push(("V2_IDENTIFIER_SYSTEMS", "RXH^MR=urn:example:rxh"));
    let host = Host::spawn(config(&fixed)).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wardwatch"))
        .args(["replay-rejected", "--all", "--redis", REDIS, "--amqp", &vhost.url()])
        .env("STATE_KEY_PREFIX", &prefix)
        .output()
        .expect("run wardwatch replay-rejected");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&handle));
    let patient = ids::derived("patient", &[RXH, "123456"]);
    let results = eventually(Duration::from_secs(20), || async {
        let r = reqwest::get(host.url(&format!("/api/patients/{patient}"))).await.ok()?;
        let v: Value = r.json().await.ok()?;
        v["results"].as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await
    .expect("the replayed message is stored");
    assert!(!results.is_empty());
    let l = host.get_json("/api/rejected").await;
    assert_eq!(l["rejected"], serde_json::json!([]), "replayed, so no longer listed");
    host.stop().await;
    clean_up(&prefix).await;
}

#[tokio::test]
async fn results_are_read_back_over_fhir_newest_first_with_the_canonical_value_and_what_was_received() {
    let host = Host::spawn(config(&[("V2_IDENTIFIER_SYSTEMS", &format!("RXH^MR={RXH}"))])).await;
    let post = |body: Vec<u8>| {
        let url = host.url("/lab-feed");
        async move {
            let r = reqwest::Client::new().post(url).body(body).send().await.expect("post");
            assert_eq!(r.status(), 200);
        }
    };
    // An HL7 v2 U&E (SI units) and, later, a FHIR creatinine in mg/dL for the same patient.
    post(oru_corpus("13-")).await;
    let creatinine = serde_json::json!({"resourceType": "Observation", "status": "final",
        "identifier": [{"system": "urn:lab", "value": "c-1"}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
        "subject": {"identifier": {"system": RXH, "value": "604418"}},
        "effectiveDateTime": "2026-03-06T08:00:00Z",
        "valueQuantity": {"value": 1.5, "unit": "mg/dL"}});
    post(creatinine.to_string().into_bytes()).await;

    let page = host
        .get_json(&format!("/fhir/Observation?patient.identifier={RXH}%7C604418"))
        .await;
    assert_eq!(
        (page["resourceType"].as_str(), page["type"].as_str()),
        (Some("Bundle"), Some("searchset"))
    );
    assert_eq!(page["total"], 4);
    let first = &page["entry"][0]["resource"];
    assert_eq!(first["code"]["coding"][0]["code"], "2160-0", "newest first");
    assert_eq!(first["valueQuantity"]["value"], 132.63);
    assert_eq!(first["valueQuantity"]["unit"], "umol/L");
    let received = first["extension"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["url"] == wardwatch_domain::lab::RECEIVED_EXTENSION))
        .expect("as received");
    assert_eq!(received["extension"][1]["valueString"], "mg/dL");
    let potassium = serde_json::to_string(&page).expect("json");
    assert!(potassium.contains("PL260305-000612"), "the message control id is kept");

    let only = host
        .get_json(&format!(
            "/fhir/Observation?patient.identifier={RXH}%7C604418&code=2823-3"
        ))
        .await;
    assert_eq!(only["total"], 1);
    assert_eq!(only["entry"][0]["resource"]["valueQuantity"]["value"], 6.9);
    let by_id = host
        .get_json(&format!(
            "/fhir/Observation?patient={}",
            ids::derived("patient", &[RXH, "604418"])
        ))
        .await;
    assert_eq!(by_id["total"], 4);
    let bad = reqwest::get(host.url("/fhir/Observation?date=2026"))
        .await
        .expect("get");
    assert_eq!(bad.status(), 400);
    host.stop().await;
}

mod kept {
    //! The kept rejected deliveries against the real Redis.
    use chrono::{Duration as Days, Utc};
    use wardwatch_adapters::{MemoryBus, RedisStateStore};
    use wardwatch_domain::events::Rejected;
    use wardwatch_records::rejects::{KEEP_DAYS, Rejects, Replay};
    use wardwatch_runtime::Secret;

    use crate::helpers::{REDIS, clean_up, require_redis, unique};

    fn record(payload: &str, request_id: &str, at: chrono::DateTime<Utc>, truncated_from: Option<usize>) -> Vec<u8> {
        serde_json::to_vec(&Rejected {
            lane: "lab-feed".into(),
            received_at: at,
            request_id: request_id.into(),
            outcome: serde_json::json!({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "invalid", "diagnostics": "the Observation is not valid FHIR R4: \"Jane Doe\" is not …",
                 "expression": ["/name"]}]}),
            payload: Some(payload.into()),
            payload_base64: None,
            truncated_from,
        })
        .expect("json")
    }

    #[tokio::test]
    async fn a_refusal_redelivered_under_another_request_id_is_kept_once_and_old_ones_are_dropped() {
        require_redis().await;
        let prefix = unique("ww-rejects");
        let store = RedisStateStore::new(&Secret::new(REDIS), &prefix).expect("store");
        let rejects = Rejects::new(store);
        let now = Utc::now();
        let a = rejects
            .keep(&record("MSH|x", "r-1", now, None), now)
            .await
            .expect("keep");
        let b = rejects
            .keep(&record("MSH|x", "r-2", now, None), now)
            .await
            .expect("keep");
        assert_eq!(a, b, "the same payload on the same lane is one record");
        let list = rejects.list(now).await.expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(
            list[0].reason, "the Observation is not valid FHIR R4",
            "our words, not the detail"
        );
        assert_eq!(list[0].locations, ["/name"]);
        // Thirty days on, reading the list drops it and its record.
        let later = now + Days::days(KEEP_DAYS) + Days::minutes(1);
        assert!(rejects.list(later).await.expect("list").is_empty());
        assert!(
            rejects.get(&a).await.expect("get").is_none(),
            "deleted, not only unlisted"
        );

        // Only a head kept: listed as not replayable, and replay refuses it.
        let head = rejects
            .keep(&record("MSH|y", "r-3", now, Some(20 << 20)), now)
            .await
            .expect("keep");
        assert!(!rejects.list(now).await.expect("list")[0].replayable);
        let bus = MemoryBus::default();
        assert!(
            matches!(rejects.replay(&head, &bus).await.expect("replay"), Replay::Truncated { of, .. } if of == 20 << 20)
        );
        assert!(bus.messages("lab-feed").is_empty());
        assert_eq!(rejects.replay("no-such", &bus).await.expect("replay"), Replay::NotFound);
        clean_up(&prefix).await;
    }
}

#[tokio::test]
async fn an_embedded_up_replays_a_kept_delivery_over_http_and_an_unknown_handle_is_404() {
    let host = Host::spawn(config(&[])).await;
    // No V2_IDENTIFIER_SYSTEMS: refused and kept.
    let r = reqwest::Client::new()
        .post(host.url("/lab-feed"))
        .body(oru_corpus("01-"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let listed = host.get_json("/api/rejected").await;
    let handle = listed["rejected"][0]["handle"].as_str().expect("kept").to_owned();
    let handled = || async {
        let m = host.metrics_text().await;
        // Every trigger: the POST above, the in-process bus the replay goes through.
        m.lines()
            .filter(|l| l.starts_with("wardwatch_invocation_duration_seconds_count") && l.contains("ingest-lab"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert_eq!(handled().await, 1.0);
    let replay = |h: String| {
        let url = host.url(&format!("/api/rejected/{h}/replay"));
        async move {
            reqwest::Client::new()
                .post(url)
                .send()
                .await
                .expect("replay")
                .status()
                .as_u16()
        }
    };
    assert_eq!(replay(handle.clone()).await, 202);
    // Back on lab-feed: ingest-lab reads it again, refuses it again (nothing was fixed), and it
    // is kept again under the same handle.
    let again = eventually(Duration::from_secs(10), || async {
        (handled().await >= 2.0).then_some(())
    })
    .await;
    assert!(again.is_some(), "the replay reached ingest-lab");
    let listed = eventually(Duration::from_secs(10), || async {
        let l = host.get_json("/api/rejected").await;
        l["rejected"].as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await
    .expect("kept again");
    assert_eq!(listed[0]["handle"], handle.as_str());
    assert_eq!(replay("no-such-handle".into()).await, 404);
    host.stop().await;
}
