//! The NHS England acute kidney injury (AKI) detection algorithm (Patient Safety Alert
//! NHS/PSA/D/2014/010), exactly as `shared/docs/clinical-rules.md` §1 states it: a pure function
//! of the new creatinine result, the patient's earlier creatinine results, and the patient.
//!
//! Choices where the algorithm leaves room, stated as it asks:
//! - **Windows** are measured back from C1's collection time: RV1 uses results at most 7 × 24 h
//!   before C1; RV2 those more than 7 × 24 h and at most 365 × 24 h before; the 48-hour rule those
//!   at most 48 h before. A result taken at the same time as C1 or after it is never used.
//! - **Duplicates**: earlier results are taken once each by their result id, so a redelivered
//!   result cannot weigh twice in the median.
//! - **Thresholds**: ratios are inclusive (≥ 1.5, ≥ 2.0, ≥ 3.0); D is strict (> 26 µmol/L) and
//!   so is C1 (> 354 µmol/L, adults: 18 and over, or age unknown; > 3 × the upper reference
//!   limit under 18).
//! - **Applicability**: not under one month of age (29 days), nor on renal replacement therapy.
//!   Without a record of renal replacement therapy none is assumed, and the evidence says so.
//! - **No baseline** (no earlier result within 365 days): no stage; a C1 above the upper
//!   reference limit is flagged "possible AKI, no baseline" for clinical review.
//!
//! Values are in µmol/L, the canonical unit of creatinine (units table): a result reported in
//! mg/dL is converted on ingest, so both give the same stage.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// One creatinine result, in µmol/L, at its sample collection time.
#[derive(Debug, Clone, PartialEq)]
pub struct Creatinine {
    pub result_id: String,
    pub at: DateTime<Utc>,
    pub umol_per_l: f64,
}

/// Whether the patient is on renal replacement therapy (dialysis), as far as Wardwatch knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rrt {
    /// Recorded (a FHIR Flag or Condition, or a board action).
    OnRrt,
    /// Recorded as not on it.
    NotOnRrt,
    /// Nothing recorded: assumed not, and said in the evidence.
    Unknown,
}

/// A patient's age at a sample's collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age {
    pub days: i64,
    /// Completed years.
    pub years: u32,
}

impl Age {
    /// The age at `when` of a patient born on `birth`; `None` for a birth after `when`.
    pub fn at(birth: NaiveDate, when: DateTime<Utc>) -> Option<Age> {
        let on = when.date_naive();
        let days = (on - birth).num_days();
        let years = on.years_since(birth)?;
        (days >= 0).then_some(Age { days, years })
    }
}

/// What the algorithm needs to know about the patient.
#[derive(Debug, Clone, PartialEq)]
pub struct AkiPatient {
    /// Age at C1's collection, when the birth date is known.
    pub age: Option<Age>,
    /// The upper limit of the creatinine reference interval for the patient's age and sex, µmol/L.
    pub upper_reference_limit: f64,
    pub rrt: Rrt,
}

/// AKI warning stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Stage {
    One = 1,
    Two = 2,
    Three = 3,
}

/// What the algorithm concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// An AKI warning stage.
    Warning(Stage),
    /// No earlier result within 365 days and C1 above the upper reference limit.
    PossibleAkiNoBaseline,
    /// No alert.
    None,
    /// The algorithm does not apply to this patient (under one month, on dialysis).
    NotApplicable,
}

/// Why: every figure the conclusion rests on, for the alert's evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    pub outcome: Outcome,
    /// The step of §1 that decided it.
    pub rule: String,
    pub c1: f64,
    /// RV1: the lowest result 0–7 days before C1, and its result id.
    pub rv1: Option<(f64, String)>,
    /// RV2: the median of the results 8–365 days before C1.
    pub rv2: Option<f64>,
    /// The higher of C1/RV1 and C1/RV2.
    pub ratio: Option<f64>,
    /// D = C1 − the lowest result in the 48 h before C1.
    pub d48: Option<f64>,
    pub upper_reference_limit: f64,
    pub rrt: Rrt,
    /// What the evidence must say besides the figures ("no renal replacement therapy recorded;
    /// assumed none").
    pub notes: Vec<String>,
}

const RV1_WINDOW: Duration = Duration::days(7);
const RV2_WINDOW: Duration = Duration::days(365);
const D_WINDOW: Duration = Duration::hours(48);
/// D > 26 µmol/L.
pub const D_THRESHOLD: f64 = 26.0;
/// C1 > 354 µmol/L (adults, with a ratio ≥ 1.5).
pub const ADULT_STAGE_3: f64 = 354.0;
const ONE_MONTH_DAYS: i64 = 29;

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// The algorithm for the new result `c1` against the patient's `earlier` creatinine results (any
/// order; later ones and C1 itself are ignored; each result id counts once).
pub fn assess(c1: &Creatinine, earlier: &[Creatinine], patient: &AkiPatient) -> Assessment {
    let mut a = Assessment {
        outcome: Outcome::None,
        rule: String::new(),
        c1: c1.umol_per_l,
        rv1: None,
        rv2: None,
        ratio: None,
        d48: None,
        upper_reference_limit: patient.upper_reference_limit,
        rrt: patient.rrt,
        notes: Vec::new(),
    };
    // 1. Applicability.
    if patient.rrt == Rrt::OnRrt {
        a.outcome = Outcome::NotApplicable;
        a.rule = "1: on renal replacement therapy".into();
        return a;
    }
    if patient.rrt == Rrt::Unknown {
        a.notes
            .push("no renal replacement therapy recorded; assumed none".into());
    }
    if patient.age.is_some_and(|a| a.days < ONE_MONTH_DAYS) {
        a.outcome = Outcome::NotApplicable;
        a.rule = "1: under one month of age".into();
        return a;
    }
    if patient.age.is_none() {
        a.notes.push("age unknown: adult thresholds used".into());
    }
    let child = patient.age.is_some_and(|a| a.years < 18);

    // Earlier results only, once each, within 365 days.
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut window: Vec<(Duration, f64, &str)> = Vec::new();
    for r in earlier {
        let before = c1.at - r.at;
        if r.result_id == c1.result_id || before <= Duration::zero() || before > RV2_WINDOW {
            continue;
        }
        if !r.umol_per_l.is_finite() || r.umol_per_l <= 0.0 || !seen.insert(&r.result_id) {
            continue;
        }
        window.push((before, r.umol_per_l, &r.result_id));
    }

    // 2. Any previous result in the last 365 days?
    if window.is_empty() {
        if c1.umol_per_l > patient.upper_reference_limit {
            a.outcome = Outcome::PossibleAkiNoBaseline;
            a.rule = "2: no result in the previous 365 days, C1 above the upper reference limit".into();
        } else {
            a.rule = "2: no result in the previous 365 days, C1 within the reference interval".into();
        }
        return a;
    }

    // 3. Reference values.
    a.rv1 = window
        .iter()
        .filter(|(before, _, _)| *before <= RV1_WINDOW)
        .min_by(|x, y| x.1.total_cmp(&y.1).then_with(|| x.2.cmp(y.2)))
        .map(|(_, v, id)| (*v, (*id).to_owned()));
    a.rv2 = median(
        window
            .iter()
            .filter(|(before, _, _)| *before > RV1_WINDOW)
            .map(|(_, v, _)| *v)
            .collect(),
    );
    let ratios = [
        a.rv1.as_ref().map(|(v, _)| c1.umol_per_l / v),
        a.rv2.map(|v| c1.umol_per_l / v),
    ];
    a.ratio = ratios.into_iter().flatten().max_by(f64::total_cmp);
    let ratio = a.ratio.unwrap_or(0.0);

    // 4. Ratio ≥ 1.5: a stage.
    if ratio >= 1.5 {
        let (stage, rule) = if ratio >= 3.0 {
            (Stage::Three, "4: ratio ≥ 3.0")
        } else if !child && c1.umol_per_l > ADULT_STAGE_3 {
            (Stage::Three, "4: ratio ≥ 1.5 and C1 > 354 µmol/L")
        } else if child && c1.umol_per_l > 3.0 * patient.upper_reference_limit {
            (
                Stage::Three,
                "4: ratio ≥ 1.5, under 18, C1 > 3 × the upper reference limit",
            )
        } else if ratio >= 2.0 {
            (Stage::Two, "4: 2.0 ≤ ratio < 3.0")
        } else {
            (Stage::One, "4: 1.5 ≤ ratio < 2.0")
        };
        a.outcome = Outcome::Warning(stage);
        a.rule = rule.into();
        return a;
    }

    // 5. Ratio < 1.5: the 48-hour rule.
    a.d48 = window
        .iter()
        .filter(|(before, _, _)| *before <= D_WINDOW)
        .map(|(_, v, _)| *v)
        .min_by(f64::total_cmp)
        .map(|lowest| c1.umol_per_l - lowest);
    match a.d48 {
        Some(d) if d > D_THRESHOLD => {
            a.outcome = Outcome::Warning(Stage::One);
            a.rule = "5: ratio < 1.5, D > 26 µmol/L in 48 h".into();
        }
        Some(_) => a.rule = "5: ratio < 1.5, D ≤ 26 µmol/L in 48 h".into(),
        None => a.rule = "5: ratio < 1.5, no result in the previous 48 h".into(),
    }
    a
}

/// RCPath G158: an AKI warning stage 2 or 3, or stage 1 with potassium > 6.0 mmol/L, is
/// telephoned.
pub fn telephoned(stage: Stage, latest_potassium: Option<f64>) -> bool {
    stage >= Stage::Two || latest_potassium.is_some_and(|k| k > 6.0)
}

/// A local default upper reference limit for creatinine (µmol/L) by age and sex, for when no
/// rules file gives one. Adults: 104 (male, or sex unknown) and 84 (female), as common UK
/// laboratory intervals; children by age band. **Local defaults, clinically unconfirmed.**
pub fn default_upper_reference_limit(age: Option<Age>, female: Option<bool>) -> f64 {
    match age.map(|a| a.years) {
        Some(y) if y < 1 => 35.0,
        Some(y) if y < 3 => 35.0,
        Some(y) if y < 5 => 42.0,
        Some(y) if y < 7 => 52.0,
        Some(y) if y < 9 => 58.0,
        Some(y) if y < 11 => 63.0,
        Some(y) if y < 13 => 75.0,
        Some(y) if y < 15 => 90.0,
        _ if female == Some(true) => 84.0,
        _ => 104.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("time")
    }

    fn at(hours_before: i64) -> DateTime<Utc> {
        t0() - Duration::hours(hours_before)
    }

    fn cr(id: &str, hours_before: i64, v: f64) -> Creatinine {
        Creatinine {
            result_id: id.into(),
            at: at(hours_before),
            umol_per_l: v,
        }
    }

    fn aged(years: u32) -> Option<Age> {
        Some(Age {
            days: i64::from(years) * 365 + 30,
            years,
        })
    }

    fn adult() -> AkiPatient {
        AkiPatient {
            age: aged(60),
            upper_reference_limit: 104.0,
            rrt: Rrt::NotOnRrt,
        }
    }

    fn run(c1: f64, earlier: &[Creatinine], p: &AkiPatient) -> Assessment {
        assess(&cr("c1", 0, c1), earlier, p)
    }

    const DAY: i64 = 24;

    #[test]
    fn stage_thresholds_are_inclusive_on_the_ratio() {
        // Three days back: a baseline for RV1 the 48-hour rule cannot use.
        let base = [cr("b", 3 * DAY, 100.0)];
        for (c1, want) in [
            (149.9, Outcome::None),
            (150.0, Outcome::Warning(Stage::One)),
            (199.9, Outcome::Warning(Stage::One)),
            (200.0, Outcome::Warning(Stage::Two)),
            (299.9, Outcome::Warning(Stage::Two)),
            (300.0, Outcome::Warning(Stage::Three)),
        ] {
            assert_eq!(run(c1, &base, &adult()).outcome, want, "C1 {c1}");
        }
    }

    #[test]
    fn rv1_is_the_lowest_in_seven_days_and_rv2_the_median_of_8_to_365() {
        let earlier = [
            cr("a", DAY, 90.0),
            cr("b", 6 * DAY, 70.0),
            cr("c", 7 * DAY, 80.0),     // exactly 7 days: RV1's window
            cr("d", 7 * DAY + 1, 50.0), // just over: RV2's
            cr("e", 100 * DAY, 60.0),
            cr("f", 365 * DAY, 65.0),    // exactly 365 days: inside
            cr("g", 365 * DAY + 1, 1.0), // outside every window
        ];
        let a = run(120.0, &earlier, &adult());
        assert_eq!(a.rv1, Some((70.0, "b".into())));
        assert_eq!(a.rv2, Some(60.0), "median of 50, 60, 65");
        // 120/60 = 2.0 beats 120/70: the higher ratio (the lower baseline) decides.
        assert_eq!((a.ratio, a.outcome), (Some(2.0), Outcome::Warning(Stage::Two)));
    }

    #[test]
    fn an_even_count_takes_the_mean_of_the_middle_two() {
        let earlier = [cr("a", 10 * DAY, 50.0), cr("b", 20 * DAY, 70.0)];
        assert_eq!(run(90.0, &earlier, &adult()).rv2, Some(60.0));
    }

    #[test]
    fn creatinine_over_354_is_stage_3_for_adults_only_with_a_ratio_of_1_5() {
        let base = [cr("b", 3 * DAY, 236.0)];
        // 354.0 / 236 = 1.5: stage 1 at exactly 354 (strict >), stage 3 just above.
        assert_eq!(run(354.0, &base, &adult()).outcome, Outcome::Warning(Stage::One));
        assert_eq!(run(354.1, &base, &adult()).outcome, Outcome::Warning(Stage::Three));
        // High but stable: no alert at all (CKD).
        let stable = [cr("b", 3 * DAY, 400.0), cr("c", 30 * DAY, 410.0)];
        assert_eq!(run(420.0, &stable, &adult()).outcome, Outcome::None);
    }

    #[test]
    fn under_18_stage_3_is_more_than_three_times_the_upper_limit() {
        let child = AkiPatient {
            age: aged(8),
            upper_reference_limit: 58.0,
            rrt: Rrt::NotOnRrt,
        };
        let base = [cr("b", 3 * DAY, 100.0)];
        assert_eq!(
            run(174.0, &base, &child).outcome,
            Outcome::Warning(Stage::One),
            "= 3 × ULN"
        );
        assert_eq!(run(174.1, &base, &child).outcome, Outcome::Warning(Stage::Three));
        // The adult rule does not apply to a child: 360 with ratio 1.5 is decided by ULN.
        let base = [cr("b", 3 * DAY, 240.0)];
        assert_eq!(run(360.0, &base, &child).outcome, Outcome::Warning(Stage::Three));
        let big_child = AkiPatient {
            upper_reference_limit: 150.0,
            ..child
        };
        assert_eq!(run(360.0, &base, &big_child).outcome, Outcome::Warning(Stage::One));
    }

    #[test]
    fn the_48_hour_rule_is_strict_and_uses_the_lowest_in_48_hours() {
        let earlier = [cr("a", 48, 100.0), cr("b", 10, 110.0), cr("base", 30 * DAY, 100.0)];
        assert_eq!(run(126.0, &earlier, &adult()).outcome, Outcome::None, "D = 26");
        let a = run(126.1, &earlier, &adult());
        assert_eq!(a.outcome, Outcome::Warning(Stage::One));
        assert!((a.d48.expect("d") - 26.1).abs() < 1e-9);
        // 48 h and a minute: outside the window.
        let outside = [cr("a", 49, 100.0), cr("base", 30 * DAY, 100.0)];
        let a = run(127.0, &outside, &adult());
        assert_eq!((a.outcome, a.d48), (Outcome::None, None));
    }

    #[test]
    fn without_a_baseline_only_a_value_over_the_upper_limit_is_flagged() {
        assert_eq!(run(104.0, &[], &adult()).outcome, Outcome::None);
        assert_eq!(run(104.1, &[], &adult()).outcome, Outcome::PossibleAkiNoBaseline);
        let too_old = [cr("old", 366 * DAY, 50.0)];
        assert_eq!(run(300.0, &too_old, &adult()).outcome, Outcome::PossibleAkiNoBaseline);
    }

    #[test]
    fn it_does_not_apply_on_dialysis_or_under_one_month_and_says_when_it_assumed() {
        let base = [cr("b", 3 * DAY, 100.0)];
        let dialysis = AkiPatient {
            rrt: Rrt::OnRrt,
            ..adult()
        };
        assert_eq!(run(400.0, &base, &dialysis).outcome, Outcome::NotApplicable);
        let neonate = AkiPatient {
            age: Some(Age { days: 28, years: 0 }),
            ..adult()
        };
        assert_eq!(run(400.0, &base, &neonate).outcome, Outcome::NotApplicable);
        let one_month = AkiPatient {
            age: Some(Age { days: 29, years: 0 }),
            ..adult()
        };
        let seventeen = Age::at(
            NaiveDate::from_ymd_opt(2009, 3, 15).expect("date"),
            DateTime::parse_from_rfc3339("2027-03-14T23:00:00Z")
                .expect("t")
                .to_utc(),
        );
        assert_eq!(seventeen.map(|a| a.years), Some(17), "18 only on the birthday");
        assert_ne!(run(400.0, &base, &one_month).outcome, Outcome::NotApplicable);
        let unknown = AkiPatient {
            rrt: Rrt::Unknown,
            ..adult()
        };
        let a = run(400.0, &base, &unknown);
        assert_eq!(a.outcome, Outcome::Warning(Stage::Three));
        assert!(a.notes.iter().any(|n| n.contains("assumed none")));
    }

    #[test]
    fn later_results_and_c1_itself_are_never_used() {
        let earlier = [cr("c1", 0, 500.0), cr("later", -5, 10.0), cr("b", 3 * DAY, 100.0)];
        let a = run(140.0, &earlier, &adult());
        assert_eq!((a.ratio, a.outcome), (Some(1.4), Outcome::None));
    }

    /// A small deterministic generator: the same cases every run.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn history(g: &mut Gen) -> Vec<Creatinine> {
        (0..g.below(12))
            .map(|i| {
                cr(
                    &format!("r{i}"),
                    g.below(400 * DAY as u64) as i64 - DAY,
                    40.0 + g.below(500) as f64,
                )
            })
            .collect()
    }

    #[test]
    fn order_and_redelivery_never_change_the_answer() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5_000 {
            let earlier = history(&mut g);
            let c1 = 40.0 + g.below(600) as f64;
            let expected = run(c1, &earlier, &adult());
            let mut shuffled = earlier.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, g.below(i as u64 + 1) as usize);
            }
            // Every result delivered twice.
            let doubled: Vec<Creatinine> = shuffled.iter().chain(shuffled.iter()).cloned().collect();
            assert_eq!(run(c1, &doubled, &adult()).outcome, expected.outcome);
            assert_eq!(run(c1, &doubled, &adult()).ratio, expected.ratio);
        }
    }

    #[test]
    fn the_same_values_in_mg_per_decilitre_or_micromol_per_litre_give_the_same_stage() {
        // Each result reported in mg/dL or in µmol/L at random, converted by the units table as
        // ingest-lab converts it, against every result reported in µmol/L.
        let table = crate::units::UnitTable::default();
        let canonical = |v: f64, unit: &str| {
            table
                .normalise(Some("2160-0"), None, v, Some(unit))
                .value
                .expect("converted")
        };
        let mut g = Gen(0x1234_5678_9abc_def1);
        for _ in 0..2_000 {
            let mg: Vec<(i64, f64)> = (0..1 + g.below(8))
                .map(|_| (g.below(200 * DAY as u64) as i64 + 1, 0.5 + g.below(600) as f64 / 100.0))
                .collect();
            let c1_mg = 0.5 + g.below(700) as f64 / 100.0;
            let as_umol = |v: f64| (v * 88.42 * 10_000.0).round() / 10_000.0;
            let all_umol: Vec<Creatinine> = mg
                .iter()
                .enumerate()
                .map(|(i, (h, v))| cr(&format!("r{i}"), *h, canonical(as_umol(*v), "umol/L")))
                .collect();
            let mixed: Vec<Creatinine> = mg
                .iter()
                .enumerate()
                .map(|(i, (h, v))| {
                    let value = if g.below(2) == 0 {
                        canonical(*v, "mg/dL")
                    } else {
                        canonical(as_umol(*v), "µmol/L")
                    };
                    cr(&format!("r{i}"), *h, value)
                })
                .collect();
            assert_eq!(
                run(canonical(c1_mg, "mg/dL"), &mixed, &adult()).outcome,
                run(canonical(as_umol(c1_mg), "umol/L"), &all_umol, &adult()).outcome,
                "{mg:?} {c1_mg}"
            );
        }
    }

    #[test]
    fn a_stage_1_with_potassium_over_6_is_telephoned() {
        assert!(telephoned(Stage::Two, None));
        assert!(!telephoned(Stage::One, Some(6.0)));
        assert!(telephoned(Stage::One, Some(6.1)));
    }
}
