//! The ward board: a server-rendered page of current inpatients with live alerts, its JSON API
//! and its event stream. Every answer that shows patient data carries `Cache-Control: no-store`.
//!
//! Pages (HTML, askama templates in `board/templates/`, script and styles in `board/assets/`,
//! served from the binary — nothing is fetched from elsewhere):
//! - `GET /` — inpatients ward by ward; the alert feed (escalated first, then newest) with
//!   Acknowledge on every alert nobody has acknowledged (active or escalated); patients on no
//!   ward with such alerts, split into "Discharged — needs follow-up" and "Not admitted yet";
//! - `GET /patients/<id>` — one patient: each analyte's history as a small chart, every alert
//!   the record keeps (status, stage, evidence, the results behind it, why it closed), the alert
//!   audit trail newest first, and renal replacement therapy with buttons that record it;
//! - `GET /partials/board`, `GET /partials/patients/<id>` — the same state without the frame,
//!   fetched again by the page on every event;
//! - `GET|POST /signin`, `POST /signout` — when `BOARD_TOKEN` is set ([`access`]).
//!
//! API (JSON):
//! - `GET /api/inpatients` — current inpatients, ward by ward: patient id, encounter id, MRN,
//!   name, ward, bed, admitted at, and `active_alerts`: the alerts nobody has acknowledged yet
//!   (active or escalated; each says which). Header `Wardwatch-Event-Id`: the event-log id the
//!   answer is current to (read before the state, so a reader who then follows
//!   `/api/events?after=<it>` misses nothing).
//! - `GET /api/alerts[?status=<s>[,<s>…]][&patient.identifier=[<system>|]<value>]` — alerts,
//!   **escalated first, then the newest raised first**. `status`: one or more of `active`,
//!   `acknowledged`, `escalated`, `resolved`, `withdrawn`, comma-separated; without it the open
//!   ones (active, acknowledged, escalated); anything else is `400`. Which patients' alerts:
//!   current inpatients and the patients on no ward with alerts nobody has acknowledged (the
//!   ward indexes and the unplaced list); when an acknowledged or closed status (resolved,
//!   withdrawn) is asked for — or no status — also the patients named by `alert-*` events of
//!   the **last 24 hours** of the event log
//!   ([`RECENT_HOURS`]; read newest hour first, at most [`RECENT_PAGES`] pages of
//!   [`RECENT_PAGE`] events in all, so a busy day's cap drops the oldest of the window) — never a
//!   list that grows with the hospital's history. Each of those patients' records keeps a
//!   bounded number of closed alerts. `patient.identifier=<system>|<value>`: that patient alone
//!   (through the identifier index), whatever the window; a bare `<value>`: the patients above
//!   whose MRN or any identifier has that value. Each alert names its patient (`patient_id`,
//!   `mrn`, `ward`, `discharged`) and carries rule, stage, severity, status, message, value,
//!   unit, analyte, loinc, result_id, results (the Observations behind it), evidence,
//!   telephone, raised_at, updated_at, review_by, escalated_at, acknowledged `{by, at, note}`
//!   and closed `{at, reason, result_id}`.
//! - `GET /api/alerts/<id>[?patient_id=<id>]` — one alert, open or closed, as a FHIR
//!   `DetectedIssue` (`patient_id` saves a search; without it the patients above are searched).
//! - `POST /api/alerts/<id>/ack` `{"note": "...", "by": "...", "patient_id": "..."}` — acknowledge
//!   an active or escalated alert (`by`: the name typed on the page when no sign-in is
//!   configured; `patient_id` optional, it saves a search). Acknowledging twice changes nothing;
//!   a resolved or withdrawn alert is closed: `409`.
//! - `GET /api/patients/<id>` — one patient's record. A record joined or merged into another
//!   (results that came first; HL7 v2 A40/A34) answers with the record it went to (its `id`),
//!   and `followed_from`: the id asked for.
//! - `GET /api/patients/<id>/audit` — `{"patient_id", "audit": [entries, newest first],
//!   "kept_at_most"}`: what happened to the patient's alerts (raised, updated, upgraded,
//!   acknowledged, escalated, resolved, withdrawn, reopened), by whom and when.
//! - `POST /api/patients/<id>/rrt` `{"rrt": "on-rrt" | "not-on-rrt" | "unknown", "by": "..."}` —
//!   record renal replacement therapy (`by` as for acknowledging) and re-evaluate AKI: on RRT
//!   the AKI alerts are withdrawn. Recording what is recorded already changes nothing.
//! - `GET /api/events?after=<id>&limit=<n>` — the event log after `after`, oldest first.
//! - `GET /api/rejected` — deliveries refused for good and kept for replay: handle, lane, when,
//!   why (no patient data); `GET /api/rejected/<handle>` — one, whole (payload included);
//!   `POST /api/rejected/<handle>/replay` — put it back on its lane.
//! - `GET /api/events/stream` — the same as Server-Sent Events ([`stream`]).
//!
//! Reads are sized to the wards: the list of wards, each ward's index, then the records it
//! names (one pipelined read). An index entry whose record says otherwise is passed over (the
//! index catches up when that record's outbox drains). A record of results that came before
//! their patient, since joined to the patient's record, is read as the record it joined.
//! Logs name patients and alerts by id only.

pub mod access;
pub mod page;
pub mod stream;
pub mod view;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use askama::Template;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderValue, Method, Request, Response, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use wardwatch_domain::aki::Rrt;
use wardwatch_domain::alert::{self, Alert, AlertStatus};
use wardwatch_domain::decide::alerting::{self, Acknowledged};
use wardwatch_domain::identity::Identifier;
use wardwatch_domain::outcome::operation_outcome;
use wardwatch_domain::ports::{EventId, EventLog, PortError, Publisher, StateStore};
use wardwatch_domain::record::{KEEP_AUDIT, PatientRecord};
use wardwatch_domain::rules::CriticalLimits;
use wardwatch_domain::{keys, lanes};
use wardwatch_records::rejects::{self, Rejects, Replay};
use wardwatch_records::{Records, Step};
use wardwatch_runtime::{Body, Endpoint, Secret, full, json_response};

use crate::access::{Access, Caller};
use crate::page::{BoardMain, BoardPage, PatientMain, PatientPage, SignIn};

/// The board over the record repository.
pub struct Board<S, L, P> {
    records: Records<S, L, P>,
    rejects: Rejects<S>,
    access: Access,
    feed: stream::Feed<L>,
    /// The critical limits and AKI settings, for re-evaluating AKI when RRT is recorded.
    rules: Arc<CriticalLimits>,
}

const CSS: &str = include_str!("../assets/board.css");
const JS: &str = include_str!("../assets/board.js");
/// The page loads nothing from elsewhere and runs no inline script.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const MAX_NOTE: usize = 500;
const MAX_NAME: usize = 80;

const DEFAULT_EVENTS: usize = 100;
const MAX_EVENTS: usize = 1000;

/// Acknowledged and closed (resolved, withdrawn) alerts are listed for current patients and for
/// the patients named by alert events of this many recent hours (an alert nobody acknowledged is
/// always on a ward or on the `unplaced` list).
pub const RECENT_HOURS: u64 = 24;
/// The recent window is read in slices, newest first: the last hour, the five before it, then
/// the rest of [`RECENT_HOURS`].
const RECENT_SLICES: [u64; 3] = [1, 6, RECENT_HOURS];
/// Events per read of the recent window.
pub const RECENT_PAGE: usize = 1000;
/// Reads of the recent window at most, in all.
pub const RECENT_PAGES: usize = 10;

const STATUSES: &str = "active, acknowledged, escalated, resolved, withdrawn";

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
        "discharged": r.discharged(),
        "rule": a.rule,
        "stage": a.stage,
        "severity": a.severity,
        "status": a.status,
        "message": a.message,
        "value": a.value,
        "unit": a.unit,
        "analyte": a.analyte,
        "loinc": a.loinc,
        "result_id": a.result_id,
        "results": a.implicated(),
        "evidence": a.evidence,
        "telephone": a.telephone,
        "raised_at": a.raised_at,
        "updated_at": a.updated_at,
        "review_by": a.review_by,
        "escalated_at": a.escalated_at,
        "acknowledged": a.acknowledged,
        "closed": a.closed,
    })
}

/// Whose alerts `GET /api/alerts` lists.
enum PatientFilter {
    /// `<system>|<value>`: the patient the identifier index names.
    Identifier(Identifier),
    /// A bare value: an MRN or any identifier's value, among the patients listed.
    Value(String),
}

/// What `GET /api/alerts` asks for.
struct AlertQuery {
    statuses: Vec<AlertStatus>,
    patient: Option<PatientFilter>,
}

fn alert_query(q: &BTreeMap<String, String>) -> Result<AlertQuery, String> {
    let mut statuses = Vec::new();
    let mut patient = None;
    for (k, v) in q {
        match k.as_str() {
            "status" if v.is_empty() => {}
            "status" => {
                for s in v.split(',') {
                    match AlertStatus::parse(s.trim()) {
                        Some(s) if !statuses.contains(&s) => statuses.push(s),
                        Some(_) => {}
                        None => {
                            return Err(format!(
                                "status must be one or more of {STATUSES} (comma-separated), not `{}`",
                                s.trim()
                            ));
                        }
                    }
                }
            }
            "patient.identifier" => {
                let (system, value) = match v.split_once('|') {
                    Some((system, value)) => (system.trim(), value.trim()),
                    None => ("", v.trim()),
                };
                if value.is_empty() {
                    return Err("patient.identifier has no value (give <system>|<value> or <value>)".into());
                }
                patient = Some(if system.is_empty() {
                    PatientFilter::Value(value.to_owned())
                } else {
                    PatientFilter::Identifier(Identifier {
                        system: system.to_owned(),
                        value: value.to_owned(),
                    })
                });
            }
            other => {
                return Err(format!(
                    "unsupported parameter `{other}`: alerts are listed by status and patient.identifier"
                ));
            }
        }
    }
    if statuses.is_empty() {
        statuses = AlertStatus::ALL.into_iter().filter(|s| s.is_open()).collect();
    }
    Ok(AlertQuery { statuses, patient })
}

fn has_identifier_value(r: &PatientRecord, value: &str) -> bool {
    r.mrn().as_deref() == Some(value) || r.identifiers.iter().any(|i| i.value == value)
}

/// The body of `POST /api/alerts/<id>/ack`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    patient_id: Option<String>,
}

/// The body of `POST /api/patients/<id>/rrt`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RrtRequest {
    rrt: Rrt,
    #[serde(default)]
    by: Option<String>,
}

/// A JSON body (an empty one reads as `{}`), or the 4xx that says what is wrong with it.
fn json_body<T: DeserializeOwned>(request: &Request<Bytes>, shape: &str) -> Result<T, Box<Response<Body>>> {
    if !request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return Err(Box::new(error(
            415,
            "not-supported",
            &format!("send {shape} as application/json"),
        )));
    }
    let body: &[u8] = if request.body().is_empty() {
        b"{}"
    } else {
        request.body()
    };
    serde_json::from_slice(body).map_err(|e| {
        // The position only: serde's message can quote what was sent.
        Box::new(error(
            400,
            "invalid",
            &format!("the body must be {shape} (line {} column {})", e.line(), e.column()),
        ))
    })
}

/// Who is acting: the signed-in name, else the `by` a person typed (a program may leave it
/// out), else the 4xx that says what is missing. `doing`: "acknowledges", "records it".
fn who(caller: &Caller, by: Option<&str>, doing: &str) -> Result<String, Box<Response<Body>>> {
    match caller {
        Caller::Session { name, .. } => Ok(name.clone()),
        _ => match by.map(str::trim).filter(|b| !b.is_empty()) {
            Some(b) if b.chars().count() <= MAX_NAME && !b.chars().any(char::is_control) => Ok(b.to_owned()),
            Some(_) => Err(Box::new(error(
                400,
                "invalid",
                "by must be at most 80 characters, without control characters",
            ))),
            None if matches!(caller, Caller::Program) => Ok("api".to_owned()),
            None => Err(Box::new(error(
                400,
                "required",
                &format!("say who {doing}: by (a name) is required"),
            ))),
        },
    }
}

fn html(status: u16, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    no_store(r)
}

fn render(status: u16, t: &impl Template) -> Response<Body> {
    match t.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "a board template failed to render");
            error(500, "exception", "the page could not be rendered")
        }
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // No patient data: a browser may keep it for a while.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

fn redirect(to: &'static str, cookie: Option<String>) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = http::StatusCode::SEE_OTHER;
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_static(to));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    no_store(r)
}

impl<S: StateStore + Clone, L: EventLog + Clone, P: Publisher> Board<S, L, P> {
    /// `token`: `BOARD_TOKEN` (none: the board is open to whoever reaches it).
    /// The critical limits and AKI settings are the built-in ones until [`Board::with_rules`].
    pub fn new(records: Records<S, L, P>, token: Option<Secret>) -> Self {
        let feed = stream::Feed::new(records.log.clone());
        Self {
            rejects: Rejects::new(records.store.clone()),
            records,
            access: Access::new(token),
            feed,
            rules: Arc::new(CriticalLimits::default()),
        }
    }

    /// The rules table evaluate-alert uses (`RULES_FILE`): recording RRT re-evaluates AKI with it.
    pub fn with_rules(mut self, rules: Arc<CriticalLimits>) -> Self {
        self.rules = rules;
        self
    }

    /// A record, or the record it was joined to (results that came before their patient) or
    /// merged into (HL7 v2 A40/A34), a few hops at most; the last one found when a hop is
    /// missing.
    async fn load_following(&self, id: &str) -> Result<Option<PatientRecord>, PortError> {
        let Some(mut r) = self.records.load(id).await? else {
            return Ok(None);
        };
        for _ in 0..4 {
            let Some(into) = r.merged_into.clone() else { break };
            match self.records.load(&into).await? {
                Some(next) => r = next,
                None => break,
            }
        }
        Ok(Some(r))
    }

    /// Every current inpatient's record, ward by ward (wards in name order, then bed; "Ward 9"
    /// before "Ward 12").
    pub async fn inpatient_records(&self) -> Result<Vec<PatientRecord>, PortError> {
        let mut wards = self.records.wards().await?;
        wards.sort_by_key(|w| view::natural(w));
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
                let bed = |r: &PatientRecord| r.placement.as_ref().and_then(|p| p.bed.as_deref()).map(view::natural);
                bed(a).cmp(&bed(b)).then_with(|| a.id.cmp(&b.id))
            });
            out.extend(on_ward);
        }
        Ok(out)
    }

    /// Records of patients on no ward with alerts nobody has acknowledged (active or escalated):
    /// not admitted yet, or discharged and needing follow-up.
    pub async fn unplaced_records(&self) -> Result<Vec<PatientRecord>, PortError> {
        let members = self.records.members(keys::UNPLACED).await?;
        Ok(self
            .records
            .load_many(&members)
            .await?
            .into_iter()
            .filter(|r| r.ward().is_none() && r.needs_attention() && r.merged_into.is_none())
            .collect())
    }

    pub async fn inpatients(&self) -> Result<Value, PortError> {
        let list: Vec<Value> = self
            .inpatient_records()
            .await?
            .iter()
            .map(|r| {
                let p = r.placement.as_ref();
                let mut waiting: Vec<&Alert> = r.alerts.iter().filter(|a| a.status.needs_acknowledgement()).collect();
                waiting.sort_by(|a, b| view::feed_order(a, b));
                let active: Vec<Value> = waiting.into_iter().map(|a| alert_json(r, a)).collect();
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

    /// Inpatients, then patients on no ward with open alerts: everyone the board shows.
    pub async fn shown_records(&self) -> Result<(Vec<PatientRecord>, Vec<PatientRecord>), PortError> {
        let inpatients = self.inpatient_records().await?;
        let placed: HashSet<&str> = inpatients.iter().map(|r| r.id.as_str()).collect();
        let unplaced: Vec<PatientRecord> = self
            .unplaced_records()
            .await?
            .into_iter()
            .filter(|r| !placed.contains(r.id.as_str()))
            .collect();
        Ok((inpatients, unplaced))
    }

    /// The patients named by alert events of the recent window ([`RECENT_HOURS`]), newest
    /// events first, at most [`RECENT_PAGES`] reads of the log in all.
    async fn recent_alert_patients(&self, now: DateTime<Utc>) -> Result<Vec<String>, PortError> {
        const HOUR_MS: u64 = 3_600_000;
        let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or_default();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut reads = 0;
        // Each slice ends where the newer one (already read) began.
        let mut until: Option<EventId> = None;
        for hours in RECENT_SLICES {
            let from = EventId {
                ms: now_ms.saturating_sub(hours * HOUR_MS),
                seq: 0,
            };
            let mut after = Some(from);
            'slice: loop {
                if reads == RECENT_PAGES {
                    return Ok(out);
                }
                let page = self.records.log.read(after, RECENT_PAGE).await?;
                reads += 1;
                let n = page.events.len();
                for e in page.events {
                    let Some(id) = EventId::parse(&e.id) else {
                        continue;
                    };
                    if until.is_some_and(|u| id > u) {
                        break 'slice;
                    }
                    after = Some(id);
                    if e.kind.lane() == lanes::ALERTS && seen.insert(e.patient_id.clone()) {
                        out.push(e.patient_id);
                    }
                }
                if n < RECENT_PAGE {
                    break;
                }
            }
            until = Some(from);
        }
        Ok(out)
    }

    /// The records of the recent window's patients, but those in `skip` (read already).
    async fn recent_records(&self, skip: &HashSet<String>) -> Result<Vec<PatientRecord>, PortError> {
        let wanted: Vec<String> = self
            .recent_alert_patients(Utc::now())
            .await?
            .into_iter()
            .filter(|id| !skip.contains(id))
            .collect();
        let mut records = self.records.load_many(&wanted).await?;
        // Records of results that came first, since joined: the patients they joined.
        let mut have: HashSet<String> = skip.iter().cloned().collect();
        have.extend(records.iter().filter(|r| r.merged_into.is_none()).map(|r| r.id.clone()));
        let joined: Vec<String> = records
            .iter()
            .filter_map(|r| r.merged_into.clone())
            .filter(|id| have.insert(id.clone()))
            .collect();
        records.retain(|r| r.merged_into.is_none());
        if !joined.is_empty() {
            records.extend(
                self.records
                    .load_many(&joined)
                    .await?
                    .into_iter()
                    .filter(|r| r.merged_into.is_none()),
            );
        }
        Ok(records)
    }

    /// The records the alert listing reads: current inpatients, patients on no ward with alerts
    /// nobody has acknowledged, and with `recent` the recent window's patients.
    async fn listed_records(&self, recent: bool) -> Result<Vec<PatientRecord>, PortError> {
        let (mut records, unplaced) = self.shown_records().await?;
        records.extend(unplaced);
        if recent {
            let shown: HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
            records.extend(self.recent_records(&shown).await?);
        }
        Ok(records)
    }

    /// The alerts of these statuses (and this patient), escalated first, then newest first.
    async fn alerts(&self, query: &AlertQuery) -> Result<Value, PortError> {
        let records: Vec<PatientRecord> = match &query.patient {
            Some(PatientFilter::Identifier(i)) => match self.records.lookup(i).await? {
                Some(pid) if wardwatch_domain::ids::is_fhir_id(&pid) => {
                    self.load_following(&pid).await?.into_iter().collect()
                }
                _ => Vec::new(),
            },
            Some(PatientFilter::Value(v)) => self
                .listed_records(query.statuses.iter().any(|s| !s.needs_acknowledgement()))
                .await?
                .into_iter()
                .filter(|r| has_identifier_value(r, v))
                .collect(),
            None => {
                self.listed_records(query.statuses.iter().any(|s| !s.needs_acknowledgement()))
                    .await?
            }
        };
        let mut alerts: Vec<(&PatientRecord, &Alert)> = records
            .iter()
            .flat_map(|r| r.alerts.iter().map(move |a| (r, a)))
            .filter(|(_, a)| query.statuses.contains(&a.status))
            .collect();
        alerts.sort_by(|(_, a), (_, b)| view::feed_order(a, b));
        Ok(Value::Array(
            alerts.into_iter().map(|(r, a)| alert_json(r, a)).collect(),
        ))
    }

    /// The log id a state read is current to: read before the state.
    async fn current_to(&self) -> Result<String, PortError> {
        Ok(self.records.log.newest().await?.unwrap_or_else(|| "0-0".to_owned()))
    }

    async fn board_main(&self) -> Result<BoardMain, PortError> {
        let event_id = self.current_to().await?;
        let (inpatients, unplaced) = self.shown_records().await?;
        let now = Utc::now();
        let feed = view::feed(inpatients.iter().chain(&unplaced));
        let (discharged, not_admitted) = view::unplaced(&unplaced);
        Ok(BoardMain {
            event_id,
            rendered: view::hhmm(now),
            inpatients: inpatients.len(),
            to_acknowledge: feed.iter().filter(|a| a.needs_ack).count(),
            wards: view::wards(&inpatients, now),
            feed,
            discharged,
            not_admitted,
        })
    }

    async fn patient_main(&self, id: &str) -> Result<Option<PatientMain>, PortError> {
        let event_id = self.current_to().await?;
        // A record of results that came first, since joined: show the patient it joined.
        let Some(r) = self.load_following(id).await? else {
            return Ok(None);
        };
        let place = view::place(&r);
        Ok(Some(PatientMain {
            event_id,
            rendered: view::hhmm(Utc::now()),
            id: r.id.clone(),
            name: r.name.clone().unwrap_or_else(|| "(name not known)".to_owned()),
            mrn: r.mrn().unwrap_or_default(),
            gender: r.gender.clone().unwrap_or_default(),
            born: r
                .birth_date
                .map(|d| match Utc::now().date_naive().years_since(d) {
                    Some(age) => format!("{d} (age {age})"),
                    None => d.to_string(),
                })
                .unwrap_or_default(),
            place,
            series: view::series(&r),
            trail: view::trail(&r),
            audit: view::audit(&r),
            audit_kept: KEEP_AUDIT,
            rrt: view::rrt(&r),
        }))
    }

    /// The record that keeps this alert (open or closed): the hint's if it has it, else a
    /// search of the records the board shows, then of the recent window's (a person's action or
    /// a look-up by id, not a hot path).
    async fn find_alert(&self, alert_id: &str, hint: Option<&str>) -> Result<Option<PatientRecord>, PortError> {
        let has = |r: &PatientRecord| r.alerts.iter().any(|a| a.id == alert_id);
        if let Some(pid) = hint.filter(|p| wardwatch_domain::ids::is_fhir_id(p))
            && let Some(r) = self.load_following(pid).await?
            && has(&r)
        {
            return Ok(Some(r));
        }
        let (mut records, unplaced) = self.shown_records().await?;
        records.extend(unplaced);
        let shown: HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
        if let Some(r) = records.into_iter().find(|r| has(r)) {
            return Ok(Some(r));
        }
        Ok(self.recent_records(&shown).await?.into_iter().find(|r| has(r)))
    }

    /// Whose alert this is.
    async fn owner_of(&self, alert_id: &str, hint: Option<&str>) -> Result<Option<String>, PortError> {
        Ok(self.find_alert(alert_id, hint).await?.map(|r| r.id))
    }

    /// `GET /api/alerts/<id>`: the alert as a FHIR DetectedIssue.
    async fn detected_issue(&self, alert_id: &str, request: &Request<Bytes>) -> Response<Body> {
        let q = query(request);
        match self.find_alert(alert_id, q.get("patient_id").map(String::as_str)).await {
            Ok(Some(r)) => match r.alerts.iter().find(|a| a.id == alert_id) {
                Some(a) => {
                    let mut resp = no_store(json_response(200, &alert::detected_issue(&r.id, r.mrn().as_deref(), a)));
                    resp.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
                    resp
                }
                None => error(404, "not-found", "no alert with this id"),
            },
            Ok(None) => error(404, "not-found", "no alert with this id"),
            Err(e) => port_error(e),
        }
    }

    /// `GET /api/patients/<id>/audit`.
    async fn audit(&self, id: &str) -> Response<Body> {
        match self.load_following(id).await {
            Ok(Some(r)) => {
                let audit: Vec<&alert::AuditEntry> = r.audit.iter().rev().collect();
                no_store(json_response(
                    200,
                    &json!({"patient_id": r.id, "audit": audit, "kept_at_most": KEEP_AUDIT}),
                ))
            }
            Ok(None) => error(404, "not-found", "no such patient"),
            Err(e) => port_error(e),
        }
    }

    /// `POST /api/patients/<id>/rrt`: record renal replacement therapy, re-evaluate AKI.
    async fn record_rrt(&self, id: &str, caller: &Caller, request: &Request<Bytes>) -> Response<Body> {
        let body: RrtRequest = match json_body(
            request,
            "{\"rrt\": \"on-rrt\" | \"not-on-rrt\" | \"unknown\", \"by\": \"...\"}",
        ) {
            Ok(b) => b,
            Err(r) => return *r,
        };
        let by = match who(caller, body.by.as_deref(), "records it") {
            Ok(b) => b,
            Err(r) => return *r,
        };
        let pid = match self.load_following(id).await {
            Ok(Some(r)) => r.id,
            Ok(None) => return error(404, "not-found", "no such patient"),
            Err(e) => return port_error(e),
        };
        let now = Utc::now();
        let rules = self.rules.clone();
        let outcome = self
            .records
            .update(&pid, |record| {
                let Some(record) = record else {
                    return Ok::<_, PortError>(Step::Keep(None));
                };
                let d = alerting::set_rrt(record, body.rrt, &by, &rules, now);
                let changes: Vec<Value> = d
                    .events()
                    .map(|e| json!({"type": e.kind.as_str(), "alert_id": e.alert_id}))
                    .collect();
                Ok(if d.changed {
                    Step::Write {
                        record: d.record,
                        resources: Vec::new(),
                        out: Some((true, changes)),
                    }
                } else {
                    Step::Keep(Some((false, changes)))
                })
            })
            .await;
        match outcome {
            Ok(Some((changed, alerts))) => {
                if changed {
                    tracing::info!(patient_id = %pid, "renal replacement therapy recorded");
                }
                no_store(json_response(
                    200,
                    &json!({"patient_id": pid, "rrt": body.rrt, "by": by, "changed": changed, "alerts": alerts}),
                ))
            }
            Ok(None) => error(404, "not-found", "no such patient"),
            Err(e) => port_error(e),
        }
    }

    async fn acknowledge(&self, alert_id: &str, caller: &Caller, request: &Request<Bytes>) -> Response<Body> {
        let ack: AckRequest = match json_body(request, "{\"note\": \"...\", \"by\": \"...\"}") {
            Ok(a) => a,
            Err(r) => return *r,
        };
        let by = match who(caller, ack.by.as_deref(), "acknowledges") {
            Ok(b) => b,
            Err(r) => return *r,
        };
        let note = ack.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
        if note.is_some_and(|n| n.chars().count() > MAX_NOTE) {
            return error(400, "invalid", "note must be at most 500 characters");
        }
        let pid = match self.owner_of(alert_id, ack.patient_id.as_deref()).await {
            Ok(Some(pid)) => pid,
            Ok(None) => return error(404, "not-found", "no alert with this id"),
            Err(e) => return port_error(e),
        };
        let now = Utc::now();
        let outcome = self
            .records
            .update(&pid, |record| {
                let Some(record) = record else {
                    return Ok::<_, PortError>(Step::Keep(Acknowledged::NotFound));
                };
                let (d, what) = alerting::acknowledge(record, alert_id, &by, note, now);
                Ok(if d.changed {
                    Step::Write {
                        record: d.record,
                        resources: Vec::new(),
                        out: what,
                    }
                } else {
                    Step::Keep(what)
                })
            })
            .await;
        match outcome {
            Ok(Acknowledged::Now) => {
                tracing::info!(patient_id = %pid, alert_id, "alert acknowledged");
                no_store(json_response(
                    200,
                    &json!({"id": alert_id, "patient_id": pid, "status": "acknowledged", "changed": true}),
                ))
            }
            Ok(Acknowledged::Already) => no_store(json_response(
                200,
                &json!({"id": alert_id, "patient_id": pid, "status": "acknowledged", "changed": false}),
            )),
            Ok(Acknowledged::NotActive(s)) => error(
                409,
                "business-rule",
                &format!(
                    "the alert is {} and so closed: only an active or escalated alert can be acknowledged",
                    view::status(s)
                ),
            ),
            Ok(Acknowledged::NotFound) => error(404, "not-found", "no alert with this id"),
            Err(e) => port_error(e),
        }
    }

    fn sign_in_form(&self, error: Option<&str>) -> Response<Body> {
        render(
            if error.is_some() { 401 } else { 200 },
            &SignIn {
                user: None,
                csrf: None,
                open_access: false,
                error: error.map(str::to_owned),
            },
        )
    }

    fn sign_in(&self, request: &Request<Bytes>) -> Response<Body> {
        let form: BTreeMap<String, String> = form_urlencoded::parse(request.body()).into_owned().collect();
        let name = form.get("name").map(|n| n.trim()).unwrap_or_default();
        let token = form.get("token").map(String::as_str).unwrap_or_default();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            return self.sign_in_form(Some("Type your name and role (at most 80 characters)."));
        }
        if !self.access.token_matches(token) {
            tracing::warn!("a board sign-in was refused: wrong access code");
            return self.sign_in_form(Some("That access code is not right."));
        }
        let secure = access::over_tls(request.headers());
        let cookie = self.access.session(name).map(|c| access::set_cookie(Some(&c), secure));
        redirect("/", cookie)
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

impl<S: StateStore + Clone, L: EventLog + Clone, P: Publisher> Board<S, L, P> {
    /// Put a kept rejected delivery back on its lane (once it can succeed: a fixed table, a
    /// mapped identifier authority).
    async fn replay(&self, handle: &str) -> Response<Body> {
        if !wardwatch_domain::ids::is_fhir_id(handle) {
            return error(404, "not-found", "no rejected delivery with this handle");
        }
        match self.rejects.replay(handle, &self.records.bus).await {
            Ok(Replay::Replayed) => {
                tracing::info!(%handle, "rejected delivery replayed");
                no_store(json_response(202, &json!({"replayed": handle})))
            }
            Ok(Replay::NotFound) => error(404, "not-found", "no rejected delivery with this handle"),
            Ok(Replay::Truncated { kept, of }) => error(
                409,
                "too-costly",
                &format!(
                    "only the first {kept} of {of} bytes of this delivery were kept: it cannot be replayed; have the sender send it again"
                ),
            ),
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

impl<S: StateStore + Clone, L: EventLog + Clone, P: Publisher> Board<S, L, P> {
    async fn route(&self, request: Request<Bytes>) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        match (&method, path.as_str()) {
            (&Method::GET, "/assets/board.css") => return asset("text/css; charset=utf-8", CSS),
            (&Method::GET, "/assets/board.js") => return asset("text/javascript; charset=utf-8", JS),
            (&Method::GET, "/signin") if !self.access.is_open() => return self.sign_in_form(None),
            (&Method::POST, "/signin") if !self.access.is_open() => return self.sign_in(&request),
            (&Method::POST, "/signout") => {
                return redirect(
                    "/signin",
                    Some(access::set_cookie(None, access::over_tls(request.headers()))),
                );
            }
            _ => {}
        }
        let caller = self.access.caller(request.headers());
        if caller == Caller::Nobody {
            return if path.starts_with("/api/") || path.starts_with("/partials/") {
                let mut r = error(
                    401,
                    "login",
                    "sign in at /signin, or send Authorization: Bearer <BOARD_TOKEN>",
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            } else {
                redirect("/signin", None)
            };
        }
        let (user, csrf) = match &caller {
            Caller::Session { name, cookie } => (Some(name.clone()), self.access.csrf(cookie)),
            _ => (None, None),
        };
        let open_access = self.access.is_open();
        if method == Method::POST {
            if let Some(handle) = path
                .strip_prefix("/api/rejected/")
                .and_then(|rest| rest.strip_suffix("/replay"))
            {
                if !self.access.csrf_ok(&caller, request.headers()) {
                    return error(403, "security", "missing or wrong X-CSRF-Token: reload the page");
                }
                return self.replay(handle).await;
            }
            if let Some(id) = path
                .strip_prefix("/api/patients/")
                .and_then(|rest| rest.strip_suffix("/rrt"))
            {
                if !self.access.csrf_ok(&caller, request.headers()) {
                    return error(403, "security", "missing or wrong X-CSRF-Token: reload the page");
                }
                if !wardwatch_domain::ids::is_fhir_id(id) {
                    return error(404, "not-found", "no such patient");
                }
                return self.record_rrt(id, &caller, &request).await;
            }
            let Some(id) = path
                .strip_prefix("/api/alerts/")
                .and_then(|rest| rest.strip_suffix("/ack"))
            else {
                return error(
                    405,
                    "not-supported",
                    "the only things to POST here are /api/alerts/<id>/ack, /api/patients/<id>/rrt and /api/rejected/<handle>/replay",
                );
            };
            if !self.access.csrf_ok(&caller, request.headers()) {
                return error(403, "security", "missing or wrong X-CSRF-Token: reload the page");
            }
            if !wardwatch_domain::ids::is_fhir_id(id) {
                return error(404, "not-found", "no alert with this id");
            }
            return self.acknowledge(id, &caller, &request).await;
        }
        if method != Method::GET {
            return error(
                405,
                "not-supported",
                "use GET (and POST /api/alerts/<id>/ack, /api/patients/<id>/rrt)",
            );
        }
        match path.as_str() {
            "/" => match self.board_main().await {
                Ok(main) => render(
                    200,
                    &BoardPage {
                        user,
                        csrf,
                        open_access,
                        main,
                    },
                ),
                Err(e) => port_error(e),
            },
            "/partials/board" => match self.board_main().await {
                Ok(main) => render(200, &main),
                Err(e) => port_error(e),
            },
            p if p.starts_with("/patients/") || p.starts_with("/partials/patients/") => {
                let partial = p.starts_with("/partials/");
                let id = p
                    .strip_prefix("/partials/patients/")
                    .or_else(|| p.strip_prefix("/patients/"))
                    .unwrap_or_default();
                // `is_fhir_id` also refuses a path with more segments (`/patients/a/b`).
                if !wardwatch_domain::ids::is_fhir_id(id) {
                    return error(404, "not-found", "no such patient");
                }
                match self.patient_main(id).await {
                    Ok(Some(main)) if partial => render(200, &main),
                    Ok(Some(main)) => render(
                        200,
                        &PatientPage {
                            user,
                            csrf,
                            open_access,
                            main,
                        },
                    ),
                    Ok(None) => error(404, "not-found", "no such patient"),
                    Err(e) => port_error(e),
                }
            }
            "/api/events/stream" => self.stream(&request),
            p if p.starts_with("/api/") => self.api(&request).await,
            _ => error(404, "not-found", "no such page"),
        }
    }

    fn stream(&self, request: &Request<Bytes>) -> Response<Body> {
        // A reconnecting browser says where it stopped; that wins over the URL it first used.
        let resume = request
            .headers()
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .or_else(|| query(request).get("after").cloned().filter(|a| !a.is_empty()));
        let after = match resume {
            None => None,
            Some(a) => match EventId::parse(&a) {
                Some(id) => Some(id),
                None => {
                    return error(
                        400,
                        "invalid",
                        "Last-Event-ID / after must be an event id like 1764250000000-0",
                    );
                }
            },
        };
        self.feed.open(after)
    }

    async fn api(&self, request: &Request<Bytes>) -> Response<Body> {
        let path = request.uri().path();
        let result = match path {
            "/api/inpatients" => {
                let current_to = match self.current_to().await {
                    Ok(id) => id,
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
            "/api/alerts" => match alert_query(&query(request)) {
                Ok(q) => self.alerts(&q).await,
                Err(why) => return error(400, "invalid", &why),
            },
            p if p.starts_with("/api/alerts/") => {
                let id = &p["/api/alerts/".len()..];
                if !wardwatch_domain::ids::is_fhir_id(id) {
                    return error(404, "not-found", "no alert with this id");
                }
                return self.detected_issue(id, request).await;
            }
            "/api/events" => return self.events(request).await,
            "/api/rejected" => self
                .rejects
                .list(Utc::now())
                .await
                .and_then(|l| serde_json::to_value(l).map_err(|e| PortError::Corrupt(e.to_string())))
                .map(|items| json!({"rejected": items, "kept_at_most": rejects::KEEP_REJECTED, "days": rejects::KEEP_DAYS})),
            p if p.starts_with("/api/rejected/") => {
                let handle = &p["/api/rejected/".len()..];
                if !wardwatch_domain::ids::is_fhir_id(handle) {
                    return error(404, "not-found", "no rejected delivery with this handle");
                }
                match self.rejects.get(handle).await {
                    Ok(Some(r)) => serde_json::to_value(r).map_err(|e| PortError::Corrupt(e.to_string())),
                    Ok(None) => return error(404, "not-found", "no rejected delivery with this handle"),
                    Err(e) => Err(e),
                }
            }
            p if let Some(id) = p
                .strip_prefix("/api/patients/")
                .and_then(|rest| rest.strip_suffix("/audit")) =>
            {
                if !wardwatch_domain::ids::is_fhir_id(id) {
                    return error(404, "not-found", "no such patient");
                }
                return self.audit(id).await;
            }
            p if p.starts_with("/api/patients/") => {
                let id = &p["/api/patients/".len()..];
                if !wardwatch_domain::ids::is_fhir_id(id) {
                    return error(404, "not-found", "no such patient");
                }
                match self.load_following(id).await {
                    Ok(Some(mut r)) => {
                        r.outbox.clear();
                        serde_json::to_value(&r)
                            .map(|mut v| {
                                if r.id != id {
                                    v["followed_from"] = json!(id);
                                }
                                v
                            })
                            .map_err(|e| PortError::Corrupt(e.to_string()))
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
    }
}

impl<S: StateStore + Clone, L: EventLog + Clone, P: Publisher> Endpoint for Board<S, L, P> {
    fn handle(&self, request: Request<Bytes>) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send + '_>> {
        Box::pin(self.route(request))
    }

    fn behind_app_token(&self) -> bool {
        false
    }

    fn close(&self) {
        self.feed.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<AlertQuery, String> {
        alert_query(&pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn without_a_status_the_open_alerts_are_listed() {
        let q = parse(&[]).expect("valid");
        assert_eq!(
            q.statuses,
            [AlertStatus::Active, AlertStatus::Acknowledged, AlertStatus::Escalated]
        );
        assert!(q.patient.is_none());
    }

    #[test]
    fn statuses_may_be_one_or_a_comma_separated_list_and_anything_else_is_refused_naming_the_allowed_ones() {
        let q = parse(&[("status", "resolved, withdrawn,resolved")]).expect("valid");
        assert_eq!(q.statuses, [AlertStatus::Resolved, AlertStatus::Withdrawn]);
        let why = parse(&[("status", "active,bogus")]).err().expect("refused");
        assert!(why.contains("`bogus`") && why.contains(STATUSES), "{why}");
        assert!(parse(&[("status", "active,")]).is_err(), "an empty item is refused");
        assert!(parse(&[("ward", "7B")]).is_err(), "an unknown parameter is refused");
    }

    #[test]
    fn a_patient_identifier_with_a_system_is_looked_up_and_a_bare_value_matched() {
        match parse(&[("patient.identifier", "urn:mrn|MRN0001")])
            .expect("valid")
            .patient
        {
            Some(PatientFilter::Identifier(i)) => {
                assert_eq!((i.system.as_str(), i.value.as_str()), ("urn:mrn", "MRN0001"))
            }
            _ => panic!("a system and a value"),
        }
        for bare in ["MRN0001", "|MRN0001"] {
            assert!(matches!(
                parse(&[("patient.identifier", bare)]).expect("valid").patient,
                Some(PatientFilter::Value(v)) if v == "MRN0001"
            ));
        }
        assert!(parse(&[("patient.identifier", "urn:mrn|")]).is_err());
    }
}
