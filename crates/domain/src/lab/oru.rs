//! HL7 v2.3–2.5.1 ORU^R01 → FHIR R4 Observations. Pure: bytes and the hospital's settings in,
//! Observations (as JSON, to be validated and stored like any FHIR result) or a refusal out.
//!
//! | HL7 v2 | FHIR Observation |
//! |---|---|
//! | PID-3 (first repetition typed MR, else the first) | `subject.identifier` through the identity table |
//! | OBR-3 (else OBR-2) + OBX-3 + OBX-4 | `identifier` (`RESULT_IDENTIFIER_SYSTEM`): the result's identity |
//! | OBX-3 both triplets | `code.coding`: LOINC where a coding system says `LN`, local codes beside it |
//! | OBX-2/OBX-5 NM, SN, `<0.5` | `valueQuantity` (with `comparator`) |
//! | OBX-2/OBX-5 ST, TX, FT | `valueString` (a number with a comparator in ST is a `valueQuantity`) |
//! | OBX-2/OBX-5 CE, CWE | `valueCodeableConcept` |
//! | OBX-6 | `valueQuantity.unit` (and `code` when OBX-6.3 is UCUM) |
//! | OBX-7 | `referenceRange.text` (and `low`/`high` for `a-b`) |
//! | OBX-8 | `interpretation` (v3 ObservationInterpretation) |
//! | OBX-11 F C P X W (…) | `status` final, corrected, preliminary, cancelled, entered-in-error |
//! | OBX-14, else OBR-7 | `effectiveDateTime` (no offset: the hospital's zone) |
//! | OBR-22 | `issued` |
//! | NTE after an OBX | `note` |
//! | MSH-10 | extension `MESSAGE_ID_EXTENSION` |

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use hl7_parser::Message;
use hl7_parser::message::{Segment, Separators};
use serde_json::{Map, Value, json};

use super::er7::{self, component, field_text};
use super::{MESSAGE_ID_EXTENSION, RECEIVED_EXTENSION, RESULT_IDENTIFIER_SYSTEM, local_system};
use crate::identity::{Identifier, IdentityRules};

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

/// What the mapping needs to know about the hospital.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    pub identity: &'a IdentityRules,
    /// Where times without an offset were written.
    pub zone: Tz,
}

/// One message's results.
#[derive(Debug, Clone, PartialEq)]
pub struct OruMessage {
    /// MSH-10.
    pub control_id: String,
    pub observations: Vec<Value>,
}

/// Every message in an ER7 payload, mapped; `Err` with the reason when any message of it can
/// never be stored (a batch is refused whole, and replayed whole once fixed).
pub fn read(payload: &[u8], settings: &Settings<'_>) -> Result<Vec<OruMessage>, String> {
    let text = er7::decode(payload)?;
    let messages = er7::split_messages(&text)?;
    let many = messages.len() > 1;
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            message(m, settings).map_err(|e| {
                if many {
                    format!("message {} of the batch: {e}", i + 1)
                } else {
                    e
                }
            })
        })
        .collect()
}

fn message(text: &str, settings: &Settings<'_>) -> Result<OruMessage, String> {
    let parsed: Message<'_> = er7::parse(text)?;
    let seps = parsed.separators;
    let msh = parsed.segment("MSH").ok_or("no MSH segment")?;
    if msh.fields.len() < 12 {
        return Err(
            "the MSH segment is truncated: MSH-9 (message type), MSH-10 (control id) and MSH-12 (version) are required"
                .into(),
        );
    }
    let kind = component(msh, &seps, 9, 1).unwrap_or_default();
    let event = component(msh, &seps, 9, 2).unwrap_or_default();
    if kind != "ORU" || !matches!(event.as_str(), "R01" | "R30" | "R31" | "R32") {
        return Err(format!(
            "wrong message type `{kind}^{event}` (MSH-9): lab-feed takes ORU^R01 results"
        ));
    }
    let control_id = component(msh, &seps, 10, 1).ok_or("MSH-10 (message control id) is empty")?;
    // When the message was made: the issue time of results whose OBR-22 is empty, so that a
    // later correction orders after an earlier one.
    let sent = component(msh, &seps, 7, 1).and_then(|t| er7::instant(&t, settings.zone).ok());
    let mut observations: Vec<Value> = Vec::new();
    // Identities seen in the current order: a repeated OBX-3 + OBX-4 is a continuation line
    // of a text report, or else a further result that needs an identity of its own.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut patient: Option<Identifier> = None;
    let mut order: Option<Order> = None;
    // NTE segments belong to the segment before them: only those after an OBX are its notes.
    let mut after_obx = false;
    for seg in parsed.segments() {
        let was_after_obx = std::mem::replace(&mut after_obx, seg.name == "OBX");
        match seg.name {
            "PID" => {
                patient = Some(patient_identifier(seg, &seps, settings.identity)?);
                seen.clear();
            }
            "OBR" => {
                order = Some(Order::read(seg, &seps, settings.zone, sent)?);
                seen.clear();
            }
            "OBX" => {
                let who = patient
                    .as_ref()
                    .ok_or("an OBX comes before any PID: the result has no patient identifier")?;
                let obr = order
                    .as_ref()
                    .ok_or("an OBX comes before any OBR: the result has no order")?;
                let mut o = observation(seg, &seps, who, obr, &control_id, settings.zone)?;
                let identity = o["identifier"][0]["value"].as_str().unwrap_or_default().to_owned();
                let times = seen.entry(identity.clone()).or_default();
                *times += 1;
                if *times > 1 {
                    let last = observations
                        .last_mut()
                        .filter(|l| l["identifier"][0]["value"] == identity.as_str());
                    match (last, o.get("valueString").and_then(Value::as_str)) {
                        (Some(last), Some(more)) if last.get("valueString").is_some() => {
                            let joined = format!("{}\n{more}", last["valueString"].as_str().unwrap_or_default());
                            last["valueString"] = Value::String(joined);
                            continue;
                        }
                        _ => o["identifier"][0]["value"] = Value::String(format!("{identity}#{times}")),
                    }
                }
                observations.push(o);
            }
            "NTE" => {
                if was_after_obx && let (Some(last), Some(text)) = (observations.last_mut(), field_text(seg, &seps, 3))
                {
                    add_note(last, &text);
                }
                // Several NTE in a row all belong to the OBX before them.
                after_obx = was_after_obx;
            }
            _ => {}
        }
    }
    if observations.is_empty() {
        return Err("the message has no results (no OBX segment)".into());
    }
    Ok(OruMessage {
        control_id,
        observations,
    })
}

/// PID-3: the repetition typed MR, else the first with a value, mapped to a FHIR identifier.
fn patient_identifier(pid: &Segment<'_>, seps: &Separators, identity: &IdentityRules) -> Result<Identifier, String> {
    let reps: Vec<(String, Option<String>, Option<String>)> = pid
        .field(3)
        .map(|f| {
            f.repeats()
                .filter_map(|r| {
                    let c = |n: usize| {
                        r.component(n)
                            .map(|c| er7::unescape(c.raw_value(), seps).trim().to_owned())
                            .filter(|s| !s.is_empty())
                    };
                    // CX-4 is an HD: its namespace id is the first subcomponent.
                    let authority = c(4).map(|a| a.split(seps.subcomponent).next().unwrap_or_default().to_owned());
                    Some((c(1)?, authority, c(5)))
                })
                .collect()
        })
        .unwrap_or_default();
    if reps.is_empty() {
        return Err("PID-3 (patient identifier list) is empty: a result needs its patient's identifier".into());
    }
    let mr = reps.iter().find(|(_, _, t)| t.as_deref() == Some("MR"));
    for (value, authority, type_code) in mr.into_iter().chain(reps.iter()) {
        if let Some(id) = identity.from_v2(value, authority.as_deref(), type_code.as_deref()) {
            return Ok(id);
        }
    }
    let (_, authority, type_code) = mr.unwrap_or(&reps[0]);
    Err(format!(
        "PID-3's assigning authority `{}` (type `{}`) has no FHIR identifier system: add it to V2_IDENTIFIER_SYSTEMS \
         (AUTHORITY[^TYPE]=system), or set MRN_SYSTEMS for identifiers typed MR, then replay",
        authority.as_deref().unwrap_or(""),
        type_code.as_deref().unwrap_or("")
    ))
}

/// The OBR a group of OBX belongs to.
struct Order {
    /// Filler order number (OBR-3.1, with its namespace OBR-3.2), else the placer's (OBR-2).
    number: String,
    observed: Option<DateTime<Utc>>,
    issued: Option<DateTime<Utc>>,
    /// OBR-25, the order's result status: what an OBX without OBX-11 is taken to say.
    status: Option<String>,
}

impl Order {
    fn read(obr: &Segment<'_>, seps: &Separators, zone: Tz, sent: Option<DateTime<Utc>>) -> Result<Self, String> {
        let ei = |field: usize| {
            component(obr, seps, field, 1).map(|n| match component(obr, seps, field, 2) {
                Some(ns) => format!("{n}^{ns}"),
                None => n,
            })
        };
        let number = ei(3)
            .map(|n| format!("filler|{n}"))
            .or_else(|| ei(2).map(|n| format!("placer|{n}")))
            .ok_or("OBR-3 (filler order number) and OBR-2 (placer order number) are both empty")?;
        let time = |field: usize| -> Result<Option<DateTime<Utc>>, String> {
            component(obr, seps, field, 1)
                .map(|t| er7::instant(&t, zone).map_err(|e| format!("OBR-{field}: {e}")))
                .transpose()
        };
        Ok(Order {
            number,
            observed: time(7)?,
            issued: time(22)?.or(sent),
            status: component(obr, seps, 25, 1),
        })
    }
}

/// OBX-11 (table 0085) as a FHIR status. Without one, the order's status (OBR-25, table 0123:
/// F, C, P, X …) is taken, and without that, `final` (OBX-11 is required; a sender that leaves
/// it out sends finished results). A code outside the table is `unknown`: stored, never
/// evaluated. `U` (final, value not sent again) carries no value: the record keeps the value it
/// has.
fn status(code: &str) -> &'static str {
    match code {
        "F" | "U" => "final",
        "C" => "corrected",
        "P" | "R" | "S" => "preliminary",
        "I" | "O" => "registered",
        "X" | "D" | "N" => "cancelled",
        "W" => "entered-in-error",
        _ => "unknown",
    }
}

fn is_loinc(system: Option<&str>) -> bool {
    matches!(system, Some("LN" | "LOINC" | "LNC" | "http://loinc.org"))
}

/// A number as written in NM/ST with an optional leading comparator: `<0.5`, `>= 10`, `7.2`.
fn number_with_comparator(text: &str) -> Option<(Option<&'static str>, f64)> {
    let t = text.trim();
    let (comparator, rest) = [("<=", "<="), (">=", ">="), ("<", "<"), (">", ">")]
        .iter()
        .find_map(|(p, c)| t.strip_prefix(p).map(|r| (Some(*c), r)))
        .unwrap_or((None, t));
    let rest = rest.trim();
    if rest.is_empty()
        || !rest
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+'))
    {
        return None;
    }
    let v: f64 = rest.parse().ok()?;
    (v.is_finite() && v.abs() <= 1e12).then_some((comparator, v))
}

/// A JSON number: integers stay integers, so that `7` is not written `7.0`.
fn num(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9e15 {
        #[allow(clippy::cast_possible_truncation)] // whole and far inside i64
        return Value::from(v as i64);
    }
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn time(t: DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn observation(
    obx: &Segment<'_>,
    seps: &Separators,
    patient: &Identifier,
    order: &Order,
    control_id: &str,
    zone: Tz,
) -> Result<Value, String> {
    let set_id = component(obx, seps, 1, 1).unwrap_or_default();
    let at = |field: usize| {
        format!(
            "OBX{} field {field}",
            if set_id.is_empty() {
                String::new()
            } else {
                format!("-{set_id}")
            }
        )
    };
    let value_type = component(obx, seps, 2, 1).unwrap_or_default();
    let code = component(obx, seps, 3, 1);
    let text = component(obx, seps, 3, 2);
    let system = component(obx, seps, 3, 3);
    let alt_code = component(obx, seps, 3, 4);
    let alt_text = component(obx, seps, 3, 5);
    let alt_system = component(obx, seps, 3, 6);
    let Some(identity_code) = code.clone().or_else(|| alt_code.clone()) else {
        return Err(format!("{}: OBX-3 (observation identifier) is empty", at(3)));
    };
    let sub_id = component(obx, seps, 4, 1).unwrap_or_default();
    let mut coding = Vec::new();
    for (c, t, s) in [(&code, &text, &system), (&alt_code, &alt_text, &alt_system)] {
        let Some(c) = c else { continue };
        let mut entry = Map::new();
        let system_uri = if is_loinc(s.as_deref()) {
            LOINC.to_owned()
        } else {
            local_system(s.as_deref().unwrap_or("L"))
        };
        entry.insert("system".into(), json!(system_uri));
        entry.insert("code".into(), json!(c));
        if let Some(t) = t {
            entry.insert("display".into(), json!(t));
        }
        // LOINC first: readers take the first LOINC coding.
        if is_loinc(s.as_deref()) {
            coding.insert(0, Value::Object(entry));
        } else {
            coding.push(Value::Object(entry));
        }
    }
    let status_code = component(obx, seps, 11, 1);
    let status = match (status_code.as_deref(), order.status.as_deref()) {
        (Some(c), _) => status(c),
        (None, Some("I" | "O" | "S" | "A" | "R")) => "preliminary",
        (None, Some("Y" | "Z")) => "registered",
        (None, Some(c)) => match status(c) {
            "unknown" => "final",
            s => s,
        },
        (None, None) => "final",
    };
    let mut o = Map::new();
    o.insert("resourceType".into(), json!("Observation"));
    o.insert(
        "extension".into(),
        json!([{"url": MESSAGE_ID_EXTENSION, "valueString": control_id}]),
    );
    o.insert(
        "identifier".into(),
        json!([{"system": RESULT_IDENTIFIER_SYSTEM, "value": format!("{}|{identity_code}|{sub_id}", order.number)}]),
    );
    o.insert("status".into(), json!(status));
    o.insert(
        "category".into(),
        json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]),
    );
    let mut cc = Map::new();
    cc.insert("coding".into(), Value::Array(coding));
    if let Some(t) = text.or(alt_text) {
        cc.insert("text".into(), json!(t));
    }
    o.insert("code".into(), Value::Object(cc));
    o.insert(
        "subject".into(),
        json!({"identifier": {"system": patient.system, "value": patient.value}}),
    );
    let observed = match component(obx, seps, 14, 1) {
        Some(t) => Some(er7::instant(&t, zone).map_err(|e| format!("{}: {e}", at(14)))?),
        None => order.observed,
    };
    if let Some(t) = observed {
        o.insert("effectiveDateTime".into(), time(t));
    }
    if let Some(t) = order.issued {
        o.insert("issued".into(), time(t));
    }
    let unit = component(obx, seps, 6, 1);
    let unit_system = component(obx, seps, 6, 3);
    let quantity = |comparator: Option<&str>, value: f64| {
        let mut q = Map::new();
        q.insert("value".into(), num(value));
        if let Some(c) = comparator {
            q.insert("comparator".into(), json!(c));
        }
        if let Some(u) = &unit {
            q.insert("unit".into(), json!(u));
            if matches!(unit_system.as_deref(), Some("UCUM" | "ANS+")) {
                q.insert("system".into(), json!(UCUM));
                q.insert("code".into(), json!(u));
            }
        }
        Value::Object(q)
    };
    let first = obx.field(5).and_then(|f| f.repeat(1));
    let raw5 = first.map(|r| r.raw_value()).unwrap_or_default();
    let text5 = er7::unescape(raw5, seps);
    if !raw5.trim().is_empty() {
        match value_type.as_str() {
            "SN" => {
                let c = |n: usize| component(obx, seps, 5, n);
                let comparator = c(1);
                let comparator = match comparator.as_deref() {
                    None | Some("=") => Some(None),
                    Some("<") => Some(Some("<")),
                    Some(">") => Some(Some(">")),
                    Some("<=") => Some(Some("<=")),
                    Some(">=") => Some(Some(">=")),
                    // `<>` (not equal) and anything else: not a quantity.
                    Some(_) => None,
                };
                let number = c(2).as_deref().and_then(number_with_comparator);
                match (comparator, number, c(3)) {
                    (Some(comparator), Some((_, v)), None) => {
                        o.insert("valueQuantity".into(), quantity(comparator, v));
                    }
                    // A ratio or range (1:128, 2-5), a dipstick grade (2+), a "not equal": kept
                    // as written, never a single number.
                    _ => {
                        o.insert("valueString".into(), json!(text5.replace(seps.component, "")));
                    }
                }
            }
            "NM" | "ST" => match number_with_comparator(&text5) {
                Some((c, v)) => {
                    o.insert("valueQuantity".into(), quantity(c, v));
                }
                None if value_type == "NM" => {
                    return Err(format!("{}: the NM value is not a number", at(5)));
                }
                None => {
                    o.insert("valueString".into(), json!(text5.trim()));
                }
            },
            "CE" | "CWE" | "CNE" | "CF" => {
                let c = |n: usize| component(obx, seps, 5, n);
                let mut coding = Map::new();
                if let Some(code) = c(1) {
                    coding.insert("code".into(), json!(code));
                    coding.insert("system".into(), json!(local_system(c(3).as_deref().unwrap_or("L"))));
                }
                if let Some(t) = c(2) {
                    coding.insert("display".into(), json!(t));
                }
                let mut concept = Map::new();
                if !coding.is_empty() {
                    concept.insert("coding".into(), json!([coding]));
                }
                if let Some(t) = c(2).or_else(|| c(1)) {
                    concept.insert("text".into(), json!(t));
                }
                o.insert("valueCodeableConcept".into(), Value::Object(concept));
            }
            _ => {
                // TX, FT and anything else: the text, repetitions joined by line breaks.
                let all: Vec<String> = obx
                    .field(5)
                    .map(|f| f.repeats().map(|r| er7::unescape(r.raw_value(), seps)).collect())
                    .unwrap_or_default();
                o.insert("valueString".into(), json!(all.join("\n").trim_end()));
            }
        }
    } else if !matches!(status, "cancelled" | "entered-in-error" | "registered") {
        o.insert(
            "dataAbsentReason".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown"}]}),
        );
    }
    // As received, beside the value that will be normalised.
    let mut received = Vec::new();
    if !text5.trim().is_empty() {
        received.push(json!({"url": "value", "valueString": text5.trim()}));
    }
    if let Some(u) = &unit {
        received.push(json!({"url": "unit", "valueString": u}));
    }
    if !received.is_empty()
        && let Some(Value::Array(ext)) = o.get_mut("extension")
    {
        ext.push(json!({"url": RECEIVED_EXTENSION, "extension": received}));
    }
    if let Some(range) = component(obx, seps, 7, 1) {
        let mut r = Map::new();
        if let Some((low, high)) = range.split_once('-')
            && let (Ok(l), Ok(h)) = (low.trim().parse::<f64>(), high.trim().parse::<f64>())
        {
            let bound = |v: f64| {
                let mut q = Map::new();
                q.insert("value".into(), num(v));
                if let Some(u) = &unit {
                    q.insert("unit".into(), json!(u));
                }
                Value::Object(q)
            };
            r.insert("low".into(), bound(l));
            r.insert("high".into(), bound(h));
        }
        r.insert("text".into(), json!(range));
        o.insert("referenceRange".into(), json!([r]));
    }
    let flags: Vec<Value> = obx
        .field(8)
        .map(|f| {
            f.repeats()
                .filter_map(|r| r.component(1))
                .map(|c| er7::unescape(c.raw_value(), seps).trim().to_owned())
                .filter(|c| !c.is_empty())
                .map(|c| json!({"coding": [{"system": INTERPRETATION, "code": c}]}))
                .collect()
        })
        .unwrap_or_default();
    if !flags.is_empty() {
        o.insert("interpretation".into(), Value::Array(flags));
    }
    Ok(Value::Object(o))
}

fn add_note(observation: &mut Value, text: &str) {
    if let Some(o) = observation.as_object_mut() {
        let notes = o.entry("note").or_insert_with(|| json!([]));
        if let Some(list) = notes.as_array_mut() {
            list.push(json!({"text": text}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rules: &IdentityRules) -> Settings<'_> {
        Settings {
            identity: rules,
            zone: chrono_tz::Europe::London,
        }
    }

    fn rules() -> IdentityRules {
        IdentityRules {
            systems: vec!["urn:mrn".into()],
            v2: IdentityRules::parse_v2_table("RXH^MR=urn:mrn,NHS=https://fhir.nhs.uk/Id/nhs-number").expect("table"),
        }
    }

    const MSG: &str = "MSH|^~\\&|LAB|RXH|WW|RXH|20261127093000||ORU^R01^ORU_R01|M1|P|2.5.1\r\
PID|1||123456^^^RXH^MR~9434765919^^^NHS^NH||DOE^JANE\r\
OBR|1|PL1|FL1^LAB|U&E^Urea and electrolytes^L|||20261127080000|||||||||||||||20261127091500\r\
OBX|1|NM|2823-3^Potassium^LN||7.1|mmol/L^^UCUM|3.5-5.3|HH|||F\r\
NTE|1||Haemolysed \\T\\ repeated\r\
OBX|2|SN|K2^Potassium (whole blood)^99LAB^6298-4^Potassium^LN||<^0.5|mmol/L|||||C|||202611270815\r\
OBX|3|ST|TXT^Comment^L||>1000|U/L\r\
OBX|4|CWE|COV^SARS-CoV-2^L||NEG^Not detected^L||||||X\r";

    #[test]
    fn an_oru_message_becomes_observations() {
        let rules = rules();
        let m = read(MSG.as_bytes(), &settings(&rules)).expect("read");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].control_id, "M1");
        let o = &m[0].observations;
        assert_eq!(o.len(), 4);
        assert_eq!(
            o[0]["subject"]["identifier"],
            json!({"system": "urn:mrn", "value": "123456"})
        );
        assert_eq!(o[0]["identifier"][0]["value"], "filler|FL1^LAB|2823-3|");
        assert_eq!(
            o[0]["code"]["coding"][0],
            json!({"system": LOINC, "code": "2823-3", "display": "Potassium"})
        );
        assert_eq!(
            o[0]["valueQuantity"],
            json!({"value": 7.1, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"})
        );
        assert_eq!(o[0]["effectiveDateTime"], "2026-11-27T08:00:00Z");
        assert_eq!(o[0]["issued"], "2026-11-27T09:15:00Z");
        assert_eq!(o[0]["referenceRange"][0]["text"], "3.5-5.3");
        assert_eq!(o[0]["interpretation"][0]["coding"][0]["code"], "HH");
        assert_eq!(o[0]["note"][0]["text"], "Haemolysed & repeated");
        // The alternate triplet's LOINC comes first; the local code is kept beside it.
        assert_eq!(o[1]["code"]["coding"][0]["code"], "6298-4");
        assert_eq!(o[1]["code"]["coding"][1]["code"], "K2");
        assert_eq!(o[1]["valueQuantity"]["comparator"], "<");
        assert_eq!(o[1]["status"], "corrected");
        assert_eq!(o[1]["effectiveDateTime"], "2026-11-27T08:15:00Z");
        assert_eq!(
            o[2]["valueQuantity"],
            json!({"value": 1000, "comparator": ">", "unit": "U/L"})
        );
        assert_eq!(o[3]["valueCodeableConcept"]["text"], "Not detected");
        assert_eq!(o[3]["status"], "cancelled");
    }

    #[test]
    fn notes_belong_to_the_result_before_them_and_a_missing_status_is_the_orders() {
        let rules = rules();
        let text = "MSH|^~\\&|LAB|RXH|WW|RXH|20261127093000||ORU^R01|M2|P|2.4\r\
PID|1||123456^^^RXH^MR\r\
OBR|1||F1|K^K^L|||20261127080000||||||||||||||||||P\r\
NTE|1||An order comment, not a result's\r\
OBX|1|NM|2823-3^K^LN||4.1|mmol/L\r\
NTE|1||first\r\
NTE|2||second\r\
OBR|2||F2|K^K^L|||20261127080000\r\
NTE|1||Another order comment\r\
OBX|1|NM|2823-3^K^LN||4.2|mmol/L\r";
        let m = read(text.as_bytes(), &settings(&rules)).expect("read");
        let o = &m[0].observations;
        assert_eq!(o[0]["note"], json!([{"text": "first"}, {"text": "second"}]));
        assert!(o[1].get("note").is_none());
        assert_eq!(
            (o[0]["status"].as_str(), o[1]["status"].as_str()),
            (Some("preliminary"), Some("final"))
        );
    }

    #[test]
    fn repeated_lines_of_a_text_report_are_one_result_and_repeated_numbers_are_kept_apart() {
        let rules = rules();
        let text = "MSH|^~\\&|LAB|RXH|WW|RXH|20261127093000||ORU^R01|M3|P|2.5\r\
PID|1||123456^^^RXH^MR\r\
OBR|1||F1|MC^Culture^L|||20261127080000\r\
OBX|1|TX|MCREP^Report^L||Culture: Staph aureus||||||F\r\
OBX|2|TX|MCREP^Report^L||(MRSA)||||||F\r\
OBX|3|TX|MCREP^Report^L||Please isolate patient||||||F\r\
OBX|4|NM|2823-3^K^LN||4.1|mmol/L|||||F\r\
OBX|5|NM|2823-3^K^LN||4.3|mmol/L|||||F\r";
        let m = read(text.as_bytes(), &settings(&rules)).expect("read");
        let o = &m[0].observations;
        assert_eq!(o.len(), 3);
        assert_eq!(
            o[0]["valueString"],
            "Culture: Staph aureus\n(MRSA)\nPlease isolate patient"
        );
        assert_ne!(o[1]["identifier"][0]["value"], o[2]["identifier"][0]["value"]);
        // No OBR-22: MSH-7 is when the results were issued.
        assert_eq!(o[0]["issued"], "2026-11-27T09:30:00Z");
    }

    #[test]
    fn sn_values_that_are_not_one_number_are_kept_as_text_and_unknown_statuses_are_unknown() {
        let rules = rules();
        let base = MSG.split("\rOBX").next().unwrap_or_default().to_owned();
        let text = format!(
            "{base}\rOBX|1|SN|2823-3^K^LN||<>^6.8|mmol/L|||||F\rOBX|2|SN|5803-2^pH^LN||^2^+||||||F\r\
             OBX|3|SN|X^T^L||^1^:^128||||||Q\rOBX|4|NM|2951-2^Na^LN||140|mmol/L|||||N\r"
        );
        let m = read(text.as_bytes(), &settings(&rules)).expect("read");
        let o = &m[0].observations;
        assert_eq!(o[0]["valueString"], "<>6.8");
        assert_eq!(o[1]["valueString"], "2+");
        assert_eq!(
            (o[2]["valueString"].as_str(), o[2]["status"].as_str()),
            (Some("1:128"), Some("unknown"))
        );
        assert_eq!(o[3]["status"], "cancelled");
    }

    #[test]
    fn messages_that_can_never_be_stored_say_why() {
        let rules = rules();
        let s = settings(&rules);
        let cases = [
            (MSG.replace("ORU^R01^ORU_R01", "ADT^A01"), "wrong message type"),
            (MSG.replace("123456^^^RXH^MR~9434765919^^^NHS^NH", ""), "PID-3"),
            (
                MSG.replace("RXH^MR~9434765919^^^NHS^NH", "OTHER^PI"),
                "V2_IDENTIFIER_SYSTEMS",
            ),
            (MSG.split("\rOBX").next().unwrap_or_default().to_owned(), "no results"),
            ("MSH|^~\\&|LAB".to_owned(), "truncated"),
            ("hello".to_owned(), "not an HL7"),
            (MSG.replace("202611270815", "2026-11-27"), "OBX-2 field 14"),
        ];
        for (text, says) in cases {
            let e = read(text.as_bytes(), &s).expect_err(says);
            assert!(e.contains(says), "{e} should say {says}");
        }
    }
}
