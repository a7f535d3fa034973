//! A stored result is checked against the critical limits; every finding not already raised
//! becomes one alert in the patient's record, and one `alert-raised` event.
//!
//! Only the result's current version in the record is evaluated, so a late redelivery of an
//! original that was since amended is judged by the amended value. Preliminary, registered and
//! retracted results never raise an alert.

use chrono::{DateTime, Utc};

use crate::aki::Age;
use crate::alert::{Acknowledgement, Alert, AlertStatus};
use crate::events::EventType;
use crate::ids;
use crate::record::{Decision, PatientRecord, ResultEntry, finish};
use crate::rules::{CriticalLimits, critical_limits};

/// The id of the alert a rule raises on a result: the same every time.
pub fn alert_id(result_id: &str, rule: &str) -> String {
    ids::derived("alert", &[result_id, rule])
}

/// `carried`: the result as a record joined into this one held it, for an evaluation that
/// followed the join before the result was copied over; it is added if this record lacks it.
pub fn decide(
    record: PatientRecord,
    result_id: &str,
    carried: Option<&ResultEntry>,
    limits: &CriticalLimits,
    now: DateTime<Utc>,
) -> Decision {
    let before = record.clone();
    let mut r = record;
    if r.result(result_id).is_none()
        && let Some(entry) = carried.filter(|e| e.result_id == result_id)
    {
        r.results.push(entry.clone());
    }
    let Some(result) = r.result(result_id).cloned() else {
        return Decision::unchanged(before);
    };
    // Only a result the laboratory stands by is evaluated: not a preliminary, registered,
    // unknown or retracted one.
    if !matches!(result.status.as_str(), "final" | "amended" | "corrected") {
        return finish(Some(&before), r, now);
    }
    // The patient's age when the sample was taken (the limits' age bands).
    let age = r
        .birth_date
        .zip(result.when())
        .and_then(|(birth, when)| Age::at(birth, when))
        .map(|a| a.years);
    let new: Vec<Alert> = critical_limits(&result, limits, age)
        .into_iter()
        .map(|f| Alert {
            id: alert_id(result_id, &f.rule),
            rule: f.rule,
            severity: f.severity,
            status: AlertStatus::Active,
            message: f.message,
            result_id: result_id.to_owned(),
            loinc: result.loinc.clone(),
            analyte: result.analyte.clone(),
            // Findings are made only for evaluable results, which have a value.
            value: result.value.unwrap_or_default(),
            unit: result.unit.clone(),
            raised_at: now,
            acknowledged: None,
        })
        .filter(|a| !r.alerts.iter().any(|x| x.id == a.id))
        .collect();
    if new.is_empty() {
        return finish(Some(&before), r, now);
    }
    r.alerts.extend(new.iter().cloned());
    // The work list first, then the events: a reader who sees the event finds the patient listed.
    r.sync_unplaced();
    for a in &new {
        r.emit(EventType::AlertRaised, now, |e| {
            e.alert_id = Some(a.id.clone());
            e.result_id = Some(result_id.to_owned());
            e.analyte = a.analyte.clone();
        });
    }
    finish(Some(&before), r, now)
}

/// What acknowledging an alert came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledged {
    /// It was active and is acknowledged now (one `alert-acknowledged` event).
    Now,
    /// It was acknowledged already: nothing changed.
    Already,
    /// It is escalated or resolved: acknowledging it changes nothing.
    NotActive(AlertStatus),
    /// The record has no alert of that id.
    NotFound,
}

/// Acknowledge one of the patient's alerts: `by` (a signed-in user or a name typed on the
/// board) saw it, with an optional `note`. Acknowledging twice changes nothing.
pub fn acknowledge(
    record: PatientRecord,
    alert_id: &str,
    by: &str,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> (Decision, Acknowledged) {
    let Some(i) = record.alerts.iter().position(|a| a.id == alert_id) else {
        return (Decision::unchanged(record), Acknowledged::NotFound);
    };
    match record.alerts[i].status {
        AlertStatus::Active => {}
        AlertStatus::Acknowledged => return (Decision::unchanged(record), Acknowledged::Already),
        other => return (Decision::unchanged(record), Acknowledged::NotActive(other)),
    }
    let before = record.clone();
    let mut r = record;
    let alert = &mut r.alerts[i];
    alert.status = AlertStatus::Acknowledged;
    alert.acknowledged = Some(Acknowledgement {
        by: by.to_owned(),
        at: now,
        note: note.map(str::to_owned),
    });
    let (result_id, analyte) = (alert.result_id.clone(), alert.analyte.clone());
    r.sync_unplaced();
    r.emit(EventType::AlertAcknowledged, now, |e| {
        e.alert_id = Some(alert_id.to_owned());
        e.result_id = Some(result_id);
        e.analyte = analyte;
    });
    (finish(Some(&before), r, now), Acknowledged::Now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::result;
    use crate::record::{Action, ResultEntry};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("time")
    }

    fn with_potassium(value: f64, status: &str) -> PatientRecord {
        let entry = ResultEntry {
            effective: Some(now()),
            issued: Some(now()),
            ..crate::record::potassium_result(value, status)
        };
        result::decide(None, "p1", entry, None, now()).record
    }

    #[test]
    fn a_critical_potassium_raises_one_alert_once() {
        let limits = CriticalLimits::default();
        let d = decide(with_potassium(7.1, "final"), "r1", None, &limits, now());
        assert_eq!(d.events().filter(|e| e.kind == EventType::AlertRaised).count(), 1);
        assert_eq!(d.record.alerts.len(), 1);
        let again = decide(d.record, "r1", None, &limits, now());
        assert!(!again.changed && again.emitted.is_empty());
    }

    #[test]
    fn a_patient_on_no_ward_with_an_alert_is_listed_before_the_event() {
        let d = decide(
            with_potassium(7.1, "final"),
            "r1",
            None,
            &CriticalLimits::default(),
            now(),
        );
        assert!(matches!(d.emitted[0].action, Action::ListUnplaced));
        assert!(matches!(d.emitted[1].action, Action::Event { .. }));
    }

    #[test]
    fn a_result_carried_from_a_joined_record_is_added_and_evaluated() {
        let early = with_potassium(7.1, "final");
        let carried = early.result("r1").cloned();
        let target = PatientRecord::new("p2", now());
        let d = decide(target, "r1", carried.as_ref(), &CriticalLimits::default(), now());
        assert!(d.record.result("r1").is_some());
        assert_eq!(d.record.alerts.len(), 1);
    }

    #[test]
    fn preliminary_retracted_and_normal_results_raise_nothing() {
        let limits = CriticalLimits::default();
        for (v, s) in [(7.1, "preliminary"), (7.1, "entered-in-error"), (4.0, "final")] {
            assert!(
                !decide(with_potassium(v, s), "r1", None, &limits, now()).changed,
                "{v} {s}"
            );
        }
        assert!(!decide(with_potassium(7.1, "final"), "nope", None, &limits, now()).changed);
    }

    #[test]
    fn acknowledging_changes_the_status_once_and_emits_one_event() {
        let raised = decide(
            with_potassium(7.1, "final"),
            "r1",
            None,
            &CriticalLimits::default(),
            now(),
        )
        .record;
        let id = raised.alerts[0].id.clone();
        let (d, what) = acknowledge(raised, &id, "Sister Jones", Some("repeat sample sent"), now());
        assert_eq!(what, Acknowledged::Now);
        assert_eq!(d.record.alerts[0].status, AlertStatus::Acknowledged);
        assert_eq!(
            d.record.alerts[0].acknowledged.as_ref().map(|a| a.by.as_str()),
            Some("Sister Jones")
        );
        let events: Vec<_> = d.events().collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventType::AlertAcknowledged);
        assert_eq!(events[0].alert_id.as_deref(), Some(id.as_str()));
        // Still open: the patient stays on the work list if on no ward.
        assert!(d.record.unplaced_listed);
        let (again, what) = acknowledge(d.record, &id, "Someone else", None, now());
        assert_eq!(what, Acknowledged::Already);
        assert!(!again.changed && again.emitted.is_empty());
        assert_eq!(
            again.record.alerts[0].acknowledged.as_ref().map(|a| a.by.as_str()),
            Some("Sister Jones")
        );
        let (none, what) = acknowledge(again.record, "no-such-alert", "x", None, now());
        assert_eq!(what, Acknowledged::NotFound);
        assert!(!none.changed);
    }
}
