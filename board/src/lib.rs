//! The ward board's read API, as JSON. Every answer carries `Cache-Control: no-store`.
//!
//! - `GET /api/inpatients` — current inpatients, ward by ward: patient id, encounter id, MRN,
//!   name, ward, bed, admitted at, active alerts. Header `Wardwatch-Event-Id`: the event-log id
//!   the answer is current to (read before the state, so a reader who then follows
//!   `/api/events?after=<it>` misses nothing).
//! - `GET /api/alerts[?status=active|acknowledged|escalated]` — open alerts (all open ones
//!   without `status`), reached through the ward indexes and the list of patients on no ward.
//! - `GET /api/patients/<id>` — one patient's record.
//! - `GET /api/events?after=<id>&limit=<n>` — the event log after `after`, oldest first.
//!
//! Reads are sized to the wards: the list of wards, each ward's index, then the records it
//! names (one pipelined read). An index entry whose record says otherwise is passed over (the
//! index catches up when that record's outbox drains).

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use serde_json::{Value, json};
use wardwatch_domain::alert::{Alert, AlertStatus};
use wardwatch_domain::keys;
use wardwatch_domain::outcome::operation_outcome;
use wardwatch_domain::ports::{EventId, EventLog, PortError, Publisher, StateStore};
use wardwatch_domain::record::PatientRecord;
use wardwatch_records::Records;
use wardwatch_runtime::{Body, Endpoint, json_response};

/// The read API over the record repository.
pub struct Board<S, L, P> {
    records: Records<S, L, P>,
}

const DEFAULT_EVENTS: usize = 100;
const MAX_EVENTS: usize = 1000;

fn status_of(name: &str) -> Option<AlertStatus> {
    serde_json::from_value(Value::String(name.to_owned())).ok()
}

fn query(request: &Request<Bytes>) -> BTreeMap<String, String> {
    form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn error(status: u16, code: &str, message: &str) -> Response<Body> {
    no_store(json_response(status, &operation_outcome(code, message, &[])))
}

fn no_store(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn alert_json(r: &PatientRecord, a: &Alert) -> Value {
    json!({
        "id": a.id,
        "patient_id": r.id,
        "mrn": r.mrn(),
        "ward": r.ward(),
        "rule": a.rule,
        "severity": a.severity,
        "status": a.status,
        "message": a.message,
        "value": a.value,
        "unit": a.unit,
        "loinc": a.loinc,
        "analyte": a.analyte,
        "result_id": a.result_id,
        "raised_at": a.raised_at,
    })
}

impl<S: StateStore, L: EventLog, P: Publisher> Board<S, L, P> {
    pub fn new(records: Records<S, L, P>) -> Self {
        Self { records }
    }

    /// Every current inpatient's record, ward by ward (wards in name order, then bed).
    pub async fn inpatient_records(&self) -> Result<Vec<PatientRecord>, PortError> {
        let mut wards = self.records.wards().await?;
        wards.sort();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for ward in wards {
            let members = self.records.ward_members(&ward).await?;
            let mut on_ward: Vec<PatientRecord> = self
                .records
                .load_many(&members)
                .await?
                .into_iter()
                .filter(|r| r.ward().as_deref() == Some(ward.as_str()) && seen.insert(r.id.clone()))
                .collect();
            on_ward.sort_by(|a, b| {
                let bed = |r: &PatientRecord| r.placement.as_ref().and_then(|p| p.bed.clone());
                bed(a).cmp(&bed(b)).then_with(|| a.id.cmp(&b.id))
            });
            out.extend(on_ward);
        }
        Ok(out)
    }

    /// Records of patients on no ward who have open alerts.
    pub async fn unplaced_records(&self) -> Result<Vec<PatientRecord>, PortError> {
        let members = self.records.members(keys::UNPLACED).await?;
        Ok(self
            .records
            .load_many(&members)
            .await?
            .into_iter()
            .filter(|r| r.ward().is_none() && r.has_open_alerts() && r.merged_into.is_none())
            .collect())
    }

    pub async fn inpatients(&self) -> Result<Value, PortError> {
        let list: Vec<Value> = self
            .inpatient_records()
            .await?
            .iter()
            .map(|r| {
                let p = r.placement.as_ref();
                let active: Vec<Value> = r
                    .alerts
                    .iter()
                    .filter(|a| a.status == AlertStatus::Active)
                    .map(|a| alert_json(r, a))
                    .collect();
                json!({
                    "patient_id": r.id,
                    "encounter_id": p.map(|p| p.encounter_id.clone()),
                    "mrn": r.mrn(),
                    "name": r.name,
                    "ward": r.ward(),
                    "bed": p.and_then(|p| p.bed.clone()),
                    "admitted_at": p.and_then(|p| p.admitted_at),
                    "active_alerts": active,
                })
            })
            .collect();
        Ok(Value::Array(list))
    }

    /// Open alerts (optionally of one status), oldest first.
    pub async fn alerts(&self, status: Option<AlertStatus>) -> Result<Value, PortError> {
        let mut records = self.inpatient_records().await?;
        let placed: HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
        records.extend(
            self.unplaced_records()
                .await?
                .into_iter()
                .filter(|r| !placed.contains(&r.id)),
        );
        let mut alerts: Vec<(&PatientRecord, &Alert)> = records
            .iter()
            .flat_map(|r| r.alerts.iter().map(move |a| (r, a)))
            .filter(|(_, a)| a.status.is_open() && status.is_none_or(|s| a.status == s))
            .collect();
        alerts.sort_by_key(|(_, a)| a.raised_at);
        Ok(Value::Array(
            alerts.into_iter().map(|(r, a)| alert_json(r, a)).collect(),
        ))
    }

    async fn events(&self, request: &Request<Bytes>) -> Response<Body> {
        let q = query(request);
        let after = match q.get("after").map(String::as_str) {
            None | Some("") => None,
            Some(a) => match EventId::parse(a) {
                Some(id) => Some(id),
                None => return error(400, "invalid", "after must be an event id like 1764250000000-0"),
            },
        };
        let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
            None => DEFAULT_EVENTS,
            Some(Ok(n)) if (1..=MAX_EVENTS).contains(&n) => n,
            Some(_) => return error(400, "invalid", "limit must be a number from 1 to 1000"),
        };
        match self.records.log.read(after, limit).await {
            Ok(page) => {
                // Asked for events after an id the bounded log no longer holds: some may be gone,
                // and the reader should reload its state (`after=0` means "from the start").
                let gap = match (after, page.oldest.as_deref().and_then(EventId::parse)) {
                    (Some(a), Some(oldest)) => a.ms != 0 && a < oldest,
                    _ => false,
                };
                no_store(json_response(
                    200,
                    &json!({"events": page.events, "oldest": page.oldest, "newest": page.newest, "gap": gap}),
                ))
            }
            Err(e) => port_error(e),
        }
    }
}

fn port_error(e: PortError) -> Response<Body> {
    match e {
        PortError::Unavailable(_) => error(503, "transient", "the state store or event log is unavailable"),
        e => {
            tracing::error!(error = %e, "board read failed");
            error(500, "exception", "stored data could not be read")
        }
    }
}

impl<S: StateStore, L: EventLog, P: Publisher> Endpoint for Board<S, L, P> {
    fn handle(&self, request: Request<Bytes>) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send + '_>> {
        Box::pin(async move {
            if request.method() != Method::GET {
                return error(405, "not-supported", "the board API is read-only: use GET");
            }
            let path = request.uri().path().to_owned();
            let result = match path.as_str() {
                "/api/inpatients" => {
                    let current_to = match self.records.log.newest().await {
                        Ok(id) => id.unwrap_or_else(|| "0-0".to_owned()),
                        Err(e) => return port_error(e),
                    };
                    match self.inpatients().await {
                        Ok(v) => {
                            let mut r = no_store(json_response(200, &v));
                            if let Ok(h) = HeaderValue::from_str(&current_to) {
                                r.headers_mut().insert("wardwatch-event-id", h);
                            }
                            return r;
                        }
                        Err(e) => Err(e),
                    }
                }
                "/api/alerts" => {
                    let status = match query(&request).get("status").map(String::as_str) {
                        None | Some("") => None,
                        Some(s) => match status_of(s).filter(|s| s.is_open()) {
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
                    self.alerts(status).await
                }
                "/api/events" => return self.events(&request).await,
                p if p.starts_with("/api/patients/") => {
                    let id = &p["/api/patients/".len()..];
                    if !wardwatch_domain::ids::is_fhir_id(id) {
                        return error(404, "not-found", "no such patient");
                    }
                    match self.records.load(id).await {
                        Ok(Some(mut r)) => {
                            r.outbox.clear();
                            serde_json::to_value(&r).map_err(|e| PortError::Corrupt(e.to_string()))
                        }
                        Ok(None) => return error(404, "not-found", "no such patient"),
                        Err(e) => Err(e),
                    }
                }
                _ => return error(404, "not-found", "no such board API route"),
            };
            match result {
                Ok(v) => no_store(json_response(200, &v)),
                Err(e) => port_error(e),
            }
        })
    }
}
