//! The ward board: a server-rendered page of current inpatients with live alerts, its JSON API
//! and its event stream. Every answer that shows patient data carries `Cache-Control: no-store`.
//!
//! Pages (HTML, askama templates in `board/templates/`, script and styles in `board/assets/`,
//! served from the binary — nothing is fetched from elsewhere):
//! - `GET /` — inpatients ward by ward, the alert feed with Acknowledge, patients on no ward;
//! - `GET /patients/<id>` — one patient: each analyte's history as a small chart, the alert trail;
//! - `GET /partials/board`, `GET /partials/patients/<id>` — the same state without the frame,
//!   fetched again by the page on every event;
//! - `GET|POST /signin`, `POST /signout` — when `BOARD_TOKEN` is set ([`access`]).
//!
//! API (JSON):
//! - `GET /api/inpatients` — current inpatients, ward by ward: patient id, encounter id, MRN,
//!   name, ward, bed, admitted at, active alerts. Header `Wardwatch-Event-Id`: the event-log id
//!   the answer is current to (read before the state, so a reader who then follows
//!   `/api/events?after=<it>` misses nothing).
//! - `GET /api/alerts[?status=active|acknowledged|escalated]` — open alerts (all open ones
//!   without `status`), reached through the ward indexes and the list of patients on no ward.
//! - `POST /api/alerts/<id>/ack` `{"note": "...", "by": "...", "patient_id": "..."}` — acknowledge
//!   (`by`: the name typed on the page when no sign-in is configured; `patient_id` optional, it
//!   saves a search). Acknowledging twice changes nothing.
//! - `GET /api/patients/<id>` — one patient's record.
//! - `GET /api/events?after=<id>&limit=<n>` — the event log after `after`, oldest first.
//! - `GET /api/rejected` — deliveries refused for good and kept for replay: handle, lane, when,
//!   why (no patient data); `GET /api/rejected/<handle>` — one, whole (payload included);
//!   `POST /api/rejected/<handle>/replay` — put it back on its lane.
//! - `GET /api/events/stream` — the same as Server-Sent Events ([`stream`]).
//!
//! Reads are sized to the wards: the list of wards, each ward's index, then the records it
//! names (one pipelined read). An index entry whose record says otherwise is passed over (the
//! index catches up when that record's outbox drains).

pub mod access;
pub mod page;
pub mod stream;
pub mod view;

use std::collections::{BTreeMap, HashSet};

use askama::Template;
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderValue, Method, Request, Response, header};
use serde::Deserialize;
use serde_json::{Value, json};
use wardwatch_domain::alert::{Alert, AlertStatus};
use wardwatch_domain::decide::alerting::{self, Acknowledged};
use wardwatch_domain::keys;
use wardwatch_domain::outcome::operation_outcome;
use wardwatch_domain::ports::{EventId, EventLog, PortError, Publisher, StateStore};
use wardwatch_domain::record::PatientRecord;
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
}

const CSS: &str = include_str!("../assets/board.css");
const JS: &str = include_str!("../assets/board.js");
/// The page loads nothing from elsewhere and runs no inline script.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const MAX_NOTE: usize = 500;
const MAX_NAME: usize = 80;

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
    pub fn new(records: Records<S, L, P>, token: Option<Secret>) -> Self {
        let feed = stream::Feed::new(records.log.clone());
        Self {
            rejects: Rejects::new(records.store.clone()),
            records,
            access: Access::new(token),
            feed,
        }
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

    /// Open alerts (optionally of one status), oldest first.
    pub async fn alerts(&self, status: Option<AlertStatus>) -> Result<Value, PortError> {
        let (mut records, unplaced) = self.shown_records().await?;
        records.extend(unplaced);
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

    /// The log id a state read is current to: read before the state.
    async fn current_to(&self) -> Result<String, PortError> {
        Ok(self.records.log.newest().await?.unwrap_or_else(|| "0-0".to_owned()))
    }

    async fn board_main(&self) -> Result<BoardMain, PortError> {
        let event_id = self.current_to().await?;
        let (inpatients, unplaced) = self.shown_records().await?;
        let now = Utc::now();
        let feed = view::feed(inpatients.iter().chain(&unplaced));
        Ok(BoardMain {
            event_id,
            rendered: view::hhmm(now),
            inpatients: inpatients.len(),
            active_alerts: feed.iter().filter(|a| a.active).count(),
            wards: view::wards(&inpatients, now),
            feed,
            unplaced: view::unplaced(&unplaced),
        })
    }

    async fn patient_main(&self, id: &str) -> Result<Option<PatientMain>, PortError> {
        let event_id = self.current_to().await?;
        let Some(mut r) = self.records.load(id).await? else {
            return Ok(None);
        };
        // A record of results that came first, since joined: show the patient it joined.
        if let Some(into) = r.merged_into.clone()
            && let Some(joined) = self.records.load(&into).await?
        {
            r = joined;
        }
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
        }))
    }

    /// Whose alert this is: the hint if that record has it, else a search of the records the
    /// board shows (acknowledging is a person's action, not a hot path).
    async fn owner_of(&self, alert_id: &str, hint: Option<&str>) -> Result<Option<String>, PortError> {
        if let Some(pid) = hint.filter(|p| wardwatch_domain::ids::is_fhir_id(p))
            && let Some(r) = self.records.load(pid).await?
        {
            let r = match r.merged_into.clone() {
                Some(into) => self.records.load(&into).await?.unwrap_or(r),
                None => r,
            };
            if r.alerts.iter().any(|a| a.id == alert_id) {
                return Ok(Some(r.id));
            }
        }
        let (mut records, unplaced) = self.shown_records().await?;
        records.extend(unplaced);
        Ok(records
            .into_iter()
            .find(|r| r.alerts.iter().any(|a| a.id == alert_id))
            .map(|r| r.id))
    }

    async fn acknowledge(&self, alert_id: &str, caller: &Caller, request: &Request<Bytes>) -> Response<Body> {
        if !request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return error(415, "not-supported", "send the acknowledgement as application/json");
        }
        let ack: AckRequest = if request.body().is_empty() {
            AckRequest::default()
        } else {
            match serde_json::from_slice(request.body()) {
                Ok(a) => a,
                Err(e) => {
                    return error(
                        400,
                        "invalid",
                        &format!(
                            "the body must be {{\"note\": \"...\", \"by\": \"...\"}} (line {} column {})",
                            e.line(),
                            e.column()
                        ),
                    );
                }
            }
        };
        let by = match caller {
            Caller::Session { name, .. } => name.clone(),
            _ => match ack.by.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
                Some(b) if b.chars().count() <= MAX_NAME && !b.chars().any(char::is_control) => b.to_owned(),
                Some(_) => {
                    return error(
                        400,
                        "invalid",
                        "by must be at most 80 characters, without control characters",
                    );
                }
                None if matches!(caller, Caller::Program) => "api".to_owned(),
                None => return error(400, "required", "say who acknowledges: by (a name) is required"),
            },
        };
        let note = ack.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
        if note.is_some_and(|n| n.chars().count() > MAX_NOTE) {
            return error(400, "invalid", "note must be at most 500 characters");
        }
        let pid = match self.owner_of(alert_id, ack.patient_id.as_deref()).await {
            Ok(Some(pid)) => pid,
            Ok(None) => return error(404, "not-found", "no open alert with this id"),
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
                    "the alert is {}: only an active alert can be acknowledged",
                    view::status(s)
                ),
            ),
            Ok(Acknowledged::NotFound) => error(404, "not-found", "no open alert with this id"),
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
            let Some(id) = path
                .strip_prefix("/api/alerts/")
                .and_then(|rest| rest.strip_suffix("/ack"))
            else {
                return error(
                    405,
                    "not-supported",
                    "the only things to POST here are /api/alerts/<id>/ack and /api/rejected/<handle>/replay",
                );
            };
            if !self.access.csrf_ok(&caller, request.headers()) {
                return error(403, "security", "missing or wrong X-CSRF-Token: reload the page");
            }
            if !wardwatch_domain::ids::is_fhir_id(id) {
                return error(404, "not-found", "no open alert with this id");
            }
            return self.acknowledge(id, &caller, &request).await;
        }
        if method != Method::GET {
            return error(405, "not-supported", "use GET (and POST /api/alerts/<id>/ack)");
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
            "/api/alerts" => {
                let status = match query(request).get("status").map(String::as_str) {
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
