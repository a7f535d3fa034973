//! `GET /fhir/Observation`: a patient's stored results as a FHIR `searchset` Bundle, newest
//! first, each as received with the canonical value in `valueQuantity` and the value and unit
//! as received in an extension.
//!
//! | parameter | meaning |
//! |---|---|
//! | `patient.identifier=<value>` or `<system>\|<value>` | the patient, by identifier (a bare value belongs to the first of `MRN_SYSTEMS`) |
//! | `patient=<id>` or `Patient/<id>` (also `subject`) | the patient, by id |
//! | `code=<code>` or `<system>\|<code>` | a LOINC code, or a laboratory's own code |
//! | `_count=<n>` | at most n entries (default 100, at most 1000) |
//!
//! The results are those the patient's record keeps (`domain::record`: all creatinine of the
//! last 365 days, the latest few of every other test). Other parameters are refused with 400,
//! so that a search never silently means something wider than asked.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Request, Response};
use serde_json::{Value, json};
use wardwatch_domain::identity::{Identifier, IdentityRules, RawIdentifier};
use wardwatch_domain::ids;
use wardwatch_domain::lab::RECEIVED_EXTENSION;
use wardwatch_domain::outcome::operation_outcome;
use wardwatch_domain::ports::{EventLog, PortError, Publisher, StateStore};
use wardwatch_domain::record::ResultEntry;
use wardwatch_records::Records;
use wardwatch_runtime::{Body, Endpoint, full};

/// Extension (`valueString`) on a result that is kept but not evaluated, saying why.
pub const NOT_EVALUABLE_EXTENSION: &str = "https://wardwatch.dev/fhir/StructureDefinition/not-evaluable";

const DEFAULT_COUNT: usize = 100;
const MAX_COUNT: usize = 1000;

/// The Observation search endpoint.
pub struct ObservationSearch<S, L, P> {
    records: Records<S, L, P>,
    identity: IdentityRules,
    /// The FHIR base the links are written under (`/fhir`).
    base: String,
}

fn fhir(status: u16, body: &Value) -> Response<Body> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/fhir+json"),
    );
    r.headers_mut()
        .insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

fn refuse(status: u16, code: &str, message: &str) -> Response<Body> {
    fhir(status, &operation_outcome(code, message, &[]))
}

/// A search, read from the query string.
#[derive(Debug, PartialEq)]
enum Patient {
    Id(String),
    Identifier(Identifier),
}

#[derive(Debug, PartialEq)]
struct Search {
    patient: Patient,
    code: Option<(Option<String>, String)>,
    count: usize,
}

fn parse(query: &str, identity: &IdentityRules) -> Result<Search, String> {
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("`{k}` is given twice: give it once"));
        }
    }
    let mut patient = None;
    let mut code = None;
    let mut count = DEFAULT_COUNT;
    for (k, v) in &params {
        if v.trim().is_empty() {
            return Err(format!("`{k}` is empty: give it a value, or leave it out"));
        }
        match k.as_str() {
            "patient.identifier" | "subject.identifier" => {
                if v.rsplit('|').next().is_none_or(|value| value.trim().is_empty()) {
                    return Err(format!(
                        "{k}: the identifier has no value (give <system>|<value> or <value>)"
                    ));
                }
                let raw = match v.split_once('|') {
                    Some((system, value)) => RawIdentifier {
                        system: (!system.is_empty()).then(|| system.to_owned()),
                        value: Some(value.to_owned()),
                        typed_mr: false,
                    },
                    None => RawIdentifier {
                        system: None,
                        value: Some(v.clone()),
                        typed_mr: false,
                    },
                };
                let id = identity.subject(&raw).map_err(|e| {
                    format!(
                        "patient.identifier: {}",
                        e.replace("subject.identifier", "the identifier")
                    )
                })?;
                patient = Some(Patient::Identifier(id));
            }
            "patient" | "subject" => {
                let id = v.strip_prefix("Patient/").unwrap_or(v);
                if !ids::is_fhir_id(id) {
                    return Err(format!("{k}: `{id}` is not a Patient id"));
                }
                patient = Some(Patient::Id(id.to_owned()));
            }
            "code" => {
                code = Some(match v.split_once('|') {
                    Some((system, c)) => ((!system.is_empty()).then(|| system.to_owned()), c.to_owned()),
                    None => (None, v.clone()),
                });
            }
            "_count" => {
                count = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_COUNT).contains(n))
                    .ok_or_else(|| format!("_count must be a number from 1 to {MAX_COUNT}"))?;
            }
            "_format" if matches!(v.as_str(), "json" | "application/fhir+json" | "application/json") => {}
            other => {
                return Err(format!(
                    "unsupported search parameter `{other}`: Observation is searched by patient.identifier, patient, code and _count"
                ));
            }
        }
    }
    let patient = patient.ok_or("search Observations by patient.identifier=<system>|<value> or patient=<id>")?;
    Ok(Search { patient, code, count })
}

fn matches_code(entry: &ResultEntry, code: &(Option<String>, String)) -> bool {
    let (system, value) = code;
    let loinc = system.as_deref().is_none_or(|s| s == "http://loinc.org") && entry.loinc == *value;
    let local = entry.local_code.as_deref().is_some_and(|l| match l.rsplit_once('|') {
        Some((s, c)) => c == value && system.as_deref().is_none_or(|want| want == s),
        None => l == value,
    });
    loinc || local
}

/// One stored result as served: the resource as received, with the canonical value.
pub fn served(mut resource: Value, entry: &ResultEntry) -> Value {
    resource["id"] = json!(entry.result_id);
    let Some(o) = resource.as_object_mut() else {
        return resource;
    };
    let mut extensions: Vec<Value> = o
        .remove("extension")
        .and_then(|e| e.as_array().cloned())
        .unwrap_or_default();
    if let Some(v) = entry.value {
        if !extensions.iter().any(|e| e["url"] == RECEIVED_EXTENSION)
            && let Some(reported) = entry.reported_value
        {
            let mut received = vec![json!({"url": "value", "valueDecimal": reported})];
            if !entry.reported_unit.is_empty() {
                received.push(json!({"url": "unit", "valueString": entry.reported_unit}));
            }
            extensions.push(json!({"url": RECEIVED_EXTENSION, "extension": received}));
        }
        let mut q = json!({"value": v, "unit": entry.unit, "system": "http://unitsofmeasure.org", "code": entry.unit});
        if let Some(c) = &entry.comparator {
            q["comparator"] = json!(c);
        }
        o.insert("valueQuantity".into(), q);
    }
    if let Some(why) = &entry.not_evaluable {
        extensions.push(json!({"url": NOT_EVALUABLE_EXTENSION, "valueString": why}));
    }
    if !extensions.is_empty() {
        o.insert("extension".into(), Value::Array(extensions));
    }
    resource
}

impl<S: StateStore, L: EventLog, P: Publisher> ObservationSearch<S, L, P> {
    pub fn new(records: Records<S, L, P>, identity: IdentityRules, base: &str) -> Self {
        Self {
            records,
            identity,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    async fn search(&self, query: &str) -> Result<Response<Body>, PortError> {
        let search = match parse(query, &self.identity) {
            Ok(s) => s,
            Err(e) => return Ok(refuse(400, "invalid", &e)),
        };
        let patient_id = match &search.patient {
            Patient::Id(id) => id.clone(),
            Patient::Identifier(identifier) => match self.records.lookup(identifier).await? {
                Some(id) => id,
                // Results before their patient: the record their identifier names.
                None => ids::derived("patient", &[&identifier.system, &identifier.value]),
            },
        };
        let record = self.records.load(&patient_id).await?;
        // A record joined into another: its results are the survivor's.
        let record = match record.as_ref().and_then(|r| r.merged_into.clone()) {
            Some(into) => self.records.load(&into).await?,
            None => record,
        };
        let mut entries: Vec<&ResultEntry> = record
            .as_ref()
            .map(|r| {
                r.results
                    .iter()
                    .filter(|e| search.code.as_ref().is_none_or(|c| matches_code(e, c)))
                    .collect()
            })
            .unwrap_or_default();
        // Newest first: when taken (else issued), then the id so that ties read the same way.
        entries.sort_by(|a, b| b.when().cmp(&a.when()).then_with(|| a.result_id.cmp(&b.result_id)));
        let total = entries.len();
        entries.truncate(search.count);
        let keys: Vec<String> = entries.iter().map(|e| e.resource_key.clone()).collect();
        let resources = self.records.store.get_many(&keys).await?;
        let mut out = Vec::with_capacity(entries.len());
        for (entry, found) in entries.iter().zip(resources) {
            let resource = match found {
                Some(v) => serde_json::from_slice::<Value>(&v.data)
                    .map_err(|e| PortError::Corrupt(format!("{}: {e}", entry.resource_key)))?,
                // Kept in the record but its resource is gone: say what the record knows.
                None => json!({"resourceType": "Observation", "status": entry.status,
                    "code": {"coding": [{"system": "http://loinc.org", "code": entry.loinc}]}}),
            };
            out.push(json!({
                "fullUrl": format!("{}/Observation/{}", self.base, entry.result_id),
                "resource": served(resource, entry),
                "search": {"mode": "match"},
            }));
        }
        let link = if query.is_empty() {
            format!("{}/Observation", self.base)
        } else {
            format!("{}/Observation?{query}", self.base)
        };
        Ok(fhir(
            200,
            &json!({
                "resourceType": "Bundle",
                "type": "searchset",
                "total": total,
                "link": [{"relation": "self", "url": link}],
                "entry": out,
            }),
        ))
    }
}

impl<S: StateStore, L: EventLog, P: Publisher> Endpoint for ObservationSearch<S, L, P> {
    fn handle(&self, request: Request<Bytes>) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send + '_>> {
        Box::pin(async move {
            if request.method() != http::Method::GET {
                return refuse(
                    405,
                    "not-supported",
                    "Observations are read here with GET; results arrive on lab-feed",
                );
            }
            if request.uri().path().trim_end_matches('/') != format!("{}/Observation", self.base) {
                return refuse(
                    404,
                    "not-found",
                    "reading one Observation by id is not supported yet: search by patient",
                );
            }
            let query = request.uri().query().unwrap_or_default().to_owned();
            match self.search(&query).await {
                Ok(r) => r,
                Err(PortError::Unavailable(_) | PortError::Conflict) => {
                    refuse(503, "transient", "a backend is unavailable; try again later")
                }
                Err(PortError::Corrupt(e)) => {
                    tracing::error!(error = %e, "stored data could not be read");
                    refuse(500, "exception", "stored data could not be read")
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> IdentityRules {
        IdentityRules {
            systems: vec!["urn:mrn".into()],
            v2: Vec::new(),
        }
    }

    #[test]
    fn searches_are_read_and_unsupported_parameters_refused() {
        let s = parse("patient.identifier=urn%3Amrn%7CM1&code=2823-3&_count=5", &rules()).expect("search");
        assert_eq!(
            s.patient,
            Patient::Identifier(Identifier {
                system: "urn:mrn".into(),
                value: "M1".into()
            })
        );
        assert_eq!((s.code, s.count), (Some((None, "2823-3".into())), 5));
        let bare = parse("patient.identifier=M1", &rules()).expect("bare value under MRN_SYSTEMS");
        assert!(matches!(bare.patient, Patient::Identifier(i) if i.system == "urn:mrn"));
        assert_eq!(
            parse("patient=Patient/p1", &rules()).expect("id").patient,
            Patient::Id("p1".into())
        );
        for (bad, says) in [
            ("", "patient.identifier"),
            ("patient=p1&date=2026", "unsupported search parameter `date`"),
            ("patient=p1&_count=0", "_count"),
            ("patient=p1&patient=p2", "twice"),
            ("patient=../x", "not a Patient id"),
            ("patient=p1&code=", "`code` is empty"),
            ("patient.identifier=", "`patient.identifier` is empty"),
            ("patient.identifier=urn%3Amrn%7C", "the identifier"),
        ] {
            let e = parse(bad, &rules()).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(parse("patient.identifier=M1", &IdentityRules::default()).is_err());
    }

    #[test]
    fn a_served_result_has_the_canonical_value_and_keeps_what_was_received() {
        let entry = ResultEntry {
            result_id: "r1".into(),
            loinc: "2160-0".into(),
            local_code: None,
            analyte: Some("creatinine".into()),
            value: Some(132.63),
            unit: "umol/L".into(),
            comparator: None,
            reported_value: Some(1.5),
            reported_unit: "mg/dL".into(),
            text: None,
            not_evaluable: None,
            status: "final".into(),
            effective: None,
            issued: None,
            message_id: None,
            digest: "d".into(),
            resource_key: "k".into(),
        };
        let o = served(
            json!({"resourceType": "Observation", "valueQuantity": {"value": 1.5, "unit": "mg/dL"}}),
            &entry,
        );
        assert_eq!(o["valueQuantity"]["value"], 132.63);
        assert_eq!(o["valueQuantity"]["code"], "umol/L");
        assert_eq!(o["extension"][0]["url"], RECEIVED_EXTENSION);
        assert_eq!(o["extension"][0]["extension"][1]["valueString"], "mg/dL");
        let kept = served(
            json!({"resourceType": "Observation", "valueQuantity": {"value": 7, "unit": "mg/dL"}}),
            &ResultEntry {
                value: None,
                not_evaluable: Some("unit `mg/dL` is not accepted".into()),
                ..entry
            },
        );
        assert_eq!(kept["valueQuantity"]["unit"], "mg/dL", "as received");
        assert_eq!(kept["extension"][0]["url"], NOT_EVALUABLE_EXTENSION);
    }
}
