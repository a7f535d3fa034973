//! The lab-feed generator's plan and arithmetic (the `labfeed` binary does the I/O).
//!
//! A run is a reproducible slice of a hospital day, fixed by its seed: `rate × duration` results,
//! each due at `seq / rate` seconds, over admitted patients, in realistic analytes and units
//! (potassium, sodium, glucose, urea, creatinine in µmol/L or mg/dL, CRP, haemoglobin), a share
//! sent as HL7 v2.5.1 ORU^R01 and the rest as FHIR Observations.
//!
//! **Which results alert, exactly.** A critical result goes to a patient of its own who has no
//! other result in the run: it raises exactly one `alert-raised` for that patient (critical limits
//! of `crates/domain/data/critical-limits.json`, with a margin from each limit), so alerts expected
//! = critical results sent, and each alert seen on the board's event stream is matched to the one
//! result that raised it by the patient's hospital number. Everyone else's results stay inside the
//! everyday ranges — never a critical limit, creatinine steady per patient below any upper
//! reference limit (never AKI) — so no other alert can appear; one that does is counted as
//! unexpected.

use serde_json::{Value, json};

use crate::{MRN_SYSTEM, RESULT_SYSTEM, V2_AUTHORITY, date_time, lab_mrn};

/// A test the generator sends: (LOINC, display, UCUM unit, decimals, everyday low, everyday high,
/// critical-high band, critical-low band).
pub struct Analyte {
    pub name: &'static str,
    pub loinc: &'static str,
    pub display: &'static str,
    pub unit: &'static str,
    pub decimals: u32,
    pub normal: (f64, f64),
    pub critical_high: Option<(f64, f64)>,
    pub critical_low: Option<(f64, f64)>,
    /// How often it is drawn, relative to the others.
    pub weight: u32,
}

/// Everyday bands well inside the reference ranges; critical bands beyond the critical limits
/// (potassium 2.5/6.5, sodium 120/160, glucose 2.5/25, urea 30 mmol/L) by a margin.
pub const ANALYTES: &[Analyte] = &[
    Analyte {
        name: "potassium",
        loinc: "2823-3",
        display: "Potassium [Moles/volume] in Serum or Plasma",
        unit: "mmol/L",
        decimals: 1,
        normal: (3.5, 5.0),
        critical_high: Some((6.6, 7.5)),
        critical_low: Some((1.9, 2.4)),
        weight: 5,
    },
    Analyte {
        name: "sodium",
        loinc: "2951-2",
        display: "Sodium [Moles/volume] in Serum or Plasma",
        unit: "mmol/L",
        decimals: 0,
        normal: (135.0, 145.0),
        critical_high: Some((161.0, 170.0)),
        critical_low: Some((110.0, 119.0)),
        weight: 5,
    },
    Analyte {
        name: "glucose",
        loinc: "2345-7",
        display: "Glucose [Moles/volume] in Serum or Plasma",
        unit: "mmol/L",
        decimals: 1,
        normal: (4.0, 7.8),
        critical_high: Some((26.0, 35.0)),
        critical_low: Some((1.5, 2.3)),
        weight: 2,
    },
    Analyte {
        name: "urea",
        loinc: "22664-7",
        display: "Urea [Moles/volume] in Serum or Plasma",
        unit: "mmol/L",
        decimals: 1,
        normal: (2.5, 7.8),
        critical_high: Some((31.0, 40.0)),
        critical_low: None,
        weight: 4,
    },
    Analyte {
        name: "creatinine",
        loinc: "14682-9",
        display: "Creatinine [Moles/volume] in Serum or Plasma",
        unit: "umol/L",
        decimals: 0,
        normal: (55.0, 79.0),
        critical_high: None,
        critical_low: None,
        weight: 4,
    },
    Analyte {
        name: "crp",
        loinc: "1988-5",
        display: "C reactive protein [Mass/volume] in Serum or Plasma",
        unit: "mg/L",
        decimals: 0,
        normal: (1.0, 50.0),
        critical_high: None,
        critical_low: None,
        weight: 2,
    },
    Analyte {
        name: "haemoglobin",
        loinc: "718-7",
        display: "Hemoglobin [Mass/volume] in Blood",
        unit: "g/L",
        decimals: 0,
        normal: (120.0, 160.0),
        critical_high: None,
        critical_low: None,
        weight: 2,
    },
];

/// What fixes a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    /// Results a second.
    pub rate: u64,
    /// Seconds of sending.
    pub duration: u64,
    /// Patients who get everyday results.
    pub patients: u64,
    /// Critical results per 1,000.
    pub critical_per_mille: u64,
    /// HL7 v2 messages per 100 (the rest FHIR).
    pub hl7_percent: u64,
    /// Makes hospital numbers and result identifiers unique to the run.
    pub tag: String,
}

/// One result of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub seq: u64,
    /// The patient's number in the run (hospital number [`lab_mrn`]`(tag, patient)`).
    pub patient: u64,
    pub analyte: usize,
    pub value: f64,
    /// Creatinine in mg/dL instead of µmol/L (ingest-lab converts it).
    pub mg_per_dl: bool,
    pub critical: bool,
    pub hl7: bool,
}

/// The whole run: what is sent, in order, and who must be admitted first.
#[derive(Debug, Clone)]
pub struct Plan {
    pub settings: Settings,
    pub results: Vec<Planned>,
    /// Patients `0..admitted` are admitted before the run: everyday ones first, then one per
    /// critical result.
    pub admitted: u64,
}

impl Plan {
    pub fn new(settings: Settings) -> Self {
        let mut rng = fastrand::Rng::with_seed(settings.seed);
        let n = settings.rate.saturating_mul(settings.duration);
        let patients = settings.patients.max(1);
        let total_weight: u32 = ANALYTES.iter().map(|a| a.weight).sum();
        let alerting: Vec<usize> = (0..ANALYTES.len())
            .filter(|&i| ANALYTES[i].critical_high.is_some() || ANALYTES[i].critical_low.is_some())
            .collect();
        let mut next_critical_patient = patients;
        let mut results = Vec::with_capacity(n as usize);
        for seq in 0..n {
            let critical = rng.u64(0..1000) < settings.critical_per_mille;
            let hl7 = rng.u64(0..100) < settings.hl7_percent;
            let planned = if critical {
                let analyte = alerting[rng.usize(0..alerting.len())];
                let a = &ANALYTES[analyte];
                let band = match (a.critical_high, a.critical_low) {
                    (Some(h), Some(l)) => {
                        if rng.bool() {
                            h
                        } else {
                            l
                        }
                    }
                    (Some(h), None) => h,
                    (None, Some(l)) => l,
                    (None, None) => a.normal,
                };
                let patient = next_critical_patient;
                next_critical_patient += 1;
                Planned {
                    seq,
                    patient,
                    analyte,
                    value: draw(&mut rng, band, a.decimals),
                    mg_per_dl: false,
                    critical: true,
                    hl7,
                }
            } else {
                let mut pick = rng.u32(0..total_weight);
                let analyte = ANALYTES
                    .iter()
                    .position(|a| {
                        if pick < a.weight {
                            true
                        } else {
                            pick -= a.weight;
                            false
                        }
                    })
                    .unwrap_or(0);
                let patient = rng.u64(0..patients);
                let a = &ANALYTES[analyte];
                let (value, mg_per_dl) = if a.name == "creatinine" {
                    // Steady per patient: never a rise, so never AKI.
                    let umol = a.normal.0 + (patient % 25) as f64;
                    if rng.u32(0..5) == 0 {
                        ((umol / 88.42 * 100.0).round() / 100.0, true)
                    } else {
                        (umol, false)
                    }
                } else {
                    (draw(&mut rng, a.normal, a.decimals), false)
                };
                Planned {
                    seq,
                    patient,
                    analyte,
                    value,
                    mg_per_dl,
                    critical: false,
                    hl7,
                }
            };
            results.push(planned);
        }
        Self {
            admitted: next_critical_patient,
            settings,
            results,
        }
    }

    /// The critical results: the alerts the run must raise, one each.
    pub fn critical(&self) -> impl Iterator<Item = &Planned> {
        self.results.iter().filter(|p| p.critical)
    }

    pub fn mrn(&self, patient: u64) -> String {
        lab_mrn(&self.settings.tag, patient)
    }

    /// The result as it is published: its message id, content type and bytes.
    pub fn payload(&self, p: &Planned) -> (String, &'static str, Vec<u8>) {
        let id = self.result_identifier(p);
        if p.hl7 {
            (id, "x-application/hl7-v2+er7", oru_message(self, p).into_bytes())
        } else {
            (
                id,
                "application/fhir+json",
                observation(self, p).to_string().into_bytes(),
            )
        }
    }

    fn result_identifier(&self, p: &Planned) -> String {
        format!("{}-F{:08}", self.settings.tag, p.seq)
    }
}

fn draw(rng: &mut fastrand::Rng, (low, high): (f64, f64), decimals: u32) -> f64 {
    let scale = 10f64.powi(decimals as i32);
    let steps = ((high - low) * scale).round() as u64;
    (low * scale + rng.u64(0..=steps) as f64).round() / scale
}

/// What the result's units are, as sent.
fn unit(p: &Planned) -> (&'static str, &'static str, &'static str) {
    let a = &ANALYTES[p.analyte];
    if p.mg_per_dl {
        ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL")
    } else {
        (a.loinc, a.display, a.unit)
    }
}

/// Result `seq` was taken 13 s after result `seq - 1` of the day, and reported 35 minutes later.
fn times(p: &Planned) -> (String, String) {
    (date_time(p.seq * 13), date_time(p.seq * 13 + 2100))
}

/// A FHIR Observation, subject by hospital number, like `schemas/examples/potassium-critical.json`.
pub fn observation(plan: &Plan, p: &Planned) -> Value {
    let (loinc, display, unit) = unit(p);
    let (effective, issued) = times(p);
    json!({
        "resourceType": "Observation",
        "identifier": [{"system": RESULT_SYSTEM, "value": plan.result_identifier(p)}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": display}]},
        "subject": {"identifier": {"system": MRN_SYSTEM, "value": plan.mrn(p.patient)}},
        "effectiveDateTime": effective,
        "issued": issued,
        "valueQuantity": {"value": p.value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    })
}

/// An HL7 v2.5.1 ORU^R01 with one OBR and one OBX: PID-3 authority [`V2_AUTHORITY`] (Wardwatch
/// needs `V2_IDENTIFIER_SYSTEMS=WWBENCH^MR=<MRN system>`), the result by its filler order number.
pub fn oru_message(plan: &Plan, p: &Planned) -> String {
    let (loinc, display, unit) = unit(p);
    let (effective, issued) = times(p);
    // 2026-11-01T00:00:00Z → 20261101000000+0000
    let dtm = |t: &str| format!("{}+0000", t.replace(['-', ':', 'T', 'Z'], ""));
    let id = plan.result_identifier(p);
    format!(
        "MSH|^~\\&|LABFEED|LAB|WARDWATCH|WW|{issued}||ORU^R01^ORU_R01|{id}-M|P|2.5.1\r\
         PID|1||{mrn}^^^{V2_AUTHORITY}^MR\r\
         OBR|1||{id}^LAB|LAB^Laboratory^L|||{effective}|||||||||||||||{issued}|||F\r\
         OBX|1|NM|{loinc}^{display}^LN||{value}|{unit}^^UCUM|||||F|||{effective}\r",
        issued = dtm(&issued),
        effective = dtm(&effective),
        mrn = plan.mrn(p.patient),
        value = p.value,
    )
}

/// The `q`-quantile (0..=1) of sorted values by nearest rank; `None` when there are none.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1).min(sorted.len() - 1)).copied()
}

/// p50, p90, p99 and max of the values (ms), rounded to µs; nulls when there are none.
pub fn distribution(values: &[f64]) -> Value {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let r = |q: f64| quantile(&sorted, q).map(|v| (v * 1000.0).round() / 1000.0);
    json!({"n": sorted.len(), "p50": r(0.5), "p90": r(0.9), "p99": r(0.99), "max": r(1.0)})
}

/// The millisecond of an event-log id (`<ms>-<seq>`: Redis's clock when the entry was appended).
pub fn log_id_ms(id: &str) -> Option<u64> {
    id.split_once('-').and_then(|(ms, _)| ms.parse().ok())
}

/// Converts this process's monotonic instants to wall-clock milliseconds since the epoch, from
/// one reading of both, so they compare with the log ids' milliseconds (same machine).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    instant: std::time::Instant,
    wall_ms: f64,
}

impl Clock {
    pub fn now() -> Self {
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or_default();
        Self {
            instant: std::time::Instant::now(),
            wall_ms,
        }
    }

    /// `at` in wall-clock milliseconds (instants before the reading count back from it).
    pub fn wall_ms(&self, at: std::time::Instant) -> f64 {
        match at.checked_duration_since(self.instant) {
            Some(after) => self.wall_ms + after.as_secs_f64() * 1000.0,
            None => self.wall_ms - self.instant.duration_since(at).as_secs_f64() * 1000.0,
        }
    }
}

/// Where a critical result's lab→alert time goes, cut at the two log appends it causes:
/// send → its `result-stored` appended (the `lab-feed` hop and ingest-lab), → its `alert-raised`
/// appended (the relay, the `lab-resulted` hop and evaluate-alert), → seen on the board's event
/// stream. A log id carries whole milliseconds, so each append is taken at the middle of its
/// millisecond: each stage is right to ±0.5 ms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stages {
    pub to_result_logged: Vec<f64>,
    pub to_alert_logged: Vec<f64>,
    pub to_seen: Vec<f64>,
}

impl Stages {
    /// One alert: its result's send time, both appends' log milliseconds, when it was seen
    /// (all wall-clock milliseconds).
    pub fn add(&mut self, sent: f64, result_logged_ms: u64, alert_logged_ms: u64, seen: f64) {
        let result_logged = result_logged_ms as f64 + 0.5;
        let alert_logged = alert_logged_ms as f64 + 0.5;
        self.to_result_logged.push(result_logged - sent);
        self.to_alert_logged.push(alert_logged - result_logged);
        self.to_seen.push(seen - alert_logged);
    }

    pub fn report(&self) -> Value {
        json!({
            "send_to_result_logged": distribution(&self.to_result_logged),
            "result_logged_to_alert_logged": distribution(&self.to_alert_logged),
            "alert_logged_to_seen": distribution(&self.to_seen),
        })
    }
}

/// One second of the run, for the time-series CSV and its chart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Second {
    pub sent: u64,
    pub stored: u64,
    pub alerts: u64,
    pub latencies: Vec<f64>,
}

/// The CSV of the run's seconds: `second,sent,stored_seen,alerts_seen,alert_p50_ms,alert_p99_ms,alert_max_ms`
/// (latency columns empty in a second with no alert).
pub fn series_csv(seconds: &[Second]) -> String {
    let mut out = String::from("second,sent,stored_seen,alerts_seen,alert_p50_ms,alert_p99_ms,alert_max_ms\n");
    for (i, s) in seconds.iter().enumerate() {
        let mut sorted = s.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let q = |q: f64| quantile(&sorted, q).map(|v| format!("{v:.3}")).unwrap_or_default();
        out.push_str(&format!(
            "{i},{},{},{},{},{},{}\n",
            s.sent,
            s.stored,
            s.alerts,
            q(0.5),
            q(0.99),
            q(1.0)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_id_gives_its_millisecond() {
        assert_eq!(log_id_ms("1733328000123-7"), Some(1_733_328_000_123));
        assert_eq!(log_id_ms("17-0"), Some(17));
        assert_eq!(log_id_ms("nonsense"), None);
        assert_eq!(log_id_ms("x-1"), None);
    }

    #[test]
    fn the_stages_of_one_alert_add_up_to_its_latency() {
        let mut stages = Stages::default();
        // Sent at 1,000.2 ms; result appended in millisecond 1,003, alert in 1,010; seen at 1,012.
        stages.add(1_000.2, 1_003, 1_010, 1_012.0);
        let total: f64 = stages.to_result_logged[0] + stages.to_alert_logged[0] + stages.to_seen[0];
        assert!((total - 11.8).abs() < 1e-9, "{total}");
        assert!((stages.to_result_logged[0] - 3.3).abs() < 1e-9);
        assert_eq!(stages.to_alert_logged[0], 7.0);
        assert!((stages.to_seen[0] - 1.5).abs() < 1e-9);
        assert_eq!(stages.report()["result_logged_to_alert_logged"]["p50"], json!(7.0));
    }

    #[test]
    fn the_clock_converts_instants_either_side_of_its_reading() {
        let clock = Clock::now();
        let later = clock.instant + std::time::Duration::from_millis(250);
        assert!((clock.wall_ms(later) - clock.wall_ms - 250.0).abs() < 1e-6);
        if let Some(earlier) = clock.instant.checked_sub(std::time::Duration::from_millis(40)) {
            assert!((clock.wall_ms - clock.wall_ms(earlier) - 40.0).abs() < 1e-6);
        }
    }

    fn settings(seed: u64) -> Settings {
        Settings {
            seed,
            rate: 1000,
            duration: 10,
            patients: 500,
            critical_per_mille: 20,
            hl7_percent: 33,
            tag: "t".into(),
        }
    }

    #[test]
    fn a_seed_fixes_the_run_and_another_seed_changes_it() {
        let (a, b, c) = (Plan::new(settings(7)), Plan::new(settings(7)), Plan::new(settings(8)));
        assert_eq!(a.results, b.results);
        assert_ne!(a.results, c.results);
        assert_eq!(a.results.len(), 10_000);
    }

    #[test]
    fn the_shares_are_the_ones_asked_for() {
        let plan = Plan::new(settings(1));
        let n = plan.results.len() as f64;
        let critical = plan.critical().count() as f64 / n;
        let hl7 = plan.results.iter().filter(|p| p.hl7).count() as f64 / n;
        assert!((0.015..0.025).contains(&critical), "{critical}");
        assert!((0.30..0.36).contains(&hl7), "{hl7}");
        for (a, analyte) in ANALYTES.iter().enumerate() {
            assert!(plan.results.iter().any(|p| p.analyte == a), "{} is sent", analyte.name);
        }
    }

    #[test]
    fn every_critical_result_has_a_patient_of_its_own_and_nobody_else_is_out_of_range() {
        let plan = Plan::new(settings(3));
        let mut critical_patients: Vec<u64> = plan.critical().map(|p| p.patient).collect();
        let n = critical_patients.len();
        critical_patients.sort_unstable();
        critical_patients.dedup();
        assert_eq!(critical_patients.len(), n, "one critical result per patient");
        assert!(
            critical_patients
                .iter()
                .all(|&p| p >= plan.settings.patients && p < plan.admitted)
        );
        assert_eq!(plan.admitted, plan.settings.patients + n as u64);
        for p in &plan.results {
            let a = &ANALYTES[p.analyte];
            if p.critical {
                let beyond = a.critical_high.is_some_and(|(l, h)| (l..=h).contains(&p.value))
                    || a.critical_low.is_some_and(|(l, h)| (l..=h).contains(&p.value));
                assert!(beyond, "{} {} is in a critical band", a.name, p.value);
            } else {
                assert!(p.patient < plan.settings.patients);
                let umol = if p.mg_per_dl { p.value * 88.42 } else { p.value };
                assert!(
                    (a.normal.0 - 0.5..=a.normal.1 + 0.5).contains(&umol),
                    "{} {} is everyday",
                    a.name,
                    p.value
                );
            }
        }
    }

    #[test]
    fn the_critical_bands_lie_beyond_the_shipped_critical_limits() {
        let table: Value =
            serde_json::from_str(include_str!("../../crates/domain/data/critical-limits.json")).expect("table");
        for a in ANALYTES {
            for limit in table["limits"].as_array().expect("limits") {
                if limit["analyte"] != a.name || limit["unit"] != a.unit || limit.get("max_age_years").is_some() {
                    continue;
                }
                if let (Some(high), Some((low_end, _))) = (limit["high"].as_f64(), a.critical_high) {
                    assert!(low_end > high, "{}: {low_end} > {high}", a.name);
                    assert!(a.normal.1 < high, "{} everyday below {high}", a.name);
                }
                if let (Some(low), Some((_, high_end))) = (limit["low"].as_f64(), a.critical_low) {
                    assert!(high_end < low, "{}: {high_end} < {low}", a.name);
                    assert!(a.normal.0 > low, "{} everyday above {low}", a.name);
                }
                if a.critical_high.is_none() && a.critical_low.is_none() {
                    let high = limit["high"].as_f64().unwrap_or(f64::MAX);
                    let low = limit["low"].as_f64().unwrap_or(f64::MIN);
                    assert!(a.normal.1 < high && a.normal.0 > low, "{} never alerts", a.name);
                }
            }
        }
    }

    #[test]
    fn payloads_name_the_patient_and_the_result_in_both_formats() {
        let plan = Plan::new(settings(5));
        let hl7 = plan.results.iter().find(|p| p.hl7).expect("an HL7 result");
        let fhir = plan.results.iter().find(|p| !p.hl7).expect("a FHIR result");
        let (id, ct, body) = plan.payload(hl7);
        let text = String::from_utf8(body).expect("text");
        assert_eq!(ct, "x-application/hl7-v2+er7");
        assert!(
            text.starts_with("MSH|^~\\&|") && text.contains(&format!("PID|1||{}^^^WWBENCH^MR", plan.mrn(hl7.patient)))
        );
        assert!(text.contains(&format!("OBR|1||{id}^LAB")));
        let (id, ct, body) = plan.payload(fhir);
        let o: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(ct, "application/fhir+json");
        assert_eq!(o["identifier"][0]["value"], id.as_str());
        assert_eq!(o["subject"]["identifier"]["value"], plan.mrn(fhir.patient).as_str());
        assert_eq!(o["valueQuantity"]["value"], fhir.value);
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(distribution(&[3.0, 1.0, 2.0])["p50"], 2.0);
    }

    #[test]
    fn the_series_has_a_row_a_second_and_empty_latencies_without_alerts() {
        let seconds = vec![
            Second {
                sent: 10,
                stored: 9,
                alerts: 1,
                latencies: vec![4.0],
            },
            Second::default(),
        ];
        let csv = series_csv(&seconds);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[1], "0,10,9,1,4.000,4.000,4.000");
        assert_eq!(lines[2], "1,0,0,0,,,");
    }
}
