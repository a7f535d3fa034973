//! ingest-lab: laboratory results from the `lab-feed` queue — HL7 v2 ORU^R01 or FHIR (an
//! Observation, a DiagnosticReport, a Bundle of any type, NDJSON) — normalised to canonical
//! units by the units table and added to their patients' records once each, then announced
//! (`result-stored`, on `lab-resulted`).
//!
//! read (`domain::lab`) → validate every Observation → resolve each patient → per patient: load
//! the record, decide (`domain::decide::result`) for each of its results, write it back with its
//! ETag → the outbox drains the event log and `lab-resulted`.
//!
//! - **All or nothing per payload, as far as refusals go**: every message of a batch and every
//!   Observation of a Bundle is read and checked before anything is stored; one that can never
//!   be stored refuses the payload, whole, to the rejected lane (to be fixed and replayed).
//! - **Stored once**: a result's id is derived from the laboratory's identifier for it — HL7 v2:
//!   filler order number, OBX-3, OBX-4, unique on their own; FHIR: `identifier`, else the
//!   Observation id, else its content, scoped to the subject as given —; a redelivery lands on
//!   itself and changes nothing, and so does the same content re-sent under another MSH-10.
//! - **The laboratory's order, not arrival order**: versions of one result are ordered by status
//!   and issue time; an older version processed late changes nothing; a correction replaces, a
//!   cancellation retracts.
//! - **Never guessed**: a result in a unit, or of an analyte, the units table does not know is
//!   stored as received and marked not evaluable, with the reason; so is a result that is not a
//!   number.
//! - **Results before their patient** are kept in a record of their own, named by the identifier
//!   they carry (the id a Patient with that identity will get), and evaluated like any other.

pub mod search;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono_tz::Tz;
use serde_json::{Value, json};
use wardwatch_domain::decide::{digest, result};
use wardwatch_domain::facts::{self, ObservationFacts, ResultValue, SubjectRef};
use wardwatch_domain::identity::{Identifier, IdentityRules};
use wardwatch_domain::lab::{self, MESSAGE_ID_EXTENSION, RESULT_IDENTIFIER_SYSTEM, er7, oru};
use wardwatch_domain::ports::{EventLog, PortError, Publisher, StateStore, ready};
use wardwatch_domain::record::{PatientRecord, ResultEntry};
use wardwatch_domain::units::UnitTable;
use wardwatch_domain::{Issue, ids, keys};
use wardwatch_records::{Claim, Records, Step};
use wardwatch_runtime::{Event, Failure, Function, Output};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The payload cannot be read as HL7 v2 or FHIR, or says something that can never be stored.
    #[error("{0}")]
    Unreadable(String),
    #[error("{0}")]
    Invalid(String, Vec<Issue>),
    #[error("{}", .0.message)]
    Refused(Issue),
    #[error(transparent)]
    Port(#[from] PortError),
}

impl From<IngestError> for Failure {
    fn from(e: IngestError) -> Self {
        let message = e.to_string();
        match e {
            IngestError::Unreadable(_) => Failure::invalid(message),
            IngestError::Invalid(_, issues) => Failure::invalid(message).with_issues(issues),
            IngestError::Refused(issue) => Failure::invalid("the result cannot be stored")
                .with_issues(vec![issue])
                .with_status(422),
            IngestError::Port(p) => p.into(),
        }
    }
}

/// How results are read: patient identity, the units table, the hospital's time zone.
#[derive(Debug, Clone)]
pub struct LabSettings {
    pub identity: IdentityRules,
    pub units: Arc<UnitTable>,
    /// Where HL7 v2 times without an offset were written.
    pub zone: Tz,
}

impl LabSettings {
    /// The settings a process's configuration gives (`MRN_SYSTEMS`, `V2_IDENTIFIER_SYSTEMS`,
    /// `UNITS_FILE`, `HOSPITAL_TZ`).
    pub fn from_config(config: &wardwatch_runtime::Config) -> Self {
        Self {
            identity: config.identity.clone(),
            units: config.units.clone(),
            zone: config.zone,
        }
    }
}

impl Default for LabSettings {
    fn default() -> Self {
        Self {
            identity: IdentityRules::default(),
            units: Arc::new(UnitTable::default()),
            zone: chrono_tz::Europe::London,
        }
    }
}

pub struct IngestLab<S, L, P> {
    records: Records<S, L, P>,
    settings: LabSettings,
}

/// Who a result is about.
#[derive(Debug, Clone)]
struct Subject {
    patient_id: String,
    /// The identifier it named, when it named one.
    identifier: Option<Identifier>,
    /// Whether the identifier index already pointed at the patient.
    indexed: bool,
    /// The subject as given, to scope the result's id.
    scope: String,
}

/// One result ready to store.
struct Prepared {
    entry: ResultEntry,
    resource: Vec<u8>,
}

/// A result's value as it will be stored: in the canonical unit where the units table allows,
/// as reported beside it, and why not where it does not.
struct Reading {
    value: Option<f64>,
    unit: String,
    comparator: Option<String>,
    reported_value: Option<f64>,
    reported_unit: String,
    text: Option<String>,
    not_evaluable: Option<String>,
    analyte: Option<String>,
    loinc: Option<String>,
}

fn reading(units: &UnitTable, obs: &ObservationFacts) -> Reading {
    let codes = (obs.loinc.as_deref(), obs.local_code.as_deref());
    match &obs.value {
        ResultValue::Quantity(q) => {
            let n = units.normalise(codes.0, codes.1, q.value, q.unit.as_deref());
            Reading {
                value: n.value,
                unit: n.unit.or_else(|| q.unit.clone()).unwrap_or_default(),
                comparator: q.comparator.clone(),
                reported_value: Some(q.value),
                reported_unit: q.unit.clone().unwrap_or_default(),
                text: None,
                not_evaluable: n.not_evaluable,
                analyte: n.analyte,
                loinc: obs.loinc.clone().or(n.loinc),
            }
        }
        other => {
            let a = units.analyte(codes.0, codes.1);
            let (text, why) = match other {
                ResultValue::Text(t) => (Some(t.clone()), "not a number: shown, never evaluated"),
                _ => (None, "no value"),
            };
            Reading {
                value: None,
                unit: String::new(),
                comparator: None,
                reported_value: None,
                reported_unit: String::new(),
                text,
                not_evaluable: Some(why.to_owned()),
                analyte: a.map(|a| a.name.clone()),
                loinc: obs.loinc.clone().or_else(|| a.map(|a| a.loinc[0].clone())),
            }
        }
    }
}

/// What one payload came to.
#[derive(Debug, Default)]
struct Tally {
    stored: usize,
    unchanged: usize,
    not_evaluable: usize,
}

impl<S: StateStore, L: EventLog, P: Publisher> IngestLab<S, L, P> {
    pub fn new(records: Records<S, L, P>, identity: IdentityRules) -> Self {
        Self::with_settings(
            records,
            LabSettings {
                identity,
                ..LabSettings::default()
            },
        )
    }

    pub fn with_settings(records: Records<S, L, P>, settings: LabSettings) -> Self {
        Self { records, settings }
    }

    /// The patient's record id: a `Patient/<id>` reference names it; an identifier leads to it
    /// through the index, or, for a patient not seen yet, to the id a Patient with that identity
    /// will get.
    async fn subject(&self, subject: &SubjectRef, at: &str) -> Result<Subject, IngestError> {
        match subject {
            SubjectRef::Reference(r) => {
                let id = facts::patient_id_of_reference(r)
                    .filter(|id| ids::is_fhir_id(id))
                    .ok_or_else(|| {
                        IngestError::Refused(Issue::new(
                            format!("{at}/subject/reference"),
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
                    .settings
                    .identity
                    .subject(raw)
                    .map_err(|m| IngestError::Refused(Issue::new(format!("{at}/subject/identifier"), m)))?;
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

    /// The Observations in a payload, each with the HL7 v2 message it came in, and the resources
    /// of other types skipped (by type).
    #[allow(clippy::type_complexity)]
    fn read(
        &self,
        payload: &[u8],
        content_type: Option<&str>,
    ) -> Result<(Vec<(Value, Option<String>)>, BTreeMap<String, usize>), IngestError> {
        let er7 = match content_type.map(|c| c.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()) {
            Some(c) if c == "x-application/hl7-v2+er7" || c == "application/hl7-v2" => true,
            _ => er7::looks_like_er7(payload),
        };
        if er7 {
            let settings = oru::Settings {
                identity: &self.settings.identity,
                zone: self.settings.zone,
            };
            let messages = oru::read(payload, &settings).map_err(IngestError::Unreadable)?;
            let observations = messages
                .into_iter()
                .flat_map(|m| {
                    let id = m.control_id;
                    m.observations.into_iter().map(move |o| (o, Some(id.clone())))
                })
                .collect();
            return Ok((observations, BTreeMap::new()));
        }
        if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(IngestError::Unreadable(
                "not an HL7 v2 message (no MSH segment first) nor FHIR JSON: lab-feed takes HL7 v2 ORU^R01 \
                 or FHIR Observations (alone, in a Bundle or a DiagnosticReport, or as NDJSON)"
                    .into(),
            ));
        }
        let feed = lab::fhir::read(payload, &self.settings.identity).map_err(IngestError::Unreadable)?;
        if feed.observations.is_empty() {
            let skipped: Vec<String> = feed.skipped.iter().map(|(t, n)| format!("{n} {t}")).collect();
            return Err(IngestError::Unreadable(if skipped.is_empty() {
                "the message holds no Observation: lab-feed takes HL7 v2 ORU^R01, or FHIR Observations \
                 (alone, in a Bundle or a DiagnosticReport, or as NDJSON)"
                    .into()
            } else {
                format!("the message holds no Observation (only {})", skipped.join(", "))
            }));
        }
        Ok((feed.observations.into_iter().map(|o| (o, None)).collect(), feed.skipped))
    }

    /// Check, normalise and identify one Observation.
    fn prepare(
        &self,
        mut resource: Value,
        obs: &ObservationFacts,
        message_id: Option<String>,
        subject: &Subject,
    ) -> Result<Prepared, IngestError> {
        let effective = obs.effective.or(obs.issued);
        let Reading {
            value,
            unit,
            comparator,
            reported_value,
            reported_unit,
            text,
            not_evaluable,
            analyte,
            loinc,
        } = reading(&self.settings.units, obs);
        let code = loinc.clone().or_else(|| obs.local.clone()).unwrap_or_default();
        // Scoped to the subject: two patients' results that share a laboratory identifier or an
        // Observation id never land on each other.
        let result_id = match (&obs.identifier, &obs.id) {
            // The laboratory's accession (filler order number, OBX-3, OBX-4) is unique on its
            // own; a correction may name the patient by another of their identifiers.
            (Some(identifier), _) if identifier.starts_with(&format!("{RESULT_IDENTIFIER_SYSTEM}|")) => {
                ids::derived("result", &["v2", identifier])
            }
            (Some(identifier), _) => ids::derived("result", &["identifier", &subject.scope, identifier]),
            (None, Some(id)) => ids::derived("result", &["id", &subject.scope, id]),
            (None, None) => {
                let when = effective.map(|t| t.to_rfc3339()).unwrap_or_default();
                let value = reported_value
                    .map(|v| v.to_string())
                    .or_else(|| text.clone())
                    .unwrap_or_default();
                ids::derived(
                    "result",
                    &["content", &subject.scope, &code, &when, &value, &reported_unit],
                )
            }
        };
        resource["id"] = Value::String(result_id.clone());
        // The content, not the envelope: the same result re-sent in another message (another
        // MSH-10, another meta) is the same version.
        let d = {
            let mut content = resource.clone();
            if let Some(o) = content.as_object_mut() {
                o.remove("meta");
                if let Some(Value::Array(ext)) = o.get_mut("extension") {
                    ext.retain(|e| e.get("url").and_then(Value::as_str) != Some(MESSAGE_ID_EXTENSION));
                }
            }
            digest(&content.to_string())
        };
        let stored = serde_json::to_vec(&resource).map_err(|e| IngestError::Port(PortError::Corrupt(e.to_string())))?;
        Ok(Prepared {
            entry: ResultEntry {
                result_id: result_id.clone(),
                loinc: loinc.unwrap_or_default(),
                local_code: obs.local.clone(),
                analyte,
                value,
                unit,
                comparator,
                reported_value,
                reported_unit,
                text,
                not_evaluable,
                status: obs.status.clone(),
                effective: obs.effective,
                issued: obs.issued,
                message_id,
                resource_key: keys::result_resource(&result_id, &d),
                digest: d,
            },
            resource: stored,
        })
    }

    /// Add one patient's results to their record (following joins), in one write.
    async fn store(
        &self,
        subject: &Subject,
        results: &[Prepared],
        now: chrono::DateTime<chrono::Utc>,
        tally: &mut Tally,
    ) -> Result<String, IngestError> {
        let mut patient_id = subject.patient_id.clone();
        // A record joined into another sends its results on (at most a few hops).
        let mut stored = None;
        for _ in 0..4 {
            let outcome = self
                .records
                .update(&patient_id, |record| {
                    if let Some(into) = record.as_ref().and_then(|r| r.merged_into.clone()) {
                        return Ok::<_, IngestError>(Step::Keep(Err(into)));
                    }
                    let mut current: Option<PatientRecord> = record;
                    let mut resources = Vec::new();
                    let mut changed = 0usize;
                    for p in results {
                        let d = result::decide(
                            current.clone(),
                            &patient_id,
                            p.entry.clone(),
                            subject.identifier.clone(),
                            now,
                        );
                        if d.changed {
                            changed += 1;
                            resources.push((p.entry.resource_key.clone(), p.resource.clone()));
                            current = Some(d.record);
                        }
                    }
                    Ok(match current {
                        Some(record) if changed > 0 => Step::Write {
                            record,
                            resources,
                            out: Ok(changed),
                        },
                        _ => Step::Keep(Ok(0)),
                    })
                })
                .await?;
            match outcome {
                Err(into) => patient_id = into,
                Ok(changed) => {
                    stored = Some(changed);
                    break;
                }
            }
        }
        let Some(changed) = stored else {
            return Err(IngestError::Port(PortError::Corrupt(
                "patient records are joined in a loop".into(),
            )));
        };
        tally.stored += changed;
        tally.unchanged += results.len() - changed;
        // A new record for a patient not seen yet: its identifier now points at it — unless an
        // admission (or another result) claimed it meanwhile: then this record joins that one.
        if let (Some(identifier), false) = (&subject.identifier, subject.indexed)
            && let Claim::HeldBy(holder) = self.records.claim(identifier, &patient_id).await?
            && holder != patient_id
        {
            self.records.join(&patient_id, identifier, &holder, now).await?;
            patient_id = holder;
        }
        Ok(patient_id)
    }
}

impl<S: StateStore, L: EventLog, P: Publisher> Function for IngestLab<S, L, P> {
    fn name(&self) -> &'static str {
        "ingest-lab"
    }

    async fn call(&self, event: Event) -> Result<Output, Failure> {
        let (observations, skipped) = self.read(&event.payload, event.context.content_type.as_deref())?;
        let many = observations.len() > 1;
        // Check everything before storing anything.
        for (i, (resource, _)) in observations.iter().enumerate() {
            wardwatch_fhir::validate_resource(resource).map_err(|issues| {
                let at = if many {
                    format!("Observation {} of the message: ", i + 1)
                } else {
                    String::new()
                };
                IngestError::Invalid(format!("{at}the Observation is not valid FHIR R4"), issues)
            })?;
        }
        let mut subjects: HashMap<String, Subject> = HashMap::new();
        // Per patient, in payload order.
        let mut groups: BTreeMap<String, (usize, Vec<Prepared>)> = BTreeMap::new();
        let mut tally = Tally::default();
        for (i, (resource, message_id)) in observations.into_iter().enumerate() {
            let at = if many {
                format!("Observation {}: ", i + 1)
            } else {
                String::new()
            };
            let obs = facts::observation(&resource)
                .map_err(|e| IngestError::Refused(Issue::new(format!("{at}{}", e.location), e.message)))?;
            let key = format!("{:?}", obs.subject);
            let subject = match subjects.get(&key) {
                Some(s) => s.clone(),
                None => {
                    let s = self.subject(&obs.subject, &at).await?;
                    subjects.insert(key.clone(), s.clone());
                    s
                }
            };
            let prepared = self.prepare(resource, &obs, message_id, &subject)?;
            if prepared.entry.not_evaluable.is_some() {
                tally.not_evaluable += 1;
            }
            let n = groups.len();
            groups.entry(key).or_insert((n, Vec::new())).1.push(prepared);
        }
        let now = event.context.received_at;
        let mut ordered: Vec<(String, (usize, Vec<Prepared>))> = groups.into_iter().collect();
        ordered.sort_by_key(|(_, (n, _))| *n);
        let mut patients = Vec::new();
        let mut result_ids = Vec::new();
        for (key, (_, results)) in &ordered {
            let subject = &subjects[key];
            let patient_id = self.store(subject, results, now, &mut tally).await?;
            result_ids.extend(results.iter().map(|p| p.entry.result_id.clone()));
            patients.push(patient_id);
        }
        tracing::info!(
            results = result_ids.len(),
            stored = tally.stored,
            unchanged = tally.unchanged,
            not_evaluable = tally.not_evaluable,
            patients = patients.len(),
            "lab results processed"
        );
        let mut out = json!({
            "results": result_ids.len(),
            "stored": tally.stored,
            "unchanged": tally.unchanged,
            "not_evaluable": tally.not_evaluable,
            "result_ids": result_ids,
            "patient_ids": patients,
            "skipped": skipped,
        });
        // One result (the common FHIR case): say which, as before.
        if let ([result_id], [patient_id]) = (
            &out["result_ids"].as_array().cloned().unwrap_or_default()[..],
            &patients[..],
        ) {
            out["result_id"] = result_id.clone();
            out["patient_id"] = json!(patient_id);
        }
        Ok(Output::ok(out))
    }

    async fn ready(&self) -> Result<(), String> {
        ready(&self.records.store, &self.records.log, &self.records.bus).await
    }

    fn prepare(&self) {
        wardwatch_fhir::prepare(&["Observation"]);
    }
}
