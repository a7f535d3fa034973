//! admit: FHIR R4 Patients, Encounters and transaction Bundles in; patient records, ward
//! indexes and `admitted` / `transferred` / `discharged` events out.
//!
//! parse → resolve who each entry is about → for each patient: load the record, decide
//! (`domain::decide::admission`), write it back with its ETag → claim the patient's identifiers
//! (after the record they point at) → the outbox drains indexes, the event log and `admissions`.
//!
//! Idempotent: a patient without an id gets one derived from its identity (system + value), an
//! encounter one derived from its patient and identifier (or, with neither id nor identifier,
//! from its content: a new encounter, never an overwrite of another), so posting the same Bundle
//! twice changes nothing and announces nothing new.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wardwatch_domain::decide::admission::{self, AdmissionInput, EncounterUpdate, PatientUpdate};
use wardwatch_domain::decide::digest;
use wardwatch_domain::facts::{self, EncounterFacts, PatientFacts, SubjectRef};
use wardwatch_domain::identity::{Identifier, IdentityRules};
use wardwatch_domain::ports::{EventLog, PortError, Publisher, StateStore, ready};
use wardwatch_domain::record::EncounterState;
use wardwatch_domain::{Issue, adt, ids, keys};
use wardwatch_records::{Claim, Prefetched, Records, Step};
use wardwatch_runtime::{Event, Failure, FailureKind, Function, Output};

pub mod capabilities;
pub mod feed;
pub mod hl7v2;

/// Why an admission was refused. Each variant classifies itself for the runtime.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error("only POST is accepted here")]
    Method,
    #[error("unsupported media type `{0}`: send application/fhir+json")]
    MediaType(String),
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the resource is not valid FHIR R4")]
    Invalid(Vec<Issue>),
    #[error("{}", .0.message)]
    Refused(Issue),
    #[error("`{0}` is not accepted here: post a Patient, an Encounter or a transaction Bundle")]
    ResourceType(String),
    #[error("a Bundle posted here must be a transaction (type is `{0}`)")]
    NotTransaction(String),
    #[error("the Encounter's subject `{0}` is not a known patient")]
    UnknownPatient(String),
    #[error("this identifier already belongs to another patient")]
    IdentifierTaken(Issue),
    #[error(transparent)]
    Port(#[from] PortError),
}

impl From<AdmitError> for Failure {
    fn from(e: AdmitError) -> Self {
        let message = e.to_string();
        match e {
            AdmitError::Method => Failure::invalid(message).with_status(405),
            AdmitError::MediaType(_) => Failure::invalid(message).with_status(415),
            AdmitError::NotJson(_) | AdmitError::NotTransaction(_) => Failure::invalid(message),
            AdmitError::Invalid(issues) => Failure::invalid(message).with_issues(issues),
            AdmitError::Refused(issue) => Failure::invalid("the resource cannot be admitted")
                .with_issues(vec![issue])
                .with_status(422),
            AdmitError::ResourceType(_) => Failure::invalid(message).with_status(422),
            AdmitError::UnknownPatient(_) => Failure::new(FailureKind::NotFound, message).with_status(422),
            AdmitError::IdentifierTaken(issue) => Failure::new(FailureKind::Conflict, message).with_issues(vec![issue]),
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
struct PatientPlan {
    /// The Bundle entry (none for a resource posted on its own).
    entry: Option<usize>,
    full_url: Option<String>,
    given_id: Option<String>,
    facts: PatientFacts,
    identity: Identifier,
    identifiers: Vec<Identifier>,
    resource: Value,
}

/// An Encounter entry.
struct EncounterPlan {
    entry: Option<usize>,
    given_id: Option<String>,
    facts: EncounterFacts,
    resource: Value,
    /// An explicit cancel of the discharge (HL7 v2 A13).
    cancel_discharge: bool,
}

/// Everything one patient gets from one request.
#[derive(Default)]
struct Group {
    /// The Patient resource (stored form) and its update.
    patient: Option<(Value, PatientUpdate)>,
    encounters: Vec<(Value, EncounterUpdate)>,
    identifiers: Vec<Identifier>,
    /// The identity's index already points at this patient: nothing to claim for it.
    indexed: Option<Identifier>,
    /// The record as read while resolving the patient.
    prefetched: Option<Prefetched>,
}

fn id_from_put_url(entry: &Value, resource_type: &str) -> Option<String> {
    let request = entry.get("request")?;
    if request.get("method").and_then(Value::as_str) != Some("PUT") {
        return None;
    }
    let url = request.get("url").and_then(Value::as_str)?;
    let (rt, id) = url.split('?').next()?.split_once('/')?;
    (rt == resource_type && ids::is_fhir_id(id)).then(|| id.to_owned())
}

fn to_bytes(v: &Value) -> Result<Vec<u8>, PortError> {
    serde_json::to_vec(v).map_err(|e| PortError::Corrupt(e.to_string()))
}

/// Prefix an entry's issue locations with its place in the Bundle.
fn relocate(e: AdmitError, entry: Option<usize>) -> AdmitError {
    let Some(i) = entry else { return e };
    let at = |issue: Issue| Issue::new(format!("/entry/{i}/resource{}", issue.location), issue.message);
    match e {
        AdmitError::Refused(issue) => AdmitError::Refused(at(issue)),
        AdmitError::IdentifierTaken(issue) => AdmitError::IdentifierTaken(at(issue)),
        other => other,
    }
}

impl<S: StateStore, L: EventLog, P: Publisher> Admit<S, L, P> {
    pub fn new(records: Records<S, L, P>, identity: IdentityRules) -> Self {
        Self { records, identity }
    }

    fn parse(&self, event: &Event) -> Result<Value, AdmitError> {
        if event.context.method.as_deref().is_some_and(|m| m != "POST") {
            return Err(AdmitError::Method);
        }
        if let Some(ct) = &event.context.content_type {
            let media = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            if !matches!(media.as_str(), "application/fhir+json" | "application/json" | "") {
                return Err(AdmitError::MediaType(media));
            }
        }
        serde_json::from_slice(&event.payload)
            .map_err(|e| AdmitError::NotJson(format!("line {} column {}", e.line(), e.column())))
    }

    fn plan_patient(
        &self,
        entry: Option<usize>,
        resource: Value,
        put_id: Option<String>,
        full_url: Option<String>,
    ) -> Result<PatientPlan, AdmitError> {
        let facts = facts::patient(&resource);
        let identity = self.identity.primary(&facts.identifiers).map_err(AdmitError::Refused)?;
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
        })
    }

    /// The patient id for a Patient: the one it was given, else the one its identity already
    /// has, else one derived from its identity. A given id whose identity another patient holds
    /// is refused, unless that other record only holds results that came first: it is joined.
    /// Also whether the identity's index already points at that id, and the record of the
    /// likeliest id, read in the same round trip as the index.
    async fn resolve_patient(&self, plan: &PatientPlan) -> Result<(String, bool, Prefetched), AdmitError> {
        let derived = ids::derived("patient", &[&plan.identity.system, &plan.identity.value]);
        let candidate = plan.given_id.as_deref().unwrap_or(&derived);
        let (holder, prefetched) = self.records.lookup_and_prefetch(&plan.identity, candidate).await?;
        let id = self.choose_id(plan, holder.clone(), derived).await?;
        let indexed = holder.as_deref() == Some(id.as_str());
        Ok((id, indexed, prefetched))
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
                    "this identifier (system and value) is already held by another patient",
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

    /// Who an Encounter is about: a Patient of the same Bundle (by `fullUrl`, id or identifier),
    /// or a patient Wardwatch already has a record of.
    async fn patient_for(&self, subject: &SubjectRef, bundle: &[(String, &PatientPlan)]) -> Result<String, AdmitError> {
        match subject {
            SubjectRef::Reference(r) => {
                if let Some((id, _)) = bundle.iter().find(|(_, p)| p.full_url.as_deref() == Some(r.as_str())) {
                    return Ok(id.clone());
                }
                let id = facts::patient_id_of_reference(r)
                    .filter(|id| ids::is_fhir_id(id))
                    .ok_or_else(|| AdmitError::UnknownPatient(r.clone()))?;
                if bundle.iter().any(|(pid, _)| pid == id) || self.records.load(id).await?.is_some() {
                    Ok(id.to_owned())
                } else {
                    Err(AdmitError::UnknownPatient(r.clone()))
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
                self.records
                    .lookup(&identifier)
                    .await?
                    .ok_or_else(|| AdmitError::UnknownPatient("identifier".into()))
            }
        }
    }

    fn encounter_update(&self, plan: EncounterPlan, patient_id: &str) -> (Value, EncounterUpdate) {
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
            source_version: f.last_updated,
            resource_key: keys::encounter_resource(&id, &d),
            digest: d,
        };
        (
            resource,
            EncounterUpdate {
                state,
                cancel_discharge,
            },
        )
    }

    /// Write one patient's part of the request: one compare-and-set of their record.
    async fn apply(&self, patient_id: &str, group: Group, now: DateTime<Utc>) -> Result<(), AdmitError> {
        let mut resources = Vec::new();
        if let Some((resource, update)) = &group.patient {
            resources.push((update.resource_key.clone(), to_bytes(resource)?));
        }
        for (resource, update) in &group.encounters {
            resources.push((update.state.resource_key.clone(), to_bytes(resource)?));
        }
        let input = AdmissionInput {
            patient: group.patient.as_ref().map(|(_, u)| u.clone()),
            encounters: group.encounters.iter().map(|(_, u)| u.clone()).collect(),
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
        let ((), claimed) = self
            .records
            .update_claiming_from(patient_id, &to_claim, group.prefetched, |record| {
                let d = admission::decide(record, patient_id, input.clone(), now);
                Ok::<_, AdmitError>(if d.changed {
                    Step::Write {
                        record: d.record,
                        resources: resources.take().unwrap_or_default(),
                        out: (),
                    }
                } else {
                    Step::Keep(())
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
        Ok(())
    }

    /// Plan every entry, resolve every patient, then write patient by patient.
    async fn admit(
        &self,
        patients: Vec<PatientPlan>,
        encounters: Vec<EncounterPlan>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Option<usize>, String, Option<Value>)>, AdmitError> {
        let mut resolved: Vec<(String, &PatientPlan)> = Vec::new();
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        // Where each resource went; the resource itself only for a single one (it is the
        // answer's body), not for a Bundle's entries.
        let mut locations: Vec<(Option<usize>, String, Option<Value>)> = Vec::new();
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
                source_version: plan.facts.last_updated,
                resource_key: keys::patient_resource(&pid, &d),
                digest: d,
            };
            locations.push((
                plan.entry,
                format!("Patient/{pid}"),
                plan.entry.is_none().then(|| resource.clone()),
            ));
            let group = groups.entry(pid.clone()).or_default();
            group.identifiers = plan.identifiers.clone();
            group.indexed = indexed.then(|| plan.identity.clone());
            group.prefetched = Some(prefetched);
            group.patient = Some((resource, update));
            resolved.push((pid, plan));
        }
        for plan in encounters {
            let pid = self
                .patient_for(&plan.facts.subject, &resolved)
                .await
                .map_err(|e| relocate(e, plan.entry))?;
            let entry = plan.entry;
            let (resource, update) = self.encounter_update(plan, &pid);
            locations.push((
                entry,
                format!("Encounter/{}", update.state.id),
                entry.is_none().then(|| resource.clone()),
            ));
            groups.entry(pid).or_default().encounters.push((resource, update));
        }
        for (pid, group) in groups {
            self.apply(&pid, group, now).await?;
        }
        locations.sort_by_key(|(i, _, _)| *i);
        Ok(locations)
    }

    /// A transaction Bundle whose shape (`check_transaction_shape`) and resources have been
    /// checked.
    async fn transaction(&self, mut bundle: Value, now: DateTime<Utc>) -> Result<Output, AdmitError> {
        // The entries are taken out of the Bundle, not copied: nothing reads it afterwards.
        let entries = match bundle.get_mut("entry").map(Value::take) {
            Some(Value::Array(entries)) => entries,
            _ => Vec::new(),
        };
        let mut patients = Vec::new();
        let mut encounters = Vec::new();
        for (i, mut entry) in entries.into_iter().enumerate() {
            let resource = entry["resource"].take();
            if resource["resourceType"] == "Patient" {
                let full_url = entry.get("fullUrl").and_then(Value::as_str).map(str::to_owned);
                let plan = self
                    .plan_patient(Some(i), resource, id_from_put_url(&entry, "Patient"), full_url)
                    .map_err(|e| relocate(e, Some(i)))?;
                patients.push(plan);
            } else {
                let facts = facts::encounter(&resource).map_err(|e| relocate(AdmitError::Refused(e), Some(i)))?;
                encounters.push(EncounterPlan {
                    entry: Some(i),
                    given_id: id_from_put_url(&entry, "Encounter")
                        .or_else(|| facts.id.clone().filter(|id| ids::is_fhir_id(id))),
                    facts,
                    resource,
                    cancel_discharge: false,
                });
            }
        }
        let written = self.admit(patients, encounters, now).await?;
        let response: Vec<Value> = written
            .iter()
            .map(|(_, location, _)| json!({"response": {"status": "200 OK", "location": location}}))
            .collect();
        Ok(Output::ok(
            json!({"resourceType": "Bundle", "type": "transaction-response", "entry": response}),
        ))
    }
}

impl<S: StateStore, L: EventLog, P: Publisher> Admit<S, L, P> {
    /// Admit what one HL7 v2 ADT message says: its Patient and Encounter, validated like any
    /// FHIR admission (schema and typed), then decided and written as a transaction of the two.
    /// Returns once the patient's record is written (durably taken).
    pub async fn admit_adt(&self, message: &adt::AdtMessage, now: DateTime<Utc>) -> Result<(), AdmitError> {
        wardwatch_fhir::validate_resource(&message.patient).map_err(AdmitError::Invalid)?;
        let patient = self.plan_patient(None, message.patient.clone(), None, None)?;
        let mut encounters = Vec::new();
        if let Some(resource) = &message.encounter {
            wardwatch_fhir::validate_resource(resource).map_err(AdmitError::Invalid)?;
            let facts = facts::encounter(resource).map_err(AdmitError::Refused)?;
            encounters.push(EncounterPlan {
                entry: None,
                given_id: None,
                facts,
                resource: resource.clone(),
                cancel_discharge: message.cancel_discharge,
            });
        }
        self.admit(vec![patient], encounters, now).await.map(|_| ())
    }
}

/// A transaction Bundle of Patients and Encounters, each entry with a resource.
fn check_transaction_shape(bundle: &Value) -> Result<(), AdmitError> {
    let kind = bundle.get("type").and_then(Value::as_str).unwrap_or_default();
    if kind != "transaction" {
        return Err(AdmitError::NotTransaction(kind.to_owned()));
    }
    for (i, entry) in bundle
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(resource) = entry.get("resource") else {
            return Err(AdmitError::Invalid(vec![Issue::new(
                format!("/entry/{i}"),
                "entry without a resource",
            )]));
        };
        let rt = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        if !matches!(rt, "Patient" | "Encounter") {
            return Err(AdmitError::Refused(Issue::new(
                format!("/entry/{i}/resource/resourceType"),
                format!("`{rt}` entries are not accepted: a transaction here holds Patients and Encounters"),
            )));
        }
    }
    Ok(())
}

impl<S: StateStore, L: EventLog, P: Publisher> Function for Admit<S, L, P> {
    fn name(&self) -> &'static str {
        "admit"
    }

    async fn call(&self, event: Event) -> Result<Output, Failure> {
        let resource = self.parse(&event)?;
        let now = event.context.received_at;
        let resource_type = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // Decide what is acceptable before validating: only these types' validators are ever
        // compiled, whatever a client sends.
        match resource_type.as_str() {
            "Patient" | "Encounter" => {}
            "Bundle" => check_transaction_shape(&resource)?,
            other if wardwatch_fhir::is_resource_type(other) => {
                return Err(AdmitError::ResourceType(resource_type).into());
            }
            _ => {
                return Err(AdmitError::Invalid(vec![Issue::new(
                    "/resourceType",
                    format!("`{resource_type}` is not a FHIR R4 resource type"),
                )])
                .into());
            }
        }
        wardwatch_fhir::validate_resource(&resource).map_err(AdmitError::Invalid)?;
        let output = match resource_type.as_str() {
            "Bundle" => self.transaction(resource, now).await?,
            "Patient" => {
                let plan = self.plan_patient(None, resource, None, None)?;
                let mut written = self.admit(vec![plan], Vec::new(), now).await?;
                Output::created(written.pop().and_then(|(_, _, r)| r).unwrap_or_default())
            }
            _ => {
                let facts = facts::encounter(&resource).map_err(AdmitError::Refused)?;
                let plan = EncounterPlan {
                    entry: None,
                    given_id: facts.id.clone().filter(|id| ids::is_fhir_id(id)),
                    facts,
                    resource,
                    cancel_discharge: false,
                };
                let mut written = self.admit(Vec::new(), vec![plan], now).await?;
                Output::created(written.pop().and_then(|(_, _, r)| r).unwrap_or_default())
            }
        };
        Ok(output)
    }

    async fn ready(&self) -> Result<(), String> {
        ready(&self.records.store, &self.records.log, &self.records.bus).await
    }

    fn prepare(&self) {
        wardwatch_fhir::prepare(&["Bundle", "Patient", "Encounter"]);
    }
}
