//! The state model against the real Redis, with two "processes": two sets of handles (each its
//! own Redis connections and its own per-patient turns), so that their writes really interleave
//! and a lost update would show. What a consumer would see is counted on the event log and the
//! lanes, not in the de-duplicated record.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as Days, Utc};
use serde_json::{Value, json};
use wardwatch_adapters::{MemoryBus, RedisEventLog, RedisStateStore};
use wardwatch_domain::events::EventType;
use wardwatch_domain::identity::Identifier;
use wardwatch_domain::ports::{EventLog, PortError, StateStore};
use wardwatch_domain::record::PatientRecord;
use wardwatch_domain::rules::CriticalLimits;
use wardwatch_records::{Locks, Records, Step};
use wardwatch_runtime::{Event, FailureKind, Function, Secret, Trigger};

use crate::helpers::{Host, REDIS, clean_up, config, fixture, require_redis, unique};

type Repo = Records<RedisStateStore, RedisEventLog, MemoryBus>;

const MRN_SYSTEM: &str = "https://fhir.example-hospital.nhs.uk/Id/mrn";

/// One "process": its own connections, its own turns, its own in-process bus.
fn process(prefix: &str) -> (Repo, MemoryBus) {
    let url = Secret::new(REDIS);
    let store = RedisStateStore::new(&url, prefix).expect("store");
    let log = RedisEventLog::new(&url, &format!("{prefix}:events"), 100_000).expect("log");
    let bus = MemoryBus::default();
    (Records::new(store, log, bus.clone(), Locks::default()), bus)
}

fn admit(repo: &Repo) -> admit::Admit<RedisStateStore, RedisEventLog, MemoryBus> {
    admit::Admit::new(repo.clone(), Default::default())
}

fn ingest(repo: &Repo) -> ingest_lab::IngestLab<RedisStateStore, RedisEventLog, MemoryBus> {
    ingest_lab::IngestLab::new(repo.clone(), Default::default())
}

fn evaluate(repo: &Repo) -> evaluate_alert::EvaluateAlert<RedisStateStore, RedisEventLog, MemoryBus> {
    evaluate_alert::EvaluateAlert::new(repo.clone(), CriticalLimits::default())
}

/// Admit the example patient (MRN0001, Ward 7B) through `repo`.
async fn admit_example(repo: &Repo) {
    deliver(
        &admit(repo),
        Trigger::Http,
        "/fhir",
        &fixture("examples/admission-bundle.json"),
    )
    .await;
}

/// Deliver as daprd would: a transient failure (503) is delivered again, after a pause.
async fn deliver<F: Function>(f: &F, trigger: Trigger, source: &str, body: &Value) -> Value {
    for _ in 0..50 {
        match f.call(Event::new(trigger, source, body.to_string())).await {
            Ok(out) => return out.body.unwrap_or(Value::Null),
            Err(e) if e.kind == FailureKind::Transient => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("refused: {e:?}"),
        }
    }
    panic!("still failing after 50 deliveries");
}

fn creatinine(n: usize) -> Value {
    let mut obs = fixture("examples/potassium-critical.json");
    obs["identifier"][0]["value"] = json!(format!("LAB-CR-{n}"));
    obs["code"]["coding"][0] = json!({"system": "http://loinc.org", "code": "14682-9"});
    obs["valueQuantity"] =
        json!({"value": 80 + n, "unit": "µmol/L", "system": "http://unitsofmeasure.org", "code": "umol/L"});
    let when = (Utc::now() - Days::hours(n as i64)).to_rfc3339();
    obs["effectiveDateTime"] = json!(when);
    obs["issued"] = json!(when);
    obs
}

#[tokio::test]
async fn fifty_concurrent_results_for_one_patient_from_two_processes_all_end_in_the_record() {
    require_redis().await;
    let prefix = unique("ww-rec");
    let (a, bus_a) = process(&prefix);
    let (b, bus_b) = process(&prefix);
    admit_example(&a).await;
    let (ia, ib) = (Arc::new(ingest(&a)), Arc::new(ingest(&b)));
    let mut tasks = Vec::new();
    for n in 0..50 {
        let f = if n % 2 == 0 { ia.clone() } else { ib.clone() };
        tasks.push(tokio::spawn(async move {
            deliver(f.as_ref(), Trigger::DaprBinding, "lab-feed", &creatinine(n)).await
        }));
    }
    let mut patient = String::new();
    for t in tasks {
        patient = t.await.expect("join")["patient_id"].as_str().expect("id").to_owned();
    }
    let record = a.load(&patient).await.expect("load").expect("record");
    assert_eq!(record.results.len(), 50, "every result is in the record");
    let logged = a.log.read(None, 1000).await.expect("log").events;
    let stored = logged.iter().filter(|e| e.kind == EventType::ResultStored).count();
    assert_eq!(stored, 50, "the log has each result-stored exactly once");
    let lane = bus_a.messages("lab-resulted").len() + bus_b.messages("lab-resulted").len();
    assert!(lane >= 50, "every result announced at least once: {lane}");
    clean_up(&prefix).await;
}

#[tokio::test]
async fn an_amended_result_processed_before_the_requeued_original_stays_amended() {
    require_redis().await;
    let prefix = unique("ww-rec");
    let (a, _) = process(&prefix);
    let (b, bus_b) = process(&prefix);
    admit_example(&a).await;
    let original = fixture("examples/potassium-critical.json");
    let mut amended = original.clone();
    amended["status"] = json!("amended");
    amended["issued"] = json!("2026-11-27T11:00:00Z");
    amended["valueQuantity"]["value"] = json!(5.1);
    let out = deliver(&ingest(&a), Trigger::DaprBinding, "lab-feed", &amended).await;
    deliver(&ingest(&b), Trigger::DaprBinding, "lab-feed", &original).await;
    let record = b
        .load(out["patient_id"].as_str().expect("id"))
        .await
        .expect("load")
        .expect("record");
    assert_eq!(
        (record.results[0].status.as_str(), record.results[0].value),
        ("amended", Some(5.1))
    );
    assert!(
        bus_b.messages("lab-resulted").is_empty(),
        "the stale original announced nothing"
    );
    clean_up(&prefix).await;
}

#[tokio::test]
async fn a_discharged_stay_is_not_reopened_by_a_replayed_older_admission() {
    require_redis().await;
    let prefix = unique("ww-rec");
    let (a, _) = process(&prefix);
    let (b, bus_b) = process(&prefix);
    let mut admitted = fixture("examples/admission-bundle.json");
    admitted["entry"][1]["resource"]["meta"] = json!({"lastUpdated": "2026-11-27T08:00:00Z"});
    let mut discharged = admitted.clone();
    discharged["entry"][1]["resource"]["status"] = json!("finished");
    discharged["entry"][1]["resource"]["meta"] = json!({"lastUpdated": "2026-11-28T09:00:00Z"});
    deliver(&admit(&a), Trigger::Http, "/fhir", &admitted).await;
    deliver(&admit(&a), Trigger::Http, "/fhir", &discharged).await;
    deliver(&admit(&b), Trigger::Http, "/fhir", &admitted).await;
    let wards = b.wards().await.expect("wards");
    let members = b.ward_members(&wards[0]).await.expect("members");
    assert!(members.is_empty(), "still discharged: {members:?}");
    assert!(bus_b.messages("admissions").is_empty(), "the replay announced nothing");
    clean_up(&prefix).await;
}

#[tokio::test]
async fn a_record_read_ahead_and_changed_meanwhile_is_decided_again_from_the_fresh_one() {
    require_redis().await;
    let prefix = unique("ww-rec");
    let (a, _) = process(&prefix);
    let (b, _) = process(&prefix);
    let name = |record: &PatientRecord| record.name.clone().unwrap_or_default();
    let write = |mut record: PatientRecord, to: String| {
        record.name = Some(to);
        Ok::<_, PortError>(Step::Write {
            record,
            resources: Vec::new(),
            out: (),
        })
    };
    a.update("p1", |r| {
        write(
            r.unwrap_or_else(|| PatientRecord::new("p1", Utc::now())),
            "first".into(),
        )
    })
    .await
    .expect("create");
    let ident = Identifier {
        system: "urn:test".into(),
        value: "1".into(),
    };
    let (_, read_ahead) = a.lookup_and_prefetch(&ident, "p1").await.expect("read ahead");
    // Another process changes the record after it was read ahead.
    b.update("p1", |r| {
        let r = r.expect("exists");
        let to = format!("{} second", name(&r));
        write(r, to)
    })
    .await
    .expect("change");
    let mut seen = Vec::new();
    a.update_claiming_from("p1", &[], Some(read_ahead), |r| {
        let r = r.expect("exists");
        seen.push(name(&r));
        let to = format!("{} third", name(&r));
        write(r, to)
    })
    .await
    .expect("update");
    assert_eq!(
        seen,
        ["first", "first second"],
        "the stale copy conflicts and is read again"
    );
    let record = b.load("p1").await.expect("load").expect("record");
    assert_eq!(name(&record), "first second third", "no update lost");
    clean_up(&prefix).await;
}

#[tokio::test]
async fn a_critical_result_before_the_admission_is_in_the_record_afterwards_and_its_alert_listed() {
    require_redis().await;
    let prefix = unique("ww-rec");
    let host = Host::spawn(config(&[("REDIS_URL", REDIS), ("STATE_KEY_PREFIX", &prefix)])).await;
    let r = host
        .post_json("/lab-feed", &fixture("examples/potassium-critical.json"))
        .await;
    assert_eq!(r.status(), 200);
    let before = crate::helpers::alerts_for(&host, "MRN0001", Duration::from_secs(10))
        .await
        .expect("the alert is listed before the admission");
    assert_eq!(before[0]["ward"], Value::Null, "on the list of patients on no ward");
    host.admit_example().await;
    let inpatients = host.get_json("/api/inpatients").await;
    let me = &inpatients[0];
    assert_eq!(
        (me["mrn"].as_str(), me["ward"].as_str()),
        (Some("MRN0001"), Some("Ward 7B"))
    );
    assert_eq!(
        me["active_alerts"][0]["id"], before[0]["id"],
        "the alert follows the patient to the ward"
    );
    let record = host
        .get_json(&format!("/api/patients/{}", me["patient_id"].as_str().expect("id")))
        .await;
    assert_eq!(record["results"].as_array().map(Vec::len), Some(1));
    assert_eq!(record["known"], true);
    host.stop().await;
    clean_up(&prefix).await;
}

#[tokio::test]
async fn results_before_a_patient_with_its_own_id_are_joined_to_its_record() {
    require_redis().await;
    let prefix = unique("ww-rec");
    let (a, _) = process(&prefix);
    let early = deliver(
        &ingest(&a),
        Trigger::DaprBinding,
        "lab-feed",
        &fixture("examples/potassium-critical.json"),
    )
    .await;
    deliver(&evaluate(&a), Trigger::Memory, "lab-resulted", &{
        let log = a.log.read(None, 10).await.expect("log");
        serde_json::to_value(&log.events[0]).expect("json")
    })
    .await;
    let mut bundle = fixture("examples/admission-bundle.json");
    bundle["entry"][0]["resource"]["id"] = json!("pas-123");
    bundle["entry"][0]["request"] = json!({"method": "PUT", "url": "Patient/pas-123"});
    deliver(&admit(&a), Trigger::Http, "/fhir", &bundle).await;
    let joined = a.load("pas-123").await.expect("load").expect("record");
    assert_eq!((joined.results.len(), joined.alerts.len()), (1, 1));
    let pending = a
        .load(early["patient_id"].as_str().expect("id"))
        .await
        .expect("load")
        .expect("record");
    assert_eq!(pending.merged_into.as_deref(), Some("pas-123"));
    // A later result by the same identifier goes to the joined record.
    let mut later = fixture("examples/potassium-critical.json");
    later["identifier"][0]["value"] = json!("LAB-K-0002");
    let out = deliver(&ingest(&a), Trigger::DaprBinding, "lab-feed", &later).await;
    assert_eq!(out["patient_id"], "pas-123");
    assert!(
        a.members(wardwatch_domain::keys::UNPLACED)
            .await
            .expect("list")
            .is_empty()
    );
    let identity = wardwatch_domain::identity::Identifier {
        system: MRN_SYSTEM.into(),
        value: "MRN0001".into(),
    };
    assert_eq!(a.lookup(&identity).await.expect("lookup").as_deref(), Some("pas-123"));
    clean_up(&prefix).await;
}

#[tokio::test]
async fn events_come_in_id_order_without_repeats_and_survive_a_restart_with_new_ids_after_the_old() {
    require_redis().await;
    let prefix = unique("ww-rec");
    let vars = [("REDIS_URL", REDIS), ("STATE_KEY_PREFIX", prefix.as_str())];
    let host = Host::spawn(config(&vars)).await;
    host.admit_example().await;
    let r = host
        .post_json("/lab-feed", &fixture("examples/potassium-critical.json"))
        .await;
    assert_eq!(r.status(), 200);
    crate::helpers::alerts_for(&host, "MRN0001", Duration::from_secs(10))
        .await
        .expect("alert");
    let first = host.get_json("/api/events?after=0").await;
    let ids: Vec<String> = first["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "admitted, result-stored, alert-raised: {first}");
    // Paged one at a time, after each id seen: the same events, in order, none twice.
    let mut paged = Vec::new();
    let mut after = "0".to_owned();
    loop {
        let page = host.get_json(&format!("/api/events?after={after}&limit=1")).await;
        let Some(e) = page["events"].as_array().and_then(|a| a.first()).cloned() else {
            break;
        };
        after = e["id"].as_str().expect("id").to_owned();
        paged.push(after.clone());
    }
    assert_eq!(paged, ids);
    host.stop().await;

    let host = Host::spawn(config(&vars)).await;
    let mut transfer = fixture("examples/admission-bundle.json");
    transfer["entry"][1]["resource"]["location"][1]["location"]["display"] = json!("Bed 9");
    assert_eq!(host.post_json("/fhir", &transfer).await.status(), 200);
    let last = ids.last().expect("an id");
    let after_restart = host.get_json(&format!("/api/events?after={last}")).await;
    let new = after_restart["events"].as_array().expect("events");
    assert_eq!(new.len(), 1, "{after_restart}");
    assert_eq!(new[0]["type"], "transferred");
    let parse = |s: &str| wardwatch_domain::ports::EventId::parse(s).expect("id");
    assert!(parse(new[0]["id"].as_str().expect("id")) > parse(last));
    assert_eq!(after_restart["gap"], false);
    host.stop().await;
    clean_up(&prefix).await;
}

#[tokio::test]
async fn data_in_the_first_layout_is_refused_at_start_up_with_a_clear_message() {
    require_redis().await;
    let prefix = unique("ww-rec");
    let store = RedisStateStore::new(&Secret::new(REDIS), &prefix).expect("store");
    store.set("census", b"{\"patients\":{}}", None).await.expect("old data");
    let err = wardwatch_records::check_layout(&store).await.expect_err("refused");
    assert!(
        err.contains("first layout") && err.contains("STATE_KEY_PREFIX"),
        "{err}"
    );
    let other = unique("ww-rec");
    let fresh = RedisStateStore::new(&Secret::new(REDIS), &other).expect("store");
    wardwatch_records::check_layout(&fresh)
        .await
        .expect("a new store is marked and accepted");
    wardwatch_records::check_layout(&fresh)
        .await
        .expect("and accepted again");
    clean_up(&prefix).await;
    clean_up(&other).await;
}
