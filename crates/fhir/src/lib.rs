//! FHIR R4 validation behind a few non-generic entry points.
//!
//! Two checks, both needed:
//! - structural validation against the official R4 JSON Schema (`schemas/fhir/fhir.schema.json`,
//!   compiled once per resource type on first use), which reports every violation with its path;
//! - typed deserialization with `fhir-model`, which catches what the schema cannot
//!   (choice types, primitive formats the schema leaves loose).
//!
//! `fhir-model`'s generated code is very large, so this crate is the only one that names its types
//! and every entry point here is non-generic: the monomorphised code is built once, here.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde::Deserialize;
use serde_json::Value;

/// The official FHIR R4 JSON Schema (4.0.1), as published at hl7.org/fhir/R4/fhir.schema.json.
const SCHEMA: &str = include_str!("../../../schemas/fhir/fhir.schema.json");

pub use wardwatch_domain::Issue;

/// The resource types this crate knows how to check with typed deserialization.
pub const TYPED: &[&str] = &["Patient", "Encounter", "Observation", "Bundle"];

fn schema_root() -> &'static Value {
    static ROOT: OnceLock<Value> = OnceLock::new();
    ROOT.get_or_init(|| {
        // The schema is compiled into the binary and checked by this crate's tests.
        let mut root: Value = serde_json::from_str(SCHEMA).unwrap_or(Value::Null);
        if let Some(defs) = root.get_mut("definitions").and_then(Value::as_object_mut) {
            // A Bundle entry's resource (and `contained`) may be any of ~145 resource types; a
            // `oneOf` over all of them is slow and its errors unreadable. Entries are validated
            // one by one against their own type instead (see `validate_resource`).
            defs.insert("ResourceList".into(), serde_json::json!({"type": "object"}));
        }
        if let Some(obj) = root.as_object_mut() {
            obj.remove("oneOf");
            obj.remove("discriminator");
            obj.remove("id");
        }
        root
    })
}

fn validator(resource_type: &str) -> Result<&'static jsonschema::Validator, Issue> {
    static CACHE: OnceLock<Mutex<HashMap<String, &'static jsonschema::Validator>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(v) = map.get(resource_type) {
        return Ok(v);
    }
    let root = schema_root();
    if !is_resource_type(resource_type) {
        return Err(Issue {
            location: "/resourceType".into(),
            message: format!("`{resource_type}` is not a FHIR R4 resource type"),
        });
    }
    let mut schema = root.clone();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("$ref".into(), Value::String(format!("#/definitions/{resource_type}")));
    }
    let compiled = jsonschema::draft6::new(&schema).map_err(|e| Issue {
        location: String::new(),
        message: format!("the FHIR schema for {resource_type} could not be compiled: {e}"),
    })?;
    // Leaked on purpose: one validator per resource type for the life of the process.
    let leaked: &'static jsonschema::Validator = Box::leak(Box::new(compiled));
    map.insert(resource_type.to_owned(), leaked);
    Ok(leaked)
}

/// Whether `name` is a FHIR R4 resource type (cheap: no validator is compiled).
pub fn is_resource_type(name: &str) -> bool {
    schema_root()
        .get("definitions")
        .and_then(|d| d.get(name))
        .and_then(|d| d.get("properties"))
        .and_then(|p| p.get("resourceType"))
        .is_some()
}

/// Compile the schema validators for `resource_types` now rather than on the first request
/// (each takes a moment: the R4 schema is large). Unknown types are ignored.
pub fn prepare(resource_types: &[&str]) {
    for t in resource_types {
        let _ = validator(t);
    }
}

/// Validate one resource: its `resourceType`, the R4 JSON Schema and, for the types in
/// [`TYPED`], typed deserialization. Returns every schema issue found (at most 20), or the
/// typed-deserialization error.
pub fn validate_resource(resource: &Value) -> Result<(), Vec<Issue>> {
    validate_at_depth(resource, 0)
}

/// Validate a Bundle itself — its own elements and each entry's `request`, `fullUrl` … — but
/// not its entries' resources: a caller that keeps only some types validates those one by one
/// (and never compiles a validator for the others).
pub fn validate_bundle_shell(bundle: &Value) -> Result<(), Vec<Issue>> {
    schema_and_typed("Bundle", bundle)
}

/// How deep Bundles inside Bundles are followed.
const MAX_DEPTH: usize = 3;

fn validate_at_depth(resource: &Value, depth: usize) -> Result<(), Vec<Issue>> {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
        return Err(vec![Issue {
            location: "/resourceType".into(),
            message: "a FHIR resource needs a string `resourceType`".into(),
        }]);
    };
    if resource_type == "Bundle" {
        // Entries first, each against its own type, with their place in the Bundle.
        let mut issues = Vec::new();
        if depth >= MAX_DEPTH {
            return Err(vec![Issue {
                location: String::new(),
                message: "Bundles nested too deeply".into(),
            }]);
        }
        for (i, entry) in resource
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(inner) = entry.get("resource")
                && let Err(found) = validate_at_depth(inner, depth + 1)
            {
                issues.extend(found.into_iter().map(|f| Issue {
                    location: format!("/entry/{i}/resource{}", f.location),
                    message: f.message,
                }));
            }
        }
        if !issues.is_empty() {
            issues.truncate(20);
            return Err(issues);
        }
    }
    schema_and_typed(resource_type, resource)
}

/// One resource against its type's schema (at most 20 issues), then typed parsing.
fn schema_and_typed(resource_type: &str, resource: &Value) -> Result<(), Vec<Issue>> {
    let validator = validator(resource_type).map_err(|i| vec![i])?;
    let issues: Vec<Issue> = validator
        .iter_errors(resource)
        .take(20)
        .map(|e| Issue {
            location: e.instance_path().to_string(),
            message: e.to_string(),
        })
        .collect();
    if !issues.is_empty() {
        return Err(issues);
    }
    typed_check(resource_type, resource).map_err(|message| {
        vec![Issue {
            location: String::new(),
            message,
        }]
    })
}

/// A Bundle without its entries' resources: every other element as it is.
fn bundle_shell(bundle: &Value) -> Value {
    let Some(fields) = bundle.as_object() else {
        return bundle.clone();
    };
    let mut shell = serde_json::Map::new();
    for (k, v) in fields {
        let v = match (k.as_str(), v.as_array()) {
            ("entry", Some(entries)) => Value::Array(
                entries
                    .iter()
                    .map(|e| match e.as_object() {
                        Some(entry) => Value::Object(
                            entry
                                .iter()
                                .filter(|(k, _)| k.as_str() != "resource")
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect(),
                        ),
                        None => e.clone(),
                    })
                    .collect(),
            ),
            _ => v.clone(),
        };
        shell.insert(k.clone(), v);
    }
    Value::Object(shell)
}

/// Deserialize into the typed `fhir-model` resource and throw it away: a non-generic entry
/// point so the generated deserializers are instantiated in this crate only.
fn typed_check(resource_type: &str, resource: &Value) -> Result<(), String> {
    use fhir_model::r4b::resources as r;
    let result = match resource_type {
        "Patient" => r::Patient::deserialize(resource).map(drop),
        "Encounter" => r::Encounter::deserialize(resource).map(drop),
        "Observation" => r::Observation::deserialize(resource).map(drop),
        // The entries' resources were checked one by one, each against its own type; the
        // Bundle itself is checked without them (deserializing them again through the
        // any-resource enum would cost more than all the rest of the check).
        "Bundle" => r::Bundle::deserialize(&bundle_shell(resource)).map(drop),
        _ => Ok(()),
    };
    result.map_err(|e| format!("not a valid FHIR {resource_type}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> Value {
        let path = format!("{}/../../schemas/fhir/examples/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("example file");
        serde_json::from_str(&text).expect("example json")
    }

    #[test]
    fn every_official_example_of_a_typed_resource_is_valid() {
        let dir = format!("{}/../../schemas/fhir/examples", env!("CARGO_MANIFEST_DIR"));
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).expect("examples dir") {
            let name = entry.expect("entry").file_name().into_string().expect("utf8");
            let value = example(&name);
            let rt = value["resourceType"].as_str().expect("resourceType").to_owned();
            if TYPED.contains(&rt.as_str()) {
                if let Err(issues) = validate_resource(&value) {
                    panic!("{name} rejected: {issues:?}");
                }
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} examples checked");
    }

    #[test]
    fn a_patient_with_a_wrong_gender_code_is_rejected_with_its_path() {
        let mut p = example("patient-example.json");
        p["gender"] = Value::String("sometimes".into());
        let issues = validate_resource(&p).expect_err("must be rejected");
        assert!(issues.iter().any(|i| i.location == "/gender"), "{issues:?}");
    }

    #[test]
    fn an_unknown_resource_type_is_rejected() {
        let issues = validate_resource(&serde_json::json!({"resourceType": "Pateint"})).expect_err("must be rejected");
        assert!(issues[0].message.contains("Pateint"));
    }

    #[test]
    fn the_operation_outcomes_wardwatch_sends_are_valid_fhir() {
        let o =
            wardwatch_domain::outcome::operation_outcome("invalid", "refused", &[Issue::new("/subject", "missing")]);
        assert!(validate_resource(&o).is_ok(), "{o}");
        assert!(
            validate_resource(&wardwatch_domain::outcome::operation_outcome(
                "invalid",
                "bad JSON",
                &[]
            ))
            .is_ok()
        );
    }

    #[test]
    fn a_resource_without_resource_type_is_rejected() {
        assert!(validate_resource(&serde_json::json!({"id": "x"})).is_err());
    }
}
