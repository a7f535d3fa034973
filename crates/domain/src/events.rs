//! Messages between functions and the records they keep. Field names are the wire format.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::rules::Severity;

/// Published on `admissions` by admit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdmissionEvent {
    /// `admitted`, `transferred` (ward or bed changed) or `discharged`.
    pub kind: String,
    pub patient_id: String,
    pub encounter_id: String,
    pub mrn: String,
    pub ward: Option<String>,
    pub bed: Option<String>,
    pub at: DateTime<Utc>,
}

/// Published on `lab-resulted` by ingest-lab, consumed by evaluate-alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabResulted {
    pub result_id: String,
    pub patient_id: String,
    pub mrn: String,
    pub loinc: String,
    /// Known analyte name (`potassium`), when Wardwatch knows the LOINC code.
    pub analyte: Option<String>,
    /// In the canonical unit for a known analyte, else as reported.
    pub value: f64,
    pub unit: String,
    /// The Observation's status (`final`, `amended`, …).
    pub status: String,
    pub effective: Option<DateTime<Utc>>,
}

/// A stored lab result (`result:<id>`): the normalised facts and the original resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabResult {
    #[serde(flatten)]
    pub result: LabResulted,
    pub reported_value: f64,
    pub reported_unit: String,
    pub received_at: DateTime<Utc>,
    /// The Observation as received (with the id Wardwatch gave it).
    pub resource: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertStatus {
    Active,
    Acknowledged,
    Escalated,
    Resolved,
}

/// An alert (`alert:<id>`), also the payload published on `alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub patient_id: String,
    pub mrn: String,
    pub rule: String,
    pub severity: Severity,
    pub status: AlertStatus,
    pub message: String,
    pub result_id: String,
    pub loinc: String,
    pub value: f64,
    pub unit: String,
    pub raised_at: DateTime<Utc>,
    /// Whether the `alerts` lane has taken this alert (publish happens after the store).
    #[serde(default)]
    pub published: bool,
}

/// One current inpatient, as the ward board lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CensusEntry {
    pub patient_id: String,
    pub encounter_id: String,
    pub mrn: String,
    pub name: Option<String>,
    pub ward: Option<String>,
    pub bed: Option<String>,
    pub admitted_at: Option<DateTime<Utc>>,
}

/// The current inpatients (`census`), keyed by patient id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Census {
    pub patients: BTreeMap<String, CensusEntry>,
}

/// Ids of the alerts that are not resolved (`alerts-open`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenAlerts {
    pub ids: Vec<String>,
}

/// A patient's results in time order (`results:<patient-id>`), for rules that need history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResultHistory {
    pub results: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub result_id: String,
    pub loinc: String,
    pub value: f64,
    pub unit: String,
    pub effective: Option<DateTime<Utc>>,
}

/// A delivery that could never be processed, recorded on `<lane>-rejected` with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub lane: String,
    pub received_at: DateTime<Utc>,
    pub request_id: String,
    /// A FHIR OperationOutcome saying why.
    pub outcome: serde_json::Value,
    /// The payload as received: UTF-8 text when it is, else base64 in `payload_base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
}

/// State keys, in one place. None contains `||` (Dapr's key separator).
pub mod keys {
    pub const CENSUS: &str = "census";
    pub const OPEN_ALERTS: &str = "alerts-open";
    pub fn patient(id: &str) -> String {
        format!("patient-{id}")
    }
    pub fn encounter(id: &str) -> String {
        format!("encounter-{id}")
    }
    pub fn mrn(value: &str) -> String {
        format!("mrn-{value}")
    }
    pub fn result(id: &str) -> String {
        format!("result-{id}")
    }
    pub fn results_of(patient_id: &str) -> String {
        format!("results-{patient_id}")
    }
    pub fn alert(id: &str) -> String {
        format!("alert-{id}")
    }
    /// What admit last announced on `admissions` for an encounter.
    pub fn announced(encounter_id: &str) -> String {
        format!("announced-{encounter_id}")
    }
}
