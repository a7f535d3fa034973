//! Clinical rules over validated results. Pure functions: the history and the time come in.
//!
//! The critical ("telephone") limits are data: a hospital changes the JSON table, not the code.
//! The default table (`crates/domain/data/critical-limits.json`) is seeded from RCPath G158.

use serde::{Deserialize, Serialize};

use crate::alert::{Finding, Severity};
use crate::record::ResultEntry;

const DEFAULT_LIMITS: &str = include_str!("../data/critical-limits.json");

/// One analyte's critical limits, in the analyte's canonical unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriticalLimits {
    #[serde(default)]
    pub source: Option<String>,
    pub limits: Vec<CriticalLimit>,
}

impl CriticalLimits {
    pub fn parse(json: &str) -> Result<Self, String> {
        let limits: Self = serde_json::from_str(json).map_err(|e| format!("critical limits: {e}"))?;
        for l in &limits.limits {
            if l.low.is_none() && l.high.is_none() {
                return Err(format!("critical limits: {} has neither low nor high", l.analyte));
            }
        }
        Ok(limits)
    }
}

impl Default for CriticalLimits {
    fn default() -> Self {
        // The embedded table is checked by this module's tests.
        Self::parse(DEFAULT_LIMITS).unwrap_or(Self {
            source: None,
            limits: Vec::new(),
        })
    }
}

/// Critical limits for one result. A result in a unit other than the limit's is never compared
/// (ingest-lab stores known analytes in their canonical unit, so this only guards the table).
pub fn critical_limits(result: &ResultEntry, limits: &CriticalLimits) -> Vec<Finding> {
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
        .filter(|l| l.analyte == analyte && l.unit == result.unit)
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
        if let Some(low) = low {
            findings.push(Finding {
                rule: format!("critical-low:{analyte}"),
                severity: Severity::Critical,
                message: format!(
                    "{analyte} {v} {} is at or below the critical limit {low}{unconfirmed}",
                    result.unit
                ),
            });
        }
        if let Some(high) = high {
            findings.push(Finding {
                rule: format!("critical-high:{analyte}"),
                severity: Severity::Critical,
                message: format!(
                    "{analyte} {v} {} is at or above the critical limit {high}{unconfirmed}",
                    result.unit
                ),
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
        assert!(critical_limits(&above, &limits).is_empty(), ">2.0 may be normal");
        let mut below = potassium(0.5);
        below.comparator = Some("<".into());
        assert_eq!(critical_limits(&below, &limits).len(), 1, "<0.5 is critically low");
        let mut not_evaluable = potassium(9.0);
        not_evaluable.not_evaluable = Some("unit".into());
        assert!(critical_limits(&not_evaluable, &limits).is_empty());
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
            critical_limits(&potassium(6.5), &limits)[0].rule,
            "critical-high:potassium"
        );
        assert_eq!(
            critical_limits(&potassium(2.5), &limits)[0].rule,
            "critical-low:potassium"
        );
        assert!(critical_limits(&potassium(6.49), &limits).is_empty());
        assert!(critical_limits(&potassium(2.51), &limits).is_empty());
        assert_eq!(critical_limits(&potassium(7.1), &limits).len(), 1);
    }

    #[test]
    fn an_entered_in_error_result_raises_nothing() {
        let mut r = potassium(7.1);
        r.status = "entered-in-error".into();
        assert!(critical_limits(&r, &CriticalLimits::default()).is_empty());
    }

    #[test]
    fn a_result_in_another_unit_is_not_compared() {
        let mut r = potassium(7.1);
        r.unit = "mg/dL".into();
        assert!(critical_limits(&r, &CriticalLimits::default()).is_empty());
    }

    #[test]
    fn a_limit_without_bounds_is_refused() {
        assert!(CriticalLimits::parse(r#"{"limits":[{"analyte":"x","unit":"u"}]}"#).is_err());
    }
}
