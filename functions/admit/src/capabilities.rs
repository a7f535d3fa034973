//! `GET /fhir/metadata`: the CapabilityStatement of this process — exactly what it supports,
//! no more (issue 9, first part). FHIR client libraries read it before anything else.
//!
//! What it says: Patient and Encounter are created, read, updated (versioned) and searched
//! (`crate::rest`); Encounters are deleted (a mistaken admission, and what that does to the
//! board); Patients are created and updated conditionally by identifier; `transaction` and
//! `batch` Bundles (`crate::bundle`). Observations are searched by `patient.identifier`,
//! `patient`/`subject`, `code` and `_count` where ingest-lab's search is mounted (`wardwatch
//! up`, ingest-lab's own binary). What is not listed is answered `405` with `Allow`, or 404.

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
    let versioned = |create: &str, extra: Vec<Value>| {
        let mut interactions = vec![
            json!({"code": "create", "documentation": create}),
            json!({"code": "read"}),
            json!({"code": "vread", "documentation": "the current version only: earlier versions are not kept"}),
            json!({"code": "update", "documentation": "PUT creates or updates with that id; If-Match: W/\"<versionId>\" answers 412 when the resource moved on. An update (on its own or a transaction or batch entry) is as of its arrival: its meta.lastUpdated is the server's and is ignored, so a resource read and sent back unchanged keeps its version"}),
            json!({"code": "search-type"}),
        ];
        interactions.extend(extra);
        interactions
    };
    let mut resources = vec![
        json!({
            "type": "Patient",
            "interaction": versioned("POST a Patient: known by one identifier's system and value (the one typed MR, else the first of MRN_SYSTEMS, else the first with both), so posting it again is an update of the same patient, not a second one; a Patient without such an identifier is kept and served but never shown on the ward board", vec![]),
            "versioning": "versioned-update",
            "readHistory": false,
            "updateCreate": true,
            "conditionalCreate": true,
            "conditionalRead": "not-supported",
            "conditionalUpdate": true,
            "conditionalDelete": "not-supported",
            "searchParam": [
                {"name": "identifier", "type": "token", "documentation": "<system>|<value>"},
                {"name": "_id", "type": "token"}
            ]
        }),
        json!({
            "type": "Encounter",
            "interaction": versioned("POST an Encounter whose subject is a Patient already stored or in the same transaction (by reference, urn:uuid fullUrl, identifier, or Patient?identifier=…): an in-progress stay of class IMP/ACUTE/NONAC with a ward location places its patient on the ward board", vec![
                json!({"code": "delete", "documentation": "a mistaken admission: the stay becomes entered-in-error, its patient leaves the ward board at once (an admission-cancelled event); the patient's results and alerts are kept. A read of it then answers 410 Gone"})
            ]),
            "versioning": "versioned-update",
            "readHistory": false,
            "updateCreate": true,
            "conditionalCreate": false,
            "conditionalUpdate": false,
            "conditionalDelete": "not-supported",
            "searchParam": [
                {"name": "patient", "type": "reference", "documentation": "the patient's encounters that are kept (the current and the last few)"},
                {"name": "subject", "type": "reference"},
                {"name": "status", "type": "token", "documentation": "without patient, only in-progress: the current inpatient stays"},
                {"name": "location", "type": "reference", "documentation": "the ward's name as the Encounter's ward location displays it"}
            ]
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
            "documentation": "Also HL7 v2 ADT on POST /hl7v2 (not FHIR). Search results page with _count (default 50, at most 500) and _offset. Not supported: patch, history, conditional delete, XML. Entries of other resource types in a Bundle are accepted and skipped (202 in their response entry).",
            "resource": resources,
            "interaction": [
                {"code": "transaction", "documentation": "All entries are validated before anything is written; one patient's entries are one compare-and-set of their record; a transaction spanning several patients is made durable as one intent first and finished on retry or at start-up. Responses in request order, 201 Created with location, etag and lastModified"},
                {"code": "batch", "documentation": "Each entry on its own: one entry's failure is its own response entry"}
            ]
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
