//! admit: FHIR R4 Patient, Encounter and transaction Bundles in; patients, encounters, the ward
//! census and `admissions` events out.
//!
//! Idempotent: a patient without an id gets one derived from its MRN, an encounter one derived
//! from its patient and identifier (or start), so posting the same Bundle twice updates what the
//! first post created instead of duplicating it.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wardwatch_domain::events::{AdmissionEvent, Census, CensusEntry, keys};
use wardwatch_domain::facts::{self, EncounterFacts, PatientFacts, SubjectRef};
use wardwatch_domain::ports::{
    CREATE_ONLY_ETAG, PortError, Publisher, StateStore, get_json, patient_for_mrn, put_json, ready, update_json,
};
use wardwatch_domain::{Issue, ids, lanes, validate_resource};
use wardwatch_runtime::{Event, Failure, FailureKind, Function, Output};

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
    #[error("MRN already belongs to another patient id")]
    MrnTaken(Issue),
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
            AdmitError::MrnTaken(issue) => Failure::new(FailureKind::Conflict, message).with_issues(vec![issue]),
            AdmitError::Port(p) => p.into(),
        }
    }
}

/// The admit function. Owns its ports.
pub struct Admit<S, P> {
    store: S,
    bus: P,
    mrn_system: Option<String>,
}

/// A Patient ready to store.
struct PatientPlan {
    id: String,
    facts: PatientFacts,
    resource: Value,
    full_url: Option<String>,
}

/// What was last announced on `admissions` for an encounter (`announced-<encounter id>`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Announced {
    in_census: bool,
    ward: Option<String>,
    bed: Option<String>,
}

/// An Encounter ready to store.
struct EncounterPlan {
    id: String,
    patient_id: String,
    facts: EncounterFacts,
    resource: Value,
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

impl<S: StateStore, P: Publisher> Admit<S, P> {
    pub fn new(store: S, bus: P, mrn_system: Option<String>) -> Self {
        Self { store, bus, mrn_system }
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

    /// Patient id: the PUT URL's, else the resource's, else the one its MRN already has, else
    /// one derived from the MRN.
    async fn plan_patient(
        &self,
        resource: Value,
        put_id: Option<String>,
        full_url: Option<String>,
    ) -> Result<PatientPlan, AdmitError> {
        let facts = facts::patient(&resource, self.mrn_system.as_deref()).map_err(AdmitError::Refused)?;
        let known = patient_for_mrn(&self.store, &facts.mrn.value).await?;
        let given = put_id.or_else(|| facts.id.clone().filter(|id| ids::is_fhir_id(id)));
        let id = match (given, known) {
            (Some(given), Some(known)) if given != known => {
                // Another patient's id is not told to the client.
                return Err(AdmitError::MrnTaken(Issue {
                    location: "/identifier".into(),
                    message: "this MRN is already held by another patient".into(),
                }));
            }
            (Some(id), _) | (None, Some(id)) => id,
            (None, None) => ids::derived("patient", &[&facts.mrn.value]),
        };
        Ok(PatientPlan {
            id,
            facts,
            resource,
            full_url,
        })
    }

    async fn patient_for(&self, subject: &SubjectRef, bundle: &[PatientPlan]) -> Result<String, AdmitError> {
        match subject {
            SubjectRef::Reference(r) => {
                if let Some(p) = bundle.iter().find(|p| p.full_url.as_deref() == Some(r.as_str())) {
                    return Ok(p.id.clone());
                }
                let id = facts::patient_id_of_reference(r)
                    .filter(|id| ids::is_fhir_id(id))
                    .ok_or_else(|| AdmitError::UnknownPatient(r.clone()))?;
                if bundle.iter().any(|p| p.id == id) || self.store.get(&keys::patient(id)).await?.is_some() {
                    Ok(id.to_owned())
                } else {
                    Err(AdmitError::UnknownPatient(r.clone()))
                }
            }
            SubjectRef::Identifier(mrn) => {
                if let Some(p) = bundle.iter().find(|p| p.facts.mrn.value == mrn.value) {
                    return Ok(p.id.clone());
                }
                if !facts::is_key_safe(&mrn.value) {
                    return Err(AdmitError::UnknownPatient("identifier".into()));
                }
                patient_for_mrn(&self.store, &mrn.value)
                    .await?
                    .ok_or_else(|| AdmitError::UnknownPatient("identifier".into()))
            }
        }
    }

    async fn plan_encounter(
        &self,
        resource: Value,
        put_id: Option<String>,
        bundle: &[PatientPlan],
    ) -> Result<EncounterPlan, AdmitError> {
        let facts = facts::encounter(&resource, self.mrn_system.as_deref()).map_err(AdmitError::Refused)?;
        let patient_id = self.patient_for(&facts.subject, bundle).await?;
        let identifier = resource
            .pointer("/identifier/0/value")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| facts.start.map(|s| s.to_rfc3339()))
            .unwrap_or_default();
        let id = put_id
            .or_else(|| facts.id.clone().filter(|id| ids::is_fhir_id(id)))
            .unwrap_or_else(|| ids::derived("encounter", &[&patient_id, &identifier]));
        Ok(EncounterPlan {
            id,
            patient_id,
            facts,
            resource,
        })
    }

    async fn store_patient(&self, plan: &PatientPlan) -> Result<(), AdmitError> {
        let mut resource = plan.resource.clone();
        resource["id"] = Value::String(plan.id.clone());
        // The MRN → patient index is created once; a second creator gets a conflict.
        let mrn_key = keys::mrn(&plan.facts.mrn.value);
        match put_json(
            &self.store,
            &mrn_key,
            &json!({"patient_id": plan.id}),
            Some(CREATE_ONLY_ETAG),
        )
        .await
        {
            Ok(()) => {}
            Err(PortError::Conflict) => {
                let owner = patient_for_mrn(&self.store, &plan.facts.mrn.value).await?;
                if owner.as_deref() != Some(plan.id.as_str()) {
                    return Err(AdmitError::MrnTaken(Issue {
                        location: "/identifier".into(),
                        message: "this MRN is already held by another patient".into(),
                    }));
                }
            }
            Err(e) => return Err(e.into()),
        }
        put_json(&self.store, &keys::patient(&plan.id), &resource, None).await?;
        tracing::info!(patient_id = %plan.id, "patient stored");
        Ok(())
    }

    /// Store the encounter, update the census, publish what changed.
    async fn store_encounter(
        &self,
        plan: &EncounterPlan,
        patients: &[PatientPlan],
        now: DateTime<Utc>,
    ) -> Result<(), AdmitError> {
        let mut resource = plan.resource.clone();
        resource["id"] = Value::String(plan.id.clone());
        resource["subject"] = json!({"reference": format!("Patient/{}", plan.patient_id)});
        put_json(&self.store, &keys::encounter(&plan.id), &resource, None).await?;

        let (mrn, name) = match patients.iter().find(|p| p.id == plan.patient_id) {
            Some(p) => (p.facts.mrn.value.clone(), p.facts.name.clone()),
            None => {
                let stored: Option<(Value, String)> = get_json(&self.store, &keys::patient(&plan.patient_id)).await?;
                let facts = stored.and_then(|(p, _)| facts::patient(&p, self.mrn_system.as_deref()).ok());
                (
                    facts.as_ref().map(|f| f.mrn.value.clone()).unwrap_or_default(),
                    facts.and_then(|f| f.name),
                )
            }
        };
        let entry = CensusEntry {
            patient_id: plan.patient_id.clone(),
            encounter_id: plan.id.clone(),
            mrn: mrn.clone(),
            name,
            ward: plan.facts.ward.clone(),
            bed: plan.facts.bed.clone(),
            admitted_at: plan.facts.start,
        };
        let current = plan.facts.is_current_inpatient();
        update_json::<Census, _, _>(&self.store, keys::CENSUS, 20, |census| {
            let existing = census.patients.get(&plan.patient_id);
            if current {
                if existing == Some(&entry) {
                    return false;
                }
                census.patients.insert(plan.patient_id.clone(), entry.clone());
                true
            } else if existing.is_some_and(|e| e.encounter_id == plan.id) {
                census.patients.remove(&plan.patient_id);
                true
            } else {
                false
            }
        })
        .await?;
        self.announce(plan, mrn, current, now).await?;
        tracing::info!(patient_id = %plan.patient_id, encounter_id = %plan.id, current, "encounter stored");
        Ok(())
    }

    /// Publish on `admissions` what changed since the last announcement of this encounter:
    /// `admitted`, `transferred` (ward or bed) or `discharged`; nothing when nothing changed.
    /// The announced state is saved only after the publish, so a publish that failed is
    /// retried with the same kind when the client (or the queue) tries again.
    async fn announce(
        &self,
        plan: &EncounterPlan,
        mrn: String,
        current: bool,
        now: DateTime<Utc>,
    ) -> Result<(), AdmitError> {
        let key = keys::announced(&plan.id);
        let last: Option<(Announced, String)> = get_json(&self.store, &key).await?;
        let state = Announced {
            in_census: current,
            ward: plan.facts.ward.clone(),
            bed: plan.facts.bed.clone(),
        };
        let kind = match (last.as_ref().map(|(l, _)| l), current) {
            (None, true) => "admitted",
            (Some(l), true) if !l.in_census => "admitted",
            (Some(l), true) if l.ward != state.ward || l.bed != state.bed => "transferred",
            (Some(l), false) if l.in_census => "discharged",
            _ => return Ok(()),
        };
        let event = AdmissionEvent {
            kind: kind.to_owned(),
            patient_id: plan.patient_id.clone(),
            encounter_id: plan.id.clone(),
            mrn,
            ward: state.ward.clone(),
            bed: state.bed.clone(),
            at: now,
        };
        let payload = serde_json::to_vec(&event).map_err(|e| PortError::Corrupt(e.to_string()))?;
        self.bus.publish(lanes::ADMISSIONS, &payload).await?;
        let etag = last.map_or_else(|| CREATE_ONLY_ETAG.to_owned(), |(_, e)| e);
        match put_json(&self.store, &key, &state, Some(&etag)).await {
            // A concurrent post of the same encounter announced it too (at least once).
            Ok(()) | Err(PortError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(patient_id = %plan.patient_id, encounter_id = %plan.id, kind, "admission announced");
        Ok(())
    }

    /// A transaction Bundle whose shape (`check_transaction_shape`) and resources
    /// (`validate_resource`) have been checked: plan every entry, then write.
    async fn transaction(&self, bundle: Value, now: DateTime<Utc>) -> Result<Output, AdmitError> {
        let entries = bundle
            .get("entry")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut patients = Vec::new();
        let mut encounters = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let resource = entry["resource"].clone();
            let full_url = entry.get("fullUrl").and_then(Value::as_str).map(str::to_owned);
            if resource["resourceType"] == "Patient" {
                patients.push((resource, id_from_put_url(entry, "Patient"), full_url, i));
            } else {
                encounters.push((resource, id_from_put_url(entry, "Encounter"), i));
            }
        }
        let mut patient_plans: Vec<PatientPlan> = Vec::new();
        for (resource, put_id, full_url, i) in patients {
            let plan = self
                .plan_patient(resource, put_id, full_url)
                .await
                .map_err(|e| relocate(e, i))?;
            patient_plans.push(plan);
        }
        let mut encounter_plans = Vec::new();
        for (resource, put_id, i) in encounters {
            let plan = self
                .plan_encounter(resource, put_id, &patient_plans)
                .await
                .map_err(|e| relocate(e, i))?;
            encounter_plans.push(plan);
        }
        let mut response_entries = Vec::new();
        for p in &patient_plans {
            self.store_patient(p).await?;
            response_entries.push(json!({"response": {"status": "200 OK", "location": format!("Patient/{}", p.id)}}));
        }
        for e in &encounter_plans {
            self.store_encounter(e, &patient_plans, now).await?;
            response_entries.push(json!({"response": {"status": "200 OK", "location": format!("Encounter/{}", e.id)}}));
        }
        Ok(Output::ok(
            json!({"resourceType": "Bundle", "type": "transaction-response", "entry": response_entries}),
        ))
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
            return Err(AdmitError::Invalid(vec![Issue {
                location: format!("/entry/{i}"),
                message: "entry without a resource".into(),
            }]));
        };
        let rt = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        if !matches!(rt, "Patient" | "Encounter") {
            return Err(AdmitError::Refused(Issue {
                location: format!("/entry/{i}/resource/resourceType"),
                message: format!("`{rt}` entries are not accepted: a transaction here holds Patients and Encounters"),
            }));
        }
    }
    Ok(())
}

/// Prefix an entry's issue locations with its place in the Bundle.
fn relocate(e: AdmitError, i: usize) -> AdmitError {
    match e {
        AdmitError::Refused(issue) => AdmitError::Refused(Issue {
            location: format!("/entry/{i}/resource{}", issue.location),
            message: issue.message,
        }),
        other => other,
    }
}

impl<S: StateStore, P: Publisher> Function for Admit<S, P> {
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
            other if wardwatch_domain::fhir::is_resource_type(other) => {
                return Err(AdmitError::ResourceType(resource_type).into());
            }
            _ => {
                return Err(AdmitError::Invalid(vec![Issue {
                    location: "/resourceType".into(),
                    message: format!("`{resource_type}` is not a FHIR R4 resource type"),
                }])
                .into());
            }
        }
        validate_resource(&resource).map_err(AdmitError::Invalid)?;
        let output = match resource_type.as_str() {
            "Bundle" => self.transaction(resource, now).await?,
            "Patient" => {
                let plan = self.plan_patient(resource, None, None).await?;
                self.store_patient(&plan).await?;
                let mut stored = plan.resource.clone();
                stored["id"] = Value::String(plan.id.clone());
                Output::created(stored)
            }
            _ => {
                let plan = self.plan_encounter(resource, None, &[]).await?;
                self.store_encounter(&plan, &[], now).await?;
                let mut stored = plan.resource.clone();
                stored["id"] = Value::String(plan.id.clone());
                stored["subject"] = json!({"reference": format!("Patient/{}", plan.patient_id)});
                Output::created(stored)
            }
        };
        Ok(output)
    }

    async fn ready(&self) -> Result<(), String> {
        ready(&self.store, &self.bus).await
    }
}
