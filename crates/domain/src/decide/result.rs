//! A laboratory result arrives: it joins the patient's history once, ordered by the laboratory's
//! own account of it — its status (`corrected`/`amended` over `final` over `preliminary`; a
//! retraction, `entered-in-error` or `cancelled`, over all) and then its `issued` time — never by
//! the order in which messages happen to arrive.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use crate::events::EventType;
use crate::identity::Identifier;
use crate::record::{Decision, PatientRecord, ResultEntry, finish};

/// How far along a result's status is. Unknown statuses rank lowest.
pub fn status_rank(status: &str) -> u8 {
    match status {
        "registered" => 1,
        "preliminary" => 2,
        "final" => 3,
        "amended" | "corrected" => 4,
        "entered-in-error" | "cancelled" => 5,
        _ => 0,
    }
}

/// The order of two versions of one result: status rank, then issued time (a missing time is
/// older than any), then the content digest so that ties settle the same way everywhere.
pub fn order(a: &ResultEntry, b: &ResultEntry) -> Ordering {
    status_rank(&a.status)
        .cmp(&status_rank(&b.status))
        .then_with(|| a.issued.cmp(&b.issued))
        .then_with(|| a.digest.cmp(&b.digest))
}

/// Whether two versions say the same thing clinically: a laboratory re-sending a result it has
/// not changed (in a corrected report, or a re-issued one) is not a new result.
fn same_result(a: &ResultEntry, b: &ResultEntry) -> bool {
    a.status == b.status
        && a.value == b.value
        && a.unit == b.unit
        && a.comparator == b.comparator
        && a.reported_value == b.reported_value
        && a.reported_unit == b.reported_unit
        && a.text == b.text
        && a.not_evaluable == b.not_evaluable
        && a.effective == b.effective
}

/// `identity`: for a record that does not exist yet (results before their patient), the
/// identifier the result named.
pub fn decide(
    record: Option<PatientRecord>,
    patient_id: &str,
    entry: ResultEntry,
    identity: Option<Identifier>,
    now: DateTime<Utc>,
) -> Decision {
    let before = record.clone();
    let mut r = record.unwrap_or_else(|| {
        let mut r = PatientRecord::new(patient_id, now);
        r.identity = identity.clone();
        r.identifiers = identity.into_iter().collect();
        r
    });
    match r.results.iter().position(|x| x.result_id == entry.result_id) {
        Some(i) => {
            let stored = &r.results[i];
            if order(&entry, stored) != Ordering::Greater {
                return Decision::unchanged(before.unwrap_or(r));
            }
            let mut newer = entry.clone();
            // A version that says only its new status (HL7 v2 `U`: final, the value not sent
            // again) keeps the value that was reported.
            if !newer.is_retracted() && newer.reported_value.is_none() && newer.text.is_none() {
                newer.value = stored.value;
                newer.unit = stored.unit.clone();
                newer.comparator = stored.comparator.clone();
                newer.reported_value = stored.reported_value;
                newer.reported_unit = stored.reported_unit.clone();
                newer.text = stored.text.clone();
                newer.not_evaluable = stored.not_evaluable.clone();
            }
            if same_result(&newer, stored) {
                return Decision::unchanged(before.unwrap_or(r));
            }
            r.results[i] = newer;
        }
        None => r.results.push(entry.clone()),
    }
    r.emit(EventType::ResultStored, now, |e| {
        e.result_id = Some(entry.result_id.clone());
        e.analyte = entry.analyte.clone().or_else(|| Some(entry.loinc.clone()));
    });
    let d = finish(before.as_ref(), r, now);
    if d.record.result(&entry.result_id).is_none() {
        // Older than the history a record keeps (the latest few of its analyte; creatinine of
        // 365 days): nothing to store, nothing to announce, whatever the redeliveries.
        return match before {
            Some(b) => Decision::unchanged(b),
            None => Decision::unchanged(PatientRecord::new(patient_id, now)),
        };
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::digest;

    fn t(m: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + m * 60, 0).expect("time")
    }

    fn k(status: &str, value: f64, issued: i64) -> ResultEntry {
        let d = digest(&format!("{status}{value}{issued}"));
        ResultEntry {
            effective: Some(t(0)),
            issued: Some(t(issued)),
            resource_key: format!("result-r1-{d}"),
            digest: d,
            ..crate::record::potassium_result(value, status)
        }
    }

    fn apply(r: Option<PatientRecord>, e: ResultEntry) -> Decision {
        decide(r, "p1", e, None, t(100))
    }

    #[test]
    fn an_amended_result_processed_before_the_original_stays_amended() {
        let amended = apply(None, k("amended", 5.1, 30)).record;
        let replay = apply(Some(amended.clone()), k("final", 7.1, 10));
        assert!(!replay.changed && replay.emitted.is_empty());
        assert_eq!(replay.record.results[0].value, Some(5.1));
    }

    #[test]
    fn the_same_result_re_issued_later_changes_nothing() {
        let first = apply(None, k("final", 7.1, 10)).record;
        let mut reissued = k("final", 7.1, 50);
        reissued.digest = "other".into();
        assert!(!apply(Some(first), reissued).changed);
    }

    #[test]
    fn a_final_that_does_not_send_the_value_again_keeps_the_preliminary_value() {
        let preliminary = apply(None, k("preliminary", 6.9, 10)).record;
        let mut status_only = k("final", 0.0, 20);
        (status_only.value, status_only.reported_value) = (None, None);
        status_only.not_evaluable = Some("no value".into());
        let d = apply(Some(preliminary), status_only);
        assert!(d.changed);
        let e = &d.record.results[0];
        assert_eq!(
            (e.status.as_str(), e.value, e.not_evaluable.as_deref()),
            ("final", Some(6.9), None)
        );
        // Sent again, it says nothing new.
        let mut again = k("final", 0.0, 30);
        (again.value, again.reported_value) = (None, None);
        assert!(!apply(Some(d.record), again).changed);
    }

    #[test]
    fn a_redelivered_result_changes_nothing() {
        let first = apply(None, k("final", 7.1, 10));
        assert_eq!(first.events().count(), 1);
        let again = apply(Some(first.record), k("final", 7.1, 10));
        assert!(!again.changed);
    }

    #[test]
    fn a_retraction_wins_over_every_other_status_and_a_replayed_final_does_not_undo_it() {
        let r = apply(None, k("final", 7.1, 10)).record;
        let retracted = apply(Some(r), k("entered-in-error", 7.1, 20)).record;
        assert!(retracted.results[0].is_retracted());
        let replay = apply(Some(retracted), k("corrected", 6.0, 40));
        assert!(!replay.changed);
    }

    #[test]
    fn a_later_issued_correction_replaces_an_earlier_one() {
        let c1 = apply(None, k("corrected", 6.0, 20)).record;
        let c2 = apply(Some(c1), k("corrected", 5.5, 30));
        assert!(c2.changed);
        assert_eq!(c2.record.results[0].value, Some(5.5));
    }

    #[test]
    fn the_final_state_does_not_depend_on_arrival_order() {
        let versions = [k("preliminary", 6.9, 5), k("final", 7.1, 10), k("amended", 5.1, 30)];
        let mut finals = Vec::new();
        for perm in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [0, 2, 1]] {
            let mut r = None;
            for i in perm {
                r = Some(apply(r, versions[i].clone()).record);
            }
            finals.push(r.expect("record").results[0].value.unwrap_or_default());
        }
        assert!(finals.iter().all(|v| *v == 5.1), "{finals:?}");
    }

    #[test]
    fn a_result_older_than_the_history_kept_is_not_stored_nor_announced() {
        let mut r = None;
        for i in 0..6 {
            let mut e = k("final", 4.0, 10);
            e.result_id = format!("r{i}");
            e.effective = Some(t(100 + i));
            r = Some(apply(r, e).record);
        }
        let mut old = k("final", 7.1, 10);
        old.result_id = "old".into();
        old.effective = Some(t(1));
        let d = apply(r, old);
        assert!(!d.changed && d.emitted.is_empty());
    }

    #[test]
    fn a_result_before_its_patient_makes_a_record_named_by_the_identifier() {
        let id = Identifier {
            system: "urn:h".into(),
            value: "555".into(),
        };
        let d = decide(None, "p9", k("final", 7.1, 10), Some(id.clone()), t(100));
        assert!(!d.record.known);
        assert_eq!(d.record.identity, Some(id));
        assert_eq!(d.events().next().and_then(|e| e.mrn.clone()).as_deref(), Some("555"));
    }
}
