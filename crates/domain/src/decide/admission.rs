//! A Patient and its Encounters arrive: identity and encounters change, and the placement (the
//! current inpatient stay's ward and bed) follows. Each encounter is ordered by the sender's own
//! version, not by arrival.

use chrono::{DateTime, Utc};

use crate::events::EventType;
use crate::identity::Identifier;
use crate::record::{Action, Decision, EncounterState, PatientRecord, Placement, ResourceVersion, finish};

/// A Patient resource's facts, with its identity chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientUpdate {
    /// The identifier the patient is known by; none for a Patient without one the identity
    /// rules accept (a FHIR resource like any other, kept and served, but never on the board).
    pub identity: Option<Identifier>,
    pub identifiers: Vec<Identifier>,
    pub name: Option<String>,
    pub birth_date: Option<chrono::NaiveDate>,
    pub gender: Option<String>,
    pub source_version: Option<DateTime<Utc>>,
    pub digest: String,
    pub resource_key: String,
}

/// What admit hands the decision for one patient: all of one transaction's entries for them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdmissionInput {
    pub patient: Option<PatientUpdate>,
    pub encounters: Vec<EncounterUpdate>,
    /// Encounters deleted through the FHIR API (mistaken admissions), by id.
    pub deletes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EncounterUpdate {
    pub state: EncounterState,
    /// An explicit cancel of a discharge (HL7 v2 A13): lets a finished stay go back to
    /// in-progress without a newer version.
    pub cancel_discharge: bool,
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "finished" | "cancelled" | "entered-in-error")
}

/// Whether `incoming` replaces `stored` (the same encounter id).
///
/// - Both carry a sender version and they differ: the newer wins.
/// - A finished (or cancelled) stay goes back to an open status only through a strictly newer
///   version, or an explicit cancel of the discharge.
/// - Two states of the same version: a finished (or cancelled) one over an open one, then the
///   greater content digest, so every replica settles on the same one whatever the order of
///   arrival.
/// - A versioned stored state is kept against an unversioned one. Without any version, the
///   latest arrival wins (there is nothing else to go by).
pub fn supersedes(incoming: &EncounterUpdate, stored: &EncounterState) -> bool {
    let new = &incoming.state;
    if new.digest == stored.digest {
        return false;
    }
    if let (Some(a), Some(b)) = (new.source_version, stored.source_version) {
        if a != b {
            return a > b;
        }
        if incoming.cancel_discharge {
            return true;
        }
        return (is_terminal(&new.status), &new.digest) > (is_terminal(&stored.status), &stored.digest);
    }
    if is_terminal(&stored.status) && !is_terminal(&new.status) && !incoming.cancel_discharge {
        return false;
    }
    stored.source_version.is_none()
}

/// The current inpatient stay: in progress, inpatient class; the latest start wins (ties by id).
fn placement_of(encounters: &[EncounterState]) -> Option<Placement> {
    encounters
        .iter()
        .filter(|e| e.is_current_inpatient())
        .max_by(|a, b| a.start.cmp(&b.start).then_with(|| b.id.cmp(&a.id)))
        .map(|e| Placement {
            encounter_id: e.id.clone(),
            ward: e.ward.clone(),
            bed: e.bed.clone(),
            admitted_at: e.start,
        })
}

pub fn decide(record: Option<PatientRecord>, patient_id: &str, input: AdmissionInput, now: DateTime<Utc>) -> Decision {
    let before = record.clone();
    let mut r = record.unwrap_or_else(|| PatientRecord::new(patient_id, now));

    if let Some(p) = input.patient {
        let newer = match (p.source_version, r.patient_version) {
            _ if !r.known => true,
            (Some(a), Some(b)) if a != b => a > b,
            // The same version twice: the greater digest, whatever the order of arrival.
            (Some(_), Some(_)) => p.digest > r.patient_digest,
            (None, Some(_)) => false,
            _ => p.digest != r.patient_digest,
        };
        if newer {
            if !r.known || p.digest != r.patient_digest {
                r.patient_meta = Some(ResourceVersion::next(r.patient_meta, now));
            }
            r.known = true;
            r.identity = p.identity;
            r.identifiers = p.identifiers;
            r.name = p.name;
            r.birth_date = p.birth_date;
            r.gender = p.gender;
            r.patient_version = p.source_version;
            r.patient_digest = p.digest;
            r.patient_key = Some(p.resource_key);
        }
    }

    for update in input.encounters {
        if r.retired_encounters.contains(&update.state.id) {
            // An encounter the record no longer keeps: a replay of it must not come back.
            continue;
        }
        match r.encounters.iter_mut().find(|e| e.id == update.state.id) {
            Some(stored) => {
                if supersedes(&update, stored) {
                    let version = ResourceVersion::next(stored.version, now);
                    *stored = update.state;
                    stored.version = Some(version);
                }
            }
            None => {
                let mut state = update.state;
                state.version = Some(ResourceVersion::next(None, now));
                r.encounters.push(state);
            }
        }
    }

    for id in &input.deletes {
        if let Some(stored) = r.encounters.iter_mut().find(|e| e.id == *id && !e.deleted) {
            // Kept as entered-in-error (so a replay of the mistaken admission stays deleted: it
            // is not newer), with a content digest of its own.
            stored.deleted = true;
            stored.status = "entered-in-error".into();
            stored.digest = crate::decide::digest(&format!("deleted:{}", stored.digest));
            stored.version = Some(ResourceVersion::next(stored.version, now));
        }
    }

    let old = r.placement.clone();
    // On the board only a patient known by an identifier (a Patient without one is kept and
    // served, never shown).
    let new = if r.identity.is_some() || !r.known {
        placement_of(&r.encounters)
    } else {
        None
    };
    if old != new {
        r.placement = new.clone();
        let (old_ward, new_ward) = (
            old.as_ref().and_then(|p| p.ward.clone()),
            new.as_ref().and_then(|p| p.ward.clone()),
        );
        if old_ward != new_ward {
            if let Some(w) = old_ward.clone() {
                r.push(Action::RemoveFromWard { ward: w });
            }
            if let Some(w) = new_ward.clone() {
                r.push(Action::PlaceOnWard { ward: w });
            }
        }
        r.sync_unplaced();
        let kind = match (&old, &new) {
            (None, Some(_)) => Some(EventType::Admitted),
            // Off the ward because the stay was cancelled (HL7 v2 A11, or an Encounter
            // `cancelled` / `entered-in-error`): not a discharge.
            (Some(o), None)
                if r.encounters.iter().any(|e| {
                    e.id == o.encounter_id && matches!(e.status.as_str(), "cancelled" | "entered-in-error")
                }) =>
            {
                Some(EventType::AdmissionCancelled)
            }
            (Some(_), None) => Some(EventType::Discharged),
            (Some(a), Some(b)) if a.encounter_id != b.encounter_id => Some(EventType::Admitted),
            (Some(a), Some(b)) if a.ward != b.ward || a.bed != b.bed => Some(EventType::Transferred),
            _ => None,
        };
        if let Some(kind) = kind {
            let (encounter, ward) = match (&new, &old) {
                (Some(n), _) => (n.encounter_id.clone(), n.ward.clone()),
                (None, Some(o)) => (o.encounter_id.clone(), o.ward.clone()),
                (None, None) => (String::new(), None),
            };
            r.emit(kind, now, |e| {
                e.encounter_id = Some(encounter);
                e.ward = ward;
            });
        }
    } else {
        r.sync_unplaced();
    }
    finish(before.as_ref(), r, now)
}

/// Join a record made by results that came before their patient (`pending`) into the patient's
/// own record: results and alerts move over. Returns the joined record's decision; the pending
/// record is closed with [`closed_into`].
pub fn absorb(
    target: Option<PatientRecord>,
    patient_id: &str,
    pending: &PatientRecord,
    now: DateTime<Utc>,
) -> Decision {
    let before = target.clone();
    let mut r = target.unwrap_or_else(|| PatientRecord::new(patient_id, now));
    for result in &pending.results {
        if r.result(&result.result_id).is_none() {
            r.results.push(result.clone());
        }
    }
    for alert in &pending.alerts {
        if !r.alerts.iter().any(|a| a.id == alert.id) {
            r.alerts.push(alert.clone());
        }
    }
    // The alerts' audit trail comes with them, in time order.
    let had = r.audit.len();
    for entry in &pending.audit {
        if !r.audit.contains(entry) {
            r.audit.push(entry.clone());
        }
    }
    if r.audit.len() != had {
        r.audit.sort_by_key(|e| e.at);
    }
    if r.identity.is_none() {
        r.identity = pending.identity.clone();
    }
    r.sync_unplaced();
    finish(before.as_ref(), r, now)
}

/// The early record, joined into `into`: it keeps its copy of results and alerts (the trail,
/// and the source for evaluations that reach it late), leaves the work list, and from now on
/// sends what reaches it on to `into`.
pub fn closed_into(pending: PatientRecord, into: &str, now: DateTime<Utc>) -> Decision {
    let before = pending.clone();
    let mut r = pending;
    r.merged_into = Some(into.to_owned());
    r.sync_unplaced();
    finish(Some(&before), r, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::digest;
    use crate::events::WardEvent;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).expect("time")
    }

    fn stay(status: &str, ward: &str, bed: &str, version: Option<i64>) -> EncounterUpdate {
        let content = format!("{status}{ward}{bed}{version:?}");
        EncounterUpdate {
            state: EncounterState {
                id: "e1".into(),
                status: status.into(),
                class: Some("IMP".into()),
                ward: Some(ward.into()),
                bed: Some(bed.into()),
                start: Some(t(0)),
                end: None,
                source_version: version.map(t),
                digest: digest(&content),
                resource_key: format!("encounter-e1-{}", digest(&content)),
                version: None,
                deleted: false,
            },
            cancel_discharge: false,
        }
    }

    fn admit(record: Option<PatientRecord>, e: EncounterUpdate) -> Decision {
        decide(
            record,
            "p1",
            AdmissionInput {
                patient: None,
                encounters: vec![e],
                deletes: Vec::new(),
            },
            t(10),
        )
    }

    fn kinds(d: &Decision) -> Vec<EventType> {
        d.events().map(|e: &WardEvent| e.kind).collect()
    }

    #[test]
    fn an_encounter_version_moves_on_only_when_its_content_changes() {
        let first = admit(None, stay("in-progress", "7B", "4", Some(1)));
        assert_eq!(first.record.encounters[0].version.map(|v| v.id), Some(1));
        let same = admit(Some(first.record.clone()), stay("in-progress", "7B", "4", Some(1)));
        assert!(!same.changed);
        assert_eq!(same.record.encounters[0].version.map(|v| v.id), Some(1));
        let moved = admit(Some(first.record), stay("in-progress", "7C", "1", Some(2)));
        assert_eq!(moved.record.encounters[0].version.map(|v| v.id), Some(2));
        assert_eq!(moved.record.encounters[0].version.map(|v| v.updated), Some(t(10)));
    }

    #[test]
    fn deleting_an_admission_takes_the_patient_off_the_ward_and_a_replay_does_not_bring_it_back() {
        let admitted = admit(None, stay("in-progress", "7B", "4", Some(1)));
        let deleted = decide(
            Some(admitted.record),
            "p1",
            AdmissionInput {
                deletes: vec!["e1".into()],
                ..Default::default()
            },
            t(11),
        );
        assert_eq!(kinds(&deleted), vec![EventType::AdmissionCancelled]);
        assert_eq!(deleted.record.ward(), None);
        let e = &deleted.record.encounters[0];
        assert!(e.deleted);
        assert_eq!(
            (e.status.as_str(), e.version.map(|v| v.id)),
            ("entered-in-error", Some(2))
        );
        let replay = admit(Some(deleted.record.clone()), stay("in-progress", "7B", "4", Some(1)));
        assert_eq!(replay.record.ward(), None);
        assert!(kinds(&replay).is_empty());
        let again = decide(
            Some(deleted.record),
            "p1",
            AdmissionInput {
                deletes: vec!["e1".into()],
                ..Default::default()
            },
            t(12),
        );
        assert!(!again.changed);
    }

    #[test]
    fn an_in_progress_inpatient_stay_admits_and_places_on_the_ward() {
        let d = admit(None, stay("in-progress", "7B", "4", None));
        assert_eq!(kinds(&d), vec![EventType::Admitted]);
        assert_eq!(d.record.ward().as_deref(), Some("7B"));
        assert!(matches!(&d.emitted[0].action, Action::PlaceOnWard { ward } if ward == "7B"));
    }

    #[test]
    fn the_same_stay_again_changes_nothing_and_a_new_bed_is_a_transfer() {
        let first = admit(None, stay("in-progress", "7B", "4", None)).record;
        let again = admit(Some(first.clone()), stay("in-progress", "7B", "4", None));
        assert!(!again.changed && again.emitted.is_empty());
        let moved = admit(Some(first), stay("in-progress", "7B", "5", None));
        assert_eq!(kinds(&moved), vec![EventType::Transferred]);
        assert!(
            !moved
                .emitted
                .iter()
                .any(|p| matches!(p.action, Action::PlaceOnWard { .. })),
            "same ward: the ward index does not change"
        );
    }

    #[test]
    fn a_discharge_is_not_reopened_by_a_replayed_older_admission() {
        let admitted = admit(None, stay("in-progress", "7B", "4", Some(1))).record;
        let discharged = admit(Some(admitted), stay("finished", "7B", "4", Some(2)));
        assert_eq!(kinds(&discharged), vec![EventType::Discharged]);
        let replay = admit(Some(discharged.record.clone()), stay("in-progress", "7B", "4", Some(1)));
        assert!(!replay.changed, "an older version changes nothing");
        let unversioned = admit(Some(discharged.record.clone()), stay("in-progress", "7B", "4", None));
        assert!(
            !unversioned.changed,
            "without a newer version a finished stay stays finished"
        );
        let newer = admit(Some(discharged.record), stay("in-progress", "8A", "1", Some(3)));
        assert_eq!(kinds(&newer), vec![EventType::Admitted]);
    }

    #[test]
    fn two_states_of_the_same_version_settle_the_same_whatever_the_order() {
        let a = stay("in-progress", "7B", "4", Some(1));
        let b = stay("in-progress", "7B", "9", Some(1));
        let ab = admit(Some(admit(None, a.clone()).record), b.clone()).record;
        let ba = admit(Some(admit(None, b).record), a).record;
        assert_eq!(ab.placement, ba.placement);
    }

    #[test]
    fn a_discharge_and_an_admission_of_the_same_version_settle_on_the_discharge_in_either_order() {
        let open = stay("in-progress", "7B", "4", Some(1));
        let done = stay("finished", "7B", "4", Some(1));
        let a = admit(Some(admit(None, open.clone()).record), done.clone()).record;
        let b = admit(Some(admit(None, done).record), open).record;
        assert_eq!((a.placement.is_none(), b.placement.is_none()), (true, true));
    }

    #[test]
    fn an_explicit_cancel_reopens_a_discharge() {
        let admitted = admit(None, stay("in-progress", "7B", "4", None)).record;
        let discharged = admit(Some(admitted), stay("finished", "7B", "4", None)).record;
        let mut cancel = stay("in-progress", "7B", "4", None);
        cancel.cancel_discharge = true;
        assert_eq!(kinds(&admit(Some(discharged), cancel)), vec![EventType::Admitted]);
    }

    #[test]
    fn a_joined_record_brings_its_alerts_audit_trail() {
        let mut pending = PatientRecord::new("pending", t(0));
        pending.audit.push(crate::alert::AuditEntry {
            at: t(1),
            alert_id: "a1".into(),
            action: crate::alert::AuditAction::Raised,
            by: "evaluate-alert".into(),
            status: crate::alert::AlertStatus::Active,
            severity: crate::alert::Severity::Critical,
            stage: None,
            result_id: Some("r1".into()),
            detail: "potassium high".into(),
        });
        let d = absorb(None, "p1", &pending, t(2));
        assert_eq!(d.record.audit, pending.audit);
        let again = absorb(Some(d.record), "p1", &pending, t(3));
        assert_eq!(again.record.audit.len(), 1, "joined once");
    }
}
