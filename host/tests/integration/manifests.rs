//! The deployment manifests, checked without a cluster: Knative Services against the Knative
//! Serving CRD's OpenAPI schema and the facts of shared/docs/dapr-knative.md; Dapr components
//! against the components' own metadata files, and against the names the code uses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use wardwatch_domain::lanes;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if !value.is_null() {
            docs.push(value);
        }
    }
    docs
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every key of `value` that the schema does not know, where the schema lists its properties
/// (Kubernetes would silently prune them: a typo would be lost without a word).
fn unknown_fields(schema: &Value, value: &Value, at: &str, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, v) in map {
                match props.and_then(|p| p.get(k)) {
                    Some(sub) => unknown_fields(sub, v, &format!("{at}.{k}"), found),
                    None if props.is_some() && !preserve && schema.get("additionalProperties").is_none() => {
                        found.push(format!("{at}.{k}"));
                    }
                    None => {
                        if let Some(sub) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                            unknown_fields(sub, v, &format!("{at}.{k}"), found);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    unknown_fields(item_schema, v, &format!("{at}[{i}]"), found);
                }
            }
        }
        _ => {}
    }
}

fn knative_schema() -> Value {
    let crd = yaml_docs(&root().join("schemas/knative/service-crd.yaml")).remove(0);
    let version = crd["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["name"] == "v1")
        .expect("v1")
        .clone();
    version["schema"]["openAPIV3Schema"].clone()
}

const RESERVED_PORTS: [u64; 7] = [8012, 8013, 8022, 9090, 9091, 8008, 8112];

#[test]
fn knative_services_match_the_serving_crd_and_the_dapr_knative_facts() {
    let schema = knative_schema();
    let validator = jsonschema::draft4::new(&schema).expect("the CRD schema compiles");
    let mut services = 0;
    for file in yaml_files("knative") {
        for doc in yaml_docs(&file) {
            if doc["kind"] != "Service" || doc["apiVersion"] != "serving.knative.dev/v1" {
                continue;
            }
            services += 1;
            let name = format!("{} ({})", file.display(), doc["metadata"]["name"]);
            let errors: Vec<String> = validator
                .iter_errors(&doc)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{name}: {errors:?}");
            let mut unknown = Vec::new();
            unknown_fields(&schema, &doc, "", &mut unknown);
            assert!(unknown.is_empty(), "{name}: fields the CRD does not know: {unknown:?}");

            // Fact 24: annotations on the revision template, not on the Service.
            let own = doc["metadata"]["annotations"]
                .as_object()
                .map(|a| a.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default();
            assert!(
                !own.iter()
                    .any(|k| k.starts_with("dapr.io/") || k.starts_with("autoscaling.knative.dev/")),
                "{name}: {own:?}"
            );
            let ann = &doc["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(ann["dapr.io/enabled"], "true", "{name}");
            // Fact 25: daprd's metrics port must not be queue-proxy's 9090.
            let metrics: u64 = ann["dapr.io/metrics-port"]
                .as_str()
                .expect("metrics-port set")
                .parse()
                .expect("port");
            assert!(
                !RESERVED_PORTS.contains(&metrics),
                "{name}: metrics port {metrics} is reserved by Knative"
            );
            // Fact 26: one container port, not reserved, equal to dapr.io/app-port.
            let containers = doc["spec"]["template"]["spec"]["containers"]
                .as_array()
                .expect("containers");
            let ports: Vec<u64> = containers
                .iter()
                .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                .map(|p| p["containerPort"].as_u64().expect("containerPort"))
                .collect();
            assert_eq!(ports.len(), 1, "{name}: exactly one containerPort");
            assert!(!RESERVED_PORTS.contains(&ports[0]), "{name}");
            assert_eq!(
                ann["dapr.io/app-port"].as_str(),
                Some(ports[0].to_string().as_str()),
                "{name}"
            );
            // Facts 27/28: a pull-based binding consumer must not scale to zero.
            let app_id = ann["dapr.io/app-id"].as_str().expect("app-id");
            if !matches!(app_id, "admit" | "board") {
                let min: u64 = ann["autoscaling.knative.dev/min-scale"]
                    .as_str()
                    .unwrap_or("0")
                    .parse()
                    .expect("min-scale");
                assert!(min >= 1, "{name}: binding consumers need min-scale >= 1");
            }
            // A token-protected app cannot be probed on anything but /healthz.
            let env = containers[0]["env"].as_array().cloned().unwrap_or_default();
            if env.iter().any(|e| e["name"] == "APP_API_TOKEN") {
                assert_eq!(containers[0]["readinessProbe"]["httpGet"]["path"], "/healthz", "{name}");
            }
        }
    }
    assert_eq!(services, 5, "admit, admit-feed, ingest-lab, evaluate-alert, board");
}

/// The metadata names a Dapr component type documents, plus the runtime-level ones.
fn known_metadata(component_type: &str) -> BTreeSet<String> {
    let folder = match component_type {
        "bindings.rabbitmq" => "bindings-rabbitmq",
        "state.redis" => "state-redis",
        "pubsub.rabbitmq" => "pubsub-rabbitmq",
        "bindings.http" => "bindings-http",
        "bindings.cron" => "bindings-cron",
        other => panic!("no reference metadata for component type {other}"),
    };
    let meta = yaml_docs(&root().join(format!("schemas/dapr/{folder}/metadata.yaml"))).remove(0);
    // Runtime-level metadata that daprd itself reads, for any component of the kind.
    let mut names: BTreeSet<String> = ["direction", "route", "keyPrefix", "actorStateStore"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut add = |list: &Value| {
        for m in list.as_array().into_iter().flatten() {
            if let Some(n) = m["name"].as_str() {
                names.insert(n.to_owned());
            }
        }
    };
    add(&meta["metadata"]);
    for profile in meta["authenticationProfiles"].as_array().into_iter().flatten() {
        add(&profile["metadata"]);
    }
    names
}

#[test]
fn dapr_components_use_documented_metadata_and_the_names_the_code_uses() {
    for dir in ["bindings", "bindings/local"] {
        let mut names = BTreeSet::new();
        for file in yaml_files(dir) {
            for doc in yaml_docs(&file) {
                if doc["kind"] != "Component" {
                    continue;
                }
                let name = doc["metadata"]["name"].as_str().expect("name").to_owned();
                let kind = doc["spec"]["type"].as_str().expect("type");
                let known = known_metadata(kind);
                let items = doc["spec"]["metadata"].as_array().cloned().unwrap_or_default();
                for item in &items {
                    let key = item["name"].as_str().expect("metadata name");
                    assert!(
                        known.contains(key),
                        "{}: `{key}` is not metadata of {kind}",
                        file.display()
                    );
                    assert!(
                        item.get("value").is_some() || item.get("secretKeyRef").is_some(),
                        "{}: {key} has no value",
                        file.display()
                    );
                }
                let get = |k: &str| {
                    items
                        .iter()
                        .find(|i| i["name"] == k)
                        .and_then(|i| i["value"].as_str())
                        .map(str::to_owned)
                };
                if kind == "bindings.rabbitmq" {
                    // Fact 22 and the app's own declaration: same queue name, durable, no arguments.
                    assert_eq!(
                        get("queueName").as_deref(),
                        Some(name.as_str()),
                        "{}: route = queue name",
                        file.display()
                    );
                    assert_eq!(get("durable").as_deref(), Some("true"), "{}", file.display());
                    for forbidden in ["ttl", "ttlInSeconds", "maxPriority"] {
                        assert!(
                            get(forbidden).is_none(),
                            "{}: `{forbidden}` would change the queue's arguments",
                            file.display()
                        );
                    }
                    for flag in ["deleteWhenUnused", "exclusive"] {
                        assert!(get(flag).is_none_or(|v| v == "false"), "{}: {flag}", file.display());
                    }
                }
                if kind == "bindings.cron" {
                    // The route the code serves, driven by a schedule, input only, and only in
                    // the app that serves it.
                    assert_eq!(name, lanes::ESCALATE, "{}", file.display());
                    assert!(get("schedule").is_some(), "{}: schedule", file.display());
                    assert_eq!(get("direction").as_deref(), Some("input"), "{}", file.display());
                    assert_eq!(
                        doc["scopes"],
                        serde_json::json!(["evaluate-alert"]),
                        "{}",
                        file.display()
                    );
                }
                if kind == "state.redis" {
                    assert_eq!(
                        get("keyPrefix").as_deref(),
                        Some("wardwatch"),
                        "{}: shared with direct mode",
                        file.display()
                    );
                }
                names.insert(name);
            }
        }
        let mut expected: BTreeSet<String> = [
            lanes::LAB_FEED,
            lanes::LAB_RESULTED,
            lanes::ALERTS,
            lanes::ADMISSIONS,
            lanes::ESCALATE,
            "statestore",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        expected.insert(lanes::rejected(lanes::LAB_FEED));
        expected.insert(lanes::rejected(lanes::LAB_RESULTED));
        expected.insert(lanes::ADT_FEED.to_owned());
        expected.insert(lanes::rejected(lanes::ADT_FEED));
        assert_eq!(
            names, expected,
            "{dir}: the components the code publishes to and consumes from"
        );
    }
}

/// Every input-only queue binding of the cluster is scoped to Knative Services that can consume it:
/// never scaled to zero (facts 27-28), and checking daprd's token; and its rejected lane is
/// scoped to the same apps.
#[test]
fn queue_input_bindings_are_scoped_to_services_that_never_scale_to_zero_and_check_the_token() {
    let mut services = std::collections::BTreeMap::new();
    for file in yaml_files("knative") {
        for doc in yaml_docs(&file) {
            if doc["kind"] == "Service" && doc["apiVersion"] == "serving.knative.dev/v1" {
                let ann = doc["spec"]["template"]["metadata"]["annotations"].clone();
                let app = ann["dapr.io/app-id"].as_str().expect("app-id").to_owned();
                services.insert(app, doc);
            }
        }
    }
    let mut components = std::collections::BTreeMap::new();
    for file in yaml_files("bindings") {
        for doc in yaml_docs(&file) {
            if doc["kind"] == "Component" {
                components.insert(doc["metadata"]["name"].as_str().expect("name").to_owned(), doc);
            }
        }
    }
    let mut inputs = 0;
    for (name, doc) in &components {
        let direction = doc["spec"]["metadata"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"] == "direction")
            .and_then(|m| m["value"].as_str());
        if doc["spec"]["type"] != "bindings.rabbitmq" || direction != Some("input") {
            continue;
        }
        inputs += 1;
        let scopes: Vec<&str> = doc["scopes"]
            .as_array()
            .expect("scoped")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(!scopes.is_empty(), "{name}: scoped to its consumer");
        for app in &scopes {
            let service = services
                .get(*app)
                .unwrap_or_else(|| panic!("{name}: scoped to `{app}`, which is no Knative Service"));
            let ann = &service["spec"]["template"]["metadata"]["annotations"];
            let min: u64 = ann["autoscaling.knative.dev/min-scale"]
                .as_str()
                .unwrap_or("0")
                .parse()
                .expect("min-scale");
            assert!(min >= 1, "{name}: its consumer `{app}` must not scale to zero");
            let env = service["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(
                env.iter().any(|e| e["name"] == "APP_API_TOKEN"),
                "{name}: `{app}` checks daprd's token"
            );
        }
        let rejected = components
            .get(&lanes::rejected(name))
            .unwrap_or_else(|| panic!("{name}: no rejected lane"));
        assert_eq!(
            rejected["scopes"], doc["scopes"],
            "{name}: its rejected lane, for the same apps"
        );
    }
    // lab-resulted is both ways (no `direction`, see its file); the knative test covers its
    // consumer's min-scale.
    assert_eq!(inputs, 2, "lab-feed, adt-feed");
}

/// `data` matches the JSON Schema at `schema`, and the schema refuses every one of `bad`.
fn check_schema(schema: &str, data: &str, bad: &[Value]) {
    let read = |p: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(root().join(p)).expect("file")).expect("json")
    };
    let schema = read(schema);
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator.iter_errors(&read(data)).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{data}: {errors:#?}");
    for b in bad {
        assert!(!validator.is_valid(b), "the schema refuses {b}");
    }
}

/// The built-in units table matches its published JSON Schema, and the schema refuses what the
/// loader refuses.
#[test]
fn the_units_table_matches_its_schema() {
    check_schema(
        "schemas/wardwatch/units.schema.json",
        "crates/domain/data/units.json",
        &[
            serde_json::json!({"analytes": []}),
            serde_json::json!({"analytes": [{"name": "k", "loinc": ["2823-3"], "canonical": "mmol/L", "units": ["mmol/L"], "extra": 1}]}),
            serde_json::json!({"analytes": [{"name": "k", "loinc": ["potassium"], "canonical": "mmol/L", "units": ["mmol/L"]}]}),
            serde_json::json!({"analytes": [{"name": "k", "loinc": ["2823-3"], "canonical": "mmol/L", "units": [{"unit": "mmol/L", "factor": 0}]}]}),
        ],
    );
}

/// The built-in critical limits match their published JSON Schema.
#[test]
fn the_critical_limits_match_their_schema() {
    check_schema(
        "schemas/wardwatch/critical-limits.schema.json",
        "crates/domain/data/critical-limits.json",
        &[
            serde_json::json!({"limits": [{"analyte": "potassium", "unit": "mmol/L"}]}),
            serde_json::json!({"limits": [{"analyte": "potassium", "unit": "mmol/L", "high": 6.5, "hihg": 6}]}),
            serde_json::json!({"limits": [{"analyte": "potassium", "unit": "mmol/L", "high": 6.5, "severity": "loud"}]}),
            serde_json::json!({"aki": {"repeat_minute": 60}, "limits": [{"analyte": "potassium", "unit": "mmol/L", "high": 6.5}]}),
            serde_json::json!({"aki": {"review_minutes_telephoned": 0}, "limits": [{"analyte": "potassium", "unit": "mmol/L", "high": 6.5}]}),
            serde_json::json!({"review_minutes": "60", "limits": [{"analyte": "potassium", "unit": "mmol/L", "high": 6.5}]}),
        ],
    );
}

#[test]
fn the_ping_source_ticks_evaluate_alerts_escalate_route() {
    let doc = yaml_docs(&root().join("knative/escalate-ping.yaml")).remove(0);
    assert_eq!(doc["apiVersion"], "sources.knative.dev/v1");
    assert_eq!(doc["kind"], "PingSource");
    let sink = &doc["spec"]["sink"];
    assert_eq!(sink["ref"]["kind"], "Service");
    assert_eq!(sink["ref"]["name"], "evaluate-alert");
    assert_eq!(sink["uri"].as_str(), Some(format!("/{}", lanes::ESCALATE).as_str()));
    // Five-field cron (PingSource has no seconds field), and JSON data.
    let schedule = doc["spec"]["schedule"].as_str().expect("schedule");
    assert_eq!(schedule.split_whitespace().count(), 5, "{schedule}");
    let data = doc["spec"]["data"].as_str().expect("data");
    serde_json::from_str::<serde_json::Value>(data).expect("data is JSON");
    // The Service it names exists among the manifests.
    let service = yaml_docs(&root().join("knative/evaluate-alert.yaml")).remove(0);
    assert_eq!(service["metadata"]["name"], "evaluate-alert");
}
