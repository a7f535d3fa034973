//! ingest-lab: laboratory results from the `lab-feed` queue, normalised to canonical units,
//! stored once against their patient, and announced on `lab-resulted`.
//!
//! Stored once: a result's id is derived from its patient and the laboratory's identifier for
//! it (else the Observation id, else its content), so a redelivered message lands on itself. The event is
//! published after the store on every delivery — at least once — and evaluate-alert is
//! idempotent on the result id.

use serde_json::{Value, json};
use wardwatch_domain::events::{HistoryEntry, LabResult, LabResulted, ResultHistory, keys};
use wardwatch_domain::facts::{self, SubjectRef};
use wardwatch_domain::ports::{
    PortError, Publisher, StateStore, get_json, patient_for_mrn, put_json, ready, update_json,
};
use wardwatch_domain::{Issue, ids, lanes, units, validate_resource};
use wardwatch_runtime::{Event, Failure, FailureKind, Function, Output};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the message is not JSON (line {0} column {1})")]
    NotJson(usize, usize),
    #[error("HL7 v2 messages are not handled yet: send a FHIR Observation")]
    Hl7v2,
    #[error("`{0}` is not accepted on lab-feed: send a FHIR Observation")]
    ResourceType(String),
    #[error("the Observation is not valid FHIR R4")]
    Invalid(Vec<Issue>),
    #[error("{}", .0.message)]
    Refused(Issue),
    #[error("{0}")]
    Unit(#[from] units::UnitError),
    #[error("the result's patient is not known: {0}")]
    UnknownPatient(String),
    #[error(transparent)]
    Port(#[from] PortError),
}

impl From<IngestError> for Failure {
    fn from(e: IngestError) -> Self {
        let message = e.to_string();
        match e {
            IngestError::NotJson(..) | IngestError::Hl7v2 | IngestError::ResourceType(_) => Failure::invalid(message),
            IngestError::Invalid(issues) => Failure::invalid(message).with_issues(issues),
            IngestError::Refused(issue) => Failure::invalid("the result cannot be stored")
                .with_issues(vec![issue])
                .with_status(422),
            IngestError::Unit(_) => Failure::invalid(message)
                .with_issues(vec![Issue {
                    location: "/valueQuantity".into(),
                    message: "unit not accepted".into(),
                }])
                .with_status(422),
            IngestError::UnknownPatient(_) => Failure::new(FailureKind::NotFound, message).with_issues(vec![Issue {
                location: "/subject".into(),
                message: "no such patient".into(),
            }]),
            IngestError::Port(p) => p.into(),
        }
    }
}

pub struct IngestLab<S, P> {
    store: S,
    bus: P,
    mrn_system: Option<String>,
}

impl<S: StateStore, P: Publisher> IngestLab<S, P> {
    pub fn new(store: S, bus: P, mrn_system: Option<String>) -> Self {
        Self { store, bus, mrn_system }
    }

    /// The patient's id and MRN.
    async fn patient(&self, subject: &SubjectRef) -> Result<(String, String), IngestError> {
        let id = match subject {
            SubjectRef::Reference(r) => facts::patient_id_of_reference(r)
                .filter(|id| ids::is_fhir_id(id))
                .ok_or_else(|| IngestError::UnknownPatient("subject.reference is not a Patient reference".into()))?
                .to_owned(),
            SubjectRef::Identifier(mrn) => {
                if !facts::is_key_safe(&mrn.value) {
                    return Err(IngestError::UnknownPatient("the MRN is not a usable identifier".into()));
                }
                patient_for_mrn(&self.store, &mrn.value)
                    .await?
                    .ok_or_else(|| IngestError::UnknownPatient("no patient has this MRN".into()))?
            }
        };
        let (patient, _): (Value, String) = get_json(&self.store, &keys::patient(&id))
            .await?
            .ok_or_else(|| IngestError::UnknownPatient(format!("Patient/{id} does not exist")))?;
        let mrn = facts::patient(&patient, self.mrn_system.as_deref())
            .map(|f| f.mrn.value)
            .unwrap_or_default();
        Ok((id, mrn))
    }
}

impl<S: StateStore, P: Publisher> Function for IngestLab<S, P> {
    fn name(&self) -> &'static str {
        "ingest-lab"
    }

    async fn call(&self, event: Event) -> Result<Output, Failure> {
        let payload = &event.payload;
        if payload.starts_with(b"MSH|") {
            return Err(IngestError::Hl7v2.into());
        }
        let mut resource: Value =
            serde_json::from_slice(payload).map_err(|e| IngestError::NotJson(e.line(), e.column()))?;
        let resource_type = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if resource_type != "Observation" {
            return Err(IngestError::ResourceType(resource_type).into());
        }
        validate_resource(&resource).map_err(IngestError::Invalid)?;
        let obs = facts::observation(&resource, self.mrn_system.as_deref()).map_err(IngestError::Refused)?;
        let normalised =
            units::normalise(&obs.loinc, obs.quantity.value, &obs.quantity.unit).map_err(IngestError::Unit)?;
        let (patient_id, mrn) = self.patient(&obs.subject).await?;

        let effective = obs.effective.or(obs.issued);
        // Scoped to the patient: two laboratories' (or two patients') results that happen to
        // share an identifier or an Observation id never land on each other.
        let result_id = match (&obs.identifier, &obs.id) {
            (Some(identifier), _) => ids::derived("result", &["identifier", &patient_id, identifier]),
            (None, Some(id)) => ids::derived("result", &["id", &patient_id, id]),
            (None, None) => {
                let when = effective.map(|t| t.to_rfc3339()).unwrap_or_default();
                ids::derived(
                    "result",
                    &[
                        "content",
                        &patient_id,
                        &obs.loinc,
                        &when,
                        &obs.quantity.value.to_string(),
                        &obs.quantity.unit,
                    ],
                )
            }
        };
        resource["id"] = Value::String(result_id.clone());
        let resulted = LabResulted {
            result_id: result_id.clone(),
            patient_id: patient_id.clone(),
            mrn,
            loinc: obs.loinc.clone(),
            analyte: normalised.analyte.map(str::to_owned),
            value: normalised.value,
            unit: normalised.unit.clone(),
            status: obs.status.clone(),
            effective,
        };
        let record = LabResult {
            result: resulted.clone(),
            reported_value: obs.quantity.value,
            reported_unit: obs.quantity.unit.clone(),
            received_at: event.context.received_at,
            resource,
        };
        // Stored once: a redelivery finds the same record and does not write again.
        let existing: Option<(LabResult, String)> = get_json(&self.store, &keys::result(&result_id)).await?;
        let unchanged = existing
            .as_ref()
            .is_some_and(|(r, _)| r.result == record.result && r.resource == record.resource);
        if !unchanged {
            put_json(&self.store, &keys::result(&result_id), &record, None).await?;
        }
        let entry = HistoryEntry {
            result_id: result_id.clone(),
            loinc: resulted.loinc.clone(),
            value: resulted.value,
            unit: resulted.unit.clone(),
            effective,
        };
        update_json::<ResultHistory, _, _>(&self.store, &keys::results_of(&patient_id), 20, |h| {
            match h.results.iter_mut().find(|e| e.result_id == entry.result_id) {
                Some(e) if *e == entry => false,
                Some(e) => {
                    *e = entry.clone();
                    true
                }
                None => {
                    h.results.push(entry.clone());
                    h.results.sort_by_key(|e| e.effective);
                    true
                }
            }
        })
        .await?;
        let payload = serde_json::to_vec(&resulted).map_err(|e| PortError::Corrupt(e.to_string()))?;
        self.bus
            .publish(lanes::LAB_RESULTED, &payload)
            .await
            .map_err(IngestError::Port)?;
        tracing::info!(%result_id, %patient_id, loinc = %resulted.loinc, duplicate = unchanged, "lab result stored");
        Ok(Output::ok(json!({"result_id": result_id, "patient_id": patient_id})))
    }

    async fn ready(&self) -> Result<(), String> {
        ready(&self.store, &self.bus).await
    }
}
