//! `wardwatch demo`: a synthetic hospital feeding the running host, so a newcomer sees a living
//! ward at once. Four wards; admissions, transfers and discharges as FHIR transaction Bundles to
//! `/fhir`; laboratory results to the `lab-feed` binding route, two in three as FHIR
//! Observations and one in three as HL7 v2 ORU^R01 messages (PID-3 under the assigning authority
//! [`V2_AUTHORITY`], which `demo` maps to the MRN system) — the same HTTP paths as real traffic. A fixed seed gives the same hospital every time; one patient in
//! four runs out of range, and most of their results are critical.
//!
//! Every name here is made up. The generator ([`Hospital`]) is pure: a seed and a clock in,
//! requests out.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

pub const MRN_SYSTEM: &str = "https://fhir.example-hospital.nhs.uk/Id/mrn";
/// The HL7 v2 assigning authority of the demo laboratory's PID-3.
pub const V2_AUTHORITY: &str = "DEMO";
const SPELL_SYSTEM: &str = "https://fhir.example-hospital.nhs.uk/Id/spell";
const RESULT_SYSTEM: &str = "https://lab.example-hospital.nhs.uk/Id/result";
const WARDS: &[&str] = &[
    "Ward 3A Elderly Care",
    "Ward 7B Acute Medicine",
    "Ward 9 Renal",
    "Ward 12 Surgery",
];
const BEDS: u32 = 10;
const FAMILY: &[&str] = &[
    "Abbott",
    "Begum",
    "Chowdhury",
    "Davies",
    "Evans",
    "Fraser",
    "Grant",
    "Hughes",
    "Iqbal",
    "Jackson",
    "Kowalski",
    "Lewis",
    "Mensah",
    "Nowak",
    "O'Brien",
    "Patel",
    "Quinn",
    "Roberts",
    "Sandhu",
    "Thomas",
    "Usman",
    "Vaughan",
    "Walsh",
    "Young",
];
const GIVEN: &[&str] = &[
    "Ada", "Bilal", "Cerys", "Dev", "Elin", "Femi", "Gwen", "Hamza", "Iris", "Jonah", "Kiran", "Lena", "Mo", "Nia",
    "Owen", "Priya", "Rhys", "Sana", "Tom", "Una",
];

/// One request the hospital sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Send {
    pub path: &'static str,
    /// The request body (a lab result: the FHIR Observation, also when `hl7` is sent instead).
    pub body: Value,
    /// The same result as an HL7 v2 ORU^R01 message, sent instead of `body` when set.
    pub hl7: Option<String>,
}

#[derive(Debug, Clone)]
struct Inpatient {
    mrn: String,
    spell: String,
    ward: usize,
    bed: u32,
    admitted: DateTime<Utc>,
    /// Where the patient's potassium, sodium and creatinine run (a few run high or low).
    k: f64,
    na: f64,
    cr: f64,
}

/// The synthetic hospital.
pub struct Hospital {
    rng: fastrand::Rng,
    inpatients: Vec<Inpatient>,
    admitted: u64,
    results: u64,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Hospital {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            inpatients: Vec::new(),
            admitted: 0,
            results: 0,
        }
    }

    /// The first minutes of the day at once: most beds filled, a first round of results.
    pub fn opening(&mut self, now: DateTime<Utc>) -> Vec<Send> {
        let mut out = Vec::new();
        for _ in 0..(WARDS.len() as u32 * BEDS * 2 / 3) {
            out.extend(self.admit(now));
        }
        for i in 0..self.inpatients.len() {
            out.push(self.result_for(i, now));
        }
        out
    }

    /// What happens in the next moment.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Send> {
        let roll = self.rng.u32(0..100);
        let full = self.inpatients.len() >= WARDS.len() * BEDS as usize;
        match roll {
            0..=59 if !self.inpatients.is_empty() => vec![self.result(now)],
            60..=74 if !full => self.admit(now),
            75..=84 if !self.inpatients.is_empty() => self.transfer(now).into_iter().collect(),
            85..=94 if !self.inpatients.is_empty() => vec![self.discharge(now)],
            _ => Vec::new(),
        }
    }

    fn free_bed(&mut self) -> Option<(usize, u32)> {
        let free: Vec<(usize, u32)> = (0..WARDS.len())
            .flat_map(|w| (1..=BEDS).map(move |b| (w, b)))
            .filter(|(w, b)| !self.inpatients.iter().any(|p| p.ward == *w && p.bed == *b))
            .collect();
        if free.is_empty() {
            None
        } else {
            Some(free[self.rng.usize(0..free.len())])
        }
    }

    fn encounter(p: &Inpatient, status: &str, version: DateTime<Utc>, end: Option<DateTime<Utc>>) -> Value {
        let mut period = json!({"start": time(p.admitted)});
        if let Some(end) = end {
            period["end"] = Value::String(time(end));
        }
        json!({
            "resourceType": "Encounter",
            "meta": {"lastUpdated": time(version)},
            "identifier": [{"system": SPELL_SYSTEM, "value": p.spell}],
            "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP", "display": "inpatient encounter"},
            "subject": {"identifier": {"system": MRN_SYSTEM, "value": p.mrn}},
            "period": period,
            "location": [
                {"location": {"display": WARDS[p.ward]}, "physicalType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "wa"}]}},
                {"location": {"display": format!("Bed {}", p.bed)}, "physicalType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "bd"}]}}
            ]
        })
    }

    fn bundle(entries: Vec<Value>) -> Send {
        Send {
            path: "/fhir",
            body: json!({
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": entries
                    .into_iter()
                    .map(|r| {
                        let t = r["resourceType"].as_str().unwrap_or_default().to_owned();
                        json!({"resource": r, "request": {"method": "POST", "url": t}})
                    })
                    .collect::<Vec<_>>()
            }),
            hl7: None,
        }
    }

    /// An admission, then the patient's creatinine from three months before (the AKI
    /// algorithm's baseline, as a GP's result would be).
    fn admit(&mut self, now: DateTime<Utc>) -> Vec<Send> {
        let Some((ward, bed)) = self.free_bed() else {
            return Vec::new();
        };
        self.admitted += 1;
        let n = self.admitted;
        let admitted = now - chrono::Duration::hours(self.rng.i64(1..240));
        // One patient in four runs out of range: their results are the ones that alert. One in
        // six of the rest has a creatinine of 150 against a baseline of about 85: AKI stage 1.
        let odd = self.rng.u32(0..4) == 0;
        let kidney = !odd && self.rng.u32(0..6) == 0;
        let p = Inpatient {
            mrn: format!("DEMO{:05}", n),
            spell: format!("DEMO-S{:05}", n),
            ward,
            bed,
            admitted,
            k: if odd { 6.8 } else { 4.2 },
            na: if odd && self.rng.bool() { 119.0 } else { 139.0 },
            cr: if odd {
                370.0
            } else if kidney {
                150.0
            } else {
                85.0
            },
        };
        let family = FAMILY[self.rng.usize(0..FAMILY.len())];
        let given = GIVEN[self.rng.usize(0..GIVEN.len())];
        let born = format!(
            "{}-{:02}-{:02}",
            self.rng.u32(1930..2004),
            self.rng.u32(1..13),
            self.rng.u32(1..29)
        );
        let patient = json!({
            "resourceType": "Patient",
            "identifier": [{
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "system": MRN_SYSTEM,
                "value": p.mrn
            }],
            "name": [{"family": family, "given": [given]}],
            "gender": if self.rng.bool() { "female" } else { "male" },
            "birthDate": born
        });
        let encounter = Self::encounter(&p, "in-progress", now, None);
        let baseline = (85.0 + (self.rng.f64() - 0.5) * 20.0).round();
        self.results += 1;
        let history = Self::observation(
            self.results,
            &p.mrn,
            (
                "14682-9",
                "Creatinine [Moles/volume] in Serum or Plasma",
                baseline,
                "umol/L",
            ),
            now - chrono::Duration::days(90),
            now - chrono::Duration::days(90),
        );
        self.inpatients.push(p);
        vec![Self::bundle(vec![patient, encounter]), history]
    }

    /// A FHIR Observation of a patient's result.
    fn observation(
        n: u64,
        mrn: &str,
        (loinc, display, value, unit): (&str, &str, f64, &str),
        taken: DateTime<Utc>,
        issued: DateTime<Utc>,
    ) -> Send {
        Send {
            path: "/lab-feed",
            hl7: None,
            body: json!({
                "resourceType": "Observation",
                "identifier": [{"system": RESULT_SYSTEM, "value": format!("DEMO-R{n:07}")}],
                "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": display}]},
                "subject": {"identifier": {"system": MRN_SYSTEM, "value": mrn}},
                "effectiveDateTime": time(taken),
                "issued": time(issued),
                "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
            }),
        }
    }

    fn transfer(&mut self, now: DateTime<Utc>) -> Option<Send> {
        let (ward, bed) = self.free_bed()?;
        let i = self.rng.usize(0..self.inpatients.len());
        let p = &mut self.inpatients[i];
        p.ward = ward;
        p.bed = bed;
        Some(Self::bundle(vec![Self::encounter(p, "in-progress", now, None)]))
    }

    fn discharge(&mut self, now: DateTime<Utc>) -> Send {
        let i = self.rng.usize(0..self.inpatients.len());
        let p = self.inpatients.swap_remove(i);
        Self::bundle(vec![Self::encounter(&p, "finished", now, Some(now))])
    }

    fn result(&mut self, now: DateTime<Utc>) -> Send {
        let i = self.rng.usize(0..self.inpatients.len());
        self.result_for(i, now)
    }

    fn result_for(&mut self, i: usize, now: DateTime<Utc>) -> Send {
        let p = self.inpatients[i].clone();
        self.results += 1;
        let jitter = |rng: &mut fastrand::Rng, spread: f64| (rng.f64() - 0.5) * 2.0 * spread;
        let (loinc, display, value, unit) = match self.rng.u32(0..4) {
            0 | 1 => {
                let v = p.k + jitter(&mut self.rng, 0.6);
                (
                    "2823-3",
                    "Potassium [Moles/volume] in Serum or Plasma",
                    (v * 10.0).round() / 10.0,
                    "mmol/L",
                )
            }
            2 => {
                let v = p.na + jitter(&mut self.rng, 3.0);
                (
                    "2951-2",
                    "Sodium [Moles/volume] in Serum or Plasma",
                    v.round(),
                    "mmol/L",
                )
            }
            _ => {
                // Some laboratories report creatinine in mg/dL: ingest-lab converts it.
                let v = p.cr + jitter(&mut self.rng, 20.0);
                if self.rng.u32(0..4) == 0 {
                    (
                        "2160-0",
                        "Creatinine [Mass/volume] in Serum or Plasma",
                        (v / 88.42 * 100.0).round() / 100.0,
                        "mg/dL",
                    )
                } else {
                    (
                        "14682-9",
                        "Creatinine [Moles/volume] in Serum or Plasma",
                        v.round(),
                        "umol/L",
                    )
                }
            }
        };
        let taken = now - chrono::Duration::minutes(self.rng.i64(20..90));
        let hl7 = self.rng.u32(0..3).eq(&0).then(|| {
            let dtm = |t: DateTime<Utc>| t.format("%Y%m%d%H%M%S+0000").to_string();
            format!(
                "MSH|^~\\&|DEMOLAB|DEMO|WARDWATCH|DEMO|{issued}||ORU^R01^ORU_R01|DEMO-M{n:07}|P|2.5.1\r\
                 PID|1||{mrn}^^^{V2_AUTHORITY}^MR\r\
                 OBR|1||DEMO-R{n:07}^DEMOLAB|{loinc}^{display}^LN|||{taken}|||||||||||||||{issued}|||F\r\
                 OBX|1|NM|{loinc}^{display}^LN||{value}|{unit}^^UCUM|||||F|||{taken}\r",
                issued = dtm(now),
                taken = dtm(taken),
                n = self.results,
                mrn = p.mrn,
            )
        });
        Send {
            hl7,
            ..Self::observation(self.results, &p.mrn, (loinc, display, value, unit), taken, now)
        }
    }
}

/// Feed the host at `addr` until the process stops: the opening at once, then one tick every
/// `every`. A request that fails is logged (by path and status only) and the hospital goes on.
pub async fn run(addr: SocketAddr, seed: u64, every: Duration) {
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let mut hospital = Hospital::new(seed);
    // Let the host finish starting (its consumers, the schema validators).
    for _ in 0..100 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!(
        seed,
        "demo: a synthetic hospital is feeding this host; open http://{addr}/"
    );
    let send = |s: Send| {
        let client = client.clone();
        let url = format!("{base}{}", s.path);
        async move {
            let (content_type, body) = match (&s.hl7, s.path) {
                (Some(er7), _) => ("x-application/hl7-v2+er7", er7.clone()),
                (None, "/fhir") => ("application/fhir+json", s.body.to_string()),
                (None, _) => ("application/json", s.body.to_string()),
            };
            match client
                .post(&url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(
                    path = s.path,
                    status = r.status().as_u16(),
                    "demo: a request was refused"
                ),
                Err(_) => tracing::warn!(path = s.path, "demo: a request failed"),
            }
        }
    };
    for s in hospital.opening(Utc::now()) {
        send(s).await;
    }
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        for s in hospital.tick(Utc::now()) {
            send(s).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("time")
    }

    #[test]
    fn the_same_seed_makes_the_same_hospital() {
        let run = |seed| {
            let mut h = Hospital::new(seed);
            let mut all = h.opening(now());
            for _ in 0..200 {
                all.extend(h.tick(now()));
            }
            all
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn the_opening_fills_beds_without_doubling_any_and_some_results_are_critical() {
        let mut h = Hospital::new(1);
        let sends = h.opening(now());
        let beds: std::collections::HashSet<(usize, u32)> = h.inpatients.iter().map(|p| (p.ward, p.bed)).collect();
        assert_eq!(beds.len(), h.inpatients.len());
        let potassium: Vec<f64> = sends
            .iter()
            .filter(|s| s.path == "/lab-feed" && s.body["code"]["coding"][0]["code"] == "2823-3")
            .filter_map(|s| s.body["valueQuantity"]["value"].as_f64())
            .collect();
        assert!(
            potassium.iter().any(|k| *k >= 6.5),
            "no critical potassium in {potassium:?}"
        );
        let hl7 = sends.iter().filter(|s| s.hl7.is_some()).count();
        let lab = sends.iter().filter(|s| s.path == "/lab-feed").count();
        assert!(hl7 > 0 && hl7 < lab, "some results as HL7 v2: {hl7} of {lab}");
        // Every patient comes with a creatinine baseline from three months before (AKI).
        let baseline = time(now() - chrono::Duration::days(90));
        let baselines = sends
            .iter()
            .filter(|s| s.body["effectiveDateTime"].as_str() == Some(baseline.as_str()))
            .count();
        assert_eq!(baselines, h.inpatients.len());
    }

    #[test]
    fn the_hl7_results_read_as_the_observations_they_stand_for() {
        let mut h = Hospital::new(3);
        let sends = h.opening(now());
        let rules = wardwatch_domain::identity::IdentityRules {
            systems: Vec::new(),
            v2: wardwatch_domain::identity::IdentityRules::parse_v2_table(&format!("{V2_AUTHORITY}^MR={MRN_SYSTEM}"))
                .expect("table"),
        };
        let settings = wardwatch_domain::lab::oru::Settings {
            identity: &rules,
            zone: chrono_tz::Europe::London,
        };
        for s in sends.iter().filter(|s| s.hl7.is_some()) {
            let m = wardwatch_domain::lab::oru::read(s.hl7.as_deref().unwrap_or_default().as_bytes(), &settings)
                .expect("an ORU^R01 ingest-lab reads");
            let o = &m[0].observations[0];
            assert_eq!(o["subject"]["identifier"], s.body["subject"]["identifier"]);
            assert_eq!(o["code"]["coding"][0]["code"], s.body["code"]["coding"][0]["code"]);
            assert_eq!(
                o["valueQuantity"]["value"].as_f64(),
                s.body["valueQuantity"]["value"].as_f64()
            );
        }
    }
}
