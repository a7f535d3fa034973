//! Patient identity: a patient is known by one identifier, a system and a value. Two systems
//! are never one patient. Which identifier is chosen follows one rule, in this order:
//!
//! 1. the identifier typed `MR` (HL7 v2 table 0203, under its current or its legacy system);
//! 2. else the first identifier in one of the configured systems (`MRN_SYSTEMS`, in priority order);
//! 3. else the first identifier with both a system and a value.
//!
//! An identifier without a system takes the first configured system when there is one, and is
//! unusable otherwise. HL7 v2 identifiers (PID-3: value, assigning authority, type) map to FHIR
//! systems through [`V2Mapping`]s, so v2 and FHIR feeds of one patient meet in one record.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Issue;

pub const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
pub const V2_0203_LEGACY: &str = "http://hl7.org/fhir/v2/0203";

/// Longest identifier value accepted (values are hashed into keys, never used verbatim).
const MAX_VALUE: usize = 256;

/// A system and a value: how a patient is known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    pub system: String,
    pub value: String,
}

/// An identifier as a resource carries it: any part may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawIdentifier {
    pub system: Option<String>,
    pub value: Option<String>,
    /// Whether it is typed `MR` (v2-0203, current or legacy system, or no system on the coding).
    pub typed_mr: bool,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl RawIdentifier {
    pub fn from_json(id: &Value) -> Self {
        let typed_mr = id
            .pointer("/type/coding")
            .and_then(Value::as_array)
            .is_some_and(|codings| {
                codings.iter().any(|c| {
                    text(c, "code").as_deref() == Some("MR")
                        && text(c, "system").is_none_or(|s| s == V2_0203 || s == V2_0203_LEGACY)
                })
            });
        Self {
            system: text(id, "system"),
            value: text(id, "value"),
            typed_mr,
        }
    }

    /// Every identifier of a resource's `identifier` array.
    pub fn list(identifiers: Option<&Value>) -> Vec<Self> {
        identifiers
            .and_then(Value::as_array)
            .map(|l| l.iter().map(Self::from_json).collect())
            .unwrap_or_default()
    }
}

/// One row of the table that turns an HL7 v2 identifier's assigning authority (and optionally
/// its type) into a FHIR system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Mapping {
    pub authority: String,
    pub type_code: Option<String>,
    pub system: String,
}

/// The hospital's identity settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityRules {
    /// `MRN_SYSTEMS`: systems in priority order; the first also names bare values.
    pub systems: Vec<String>,
    /// `V2_IDENTIFIER_SYSTEMS`: assigning authority (and type) → system.
    pub v2: Vec<V2Mapping>,
}

impl IdentityRules {
    /// The rule in force, for the start-up log.
    pub fn describe(&self) -> String {
        let configured = if self.systems.is_empty() {
            "no MRN_SYSTEMS configured".to_owned()
        } else {
            format!("else the first of MRN_SYSTEMS {:?}", self.systems)
        };
        format!(
            "patient identity: the identifier typed MR (v2-0203), {configured}, else the first identifier with a system and a value; {} HL7 v2 authority mapping(s)",
            self.v2.len()
        )
    }

    fn usable(&self, raw: &RawIdentifier) -> Option<Identifier> {
        let value = raw.value.clone()?;
        if value.len() > MAX_VALUE || value.chars().any(char::is_control) {
            return None;
        }
        let system = raw.system.clone().or_else(|| self.systems.first().cloned())?;
        Some(Identifier { system, value })
    }

    /// Every usable identifier (with a system and a value), in the resource's order.
    pub fn all(&self, identifiers: &[RawIdentifier]) -> Vec<Identifier> {
        let mut out: Vec<Identifier> = Vec::new();
        for id in identifiers.iter().filter_map(|r| self.usable(r)) {
            if !out.contains(&id) {
                out.push(id);
            }
        }
        out
    }

    /// The identifier a patient is known by, by the rule above.
    pub fn primary(&self, identifiers: &[RawIdentifier]) -> Result<Identifier, Issue> {
        let mr = identifiers.iter().filter(|r| r.typed_mr).find_map(|r| self.usable(r));
        let configured = || {
            self.systems.iter().find_map(|s| {
                identifiers
                    .iter()
                    .filter(|r| r.system.as_deref() == Some(s.as_str()))
                    .find_map(|r| self.usable(r))
            })
        };
        // Identifiers with their own system first; a bare value only under a configured system.
        let any = || {
            identifiers
                .iter()
                .filter(|r| r.system.is_some())
                .chain(identifiers.iter().filter(|r| r.system.is_none()))
                .find_map(|r| self.usable(r))
        };
        mr.or_else(configured).or_else(any).ok_or_else(|| {
            Issue::new(
                "/identifier",
                "the Patient has no identifier with both a system and a value (at most 256 characters): \
                 Wardwatch knows a patient by one. Add a system, or set MRN_SYSTEMS to the system \
                 that bare hospital numbers belong to",
            )
        })
    }

    /// The identifier a reference by identifier (`subject.identifier`) names.
    pub fn subject(&self, raw: &RawIdentifier) -> Result<Identifier, String> {
        if raw.value.is_none() {
            return Err("subject.identifier has no value".into());
        }
        self.usable(raw).ok_or_else(|| {
            if raw.system.is_none() {
                "subject.identifier has no system, and MRN_SYSTEMS is not set to say which system a bare value belongs to".into()
            } else {
                "subject.identifier's value is too long or contains control characters".into()
            }
        })
    }

    /// The FHIR identifier for an HL7 v2 CX (PID-3 repetition): value, assigning authority, type.
    pub fn from_v2(&self, value: &str, authority: Option<&str>, type_code: Option<&str>) -> Option<Identifier> {
        let authority = authority.unwrap_or_default();
        let system = self
            .v2
            .iter()
            .find(|m| m.authority == authority && m.type_code.is_some() && m.type_code.as_deref() == type_code)
            .or_else(|| {
                self.v2
                    .iter()
                    .find(|m| m.authority == authority && m.type_code.is_none())
            })
            .map(|m| m.system.clone())
            // An MR without an assigning authority is the hospital's own number; one under another
            // authority is another hospital's until the table says otherwise.
            .or_else(|| {
                (type_code == Some("MR") && authority.is_empty())
                    .then(|| self.systems.first().cloned())
                    .flatten()
            })?;
        self.usable(&RawIdentifier {
            system: Some(system),
            value: Some(value.to_owned()),
            typed_mr: type_code == Some("MR"),
        })
    }

    /// Parse `V2_IDENTIFIER_SYSTEMS`: comma-separated `AUTHORITY[^TYPE]=system`.
    pub fn parse_v2_table(text: &str) -> Result<Vec<V2Mapping>, String> {
        let mut out = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (left, system) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: expected AUTHORITY[^TYPE]=system"))?;
            let (authority, type_code) = match left.split_once('^') {
                Some((a, t)) => (a.trim(), Some(t.trim().to_owned())),
                None => (left.trim(), None),
            };
            let system = system.trim();
            if authority.is_empty() || system.is_empty() {
                return Err(format!("`{item}`: the authority and the system must not be empty"));
            }
            out.push(V2Mapping {
                authority: authority.to_owned(),
                type_code,
                system: system.to_owned(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: Value) -> Vec<RawIdentifier> {
        RawIdentifier::list(Some(&v))
    }

    #[test]
    fn the_identifier_typed_mr_wins_under_either_v2_0203_system() {
        for system in [V2_0203, V2_0203_LEGACY] {
            let ids = raw(json!([
                {"system": "urn:nhs", "value": "943"},
                {"system": "urn:h", "value": "555", "type": {"coding": [{"system": system, "code": "MR"}]}}
            ]));
            let id = IdentityRules::default().primary(&ids).expect("identity");
            assert_eq!((id.system.as_str(), id.value.as_str()), ("urn:h", "555"));
        }
    }

    #[test]
    fn a_system_only_identifier_is_enough_with_no_configuration() {
        let id = IdentityRules::default()
            .primary(&raw(json!([{"system": "urn:synthea", "value": "abc"}])))
            .expect("identity");
        assert_eq!(id.value, "abc");
    }

    #[test]
    fn configured_systems_come_in_their_order_before_the_first_identifier() {
        let rules = IdentityRules {
            systems: vec!["urn:b".into(), "urn:a".into()],
            v2: vec![],
        };
        let ids = raw(
            json!([{"system": "urn:x", "value": "1"}, {"system": "urn:a", "value": "2"}, {"system": "urn:b", "value": "3"}]),
        );
        assert_eq!(rules.primary(&ids).expect("identity").value, "3");
    }

    #[test]
    fn a_bare_value_needs_a_configured_system_and_the_refusal_names_the_setting() {
        let ids = raw(json!([{"value": "555"}]));
        let err = IdentityRules::default().primary(&ids).expect_err("refused");
        assert!(err.message.contains("MRN_SYSTEMS"), "{}", err.message);
        let rules = IdentityRules {
            systems: vec!["urn:h".into()],
            v2: vec![],
        };
        assert_eq!(rules.primary(&ids).expect("identity").system, "urn:h");
    }

    #[test]
    fn the_same_value_under_two_systems_is_two_identities() {
        let a = IdentityRules::default().primary(&raw(json!([{"system": "urn:a", "value": "555"}])));
        let b = IdentityRules::default().primary(&raw(json!([{"system": "urn:b", "value": "555"}])));
        assert_ne!(a, b);
    }

    #[test]
    fn v2_identifiers_map_to_the_configured_fhir_system() {
        let rules = IdentityRules {
            systems: vec!["urn:mrn".into()],
            v2: IdentityRules::parse_v2_table("RXH^MR=urn:mrn, NHS=https://fhir.nhs.uk/Id/nhs-number").expect("table"),
        };
        assert_eq!(
            rules.from_v2("555", Some("RXH"), Some("MR")).map(|i| i.system),
            Some("urn:mrn".into())
        );
        assert_eq!(
            rules.from_v2("943", Some("NHS"), Some("NH")).map(|i| i.system),
            Some("https://fhir.nhs.uk/Id/nhs-number".into())
        );
        assert_eq!(rules.from_v2("1", Some("OTHER"), Some("PI")), None);
        assert_eq!(
            rules.from_v2("999", Some("OTHERHOSP"), Some("MR")),
            None,
            "another hospital's MR"
        );
        assert_eq!(
            rules.from_v2("999", None, Some("MR")).map(|i| i.system),
            Some("urn:mrn".into()),
            "an MR without an authority is the first of MRN_SYSTEMS"
        );
        assert!(IdentityRules::parse_v2_table("nonsense").is_err());
    }
}
