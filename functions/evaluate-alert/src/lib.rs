//! evaluate-alert: every `lab-resulted` event is checked against the critical limits; each
//! finding becomes one alert (stored once, listed as open, then published on `alerts`).
//!
//! Idempotent: an alert's id is derived from the result and the rule, so a redelivered event
//! finds the alert it raised. An alert is marked `published` only after the `alerts` lane
//! confirmed it, so a crash in between publishes it again rather than never.

use chrono::{DateTime, Utc};
use serde_json::json;
use wardwatch_domain::events::{Alert, AlertStatus, LabResulted, OpenAlerts, keys};
use wardwatch_domain::ports::{
    CREATE_ONLY_ETAG, PortError, Publisher, StateStore, get_json, put_json, ready, update_json,
};
use wardwatch_domain::rules::{CriticalLimits, Finding, critical_limits};
use wardwatch_domain::{ids, lanes};
use wardwatch_runtime::{Event, Failure, Function, Output};

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error("not a lab-resulted event: {0}")]
    Malformed(String),
    #[error(transparent)]
    Port(#[from] PortError),
}

impl From<EvaluateError> for Failure {
    fn from(e: EvaluateError) -> Self {
        match e {
            EvaluateError::Malformed(_) => Failure::invalid(e.to_string()),
            EvaluateError::Port(p) => p.into(),
        }
    }
}

pub struct EvaluateAlert<S, P> {
    store: S,
    bus: P,
    limits: CriticalLimits,
}

impl<S: StateStore, P: Publisher> EvaluateAlert<S, P> {
    pub fn new(store: S, bus: P, limits: CriticalLimits) -> Self {
        Self { store, bus, limits }
    }

    async fn raise(&self, result: &LabResulted, finding: Finding, now: DateTime<Utc>) -> Result<String, EvaluateError> {
        let id = ids::derived("alert", &[&result.result_id, &finding.rule]);
        let key = keys::alert(&id);
        let mut stored: Option<(Alert, String)> = get_json(&self.store, &key).await?;
        if stored.is_none() {
            let alert = Alert {
                id: id.clone(),
                patient_id: result.patient_id.clone(),
                mrn: result.mrn.clone(),
                rule: finding.rule,
                severity: finding.severity,
                status: AlertStatus::Active,
                message: finding.message,
                result_id: result.result_id.clone(),
                loinc: result.loinc.clone(),
                value: result.value,
                unit: result.unit.clone(),
                raised_at: now,
                published: false,
            };
            match put_json(&self.store, &key, &alert, Some(CREATE_ONLY_ETAG)).await {
                Ok(()) | Err(PortError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
            stored = get_json(&self.store, &key).await?;
        }
        let Some((mut alert, etag)) = stored else {
            return Err(PortError::Unavailable("alert vanished after it was written".into()).into());
        };
        update_json::<OpenAlerts, _, _>(&self.store, keys::OPEN_ALERTS, 20, |open| {
            if open.ids.contains(&id) {
                false
            } else {
                open.ids.push(id.clone());
                true
            }
        })
        .await?;
        if !alert.published {
            let payload = serde_json::to_vec(&alert).map_err(|e| PortError::Corrupt(e.to_string()))?;
            self.bus.publish(lanes::ALERTS, &payload).await?;
            alert.published = true;
            match put_json(&self.store, &key, &alert, Some(&etag)).await {
                // Someone else changed it meanwhile (acknowledged it, or published it too).
                Ok(()) | Err(PortError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
            tracing::info!(alert_id = %id, patient_id = %alert.patient_id, rule = %alert.rule, "alert raised");
        }
        Ok(id)
    }
}

impl<S: StateStore, P: Publisher> Function for EvaluateAlert<S, P> {
    fn name(&self) -> &'static str {
        "evaluate-alert"
    }

    async fn call(&self, event: Event) -> Result<Output, Failure> {
        let result: LabResulted = serde_json::from_slice(&event.payload)
            .map_err(|e| EvaluateError::Malformed(format!("line {} column {}", e.line(), e.column())))?;
        let mut raised = Vec::new();
        for finding in critical_limits(&result, &self.limits) {
            raised.push(self.raise(&result, finding, event.context.received_at).await?);
        }
        Ok(Output::ok(json!({"alerts": raised})))
    }

    async fn ready(&self) -> Result<(), String> {
        ready(&self.store, &self.bus).await
    }
}
