//! ingest-lab: laboratory results from the `lab-feed` queue, normalised to canonical units and
//! added to their patient's record once, then announced (`result-stored`, on `lab-resulted`).
//!
//! parse → resolve the patient → load the record, decide (`domain::decide::result`), write it
//! back with its ETag → the outbox drains the event log and `lab-resulted`.
//!
//! - **Stored once**: a result's id is derived from its subject as given and the laboratory's
//!   identifier for it (else the Observation id, else its content); a redelivery lands on itself
//!   and changes nothing.
//! - **The laboratory's order, not arrival order**: versions of one result are ordered by status
//!   and issue time; an older version processed late changes nothing.
//! - **Results before their patient** are kept in a record of their own, named by the identifier
//!   they carry (the id a Patient with that identity will get), and evaluated like any other.

use serde_json::{Value, json};
use wardwatch_domain::decide::{digest, result};
use wardwatch_domain::facts::{self, SubjectRef};
use wardwatch_domain::identity::{Identifier, IdentityRules};
use wardwatch_domain::ports::{EventLog, PortError, Publisher, StateStore, ready};
use wardwatch_domain::record::ResultEntry;
use wardwatch_domain::{Issue, ids, keys, units};
use wardwatch_records::{Claim, Records, Step};
use wardwatch_runtime::{Event, Failure, Function, Output};

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
                .with_issues(vec![Issue::new("/valueQuantity", "unit not accepted")])
                .with_status(422),
            IngestError::Port(p) => p.into(),
        }
    }
}

pub struct IngestLab<S, L, P> {
    records: Records<S, L, P>,
    identity: IdentityRules,
}

/// Who a result is about.
struct Subject {
    patient_id: String,
    /// The identifier it named, when it named one.
    identifier: Option<Identifier>,
    /// Whether the identifier index already pointed at the patient.
    indexed: bool,
    /// The subject as given, to scope the result's id.
    scope: String,
}

impl<S: StateStore, L: EventLog, P: Publisher> IngestLab<S, L, P> {
    pub fn new(records: Records<S, L, P>, identity: IdentityRules) -> Self {
        Self { records, identity }
    }

    /// The patient's record id: a `Patient/<id>` reference names it; an identifier leads to it
    /// through the index, or, for a patient not seen yet, to the id a Patient with that identity
    /// will get.
    async fn subject(&self, subject: &SubjectRef) -> Result<Subject, IngestError> {
        match subject {
            SubjectRef::Reference(r) => {
                let id = facts::patient_id_of_reference(r)
                    .filter(|id| ids::is_fhir_id(id))
                    .ok_or_else(|| {
                        IngestError::Refused(Issue::new(
                            "/subject/reference",
                            "subject.reference is not a Patient reference (Patient/<id>)",
                        ))
                    })?;
                Ok(Subject {
                    patient_id: id.to_owned(),
                    identifier: None,
                    indexed: true,
                    scope: format!("reference|{id}"),
                })
            }
            SubjectRef::Identifier(raw) => {
                let identifier = self
                    .identity
                    .subject(raw)
                    .map_err(|m| IngestError::Refused(Issue::new("/subject/identifier", m)))?;
                let known = self.records.lookup(&identifier).await?;
                Ok(Subject {
                    indexed: known.is_some(),
                    patient_id: known
                        .unwrap_or_else(|| ids::derived("patient", &[&identifier.system, &identifier.value])),
                    scope: format!("identifier|{}|{}", identifier.system, identifier.value),
                    identifier: Some(identifier),
                })
            }
        }
    }
}

impl<S: StateStore, L: EventLog, P: Publisher> Function for IngestLab<S, L, P> {
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
        wardwatch_fhir::validate_resource(&resource).map_err(IngestError::Invalid)?;
        let obs = facts::observation(&resource).map_err(IngestError::Refused)?;
        let normalised =
            units::normalise(&obs.loinc, obs.quantity.value, &obs.quantity.unit).map_err(IngestError::Unit)?;
        let subject = self.subject(&obs.subject).await?;

        let effective = obs.effective.or(obs.issued);
        // Scoped to the subject: two patients' results that share a laboratory identifier or an
        // Observation id never land on each other.
        let result_id = match (&obs.identifier, &obs.id) {
            (Some(identifier), _) => ids::derived("result", &["identifier", &subject.scope, identifier]),
            (None, Some(id)) => ids::derived("result", &["id", &subject.scope, id]),
            (None, None) => {
                let when = effective.map(|t| t.to_rfc3339()).unwrap_or_default();
                ids::derived(
                    "result",
                    &[
                        "content",
                        &subject.scope,
                        &obs.loinc,
                        &when,
                        &obs.quantity.value.to_string(),
                        &obs.quantity.unit,
                    ],
                )
            }
        };
        resource["id"] = Value::String(result_id.clone());
        let stored = serde_json::to_vec(&resource).map_err(|e| IngestError::Port(PortError::Corrupt(e.to_string())))?;
        let d = digest(&resource.to_string());
        let entry = ResultEntry {
            result_id: result_id.clone(),
            loinc: obs.loinc.clone(),
            analyte: normalised.analyte.map(str::to_owned),
            value: normalised.value,
            unit: normalised.unit.clone(),
            comparator: obs.quantity.comparator.clone(),
            reported_value: obs.quantity.value,
            reported_unit: obs.quantity.unit.clone(),
            status: obs.status.clone(),
            effective: obs.effective,
            issued: obs.issued,
            resource_key: keys::result_resource(&result_id, &d),
            digest: d,
        };
        let now = event.context.received_at;
        let mut patient_id = subject.patient_id.clone();
        // A record joined into another sends its results on (at most a few hops).
        let mut stored_now = false;
        for _ in 0..4 {
            let outcome = self
                .records
                .update(&patient_id, |record| {
                    if let Some(into) = record.as_ref().and_then(|r| r.merged_into.clone()) {
                        return Ok::<_, IngestError>(Step::Keep(Some(into)));
                    }
                    let d = result::decide(record, &patient_id, entry.clone(), subject.identifier.clone(), now);
                    Ok(if d.changed {
                        Step::Write {
                            record: d.record,
                            resources: vec![(entry.resource_key.clone(), stored.clone())],
                            out: None,
                        }
                    } else {
                        Step::Keep(None)
                    })
                })
                .await?;
            match outcome {
                Some(into) => patient_id = into,
                None => {
                    stored_now = true;
                    break;
                }
            }
        }
        if !stored_now {
            return Err(IngestError::Port(PortError::Corrupt("patient records are joined in a loop".into())).into());
        }
        // A new record for a patient not seen yet: its identifier now points at it — unless an
        // admission (or another result) claimed it meanwhile: then this record joins that one.
        if let (Some(identifier), false) = (&subject.identifier, subject.indexed)
            && let Claim::HeldBy(holder) = self.records.claim(identifier, &patient_id).await?
            && holder != patient_id
        {
            self.records.join(&patient_id, identifier, &holder, now).await?;
            patient_id = holder;
        }
        tracing::info!(%result_id, %patient_id, loinc = %entry.loinc, "lab result processed");
        Ok(Output::ok(json!({"result_id": result_id, "patient_id": patient_id})))
    }

    async fn ready(&self) -> Result<(), String> {
        ready(&self.records.store, &self.records.log, &self.records.bus).await
    }

    fn prepare(&self) {
        wardwatch_fhir::prepare(&["Observation"]);
    }
}
