//! Canonical units: every known analyte is stored in one unit, whatever the laboratory sent.
//!
//! Mass ↔ substance conversions need the analyte's molar mass (UCUM cannot do them), so the
//! table below is per analyte. A known analyte in a unit not listed here is refused rather than
//! guessed at (the mmol/L-vs-µmol/L trap).

/// An analyte Wardwatch understands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Analyte {
    pub name: &'static str,
    pub loinc: &'static [&'static str],
    /// UCUM code of the unit results are stored in.
    pub canonical: &'static str,
    /// Accepted source units (UCUM codes, compared case-insensitively with µ/μ read as u) and
    /// the factor that turns a value in that unit into the canonical unit.
    pub units: &'static [(&'static str, f64)],
}

/// Creatinine 113.12 g/mol: 1 mg/dL = 88.42 µmol/L. Glucose 180.16 g/mol: 1 mg/dL = 0.0555 mmol/L.
pub const ANALYTES: &[Analyte] = &[
    Analyte {
        name: "potassium",
        loinc: &["2823-3", "6298-4"],
        canonical: "mmol/L",
        units: &[("mmol/L", 1.0), ("meq/L", 1.0)],
    },
    Analyte {
        name: "sodium",
        loinc: &["2951-2", "2947-0"],
        canonical: "mmol/L",
        units: &[("mmol/L", 1.0), ("meq/L", 1.0)],
    },
    Analyte {
        name: "creatinine",
        loinc: &["14682-9", "2160-0", "38483-4"],
        canonical: "umol/L",
        units: &[("umol/L", 1.0), ("mmol/L", 1000.0), ("mg/dL", 88.42), ("mg/L", 8.842)],
    },
    Analyte {
        name: "glucose",
        loinc: &["14749-6", "15074-8", "2345-7", "2339-0"],
        canonical: "mmol/L",
        units: &[("mmol/L", 1.0), ("mg/dL", 1.0 / 18.016)],
    },
    Analyte {
        name: "haemoglobin",
        loinc: &["718-7"],
        canonical: "g/L",
        units: &[("g/L", 1.0), ("g/dL", 10.0)],
    },
];

pub fn analyte_for(loinc: &str) -> Option<&'static Analyte> {
    ANALYTES.iter().find(|a| a.loinc.contains(&loinc))
}

fn fold(unit: &str) -> String {
    unit.trim().replace(['µ', 'μ'], "u").to_ascii_lowercase()
}

/// A value in its canonical unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalised {
    pub analyte: Option<&'static str>,
    pub value: f64,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unit `{unit}` is not accepted for {analyte} (LOINC {loinc}); accepted: {accepted}")]
pub struct UnitError {
    pub analyte: &'static str,
    pub loinc: String,
    pub unit: String,
    pub accepted: String,
}

/// Convert a result to its analyte's canonical unit. An analyte Wardwatch does not know keeps
/// the laboratory's unit.
pub fn normalise(loinc: &str, value: f64, unit: &str) -> Result<Normalised, UnitError> {
    let Some(analyte) = analyte_for(loinc) else {
        return Ok(Normalised {
            analyte: None,
            value,
            unit: unit.to_owned(),
        });
    };
    let folded = fold(unit);
    let factor = analyte
        .units
        .iter()
        .find(|(u, _)| fold(u) == folded)
        .map(|(_, f)| *f)
        .ok_or_else(|| UnitError {
            analyte: analyte.name,
            loinc: loinc.to_owned(),
            unit: unit.to_owned(),
            accepted: analyte.units.iter().map(|(u, _)| *u).collect::<Vec<_>>().join(", "),
        })?;
    // Round to 4 decimals so that conversions do not invent precision. (Callers pass values
    // that are finite and below 1e12, so this stays finite.)
    let converted = ((value * factor) * 10_000.0).round() / 10_000.0;
    Ok(Normalised {
        analyte: Some(analyte.name),
        value: converted,
        unit: analyte.canonical.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn potassium_in_meq_per_litre_is_the_same_number_in_mmol_per_litre() {
        let n = normalise("2823-3", 7.1, "mEq/L").expect("accepted");
        assert_eq!(
            (n.value, n.unit.as_str(), n.analyte),
            (7.1, "mmol/L", Some("potassium"))
        );
    }

    #[test]
    fn creatinine_in_mg_per_decilitre_becomes_micromol_per_litre() {
        let n = normalise("2160-0", 1.0, "mg/dL").expect("accepted");
        assert_eq!((n.value, n.unit.as_str()), (88.42, "umol/L"));
        assert_eq!(normalise("14682-9", 120.0, "µmol/L").expect("accepted").value, 120.0);
    }

    #[test]
    fn a_known_analyte_in_an_unknown_unit_is_refused() {
        let err = normalise("2823-3", 7.1, "mg/dL").expect_err("refused");
        assert!(err.to_string().contains("mmol/L"), "{err}");
    }

    #[test]
    fn an_unknown_analyte_keeps_its_unit() {
        let n = normalise("9999-9", 3.0, "kU/L").expect("kept");
        assert_eq!((n.analyte, n.unit.as_str()), (None, "kU/L"));
    }
}
