//! admit: FHIR R4 Patients and Encounters in — one at a time through the REST API
//! ([`rest`]), in `transaction` and `batch` Bundles ([`bundle`]), or as HL7 v2 ADT
//! ([`hl7v2`]); patient records, ward indexes and `admitted` / `transferred` / `discharged` /
//! `admission-cancelled` events out.
//!
//! parse → resolve who each entry is about → for each patient: load the record, decide
//! (`domain::decide::admission`), write it back with its ETag → claim the patient's identifiers
//! (after the record they point at) → the outbox drains indexes, the event log and `admissions`.
//!
//! Idempotent: a patient without an id gets one derived from its identity (system + value), or,
//! with no identifier the identity rules accept, from its content; an encounter one derived from
//! its patient and identifier (or, with neither id nor identifier, from its content: a new
//! encounter, never an overwrite of another), so posting the same Bundle twice changes nothing
//! and announces nothing new.
//!
//! Versions: each Patient and Encounter has its own version (`meta.versionId`, the `ETag`),
//! kept in the patient record and moved on only when that resource's content changes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wardwatch_domain::decide::admission::{self, AdmissionInput, EncounterUpdate, PatientUpdate};
use wardwatch_domain::decide::digest;
use wardwatch_domain::facts::{self, EncounterFacts, PatientFacts, SubjectRef};
use wardwatch_domain::identity::{Identifier, IdentityRules, RawIdentifier};
use wardwatch_domain::ports::{EventLog, PortError, Publisher, StateStore, ready};
use wardwatch_domain::record::{EncounterState, PatientRecord, ResourceVersion};
use wardwatch_domain::{Issue, adt, ids, keys};
use wardwatch_records::{Claim, IdentIndex, Prefetched, Records, Step};
use wardwatch_runtime::{Event, Failure, FailureKind, Function, Output};

pub mod bundle;
pub mod capabilities;
pub mod feed;
pub mod hl7v2;
pub mod merge;
pub mod rest;

/// Why a request was refused. Each variant classifies itself for the runtime.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error("{0}")]
    Method(String, &'static str),
    #[error("unsupported media type `{0}`: Wardwatch speaks FHIR JSON (application/fhir+json)")]
    MediaType(String),
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the resource is not valid FHIR R4")]
    Invalid(Vec<Issue>),
    #[error("{}", .0.message)]
    Refused(Issue),
    #[error("{0}")]
    ResourceType(String),
    #[error("the Encounter's subject is not a known patient")]
    UnknownPatient(Issue),
    #[error("this identifier already belongs to another patient")]
    IdentifierTaken(Issue),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error(transparent)]
    Port(#[from] PortError),
}

impl From<AdmitError> for Failure {
    fn from(e: AdmitError) -> Self {
        let message = e.to_string();
        match e {
            AdmitError::Method(_, allow) => Failure::method_not_allowed(message, allow),
            AdmitError::MediaType(_) => Failure::invalid(message).with_status(415),
            AdmitError::NotJson(_) | AdmitError::BadRequest(_) => Failure::invalid(message),
            // Well-formed JSON that is not a valid resource: 422 (FHIR's "unprocessable").
            AdmitError::Invalid(issues) => Failure::invalid(message).with_issues(issues).with_status(422),
            AdmitError::Refused(issue) => Failure::invalid("the resource cannot be admitted")
                .with_issues(vec![issue])
                .with_status(422),
            AdmitError::ResourceType(_) => Failure::new(FailureKind::NotFound, message),
            AdmitError::UnknownPatient(issue) => Failure::new(FailureKind::NotFound, message)
                .with_issues(vec![issue])
                .with_status(422),
            AdmitError::IdentifierTaken(issue) => Failure::new(FailureKind::Conflict, message).with_issues(vec![issue]),
            AdmitError::NotFound(_) => Failure::new(FailureKind::NotFound, message),
            AdmitError::Gone(_) => Failure::new(FailureKind::NotFound, message).with_status(410),
            AdmitError::Conflict(_) => Failure::new(FailureKind::Conflict, message),
            AdmitError::PreconditionFailed(_) => Failure::new(FailureKind::Conflict, message).with_status(412),
            AdmitError::Port(p) => p.into(),
        }
    }
}

/// The admit function. Owns its ports, through the record repository.
pub struct Admit<S, L, P> {
    records: Records<S, L, P>,
    identity: IdentityRules,
}

/// A Patient entry, its identity chosen.
pub(crate) struct PatientPlan {
    /// The Bundle entry (none for a resource posted on its own).
    pub(crate) entry: Option<usize>,
    pub(crate) full_url: Option<String>,
    pub(crate) given_id: Option<String>,
    facts: PatientFacts,
    /// The identifier the identity rules chose; none for a Patient without one.
    identity: Option<Identifier>,
    pub(crate) identifiers: Vec<Identifier>,
    resource: Value,
    /// The version time when the resource carries none of its own (a REST update: as of now).
    stamp: Option<DateTime<Utc>>,
}

/// An Encounter entry.
pub(crate) struct EncounterPlan {
    pub(crate) entry: Option<usize>,
    pub(crate) given_id: Option<String>,
    facts: EncounterFacts,
    resource: Value,
    /// An explicit reopen: the cancel of a discharge (HL7 v2 A13), or an update (PUT) that
    /// replaces the stay as it is now — it may reopen a finished or restore a deleted one.
    cancel_discharge: bool,
    stamp: Option<DateTime<Utc>>,
}

/// A version a request expects to find (`If-Match`).
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    pub(crate) resource_type: &'static str,
    pub(crate) id: String,
    pub(crate) version: String,
}

/// Everything one request writes.
#[derive(Default)]
pub(crate) struct Plan {
    pub(crate) patients: Vec<PatientPlan>,
    pub(crate) encounters: Vec<EncounterPlan>,
    /// Encounters to delete: (entry, encounter id, whose record it is in).
    pub(crate) deletes: Vec<(Option<usize>, String, String)>,
    /// `If-Match` / `request.ifMatch`: versions the writes expect to find.
    pub(crate) expect: Vec<Expect>,
    /// The transaction Bundle, kept as an intent when the plan spans several patients.
    pub(crate) intent: Option<Value>,
}

/// What one written (or deleted) resource came to.
#[derive(Debug, Clone)]
pub struct Written {
    pub entry: Option<usize>,
    pub resource_type: &'static str,
    pub id: String,
    /// Its version now.
    pub version: Option<ResourceVersion>,
    /// It did not exist before this request.
    pub created: bool,
    /// This request's content is the resource's current one (not superseded by a newer
    /// version already stored).
    pub applied: bool,
    /// The resource as stored by this request (for a resource sent on its own).
    pub resource: Option<Value>,
}

/// Everything one patient gets from one request.
#[derive(Default)]
struct Group {
    /// The Patient resource (stored form), its update and its entry.
    patient: Option<(Value, PatientUpdate, Option<usize>)>,
    encounters: Vec<(Value, EncounterUpdate, Option<usize>)>,
    deletes: Vec<(Option<usize>, String)>,
    identifiers: Vec<Identifier>,
    /// The identity's index already points at this patient: nothing to claim for it.
    indexed: Option<Identifier>,
    /// The record as read while resolving the patient.
    prefetched: Option<Prefetched>,
}

fn to_bytes(v: &Value) -> Result<Vec<u8>, PortError> {
    serde_json::to_vec(v).map_err(|e| PortError::Corrupt(e.to_string()))
}

fn unknown_patient(location: &str, subject: &str) -> AdmitError {
    AdmitError::UnknownPatient(Issue::new(
        location,
        format!("`{subject}` is not a known patient: send the Patient first, or in the same transaction"),
    ))
}

/// Two entries of one transaction that come to the same resource (the same identifier, or a
/// conditional update naming a resource another entry writes): refused, as the spec asks, rather
/// than one silently replacing the other.
fn twice(resource_type: &str, id: &str, first: Option<usize>, second: Option<usize>) -> AdmitError {
    let (first, second) = (first.unwrap_or_default(), second.unwrap_or_default());
    AdmitError::Invalid(vec![Issue::new(
        format!("/entry/{second}"),
        format!("entries {first} and {second} are both {resource_type}/{id}: a transaction names each resource once"),
    )])
}

/// Prefix an entry's issue locations with its place in the Bundle.
pub(crate) fn relocate(e: AdmitError, entry: Option<usize>) -> AdmitError {
    let Some(i) = entry else { return e };
    let at = |issue: Issue| Issue::new(format!("/entry/{i}/resource{}", issue.location), issue.message);
    match e {
        AdmitError::Refused(issue) => AdmitError::Refused(at(issue)),
        AdmitError::IdentifierTaken(issue) => AdmitError::IdentifierTaken(at(issue)),
        AdmitError::UnknownPatient(issue) => AdmitError::UnknownPatient(at(issue)),
        AdmitError::Invalid(issues) => AdmitError::Invalid(issues.into_iter().map(at).collect()),
        other => other,
    }
}

/// The server's own `meta` elements are not content: a resource read and sent back stores the
/// same as the one first sent.
pub(crate) fn strip_server_meta(resource: &mut Value) {
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        if meta.is_empty() {
            resource.as_object_mut().map(|r| r.remove("meta"));
        }
    }
}

/// An update's `meta.lastUpdated` is the server's to set (a client sends back what it read).
pub(crate) fn strip_last_updated(resource: &mut Value) {
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("lastUpdated");
    }
}

/// A resource as served: with its id and the server's `meta.versionId` and `meta.lastUpdated`.
pub fn served(mut resource: Value, id: &str, version: Option<ResourceVersion>) -> Value {
    resource["id"] = Value::String(id.to_owned());
    if let Some(v) = version {
        if !resource.get("meta").is_some_and(Value::is_object) {
            resource["meta"] = json!({});
        }
        resource["meta"]["versionId"] = Value::String(v.id.to_string());
        resource["meta"]["lastUpdated"] = Value::String(v.updated.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    resource
}

/// `Patient?identifier=<system>|<value>` (or the query alone): the identifier it names.
pub(crate) fn identifier_query(query: &str) -> Option<RawIdentifier> {
    let value = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "identifier")
        .map(|(_, v)| v.into_owned())?;
    let (system, value) = match value.split_once('|') {
        Some((s, v)) => (Some(s.to_owned()).filter(|s| !s.is_empty()), v.to_owned()),
        None => (None, value),
    };
    Some(RawIdentifier::from_json(&json!({"system": system, "value": value})))
}

impl<S: StateStore, L: EventLog, P: Publisher> Admit<S, L, P> {
    pub fn new(records: Records<S, L, P>, identity: IdentityRules) -> Self {
        Self { records, identity }
    }

    pub(crate) fn plan_patient(
        &self,
        entry: Option<usize>,
        mut resource: Value,
        put_id: Option<String>,
        full_url: Option<String>,
    ) -> Result<PatientPlan, AdmitError> {
        strip_server_meta(&mut resource);
        let facts = facts::patient(&resource);
        // A Patient without an identifier the rules accept is still a FHIR resource: kept and
        // served, known by its id; only the board needs an identifier.
        let identity = self.identity.primary(&facts.identifiers).ok();
        let identifiers = self.identity.all(&facts.identifiers);
        let given_id = put_id.or_else(|| facts.id.clone().filter(|id| ids::is_fhir_id(id)));
        Ok(PatientPlan {
            entry,
            full_url,
            given_id,
            facts,
            identity,
            identifiers,
            resource,
            stamp: None,
        })
    }

    pub(crate) fn plan_encounter(
        &self,
        entry: Option<usize>,
        mut resource: Value,
        put_id: Option<String>,
    ) -> Result<EncounterPlan, AdmitError> {
        strip_server_meta(&mut resource);
        let facts = facts::encounter(&resource).map_err(|e| relocate(AdmitError::Refused(e), entry))?;
        Ok(EncounterPlan {
            entry,
            given_id: put_id.or_else(|| facts.id.clone().filter(|id| ids::is_fhir_id(id))),
            facts,
            resource,
            cancel_discharge: false,
            stamp: None,
        })
    }

    /// The patient id for a Patient: the one it was given, else the one its identity already
    /// has, else one derived from its identity (or, without one, its content). A given id whose
    /// identity another patient holds is refused, unless that other record only holds results
    /// that came first: it is joined. Also whether the identity's index already points at that
    /// id, and the record of the likeliest id, read in the same round trip as the index.
    async fn resolve_patient(&self, plan: &PatientPlan) -> Result<(String, bool, Option<Prefetched>), AdmitError> {
        let Some(identity) = &plan.identity else {
            let id = plan
                .given_id
                .clone()
                .unwrap_or_else(|| ids::derived("patient", &["content", &digest(&plan.resource.to_string())]));
            return Ok((id, false, None));
        };
        let derived = ids::derived("patient", &[&identity.system, &identity.value]);
        let candidate = plan.given_id.as_deref().unwrap_or(&derived);
        let (holder, prefetched) = self.records.lookup_and_prefetch(identity, candidate).await?;
        let id = self.choose_id(plan, holder.clone(), derived).await?;
        let indexed = holder.as_deref() == Some(id.as_str());
        Ok((id, indexed, Some(prefetched)))
    }

    async fn choose_id(
        &self,
        plan: &PatientPlan,
        holder: Option<String>,
        derived: String,
    ) -> Result<String, AdmitError> {
        match (&plan.given_id, holder) {
            (Some(given), Some(holder)) if *given != holder => match self.records.load(&holder).await? {
                Some(r) if r.known => Err(AdmitError::IdentifierTaken(Issue::new(
                    "/identifier",
                    format!("this identifier (system and value) is already held by Patient/{holder}"),
                ))),
                // Results that came first: joined once this patient's record is written.
                Some(_) => Ok(given.clone()),
                // An index pointing nowhere: repaired when this patient claims the identifier.
                None => Ok(given.clone()),
            },
            (Some(given), _) => Ok(given.clone()),
            (None, Some(holder)) => Ok(holder),
            (None, None) => Ok(derived),
        }
    }

    /// The patient an identifier belongs to, if any (a patient, not results that came first).
    pub(crate) async fn patient_by_identifier(&self, raw: &RawIdentifier) -> Result<Option<String>, AdmitError> {
        let identifier = self
            .identity
            .subject(raw)
            .map_err(|m| AdmitError::BadRequest(format!("identifier: {m}")))?;
        let Some(id) = self.records.lookup(&identifier).await? else {
            return Ok(None);
        };
        Ok(match self.records.load(&id).await? {
            Some(r) if r.known => Some(r.merged_into.unwrap_or(id)),
            _ => None,
        })
    }

    /// Who an Encounter is about: a Patient of the same Bundle (by `fullUrl`, id or identifier,
    /// or a conditional reference `Patient?identifier=…`), or a patient Wardwatch already has a
    /// record of.
    async fn patient_for(&self, subject: &SubjectRef, bundle: &[(String, &PatientPlan)]) -> Result<String, AdmitError> {
        match subject {
            SubjectRef::Reference(r) => {
                if let Some((id, _)) = bundle.iter().find(|(_, p)| p.full_url.as_deref() == Some(r.as_str())) {
                    return Ok(id.clone());
                }
                if let Some(query) = r.strip_prefix("Patient?") {
                    let raw = identifier_query(query).ok_or_else(|| {
                        AdmitError::Refused(Issue::new(
                            "/subject/reference",
                            format!("`{r}`: a conditional reference here names `identifier=<system>|<value>`"),
                        ))
                    })?;
                    return Box::pin(self.patient_for(&SubjectRef::Identifier(raw), bundle)).await;
                }
                let id = facts::patient_id_of_reference(r)
                    .filter(|id| ids::is_fhir_id(id))
                    .ok_or_else(|| unknown_patient("/subject/reference", r))?;
                if bundle.iter().any(|(pid, _)| pid == id) || self.records.load(id).await?.is_some() {
                    Ok(id.to_owned())
                } else {
                    Err(unknown_patient("/subject/reference", r))
                }
            }
            SubjectRef::Identifier(raw) => {
                let identifier = self
                    .identity
                    .subject(raw)
                    .map_err(|m| AdmitError::Refused(Issue::new("/subject/identifier", m)))?;
                if let Some((id, _)) = bundle.iter().find(|(_, p)| p.identifiers.contains(&identifier)) {
                    return Ok(id.clone());
                }
                self.records.lookup(&identifier).await?.ok_or_else(|| {
                    unknown_patient(
                        "/subject/identifier",
                        &format!("{}|{}", identifier.system, identifier.value),
                    )
                })
            }
        }
    }

    fn encounter_update(&self, plan: EncounterPlan, patient_id: &str) -> (Value, EncounterUpdate, Option<usize>) {
        let cancel_discharge = plan.cancel_discharge;
        let id = plan.given_id.clone().unwrap_or_else(|| match &plan.facts.identifier {
            Some(identifier) => ids::derived("encounter", &[patient_id, identifier]),
            // Neither id nor identifier: a new encounter, named by its content.
            None => ids::derived(
                "encounter",
                &[patient_id, "content", &digest(&plan.resource.to_string())],
            ),
        });
        let mut resource = plan.resource;
        resource["id"] = Value::String(id.clone());
        resource["subject"] = json!({"reference": format!("Patient/{patient_id}")});
        let d = digest(&resource.to_string());
        let f = &plan.facts;
        let state = EncounterState {
            id: id.clone(),
            status: f.status.clone(),
            class: f.class.clone(),
            ward: f.ward.clone(),
            bed: f.bed.clone(),
            start: f.start,
            end: f.end,
            source_version: f.last_updated.or(plan.stamp),
            resource_key: keys::encounter_resource(&id, &d),
            digest: d,
            version: None,
            deleted: false,
        };
        (
            resource,
            EncounterUpdate {
                state,
                cancel_discharge,
            },
            plan.entry,
        )
    }

    /// Write one patient's part of the request: one compare-and-set of their record. What each
    /// resource of it came to.
    async fn apply(
        &self,
        patient_id: &str,
        mut group: Group,
        expect: &[Expect],
        now: DateTime<Utc>,
    ) -> Result<Vec<Written>, AdmitError> {
        let mut resources = Vec::new();
        if let Some((resource, update, _)) = &group.patient {
            resources.push((update.resource_key.clone(), to_bytes(resource)?));
        }
        let owner = to_bytes(&json!({"patient_id": patient_id}))?;
        for (resource, update, _) in &group.encounters {
            resources.push((update.state.resource_key.clone(), to_bytes(resource)?));
            resources.push((keys::stay(&update.state.id), owner.clone()));
        }
        let input = AdmissionInput {
            patient: group.patient.as_ref().map(|(_, u, _)| u.clone()),
            encounters: group.encounters.iter().map(|(_, u, _)| u.clone()).collect(),
            deletes: group.deletes.iter().map(|(_, id)| id.clone()).collect(),
        };
        // Handed to the first attempt only: a retry after a conflict finds them written.
        let mut resources = Some(resources);
        // Identifiers point at the record only once it exists: claimed in the record's own write
        // where the store can, else (or when held already) one by one below.
        let to_claim: Vec<Identifier> = group
            .identifiers
            .iter()
            .filter(|i| group.indexed.as_ref() != Some(*i))
            .cloned()
            .collect();
        let (written, claimed) = self
            .records
            .update_claiming_from(patient_id, &to_claim, group.prefetched.take(), |record| {
                // Inside the compare-and-set: the version checked is the one replaced.
                for e in expect.iter().filter(|e| concerns(e, patient_id, &group)) {
                    check_expected(record.as_ref(), e)?;
                }
                let before = record.clone();
                let d = admission::decide(record, patient_id, input.clone(), now);
                let out = outcomes(patient_id, &group, before.as_ref(), &d.record);
                Ok::<_, AdmitError>(if d.changed {
                    Step::Write {
                        record: d.record,
                        resources: resources.take().unwrap_or_default(),
                        out,
                    }
                } else {
                    Step::Keep(out)
                })
            })
            .await?;
        // One held by a record that only has results which came before this patient (found now,
        // or claimed by a result racing this admission) is joined to this one.
        for (identifier, _) in to_claim.iter().zip(claimed).filter(|(_, done)| !done) {
            if let Claim::HeldBy(holder) = self.records.claim(identifier, patient_id).await? {
                match self.records.load(&holder).await? {
                    Some(r) if !r.known && r.merged_into.is_none() => {
                        self.records.join(&holder, identifier, patient_id, now).await?;
                    }
                    // Joined already, or an index pointing at no record: point it here.
                    Some(r) if r.merged_into.as_deref() == Some(patient_id) => {
                        self.records.repoint(identifier, &holder, patient_id).await?;
                    }
                    None => self.records.repoint(identifier, &holder, patient_id).await?,
                    _ => tracing::warn!(
                        patient_id,
                        "an identifier of this patient is held by another patient's record"
                    ),
                }
            }
        }
        tracing::info!(patient_id, "admission recorded");
        Ok(written)
    }

    /// Encounters whose ids the client chose (id, patient) must not already be in another
    /// patient's record.
    async fn check_owners(&self, asked: &[(String, String)]) -> Result<(), AdmitError> {
        if asked.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = asked.iter().map(|(id, _)| keys::stay(id)).collect();
        let found = self.records.store.get_many(&keys).await?;
        for ((id, pid), found) in asked.iter().zip(found) {
            let Some(v) = found else { continue };
            let owner: IdentIndex =
                serde_json::from_slice(&v.data).map_err(|e| PortError::Corrupt(format!("{}: {e}", keys::stay(id))))?;
            if owner.patient_id != *pid {
                return Err(AdmitError::Conflict(format!(
                    "Encounter/{id} is another patient's encounter: an encounter cannot move to another patient"
                )));
            }
        }
        Ok(())
    }

    /// Plan every entry, resolve every patient, then write patient by patient.
    pub(crate) async fn admit(&self, plan: Plan, now: DateTime<Utc>) -> Result<Vec<Written>, AdmitError> {
        let Plan {
            patients,
            encounters,
            deletes,
            expect,
            intent,
        } = plan;
        let mut resolved: Vec<(String, &PatientPlan)> = Vec::new();
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        let mut chosen: Vec<(String, String)> = Vec::new();
        for plan in &patients {
            let (pid, indexed, prefetched) = self.resolve_patient(plan).await.map_err(|e| relocate(e, plan.entry))?;
            let mut resource = plan.resource.clone();
            resource["id"] = Value::String(pid.clone());
            let d = digest(&resource.to_string());
            let update = PatientUpdate {
                identity: plan.identity.clone(),
                identifiers: plan.identifiers.clone(),
                name: plan.facts.name.clone(),
                birth_date: plan.facts.birth_date,
                gender: plan.facts.gender.clone(),
                source_version: plan.facts.last_updated.or(plan.stamp),
                resource_key: keys::patient_resource(&pid, &d),
                digest: d,
            };
            let group = groups.entry(pid.clone()).or_default();
            if let Some((_, _, first)) = &group.patient {
                return Err(twice("Patient", &pid, *first, plan.entry));
            }
            group.identifiers = plan.identifiers.clone();
            group.indexed = indexed.then(|| plan.identity.clone()).flatten();
            group.prefetched = prefetched;
            group.patient = Some((resource, update, plan.entry));
            resolved.push((pid, plan));
        }
        for plan in encounters {
            let pid = self
                .patient_for(&plan.facts.subject, &resolved)
                .await
                .map_err(|e| relocate(e, plan.entry))?;
            let given = plan.given_id.is_some();
            let update = self.encounter_update(plan, &pid);
            if given {
                // Only an id the client chose can be another patient's: a derived one names its
                // patient.
                chosen.push((update.1.state.id.clone(), pid.clone()));
            }
            let group = groups.entry(pid).or_default();
            if let Some((_, _, first)) = group
                .encounters
                .iter()
                .find(|(_, u, _)| u.state.id == update.1.state.id)
            {
                return Err(twice("Encounter", &update.1.state.id, *first, update.2));
            }
            group.encounters.push(update);
        }
        for (entry, id, pid) in deletes {
            groups.entry(pid).or_default().deletes.push((entry, id));
        }
        self.check_owners(&chosen).await?;
        let mut written = Vec::new();
        // Several records, each its own compare-and-set: made durable first as one intent, so
        // a failure part-way is finished by a retry or the next start-up.
        let intent = match intent {
            Some(bundle) if groups.len() > 1 => Some(self.record_intent(&bundle, now).await?),
            _ => None,
        };
        for (pid, group) in groups {
            let single = group.patient.as_ref().map(|(r, _, e)| (e.is_none(), r.clone()));
            let encounters: Vec<(Option<usize>, Value)> = group
                .encounters
                .iter()
                .filter(|(_, _, e)| e.is_none())
                .map(|(r, _, e)| (*e, r.clone()))
                .collect();
            let mut out = self.apply(&pid, group, &expect, now).await?;
            // The bodies of resources sent on their own (the answer to a single create/update).
            for w in &mut out {
                if w.entry.is_none() {
                    w.resource = match w.resource_type {
                        "Patient" => single.as_ref().filter(|(one, _)| *one).map(|(_, r)| r.clone()),
                        _ => encounters.first().map(|(_, r)| r.clone()),
                    };
                }
            }
            written.extend(out);
        }
        if let Some(d) = intent {
            self.clear_intent(&d).await?;
        }
        written.sort_by_key(|w| w.entry);
        Ok(written)
    }

    /// The stored Patient `id` as served, with its version; `None` if unknown.
    pub(crate) async fn read_patient(&self, id: &str) -> Result<Option<(Value, Option<ResourceVersion>)>, AdmitError> {
        if !ids::is_fhir_id(id) {
            return Ok(None);
        }
        let Some(record) = self.records.load(id).await? else {
            return Ok(None);
        };
        self.patient_of(&record).await
    }

    async fn patient_of(&self, record: &PatientRecord) -> Result<Option<(Value, Option<ResourceVersion>)>, AdmitError> {
        if !record.known {
            return Ok(None);
        }
        let Some(key) = &record.patient_key else {
            return Ok(None);
        };
        let Some(found) = self.records.store.get(key).await? else {
            return Err(PortError::Corrupt(format!("{} is referred to but missing", keys::kind(key))).into());
        };
        let resource: Value = serde_json::from_slice(&found.data).map_err(|e| PortError::Corrupt(e.to_string()))?;
        let version = record.patient_meta.or(Some(ResourceVersion {
            id: 1,
            updated: record.updated_at,
        }));
        let mut resource = served(resource, &record.id, version);
        if let Some(survivor) = &record.merged_into {
            // Merged (HL7 v2 A40/A34): this record lives on in the survivor's.
            resource["active"] = Value::Bool(false);
            resource["link"] = json!([{"other": {"reference": format!("Patient/{survivor}")}, "type": "replaced-by"}]);
        }
        Ok(Some((resource, version)))
    }

    /// Whose record Encounter `id` is in.
    pub(crate) async fn owner_of_encounter(&self, id: &str) -> Result<Option<String>, AdmitError> {
        if !ids::is_fhir_id(id) {
            return Ok(None);
        }
        let found = self.records.store.get(&keys::stay(id)).await?;
        Ok(match found {
            Some(v) => Some(
                serde_json::from_slice::<IdentIndex>(&v.data)
                    .map_err(|e| PortError::Corrupt(e.to_string()))?
                    .patient_id,
            ),
            None => None,
        })
    }

    /// The stored Encounter `id` as served: `Err(Gone)` when deleted.
    pub(crate) async fn read_encounter(
        &self,
        id: &str,
    ) -> Result<Option<(Value, Option<ResourceVersion>)>, AdmitError> {
        let Some(pid) = self.owner_of_encounter(id).await? else {
            return Ok(None);
        };
        let Some(record) = self.records.load(&pid).await? else {
            return Ok(None);
        };
        let Some(state) = record.encounters.iter().find(|e| e.id == id) else {
            return Ok(None);
        };
        if state.deleted {
            return Err(AdmitError::Gone(format!("Encounter/{id} was deleted")));
        }
        let mut out = self.encounters_of(std::slice::from_ref(state)).await?;
        Ok(out.pop())
    }

    /// Encounters as served, in the order given (one round trip).
    pub(crate) async fn encounters_of(
        &self,
        states: &[EncounterState],
    ) -> Result<Vec<(Value, Option<ResourceVersion>)>, AdmitError> {
        let keys: Vec<String> = states.iter().map(|s| s.resource_key.clone()).collect();
        let found = self.records.store.get_many(&keys).await?;
        let mut out = Vec::new();
        for (state, found) in states.iter().zip(found) {
            let Some(found) = found else {
                return Err(PortError::Corrupt("an encounter resource is referred to but missing".into()).into());
            };
            let resource: Value = serde_json::from_slice(&found.data).map_err(|e| PortError::Corrupt(e.to_string()))?;
            out.push((served(resource, &state.id, state.version), state.version));
        }
        Ok(out)
    }

    pub(crate) fn records(&self) -> &Records<S, L, P> {
        &self.records
    }
}

/// Whether an expected version is about this patient's part of the request.
fn concerns(e: &Expect, patient_id: &str, group: &Group) -> bool {
    match e.resource_type {
        "Patient" => e.id == patient_id || e.id.is_empty() && group.patient.is_some(),
        _ => group.encounters.iter().any(|(_, u, _)| u.state.id == e.id),
    }
}

/// `If-Match`: the version the client read must still be the current one (`*`: any version,
/// as long as the resource exists).
fn check_expected(record: Option<&PatientRecord>, expect: &Expect) -> Result<(), AdmitError> {
    let current = record.and_then(|r| match expect.resource_type {
        "Patient" => r.known.then_some(r.patient_meta).flatten().map(|v| v.id),
        _ => r
            .encounters
            .iter()
            .find(|e| e.id == expect.id && !e.deleted)
            .and_then(|e| e.version)
            .map(|v| v.id),
    });
    match current {
        Some(v) if v.to_string() == expect.version || expect.version == "*" => Ok(()),
        Some(v) => Err(AdmitError::PreconditionFailed(format!(
            "{}/{} is at version {v}, not {}: read it again and resend",
            expect.resource_type, expect.id, expect.version
        ))),
        None => Err(AdmitError::PreconditionFailed(format!(
            "{}/{} does not exist, so it cannot be at version {}",
            expect.resource_type, expect.id, expect.version
        ))),
    }
}

/// What each resource of a group came to, from the record before and after the decision.
fn outcomes(patient_id: &str, group: &Group, before: Option<&PatientRecord>, after: &PatientRecord) -> Vec<Written> {
    let mut out = Vec::new();
    if let Some((_, update, entry)) = &group.patient {
        out.push(Written {
            entry: *entry,
            resource_type: "Patient",
            id: patient_id.to_owned(),
            version: after.patient_meta,
            created: !before.is_some_and(|r| r.known),
            applied: after.patient_digest == update.digest,
            resource: None,
        });
    }
    for (_, update, entry) in &group.encounters {
        let id = &update.state.id;
        let was = before.and_then(|r| r.encounters.iter().find(|e| e.id == *id));
        let now = after.encounters.iter().find(|e| e.id == *id);
        out.push(Written {
            entry: *entry,
            resource_type: "Encounter",
            id: id.clone(),
            version: now.and_then(|e| e.version),
            created: was.is_none_or(|e| e.deleted),
            applied: now.is_some_and(|e| e.digest == update.state.digest),
            resource: None,
        });
    }
    for (entry, id) in &group.deletes {
        out.push(Written {
            entry: *entry,
            resource_type: "Encounter",
            id: id.clone(),
            version: after.encounters.iter().find(|e| e.id == *id).and_then(|e| e.version),
            created: false,
            applied: true,
            resource: None,
        });
    }
    out
}

impl<S: StateStore, L: EventLog, P: Publisher> Admit<S, L, P> {
    /// Admit what one HL7 v2 ADT message says: its Patient and Encounter, validated like any
    /// FHIR admission (schema and typed), then decided and written as a transaction of the two.
    /// Returns once the patient's record is written (durably taken).
    pub async fn admit_adt(&self, message: &adt::AdtMessage, now: DateTime<Utc>) -> Result<(), AdmitError> {
        wardwatch_fhir::validate_resource(&message.patient).map_err(AdmitError::Invalid)?;
        let patient = self.plan_patient(None, message.patient.clone(), None, None)?;
        if patient.identity.is_none() {
            return Err(AdmitError::Refused(Issue::new(
                "/identifier",
                "the patient has no identifier Wardwatch can know them by",
            )));
        }
        let mut plan = Plan {
            patients: vec![patient],
            ..Plan::default()
        };
        if let Some(resource) = &message.encounter {
            wardwatch_fhir::validate_resource(resource).map_err(AdmitError::Invalid)?;
            let mut encounter = self.plan_encounter(None, resource.clone(), None)?;
            encounter.given_id = None;
            encounter.cancel_discharge = message.cancel_discharge;
            plan.encounters.push(encounter);
        }
        self.admit(plan, now).await.map(|_| ())
    }
}

impl<S: StateStore, L: EventLog, P: Publisher> Function for Admit<S, L, P> {
    fn name(&self) -> &'static str {
        "admit"
    }

    async fn call(&self, event: Event) -> Result<Output, Failure> {
        rest::handle(self, &event).await
    }

    async fn ready(&self) -> Result<(), String> {
        ready(&self.records.store, &self.records.log, &self.records.bus).await
    }

    fn prepare(&self) {
        wardwatch_fhir::prepare(&["Bundle", "Patient", "Encounter"]);
    }
}
