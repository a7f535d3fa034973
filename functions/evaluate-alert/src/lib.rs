//! evaluate-alert: every `result-stored` event (lane `lab-resulted`) re-evaluates the rules the
//! result's analyte touches — critical limits, and the NHS England AKI algorithm for creatinine
//! (and potassium, for its telephone rule) — over the patient's history, and keeps the patient's
//! alerts in step: raised, updated, upgraded, resolved, withdrawn. Each change is an audit entry
//! in the record and an event (event log, then lane `alerts`).
//!
//! parse the event → load the patient's record → decide (`domain::decide::alerting`) on the
//! record's history → write back with the ETag → the outbox drains. Idempotent: an alert's id is
//! derived from (patient, rule, result), and evaluating the same history again changes nothing,
//! so a redelivered event raises nothing twice.
//!
//! [`Escalate`] (binding and route `escalate`): alerts nobody acknowledged by their review time
//! are escalated. Woken by a Dapr cron binding, a Knative PingSource, or `wardwatch up`'s ticker;
//! it reads the review list (patients with an unacknowledged alert that has a review time), not
//! every patient.

use serde_json::json;
use wardwatch_domain::decide::alerting;
use wardwatch_domain::events::{EventType, WardEvent};
use wardwatch_domain::keys;
use wardwatch_domain::ports::{EventLog, PortError, Publisher, StateStore, ready};
use wardwatch_domain::record::ResultEntry;
use wardwatch_domain::rules::CriticalLimits;
use wardwatch_records::{Records, Step};
use wardwatch_runtime::{Event, Failure, FailureKind, Function, Output};

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error("not a result-stored event: {0}")]
    Malformed(String),
    #[error("the event's patient record does not exist")]
    NoRecord,
    #[error(transparent)]
    Port(#[from] PortError),
}

impl From<EvaluateError> for Failure {
    fn from(e: EvaluateError) -> Self {
        match e {
            EvaluateError::Malformed(_) => Failure::invalid(e.to_string()),
            EvaluateError::NoRecord => Failure::new(FailureKind::NotFound, e.to_string()),
            EvaluateError::Port(p) => p.into(),
        }
    }
}

pub struct EvaluateAlert<S, L, P> {
    records: Records<S, L, P>,
    limits: CriticalLimits,
}

enum Found {
    Raised(Vec<String>),
    /// The record was joined into another: go on there, with the result as this one held it.
    Moved(String, Option<Box<ResultEntry>>),
}

impl<S: StateStore, L: EventLog, P: Publisher> EvaluateAlert<S, L, P> {
    pub fn new(records: Records<S, L, P>, limits: CriticalLimits) -> Self {
        Self { records, limits }
    }
}

impl<S: StateStore, L: EventLog, P: Publisher> Function for EvaluateAlert<S, L, P> {
    fn name(&self) -> &'static str {
        "evaluate-alert"
    }

    async fn call(&self, event: Event) -> Result<Output, Failure> {
        let stored: WardEvent = serde_json::from_slice(&event.payload)
            .map_err(|e| EvaluateError::Malformed(format!("line {} column {}", e.line(), e.column())))?;
        if stored.kind != EventType::ResultStored {
            return Err(EvaluateError::Malformed(format!("type is `{}`", stored.kind.as_str())).into());
        }
        let result_id = stored
            .result_id
            .clone()
            .ok_or_else(|| EvaluateError::Malformed("no result_id".into()))?;
        let now = event.context.received_at;
        let mut patient_id = stored.patient_id.clone();
        let mut carried: Option<ResultEntry> = None;
        for _ in 0..4 {
            let found = self
                .records
                .update(&patient_id, |record| {
                    let Some(record) = record else {
                        return Err(EvaluateError::NoRecord);
                    };
                    if let Some(into) = record.merged_into.clone() {
                        let entry = record
                            .result(&result_id)
                            .cloned()
                            .or_else(|| carried.clone())
                            .map(Box::new);
                        return Ok(Step::Keep(Found::Moved(into, entry)));
                    }
                    let d = alerting::decide(record, &result_id, carried.as_ref(), &self.limits, now);
                    let raised: Vec<String> = d.events().filter_map(|e| e.alert_id.clone()).collect();
                    Ok(if d.changed {
                        Step::Write {
                            record: d.record,
                            resources: Vec::new(),
                            out: Found::Raised(raised),
                        }
                    } else {
                        Step::Keep(Found::Raised(Vec::new()))
                    })
                })
                .await?;
            match found {
                Found::Moved(into, entry) => {
                    patient_id = into;
                    carried = entry.map(|e| *e);
                }
                Found::Raised(alerts) => {
                    for alert_id in &alerts {
                        tracing::info!(%alert_id, %patient_id, %result_id, "alert raised");
                    }
                    return Ok(Output::ok(json!({"alerts": alerts})));
                }
            }
        }
        Err(EvaluateError::Port(PortError::Corrupt("patient records are joined in a loop".into())).into())
    }

    async fn ready(&self) -> Result<(), String> {
        ready(&self.records.store, &self.records.log, &self.records.bus).await
    }
}

/// Escalate alerts past their review time. The payload is ignored (a cron binding sends none, a
/// PingSource its own data); the time is the delivery's.
pub struct Escalate<S, L, P> {
    records: Records<S, L, P>,
}

impl<S: StateStore, L: EventLog, P: Publisher> Escalate<S, L, P> {
    pub fn new(records: Records<S, L, P>) -> Self {
        Self { records }
    }
}

impl<S: StateStore, L: EventLog, P: Publisher> Function for Escalate<S, L, P> {
    fn name(&self) -> &'static str {
        "escalate"
    }

    async fn call(&self, event: Event) -> Result<Output, Failure> {
        let now = event.context.received_at;
        let listed = self.records.members(keys::REVIEW).await.map_err(EvaluateError::from)?;
        let mut escalated = Vec::new();
        let mut failed = 0usize;
        for patient_id in &listed {
            let done = self
                .records
                .update(patient_id, |record| {
                    let Some(record) = record else {
                        return Ok::<_, EvaluateError>(Step::Keep(Vec::new()));
                    };
                    let (d, ids) = alerting::escalate(record, now);
                    Ok(if d.changed {
                        Step::Write {
                            record: d.record,
                            resources: Vec::new(),
                            out: ids,
                        }
                    } else {
                        Step::Keep(ids)
                    })
                })
                .await;
            match done {
                Ok(ids) => {
                    for alert_id in ids {
                        tracing::warn!(%alert_id, %patient_id, "alert escalated: not acknowledged by its review time");
                        escalated.push(json!({"alert_id": alert_id, "patient_id": patient_id}));
                    }
                }
                // One patient's trouble never holds up the others' escalations; the tick is
                // answered as failed (and tried again) once every patient was tried.
                Err(e) => {
                    let f = Failure::from(e);
                    tracing::error!(%patient_id, kind = f.kind.as_str(), reason = %f.message, "escalation failed for a patient");
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            return Err(Failure::new(
                FailureKind::Transient,
                format!("escalation failed for {failed} patients (logged); the next tick tries again"),
            ));
        }
        Ok(Output::ok(json!({"checked": listed.len(), "escalated": escalated})))
    }

    async fn ready(&self) -> Result<(), String> {
        ready(&self.records.store, &self.records.log, &self.records.bus).await
    }
}
