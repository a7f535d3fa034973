//! Shared pieces of the benchmark tools: the payloads (admission Bundles and lab Observations,
//! generated deterministically so that every run and every tool sends the same bytes), and a
//! reader for the Prometheus text that `GET /metrics` serves; PNG charts (`plot`) and k6's CSV
//! output per second (`k6`).
//!
//! The admissions that wrk sends are built by `loadtest/admissions.lua` in the same shape as
//! [`admission_bundle`].

pub mod amqp;
pub mod client;
pub mod feed;
pub mod k6;
pub mod kpa;
pub mod plot;

use serde_json::{Value, json};

/// The hospital number's system, as in `schemas/examples/admission-bundle.json`.
pub const MRN_SYSTEM: &str = "https://fhir.example-hospital.nhs.uk/Id/mrn";
/// The Encounter (hospital spell) identifier's system.
pub const SPELL_SYSTEM: &str = "https://fhir.example-hospital.nhs.uk/Id/spell";
/// The laboratory's result identifier system, as in `schemas/examples/potassium-critical.json`.
pub const RESULT_SYSTEM: &str = "https://lab.example-hospital.nhs.uk/Id/result";

/// Wards are "Ward 001" … "Ward 200", beds "Bed 01" … "Bed 30" (as in admissions.lua).
pub const WARDS: u64 = 200;
pub const BEDS: u64 = 30;

/// One result in this many is a critical potassium (≥ 6.5 mmol/L): 2 %.
pub const CRITICAL_EVERY: u64 = 50;

/// The MRN of the `i`-th patient of a lab benchmark run.
pub fn lab_mrn(tag: &str, i: u64) -> String {
    format!("{tag}-L{i:05}")
}

/// Ward and bed of the `i`-th admission: consecutive admissions go to consecutive wards; the bed
/// advances once every ward has had one.
pub fn ward_and_bed(i: u64) -> (String, String) {
    let ward = i % WARDS + 1;
    let bed = (i / WARDS) % BEDS + 1;
    (format!("Ward {ward:03}"), format!("Bed {bed:02}"))
}

/// A transaction Bundle admitting a new patient (Patient with an MR-typed identifier + an
/// inpatient Encounter on `ward`/`bed`), shaped like `schemas/examples/admission-bundle.json`.
pub fn admission_bundle(mrn: &str, spell: &str, ward: &str, bed: &str, seq: u64) -> Value {
    let patient_url = format!("urn:uuid:2f6b9f1e-0d2c-4c53-9a53-{:012x}", seq * 2);
    let encounter_url = format!("urn:uuid:2f6b9f1e-0d2c-4c53-9a53-{:012x}", seq * 2 + 1);
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{
                        "use": "usual",
                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                        "system": MRN_SYSTEM,
                        "value": mrn
                    }],
                    "name": [{"use": "official", "family": "Bench", "given": ["Load"]}],
                    "gender": if seq.is_multiple_of(2) { "female" } else { "male" },
                    "birthDate": "1950-03-14"
                },
                "request": {"method": "POST", "url": "Patient"}
            },
            {
                "fullUrl": encounter_url,
                "resource": {
                    "resourceType": "Encounter",
                    "identifier": [{"system": SPELL_SYSTEM, "value": spell}],
                    "status": "in-progress",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP", "display": "inpatient encounter"},
                    "subject": {"reference": patient_url},
                    "period": {"start": "2026-11-27T08:00:00Z"},
                    "location": [
                        {"location": {"display": ward}, "status": "active", "physicalType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "wa"}]}},
                        {"location": {"display": bed}, "status": "active", "physicalType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "bd"}]}}
                    ]
                },
                "request": {"method": "POST", "url": "Encounter"}
            }
        ]
    })
}

/// Whether the `i`-th result of a run is a critical potassium.
pub fn is_critical(i: u64) -> bool {
    i % CRITICAL_EVERY == 7
}

/// How many of the first `n` results are critical.
pub fn critical_count(n: u64) -> u64 {
    (0..n).filter(|&i| is_critical(i)).count() as u64
}

/// How many alerts the first `n` results of a run over `patients` patients leave active: one per
/// patient with a critical potassium. A patient's results are `patients` × 13 s apart, so repeats
/// fall inside the 24 h repeat window (one episode, the alert updated), and a patient with a
/// critical result has only critical results (`i ≡ 7 mod 50` for all its `i` when `patients` is a
/// multiple of 50; otherwise a later normal potassium may resolve it, and this count is an upper
/// bound).
pub fn alerting_patients(n: u64, patients: u64) -> u64 {
    let patients = patients.max(1);
    let mut seen: Vec<u64> = (0..n).filter(|&i| is_critical(i)).map(|i| i % patients).collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len() as u64
}

/// A cheap, fixed mixing function (SplitMix64) so that values look varied but are reproducible.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A FHIR dateTime `secs` seconds after 2026-11-01T00:00:00Z (wrapping after 28 days).
pub fn date_time(secs: u64) -> String {
    let secs = secs % (28 * 86_400);
    let (day, rest) = (secs / 86_400 + 1, secs % 86_400);
    format!(
        "2026-11-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    )
}

/// The `i`-th lab result of a run with `patients` patients: a FHIR Observation whose subject is
/// the patient's MRN identifier, with a unique result identifier. Potassium, sodium and
/// creatinine (some in mg/dL, converted by ingest-lab) at everyday values — creatinine steady per
/// patient (55–79 µmol/L: below every adult's upper reference limit, so never AKI); one in
/// [`CRITICAL_EVERY`] is a potassium from 6.5 to 7.4 mmol/L.
pub fn observation(tag: &str, i: u64, patients: u64) -> Value {
    let h = mix(i);
    let patient = i % patients.max(1);
    let mrn = lab_mrn(tag, patient);
    let creatinine = (55 + patient % 25) as f64;
    // (LOINC, display, value, UCUM unit)
    let (loinc, display, value, unit): (&str, &str, f64, &str) = if is_critical(i) {
        (
            "2823-3",
            "Potassium [Moles/volume] in Serum or Plasma",
            (65 + h % 10) as f64 / 10.0,
            "mmol/L",
        )
    } else {
        match i % 3 {
            0 => (
                "2823-3",
                "Potassium [Moles/volume] in Serum or Plasma",
                (35 + h % 16) as f64 / 10.0,
                "mmol/L",
            ),
            1 => (
                "2951-2",
                "Sodium [Moles/volume] in Serum or Plasma",
                (135 + h % 11) as f64,
                "mmol/L",
            ),
            _ if h.is_multiple_of(5) => (
                "2160-0",
                "Creatinine [Mass/volume] in Serum or Plasma",
                (creatinine / 88.42 * 100.0).round() / 100.0,
                "mg/dL",
            ),
            _ => (
                "14682-9",
                "Creatinine [Moles/volume] in Serum or Plasma",
                creatinine,
                "umol/L",
            ),
        }
    };
    json!({
        "resourceType": "Observation",
        "identifier": [{"system": RESULT_SYSTEM, "value": format!("{tag}-R{i:07}")}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": display}]},
        "subject": {"identifier": {"system": MRN_SYSTEM, "value": mrn}},
        "effectiveDateTime": date_time(i * 13),
        "issued": date_time(i * 13 + 2100),
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    })
}

/// The HL7 v2 assigning authority of the lab benchmark's patients in [`oru`]: a Wardwatch reading
/// them needs `V2_IDENTIFIER_SYSTEMS=WWBENCH^MR=<MRN_SYSTEM>`.
pub const V2_AUTHORITY: &str = "WWBENCH";

/// The `i`-th lab result as an HL7 v2.5.1 ORU^R01 message: the same patient, test, value, unit
/// and times as [`observation`], one OBR and one OBX, the result identified by its filler order
/// number.
pub fn oru(tag: &str, i: u64, patients: u64) -> String {
    let o = observation(tag, i, patients);
    let text = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned();
    // 2026-11-01T00:00:00Z → 20261101000000+0000
    let dtm = |t: String| format!("{}+0000", t.replace(['-', ':', 'T', 'Z'], ""));
    let effective = dtm(text("/effectiveDateTime"));
    let issued = dtm(text("/issued"));
    let value = o.pointer("/valueQuantity/value").cloned().unwrap_or(Value::Null);
    format!(
        "MSH|^~\\&|BENCHLAB|LAB|WARDWATCH|WW|{issued}||ORU^R01^ORU_R01|{tag}-M{i:07}|P|2.5.1\r\
         PID|1||{mrn}^^^{V2_AUTHORITY}^MR\r\
         OBR|1||{tag}-R{i:07}^LAB|UE^Urea and electrolytes^L|||{effective}|||||||||||||||{issued}|||F\r\
         OBX|1|NM|{loinc}^{display}^LN||{value}|{unit}^^UCUM|||||F|||{effective}\r",
        mrn = text("/subject/identifier/value"),
        loinc = text("/code/coding/0/code"),
        display = text("/code/coding/0/display"),
        unit = text("/valueQuantity/unit"),
    )
}

/// One sample of the Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Parse the Prometheus text format (comments skipped; a line that does not parse is skipped).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find(['{', ' ']) {
        Some(at) if line[at..].starts_with('{') => {
            let (labels, used) = parse_labels(&line[at + 1..])?;
            (&line[..at], labels, &line[at + 1 + used..])
        }
        Some(at) => (&line[..at], Vec::new(), &line[at..]),
        None => return None,
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Labels after the `{`; returns them and how many bytes were used, the `}` included.
fn parse_labels(s: &str) -> Option<(Vec<(String, String)>, usize)> {
    let mut labels = Vec::new();
    let mut chars = s.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| *c == ',' || c.is_whitespace()).is_some() {}
        match chars.peek() {
            Some((at, '}')) => return Some((labels, at + 1)),
            None => return None,
            _ => {}
        }
        let mut key = String::new();
        for (_, c) in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if chars.next().map(|(_, c)| c) != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()?.1 {
                '"' => break,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        labels.push((key.trim().to_owned(), value));
    }
}

/// The sum of the samples called `name` whose labels include every pair of `matching`.
pub fn sum(samples: &[Sample], name: &str, matching: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && matching.iter().all(|(k, v)| s.label(k) == Some(v)))
        .fold(0.0, |total, s| total + s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_is_read_with_its_labels() {
        let text = "# HELP wardwatch_requests Invocations\n\
                    # TYPE wardwatch_requests counter\n\
                    wardwatch_requests_total{function=\"ingest-lab\",trigger=\"amqp\"} 12\n\
                    wardwatch_requests_total{function=\"admit\",trigger=\"http\"} 3\n\
                    wardwatch_failures_total{function=\"admit\",kind=\"transient\"} 1\n\
                    wardwatch_rejected_total{lane=\"a \\\"b\\\"\"} 2\n\
                    wardwatch_start_to_first_request_seconds 0.25\n\
                    # EOF\n";
        let samples = parse_metrics(text);
        assert_eq!(samples.len(), 5);
        assert_eq!(
            sum(&samples, "wardwatch_requests_total", &[("function", "ingest-lab")]),
            12.0
        );
        assert_eq!(sum(&samples, "wardwatch_requests_total", &[]), 15.0);
        assert_eq!(samples[3].label("lane"), Some("a \"b\""));
        assert_eq!(sum(&samples, "wardwatch_start_to_first_request_seconds", &[]), 0.25);
    }

    #[test]
    fn observations_are_reproducible_and_unique_with_a_known_critical_share() {
        let a = observation("t", 42, 300);
        assert_eq!(a, observation("t", 42, 300));
        assert_ne!(a["identifier"], observation("t", 43, 300)["identifier"]);
        assert_eq!(critical_count(20_000), 400);
        for i in 0..1000 {
            let o = observation("t", i, 300);
            let v = o["valueQuantity"]["value"].as_f64().expect("a number");
            let loinc = o["code"]["coding"][0]["code"].as_str().expect("a code");
            match (is_critical(i), loinc) {
                (true, _) => assert!(loinc == "2823-3" && (6.5..7.5).contains(&v), "{o}"),
                (false, "2823-3") => assert!((3.5..=5.0).contains(&v), "{o}"),
                (false, "2951-2") => assert!((135.0..=145.0).contains(&v), "{o}"),
                (false, "2160-0") => assert!((0.6..=0.9).contains(&v), "{o}"),
                (false, _) => assert!((55.0..=79.0).contains(&v), "{o}"),
            }
        }
        // 20,000 results over 300 patients: the critical ones belong to six patients.
        assert_eq!(alerting_patients(20_000, 300), 6);
    }

    #[test]
    fn consecutive_admissions_go_to_different_wards() {
        assert_eq!(ward_and_bed(0), ("Ward 001".into(), "Bed 01".into()));
        assert_eq!(ward_and_bed(1), ("Ward 002".into(), "Bed 01".into()));
        assert_eq!(ward_and_bed(200), ("Ward 001".into(), "Bed 02".into()));
        assert_eq!(ward_and_bed(5999), ("Ward 200".into(), "Bed 30".into()));
    }

    #[test]
    fn the_oru_form_says_what_the_observation_says() {
        let m = oru("t", 7, 3);
        assert!(m.starts_with("MSH|^~\\&|BENCHLAB|"));
        assert!(m.contains("PID|1||t-L00001^^^WWBENCH^MR\r"));
        assert!(m.contains("|t-R0000007^LAB|"));
        assert_eq!(m.matches('\r').count(), 4);
    }

    #[test]
    fn date_times_are_valid() {
        assert_eq!(date_time(0), "2026-11-01T00:00:00Z");
        assert_eq!(date_time(86_400 + 3661), "2026-11-02T01:01:01Z");
    }
}
