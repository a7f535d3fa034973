//! Clinical rules over validated results. Pure functions: the history and the time come in.
//!
//! The critical ("telephone") limits are data: a hospital changes the JSON table, not the code.
//! The default table (`crates/domain/data/critical-limits.json`, schema
//! `schemas/wardwatch/critical-limits.schema.json`) is seeded from RCPath G158; `RULES_FILE`
//! replaces it. A limit may hold for an age band only: `min_age_years` (inclusive) and
//! `max_age_years` (exclusive); a patient whose age is not known is held to the bands without a
//! maximum (the adult ones).

use serde::{Deserialize, Serialize};

use crate::alert::{Finding, Severity};
use crate::record::ResultEntry;

const DEFAULT_LIMITS: &str = include_str!("../data/critical-limits.json");

/// One analyte's critical limits, in the analyte's canonical unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriticalLimit {
    pub analyte: String,
    pub unit: String,
    #[serde(default)]
    pub low: Option<f64>,
    #[serde(default)]
    pub high: Option<f64>,
    /// Whether a value equal to `low` is critical (RCPath writes ≤); default true.
    #[serde(default = "yes")]
    pub low_inclusive: bool,
    /// Whether a value equal to `high` is critical (RCPath writes ≥); default true.
    #[serde(default = "yes")]
    pub high_inclusive: bool,
    /// False for local defaults that no clinician has confirmed yet.
    #[serde(default = "yes")]
    pub confirmed: bool,
    /// Applies from this age in completed years (inclusive).
    #[serde(default)]
    pub min_age_years: Option<u32>,
    /// Applies below this age.
    #[serde(default)]
    pub max_age_years: Option<u32>,
    #[serde(default = "critical")]
    pub severity: Severity,
    /// What the alert says instead of the generated sentence.
    #[serde(default)]
    pub message: Option<String>,
    /// How long an unacknowledged alert may wait before it is escalated (the alert lifecycle;
    /// default: the table's).
    #[serde(default)]
    pub review_minutes: Option<u32>,
    /// Suppression: a finding within this long of the last one updates the open alert
    /// (default: the table's).
    #[serde(default)]
    pub repeat_minutes: Option<u32>,
    /// Only a new finding alerts: a result beyond the limit whose previous result of the
    /// analyte (in the kept history) was beyond it too says nothing — a known high creatinine
    /// (chronic kidney disease, dialysis) is not telephoned again and again.
    #[serde(default)]
    pub new_finding_only: bool,
}

impl CriticalLimit {
    /// Whether the limit holds for a patient of this age (unknown: the adult bands).
    pub fn applies_to(&self, age_years: Option<u32>) -> bool {
        match age_years {
            Some(y) => self.min_age_years.is_none_or(|min| y >= min) && self.max_age_years.is_none_or(|max| y < max),
            None => self.max_age_years.is_none(),
        }
    }
}

fn critical() -> Severity {
    Severity::Critical
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriticalLimits {
    #[serde(rename = "$schema", default, skip_serializing)]
    pub schema: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    /// The review window of limits that do not give one.
    #[serde(default = "default_review")]
    pub review_minutes: u32,
    /// The suppression window of limits that do not give one.
    #[serde(default = "default_repeat")]
    pub repeat_minutes: u32,
    #[serde(default)]
    pub aki: AkiRules,
    pub limits: Vec<CriticalLimit>,
}

fn default_review() -> u32 {
    60
}

fn default_repeat() -> u32 {
    1440
}

/// How AKI alerts behave (the algorithm itself is [`crate::aki`], exactly as written).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AkiRules {
    pub enabled: bool,
    /// A finding within this long of the episode's last one is the same episode.
    pub repeat_minutes: u32,
    /// Stage 2/3, or stage 1 with high potassium: NICE QS76, 6 h.
    pub review_minutes_telephoned: u32,
    pub review_minutes_stage_1: Option<u32>,
    pub review_minutes_no_baseline: Option<u32>,
    /// RCPath: stage 1 with potassium above this (mmol/L) is telephoned.
    pub telephone_potassium_above: f64,
    /// The potassium looked at: the latest taken at most this long before the creatinine.
    pub potassium_window_minutes: u32,
}

impl Default for AkiRules {
    fn default() -> Self {
        Self {
            enabled: true,
            repeat_minutes: 4320,
            review_minutes_telephoned: 360,
            review_minutes_stage_1: Some(1440),
            review_minutes_no_baseline: None,
            telephone_potassium_above: 6.0,
            potassium_window_minutes: 1440,
        }
    }
}

impl CriticalLimits {
    /// The limit of `analyte` for a patient of this age, in `unit`.
    pub fn limit_for(&self, analyte: &str, unit: &str, age_years: Option<u32>) -> Option<&CriticalLimit> {
        self.limits
            .iter()
            .find(|l| l.analyte == analyte && l.unit == unit && l.applies_to(age_years))
    }
}

impl CriticalLimits {
    /// Read and check a limits table; a problem is named by its line and column (JSON) or its
    /// entry and field (meaning).
    pub fn parse(json: &str) -> Result<Self, String> {
        let limits: Self = serde_json::from_str(json)
            .map_err(|e| format!("critical limits: line {} column {}: {e}", e.line(), e.column()))?;
        let aki = &limits.aki;
        for (field, minutes) in [
            ("review_minutes", Some(limits.review_minutes)),
            ("repeat_minutes", Some(limits.repeat_minutes)),
            ("aki.repeat_minutes", Some(aki.repeat_minutes)),
            ("aki.review_minutes_telephoned", Some(aki.review_minutes_telephoned)),
            ("aki.review_minutes_stage_1", aki.review_minutes_stage_1),
            ("aki.review_minutes_no_baseline", aki.review_minutes_no_baseline),
        ] {
            if minutes == Some(0) {
                return Err(format!("critical limits: {field}: must be at least 1 minute"));
            }
        }
        if !aki.telephone_potassium_above.is_finite() || aki.telephone_potassium_above <= 0.0 {
            return Err("critical limits: aki.telephone_potassium_above: must be a positive number".into());
        }
        for (i, l) in limits.limits.iter().enumerate() {
            let at =
                |field: &str, problem: &str| format!("critical limits: limits[{i}] ({}).{field}: {problem}", l.analyte);
            if l.low.is_none() && l.high.is_none() {
                return Err(at("low/high", "neither is given"));
            }
            if [l.low, l.high].iter().flatten().any(|v| !v.is_finite()) {
                return Err(at("low/high", "not a finite number"));
            }
            if let (Some(low), Some(high)) = (l.low, l.high)
                && low >= high
            {
                return Err(at("low", "must be below high"));
            }
            if l.review_minutes == Some(0) || l.repeat_minutes == Some(0) {
                return Err(at("review_minutes/repeat_minutes", "must be at least 1 minute"));
            }
            if let (Some(min), Some(max)) = (l.min_age_years, l.max_age_years)
                && min >= max
            {
                return Err(at("min_age_years", "must be below max_age_years"));
            }
            // Two limits of one analyte whose age bands overlap would both fire.
            if let Some(j) = limits.limits[..i].iter().position(|o| {
                o.analyte == l.analyte
                    && o.min_age_years.unwrap_or(0) < l.max_age_years.unwrap_or(u32::MAX)
                    && l.min_age_years.unwrap_or(0) < o.max_age_years.unwrap_or(u32::MAX)
            }) {
                return Err(at(
                    "min_age_years/max_age_years",
                    &format!("overlaps the age band of limits[{j}]"),
                ));
            }
        }
        Ok(limits)
    }
}

impl Default for CriticalLimits {
    fn default() -> Self {
        // The embedded table is checked by this module's tests.
        Self::parse(DEFAULT_LIMITS).unwrap_or(Self {
            schema: None,
            source: None,
            review_minutes: default_review(),
            repeat_minutes: default_repeat(),
            aki: AkiRules::default(),
            limits: Vec::new(),
        })
    }
}

/// Critical limits for one result. A result in a unit other than the limit's is never compared
/// (ingest-lab stores known analytes in their canonical unit, so this only guards the table).
pub fn critical_limits(result: &ResultEntry, limits: &CriticalLimits, age_years: Option<u32>) -> Vec<Finding> {
    let (Some(analyte), Some(v)) = (result.analyte.as_deref(), result.evaluable()) else {
        // Not a known analyte, not a number, or not evaluable (unknown unit): never compared.
        return Vec::new();
    };
    if matches!(
        result.status.as_str(),
        "cancelled" | "entered-in-error" | "registered" | "unknown"
    ) {
        return Vec::new();
    }
    let mut findings = Vec::new();
    for limit in limits
        .limits
        .iter()
        .filter(|l| l.analyte == analyte && l.unit == result.unit && l.applies_to(age_years))
    {
        // `>5` says nothing about how low a value is, nor `<0.5` about how high.
        let above = matches!(result.comparator.as_deref(), Some(">" | ">="));
        let below = matches!(result.comparator.as_deref(), Some("<" | "<="));
        let low = limit
            .low
            .filter(|_| !above)
            .filter(|&low| if limit.low_inclusive { v <= low } else { v < low });
        let high = limit
            .high
            .filter(|_| !below)
            .filter(|&high| if limit.high_inclusive { v >= high } else { v > high });
        let unconfirmed = if limit.confirmed {
            ""
        } else {
            " (local default limit, clinically unconfirmed)"
        };
        let said = |generated: String| match &limit.message {
            Some(m) => format!("{m}{unconfirmed}"),
            None => generated,
        };
        if let Some(low) = low {
            let how = if limit.low_inclusive { "at or below" } else { "below" };
            findings.push(Finding {
                rule: format!("critical-low:{analyte}"),
                severity: limit.severity,
                message: said(format!(
                    "{analyte} {v} {} is {how} the critical limit {low}{unconfirmed}",
                    result.unit
                )),
                limit: Some(low),
            });
        }
        if let Some(high) = high {
            let how = if limit.high_inclusive { "at or above" } else { "above" };
            findings.push(Finding {
                rule: format!("critical-high:{analyte}"),
                severity: limit.severity,
                message: said(format!(
                    "{analyte} {v} {} is {how} the critical limit {high}{unconfirmed}",
                    result.unit
                )),
                limit: Some(high),
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn potassium(value: f64) -> ResultEntry {
        crate::record::potassium_result(value, "final")
    }

    #[test]
    fn a_value_given_as_a_bound_is_only_compared_on_the_side_it_bounds() {
        let limits = CriticalLimits::default();
        let mut above = potassium(2.0);
        above.comparator = Some(">".into());
        assert!(critical_limits(&above, &limits, None).is_empty(), ">2.0 may be normal");
        let mut below = potassium(0.5);
        below.comparator = Some("<".into());
        assert_eq!(
            critical_limits(&below, &limits, None).len(),
            1,
            "<0.5 is critically low"
        );
        let mut not_evaluable = potassium(9.0);
        not_evaluable.not_evaluable = Some("unit".into());
        assert!(critical_limits(&not_evaluable, &limits, None).is_empty());
    }

    #[test]
    fn the_embedded_table_parses_and_has_potassium() {
        let limits = CriticalLimits::default();
        assert!(limits.limits.iter().any(|l| l.analyte == "potassium"));
    }

    #[test]
    fn potassium_limits_are_inclusive_at_both_ends() {
        let limits = CriticalLimits::default();
        assert_eq!(
            critical_limits(&potassium(6.5), &limits, None)[0].rule,
            "critical-high:potassium"
        );
        assert_eq!(
            critical_limits(&potassium(2.5), &limits, None)[0].rule,
            "critical-low:potassium"
        );
        assert!(critical_limits(&potassium(6.49), &limits, None).is_empty());
        assert!(critical_limits(&potassium(2.51), &limits, None).is_empty());
        assert_eq!(critical_limits(&potassium(7.1), &limits, None).len(), 1);
    }

    #[test]
    fn an_entered_in_error_result_raises_nothing() {
        let mut r = potassium(7.1);
        r.status = "entered-in-error".into();
        assert!(critical_limits(&r, &CriticalLimits::default(), None).is_empty());
    }

    #[test]
    fn a_result_in_another_unit_is_not_compared() {
        let mut r = potassium(7.1);
        r.unit = "mg/dL".into();
        assert!(critical_limits(&r, &CriticalLimits::default(), None).is_empty());
    }

    #[test]
    fn a_broken_table_is_refused_naming_the_line_or_the_entry_and_field() {
        for (text, says) in [
            (r#"{"limits":[{"analyte":"x","unit":"u"}]}"#, "limits[0] (x).low/high"),
            (
                r#"{"limits":[{"analyte":"x","unit":"u","low":5,"high":1}]}"#,
                "limits[0] (x).low",
            ),
            (
                r#"{"limits":[{"analyte":"x","unit":"u","high":1},{"analyte":"x","unit":"u","high":2,"max_age_years":16}]}"#,
                "limits[1] (x).min_age_years/max_age_years: overlaps the age band of limits[0]",
            ),
            (
                "{\"limits\":[\n{\"analyte\":\"x\",\"unit\":\"u\",\"hihg\":1}]}",
                "line 2",
            ),
            (
                "{\"limits\":[\n{\"analyte\":\"x\",\"unit\":\"u\",\"hihg\":1}]}",
                "unknown field `hihg`",
            ),
            (
                r#"{"aki":{"review_minutes_telephoned":0},"limits":[{"analyte":"x","unit":"u","high":1}]}"#,
                "aki.review_minutes_telephoned: must be at least 1 minute",
            ),
            (
                r#"{"aki":{"repeat_minute":60},"limits":[{"analyte":"x","unit":"u","high":1}]}"#,
                "unknown field `repeat_minute`",
            ),
            (
                r#"{"limits":[{"analyte":"x","unit":"u","high":1,"review_minutes":0}]}"#,
                "limits[0] (x).review_minutes/repeat_minutes",
            ),
        ] {
            let e = CriticalLimits::parse(text).expect_err(text);
            assert!(e.contains(says), "{e} should say {says}");
        }
    }

    /// Every limit of the built-in table at its boundary, just inside and just beyond, in the
    /// canonical unit; and well inside and well beyond in every unit the units table accepts for
    /// the analyte, converted as ingest-lab converts.
    #[test]
    fn every_limit_of_the_table_holds_at_its_boundary_in_every_unit() {
        let limits = CriticalLimits::default();
        let units = crate::units::UnitTable::default();
        let result = |analyte: &crate::units::Analyte, value: f64, unit: &str| {
            let n = units.normalise(Some(&analyte.loinc[0]), None, value, Some(unit));
            ResultEntry {
                analyte: n.analyte,
                value: n.value,
                unit: n.unit.unwrap_or_default(),
                not_evaluable: n.not_evaluable,
                ..potassium(0.0)
            }
        };
        let mut checked = 0;
        for l in &limits.limits {
            let analyte = units
                .analytes()
                .iter()
                .find(|a| a.name == l.analyte)
                .unwrap_or_else(|| panic!("{} is in the units table", l.analyte));
            assert_eq!(
                analyte.canonical, l.unit,
                "{}: the limit is in the canonical unit",
                l.analyte
            );
            let age = l.min_age_years.or(l.max_age_years.map(|m| m - 1));
            let fires = |r: &ResultEntry, rule: &str| critical_limits(r, &limits, age).iter().any(|f| f.rule == rule);
            for (bound, inclusive, side) in [(l.low, l.low_inclusive, "low"), (l.high, l.high_inclusive, "high")] {
                let Some(b) = bound else { continue };
                let rule = format!("critical-{side}:{}", l.analyte);
                let beyond = if side == "low" { -1.0 } else { 1.0 };
                let step = (b.abs() * 1e-3).max(1e-3);
                assert_eq!(fires(&result(analyte, b, &l.unit), &rule), inclusive, "{rule} at {b}");
                assert!(
                    fires(&result(analyte, b + beyond * step, &l.unit), &rule),
                    "{rule} beyond {b}"
                );
                assert!(
                    !fires(&result(analyte, b - beyond * step, &l.unit), &rule),
                    "{rule} inside {b}"
                );
                for (unit, factor) in &analyte.units {
                    let well_beyond = (b + beyond * b.abs().max(1.0) * 0.05) / factor;
                    let well_inside = (b - beyond * b.abs().max(1.0) * 0.05) / factor;
                    assert!(
                        fires(&result(analyte, well_beyond, unit), &rule),
                        "{rule} beyond in {unit}"
                    );
                    assert!(
                        !fires(&result(analyte, well_inside, unit), &rule),
                        "{rule} inside in {unit}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 40, "{checked}");
    }

    #[test]
    fn age_bands_choose_the_limit_and_an_unknown_age_gets_the_adult_one() {
        let limits = CriticalLimits::default();
        let mut sodium = potassium(125.0);
        sodium.analyte = Some("sodium".into());
        let fires = |age| !critical_limits(&sodium, &limits, age).is_empty();
        assert!(fires(Some(15)), "under 16: 125 is at or below 130");
        assert!(!fires(Some(16)), "16 and over: 125 is above 120");
        assert!(!fires(None), "age unknown: the adult limit");
    }
}
