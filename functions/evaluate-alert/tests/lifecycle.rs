//! The alert lifecycle through the functions themselves: results stored as ingest-lab stores
//! them, `result-stored` events delivered to evaluate-alert, ticks delivered to `escalate` — on
//! memory adapters (time injected as the delivery's time) and on a real Redis with tasks that
//! interleave. Every "once" is counted where a consumer sees it: the `alerts` lane and the
//! event log.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use wardwatch_adapters::{MemoryBus, MemoryEventLog, MemoryStateStore, RedisEventLog, RedisStateStore};
use wardwatch_domain::decide::result;
use wardwatch_domain::events::EventType;
use wardwatch_domain::keys;
use wardwatch_domain::ports::{EventLog, PortError, Publisher, StateStore};
use wardwatch_domain::record::ResultEntry;
use wardwatch_domain::rules::CriticalLimits;
use wardwatch_records::{Locks, Records, Step};
use wardwatch_runtime::{Event, Function, Secret, Trigger};

const REDIS: &str = "redis://127.0.0.1:6379";

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("time")
}

fn lab(id: &str, analyte: &str, value: f64, at: DateTime<Utc>) -> ResultEntry {
    let unit = if analyte == "creatinine" { "umol/L" } else { "mmol/L" };
    ResultEntry {
        result_id: id.into(),
        loinc: if analyte == "creatinine" { "14682-9" } else { "2823-3" }.into(),
        local_code: None,
        analyte: Some(analyte.into()),
        value: Some(value),
        unit: unit.into(),
        comparator: None,
        reported_value: Some(value),
        reported_unit: unit.into(),
        text: None,
        not_evaluable: None,
        status: "final".into(),
        effective: Some(at),
        issued: Some(at),
        message_id: None,
        digest: format!("d{id}"),
        resource_key: format!("result-{id}-d"),
    }
}

/// Store a result in the patient's record as ingest-lab does.
async fn store<S: StateStore, L: EventLog, P: Publisher>(records: &Records<S, L, P>, entry: &ResultEntry) {
    store_for(records, "p1", entry).await;
}

async fn store_for<S: StateStore, L: EventLog, P: Publisher>(
    records: &Records<S, L, P>,
    patient: &str,
    entry: &ResultEntry,
) {
    records
        .update(patient, |r| {
            let d = result::decide(r, patient, entry.clone(), None, t0());
            Ok::<_, PortError>(if d.changed {
                Step::Write {
                    record: d.record,
                    resources: Vec::new(),
                    out: (),
                }
            } else {
                Step::Keep(())
            })
        })
        .await
        .expect("stored");
}

/// The `result-stored` event for `result_id`, delivered at `at`.
fn resulted(result_id: &str, at: DateTime<Utc>) -> Event {
    resulted_for("p1", result_id, at)
}

fn resulted_for(patient: &str, result_id: &str, at: DateTime<Utc>) -> Event {
    let body = json!({"type": "result-stored", "at": "2027-01-15T08:00:00Z", "patient_id": patient,
        "mrn": null, "ward": null, "result_id": result_id});
    let mut e = Event::new(Trigger::Memory, "lab-resulted", body.to_string());
    e.context.received_at = at;
    e
}

fn tick(at: DateTime<Utc>) -> Event {
    let mut e = Event::new(Trigger::Memory, "escalate", "");
    e.context.received_at = at;
    e
}

fn lane_types(bus: &MemoryBus) -> Vec<String> {
    bus.messages("alerts")
        .iter()
        .map(|m| {
            serde_json::from_slice::<Value>(m).expect("json")["type"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn memory() -> (Records<MemoryStateStore, MemoryEventLog, MemoryBus>, MemoryBus) {
    let bus = MemoryBus::default();
    let records = Records::new(
        MemoryStateStore::default(),
        MemoryEventLog::default(),
        bus.clone(),
        Locks::default(),
    );
    (records, bus)
}

#[tokio::test]
async fn an_alert_nobody_acknowledges_is_escalated_by_the_tick_once_after_its_review_window() {
    let (records, bus) = memory();
    let evaluate = evaluate_alert::EvaluateAlert::new(records.clone(), CriticalLimits::default());
    let escalate = evaluate_alert::Escalate::new(records.clone());
    store(&records, &lab("k1", "potassium", 7.2, t0())).await;
    evaluate.call(resulted("k1", t0())).await.expect("evaluated");
    assert_eq!(records.members(keys::REVIEW).await.expect("list"), ["p1"]);

    // Potassium's review window is 60 minutes: a tick before it changes nothing.
    let out = escalate.call(tick(t0() + Duration::minutes(59))).await.expect("tick");
    assert_eq!(out.body, Some(json!({"checked": 1, "escalated": []})));
    let out = escalate.call(tick(t0() + Duration::minutes(61))).await.expect("tick");
    assert_eq!(
        out.body.as_ref().map(|b| b["escalated"].as_array().map(Vec::len)),
        Some(Some(1))
    );
    // Off the review list, so a later tick reads nothing.
    let out = escalate.call(tick(t0() + Duration::hours(5))).await.expect("tick");
    assert_eq!(out.body, Some(json!({"checked": 0, "escalated": []})));
    assert_eq!(lane_types(&bus), ["alert-raised", "alert-escalated"]);
    let r = records.load("p1").await.expect("load").expect("record");
    assert_eq!(r.alerts[0].status.as_str(), "escalated");
    assert_eq!(r.audit.len(), 2);
    // Still needs someone, on no ward: listed.
    assert_eq!(records.members(keys::UNPLACED).await.expect("list"), ["p1"]);
}

#[tokio::test]
async fn one_unreadable_record_on_the_review_list_never_holds_up_the_others_escalations() {
    let (records, bus) = memory();
    let evaluate = evaluate_alert::EvaluateAlert::new(records.clone(), CriticalLimits::default());
    let escalate = evaluate_alert::Escalate::new(records.clone());
    store(&records, &lab("k1", "potassium", 7.2, t0())).await;
    evaluate.call(resulted("k1", t0())).await.expect("evaluated");
    // A record that cannot be read, listed first ("a…" sorts before "p1").
    records
        .store
        .set(&keys::record("a-broken"), b"{not json", None)
        .await
        .expect("set");
    records
        .cas::<wardwatch_records::Members, _>(keys::REVIEW, |m| {
            m.patients.insert("a-broken".into(), 1);
            true
        })
        .await
        .expect("listed");
    let failed = escalate
        .call(tick(t0() + Duration::hours(2)))
        .await
        .expect_err("reported");
    assert_eq!(failed.kind, wardwatch_runtime::FailureKind::Transient);
    assert!(!failed.message.contains("not json"), "no internal detail to the caller");
    assert_eq!(
        lane_types(&bus),
        ["alert-raised", "alert-escalated"],
        "p1 was escalated all the same"
    );
}

#[tokio::test]
async fn creatinine_results_arriving_shuffled_and_redelivered_raise_one_aki_alert_on_the_lane() {
    let series = [
        lab("c1", "creatinine", 80.0, t0() - Duration::days(30)),
        lab("c2", "creatinine", 82.0, t0() - Duration::days(20)),
        lab("c3", "creatinine", 130.0, t0()),
        lab("c4", "creatinine", 175.0, t0() + Duration::days(1)),
        lab("c5", "creatinine", 250.0, t0() + Duration::days(2)),
    ];
    let now = t0() + Duration::days(3);
    let mut in_order = None;
    for order in [[0, 1, 2, 3, 4], [4, 2, 3, 0, 1], [3, 4, 2, 1, 0], [2, 0, 4, 1, 3]] {
        let (records, bus) = memory();
        let evaluate = evaluate_alert::EvaluateAlert::new(records.clone(), CriticalLimits::default());
        for i in order {
            store(&records, &series[i]).await;
            evaluate
                .call(resulted(&series[i].result_id, now))
                .await
                .expect("evaluated");
            // Redelivered: changes nothing.
            evaluate
                .call(resulted(&series[i].result_id, now))
                .await
                .expect("evaluated");
        }
        let types = lane_types(&bus);
        assert_eq!(
            types.iter().filter(|t| *t == "alert-raised").count(),
            1,
            "{order:?}: {types:?}"
        );
        let logged = records.log.read(None, 100).await.expect("log").events;
        assert_eq!(logged.iter().filter(|e| e.kind == EventType::AlertRaised).count(), 1);
        let r = records.load("p1").await.expect("load").expect("record");
        let open: Vec<_> = r.alerts.iter().filter(|a| a.status.is_open()).collect();
        assert_eq!(open.len(), 1);
        let summary = (open[0].stage, open[0].results.clone(), open[0].telephone);
        assert_eq!(summary.0, Some(3));
        match &in_order {
            None => in_order = Some(summary),
            Some(first) => assert_eq!(&summary, first, "{order:?}"),
        }
    }
}

/// A connection of the test's own, or a panic saying how to start Redis.
async fn redis_conn() -> redis::aio::MultiplexedConnection {
    let attempt = async {
        redis::Client::open(REDIS)
            .ok()?
            .get_multiplexed_async_connection()
            .await
            .ok()
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), attempt)
        .await
        .ok()
        .flatten()
    {
        Some(c) => c,
        None => panic!(
            "Redis is not running on 127.0.0.1:6379. Start it with:\n  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_evaluating_the_same_results_at_once_on_redis_raise_each_alert_once_and_lose_none() {
    let mut c = redis_conn().await;
    let prefix = format!("ww-lifecycle-{}", uuid::Uuid::new_v4().simple());
    let stream = format!("{prefix}:events");
    let process = || {
        Records::new(
            RedisStateStore::new(&Secret::new(REDIS), &prefix).expect("store"),
            RedisEventLog::new(&Secret::new(REDIS), &stream, 10_000).expect("log"),
            MemoryBus::default(),
            // Each "process" has its own turn-taking: only the ETag keeps them apart.
            Locks::default(),
        )
    };
    let (a, b) = (process(), process());
    let series = [
        lab("c1", "creatinine", 80.0, t0() - Duration::days(30)),
        lab("c2", "creatinine", 80.0, t0() - Duration::days(20)),
        lab("c3", "creatinine", 130.0, t0()),
        lab("c4", "creatinine", 175.0, t0() + Duration::hours(12)),
        lab("k1", "potassium", 7.0, t0()),
        lab("k2", "potassium", 7.3, t0() + Duration::hours(1)),
    ];
    const PATIENTS: usize = 10;
    for p in 0..PATIENTS {
        for e in &series {
            store_for(&a, &format!("p{p}"), e).await;
        }
    }
    let now = t0() + Duration::days(1);
    let fa = Arc::new(evaluate_alert::EvaluateAlert::new(a.clone(), CriticalLimits::default()));
    let fb = Arc::new(evaluate_alert::EvaluateAlert::new(b.clone(), CriticalLimits::default()));
    let mut tasks = Vec::new();
    for round in 0..8 {
        for p in 0..PATIENTS {
            for (i, e) in series.iter().enumerate() {
                let f = if (i + round + p) % 2 == 0 {
                    fa.clone()
                } else {
                    fb.clone()
                };
                let (id, patient) = (e.result_id.clone(), format!("p{p}"));
                tasks.push(tokio::spawn(async move {
                    f.call(resulted_for(&patient, &id, now)).await.map(|_| ())
                }));
            }
        }
    }
    for t in tasks {
        t.await.expect("task").expect("evaluated");
    }
    let logged = a.log.read(None, 10_000).await.expect("log").events;
    let mut problems = Vec::new();
    for p in 0..PATIENTS {
        let patient = format!("p{p}");
        let raised: Vec<_> = logged
            .iter()
            .filter(|e| e.kind == EventType::AlertRaised && e.patient_id == patient)
            .collect();
        let record = a.load(&patient).await.expect("load").expect("record");
        let mut kept: Vec<&str> = record.alerts.iter().map(|x| x.id.as_str()).collect();
        let mut announced: Vec<&str> = raised.iter().filter_map(|e| e.alert_id.as_deref()).collect();
        kept.sort_unstable();
        announced.sort_unstable();
        // One AKI alert and one potassium alert, each raised once, however the deliveries met;
        // and the alerts the record keeps are the ones announced (no write lost another's).
        if raised.len() != 2 || kept != announced {
            problems.push(format!(
                "{patient}: raised {} times, kept {kept:?}, announced {announced:?}",
                raised.len()
            ));
        }
    }
    let mut keys: Vec<String> = redis::AsyncCommands::keys(&mut c, format!("{prefix}*"))
        .await
        .expect("keys");
    keys.push(stream.clone());
    let _: () = redis::AsyncCommands::del(&mut c, keys).await.expect("clean up");
    assert!(problems.is_empty(), "{problems:#?}");
}
