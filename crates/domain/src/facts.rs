//! What Wardwatch needs to know from a (validated) FHIR resource, read from its JSON.
//!
//! These functions run after `validate_resource`, so shapes are right; they check the things
//! Wardwatch itself requires (an MRN, a subject, a LOINC code, a quantity) and say where a
//! required element is missing.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use crate::Issue;
use crate::identity::RawIdentifier;

const LOINC: &str = "http://loinc.org";

/// Longest ward or bed name accepted: every ward name is kept in the list of wards.
const MAX_LOCATION: usize = 128;

fn issue(location: &str, message: impl Into<String>) -> Issue {
    Issue::new(location, message)
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// The facts of a Patient that the ward needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientFacts {
    pub id: Option<String>,
    pub identifiers: Vec<RawIdentifier>,
    /// Display name (patient data: never logged).
    pub name: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub gender: Option<String>,
    /// The sender's `meta.lastUpdated`: its own ordering of versions.
    pub last_updated: Option<DateTime<Utc>>,
}

fn display_name(patient: &Value) -> Option<String> {
    let names = patient.get("name")?.as_array()?;
    let name = names
        .iter()
        .find(|n| str_at(n, "use") == Some("official"))
        .or_else(|| names.iter().find(|n| str_at(n, "use") != Some("old")))?;
    if let Some(text) = str_at(name, "text") {
        return Some(text.to_owned());
    }
    let mut parts: Vec<&str> = name
        .get("given")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(family) = str_at(name, "family") {
        parts.push(family);
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn last_updated(resource: &Value) -> Option<DateTime<Utc>> {
    resource
        .pointer("/meta/lastUpdated")
        .and_then(Value::as_str)
        .and_then(parse_instant)
}

pub fn patient(resource: &Value) -> PatientFacts {
    PatientFacts {
        id: str_at(resource, "id").map(str::to_owned),
        identifiers: RawIdentifier::list(resource.get("identifier")),
        name: display_name(resource),
        birth_date: str_at(resource, "birthDate").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
        gender: str_at(resource, "gender").map(str::to_owned),
        last_updated: last_updated(resource),
    }
}

/// Who a resource is about: a literal reference or a logical one by identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectRef {
    /// `Patient/<id>` (or a `urn:uuid:` inside a transaction Bundle).
    Reference(String),
    /// `subject.identifier`: one of the patient's identifiers.
    Identifier(RawIdentifier),
}

fn subject_of(resource: &Value) -> Option<SubjectRef> {
    let subject = resource.get("subject")?;
    if let Some(reference) = str_at(subject, "reference") {
        return Some(SubjectRef::Reference(reference.trim().to_owned()));
    }
    let identifier = RawIdentifier::from_json(subject.get("identifier")?);
    identifier.value.is_some().then_some(SubjectRef::Identifier(identifier))
}

/// The id in a `Patient/<id>` reference (absolute URLs ending in `/Patient/<id>` too).
pub fn patient_id_of_reference(reference: &str) -> Option<&str> {
    let reference = reference.split("/_history/").next()?;
    let (before, id) = reference.rsplit_once('/')?;
    (before == "Patient" || before.ends_with("/Patient")).then_some(id)
}

/// The facts of an Encounter that the ward board shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncounterFacts {
    pub id: Option<String>,
    /// The first identifier with a value, as `system|value`.
    pub identifier: Option<String>,
    /// The sender's `meta.lastUpdated`: its own ordering of versions.
    pub last_updated: Option<DateTime<Utc>>,
    pub status: String,
    pub class: Option<String>,
    pub subject: SubjectRef,
    pub ward: Option<String>,
    pub bed: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl EncounterFacts {
    /// An inpatient stay that is going on now.
    pub fn is_current_inpatient(&self) -> bool {
        self.status == "in-progress" && matches!(self.class.as_deref(), Some("IMP" | "ACUTE" | "NONAC"))
    }
}

fn location_name(loc: &Value) -> Option<String> {
    let location = loc.get("location")?;
    str_at(location, "display")
        .or_else(|| str_at(location, "reference"))
        .or_else(|| location.pointer("/identifier/value").and_then(Value::as_str))
        .map(str::to_owned)
}

fn physical_type(loc: &Value) -> Option<&str> {
    loc.pointer("/physicalType/coding")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find_map(|c| str_at(c, "code")))
}

/// Parse a FHIR dateTime/instant; a date alone is taken as midnight UTC.
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

pub fn encounter(resource: &Value) -> Result<EncounterFacts, Issue> {
    let status = str_at(resource, "status")
        .ok_or_else(|| issue("/status", "the Encounter has no status"))?
        .to_owned();
    let subject = subject_of(resource).ok_or_else(|| {
        issue(
            "/subject",
            "the Encounter has no subject (a Patient reference or an identifier)",
        )
    })?;
    let locations: Vec<&Value> = resource
        .get("location")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter(|l| !matches!(str_at(l, "status"), Some("completed")))
                .collect()
        })
        .unwrap_or_default();
    let bed = locations
        .iter()
        .find(|l| physical_type(l) == Some("bd"))
        .and_then(|l| location_name(l));
    let ward = locations
        .iter()
        .find(|l| physical_type(l) == Some("wa"))
        .or_else(|| locations.iter().find(|l| physical_type(l).is_none_or(|t| t != "bd")))
        .and_then(|l| location_name(l));
    if ward
        .iter()
        .chain(bed.iter())
        .any(|name| name.chars().count() > MAX_LOCATION)
    {
        return Err(issue(
            "/location",
            format!("a ward or bed name is longer than {MAX_LOCATION} characters"),
        ));
    }
    Ok(EncounterFacts {
        id: str_at(resource, "id").map(str::to_owned),
        identifier: first_identifier(resource),
        last_updated: last_updated(resource),
        status,
        class: resource
            .pointer("/class/code")
            .and_then(Value::as_str)
            .map(str::to_owned),
        subject,
        ward,
        bed,
        start: resource
            .pointer("/period/start")
            .and_then(Value::as_str)
            .and_then(parse_instant),
        end: resource
            .pointer("/period/end")
            .and_then(Value::as_str)
            .and_then(parse_instant),
    })
}

/// A numeric result as the laboratory reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    pub value: f64,
    /// The UCUM code when given, else the human unit text.
    pub unit: Option<String>,
    pub comparator: Option<String>,
}

/// What a result says.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultValue {
    Quantity(Quantity),
    /// Text, a coded answer's text, a boolean, a ratio or range: shown, never evaluated.
    Text(String),
    /// No value (a cancelled result, `dataAbsentReason`).
    Absent,
}

/// The facts of a laboratory Observation.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationFacts {
    pub id: Option<String>,
    /// `system|value` of the laboratory's own identifier for the result, when given.
    pub identifier: Option<String>,
    pub status: String,
    /// The first LOINC coding's code.
    pub loinc: Option<String>,
    /// The first other coding, as `system|code` (a laboratory's local code).
    pub local: Option<String>,
    /// The local code alone (matched against the units table's local codes).
    pub local_code: Option<String>,
    pub display: Option<String>,
    pub value: ResultValue,
    pub subject: SubjectRef,
    pub effective: Option<DateTime<Utc>>,
    pub issued: Option<DateTime<Utc>>,
}

/// The first identifier with a value, as `system|value`.
fn first_identifier(resource: &Value) -> Option<String> {
    resource.get("identifier").and_then(Value::as_array).and_then(|ids| {
        ids.iter()
            .find_map(|i| Some(format!("{}|{}", str_at(i, "system").unwrap_or(""), str_at(i, "value")?)))
    })
}

/// A number that unit conversion keeps finite.
fn plausible(value: f64) -> Result<f64, Issue> {
    // Far beyond any laboratory value, and unit conversion must stay finite.
    if !value.is_finite() || value.abs() > 1e12 {
        return Err(issue(
            "/valueQuantity/value",
            "the result's value is not a plausible number",
        ));
    }
    Ok(value)
}

fn value_of(resource: &Value) -> Result<ResultValue, Issue> {
    if let Some(vq) = resource.get("valueQuantity") {
        let Some(value) = vq.get("value").and_then(Value::as_f64) else {
            return Ok(ResultValue::Absent);
        };
        let unit = str_at(vq, "code")
            .filter(|_| str_at(vq, "system").is_none_or(|s| s == "http://unitsofmeasure.org"))
            .or_else(|| str_at(vq, "unit"))
            .map(str::to_owned);
        return Ok(ResultValue::Quantity(Quantity {
            value: plausible(value)?,
            unit,
            comparator: str_at(vq, "comparator").map(str::to_owned),
        }));
    }
    if let Some(i) = resource.get("valueInteger").and_then(Value::as_f64) {
        return Ok(ResultValue::Quantity(Quantity {
            value: plausible(i)?,
            unit: None,
            comparator: None,
        }));
    }
    if let Some(t) = str_at(resource, "valueString") {
        return Ok(ResultValue::Text(t.to_owned()));
    }
    if let Some(cc) = resource.get("valueCodeableConcept") {
        let text = str_at(cc, "text").or_else(|| {
            cc.get("coding").and_then(Value::as_array).and_then(|c| {
                c.iter()
                    .find_map(|c| str_at(c, "display").or_else(|| str_at(c, "code")))
            })
        });
        return Ok(text.map_or(ResultValue::Absent, |t| ResultValue::Text(t.to_owned())));
    }
    if let Some(b) = resource.get("valueBoolean").and_then(Value::as_bool) {
        return Ok(ResultValue::Text(b.to_string()));
    }
    for (key, value) in resource.as_object().into_iter().flatten() {
        if key.starts_with("value") && !key.starts_with("value_") {
            // valueRange, valueRatio, valueSampledData, valueTime, valuePeriod …: kept as JSON text.
            return Ok(ResultValue::Text(value.to_string()));
        }
    }
    Ok(ResultValue::Absent)
}

pub fn observation(resource: &Value) -> Result<ObservationFacts, Issue> {
    let status = str_at(resource, "status")
        .ok_or_else(|| issue("/status", "the Observation has no status"))?
        .to_owned();
    let subject = subject_of(resource).ok_or_else(|| {
        issue(
            "/subject",
            "the Observation has no patient: subject.reference or subject.identifier is required",
        )
    })?;
    let codings: Vec<&Value> = resource
        .pointer("/code/coding")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter(|c| str_at(c, "code").is_some()).collect())
        .unwrap_or_default();
    let loinc_coding = codings.iter().find(|c| str_at(c, "system") == Some(LOINC));
    let local_coding = codings.iter().find(|c| str_at(c, "system") != Some(LOINC));
    if codings.is_empty() {
        return Err(issue(
            "/code/coding",
            "the Observation has no coded test (a LOINC code, or the laboratory's own code)",
        ));
    }
    let code = |c: &&Value| str_at(c, "code").map(str::to_owned);
    Ok(ObservationFacts {
        id: str_at(resource, "id").map(str::to_owned),
        identifier: first_identifier(resource),
        status,
        loinc: loinc_coding.and_then(code),
        local: local_coding.and_then(|c| Some(format!("{}|{}", str_at(c, "system").unwrap_or(""), str_at(c, "code")?))),
        local_code: local_coding.and_then(code),
        display: loinc_coding
            .or(local_coding)
            .and_then(|c| str_at(c, "display"))
            .or_else(|| resource.pointer("/code/text").and_then(Value::as_str))
            .map(str::to_owned),
        value: value_of(resource)?,
        subject,
        effective: str_at(resource, "effectiveDateTime")
            .or_else(|| resource.pointer("/effectivePeriod/start").and_then(Value::as_str))
            .or_else(|| str_at(resource, "effectiveInstant"))
            .and_then(parse_instant),
        issued: str_at(resource, "issued").and_then(parse_instant),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example(name: &str) -> Value {
        let path = format!("{}/../../schemas/fhir/examples/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).expect("file")).expect("json")
    }

    #[test]
    fn the_official_patient_example_has_identifiers_a_name_and_a_birth_date() {
        let p = patient(&example("patient-example.json"));
        assert_eq!(p.identifiers[0].value.as_deref(), Some("12345"));
        assert!(p.identifiers[0].typed_mr);
        assert_eq!(p.id.as_deref(), Some("example"));
        assert_eq!(p.name.as_deref(), Some("Peter James Chalmers"));
        assert_eq!(p.birth_date, NaiveDate::from_ymd_opt(1974, 12, 25));
    }

    #[test]
    fn patient_references_are_read_in_relative_and_absolute_form() {
        assert_eq!(patient_id_of_reference("Patient/p1"), Some("p1"));
        assert_eq!(
            patient_id_of_reference("https://x.org/fhir/Patient/p1/_history/2"),
            Some("p1")
        );
        assert_eq!(patient_id_of_reference("Group/g1"), None);
        assert_eq!(patient_id_of_reference("urn:uuid:1234"), None);
    }

    #[test]
    fn an_inpatient_encounter_gives_ward_bed_and_start() {
        let e = json!({"resourceType":"Encounter","status":"in-progress",
            "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},
            "subject":{"reference":"Patient/p1"},"period":{"start":"2026-11-27T08:00:00Z"},
            "location":[
              {"location":{"display":"Bed 4"},"physicalType":{"coding":[{"code":"bd"}]}},
              {"location":{"display":"Ward 7B"},"physicalType":{"coding":[{"code":"wa"}]}}]});
        let f = encounter(&e).expect("facts");
        assert!(f.is_current_inpatient());
        assert_eq!(f.ward.as_deref(), Some("Ward 7B"));
        assert_eq!(f.bed.as_deref(), Some("Bed 4"));
        assert_eq!(f.subject, SubjectRef::Reference("Patient/p1".into()));
        assert_eq!(
            f.start.map(|t| t.to_rfc3339()),
            Some("2026-11-27T08:00:00+00:00".into())
        );
    }

    #[test]
    fn the_official_potassium_like_example_reads_loinc_value_and_unit() {
        let o = observation(&example("observation-example-f001-glucose.json")).expect("facts");
        assert_eq!(o.loinc.as_deref(), Some("15074-8"));
        let ResultValue::Quantity(q) = o.value else {
            panic!("a quantity")
        };
        assert_eq!((q.value, q.unit.as_deref()), (6.3, Some("mmol/L")));
        assert_eq!(o.subject, SubjectRef::Reference("Patient/f001".into()));
    }

    #[test]
    fn an_observation_without_a_subject_is_refused_at_subject() {
        let o = json!({"resourceType":"Observation","status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":"2823-3"}]},
            "valueQuantity":{"value":7.1,"unit":"mmol/L"}});
        assert_eq!(observation(&o).expect_err("no subject").location, "/subject");
    }

    #[test]
    fn an_implausibly_large_value_is_refused() {
        let o = json!({"resourceType":"Observation","status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":"2823-3"}]},
            "subject":{"reference":"Patient/p1"},
            "valueQuantity":{"value":1.8e304,"unit":"mmol/L"}});
        assert_eq!(observation(&o).expect_err("refused").location, "/valueQuantity/value");
    }

    #[test]
    fn an_observation_by_mrn_identifier_is_read() {
        let o = json!({"resourceType":"Observation","status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":"2823-3"}]},
            "subject":{"identifier":{"value":"MRN1"}},
            "valueQuantity":{"value":7.1,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"}});
        let f = observation(&o).expect("facts");
        assert_eq!(
            f.subject,
            SubjectRef::Identifier(RawIdentifier {
                system: None,
                value: Some("MRN1".into()),
                typed_mr: false,
            })
        );
    }
}
