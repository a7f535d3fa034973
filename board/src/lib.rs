//! The ward board's read API: current inpatients and their alerts, as JSON.
//!
//! - `GET /api/inpatients` — every current inpatient: patient id, MRN, name, ward, bed,
//!   admitted at, and their active alerts;
//! - `GET /api/alerts[?status=active|acknowledged|escalated]` — open alerts with the patient's
//!   id and MRN, rule, severity, status and time (all open alerts without `status`).

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Method, Request, Response};
use serde_json::{Value, json};
use wardwatch_domain::events::{Alert, AlertStatus, Census, OpenAlerts, keys};
use wardwatch_domain::outcome::operation_outcome;
use wardwatch_domain::ports::{PortError, StateStore, get_json};
use wardwatch_runtime::{Body, Endpoint, json_response};

/// The read API over a state store.
pub struct Board<S> {
    store: S,
}

fn status_of(name: &str) -> Option<AlertStatus> {
    serde_json::from_value(Value::String(name.to_owned())).ok()
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

fn error(status: u16, code: &str, message: &str) -> Response<Body> {
    json_response(status, &operation_outcome(code, message, &[]))
}

impl<S: StateStore> Board<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// Open alerts (optionally with one status), oldest first.
    pub async fn alerts(&self, status: Option<AlertStatus>) -> Result<Vec<Alert>, PortError> {
        let open: OpenAlerts = get_json(&self.store, keys::OPEN_ALERTS)
            .await?
            .map(|(o, _)| o)
            .unwrap_or_default();
        let mut alerts = Vec::with_capacity(open.ids.len());
        for id in &open.ids {
            if let Some((alert, _)) = get_json::<Alert, _>(&self.store, &keys::alert(id)).await?
                && status.is_none_or(|s| alert.status == s)
            {
                alerts.push(alert);
            }
        }
        alerts.sort_by_key(|a| a.raised_at);
        Ok(alerts)
    }

    pub async fn inpatients(&self) -> Result<Value, PortError> {
        let census: Census = get_json(&self.store, keys::CENSUS)
            .await?
            .map(|(c, _)| c)
            .unwrap_or_default();
        let mut by_patient: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for alert in self.alerts(Some(AlertStatus::Active)).await? {
            by_patient
                .entry(alert.patient_id.clone())
                .or_default()
                .push(alert_json(&alert));
        }
        let list: Vec<Value> = census
            .patients
            .values()
            .map(|p| {
                json!({
                    "patient_id": p.patient_id,
                    "encounter_id": p.encounter_id,
                    "mrn": p.mrn,
                    "name": p.name,
                    "ward": p.ward,
                    "bed": p.bed,
                    "admitted_at": p.admitted_at,
                    "active_alerts": by_patient.remove(&p.patient_id).unwrap_or_default(),
                })
            })
            .collect();
        Ok(Value::Array(list))
    }
}

fn alert_json(a: &Alert) -> Value {
    json!({
        "id": a.id,
        "patient_id": a.patient_id,
        "mrn": a.mrn,
        "rule": a.rule,
        "severity": a.severity,
        "status": a.status,
        "message": a.message,
        "value": a.value,
        "unit": a.unit,
        "loinc": a.loinc,
        "result_id": a.result_id,
        "raised_at": a.raised_at,
    })
}

impl<S: StateStore> Endpoint for Board<S> {
    fn handle(&self, request: Request<Bytes>) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send + '_>> {
        Box::pin(async move {
            if request.method() != Method::GET {
                return error(405, "not-supported", "the board API is read-only: use GET");
            }
            let result = match request.uri().path() {
                "/api/inpatients" => self.inpatients().await,
                "/api/alerts" => {
                    let status = match query_param(request.uri().query(), "status") {
                        None | Some("") => None,
                        Some(s) => match status_of(s).filter(|s| *s != AlertStatus::Resolved) {
                            Some(s) => Some(s),
                            None => {
                                return error(
                                    400,
                                    "invalid",
                                    "status must be active, acknowledged or escalated (open alerts only)",
                                );
                            }
                        },
                    };
                    self.alerts(status)
                        .await
                        .map(|alerts| Value::Array(alerts.iter().map(alert_json).collect()))
                }
                _ => return error(404, "not-found", "no such board API route"),
            };
            match result {
                Ok(v) => json_response(200, &v),
                Err(PortError::Unavailable(_)) => error(503, "transient", "the state store is unavailable"),
                Err(e) => {
                    tracing::error!(error = %e, "board read failed");
                    error(500, "exception", "stored data could not be read")
                }
            }
        })
    }
}
