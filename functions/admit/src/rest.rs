//! The FHIR REST API under `/fhir`: what each interaction means here, and how it is answered.
//!
//! | request | interaction |
//! |---|---|
//! | `POST /fhir/<Patient\|Encounter>` | create (`If-None-Exist: identifier=<system>\|<value>` for a Patient: conditional create) |
//! | `GET /fhir/<type>/<id>` and `…/_history/<v>` (the current version) | read, vread |
//! | `PUT /fhir/<type>/<id>` (`If-Match: W/"<v>"`) | update, or create with that id |
//! | `PUT /fhir/Patient?identifier=<system>\|<value>` | conditional update |
//! | `DELETE /fhir/Encounter/<id>` | a mistaken admission: the stay becomes `entered-in-error`, the patient leaves the board (`admission-cancelled`); reading it answers 410 |
//! | `GET /fhir/Patient?identifier=…`, `GET /fhir/Encounter?patient=…`, `?status=in-progress&location=<ward>` | search: a `searchset` Bundle with `total`, `self` and `next` links; `_count` (default 50, at most 500), `_offset` |
//! | `POST /fhir` | a `transaction` or `batch` Bundle ([`crate::bundle`]); a Patient or Encounter posted here is a create, as before |
//!
//! Media types: `application/fhir+json` and `application/json` (a `charset` parameter is fine);
//! `_format` is honoured (`json`, either media type); anything else, in `Content-Type`,
//! `_format` or an `Accept` that takes no JSON, is 415. Writes answer with `Location:
//! <base>/<type>/<id>/_history/<v>`, `ETag: W/"<v>"`, `Last-Modified`, and the resource with
//! `meta.versionId` / `meta.lastUpdated`, or as `Prefer: return=minimal|representation|
//! OperationOutcome` asks. Errors are OperationOutcomes whose `expression` is a FHIRPath
//! (`Bundle.entry[2].resource.gender`): 400 malformed, 404 unknown, 405 with `Allow`, 409/412
//! version conflicts, 410 deleted, 413 too large (the runtime), 415 media type, 422 valid JSON
//! that is not a valid resource or cannot be admitted.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wardwatch_domain::Issue;
use wardwatch_domain::ports::{EventLog, Publisher, StateStore};
use wardwatch_domain::record::{PatientRecord, ResourceVersion};
use wardwatch_runtime::{Event, Failure, Output};

use crate::{Admit, AdmitError, Expect, Plan, Written, identifier_query};

/// Where the API is mounted (the hosts mount it here).
pub const PREFIX: &str = "/fhir";

/// The types admit keeps.
pub const KEPT: &[&str] = &["Patient", "Encounter"];

/// Search paging.
const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 500;

/// What the client asked to get back from a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

/// One request, as the API sees it.
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) segments: Vec<&'a str>,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) query: &'a str,
    pub(crate) event: &'a Event,
    /// `<scheme>://<host>/fhir`, or `/fhir` when the request named no host.
    pub(crate) base: String,
    pub(crate) now: DateTime<Utc>,
}

impl Request<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.event.context.header(name)
    }

    fn prefer(&self) -> Return {
        match self.header("prefer").map(|p| p.to_ascii_lowercase()) {
            Some(p) if p.contains("return=minimal") => Return::Minimal,
            Some(p) if p.contains("return=operationoutcome") => Return::OperationOutcome,
            _ => Return::Representation,
        }
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn is_json_media(media: &str) -> bool {
    let media = media.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    matches!(
        media.as_str(),
        "application/fhir+json" | "application/json" | "json" | "application/json+fhir" | "*/*" | "application/*"
    )
}

/// The base URL the client used (behind a proxy: `X-Forwarded-Proto` / `-Host`).
fn base_url(event: &Event) -> String {
    let host = event
        .context
        .header("x-forwarded-host")
        .or_else(|| event.context.header("host"))
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()));
    match host {
        Some(host) => {
            let scheme = match event.context.header("x-forwarded-proto") {
                Some("https") => "https",
                _ => "http",
            };
            format!("{scheme}://{host}{PREFIX}")
        }
        None => PREFIX.to_owned(),
    }
}

/// `_format` and `Accept`: JSON or nothing.
fn negotiate(req: &Request<'_>) -> Result<(), AdmitError> {
    if let Some(format) = req.param("_format")
        && !is_json_media(format)
    {
        return Err(AdmitError::MediaType(format.to_owned()));
    }
    if let Some(accept) = req.header("accept")
        && !accept.split(',').any(is_json_media)
    {
        return Err(AdmitError::MediaType(accept.to_owned()));
    }
    Ok(())
}

/// The request body as JSON, after its `Content-Type`.
pub(crate) fn body(event: &Event) -> Result<Value, AdmitError> {
    if let Some(ct) = &event.context.content_type
        && !ct.trim().is_empty()
        && !is_json_media(ct)
    {
        return Err(AdmitError::MediaType(
            ct.split(';').next().unwrap_or_default().trim().to_owned(),
        ));
    }
    if event.payload.is_empty() {
        return Err(AdmitError::BadRequest(
            "the request has no body: send a FHIR resource".into(),
        ));
    }
    serde_json::from_slice(&event.payload)
        .map_err(|e| AdmitError::NotJson(format!("line {} column {}", e.line(), e.column())))
}

/// A JSON pointer into a resource of type `root` as a FHIRPath: `/entry/2/resource/gender` →
/// `Bundle.entry[2].resource.gender`.
pub fn fhirpath(root: &str, pointer: &str) -> String {
    if pointer.starts_with(root) || pointer.is_empty() && root.is_empty() {
        return pointer.to_owned();
    }
    let mut path = root.to_owned();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.chars().all(|c| c.is_ascii_digit()) {
            path.push_str(&format!("[{segment}]"));
        } else {
            path.push('.');
            path.push_str(&segment);
        }
    }
    path
}

/// The failure told to the client: issue locations as FHIRPath from `root`.
fn failure(e: AdmitError, root: &str) -> Failure {
    let mut f = Failure::from(e);
    for issue in &mut f.issues {
        if root.is_empty() || !issue.location.starts_with('/') && !issue.location.is_empty() {
            continue;
        }
        issue.location = fhirpath(root, &issue.location);
    }
    f
}

/// The `ETag` of a version.
pub fn etag(version: &ResourceVersion) -> String {
    format!("W/\"{}\"", version.id)
}

/// An HTTP date (`Last-Modified`).
pub fn http_date(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// `W/"3"`, `"3"` or `3` → `3`.
pub(crate) fn version_of_etag(tag: &str) -> String {
    tag.trim().trim_start_matches("W/").trim_matches('"').to_owned()
}

/// The answer to a read or a write of one resource.
fn resource_output(
    req: &Request<'_>,
    status: u16,
    resource_type: &str,
    id: &str,
    version: Option<ResourceVersion>,
    resource: Value,
    write: bool,
) -> Output {
    let prefer = if write { req.prefer() } else { Return::Representation };
    let mut out = match prefer {
        Return::Representation => Output::ok(resource),
        Return::Minimal => Output::accepted(),
        Return::OperationOutcome => Output::ok(json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational",
                       "diagnostics": format!("{resource_type}/{id} {}", if status == 201 { "created" } else { "stored" })}]
        })),
    }
    .with_status(status);
    if let Some(v) = version {
        if write {
            out = out.with_header(
                "location",
                format!("{}/{resource_type}/{id}/_history/{}", req.base, v.id),
            );
        } else {
            out = out.with_header(
                "content-location",
                format!("{}/{resource_type}/{id}/_history/{}", req.base, v.id),
            );
        }
        out = out
            .with_header("etag", etag(&v))
            .with_header("last-modified", http_date(v.updated));
    }
    out
}

/// The entry point of the HTTP trigger.
pub async fn handle<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    event: &Event,
) -> Result<Output, Failure> {
    let path = event.context.source.as_str();
    let rest = path.strip_prefix(PREFIX).unwrap_or(path);
    let query = event.context.query.as_deref().unwrap_or_default();
    let req = Request {
        method: event.context.method.as_deref().unwrap_or("POST"),
        segments: rest.split('/').filter(|s| !s.is_empty()).collect(),
        params: form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
        query,
        event,
        base: base_url(event),
        now: event.context.received_at,
    };
    negotiate(&req).map_err(|e| failure(e, ""))?;
    route(admit, &req).await.map_err(|e| {
        // Issue locations are FHIRPaths from the resource sent: the URL's type, or at the
        // base the body's (read again only on this error path).
        let root = match req.segments.first() {
            Some(rt) => (*rt).to_owned(),
            None => serde_json::from_slice::<TypeOnly>(&event.payload)
                .ok()
                .and_then(|t| t.resource_type)
                .unwrap_or_else(|| "Bundle".to_owned()),
        };
        failure(e, &root)
    })
}

#[derive(serde::Deserialize)]
struct TypeOnly {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
}

fn check_type(resource_type: &str) -> Result<(), AdmitError> {
    if KEPT.contains(&resource_type) {
        return Ok(());
    }
    if wardwatch_fhir::is_resource_type(resource_type) {
        Err(AdmitError::ResourceType(format!(
            "{resource_type} is not served here: admit keeps Patients and Encounters (laboratory results arrive on the lab feed; GET /fhir/metadata lists what is served)"
        )))
    } else {
        Err(AdmitError::BadRequest(format!(
            "`{resource_type}` is not a FHIR R4 resource type"
        )))
    }
}

async fn route<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
) -> Result<Output, AdmitError> {
    let segments = req.segments.as_slice();
    match (req.method, segments) {
        ("POST", []) => post_base(admit, req).await,
        (_, []) => Err(AdmitError::Method(
            "the base takes a transaction or batch Bundle by POST".into(),
            "POST",
        )),
        (_, ["metadata"]) => Err(AdmitError::Method(
            "the CapabilityStatement is read with GET".into(),
            "GET",
        )),
        (_, [rt, ..]) if !KEPT.contains(rt) => Err(check_type(rt)
            .err()
            .unwrap_or_else(|| AdmitError::NotFound(format!("{rt} is not served here")))),
        ("POST", [rt]) => {
            let resource = body(req.event)?;
            create(admit, req, rt, resource).await
        }
        ("GET", [rt]) => search(admit, req, rt).await,
        ("PUT", [rt]) if !req.query.is_empty() => conditional_update(admit, req, rt).await,
        (_, [_]) => Err(AdmitError::Method(
            "a type takes POST (create), GET (search) and, for Patient, PUT ?identifier= (conditional update)".into(),
            "GET, POST, PUT",
        )),
        ("GET", [rt, id]) => read(admit, req, rt, id, None).await,
        ("GET", [rt, id, "_history", v]) => read(admit, req, rt, id, Some(v)).await,
        ("PUT", [rt, id]) => {
            let resource = body(req.event)?;
            update(admit, req, rt, id, resource).await
        }
        ("DELETE", ["Encounter", id]) => delete(admit, req, id).await,
        (_, [_, "_search"]) => Err(AdmitError::Method(
            "search with GET and the parameters in the query".into(),
            "GET",
        )),
        (_, ["Encounter", _]) => Err(AdmitError::Method(
            "an Encounter takes GET, PUT and DELETE".into(),
            "GET, PUT, DELETE",
        )),
        (_, [_, _]) => Err(AdmitError::Method(
            "a Patient takes GET and PUT (patients are not deleted here)".into(),
            "GET, PUT",
        )),
        (_, [_, _, "_history"]) => Err(AdmitError::BadRequest(
            "history is not kept: read the current version, or vread it by its versionId".into(),
        )),
        _ => Err(AdmitError::NotFound(format!(
            "no FHIR interaction at {}",
            req.event.context.source
        ))),
    }
}

/// `POST /fhir`: a Bundle, or (as before) a Patient or an Encounter.
async fn post_base<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
) -> Result<Output, AdmitError> {
    let resource = body(req.event)?;
    let rt = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match rt.as_str() {
        "Bundle" => crate::bundle::process(admit, req, resource).await,
        "Patient" | "Encounter" => create(admit, req, &rt, resource).await,
        "" => Err(AdmitError::Invalid(vec![Issue::new(
            "/resourceType",
            "a FHIR resource needs a string `resourceType`",
        )])),
        other if !wardwatch_fhir::is_resource_type(other) => Err(AdmitError::BadRequest(format!(
            "`{other}` is not a FHIR R4 resource type"
        ))),
        other => Err(AdmitError::Refused(Issue::new(
            "/resourceType",
            format!(
                "`{other}` is not taken here: post Patients and Encounters, or a transaction or batch Bundle (laboratory results arrive on the lab feed)"
            ),
        ))),
    }
}

/// The body's type must be the URL's; then the official schema and typed parsing.
pub(crate) fn check_resource(resource: &Value, expected: &str) -> Result<(), AdmitError> {
    let rt = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    if rt.is_empty() {
        return Err(AdmitError::Invalid(vec![Issue::new(
            "/resourceType",
            "a FHIR resource needs a string `resourceType`",
        )]));
    }
    if rt != expected {
        return Err(AdmitError::BadRequest(format!(
            "the body is a {rt} but the URL is for {expected}"
        )));
    }
    wardwatch_fhir::validate_resource(resource).map_err(AdmitError::Invalid)
}

/// A write's answer, from what it came to.
async fn written_output<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
    w: Written,
) -> Result<Output, AdmitError> {
    let status = if w.created && w.applied { 201 } else { 200 };
    // Superseded by a newer version already stored: the answer is what is stored.
    let current = match (&w.resource, w.applied) {
        (Some(r), true) => Some((crate::served(r.clone(), &w.id, w.version), w.version)),
        _ => match w.resource_type {
            "Patient" => admit.read_patient(&w.id).await?,
            _ => admit.read_encounter(&w.id).await.map_err(|e| match e {
                // A resend of a deleted admission does not bring it back.
                AdmitError::Gone(_) => AdmitError::Conflict(format!(
                    "Encounter/{} was deleted (a mistaken admission): sending it again does not bring it back; PUT it to restore it",
                    w.id
                )),
                other => other,
            })?,
        },
    };
    let (resource, version) = current.unwrap_or((Value::Null, w.version));
    Ok(resource_output(
        req,
        status,
        w.resource_type,
        &w.id,
        version,
        resource,
        true,
    ))
}

async fn create<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
    rt: &str,
    resource: Value,
) -> Result<Output, AdmitError> {
    check_resource(&resource, rt)?;
    if let Some(condition) = req.header("if-none-exist") {
        if rt != "Patient" {
            return Err(AdmitError::BadRequest(
                "conditional create (If-None-Exist) is supported for Patient, by identifier".into(),
            ));
        }
        let raw = identifier_query(condition.trim_start_matches('?'))
            .ok_or_else(|| AdmitError::BadRequest("If-None-Exist here is `identifier=<system>|<value>`".into()))?;
        if let Some(id) = admit.patient_by_identifier(&raw).await?
            && let Some((existing, version)) = admit.read_patient(&id).await?
        {
            return Ok(resource_output(req, 200, "Patient", &id, version, existing, true));
        }
    }
    let plan = match rt {
        "Patient" => Plan {
            patients: vec![admit.plan_patient(None, resource, None, None)?],
            ..Plan::default()
        },
        _ => Plan {
            encounters: vec![admit.plan_encounter(None, resource, None)?],
            ..Plan::default()
        },
    };
    let mut written = admit.admit(plan, req.now).await?;
    let w = written
        .pop()
        .ok_or_else(|| AdmitError::BadRequest("nothing was written".into()))?;
    written_output(admit, req, w).await
}

async fn update<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
    rt: &str,
    id: &str,
    mut resource: Value,
) -> Result<Output, AdmitError> {
    if !wardwatch_domain::ids::is_fhir_id(id) {
        return Err(AdmitError::BadRequest(format!(
            "`{id}` is not a FHIR id (letters, digits, `-` and `.`, at most 64)"
        )));
    }
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id != id => {
            return Err(AdmitError::BadRequest(format!(
                "the body's id `{body_id}` is not the URL's `{id}`"
            )));
        }
        Some(_) => {}
        None => {
            if resource.is_object() {
                resource["id"] = Value::String(id.to_owned());
            }
        }
    }
    check_resource(&resource, rt)?;
    // `meta.lastUpdated` of an update is the server's to set (a client sends back what it read):
    // an update is ordered as of its arrival, and `If-Match` guards it against a lost update.
    crate::strip_last_updated(&mut resource);
    let expect = req.header("if-match").map(|tag| Expect {
        resource_type: if rt == "Patient" { "Patient" } else { "Encounter" },
        id: id.to_owned(),
        version: version_of_etag(tag),
    });
    let mut plan = Plan {
        expect: expect.into_iter().collect(),
        ..Plan::default()
    };
    if rt == "Patient" {
        let mut p = admit.plan_patient(None, resource, Some(id.to_owned()), None)?;
        // An update is as of now unless it carries its own version time.
        p.stamp = Some(req.now);
        plan.patients.push(p);
    } else {
        let mut e = admit.plan_encounter(None, resource, Some(id.to_owned()))?;
        e.stamp = Some(req.now);
        // An update replaces the stay as it is now: it may reopen a finished one, or restore a
        // deleted one (a resend of a create may not).
        e.cancel_discharge = true;
        plan.encounters.push(e);
    }
    let mut written = admit.admit(plan, req.now).await?;
    let w = written
        .pop()
        .ok_or_else(|| AdmitError::BadRequest("nothing was written".into()))?;
    written_output(admit, req, w).await
}

async fn conditional_update<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
    rt: &str,
) -> Result<Output, AdmitError> {
    if rt != "Patient" {
        return Err(AdmitError::BadRequest(
            "conditional update is supported for Patient, by identifier".into(),
        ));
    }
    let raw = identifier_query(req.query)
        .ok_or_else(|| AdmitError::BadRequest("conditional update here is `?identifier=<system>|<value>`".into()))?;
    let resource = body(req.event)?;
    let id = match admit.patient_by_identifier(&raw).await? {
        Some(id) => id,
        None => {
            // No match: a create, with the body's id if it has one.
            return create(admit, req, rt, resource).await;
        }
    };
    update(admit, req, rt, &id, resource).await
}

async fn read<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
    rt: &str,
    id: &str,
    version: Option<&str>,
) -> Result<Output, AdmitError> {
    let found = match rt {
        "Patient" => admit.read_patient(id).await?,
        _ => admit.read_encounter(id).await?,
    };
    let Some((resource, current)) = found else {
        return Err(AdmitError::NotFound(format!("{rt}/{id} is not known")));
    };
    if let Some(v) = version
        && current.is_none_or(|c| c.id.to_string() != v)
    {
        return Err(AdmitError::NotFound(format!(
            "{rt}/{id} has no version {v} kept: only the current one ({}) is served",
            current.map_or(0, |c| c.id)
        )));
    }
    Ok(resource_output(req, 200, rt, id, current, resource, false))
}

/// A read of `<rt>/<id>` (a Bundle's GET entry).
pub(crate) async fn read_entry<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
    rt: &str,
    id: &str,
) -> Result<Output, AdmitError> {
    read(admit, req, rt, id, None).await
}

async fn delete<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
    id: &str,
) -> Result<Output, AdmitError> {
    match admit.delete_encounter(None, id, req.now).await? {
        Deleted::Done | Deleted::Already => Ok(Output::ok(json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational",
                       "diagnostics": format!("Encounter/{id} is deleted: the stay is entered-in-error and the patient is off the ward board")}]
        }))),
        Deleted::Unknown => Err(AdmitError::NotFound(format!("Encounter/{id} is not known"))),
    }
}

/// What a delete found.
pub(crate) enum Deleted {
    Done,
    Already,
    Unknown,
}

impl<S: StateStore, L: EventLog, P: Publisher> Admit<S, L, P> {
    /// Delete Encounter `id` (a mistaken admission).
    pub(crate) async fn delete_encounter(
        &self,
        entry: Option<usize>,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Deleted, AdmitError> {
        let Some(pid) = self.owner_of_encounter(id).await? else {
            return Ok(Deleted::Unknown);
        };
        match self.records().load(&pid).await? {
            Some(r) => match r.encounters.iter().find(|e| e.id == id) {
                Some(e) if e.deleted => return Ok(Deleted::Already),
                Some(_) => {}
                None => return Ok(Deleted::Unknown),
            },
            None => return Ok(Deleted::Unknown),
        }
        let plan = Plan {
            deletes: vec![(entry, id.to_owned(), pid)],
            ..Plan::default()
        };
        self.admit(plan, now).await?;
        Ok(Deleted::Done)
    }
}

/// A searchset Bundle of one page.
fn searchset(
    req: &Request<'_>,
    rt: &str,
    total: usize,
    offset: usize,
    count: usize,
    page: Vec<(String, Value)>,
) -> Value {
    let mut kept: Vec<(String, String)> = req
        .params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "_count" | "_offset" | "_format"))
        .cloned()
        .collect();
    let link = |offset: usize| {
        let mut all = kept.clone();
        all.push(("_count".into(), count.to_string()));
        all.push(("_offset".into(), offset.to_string()));
        let q: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(all)
            .finish();
        format!("{}/{rt}?{q}", req.base)
    };
    let mut links = vec![json!({"relation": "self", "url": link(offset)})];
    // `_count=0` asks for the total only: no page follows (a `next` to itself would never end);
    // a client's `_offset` may be any number (no overflow).
    if count > 0 && offset.saturating_add(count) < total {
        links.push(json!({"relation": "next", "url": link(offset + count)}));
    }
    if offset > 0 && count > 0 {
        links.push(json!({"relation": "previous", "url": link(offset.saturating_sub(count))}));
    }
    kept.clear();
    let entries: Vec<Value> = page
        .into_iter()
        .map(|(id, resource)| {
            json!({"fullUrl": format!("{}/{rt}/{id}", req.base), "resource": resource, "search": {"mode": "match"}})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "total": total, "link": links, "entry": entries})
}

fn paging(req: &Request<'_>) -> Result<(usize, usize), AdmitError> {
    let number = |name: &str, default: usize| -> Result<usize, AdmitError> {
        match req.param(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| AdmitError::BadRequest(format!("{name} is a whole number, not `{v}`"))),
        }
    };
    Ok((number("_count", DEFAULT_COUNT)?.min(MAX_COUNT), number("_offset", 0)?))
}

/// Search parameters this type takes; anything else is refused by name.
fn check_params(req: &Request<'_>, rt: &str, allowed: &[&str]) -> Result<(), AdmitError> {
    for (k, _) in &req.params {
        if matches!(k.as_str(), "_count" | "_offset" | "_format" | "_total") || allowed.contains(&k.as_str()) {
            continue;
        }
        return Err(AdmitError::BadRequest(format!(
            "`{k}` is not a search parameter of {rt} here: use {}",
            allowed.join(", ")
        )));
    }
    Ok(())
}

pub(crate) async fn search<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
    rt: &str,
) -> Result<Output, AdmitError> {
    let (count, offset) = paging(req)?;
    let (total, page) = match rt {
        "Patient" => {
            check_params(req, rt, &["identifier", "_id"])?;
            let id = match (req.param("identifier"), req.param("_id")) {
                (Some(_), _) => {
                    let raw = identifier_query(req.query)
                        .ok_or_else(|| AdmitError::BadRequest("identifier=<system>|<value>".into()))?;
                    admit.patient_by_identifier(&raw).await?
                }
                (None, Some(id)) => Some(id.to_owned()),
                (None, None) => {
                    return Err(AdmitError::BadRequest(
                        "search Patients by identifier=<system>|<value> (or _id)".into(),
                    ));
                }
            };
            let found = match id {
                Some(id) => admit.read_patient(&id).await?.map(|(r, _)| (id, r)),
                None => None,
            };
            let all: Vec<(String, Value)> = found.into_iter().collect();
            (all.len(), all.into_iter().skip(offset).take(count).collect())
        }
        _ => {
            check_params(req, rt, &["patient", "subject", "status", "location"])?;
            search_encounters(admit, req, count, offset).await?
        }
    };
    Ok(Output::ok(searchset(req, rt, total, offset, count, page)))
}

async fn search_encounters<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
    count: usize,
    offset: usize,
) -> Result<(usize, Vec<(String, Value)>), AdmitError> {
    let statuses: Option<Vec<&str>> = req.param("status").map(|s| s.split(',').map(str::trim).collect());
    let location = req
        .param("location")
        .map(|l| l.strip_prefix("Location/").unwrap_or(l).to_owned());
    let patient = req
        .param("patient")
        .or_else(|| req.param("subject"))
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned());
    let wanted = |status: &str| statuses.as_ref().is_none_or(|s| s.contains(&status));
    if let Some(pid) = patient {
        // Not a FHIR id: nobody's (and never a state key, which some stores refuse as a 5xx).
        if !wardwatch_domain::ids::is_fhir_id(&pid) {
            return Ok((0, Vec::new()));
        }
        let Some(record) = admit.records().load(&pid).await? else {
            return Ok((0, Vec::new()));
        };
        let states: Vec<_> = record
            .encounters
            .iter()
            .filter(|e| !e.deleted && wanted(&e.status))
            .filter(|e| location.as_ref().is_none_or(|l| e.ward.as_ref() == Some(l)))
            .cloned()
            .collect();
        let total = states.len();
        let page: Vec<_> = states.into_iter().skip(offset).take(count).collect();
        let served = admit.encounters_of(&page).await?;
        return Ok((
            total,
            page.iter()
                .map(|s| s.id.clone())
                .zip(served.into_iter().map(|(r, _)| r))
                .collect(),
        ));
    }
    // Current stays: the ward indexes list exactly the in-progress inpatient stays.
    if statuses.as_ref().is_some_and(|s| !s.contains(&"in-progress")) || (statuses.is_none() && location.is_none()) {
        if statuses.is_none() {
            return Err(AdmitError::BadRequest(
                "search Encounters by patient, or by status=in-progress and/or location=<ward>".into(),
            ));
        }
        return Err(AdmitError::BadRequest(
            "without patient, only current stays are searched: status=in-progress (with location=<ward>)".into(),
        ));
    }
    let wards = match &location {
        Some(w) => vec![w.clone()],
        None => admit.records().wards().await?,
    };
    let mut members = Vec::new();
    for ward in &wards {
        let mut ids = admit.records().ward_members(ward).await?;
        ids.sort();
        members.extend(ids);
    }
    let total = members.len();
    let page_ids: Vec<String> = members.into_iter().skip(offset).take(count).collect();
    let records: Vec<PatientRecord> = admit.records().load_many(&page_ids).await?;
    let states: Vec<_> = records
        .iter()
        .filter_map(|r| {
            let placed = r.placement.as_ref()?;
            r.encounters.iter().find(|e| e.id == placed.encounter_id).cloned()
        })
        .collect();
    let served = admit.encounters_of(&states).await?;
    Ok((
        total,
        states
            .iter()
            .map(|s| s.id.clone())
            .zip(served.into_iter().map(|(r, _)| r))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_fhirpath() {
        assert_eq!(
            fhirpath("Bundle", "/entry/2/resource/gender"),
            "Bundle.entry[2].resource.gender"
        );
        assert_eq!(fhirpath("Patient", "/name/0/given/1"), "Patient.name[0].given[1]");
        assert_eq!(fhirpath("Patient", ""), "Patient");
    }

    #[test]
    fn json_media_types_are_recognised() {
        assert!(is_json_media("application/fhir+json; charset=utf-8"));
        assert!(is_json_media("json"));
        assert!(!is_json_media("application/fhir+xml"));
        assert!(!is_json_media("xml"));
    }

    #[test]
    fn etags_are_read_weak_or_strong() {
        assert_eq!(version_of_etag("W/\"3\""), "3");
        assert_eq!(version_of_etag("\"12\""), "12");
        assert_eq!(version_of_etag("4"), "4");
    }
}
