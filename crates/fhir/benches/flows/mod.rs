//! What a function does to a request body before anything is written, from the bytes: shared by
//! the criterion bench (`benches/validate.rs`) and `validaterate` (wardwatch-loadtest, built as
//! the functions are: the parse at `opt-level = 3`), so both measure the same work.

use serde_json::Value;

/// The Bundle admit's benchmarks post (a Patient and an Encounter).
pub const BUNDLE: &[u8] = include_bytes!("../../../../schemas/examples/admission-bundle.json");

/// A lab result as ingest-lab receives it (a critical potassium).
pub const OBSERVATION: &[u8] = include_bytes!("../../../../schemas/examples/potassium-critical.json");

/// The types admit keeps (`functions/admit/src/rest.rs`, `KEPT`); other entries are skipped.
pub const KEPT: &[&str] = &["Patient", "Encounter"];

/// A single resource, as `POST /fhir/Patient` or `/fhir/Encounter` checks it
/// (`rest::check_resource`), or ingest-lab an Observation: the type, then schema and typed check.
pub fn parse_validate_resource(bytes: &[u8], expected: &str) -> Result<(), String> {
    let resource: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let rt = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    if rt != expected {
        return Err(format!("a {rt}, not a {expected}"));
    }
    wardwatch_fhir::validate_resource(&resource).map_err(|i| format!("{i:?}"))
}

/// A transaction Bundle, as `POST /fhir` checks it before anything is written
/// (`bundle::process` then `transaction`): its type, the shell, then each kept entry's resource
/// on its own — a copy of it, as admit takes one for its plan before checking it.
pub fn parse_validate_transaction(bytes: &[u8]) -> Result<usize, String> {
    let bundle: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let kind = bundle.get("type").and_then(Value::as_str).unwrap_or_default();
    if !matches!(kind, "transaction" | "batch") {
        return Err(format!("a Bundle of type `{kind}`"));
    }
    wardwatch_fhir::validate_bundle_shell(&bundle).map_err(|i| format!("{i:?}"))?;
    let mut checked = 0;
    for entry in bundle.get("entry").and_then(Value::as_array).into_iter().flatten() {
        let Some(resource) = entry.get("resource") else {
            continue;
        };
        let rt = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        if KEPT.contains(&rt) {
            let resource = resource.clone();
            wardwatch_fhir::validate_resource(&resource).map_err(|i| format!("{i:?}"))?;
            checked += 1;
        }
    }
    Ok(checked)
}

/// The Bundle's entries' resources, each as the body of its own request.
pub fn entry_bytes(resource_type: &str) -> Result<Vec<u8>, String> {
    let bundle: Value = serde_json::from_slice(BUNDLE).map_err(|e| e.to_string())?;
    let resource = bundle
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("resource"))
        .find(|r| r["resourceType"] == resource_type)
        .ok_or_else(|| format!("the example Bundle has no {resource_type}"))?;
    serde_json::to_vec(resource).map_err(|e| e.to_string())
}
