//! FHIR OperationOutcome: how every error is told to a client or recorded on a rejected lane.

use serde_json::{Value, json};

use crate::Issue;

/// An OperationOutcome with one `error` issue per problem. `code` is a FHIR issue-type code
/// (`invalid`, `structure`, `required`, `not-found`, `conflict`, `transient`, `exception`, …).
pub fn operation_outcome(code: &str, message: &str, issues: &[Issue]) -> Value {
    let mut list: Vec<Value> = Vec::new();
    if issues.is_empty() {
        list.push(json!({"severity": "error", "code": code, "diagnostics": message}));
    }
    for i in issues {
        let mut issue = json!({
            "severity": "error",
            "code": code,
            "diagnostics": format!("{message}: {}", i.message),
        });
        if !i.location.is_empty() {
            issue["expression"] = json!([i.location]);
        }
        list.push(issue);
    }
    json!({"resourceType": "OperationOutcome", "issue": list})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_without_issues_still_says_what_went_wrong() {
        let o = operation_outcome("invalid", "bad JSON", &[]);
        assert_eq!(o["issue"][0]["diagnostics"], "bad JSON");
    }

    #[test]
    fn each_issue_keeps_its_location() {
        let o = operation_outcome(
            "required",
            "refused",
            &[Issue {
                location: "/subject".into(),
                message: "missing".into(),
            }],
        );
        assert_eq!(o["issue"][0]["expression"][0], "/subject");
    }
}
