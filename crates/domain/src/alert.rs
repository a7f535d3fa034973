//! Alerts, what a rule finds, and the audit trail of what happened to each alert. Kept together
//! so that rules, records and events all import them from one place.
//!
//! An alert is kept in its patient's record and shown as a FHIR R4 `DetectedIssue`
//! ([`detected_issue`]): `patient`, `implicated` (the Observations), `code` (the rule),
//! `severity`, `detail` (the message), `evidence` (the figures), `mitigation` (the
//! acknowledgement) and the lifecycle status as an extension (DetectedIssue's own `status` is
//! the status of the finding, not of the work on it).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aki::Assessment;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Critical,
    Warning,
}

impl Severity {
    /// Higher is more severe.
    pub fn rank(self) -> u8 {
        match self {
            Severity::Critical => 1,
            Severity::Warning => 0,
        }
    }
}

/// What a rule found; the alert decision turns it into an [`Alert`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable rule name, e.g. `critical-high:potassium`.
    pub rule: String,
    pub severity: Severity,
    /// A sentence for the clinician (no patient identifiers in it).
    pub message: String,
    /// The limit the value met, in the canonical unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertStatus {
    /// Raised, nobody has taken it on yet.
    Active,
    Acknowledged,
    /// Unacknowledged past its review window.
    Escalated,
    /// A later result cleared the rule.
    Resolved,
    /// Its evidence is gone: retracted or corrected results, or re-evaluated with results that
    /// arrived late (or renal replacement therapy recorded, for AKI).
    Withdrawn,
}

impl AlertStatus {
    pub const ALL: [AlertStatus; 5] = [
        AlertStatus::Active,
        AlertStatus::Acknowledged,
        AlertStatus::Escalated,
        AlertStatus::Resolved,
        AlertStatus::Withdrawn,
    ];

    /// Still someone's concern: active, acknowledged or escalated.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            AlertStatus::Active | AlertStatus::Acknowledged | AlertStatus::Escalated
        )
    }

    /// Nobody has taken it on yet: active or escalated.
    pub fn needs_acknowledgement(self) -> bool {
        matches!(self, AlertStatus::Active | AlertStatus::Escalated)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Active => "active",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Escalated => "escalated",
            AlertStatus::Resolved => "resolved",
            AlertStatus::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// The figures an alert rests on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// A critical limit: the limit the value met, in the canonical unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// AKI: the algorithm's assessment of the headline result (C1, RV1, RV2, ratio, D, the
    /// upper reference limit, renal replacement therapy and what was assumed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aki: Option<Assessment>,
    /// AKI: the potassium the RCPath telephone rule looked at (mmol/L), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub potassium: Option<f64>,
}

/// Why an alert closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Closure {
    pub at: DateTime<Utc>,
    /// A sentence (no patient data).
    pub reason: String,
    /// The result that cleared the rule, for a resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_id: Option<String>,
}

/// An alert, kept in its patient's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Derived from (patient, rule, the result that first raised it): re-evaluating never makes
    /// a second one.
    pub id: String,
    /// `critical-high:<analyte>`, `critical-low:<analyte>` or `aki`.
    pub rule: String,
    pub severity: Severity,
    /// AKI: 0 for "possible AKI, no baseline", else the warning stage 1–3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<u8>,
    pub status: AlertStatus,
    pub message: String,
    /// The result that first raised it.
    pub result_id: String,
    /// Every result behind it (the implicated Observations), oldest first.
    #[serde(default)]
    pub results: Vec<String>,
    /// The headline result's facts (the most severe finding, the latest of equals).
    pub loinc: String,
    #[serde(default)]
    pub analyte: Option<String>,
    pub value: f64,
    pub unit: String,
    #[serde(default)]
    pub evidence: Evidence,
    /// RCPath: to be telephoned (critical limits always; AKI stage 2/3, or 1 with high potassium).
    #[serde(default)]
    pub telephone: bool,
    pub raised_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// When an unacknowledged alert is escalated (none: it never is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_by: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<DateTime<Utc>>,
    /// Who acknowledged it, when, and their note (free text: shown on the board, never logged
    /// and never in an event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Acknowledgement>,
    /// Why it was resolved or withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closure>,
}

impl Alert {
    /// How serious, for "a higher stage upgrades it": the stage, then the severity.
    pub fn level(&self) -> (u8, u8) {
        (self.stage.unwrap_or(0), self.severity.rank())
    }

    /// The results behind it (an alert from before `results` was kept names only its first).
    pub fn implicated(&self) -> Vec<&str> {
        if self.results.is_empty() {
            vec![self.result_id.as_str()]
        } else {
            self.results.iter().map(String::as_str).collect()
        }
    }
}

/// Somebody saw the alert and took it on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    Raised,
    /// Another result joined it, or its figures changed (re-evaluated with more results).
    Updated,
    /// A higher stage or severity: shown and published again, and back to active.
    Upgraded,
    Acknowledged,
    Escalated,
    Resolved,
    Withdrawn,
    /// Resolved or withdrawn, and back: the result that closed it was itself retracted.
    Reopened,
}

/// One entry of a patient's alert audit trail. Kept in the record (bounded: [`crate::record`]),
/// and each one is also an event in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub alert_id: String,
    pub action: AuditAction,
    /// A person (acknowledgement), or `evaluate-alert` / `escalation`.
    pub by: String,
    /// The alert after the change.
    pub status: AlertStatus,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<u8>,
    /// The result that caused it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_id: Option<String>,
    /// What changed, in words (from the rules; the acknowledgement's note is on the alert).
    pub detail: String,
}

/// The alert as a FHIR R4 `DetectedIssue`.
pub fn detected_issue(patient_id: &str, mrn: Option<&str>, a: &Alert) -> Value {
    let severity = match a.severity {
        Severity::Critical => "high",
        Severity::Warning => "moderate",
    };
    let mut evidence = vec![
        json!({"detail": a.implicated().iter().map(|r| json!({"reference": format!("Observation/{r}")})).collect::<Vec<_>>()}),
    ];
    if let Some(limit) = a.evidence.limit {
        evidence.push(json!({"code": [{"text": format!("critical limit {limit} {}", a.unit)}]}));
    }
    if let Some(aki) = &a.evidence.aki {
        let mut parts = vec![format!("C1 {} umol/L", aki.c1)];
        if let Some((rv1, _)) = &aki.rv1 {
            parts.push(format!("RV1 {rv1}"));
        }
        if let Some(rv2) = aki.rv2 {
            parts.push(format!("RV2 {rv2}"));
        }
        if let Some(ratio) = aki.ratio {
            parts.push(format!("ratio {ratio:.2}"));
        }
        if let Some(d) = aki.d48 {
            parts.push(format!("D48 {d}"));
        }
        parts.push(format!("rule {}", aki.rule));
        parts.extend(aki.notes.iter().cloned());
        evidence.push(json!({"code": [{"text": parts.join("; ")}]}));
    }
    let mut issue = json!({
        "resourceType": "DetectedIssue",
        "id": a.id,
        "status": "final",
        "code": {"coding": [{"system": "https://wardwatch.example/fhir/CodeSystem/alert-rule", "code": a.rule}], "text": a.rule},
        "severity": severity,
        "patient": {"reference": format!("Patient/{patient_id}")},
        "identifiedDateTime": a.raised_at.to_rfc3339(),
        "implicated": a.implicated().iter().map(|r| json!({"reference": format!("Observation/{r}")})).collect::<Vec<_>>(),
        "detail": a.message,
        "evidence": evidence,
        "extension": [{"url": "https://wardwatch.example/fhir/StructureDefinition/alert-status", "valueCode": a.status.as_str()}],
    });
    if let Some(mrn) = mrn {
        issue["patient"]["identifier"] = json!({"value": mrn});
    }
    if let (Some(stage), Some(extensions)) = (a.stage, issue["extension"].as_array_mut()) {
        extensions.push(
            json!({"url": "https://wardwatch.example/fhir/StructureDefinition/aki-stage", "valueInteger": stage}),
        );
    }
    if let Some(k) = &a.acknowledged {
        issue["mitigation"] =
            json!([{"action": {"text": "acknowledged"}, "date": k.at.to_rfc3339(), "author": {"display": k.by}}]);
    }
    issue
}
