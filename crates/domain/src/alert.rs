//! Alerts and what a rule finds. Kept together so that rules, records and events all import
//! them from one place.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Critical,
    Warning,
}

/// What a rule found; the alert decision turns it into an [`Alert`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable rule name, e.g. `critical-high:potassium`.
    pub rule: String,
    pub severity: Severity,
    /// A sentence for the clinician (no patient identifiers in it).
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertStatus {
    Active,
    Acknowledged,
    Escalated,
    Resolved,
}

impl AlertStatus {
    /// Still needs someone: everything but resolved.
    pub fn is_open(self) -> bool {
        self != AlertStatus::Resolved
    }
}

/// An alert, kept in its patient's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub rule: String,
    pub severity: Severity,
    pub status: AlertStatus,
    pub message: String,
    pub result_id: String,
    pub loinc: String,
    #[serde(default)]
    pub analyte: Option<String>,
    pub value: f64,
    pub unit: String,
    pub raised_at: DateTime<Utc>,
    /// Who acknowledged it, when, and their note (free text: shown on the board, never logged
    /// and never in an event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Acknowledgement>,
}

/// Somebody saw the alert and took it on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
