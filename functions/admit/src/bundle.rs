//! `POST /fhir` with a `transaction` or `batch` Bundle.
//!
//! - **transaction**: every entry is checked (the Bundle, each kept resource against the R4
//!   schema and typed parsing, each request) before anything is written; any problem refuses
//!   the whole Bundle, naming the entry (`Bundle.entry[2].resource.gender`). Entries name
//!   resources by `fullUrl` (`urn:uuid:` too) and by conditional reference
//!   (`Patient?identifier=<system>|<value>`), resolved into stored `Patient/<id>` references.
//!   `request.ifNoneExist` (conditional create) and `PUT Patient?identifier=…` (conditional
//!   update) are honoured. The same resource twice in one transaction is refused, so the
//!   spec's processing order (DELETE, POST, PUT, GET) gives the same result as any other: the
//!   writes are made, then the GETs are answered from what was written. Everything for one
//!   patient is one compare-and-set of their record. A transaction that spans several
//!   patients is first made durable as an intent (the Bundle itself, under `intent-<digest>`,
//!   listed in `intents`), then written patient by patient, then the intent is deleted: a
//!   failure part-way leaves the intent, and sending the same Bundle again, or the next
//!   start-up ([`crate::Admit::roll_forward`]), finishes it — every write is idempotent. A
//!   reader can see such a transaction half-written only in the moment between its patients'
//!   writes.
//! - **batch**: each entry on its own, in the same processing order; one entry's failure is
//!   its own response entry (a 4xx with an OperationOutcome), never the others'.
//!
//! Either way, entries of types admit does not keep (Organization, Practitioner, Location,
//! Observation …) are accepted and skipped — `202 Accepted` with an informational outcome in
//! their response entry — so one such entry never sinks a Bundle; references to them are kept
//! as given. The response is a `transaction-response` / `batch-response` Bundle with one entry
//! per request entry, in request order: `201 Created` for a create, `200 OK` for an update or
//! a match, with `location` (`<type>/<id>/_history/<v>`), `etag` and `lastModified`.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wardwatch_domain::identity::RawIdentifier;
use wardwatch_domain::ports::{EventLog, PortError, Publisher, StateStore};
use wardwatch_domain::{Issue, decide::digest, ids, keys};
use wardwatch_runtime::{Failure, FailureKind, Output};

use crate::rest::{self, Deleted, KEPT, Request, etag};
use crate::{Admit, AdmitError, Expect, Plan, Written, identifier_query, relocate};

/// What one entry asks for.
enum Action {
    /// POST or PUT of a Patient or an Encounter.
    Write {
        rt: &'static str,
        put_id: Option<String>,
        /// `request.ifNoneExist` (POST) or `PUT Patient?identifier=…`: the identifier named.
        condition: Option<RawIdentifier>,
        conditional_update: bool,
        /// `request.ifMatch`: the version the entry was made against.
        if_match: Option<String>,
        resource: Value,
        full_url: Option<String>,
    },
    Delete {
        id: String,
    },
    Get {
        url: String,
    },
    Skip {
        rt: String,
    },
}

impl Action {
    /// The spec's processing order: DELETE, POST, PUT/PATCH, GET.
    fn order(&self) -> u8 {
        match self {
            Action::Delete { .. } => 0,
            Action::Write {
                put_id: None,
                conditional_update: false,
                ..
            }
            | Action::Skip { .. } => 1,
            Action::Write { .. } => 2,
            Action::Get { .. } => 3,
        }
    }
}

/// One entry's answer.
#[derive(Debug, Clone)]
enum Answer {
    Written(Written),
    /// A conditional create that found the patient: nothing written.
    Matched {
        id: String,
    },
    Deleted,
    Got {
        status: u16,
        body: Option<Value>,
    },
    Skipped {
        rt: String,
    },
    Failed(Failure),
}

fn status_text(status: u16) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or_default();
    format!("{status} {reason}")
}

/// Read one entry's request.
fn action_of(entry: &Value, i: usize) -> Result<Action, AdmitError> {
    let at = |path: &str, message: String| AdmitError::Invalid(vec![Issue::new(format!("/entry/{i}{path}"), message)]);
    let resource = entry.get("resource");
    let rt = resource
        .and_then(|r| r.get("resourceType"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let request = entry.get("request");
    let method = request
        .and_then(|r| r.get("method"))
        .and_then(Value::as_str)
        .unwrap_or(if resource.is_some() { "POST" } else { "" });
    let url = request.and_then(|r| r.get("url")).and_then(Value::as_str).unwrap_or(rt);
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = path.trim_start_matches('/');
    let full_url = entry.get("fullUrl").and_then(Value::as_str).map(str::to_owned);
    match method {
        "POST" | "PUT" => {
            let Some(resource) = resource else {
                return Err(at("", format!("a {method} entry needs a resource")));
            };
            if rt.is_empty() {
                return Err(at(
                    "/resource/resourceType",
                    "a FHIR resource needs a string `resourceType`".into(),
                ));
            }
            let url_type = path.split('/').next().unwrap_or_default();
            if url_type != rt {
                return Err(at(
                    "/request/url",
                    format!("the entry's url is for `{url_type}` but its resource is a {rt}"),
                ));
            }
            let Some(kept) = KEPT.iter().find(|k| **k == rt) else {
                if !wardwatch_fhir::is_resource_type(rt) {
                    return Err(at(
                        "/resource/resourceType",
                        format!("`{rt}` is not a FHIR R4 resource type"),
                    ));
                }
                return Ok(Action::Skip { rt: rt.to_owned() });
            };
            let mut put_id = None;
            let mut condition = None;
            let mut conditional_update = false;
            if method == "PUT" {
                match path.split_once('/') {
                    Some((_, id)) if ids::is_fhir_id(id) => {
                        if let Some(body_id) = resource.get("id").and_then(Value::as_str)
                            && body_id != id
                        {
                            return Err(at(
                                "/resource/id",
                                format!("the resource's id `{body_id}` is not the url's `{id}`"),
                            ));
                        }
                        put_id = Some(id.to_owned());
                    }
                    Some((_, id)) => return Err(at("/request/url", format!("`{id}` is not a FHIR id"))),
                    None if *kept == "Patient" => {
                        condition = Some(identifier_query(query).ok_or_else(|| {
                            at(
                                "/request/url",
                                "a PUT here names `Patient/<id>` or `Patient?identifier=<system>|<value>`".into(),
                            )
                        })?);
                        conditional_update = true;
                    }
                    None => {
                        return Err(at(
                            "/request/url",
                            "a PUT of an Encounter names `Encounter/<id>`".into(),
                        ));
                    }
                }
            } else if let Some(ine) = request.and_then(|r| r.get("ifNoneExist")).and_then(Value::as_str) {
                if *kept != "Patient" {
                    return Err(at(
                        "/request/ifNoneExist",
                        "conditional create is supported for Patient, by identifier".into(),
                    ));
                }
                condition = Some(identifier_query(ine.trim_start_matches('?')).ok_or_else(|| {
                    at(
                        "/request/ifNoneExist",
                        "ifNoneExist here is `identifier=<system>|<value>`".into(),
                    )
                })?);
            }
            let if_match = request
                .and_then(|r| r.get("ifMatch"))
                .and_then(Value::as_str)
                .map(rest::version_of_etag);
            if if_match.is_some() && method != "PUT" {
                return Err(at("/request/ifMatch", "ifMatch goes with a PUT".into()));
            }
            Ok(Action::Write {
                rt: kept,
                put_id,
                condition,
                conditional_update,
                if_match,
                resource: resource.clone(),
                full_url,
            })
        }
        "DELETE" => match path.split_once('/') {
            Some(("Encounter", id)) => Ok(Action::Delete { id: id.to_owned() }),
            _ => Err(at(
                "/request/url",
                format!("DELETE is supported for `Encounter/<id>` only, not `{url}`"),
            )),
        },
        "GET" => Ok(Action::Get { url: url.to_owned() }),
        "" => Err(at("/request", "the entry has neither a request nor a resource".into())),
        other => Err(at(
            "/request/method",
            format!("{other} is not supported in a Bundle here"),
        )),
    }
}

/// A transaction spanning several patients, kept until rolled forward.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Intents {
    #[serde(default)]
    pub intents: Vec<String>,
}

/// The Bundle kept as an intent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Intent {
    bundle: Value,
    received_at: chrono::DateTime<chrono::Utc>,
}

pub(crate) async fn process<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
    bundle: Value,
) -> Result<Output, AdmitError> {
    let kind = bundle
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !matches!(kind.as_str(), "transaction" | "batch") {
        return Err(AdmitError::Invalid(vec![Issue::new(
            "/type",
            format!("a Bundle posted to the base is a transaction or a batch, not `{kind}`"),
        )]));
    }
    wardwatch_fhir::validate_bundle_shell(&bundle).map_err(AdmitError::Invalid)?;
    let entries: &[Value] = bundle.get("entry").and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let answers = if kind == "transaction" {
        transaction(admit, req, &bundle, entries).await?
    } else {
        batch(admit, req, entries).await
    };
    let response: Vec<Value> = answers.into_iter().map(|a| response_entry(req, a)).collect();
    Ok(Output::ok(json!({
        "resourceType": "Bundle",
        "type": format!("{kind}-response"),
        "entry": response,
    })))
}

fn response_entry(req: &Request<'_>, answer: Answer) -> Value {
    match answer {
        Answer::Written(w) => {
            let status = if w.created && w.applied { 201 } else { 200 };
            let mut response = json!({"status": status_text(status)});
            if let Some(v) = w.version {
                response["location"] = json!(format!("{}/{}/_history/{}", w.resource_type, w.id, v.id));
                response["etag"] = json!(etag(&v));
                response["lastModified"] = json!(v.updated.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            } else {
                response["location"] = json!(format!("{}/{}", w.resource_type, w.id));
            }
            json!({"fullUrl": format!("{}/{}/{}", req.base, w.resource_type, w.id), "response": response})
        }
        Answer::Matched { id } => json!({
            "fullUrl": format!("{}/Patient/{id}", req.base),
            "response": {"status": status_text(200), "location": format!("Patient/{id}")}
        }),
        Answer::Deleted => json!({"response": {"status": status_text(204)}}),
        Answer::Got { status, body } => {
            let mut e = json!({"response": {"status": status_text(status)}});
            if let Some(body) = body {
                e["resource"] = body;
            }
            e
        }
        Answer::Skipped { rt } => json!({"response": {
            "status": status_text(202),
            "outcome": {"resourceType": "OperationOutcome", "issue": [{
                "severity": "information", "code": "informational",
                "diagnostics": format!("{rt} is not kept by admit: accepted and not stored (references to it are kept as given)")
            }]}
        }}),
        Answer::Failed(f) => json!({"response": {
            "status": status_text(f.http_status()),
            "outcome": f.outcome(),
        }}),
    }
}

/// Check a kept resource of entry `i`.
fn check_entry(resource: &Value, rt: &str, i: usize) -> Result<(), AdmitError> {
    rest::check_resource(resource, rt).map_err(|e| relocate(e, Some(i)))
}

/// Plan the kept resource of entry `i`. A PUT (`put_id`) is an update like the REST API's:
/// `meta.lastUpdated` is the server's to set, and the update is ordered as of its arrival — so
/// a resource read and sent back, changed or not, is neither dropped as older than what is
/// stored nor given a new version when nothing changed.
#[allow(clippy::too_many_arguments)]
fn plan_entry<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    plan: &mut Plan,
    i: usize,
    rt: &str,
    mut resource: Value,
    put_id: Option<String>,
    full_url: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), AdmitError> {
    let stamp = put_id.is_some().then(|| {
        crate::strip_last_updated(&mut resource);
        now
    });
    if rt == "Patient" {
        let mut p = admit.plan_patient(Some(i), resource, put_id, full_url)?;
        p.stamp = stamp;
        plan.patients.push(p);
    } else {
        let mut e = admit.plan_encounter(Some(i), resource, put_id)?;
        // A PUT replaces the stay as it is now (as the REST update does).
        e.cancel_discharge = stamp.is_some();
        e.stamp = stamp;
        plan.encounters.push(e);
    }
    Ok(())
}

/// Point `subject` references at the fullUrls of matched patients to the stored patient.
fn resolve_subject(resource: &mut Value, matched: &HashMap<String, String>) {
    if let Some(reference) = resource.pointer("/subject/reference").and_then(Value::as_str)
        && let Some(id) = matched.get(reference)
    {
        resource["subject"]["reference"] = Value::String(format!("Patient/{id}"));
    }
}

async fn transaction<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
    bundle: &Value,
    entries: &[Value],
) -> Result<Vec<Answer>, AdmitError> {
    let mut actions = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let action = action_of(entry, i)?;
        if let Action::Write { rt, resource, .. } = &action {
            check_entry(resource, rt, i)?;
        }
        actions.push(action);
    }
    // The same resource twice is refused (the spec's rule): order then changes nothing.
    let mut seen = BTreeSet::new();
    for (i, a) in actions.iter().enumerate() {
        let named = match a {
            Action::Write {
                rt, put_id: Some(id), ..
            } => Some(format!("{rt}/{id}")),
            Action::Delete { id } => Some(format!("Encounter/{id}")),
            _ => None,
        };
        if let Some(n) = named
            && !seen.insert(n.clone())
        {
            return Err(AdmitError::Invalid(vec![Issue::new(
                format!("/entry/{i}/request/url"),
                format!("{n} appears twice in this transaction"),
            )]));
        }
    }
    let mut answers: Vec<Option<Answer>> = vec![None; actions.len()];
    let mut plan = Plan::default();
    let mut matched: HashMap<String, String> = HashMap::new();
    let mut order: Vec<usize> = (0..actions.len()).collect();
    order.sort_by_key(|i| actions[*i].order());
    // Conditional creates and updates first: which patient each names.
    for &i in &order {
        if let Action::Write {
            condition: Some(raw),
            conditional_update,
            put_id,
            full_url,
            ..
        } = &mut actions[i]
        {
            let found = admit
                .patient_by_identifier(raw)
                .await
                .map_err(|e| relocate(e, Some(i)))?;
            match (found, *conditional_update) {
                (Some(id), false) => {
                    if let Some(u) = full_url {
                        matched.insert(u.clone(), id.clone());
                    }
                    answers[i] = Some(Answer::Matched { id });
                }
                (Some(id), true) => *put_id = Some(id),
                (None, _) => {}
            }
        }
    }
    let mut gets = Vec::new();
    let mut deletes = BTreeSet::new();
    for &i in &order {
        if answers[i].is_some() {
            continue;
        }
        match std::mem::replace(&mut actions[i], Action::Skip { rt: String::new() }) {
            Action::Write {
                rt,
                put_id,
                mut resource,
                full_url,
                if_match,
                ..
            } => {
                if let Some(version) = if_match {
                    plan.expect.push(expect(rt, put_id.as_deref(), version));
                }
                if rt == "Encounter" {
                    resolve_subject(&mut resource, &matched);
                }
                plan_entry(admit, &mut plan, i, rt, resource, put_id, full_url, req.now)?;
            }
            Action::Delete { id } => match admit.owner_of_encounter(&id).await? {
                Some(pid) => {
                    deletes.insert(i);
                    plan.deletes.push((Some(i), id, pid));
                }
                None => {
                    return Err(AdmitError::NotFound(format!(
                        "entry {i}: Encounter/{id} is not known, so it cannot be deleted"
                    )));
                }
            },
            Action::Get { url } => gets.push((i, url)),
            Action::Skip { rt } => answers[i] = Some(Answer::Skipped { rt }),
        }
    }
    plan.intent = Some(bundle.clone());
    let written = admit.admit(plan, req.now).await?;
    for w in written {
        if let Some(i) = w.entry {
            answers[i] = Some(if deletes.contains(&i) {
                Answer::Deleted
            } else {
                Answer::Written(w)
            });
        }
    }
    for (i, url) in gets {
        answers[i] = Some(get(admit, req, &url).await);
    }
    Ok(answers.into_iter().map(|a| a.unwrap_or(Answer::Deleted)).collect())
}

/// `request.ifMatch` of a PUT entry. A conditional update that found nobody has no id: it
/// expects a resource that does not exist, so it fails as `If-Match` on a missing one does.
fn expect(rt: &'static str, id: Option<&str>, version: String) -> Expect {
    Expect {
        resource_type: rt,
        id: id.unwrap_or_default().to_owned(),
        version,
    }
}

/// A GET entry, answered like the REST API would.
async fn get<S: StateStore, L: EventLog, P: Publisher>(admit: &Admit<S, L, P>, req: &Request<'_>, url: &str) -> Answer {
    let url = url.trim_start_matches('/');
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let sub = Request {
        method: "GET",
        segments: path.split('/').filter(|s| !s.is_empty()).collect(),
        params: form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
        query,
        event: req.event,
        base: req.base.clone(),
        now: req.now,
    };
    let root = sub.segments.first().copied().unwrap_or_default().to_owned();
    let result = match sub.segments.as_slice() {
        [rt, ..] if !KEPT.contains(rt) => Err(AdmitError::ResourceType(format!("{rt} is not served here"))),
        [rt] => rest::search(admit, &sub, rt).await,
        [rt, id] => rest::read_entry(admit, &sub, rt, id).await,
        _ => Err(AdmitError::BadRequest(format!(
            "GET {url} is not supported in a Bundle here"
        ))),
    };
    match result {
        Ok(out) => Answer::Got {
            status: out.status,
            body: out.body,
        },
        Err(e) => {
            let mut f = Failure::from(e);
            for issue in &mut f.issues {
                issue.location = rest::fhirpath(&root, &issue.location);
            }
            Answer::Failed(f)
        }
    }
}

async fn batch<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
    entries: &[Value],
) -> Vec<Answer> {
    let mut answers: Vec<Option<Answer>> = vec![None; entries.len()];
    let mut actions: Vec<(usize, Action)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match action_of(entry, i) {
            Ok(a) => actions.push((i, a)),
            Err(e) => answers[i] = Some(Answer::Failed(entry_failure(e))),
        }
    }
    actions.sort_by_key(|(_, a)| a.order());
    for (i, action) in actions {
        let answer = match one(admit, req, i, action).await {
            Ok(a) => a,
            Err(e) => Answer::Failed(entry_failure(e)),
        };
        answers[i] = Some(answer);
    }
    answers.into_iter().map(|a| a.unwrap_or(Answer::Deleted)).collect()
}

/// A batch entry's failure, its locations as FHIRPath in the Bundle.
fn entry_failure(e: AdmitError) -> Failure {
    let mut f = Failure::from(e);
    for issue in &mut f.issues {
        if issue.location.starts_with('/') || issue.location.is_empty() {
            issue.location = rest::fhirpath("Bundle", &issue.location);
        }
    }
    f
}

/// One batch entry on its own.
async fn one<S: StateStore, L: EventLog, P: Publisher>(
    admit: &Admit<S, L, P>,
    req: &Request<'_>,
    i: usize,
    action: Action,
) -> Result<Answer, AdmitError> {
    match action {
        Action::Write {
            rt,
            mut put_id,
            condition,
            conditional_update,
            if_match,
            resource,
            full_url,
        } => {
            check_entry(&resource, rt, i)?;
            if let Some(raw) = condition {
                match (admit.patient_by_identifier(&raw).await?, conditional_update) {
                    (Some(id), false) => return Ok(Answer::Matched { id }),
                    (Some(id), true) => put_id = Some(id),
                    (None, _) => {}
                }
            }
            let mut plan = Plan::default();
            if let Some(version) = if_match {
                plan.expect.push(expect(rt, put_id.as_deref(), version));
            }
            plan_entry(admit, &mut plan, i, rt, resource, put_id, full_url, req.now)?;
            let mut written = admit.admit(plan, req.now).await?;
            written
                .pop()
                .map(Answer::Written)
                .ok_or_else(|| AdmitError::BadRequest("nothing was written".into()))
        }
        Action::Delete { id } => match admit.delete_encounter(Some(i), &id, req.now).await? {
            Deleted::Done | Deleted::Already => Ok(Answer::Deleted),
            Deleted::Unknown => Err(AdmitError::NotFound(format!("Encounter/{id} is not known"))),
        },
        Action::Get { url } => Ok(get(admit, req, &url).await),
        Action::Skip { rt } => Ok(Answer::Skipped { rt }),
    }
}

impl<S: StateStore, L: EventLog, P: Publisher> Admit<S, L, P> {
    /// Keep a transaction Bundle as an intent before its first write.
    pub(crate) async fn record_intent(
        &self,
        bundle: &Value,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, AdmitError> {
        let d = digest(&bundle.to_string());
        let key = keys::intent(&d);
        let intent = Intent {
            bundle: bundle.clone(),
            received_at: now,
        };
        let data = serde_json::to_vec(&intent).map_err(|e| PortError::Corrupt(e.to_string()))?;
        self.records().store.set(&key, &data, None).await?;
        self.records()
            .cas::<Intents, _>(keys::INTENTS, |list| {
                if list.intents.contains(&d) {
                    false
                } else {
                    list.intents.push(d.clone());
                    true
                }
            })
            .await?;
        Ok(d)
    }

    /// The intent is carried out: forget it.
    pub(crate) async fn clear_intent(&self, d: &str) -> Result<(), AdmitError> {
        self.records()
            .cas::<Intents, _>(keys::INTENTS, |list| {
                let before = list.intents.len();
                list.intents.retain(|x| x != d);
                list.intents.len() != before
            })
            .await?;
        self.records().store.delete(&keys::intent(d), None).await?;
        Ok(())
    }

    /// [`Admit::roll_forward`] at start-up, tried again while the store is not reachable yet
    /// (beside a Dapr sidecar that starts after the app) for about a minute.
    pub async fn roll_forward_at_start(&self) {
        for _ in 0..12 {
            match self.roll_forward().await {
                Ok(0) => return,
                Ok(n) => {
                    tracing::info!(transactions = n, "transactions left part-way were rolled forward");
                    return;
                }
                Err(e) => {
                    tracing::warn!(reason = %e, "transaction intents could not be read yet; trying again");
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
            }
        }
    }

    /// Finish every transaction that was made durable and not carried out (a crash or an
    /// outage part-way): run at start-up. Returns how many were rolled forward.
    pub async fn roll_forward(&self) -> Result<usize, String> {
        let list: Option<(Intents, String)> = wardwatch_domain::ports::get_json(&self.records().store, keys::INTENTS)
            .await
            .map_err(|e| e.to_string())?;
        let mut done = 0;
        for d in list.map(|(l, _)| l.intents).unwrap_or_default() {
            let found = self
                .records()
                .store
                .get(&keys::intent(&d))
                .await
                .map_err(|e| e.to_string())?;
            let Some(found) = found else {
                self.clear_intent(&d).await.map_err(|e| e.to_string())?;
                continue;
            };
            let intent: Intent = serde_json::from_slice(&found.data).map_err(|e| e.to_string())?;
            let event = wardwatch_runtime::Event::new(
                wardwatch_runtime::Trigger::Memory,
                rest::PREFIX,
                serde_json::to_vec(&intent.bundle).map_err(|e| e.to_string())?,
            );
            let mut event = event;
            event.context.received_at = intent.received_at;
            match rest::handle(self, &event).await {
                Ok(_) => {
                    tracing::info!(intent = %d, "a transaction spanning several patients was rolled forward");
                    done += 1;
                }
                // Refused for good (what it names has changed since: an identifier another
                // patient took, an encounter moved): no later start-up would do better, so it is
                // dropped, not retried forever. Its patients' writes made so far stay.
                Err(f)
                    if matches!(
                        f.kind,
                        FailureKind::Invalid | FailureKind::NotFound | FailureKind::Conflict
                    ) =>
                {
                    let locations: Vec<&str> = f.issues.iter().map(|i| i.location.as_str()).collect();
                    tracing::error!(intent = %d, kind = f.kind.as_str(), ?locations, "a transaction intent is refused now and was dropped part-way");
                    self.clear_intent(&d).await.map_err(|e| e.to_string())?;
                }
                Err(f) => {
                    tracing::warn!(intent = %d, kind = f.kind.as_str(), "a transaction intent could not be rolled forward yet");
                }
            }
        }
        Ok(done)
    }
}
