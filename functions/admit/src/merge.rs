//! HL7 v2 A40 / A34: the patient known by MRG-1 is the patient known by PID-3 (the survivor).
//! Read by `domain::adt` into an [`adt::Merge`], decided by `domain::decide::merge`, written
//! here:
//!
//! resolve both patients through the identifier index (the survivor must be known: else AE) →
//! **1.** close the merged record into the survivor → **2.** the survivor absorbs it (results,
//! alerts, audit, identifiers, maybe the current stay; alerts re-derived; one `patient-merged`)
//! → **3.** the merged identifiers are pointed at the survivor. A merged patient never seen
//! skips 1: the survivor records its identifiers (2) and they point at the survivor (3).
//!
//! **Crashes and resends.** Each step is one compare-and-set (3: one per identifier) and each is
//! idempotent. Step 1's write is what makes the merge durable: from then on whatever reaches
//! the merged record (a result, an evaluation, a board look-up) goes on to the survivor, and the
//! record keeps the snapshot step 2 copies from. Before it nothing has changed, and a retry
//! starts afresh. After it, a retry (the sender resends until it gets AA) still finds the merged
//! record through MRG-1's index — step 3 comes last for that reason — sees it closed into this
//! survivor, and rolls forward: step 1 changes nothing, step 2 copies only what is missing and
//! announces nothing twice, step 3 points what still points elsewhere. Once step 3 is done, the
//! same message finds MRG-1 pointing at the survivor: nothing to merge, nothing changes, AA.
//! The ACK is AA only once all three are written.
//!
//! Logs name the patient ids and the message control id, never identifiers or names.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wardwatch_domain::adt;
use wardwatch_domain::decide::digest;
use wardwatch_domain::decide::merge::{self, MergeInput};
use wardwatch_domain::identity::Identifier;
use wardwatch_domain::ports::{EventLog, PortError, Publisher, StateStore};
use wardwatch_domain::record::{EncounterState, PatientRecord};
use wardwatch_domain::rules::CriticalLimits;
use wardwatch_domain::{facts, ids, keys};
use wardwatch_records::Step;
use wardwatch_runtime::{Failure, FailureKind};

use crate::Admit;

/// How many `merged_into` hops are followed to find where a record went.
const HOPS: usize = 4;

/// Why a merge was not written. Each variant classifies itself for the runtime; the HL7 v2
/// receiver answers the permanent ones AE with [`MergeError::condition`].
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(
        "the surviving patient (PID-3) is not known here: admit or register them first (A01, A04 or A08), then send the merge again"
    )]
    UnknownSurvivor,
    #[error("PID-3 names more than one patient known here: which one survives is not clear")]
    AmbiguousSurvivor,
    #[error("MRG-1 names more than one patient known here: send one merge for each")]
    AmbiguousMerged,
    #[error("the patient MRG-1 names was merged into another patient already")]
    MergedElsewhere,
    #[error(transparent)]
    Port(#[from] PortError),
}

impl MergeError {
    /// The HL7 table 0357 condition of the AE.
    pub fn condition(&self) -> &'static str {
        match self {
            MergeError::UnknownSurvivor => adt::condition::UNKNOWN_KEY,
            MergeError::AmbiguousSurvivor | MergeError::AmbiguousMerged => adt::condition::DUPLICATE_KEY,
            MergeError::MergedElsewhere | MergeError::Port(_) => adt::condition::APPLICATION,
        }
    }
}

impl From<MergeError> for Failure {
    fn from(e: MergeError) -> Self {
        let message = e.to_string();
        match e {
            MergeError::UnknownSurvivor => Failure::new(FailureKind::NotFound, message).with_status(422),
            MergeError::AmbiguousSurvivor | MergeError::AmbiguousMerged | MergeError::MergedElsewhere => {
                Failure::new(FailureKind::Conflict, message).with_status(422)
            }
            MergeError::Port(p) => p.into(),
        }
    }
}

/// What a merge came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub survivor: String,
    /// The record merged (now or by an earlier delivery of the same message); `None` when the
    /// merged patient was never seen here.
    pub merged: Option<String>,
}

/// The merged patient as the index shows it.
enum Prior {
    /// Never seen here (or merged into the survivor already, steps 1–3 done).
    Unknown,
    /// A record to merge (open, or closed into the survivor by an earlier delivery).
    Record(String),
}

impl<S: StateStore, L: EventLog, P: Publisher> Admit<S, L, P> {
    /// Write one merge message (see the module header). Returns once all three steps are written.
    pub async fn merge(
        &self,
        message: &adt::AdtMessage,
        merge: &adt::Merge,
        limits: &CriticalLimits,
        now: DateTime<Utc>,
    ) -> Result<Merged, MergeError> {
        let survivor = self.survivor(&merge.survivor).await?;
        let sid = survivor.id.clone();
        let prior = self.prior(&merge.merged, &sid).await?;
        let input = MergeInput {
            identifiers: merge.merged.clone(),
            stay: None,
        };
        let merged_id = match prior {
            Prior::Unknown => {
                self.absorb(&sid, None, Vec::new(), input, limits, now).await?;
                for identifier in &merge.merged {
                    self.point(identifier, None, &sid).await?;
                }
                None
            }
            Prior::Record(mid) => {
                // 1. The durable step: the merged record is closed into the survivor.
                let closed = self.close(&mid, &sid, now).await?;
                // 2. The survivor takes what it held, as it was when closed.
                let (stay, resources) = match self.moved_stay(&closed, &sid).await? {
                    Some((state, resource)) => {
                        // The moved stay is the survivor's now: `GET /fhir/Encounter/<id>` finds it there.
                        let owner = serde_json::to_vec(&serde_json::json!({"patient_id": sid}))
                            .map_err(|e| PortError::Corrupt(e.to_string()))?;
                        let resources = vec![(state.resource_key.clone(), resource), (keys::stay(&state.id), owner)];
                        (Some(state), resources)
                    }
                    None => (None, Vec::new()),
                };
                let input = MergeInput { stay, ..input };
                self.absorb(&sid, Some(&closed), resources, input, limits, now).await?;
                // 3. Its identifiers lead to the survivor.
                let mut identifiers = merge.merged.clone();
                identifiers.extend(closed.identity.iter().cloned());
                identifiers.extend(closed.identifiers.iter().cloned());
                identifiers.sort();
                identifiers.dedup();
                for identifier in &identifiers {
                    self.point(identifier, Some(&mid), &sid).await?;
                }
                Some(mid)
            }
        };
        tracing::info!(
            control_id = %message.control_id,
            patient_id = %sid,
            merged = merged_id.as_deref().unwrap_or("-"),
            "patient merge written"
        );
        Ok(Merged {
            survivor: sid,
            merged: merged_id,
        })
    }

    /// A record, or the record it was merged into (a few hops at most).
    async fn follow(&self, id: &str) -> Result<Option<PatientRecord>, PortError> {
        let mut id = id.to_owned();
        for _ in 0..HOPS {
            match self.records.load(&id).await? {
                Some(r) => match r.merged_into.clone() {
                    Some(into) => id = into,
                    None => return Ok(Some(r)),
                },
                None => return Ok(None),
            }
        }
        Err(PortError::Corrupt("patient records are merged in a loop".into()))
    }

    /// The known patient PID-3 names (following merges).
    async fn survivor(&self, identifiers: &[Identifier]) -> Result<PatientRecord, MergeError> {
        let mut found: Option<PatientRecord> = None;
        for identifier in identifiers {
            let Some(holder) = self.records.lookup(identifier).await? else {
                continue;
            };
            let Some(r) = self.follow(&holder).await? else {
                continue;
            };
            match &found {
                Some(f) if f.id != r.id => return Err(MergeError::AmbiguousSurvivor),
                Some(_) => {}
                None => found = Some(r),
            }
        }
        found.filter(|r| r.known).ok_or(MergeError::UnknownSurvivor)
    }

    /// The record MRG-1 names, other than the survivor's.
    async fn prior(&self, identifiers: &[Identifier], survivor: &str) -> Result<Prior, MergeError> {
        let mut found: Option<String> = None;
        for identifier in identifiers {
            let Some(holder) = self.records.lookup(identifier).await? else {
                continue;
            };
            if holder == survivor {
                continue;
            }
            let Some(r) = self.records.load(&holder).await? else {
                // An index pointing at no record: nothing to merge, it is pointed at the survivor.
                continue;
            };
            match r.merged_into.as_deref() {
                None => {}
                Some(into) if into == survivor => {}
                Some(into) => {
                    // Merged into a record that went on into the survivor: done already.
                    if self.follow(into).await?.is_some_and(|f| f.id == survivor) {
                        continue;
                    }
                    return Err(MergeError::MergedElsewhere);
                }
            }
            match &found {
                Some(f) if *f != r.id => return Err(MergeError::AmbiguousMerged),
                _ => found = Some(r.id),
            }
        }
        Ok(found.map_or(Prior::Unknown, Prior::Record))
    }

    /// Step 1: close `merged` into `survivor`; the record as closed (written now or before).
    async fn close(&self, merged: &str, survivor: &str, now: DateTime<Utc>) -> Result<PatientRecord, MergeError> {
        self.records
            .update(merged, |record| {
                let Some(r) = record else {
                    // Gone since it was looked up (a reset store): nothing to close.
                    return Err(MergeError::Port(PortError::Unavailable(
                        "the merged patient's record went away during the merge".into(),
                    )));
                };
                if r.merged_into.as_deref().is_some_and(|into| into != survivor) {
                    return Err(MergeError::MergedElsewhere);
                }
                let d = merge::close(r, survivor, now);
                let closed = d.record.clone();
                Ok(if d.changed {
                    Step::Write {
                        record: d.record,
                        resources: Vec::new(),
                        out: closed,
                    }
                } else {
                    Step::Keep(closed)
                })
            })
            .await
    }

    /// The merged patient's current inpatient stay as the survivor's: the same encounter, its
    /// id derived from the survivor (when it was derived from the merged patient: the sender's
    /// next message of that visit names the survivor now), its subject the survivor. With the
    /// resource to write. `None` when there is none (or its resource is not there to read).
    async fn moved_stay(
        &self,
        closed: &PatientRecord,
        survivor: &str,
    ) -> Result<Option<(EncounterState, Vec<u8>)>, PortError> {
        let Some(e) = closed
            .encounters
            .iter()
            .filter(|e| e.is_current_inpatient())
            .max_by(|a, b| a.start.cmp(&b.start).then_with(|| b.id.cmp(&a.id)))
        else {
            return Ok(None);
        };
        let Some(found) = self.records.store.get(&e.resource_key).await? else {
            return Ok(None);
        };
        let mut resource: Value = serde_json::from_slice(&found.data)
            .map_err(|err| PortError::Corrupt(format!("{}: {err}", keys::kind(&e.resource_key))))?;
        let id = match facts::encounter(&resource).ok().and_then(|f| f.identifier) {
            Some(visit) if e.id == ids::derived("encounter", &[&closed.id, &visit]) => {
                ids::derived("encounter", &[survivor, &visit])
            }
            // An id the sender gave, or one named by content: it stays.
            _ => e.id.clone(),
        };
        resource["id"] = Value::String(id.clone());
        resource["subject"] = json!({"reference": format!("Patient/{survivor}")});
        let bytes = serde_json::to_vec(&resource).map_err(|err| PortError::Corrupt(err.to_string()))?;
        let d = digest(&resource.to_string());
        let state = EncounterState {
            id: id.clone(),
            resource_key: keys::encounter_resource(&id, &d),
            digest: d,
            ..e.clone()
        };
        Ok(Some((state, bytes)))
    }

    /// Step 2: the survivor absorbs the closed record (or only the identifiers), with the moved
    /// stay's resource written before the record that refers to it.
    async fn absorb(
        &self,
        survivor: &str,
        closed: Option<&PatientRecord>,
        resources: Vec<(String, Vec<u8>)>,
        input: MergeInput,
        limits: &CriticalLimits,
        now: DateTime<Utc>,
    ) -> Result<(), MergeError> {
        // Handed to the first attempt only: a retry after a conflict finds them written.
        let mut resources = Some(resources);
        self.records
            .update(survivor, |record| {
                let Some(r) = record else {
                    return Err(MergeError::UnknownSurvivor);
                };
                if r.merged_into.is_some() {
                    // Merged itself meanwhile: the resend finds where it went.
                    return Err(MergeError::Port(PortError::Unavailable(
                        "the surviving patient was merged into another meanwhile".into(),
                    )));
                }
                let d = merge::absorb(r, closed, input.clone(), limits, now);
                Ok(if d.changed {
                    Step::Write {
                        record: d.record,
                        resources: resources.take().unwrap_or_default(),
                        out: (),
                    }
                } else {
                    Step::Keep(())
                })
            })
            .await
    }

    /// Step 3: point an identifier at the survivor — from the merged record, or, held by no
    /// record, claimed for it. One held by a third patient is left alone (and logged, by id).
    async fn point(&self, identifier: &Identifier, from: Option<&str>, survivor: &str) -> Result<(), MergeError> {
        match self.records.lookup(identifier).await? {
            Some(holder) if holder == survivor => Ok(()),
            Some(holder) if Some(holder.as_str()) == from => {
                Ok(self.records.repoint(identifier, &holder, survivor).await?)
            }
            Some(holder) => match self.follow(&holder).await? {
                // A record closed into the survivor, or an index pointing at no record.
                Some(f) if f.id == survivor => Ok(self.records.repoint(identifier, &holder, survivor).await?),
                None => Ok(self.records.repoint(identifier, &holder, survivor).await?),
                Some(_) => {
                    tracing::warn!(patient_id = %survivor, held_by = %holder, "a merged identifier belongs to a third patient: left there");
                    Ok(())
                }
            },
            None => {
                self.records.claim(identifier, survivor).await?;
                Ok(())
            }
        }
    }
}
