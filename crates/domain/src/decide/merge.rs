//! A patient merged into another (HL7 v2 A40 / A34): two records of one person become one. The
//! same move as joining results that came before their patient (`admission::absorb`), for a
//! *known* patient, in two decisions over the two records:
//!
//! 1. [`close`] — the merged record: `merged_into` the survivor, off its ward, the unplaced list
//!    and the review list. From then on whatever reaches it goes on to the survivor, and it keeps
//!    its own copy of everything (the trail, and the snapshot step 2 copies from).
//! 2. [`absorb`] — the survivor's record takes, from that snapshot: the results it lacks, the
//!    alerts it lacks (by id), the alerts' audit trail (in time order), the merged patient's
//!    identifiers (and the ones the message names), renal replacement therapy when the survivor
//!    has none recorded — and its current stay, when the survivor has none (below). Then every
//!    alert is re-derived from the joined history ([`alerting::rederive`]: two alerts of one
//!    episode become one, an AKI baseline from the other record counts), and one
//!    `patient-merged` event names both ids.
//!
//! Idempotent: copying skips what is there, re-deriving the same history changes nothing, and
//! `merged_from` remembers the merge so it is announced once. The same merge twice changes
//! nothing; a survivor whose merged patient was never seen only records the identifiers.
//!
//! **Stays.** HL7 v2.5 A40 merges the patient identifier list, not visits: the encounters stay
//! where they are. One exception, so that the board shows one patient on one bed: when the
//! merged patient is in a bed now and the survivor is not, the survivor takes that stay (the
//! caller gives it re-identified for the survivor, so the sender's next A02/A03 of that visit,
//! now under the survivor's identifiers, reaches the same encounter). No `admitted` event
//! follows: nobody was admitted; `patient-merged` says which stay and ward. When both are in a
//! bed, the survivor's stay stands and the merged patient's bed is freed: the sender's next
//! transfer or discharge of the survivor says where the patient really is.

use chrono::{DateTime, Utc};

use crate::decide::alerting;
use crate::events::EventType;
use crate::identity::Identifier;
use crate::record::{Action, Decision, EncounterState, PatientRecord, Placement, finish};
use crate::rules::CriticalLimits;

/// What a merge gives the survivor, besides the merged record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergeInput {
    /// The identifiers the message names for the merged patient (MRG-1), kept on the survivor
    /// whether or not that patient was ever seen.
    pub identifiers: Vec<Identifier>,
    /// The merged patient's current inpatient stay, re-identified for the survivor by the caller
    /// (id, subject, resource key); taken only when the survivor has no current stay.
    pub stay: Option<EncounterState>,
}

/// Step 1: close the merged record into `into` (see the module header). Closing a record closed
/// into `into` already changes nothing.
pub fn close(merged: PatientRecord, into: &str, now: DateTime<Utc>) -> Decision {
    let before = merged.clone();
    let mut r = merged;
    if r.merged_into.as_deref() == Some(into) && r.placement.is_none() {
        return Decision::unchanged(r);
    }
    r.merged_into = Some(into.to_owned());
    if let Some(p) = r.placement.take()
        && let Some(ward) = p.ward
    {
        r.push(Action::RemoveFromWard { ward });
    }
    r.sync_unplaced();
    finish(Some(&before), r, now)
}

/// Step 2: the survivor absorbs the merged record as [`close`] left it (`None`: the merged
/// patient was never seen; only `input.identifiers` are recorded).
pub fn absorb(
    survivor: PatientRecord,
    merged: Option<&PatientRecord>,
    input: MergeInput,
    limits: &CriticalLimits,
    now: DateTime<Utc>,
) -> Decision {
    let before = survivor.clone();
    let mut r = survivor;
    let mut identifiers = input.identifiers;
    if let Some(m) = merged {
        identifiers.extend(m.identity.iter().cloned());
        identifiers.extend(m.identifiers.iter().cloned());
    }
    for id in identifiers {
        if r.identity.as_ref() != Some(&id) && !r.identifiers.contains(&id) {
            r.identifiers.push(id);
        }
    }
    let Some(m) = merged.filter(|m| m.id != r.id) else {
        return finish(Some(&before), r, now);
    };
    for result in &m.results {
        if r.result(&result.result_id).is_none() {
            r.results.push(result.clone());
        }
    }
    for alert in &m.alerts {
        if !r.alerts.iter().any(|a| a.id == alert.id) {
            r.alerts.push(alert.clone());
        }
    }
    let had = r.audit.len();
    for entry in &m.audit {
        if !r.audit.contains(entry) {
            r.audit.push(entry.clone());
        }
    }
    if r.audit.len() != had {
        r.audit.sort_by_key(|e| e.at);
    }
    if r.rrt.is_none() {
        r.rrt = m.rrt.clone();
    }
    let moved = take_stay(&mut r, input.stay);
    r.sync_unplaced();
    if !r.merged_from.contains(&m.id) {
        r.merged_from.push(m.id.clone());
        let merged_id = m.id.clone();
        let encounter = moved.or_else(|| r.placement.as_ref().map(|p| p.encounter_id.clone()));
        r.emit(EventType::PatientMerged, now, |e| {
            e.merged_id = Some(merged_id);
            e.encounter_id = encounter;
        });
    }
    alerting::rederive(&mut r, limits, now);
    finish(Some(&before), r, now)
}

/// The merged patient's current stay, when the survivor has none: its encounter and placement
/// (and its ward index). Returns the stay's id when it was taken.
fn take_stay(r: &mut PatientRecord, stay: Option<EncounterState>) -> Option<String> {
    let stay = stay.filter(|s| s.is_current_inpatient())?;
    let has_own = r.encounters.iter().any(EncounterState::is_current_inpatient);
    // Taken already (and maybe finished since): a resend of the merge never re-opens it.
    let had = r.encounters.iter().any(|e| e.id == stay.id) || r.retired_encounters.contains(&stay.id);
    if has_own || had || r.placement.is_some() {
        return None;
    }
    r.placement = Some(Placement {
        encounter_id: stay.id.clone(),
        ward: stay.ward.clone(),
        bed: stay.bed.clone(),
        admitted_at: stay.start,
    });
    if let Some(ward) = stay.ward.clone() {
        r.push(Action::PlaceOnWard { ward });
    }
    let id = stay.id.clone();
    r.encounters.push(stay);
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertStatus, AuditAction, AuditEntry, Severity};
    use crate::decide::{alerting, digest, result};
    use crate::record::{ResultEntry, potassium_result};

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).expect("time")
    }

    fn ident(v: &str) -> Identifier {
        Identifier {
            system: "https://fhir.example/Id/mrn".into(),
            value: v.into(),
        }
    }

    fn known(id: &str, mrn: &str) -> PatientRecord {
        let mut r = PatientRecord::new(id, t(0));
        r.known = true;
        r.identity = Some(ident(mrn));
        r.identifiers = vec![ident(mrn)];
        r
    }

    fn potassium(id: &str, value: f64, h: i64) -> ResultEntry {
        let d = digest(&format!("{id}{value}"));
        ResultEntry {
            result_id: id.into(),
            effective: Some(t(h)),
            issued: Some(t(h)),
            resource_key: format!("result-{id}-{d}"),
            digest: d,
            ..potassium_result(value, "final")
        }
    }

    /// The result stored and evaluated on `record`, as ingest-lab and evaluate-alert do.
    fn arrive(record: PatientRecord, e: &ResultEntry, now: DateTime<Utc>) -> PatientRecord {
        let id = record.id.clone();
        let stored = result::decide(Some(record), &id, e.clone(), None, now).record;
        alerting::decide(stored, &e.result_id, None, &CriticalLimits::default(), now).record
    }

    fn stay(id: &str, ward: &str, bed: &str) -> EncounterState {
        EncounterState {
            id: id.into(),
            status: "in-progress".into(),
            class: Some("IMP".into()),
            ward: Some(ward.into()),
            bed: Some(bed.into()),
            start: Some(t(0)),
            end: None,
            source_version: Some(t(0)),
            digest: digest(id),
            resource_key: format!("encounter-{id}"),
            version: None,
            deleted: false,
        }
    }

    /// A record placed on `ward` by `stay` (as admission leaves it).
    fn placed(mut r: PatientRecord, e: EncounterState) -> PatientRecord {
        r.placement = Some(Placement {
            encounter_id: e.id.clone(),
            ward: e.ward.clone(),
            bed: e.bed.clone(),
            admitted_at: e.start,
        });
        r.encounters.push(e);
        r
    }

    /// Both steps, as admit runs them.
    fn merge(
        survivor: PatientRecord,
        merged: PatientRecord,
        input: MergeInput,
        now: DateTime<Utc>,
    ) -> (Decision, Decision) {
        let closed = close(merged, &survivor.id, now);
        let absorbed = absorb(survivor, Some(&closed.record), input, &CriticalLimits::default(), now);
        (closed, absorbed)
    }

    fn kinds(d: &Decision) -> Vec<EventType> {
        d.events().map(|e| e.kind).collect()
    }

    #[test]
    fn the_survivor_takes_the_merged_patients_results_alert_and_audit_and_one_event_names_both() {
        let survivor = known("s", "111");
        let merged = arrive(known("m", "222"), &potassium("k1", 7.1, 1), t(1));
        assert_eq!(
            merged.alerts.len(),
            1,
            "the merged patient has a critical potassium alert"
        );
        let (closed, absorbed) = merge(survivor, merged.clone(), MergeInput::default(), t(2));

        assert_eq!(closed.record.merged_into.as_deref(), Some("s"));
        assert!(closed.events().next().is_none(), "the closed record announces nothing");
        assert!(
            closed.emitted.iter().any(|p| p.action == Action::UnlistUnplaced)
                && closed.emitted.iter().any(|p| p.action == Action::UnlistForReview),
            "the merged record leaves the work lists: {:?}",
            closed.emitted
        );
        let s = &absorbed.record;
        assert_eq!(s.result("k1").map(|r| r.value), Some(Some(7.1)));
        assert_eq!(
            s.alerts, merged.alerts,
            "the alert comes over as it was: re-deriving keeps it"
        );
        assert_eq!(s.audit, merged.audit);
        assert!(s.identifiers.contains(&ident("222")), "{:?}", s.identifiers);
        assert_eq!(s.identity, Some(ident("111")), "the survivor keeps its own identity");
        assert_eq!(s.merged_from, ["m"]);
        assert!(
            s.unplaced_listed && s.review_listed,
            "the survivor is listed for its alert"
        );
        let events: Vec<_> = absorbed.events().collect();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, EventType::PatientMerged);
        assert_eq!(
            (events[0].patient_id.as_str(), events[0].merged_id.as_deref()),
            ("s", Some("m"))
        );
        assert_eq!(events[0].kind.lane(), crate::lanes::ADMISSIONS);
    }

    #[test]
    fn the_same_merge_again_changes_nothing_on_either_record() {
        let survivor = arrive(known("s", "111"), &potassium("k0", 4.2, 0), t(0));
        let merged = arrive(known("m", "222"), &potassium("k1", 7.1, 1), t(1));
        let input = MergeInput {
            identifiers: vec![ident("222"), ident("333")],
            stay: None,
        };
        let (closed, absorbed) = merge(survivor, merged, input.clone(), t(2));
        assert!(closed.changed && absorbed.changed);
        let again_closed = close(closed.record.clone(), "s", t(3));
        assert!(!again_closed.changed && again_closed.emitted.is_empty());
        let again = absorb(
            absorbed.record.clone(),
            Some(&closed.record),
            input,
            &CriticalLimits::default(),
            t(3),
        );
        assert!(!again.changed, "{:?}", again.emitted);
        assert!(again.emitted.is_empty());
    }

    #[test]
    fn an_unknown_merged_patient_only_leaves_its_identifiers_on_the_survivor() {
        let survivor = known("s", "111");
        let input = MergeInput {
            identifiers: vec![ident("222")],
            stay: None,
        };
        let d = absorb(survivor, None, input.clone(), &CriticalLimits::default(), t(1));
        assert!(d.changed && d.emitted.is_empty());
        assert_eq!(d.record.identifiers, [ident("111"), ident("222")]);
        let again = absorb(d.record, None, input, &CriticalLimits::default(), t(2));
        assert!(!again.changed);
    }

    #[test]
    fn two_alerts_of_one_episode_become_one_and_the_audit_trail_is_in_time_order() {
        // The survivor's potassium at 01:00 raised an alert; the merged patient's at 02:00 too.
        let survivor = arrive(known("s", "111"), &potassium("k1", 7.0, 1), t(1));
        let merged = arrive(known("m", "222"), &potassium("k2", 7.4, 2), t(2));
        let (_, absorbed) = merge(survivor.clone(), merged.clone(), MergeInput::default(), t(5));
        let s = &absorbed.record;
        let open: Vec<_> = s.alerts.iter().filter(|a| a.status.is_open()).collect();
        assert_eq!(open.len(), 1, "one episode, one open alert: {:?}", s.alerts);
        assert_eq!(open[0].id, survivor.alerts[0].id, "the earliest raised keeps it");
        assert_eq!(open[0].results, ["k1", "k2"]);
        let gone = s.alerts.iter().find(|a| a.id == merged.alerts[0].id).expect("kept");
        assert_eq!(gone.status, AlertStatus::Withdrawn);
        // Order: the merge is announced, then what re-deriving changed.
        assert_eq!(
            kinds(&absorbed),
            [
                EventType::PatientMerged,
                EventType::AlertUpdated,
                EventType::AlertWithdrawn
            ]
        );
        let at: Vec<DateTime<Utc>> = s.audit.iter().map(|e| e.at).collect();
        let mut sorted = at.clone();
        sorted.sort();
        assert_eq!(at, sorted, "the audit trail is in time order");
        assert_eq!(s.audit.first().map(|e| e.at), Some(t(1)));
        assert_eq!(
            s.audit.get(1).map(|e| e.at),
            Some(t(2)),
            "the merged patient's entry in its place"
        );
    }

    #[test]
    fn the_merged_patients_bed_goes_to_a_survivor_without_one_and_is_freed_otherwise() {
        let moved = stay("e-s", "7B", "4");
        let merged = placed(known("m", "222"), stay("e-m", "7B", "4"));
        let input = MergeInput {
            identifiers: Vec::new(),
            stay: Some(moved.clone()),
        };
        let (closed, absorbed) = merge(known("s", "111"), merged.clone(), input.clone(), t(2));
        assert_eq!(closed.record.placement, None);
        assert!(
            closed
                .emitted
                .iter()
                .any(|p| p.action == Action::RemoveFromWard { ward: "7B".into() })
        );
        let s = &absorbed.record;
        assert_eq!(s.ward().as_deref(), Some("7B"));
        assert_eq!(s.placement.as_ref().map(|p| p.encounter_id.as_str()), Some("e-s"));
        assert!(
            absorbed
                .emitted
                .iter()
                .any(|p| p.action == Action::PlaceOnWard { ward: "7B".into() })
        );
        assert_eq!(kinds(&absorbed), [EventType::PatientMerged], "nobody was admitted");
        let e = absorbed.events().next().expect("event");
        assert_eq!(
            (e.encounter_id.as_deref(), e.ward.as_deref()),
            (Some("e-s"), Some("7B"))
        );

        // The stay discharged since, the same merge again: it stays finished.
        let mut left = absorbed.record.clone();
        left.placement = None;
        left.encounters[0].status = "finished".into();
        let again = absorb(
            left,
            Some(&closed.record),
            input.clone(),
            &CriticalLimits::default(),
            t(3),
        );
        assert!(!again.changed && again.record.placement.is_none());

        // A survivor in a bed of its own keeps it.
        let own = placed(known("s", "111"), stay("e-own", "8A", "1"));
        let (_, absorbed) = merge(own, merged, input, t(2));
        assert_eq!(absorbed.record.ward().as_deref(), Some("8A"));
        assert_eq!(absorbed.record.encounters.len(), 1);
        assert!(
            !absorbed
                .emitted
                .iter()
                .any(|p| matches!(p.action, Action::PlaceOnWard { .. }))
        );
    }

    #[test]
    fn a_joined_history_re_derives_an_acknowledged_alert_that_needs_someone_again() {
        // The survivor's alert was acknowledged; the merged patient's of the same episode was not.
        let survivor = arrive(known("s", "111"), &potassium("k1", 7.0, 1), t(1));
        let id = survivor.alerts[0].id.clone();
        let (survivor, _) = alerting::acknowledge(survivor, &id, "nurse", None, t(1));
        let merged = arrive(known("m", "222"), &potassium("k2", 7.2, 2), t(2));
        let (_, absorbed) = merge(survivor.record, merged, MergeInput::default(), t(3));
        let a = absorbed.record.alerts.iter().find(|a| a.id == id).expect("alert");
        assert_eq!(
            a.status,
            AlertStatus::Active,
            "nobody acknowledged the merged patient's finding"
        );
        assert!(absorbed.record.review_listed);
        let last = absorbed.record.audit.last().expect("audit");
        assert_eq!((last.action, last.severity), (AuditAction::Updated, Severity::Critical));
        let _: &AuditEntry = last;
    }
}
