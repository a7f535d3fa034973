//! The patient record: everything one patient's decisions need, in one value that each function
//! reads and writes back with its ETag. Full FHIR resources live in their own keys; the record
//! holds their facts, bounded: the current and a few past encounters, a result history (all
//! creatinine of the last 365 days for the AKI look-back, the latest few of anything else), the
//! patient's alerts, and an outbox of side effects not yet known to be done.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::aki::Rrt;
use crate::alert::{Alert, AuditEntry};
use crate::events::{EventType, WardEvent};
use crate::identity::Identifier;

/// How many encounters a record keeps (the placed one is always kept).
pub const KEEP_ENCOUNTERS: usize = 5;
/// How many results of one analyte a record keeps (creatinine: all of the look-back window).
pub const KEEP_RESULTS: usize = 5;
/// The AKI look-back: creatinine results this recent are all kept.
pub const CREATININE_DAYS: i64 = 365;
/// How many ids of encounters no longer kept a record remembers.
pub const KEEP_RETIRED: usize = 50;
/// How many closed (resolved or withdrawn) alerts a record keeps at most. Open ones are always
/// kept, and so is a closed one while any result behind it is still in the history (so that
/// re-evaluating that history finds it instead of raising it again), up to this many.
pub const KEEP_CLOSED_ALERTS: usize = 100;
/// How many closed alerts none of whose results are in the history any more a record keeps.
pub const KEEP_CLOSED_UNHELD: usize = 20;
/// How many alert audit entries a record keeps (the newest; every one is also an event in the
/// log and on the `alerts` lane).
pub const KEEP_AUDIT: usize = 200;

/// A resource's version as the FHIR API serves it (`meta.versionId`, `meta.lastUpdated`, the
/// `ETag`): counted per resource, kept in the record beside the resource's facts, and moved on
/// only when the resource's content changes — never the storage ETag of the record, which also
/// changes with every laboratory result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceVersion {
    pub id: u64,
    pub updated: DateTime<Utc>,
}

impl ResourceVersion {
    /// The version after `previous` (the first when there is none), written at `now`.
    pub fn next(previous: Option<ResourceVersion>, now: DateTime<Utc>) -> Self {
        Self {
            id: previous.map_or(1, |p| p.id + 1),
            updated: now,
        }
    }
}

/// One encounter's facts and where its resource is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncounterState {
    pub id: String,
    pub status: String,
    pub class: Option<String>,
    pub ward: Option<String>,
    pub bed: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// The sender's version: `meta.lastUpdated` in FHIR, EVN-2 in HL7 v2. Kept apart from any
    /// `meta` the server assigns.
    pub source_version: Option<DateTime<Utc>>,
    /// A digest of the content, for deterministic tie-breaks and "nothing changed".
    pub digest: String,
    /// The state key of the resource as received.
    pub resource_key: String,
    /// The version the FHIR API serves (set by the decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ResourceVersion>,
    /// Deleted through the FHIR API (`DELETE Encounter/<id>`: a mistaken admission). Kept, with
    /// status `entered-in-error`, so that a replay of it does not come back; read answers 410.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl EncounterState {
    /// An inpatient stay going on now.
    pub fn is_current_inpatient(&self) -> bool {
        self.status == "in-progress" && matches!(self.class.as_deref(), Some("IMP" | "ACUTE" | "NONAC"))
    }
}

/// Where the patient is now: the current inpatient encounter's ward and bed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub encounter_id: String,
    pub ward: Option<String>,
    pub bed: Option<String>,
    pub admitted_at: Option<DateTime<Utc>>,
}

/// One laboratory result, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultEntry {
    pub result_id: String,
    /// The LOINC code (from the result, or the units table for a local code), else empty.
    pub loinc: String,
    /// The laboratory's own code as `system|code`, when it sent one (HL7 v2 OBX-3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_code: Option<String>,
    pub analyte: Option<String>,
    /// In the canonical unit; `None` for a result that is not evaluable as a number (see
    /// `not_evaluable`) or not a number at all (see `text`).
    pub value: Option<f64>,
    /// The canonical unit, else the unit as reported.
    pub unit: String,
    #[serde(default)]
    pub comparator: Option<String>,
    /// The number as the laboratory reported it, when it reported one.
    pub reported_value: Option<f64>,
    pub reported_unit: String,
    /// A result that is not a number (text, a coded answer), as reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Why the result is kept but never evaluated: an analyte or unit the units table does not
    /// know, or a value that is not a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_evaluable: Option<String>,
    /// `final`, `amended`, `corrected`, `preliminary`, `entered-in-error`, …
    pub status: String,
    pub effective: Option<DateTime<Utc>>,
    pub issued: Option<DateTime<Utc>>,
    /// The HL7 v2 message (MSH-10) that last changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub digest: String,
    pub resource_key: String,
}

impl ResultEntry {
    /// When the result was taken, else when it was issued.
    pub fn when(&self) -> Option<DateTime<Utc>> {
        self.effective.or(self.issued)
    }

    /// `entered-in-error` or `cancelled`: the laboratory took it back.
    pub fn is_retracted(&self) -> bool {
        matches!(self.status.as_str(), "entered-in-error" | "cancelled")
    }

    /// The value in its analyte's canonical unit, when the result may be evaluated as a number.
    pub fn evaluable(&self) -> Option<f64> {
        self.value
            .filter(|_| self.not_evaluable.is_none() && self.analyte.is_some())
    }

    /// Which results are counted together for bounding the history.
    fn series(&self) -> &str {
        match (&self.analyte, &self.local_code) {
            (Some(a), _) => a,
            (None, Some(local)) if self.loinc.is_empty() => local,
            _ => &self.loinc,
        }
    }
}

/// A side effect that follows a record change. Drained in `seq` order after the write, and
/// again by any later load of the record until the event log shows it done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
#[allow(clippy::large_enum_variant)] // a record holds a few; most are events anyway
pub enum Action {
    /// Append to the event log, then publish on the event type's lane.
    Event { event: WardEvent },
    /// List the patient on a ward's index.
    PlaceOnWard { ward: String },
    /// Take the patient off a ward's index.
    RemoveFromWard { ward: String },
    /// List the patient on the work list of patients on no ward with open alerts.
    ListUnplaced,
    /// Take the patient off that list.
    UnlistUnplaced,
    /// List the patient on the review list: patients with an unacknowledged alert that has a
    /// review time (what the escalation tick reads).
    ListForReview,
    /// Take the patient off the review list.
    UnlistForReview,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub seq: u64,
    #[serde(flatten)]
    pub action: Action,
}

/// How far a patient's events have reached the log: the last appended `seq` and its log id.
/// Kept by the event log, atomically with the append — which also queues the event for its lane
/// (the log's lane outbox, published by the relay), so an appended item needs nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub seq: u64,
    pub id: String,
}

impl Mark {
    /// Whether the outbox item `seq` is done: the last appended event, and every item before it
    /// (one drainer works in order).
    pub fn covers(&self, seq: u64) -> bool {
        seq <= self.seq
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientRecord {
    pub id: String,
    /// When this record was first written (nanoseconds): names its outbox in the event log, so
    /// that marks left by an earlier record of the same id (a reset store) never cover this
    /// one's items.
    #[serde(default)]
    pub incarnation: String,
    /// The identifier the patient is known by. For a record made by results that came before
    /// any Patient, the identifier those results named.
    pub identity: Option<Identifier>,
    /// Every identifier with a system and a value.
    #[serde(default)]
    pub identifiers: Vec<Identifier>,
    /// Whether a Patient resource has been received (false: results before their patient).
    #[serde(default)]
    pub known: bool,
    /// Display name (patient data: never logged).
    pub name: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub gender: Option<String>,
    /// The Patient's sender version and digest, and where the resource is.
    pub patient_version: Option<DateTime<Utc>>,
    #[serde(default)]
    pub patient_digest: String,
    pub patient_key: Option<String>,
    /// The Patient's version as the FHIR API serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_meta: Option<ResourceVersion>,
    #[serde(default)]
    pub encounters: Vec<EncounterState>,
    /// Ids of encounters no longer kept (bounded): a replay of one is ignored, not re-admitted.
    #[serde(default)]
    pub retired_encounters: Vec<String>,
    pub placement: Option<Placement>,
    #[serde(default)]
    pub results: Vec<ResultEntry>,
    #[serde(default)]
    pub alerts: Vec<Alert>,
    /// What happened to the patient's alerts, oldest first (bounded: [`KEEP_AUDIT`]).
    #[serde(default)]
    pub audit: Vec<AuditEntry>,
    /// Renal replacement therapy as recorded (none: not recorded, assumed not on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrt: Option<RrtRecord>,
    /// Whether the record asked to be on the list of patients on no ward with alerts nobody has
    /// acknowledged yet (not admitted yet, or discharged: needs follow-up).
    #[serde(default)]
    pub unplaced_listed: bool,
    /// Whether the record asked to be on the review list (escalation).
    #[serde(default)]
    pub review_listed: bool,
    /// The last outbox sequence number given out.
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub outbox: Vec<Pending>,
    /// Set when this record was joined to another: results before their patient, or a patient
    /// merged into another (HL7 v2 A40 / A34, `decide::merge`).
    #[serde(default)]
    pub merged_into: Option<String>,
    /// The records merged into this one (`decide::merge`): each is announced once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

impl PatientRecord {
    pub fn new(id: &str, now: DateTime<Utc>) -> Self {
        Self {
            id: id.to_owned(),
            incarnation: now.timestamp_nanos_opt().unwrap_or_default().to_string(),
            identity: None,
            identifiers: Vec::new(),
            known: false,
            name: None,
            birth_date: None,
            gender: None,
            patient_version: None,
            patient_digest: String::new(),
            patient_key: None,
            patient_meta: None,
            encounters: Vec::new(),
            retired_encounters: Vec::new(),
            placement: None,
            results: Vec::new(),
            alerts: Vec::new(),
            audit: Vec::new(),
            rrt: None,
            unplaced_listed: false,
            review_listed: false,
            seq: 0,
            outbox: Vec::new(),
            merged_into: None,
            merged_from: Vec::new(),
            updated_at: now,
        }
    }

    /// Whose outbox this is, for the event log's marks: the patient id and the incarnation.
    pub fn outbox_owner(&self) -> String {
        format!("{}.{}", self.id, self.incarnation)
    }

    /// The hospital number shown and carried in events.
    pub fn mrn(&self) -> Option<String> {
        self.identity.as_ref().map(|i| i.value.clone())
    }

    pub fn ward(&self) -> Option<String> {
        self.placement.as_ref().and_then(|p| p.ward.clone())
    }

    pub fn has_open_alerts(&self) -> bool {
        self.alerts.iter().any(|a| a.status.is_open())
    }

    /// Has an alert nobody has acknowledged yet (active or escalated).
    pub fn needs_attention(&self) -> bool {
        self.alerts.iter().any(|a| a.status.needs_acknowledgement())
    }

    /// Was an inpatient and is on no ward now.
    pub fn discharged(&self) -> bool {
        self.placement.is_none() && self.encounters.iter().any(|e| e.status == "finished")
    }

    /// Renal replacement therapy as the AKI algorithm sees it.
    pub fn rrt(&self) -> Rrt {
        self.rrt.as_ref().map_or(Rrt::Unknown, |r| r.rrt)
    }

    pub fn result(&self, result_id: &str) -> Option<&ResultEntry> {
        self.results.iter().find(|r| r.result_id == result_id)
    }

    /// Queue a side effect.
    pub fn push(&mut self, action: Action) -> Pending {
        self.seq += 1;
        let p = Pending { seq: self.seq, action };
        self.outbox.push(p.clone());
        p
    }

    /// Queue an event for the log and its lane, filled from the record.
    pub fn emit(&mut self, kind: EventType, at: DateTime<Utc>, fill: impl FnOnce(&mut WardEvent)) -> Pending {
        let mut event = WardEvent {
            id: String::new(),
            kind,
            at,
            patient_id: self.id.clone(),
            mrn: self.mrn(),
            ward: self.ward(),
            encounter_id: None,
            result_id: None,
            alert_id: None,
            analyte: None,
            merged_id: None,
        };
        fill(&mut event);
        self.push(Action::Event { event })
    }

    /// Drop the outbox items the event log shows done.
    pub fn prune_outbox(&mut self, mark: Option<&Mark>) {
        if let Some(mark) = mark {
            self.outbox.retain(|p| !mark.covers(p.seq));
        }
    }

    /// Keep the work lists in step with the record: patients on no ward with alerts nobody has
    /// acknowledged (a discharge never hides one), and the review list of patients with an
    /// unacknowledged alert that has a review time.
    pub fn sync_unplaced(&mut self) {
        let wanted = self.ward().is_none() && self.needs_attention() && self.merged_into.is_none();
        if wanted != self.unplaced_listed {
            self.unplaced_listed = wanted;
            self.push(if wanted {
                Action::ListUnplaced
            } else {
                Action::UnlistUnplaced
            });
        }
        let review = self.merged_into.is_none()
            && self
                .alerts
                .iter()
                .any(|a| a.status == crate::alert::AlertStatus::Active && a.review_by.is_some());
        if review != self.review_listed {
            self.review_listed = review;
            self.push(if review {
                Action::ListForReview
            } else {
                Action::UnlistForReview
            });
        }
    }

    /// Bound the history: every creatinine of the look-back window, the latest few of any
    /// other analyte, the latest few encounters, open alerts and the latest resolved ones.
    pub fn bound(&mut self, now: DateTime<Utc>) {
        self.results
            .sort_by(|a, b| a.when().cmp(&b.when()).then_with(|| a.result_id.cmp(&b.result_id)));
        let cutoff = now - Duration::days(CREATININE_DAYS);
        let mut keep = vec![true; self.results.len()];
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (i, r) in self.results.iter().enumerate().rev() {
            if r.analyte.as_deref() == Some("creatinine") {
                keep[i] = r.when().is_none_or(|t| t >= cutoff);
            } else {
                let n = seen.entry(r.series().to_owned()).or_default();
                *n += 1;
                keep[i] = *n <= KEEP_RESULTS;
            }
        }
        let mut i = 0;
        self.results.retain(|_| {
            let k = keep[i];
            i += 1;
            k
        });
        if self.encounters.len() > KEEP_ENCOUNTERS {
            let placed = self.placement.as_ref().map(|p| p.encounter_id.clone());
            self.encounters
                .sort_by(|a, b| b.start.cmp(&a.start).then_with(|| a.id.cmp(&b.id)));
            let mut kept = 0;
            let mut retired = Vec::new();
            self.encounters.retain(|e| {
                kept += 1;
                let keep = kept <= KEEP_ENCOUNTERS || placed.as_deref() == Some(e.id.as_str());
                if !keep {
                    retired.push(e.id.clone());
                }
                keep
            });
            self.retired_encounters.extend(retired);
            let excess = self.retired_encounters.len().saturating_sub(KEEP_RETIRED);
            self.retired_encounters.drain(..excess);
        }
        // Closed alerts: those none of whose results are still in the history beyond the newest
        // KEEP_CLOSED_UNHELD, then the oldest, down to KEEP_CLOSED_ALERTS.
        let held: std::collections::HashSet<&str> = self.results.iter().map(|r| r.result_id.as_str()).collect();
        let mut closed: Vec<(bool, DateTime<Utc>, String)> = self
            .alerts
            .iter()
            .filter(|a| !a.status.is_open())
            .map(|a| {
                (
                    a.implicated().iter().any(|r| held.contains(r)),
                    a.raised_at,
                    a.id.clone(),
                )
            })
            .collect();
        // Not held first, oldest first: the order they go in.
        closed.sort();
        let unheld = closed.iter().filter(|c| !c.0).count();
        let mut drop = unheld.saturating_sub(KEEP_CLOSED_UNHELD);
        drop += (closed.len() - drop).saturating_sub(KEEP_CLOSED_ALERTS);
        if drop > 0 {
            let gone: std::collections::HashSet<String> = closed.into_iter().take(drop).map(|c| c.2).collect();
            self.alerts.retain(|a| !gone.contains(&a.id));
        }
        let excess = self.audit.len().saturating_sub(KEEP_AUDIT);
        self.audit.drain(..excess);
    }
}

/// Renal replacement therapy as recorded, by whom and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RrtRecord {
    pub rrt: Rrt,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// A final potassium result `r1` in mmol/L, for the domain's tests.
#[cfg(test)]
pub(crate) fn potassium_result(value: f64, status: &str) -> ResultEntry {
    ResultEntry {
        result_id: "r1".into(),
        loinc: "2823-3".into(),
        analyte: Some("potassium".into()),
        local_code: None,
        value: Some(value),
        unit: "mmol/L".into(),
        comparator: None,
        reported_value: Some(value),
        reported_unit: "mmol/L".into(),
        text: None,
        not_evaluable: None,
        status: status.into(),
        effective: None,
        issued: None,
        message_id: None,
        digest: "d".into(),
        resource_key: "result-r1-d".into(),
    }
}

/// What a decision did to a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub record: PatientRecord,
    /// Whether anything changed (nothing to write when false).
    pub changed: bool,
    /// The side effects this decision queued (also in `record.outbox`).
    pub emitted: Vec<Pending>,
}

impl Decision {
    pub fn unchanged(record: PatientRecord) -> Self {
        Self {
            record,
            changed: false,
            emitted: Vec::new(),
        }
    }

    /// The events this decision queued, in order.
    pub fn events(&self) -> impl Iterator<Item = &WardEvent> {
        self.emitted.iter().filter_map(|p| match &p.action {
            Action::Event { event } => Some(event),
            _ => None,
        })
    }
}

/// Finish a decision: compare with the record as it was, bound it, stamp it.
pub(crate) fn finish(before: Option<&PatientRecord>, mut record: PatientRecord, now: DateTime<Utc>) -> Decision {
    let start = before.map_or(0, |b| b.seq);
    record.bound(now);
    let emitted: Vec<Pending> = record.outbox.iter().filter(|p| p.seq > start).cloned().collect();
    let changed = before.is_none_or(|b| {
        let mut b = b.clone();
        b.updated_at = record.updated_at;
        b != record
    });
    if changed {
        record.updated_at = now;
    }
    Decision {
        record,
        changed,
        emitted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + day * 86_400, 0).expect("time")
    }

    fn result(id: &str, analyte: &str, day: i64) -> ResultEntry {
        ResultEntry {
            result_id: id.into(),
            loinc: "x".into(),
            analyte: Some(analyte.into()),
            value: Some(1.0),
            unit: "u".into(),
            reported_value: Some(1.0),
            reported_unit: "u".into(),
            effective: Some(at(day)),
            digest: String::new(),
            resource_key: String::new(),
            ..potassium_result(1.0, "final")
        }
    }

    #[test]
    fn creatinine_is_kept_for_the_look_back_and_other_analytes_only_the_latest_few() {
        let mut r = PatientRecord::new("p", at(0));
        for d in 0..400 {
            r.results.push(result(&format!("c{d}"), "creatinine", d));
            r.results.push(result(&format!("k{d}"), "potassium", d));
        }
        r.bound(at(400));
        let creat = r.results.iter().filter(|x| x.series() == "creatinine").count();
        let k = r.results.iter().filter(|x| x.series() == "potassium").count();
        assert_eq!(creat, 365, "days 35..=399 are within 365 days of day 400");
        assert_eq!(k, KEEP_RESULTS);
        assert!(r.result("k399").is_some() && r.result("k0").is_none());
    }

    #[test]
    fn the_mark_covers_the_last_appended_item_and_every_earlier_one() {
        let m = Mark {
            seq: 5,
            id: "1-0".into(),
        };
        assert!(m.covers(4) && m.covers(5) && !m.covers(6));
    }
}
