//! FHIR R4 lab payloads: a single Observation or DiagnosticReport, a Bundle of any type
//! (collection, transaction, batch, message, searchset, …), or NDJSON of those. Their
//! Observations are taken — also those a DiagnosticReport contains — with subjects that point
//! at the Bundle's own Patient entries (`urn:uuid:` full URLs, relative `Patient/<id>`)
//! rewritten to that Patient's identifier, since the receiver knows patients by identifier.
//! Other resource types are skipped and counted.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::facts;
use crate::identity::IdentityRules;

/// `Observation.identifier.system` given to an Observation contained in a DiagnosticReport that
/// has no identifier: `<report id or identifier>#<local id>`.
pub const CONTAINED_IDENTIFIER_SYSTEM: &str = "https://wardwatch.dev/fhir/sid/contained-result";

/// What a FHIR lab payload holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FhirFeed {
    /// The Observations, subjects resolved, in payload order.
    pub observations: Vec<Value>,
    /// DiagnosticReports read (their Observations are among `observations`).
    pub reports: usize,
    /// Resources of other types, by type: skipped.
    pub skipped: BTreeMap<String, usize>,
}

/// Read a FHIR payload: one JSON resource, or NDJSON (one resource per line).
pub fn read(payload: &[u8], identity: &IdentityRules) -> Result<FhirFeed, String> {
    let mut feed = FhirFeed::default();
    let mut stream = serde_json::Deserializer::from_slice(payload).into_iter::<Value>();
    let mut line = 0usize;
    loop {
        let resource = match stream.next() {
            None => break,
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                return Err(format!(
                    "the message is not JSON (line {} column {})",
                    e.line(),
                    e.column()
                ));
            }
        };
        line += 1;
        let at = if line > 1 || stream.byte_offset() < payload.len() {
            format!("resource {line}: ")
        } else {
            String::new()
        };
        take(resource, identity, &mut feed).map_err(|e| format!("{at}{e}"))?;
    }
    if line == 0 {
        return Err("the message is empty".into());
    }
    Ok(feed)
}

fn resource_type(v: &Value) -> &str {
    v.get("resourceType").and_then(Value::as_str).unwrap_or_default()
}

fn take(resource: Value, identity: &IdentityRules, feed: &mut FhirFeed) -> Result<(), String> {
    match resource_type(&resource) {
        "Observation" => feed.observations.push(resource),
        "DiagnosticReport" => report(&resource, &HashMap::new(), feed),
        "Bundle" => bundle(&resource, identity, feed)?,
        "" => return Err("not a FHIR resource (no resourceType)".into()),
        other => *feed.skipped.entry(other.to_owned()).or_default() += 1,
    }
    Ok(())
}

/// A DiagnosticReport's contained Observations (its `result` references into the Bundle are
/// entries of their own), given the report's subject when they have none.
fn report(report: &Value, patients: &HashMap<String, Value>, feed: &mut FhirFeed) {
    feed.reports += 1;
    let Some(contained) = report.get("contained").and_then(Value::as_array) else {
        return;
    };
    // A contained resource's id is only unique inside its report: one without an identifier of
    // its own is identified by the report's id (or identifier) and its local id, else by content.
    let scope = report.get("id").and_then(Value::as_str).map(str::to_owned).or_else(|| {
        report
            .pointer("/identifier/0/value")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    for c in contained.iter().filter(|c| resource_type(c) == "Observation") {
        let mut o = c.clone();
        if o.get("identifier").is_none()
            && let Some(obj) = o.as_object_mut()
        {
            let local = obj.remove("id");
            if let (Some(scope), Some(Value::String(local))) = (&scope, local) {
                obj.insert(
                    "identifier".into(),
                    json!([{"system": CONTAINED_IDENTIFIER_SYSTEM, "value": format!("{scope}#{local}")}]),
                );
            }
        }
        if o.get("subject").is_none()
            && let Some(s) = report.get("subject")
        {
            o["subject"] = s.clone();
        }
        resolve_subject(&mut o, patients);
        feed.observations.push(o);
    }
}

/// `subject.reference` naming one of the Bundle's Patients → that Patient's identifier.
fn resolve_subject(o: &mut Value, patients: &HashMap<String, Value>) {
    let Some(reference) = o.pointer("/subject/reference").and_then(Value::as_str) else {
        return;
    };
    if let Some(identifier) = patients.get(reference) {
        o["subject"] = json!({"identifier": identifier});
    }
}

fn bundle(b: &Value, identity: &IdentityRules, feed: &mut FhirFeed) -> Result<(), String> {
    let entries = b
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    // Patient entries by every name a reference may use: full URL, `Patient/<id>`.
    let mut patients: HashMap<String, Value> = HashMap::new();
    // Patient entries without an identifier the receiver can know them by: a result naming one
    // would otherwise be filed under the sender's own id for the patient.
    let mut unknowable: Vec<String> = Vec::new();
    for e in entries {
        let Some(p) = e.get("resource").filter(|r| resource_type(r) == "Patient") else {
            continue;
        };
        let facts = facts::patient(p);
        let Ok(id) = identity.primary(&facts.identifiers) else {
            unknowable.extend(e.get("fullUrl").and_then(Value::as_str).map(str::to_owned));
            unknowable.extend(facts.id.as_ref().map(|pid| format!("Patient/{pid}")));
            continue;
        };
        let identifier = json!({"system": id.system, "value": id.value});
        if let Some(url) = e.get("fullUrl").and_then(Value::as_str) {
            patients.insert(url.to_owned(), identifier.clone());
            if let Some(rel) = facts::patient_id_of_reference(url) {
                patients.insert(format!("Patient/{rel}"), identifier.clone());
            }
        }
        if let Some(pid) = &facts.id {
            patients.insert(format!("Patient/{pid}"), identifier);
        }
    }
    for (i, e) in entries.iter().enumerate() {
        let Some(r) = e.get("resource") else {
            continue;
        };
        match resource_type(r) {
            "Observation" => {
                let mut o = r.clone();
                resolve_subject(&mut o, &patients);
                check_subject(&o, &unknowable, i)?;
                feed.observations.push(o);
            }
            "DiagnosticReport" => {
                let before = feed.observations.len();
                report(r, &patients, feed);
                for o in &feed.observations[before..] {
                    check_subject(o, &unknowable, i)?;
                }
            }
            "Patient" => {}
            "Bundle" => bundle(r, identity, feed)?,
            other => *feed.skipped.entry(other.to_owned()).or_default() += 1,
        }
    }
    Ok(())
}

/// A subject still given by reference after resolving must name a patient the receiver can know.
fn check_subject(o: &Value, unknowable: &[String], entry: usize) -> Result<(), String> {
    let Some(reference) = o.pointer("/subject/reference").and_then(Value::as_str) else {
        return Ok(());
    };
    if reference.starts_with("urn:") {
        return Err(format!(
            "entry {entry}: subject `{reference}` is not a Patient entry of the Bundle with an identifier"
        ));
    }
    if unknowable.iter().any(|u| u == reference) {
        return Err(format!(
            "entry {entry}: the subject is a Patient entry of the Bundle without an identifier that has a system \
             and a value (or MRN_SYSTEMS set for bare values): the patient cannot be known by it"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> IdentityRules {
        IdentityRules::default()
    }

    fn obs(subject: Value) -> Value {
        json!({"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
               "subject": subject, "valueQuantity": {"value": 4.1, "unit": "mmol/L"}})
    }

    #[test]
    fn a_bundle_of_any_type_gives_its_observations_with_subjects_resolved() {
        for kind in ["collection", "transaction", "batch", "message", "searchset"] {
            let b = json!({"resourceType": "Bundle", "type": kind, "entry": [
                {"fullUrl": "urn:uuid:6f3a", "resource": {"resourceType": "Patient", "id": "p9",
                    "identifier": [{"system": "urn:mrn", "value": "M1"}]}},
                {"resource": obs(json!({"reference": "urn:uuid:6f3a"}))},
                {"resource": obs(json!({"reference": "Patient/p9"}))},
                {"resource": {"resourceType": "Organization", "name": "Lab"}},
                {"resource": {"resourceType": "DiagnosticReport", "status": "final",
                    "subject": {"reference": "urn:uuid:6f3a"},
                    "contained": [obs(Value::Null)]}}
            ]});
            let mut b = b;
            b["entry"][4]["resource"]["contained"][0]
                .as_object_mut()
                .map(|o| o.remove("subject"));
            let feed = read(b.to_string().as_bytes(), &rules()).expect(kind);
            assert_eq!(feed.observations.len(), 3, "{kind}");
            for o in &feed.observations {
                assert_eq!(
                    o["subject"],
                    json!({"identifier": {"system": "urn:mrn", "value": "M1"}}),
                    "{kind}"
                );
            }
            assert_eq!(feed.skipped.get("Organization"), Some(&1));
            assert_eq!(feed.reports, 1);
        }
    }

    #[test]
    fn contained_results_of_two_reports_are_never_one_result() {
        let report = |id: &str| {
            let mut o = obs(json!({"reference": "Patient/a"}));
            o["id"] = json!("k");
            json!({"resourceType": "DiagnosticReport", "id": id, "status": "final", "contained": [o]})
        };
        let text = format!("{}\n{}\n", report("r1"), report("r2"));
        let feed = read(text.as_bytes(), &rules()).expect("reports");
        let ids: Vec<&Value> = feed.observations.iter().map(|o| &o["identifier"][0]["value"]).collect();
        assert_eq!(ids, [&json!("r1#k"), &json!("r2#k")]);
        assert!(feed.observations.iter().all(|o| o.get("id").is_none()));
    }

    #[test]
    fn ndjson_gives_one_observation_per_line() {
        let text = format!(
            "{}\n{}\n\n",
            obs(json!({"reference": "Patient/a"})),
            obs(json!({"reference": "Patient/b"}))
        );
        assert_eq!(read(text.as_bytes(), &rules()).expect("ndjson").observations.len(), 2);
        let broken = format!("{}\n{{\"resourceType\":", obs(json!({"reference": "Patient/a"})));
        assert!(
            read(broken.as_bytes(), &rules())
                .expect_err("broken")
                .contains("line 2")
        );
    }

    #[test]
    fn a_subject_naming_a_patient_entry_without_an_identifier_is_refused() {
        let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "https://ehr.example/Patient/p9", "resource": {"resourceType": "Patient", "id": "p9"}},
            {"resource": obs(json!({"reference": "Patient/p9"}))}]});
        assert!(
            read(b.to_string().as_bytes(), &rules())
                .expect_err("refused")
                .contains("without an identifier")
        );
    }

    #[test]
    fn an_unresolvable_urn_subject_is_refused() {
        let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": obs(json!({"reference": "urn:uuid:nowhere"}))}]});
        assert!(
            read(b.to_string().as_bytes(), &rules())
                .expect_err("refused")
                .contains("urn:uuid:nowhere")
        );
    }
}
