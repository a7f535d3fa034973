//! `GET /fhir/metadata`: the CapabilityStatement of this process — exactly what it supports,
//! no more (issue 9, first part). FHIR client libraries read it before anything else.
//!
//! What it says today: Patient and Encounter are created by POST (one at a time, or in a
//! `transaction` Bundle of Patients and Encounters); Observations are searched by
//! `patient.identifier`, `patient`/`subject`, `code` and `_count` where ingest-lab's search is
//! mounted (`wardwatch up`, ingest-lab's own binary). No read, vread, update, delete,
//! conditional create or batch yet: a client is told so here, and gets `405` with `Allow`.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use serde_json::{Value, json};
use wardwatch_runtime::{Body, Endpoint, full};

/// The CapabilityStatement endpoint.
pub struct Capabilities {
    statement: Bytes,
}

/// The FHIR version served.
pub const FHIR_VERSION: &str = "4.0.1";

impl Capabilities {
    /// `observation_search`: whether `GET /fhir/Observation` is mounted beside admit.
    pub fn new(observation_search: bool) -> Self {
        Self {
            statement: Bytes::from(statement(observation_search).to_string()),
        }
    }
}

/// The statement itself.
pub fn statement(observation_search: bool) -> Value {
    let mut resources = vec![
        json!({
            "type": "Patient",
            "interaction": [{"code": "create", "documentation": "POST a Patient: known by one identifier's system and value (the one typed MR, else the first of MRN_SYSTEMS, else the first with both); posting it again changes nothing"}],
            "versioning": "no-version",
            "conditionalCreate": false,
            "conditionalUpdate": false,
            "conditionalDelete": "not-supported"
        }),
        json!({
            "type": "Encounter",
            "interaction": [{"code": "create", "documentation": "POST an Encounter whose subject is a Patient posted before (or in the same transaction): an in-progress inpatient stay with a ward places the patient on the board; versions are ordered by meta.lastUpdated"}],
            "versioning": "no-version",
            "conditionalCreate": false,
            "conditionalUpdate": false,
            "conditionalDelete": "not-supported"
        }),
    ];
    if observation_search {
        resources.push(json!({
            "type": "Observation",
            "interaction": [{"code": "search-type", "documentation": "Laboratory results as stored (they arrive on the lab-feed queue, not here), newest first, canonical units"}],
            "searchParam": [
                {"name": "patient.identifier", "type": "token", "documentation": "system|value of the patient's identifier"},
                {"name": "patient", "type": "reference"},
                {"name": "subject", "type": "reference"},
                {"name": "code", "type": "token", "documentation": "a LOINC or local code"},
                {"name": "_count", "type": "number"}
            ]
        }));
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-03",
        "publisher": "Wardwatch",
        "kind": "instance",
        "software": {"name": "Wardwatch", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Wardwatch admit: admissions, transfers and discharges for the ward board"},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Also HL7 v2 ADT on POST /hl7v2 (not FHIR). Not supported yet: read, vread, update, patch, delete, history, conditional interactions, batch.",
            "resource": resources,
            "interaction": [{"code": "transaction", "documentation": "A Bundle of type transaction holding Patients and Encounters only: every entry is validated before anything is written; one patient's entries are one compare-and-set"}]
        }]
    })
}

impl Endpoint for Capabilities {
    fn handle(&self, request: Request<Bytes>) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send + '_>> {
        Box::pin(async move {
            let mut r = Response::new(full(self.statement.clone()));
            if request.method() != Method::GET {
                *r.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
                r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
                *r.body_mut() = full(
                    json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-supported", "diagnostics": "the CapabilityStatement is read with GET"}]})
                        .to_string(),
                );
            }
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_is_valid_fhir_r4_and_names_only_what_is_served() {
        for search in [false, true] {
            let s = statement(search);
            wardwatch_fhir::validate_resource(&s).expect("a valid CapabilityStatement");
            let types: Vec<&str> = s["rest"][0]["resource"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["type"].as_str())
                .collect();
            let expected: &[&str] = if search {
                &["Patient", "Encounter", "Observation"]
            } else {
                &["Patient", "Encounter"]
            };
            assert_eq!(types, expected);
        }
    }
}
