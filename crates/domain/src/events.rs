//! The ordered event log's one event type, and the record of a rejected delivery.
//!
//! Every function appends to the log; the lanes (`admissions`, `lab-resulted`, `alerts`) carry
//! the same events. An event names what happened and to whom, by id: no names, birth dates,
//! values or free text. Readers that need more read the patient's record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventType {
    Admitted,
    Transferred,
    Discharged,
    /// An admission that should not have been (HL7 v2 A11, an Encounter `cancelled` or
    /// `entered-in-error`): the patient leaves the ward without a discharge.
    AdmissionCancelled,
    /// HL7 v2 A40 / A34: the patient `merged_id` is the same person as `patient_id`, whose record
    /// now holds the merged patient's results, alerts and audit trail (and its current stay when
    /// `patient_id` had none: `encounter_id`, `ward`). `merged_id`'s record is closed.
    PatientMerged,
    ResultStored,
    AlertRaised,
    AlertAcknowledged,
    /// Another result joined an open alert, or its figures changed (also: reopened).
    AlertUpdated,
    /// A higher stage or severity: published again, and active again.
    AlertUpgraded,
    AlertEscalated,
    AlertResolved,
    AlertWithdrawn,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Admitted => "admitted",
            EventType::Transferred => "transferred",
            EventType::Discharged => "discharged",
            EventType::AdmissionCancelled => "admission-cancelled",
            EventType::PatientMerged => "patient-merged",
            EventType::ResultStored => "result-stored",
            EventType::AlertRaised => "alert-raised",
            EventType::AlertAcknowledged => "alert-acknowledged",
            EventType::AlertUpdated => "alert-updated",
            EventType::AlertUpgraded => "alert-upgraded",
            EventType::AlertEscalated => "alert-escalated",
            EventType::AlertResolved => "alert-resolved",
            EventType::AlertWithdrawn => "alert-withdrawn",
        }
    }

    /// The lane that carries this type of event.
    pub fn lane(self) -> &'static str {
        match self {
            EventType::Admitted
            | EventType::Transferred
            | EventType::Discharged
            | EventType::AdmissionCancelled
            | EventType::PatientMerged => crate::lanes::ADMISSIONS,
            EventType::ResultStored => crate::lanes::LAB_RESULTED,
            EventType::AlertRaised
            | EventType::AlertAcknowledged
            | EventType::AlertUpdated
            | EventType::AlertUpgraded
            | EventType::AlertEscalated
            | EventType::AlertResolved
            | EventType::AlertWithdrawn => crate::lanes::ALERTS,
        }
    }
}

/// One event, as the log stores it and the lanes carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WardEvent {
    /// The log id, `<ms>-<seq>` (as Redis Stream ids are): unique, increasing. Empty until the
    /// event is appended.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub at: DateTime<Utc>,
    pub patient_id: String,
    /// The value of the identifier the patient is known by (the hospital number).
    pub mrn: Option<String>,
    pub ward: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyte: Option<String>,
    /// `patient-merged`: the patient merged into `patient_id` (its record is closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_id: Option<String>,
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
    /// Set when only the payload's first bytes are kept: how many bytes it had. Such a record
    /// says why, but cannot be replayed (the sender must send it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_from: Option<usize>,
}
