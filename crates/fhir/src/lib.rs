//! FHIR R4 validation behind a few non-generic entry points.
//!
//! Two checks, both needed:
//! - structural validation against the official R4 JSON Schema (`schemas/fhir/fhir.schema.json`,
//!   compiled once per resource type on first use), which reports every violation with its path.
//!   The types Wardwatch validates ([`PRUNED_TYPES`]) are compiled from a schema pruned at build
//!   time (`build.rs`) to the definitions they reach — a few per cent of the whole, so compiling
//!   one takes milliseconds, not a tenth of a second; any other type from the full schema;
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

/// `RESOURCE_TYPES` and `PRUNED`, written by `build.rs` from [`SCHEMA`].
mod generated {
    include!(concat!(env!("OUT_DIR"), "/generated.rs"));
}

/// The resource types validated against a schema pruned at build time (`build.rs`): those the
/// functions validate, and the OperationOutcomes Wardwatch sends. Others use the full schema.
pub const PRUNED_TYPES: [&str; generated::PRUNED.len()] = {
    let mut names = [""; generated::PRUNED.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = generated::PRUNED[i].0;
        i += 1;
    }
    names
};

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
    // The pruned types (those of every request) without a lock: one cell each.
    static PRUNED: [OnceLock<Result<jsonschema::Validator, Issue>>; generated::PRUNED.len()] =
        [const { OnceLock::new() }; generated::PRUNED.len()];
    if let Ok(i) = generated::PRUNED.binary_search_by(|(name, _)| (*name).cmp(resource_type)) {
        return PRUNED[i]
            .get_or_init(|| compile_pruned(resource_type, generated::PRUNED[i].1))
            .as_ref()
            .map_err(Clone::clone);
    }
    static CACHE: OnceLock<Mutex<HashMap<String, &'static jsonschema::Validator>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(v) = map.get(resource_type) {
        return Ok(v);
    }
    let compiled = compile_full(resource_type)?;
    // Leaked on purpose: one validator per resource type for the life of the process.
    let leaked: &'static jsonschema::Validator = Box::leak(Box::new(compiled));
    map.insert(resource_type.to_owned(), leaked);
    Ok(leaked)
}

fn not_a_type(resource_type: &str) -> Issue {
    Issue {
        location: "/resourceType".into(),
        message: format!("`{resource_type}` is not a FHIR R4 resource type"),
    }
}

fn not_compiled(resource_type: &str, e: impl std::fmt::Display) -> Issue {
    Issue {
        location: String::new(),
        message: format!("the FHIR schema for {resource_type} could not be compiled: {e}"),
    }
}

/// From the schema `build.rs` pruned for `resource_type`.
fn compile_pruned(resource_type: &str, text: &str) -> Result<jsonschema::Validator, Issue> {
    let schema: Value = serde_json::from_str(text).map_err(|e| not_compiled(resource_type, e))?;
    jsonschema::draft6::new(&schema).map_err(|e| not_compiled(resource_type, e))
}

/// From the full R4 schema (parsed once, on the first use of a type that is not pruned).
fn compile_full(resource_type: &str) -> Result<jsonschema::Validator, Issue> {
    if !is_resource_type(resource_type) {
        return Err(not_a_type(resource_type));
    }
    let mut schema = schema_root().clone();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("$ref".into(), Value::String(format!("#/definitions/{resource_type}")));
    }
    jsonschema::draft6::new(&schema).map_err(|e| not_compiled(resource_type, e))
}

/// Whether `name` is a FHIR R4 resource type (cheap: a list made at build time).
pub fn is_resource_type(name: &str) -> bool {
    generated::RESOURCE_TYPES.binary_search(&name).is_ok()
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
    // Most resources are valid: a yes/no pass first, which stops at the first violation and
    // allocates nothing; the errors (the same as without it) only for those that fail.
    let issues: Vec<Issue> = if validator.is_valid(resource) {
        Vec::new()
    } else {
        validator
            .iter_errors(resource)
            .take(20)
            .map(|e| Issue {
                location: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect()
    };
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

    /// Every example in the repository (the official R4 ones and Wardwatch's own), each Bundle
    /// entry's resource on its own too, and a few broken copies of each.
    fn examples_and_broken_copies() -> Vec<(String, Value)> {
        let mut found = Vec::new();
        for dir in ["schemas/fhir/examples", "schemas/examples"] {
            let dir = format!("{}/../../{dir}", env!("CARGO_MANIFEST_DIR"));
            for entry in std::fs::read_dir(&dir).expect("examples dir") {
                let path = entry.expect("entry").path();
                let text = std::fs::read_to_string(&path).expect("example file");
                let value: Value = serde_json::from_str(&text).expect("example json");
                let name = path.file_name().expect("name").to_string_lossy().into_owned();
                for (i, e) in value["entry"].as_array().into_iter().flatten().enumerate() {
                    if e["resource"].is_object() {
                        found.push((format!("{name} entry {i}"), e["resource"].clone()));
                    }
                }
                found.push((name, value));
            }
        }
        let mut broken = Vec::new();
        for (name, value) in &found {
            let mut v = value.clone();
            v["gender"] = Value::String("sometimes".into());
            v["status"] = serde_json::json!(7);
            v["unknownElement"] = Value::Bool(true);
            broken.push((format!("{name}, broken"), v));
            let mut v = value.clone();
            v["meta"] = serde_json::json!({"lastUpdated": "yesterday", "tag": [{"code": 1}]});
            v["identifier"] = serde_json::json!([{"system": 3, "period": {"start": "2024-13-45"}}]);
            v["subject"] = serde_json::json!({"reference": ""});
            broken.push((format!("{name}, broken meta"), v));
        }
        found.extend(broken);
        found
    }

    fn issues(validator: &jsonschema::Validator, value: &Value) -> Vec<(String, String)> {
        validator
            .iter_errors(value)
            .map(|e| (e.instance_path().to_string(), e.to_string()))
            .collect()
    }

    #[test]
    fn each_pruned_schema_judges_every_example_as_the_full_schema_does() {
        let examples = examples_and_broken_copies();
        assert!(examples.len() > 100, "{}", examples.len());
        for (rt, text) in generated::PRUNED {
            let pruned = compile_pruned(rt, text).expect("the pruned schema compiles");
            let full = compile_full(rt).expect("the full schema compiles");
            let (mut valid, mut invalid) = (0, 0);
            for (name, value) in &examples {
                let found = issues(&pruned, value);
                assert_eq!(found, issues(&full, value), "{name} as a {rt}");
                if found.is_empty() { valid += 1 } else { invalid += 1 }
            }
            // Each type's own examples pass, the rest fail: both paths are compared.
            assert!(valid >= 1 && invalid >= 1, "{rt}: {valid} valid, {invalid} not");
        }
    }

    #[test]
    fn the_pruned_schemas_are_a_small_part_of_the_full_one() {
        for (rt, text) in generated::PRUNED {
            assert!(text.len() * 20 < SCHEMA.len(), "{rt}: {} bytes", text.len());
        }
    }

    #[test]
    fn the_resource_type_list_is_the_schemas() {
        let defs = schema_root()["definitions"].as_object().expect("definitions");
        let from_schema: Vec<&str> = defs
            .iter()
            .filter(|(_, d)| d.get("properties").and_then(|p| p.get("resourceType")).is_some())
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(generated::RESOURCE_TYPES, from_schema.as_slice());
        assert!(is_resource_type("Patient") && is_resource_type("VisionPrescription"));
        assert!(!is_resource_type("Pateint") && !is_resource_type("HumanName") && !is_resource_type(""));
        for rt in PRUNED_TYPES {
            assert!(is_resource_type(rt), "{rt}");
        }
    }

    #[test]
    fn a_resource_without_resource_type_is_rejected() {
        assert!(validate_resource(&serde_json::json!({"id": "x"})).is_err());
    }
}
