//! Canonical units, as data: every known analyte is stored in one unit, whatever the laboratory
//! sent, by a table loaded at start-up (`crates/domain/data/units.json` built in, `UNITS_FILE` to
//! replace it; its JSON Schema is `schemas/wardwatch/units.schema.json`).
//!
//! Conversions between concentration units are computed from the units themselves: an amount
//! (mass `g`, substance `mol`, equivalents `eq`, enzyme units `U`, a count `10*N`) with a prefix
//! (`k d c m u n p f`) per volume (`L dL mL uL nL`). Mass ↔ substance needs the analyte's molar
//! mass and equivalents its valence (UCUM itself cannot do either: clinical-rules.md §3). A unit
//! the computation does not know (`%`, `s`, `{INR}`) needs an explicit factor; an explicit factor
//! that can also be computed must agree with it, so that a typo (0.8842 for 88.42) stops start-up.
//!
//! A result is never guessed at: an analyte the table does not know, or a known one in a unit
//! the table does not accept for it (the mmol/L-vs-µmol/L trap), is kept as reported and marked
//! not evaluable, with the reason.

use std::collections::HashMap;

use serde::Deserialize;

const DEFAULT_TABLE: &str = include_str!("../data/units.json");

/// How far an explicit factor may differ from the computed one.
const FACTOR_TOLERANCE: f64 = 0.005;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(rename = "$schema", default)]
    _schema: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    spellings: HashMap<String, String>,
    analytes: Vec<AnalyteFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalyteFile {
    name: String,
    loinc: Vec<String>,
    #[serde(default)]
    local_codes: Vec<String>,
    canonical: String,
    #[serde(default)]
    molar_mass: Option<f64>,
    #[serde(default)]
    valence: Option<u8>,
    units: Vec<UnitFile>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum UnitFile {
    Computed(String),
    #[allow(dead_code)] // `note` documents the file; it is read and kept nowhere.
    Explicit {
        unit: String,
        factor: f64,
        #[serde(default)]
        note: Option<String>,
    },
}

/// An analyte Wardwatch understands.
#[derive(Debug, Clone, PartialEq)]
pub struct Analyte {
    pub name: String,
    /// LOINC codes meaning it; the first names a result known only by a local code.
    pub loinc: Vec<String>,
    pub local_codes: Vec<String>,
    /// UCUM code of the unit results are stored in.
    pub canonical: String,
    /// Accepted units as written in the table, each with the factor to the canonical unit.
    pub units: Vec<(String, f64)>,
    /// The same, folded, with their computed concentration where they have one.
    folded: Vec<(String, Option<Concentration>, f64)>,
}

/// The units table.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitTable {
    pub source: Option<String>,
    analytes: Vec<Analyte>,
    by_loinc: HashMap<String, usize>,
    by_local: HashMap<String, usize>,
    /// Folded spelling → folded unit.
    spellings: HashMap<String, String>,
}

/// A units file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("units table: {0}")]
pub struct TableError(pub String);

/// A result's value in its canonical unit, or why it has none.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalised {
    /// The analyte's name, when the table knows the code.
    pub analyte: Option<String>,
    /// The analyte's first LOINC code (for a result named by a local code).
    pub loinc: Option<String>,
    /// In the canonical unit; `None` when not evaluable.
    pub value: Option<f64>,
    /// The canonical unit, or the unit as reported when not evaluable.
    pub unit: Option<String>,
    /// Why the result cannot be evaluated as a number, if it cannot.
    pub not_evaluable: Option<String>,
}

impl Default for UnitTable {
    /// The built-in table (checked by this module's tests, so it always loads).
    fn default() -> Self {
        #[allow(clippy::expect_used)]
        Self::from_json(DEFAULT_TABLE).expect("the built-in units table loads (unit tests)")
    }
}

impl UnitTable {
    /// Read and check a units table. Every accepted unit must convert to its analyte's
    /// canonical unit; codes must name one analyte each.
    pub fn from_json(text: &str) -> Result<Self, TableError> {
        let file: TableFile = serde_json::from_str(text)
            .map_err(|e| TableError(format!("line {} column {}: {e}", e.line(), e.column())))?;
        if file.analytes.is_empty() {
            return Err(TableError("`analytes` is empty".into()));
        }
        let mut table = UnitTable {
            source: file.source,
            analytes: Vec::new(),
            by_loinc: HashMap::new(),
            by_local: HashMap::new(),
            spellings: file.spellings.iter().map(|(from, to)| (fold(from), fold(to))).collect(),
        };
        for (i, a) in file.analytes.into_iter().enumerate() {
            let at = |msg: String| TableError(format!("analytes[{i}] ({}): {msg}", a.name));
            if a.loinc.is_empty() {
                return Err(at("`loinc` is empty".into()));
            }
            if a.molar_mass.is_some_and(|m| !(m.is_finite() && m > 0.0)) {
                return Err(at("`molar_mass` must be a positive number".into()));
            }
            let chem = Chemistry {
                molar_mass: a.molar_mass,
                valence: a.valence.map(f64::from),
            };
            let canonical = Concentration::parse(&fold(&a.canonical));
            let mut units = Vec::new();
            let mut folded = Vec::new();
            for u in &a.units {
                let (unit, explicit) = match u {
                    UnitFile::Computed(u) => (u.clone(), None),
                    UnitFile::Explicit { unit, factor, .. } => (unit.clone(), Some(*factor)),
                };
                let f = fold(&unit);
                let conc = Concentration::parse(&f);
                let computed = match (conc, canonical) {
                    (Some(from), Some(to)) => from.factor_to(to, chem),
                    _ if f == fold(&a.canonical) => Some(1.0),
                    _ => None,
                };
                let factor = match (explicit, computed) {
                    (Some(e), _) if !(e.is_finite() && e > 0.0) => {
                        return Err(at(format!("unit `{unit}`: the factor must be a positive number")));
                    }
                    (Some(e), Some(c)) if ((e - c) / c).abs() > FACTOR_TOLERANCE => {
                        return Err(at(format!(
                            "unit `{unit}`: factor {e} disagrees with the {c:.6} computed from the units{}",
                            if a.molar_mass.is_some() {
                                " and the molar mass"
                            } else {
                                ""
                            }
                        )));
                    }
                    (Some(e), _) => e,
                    (None, Some(c)) => c,
                    (None, None) => {
                        return Err(at(format!(
                            "unit `{unit}` cannot be converted to `{}`: {}",
                            a.canonical,
                            if conc.is_some() && canonical.is_some() {
                                "give `molar_mass` (mass ↔ substance) or `valence` (equivalents), or an explicit factor"
                            } else {
                                "give an explicit factor ({\"unit\": …, \"factor\": …})"
                            }
                        )));
                    }
                };
                if let Some((_, _, other)) = folded.iter().find(|(g, _, _)| *g == f)
                    && (other - factor).abs() > f64::EPSILON * factor.abs().max(1.0)
                {
                    return Err(at(format!("unit `{unit}` is listed twice with different factors")));
                }
                units.push((unit, factor));
                folded.push((f, conc, factor));
            }
            let index = table.analytes.len();
            for code in &a.loinc {
                if table.by_loinc.insert(code.clone(), index).is_some() {
                    return Err(at(format!("LOINC {code} names two analytes")));
                }
            }
            for code in &a.local_codes {
                if table.by_local.insert(code.clone(), index).is_some() {
                    return Err(at(format!("local code `{code}` names two analytes")));
                }
            }
            if table.analytes.iter().any(|x| x.name == a.name) {
                return Err(at("the name is used twice".into()));
            }
            table.analytes.push(Analyte {
                name: a.name,
                loinc: a.loinc,
                local_codes: a.local_codes,
                canonical: a.canonical,
                units,
                folded,
            });
        }
        Ok(table)
    }

    pub fn analytes(&self) -> &[Analyte] {
        &self.analytes
    }

    /// The analyte a LOINC code, else a local code, names.
    pub fn analyte(&self, loinc: Option<&str>, local: Option<&str>) -> Option<&Analyte> {
        loinc
            .and_then(|c| self.by_loinc.get(c))
            .or_else(|| local.and_then(|c| self.by_local.get(c)))
            .map(|&i| &self.analytes[i])
    }

    /// A numeric result in its analyte's canonical unit, or kept as reported with the reason
    /// it cannot be evaluated.
    pub fn normalise(&self, loinc: Option<&str>, local: Option<&str>, value: f64, unit: Option<&str>) -> Normalised {
        let not = |analyte: Option<&Analyte>, reason: String| Normalised {
            analyte: analyte.map(|a| a.name.clone()),
            loinc: analyte.map(|a| a.loinc[0].clone()),
            value: None,
            unit: unit.map(str::to_owned),
            not_evaluable: Some(reason),
        };
        let Some(analyte) = self.analyte(loinc, local) else {
            let code = match (loinc, local) {
                (Some(l), _) => format!("LOINC {l}"),
                (None, Some(c)) => format!("local code `{c}`"),
                (None, None) => "a result without a code".into(),
            };
            return not(None, format!("{code} is not in the units table"));
        };
        let named = || match loinc {
            Some(l) => format!("{} (LOINC {l})", analyte.name),
            None => analyte.name.clone(),
        };
        let received = fold(unit.unwrap_or_default());
        let received = self.spellings.get(&received).cloned().unwrap_or(received);
        let received_conc = Concentration::parse(&received);
        let factor = analyte
            .folded
            .iter()
            .find(|(f, _, _)| *f == received)
            .or_else(|| {
                let r = received_conc?;
                analyte.folded.iter().find(|(_, c, _)| c.is_some_and(|c| c.same_as(r)))
            })
            .map(|(_, _, factor)| *factor);
        let Some(factor) = factor else {
            let accepted: Vec<&str> = analyte.units.iter().map(|(u, _)| u.as_str()).collect();
            let reason = match unit {
                None => format!("no unit given for {}; accepted: {}", named(), accepted.join(", ")),
                Some(u) => format!(
                    "unit `{u}` is not accepted for {}; accepted: {}",
                    named(),
                    accepted.join(", ")
                ),
            };
            return not(Some(analyte), reason);
        };
        // Round to 4 decimals so that conversions do not invent precision; values are checked
        // finite and below 1e12 by the caller's readers, and factors are finite.
        let converted = ((value * factor) * 10_000.0).round() / 10_000.0;
        if !converted.is_finite() {
            return not(Some(analyte), "the converted value is not a finite number".into());
        }
        Normalised {
            analyte: Some(analyte.name.clone()),
            loinc: Some(analyte.loinc[0].clone()),
            value: Some(converted),
            unit: Some(analyte.canonical.clone()),
            not_evaluable: None,
        }
    }
}

/// A unit string as compared: UCUM annotations (`{…}`) and spaces removed, µ/μ read as u, case
/// ignored.
fn fold(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0usize;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ if depth > 0 || c.is_whitespace() => {}
            'µ' | 'μ' => out.push('u'),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Amount {
    Mass,
    Substance,
    Equivalents,
    EnzymeUnits,
    Count,
}

/// An amount per litre: what kind of amount, and how many base amounts (g, mol, eq, U, 1) one
/// of this unit is per litre.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Concentration {
    amount: Amount,
    scale: f64,
}

#[derive(Debug, Clone, Copy)]
struct Chemistry {
    molar_mass: Option<f64>,
    valence: Option<f64>,
}

fn prefix(p: &str) -> Option<f64> {
    Some(match p {
        "" => 1.0,
        "k" => 1e3,
        "d" => 1e-1,
        "c" => 1e-2,
        "m" => 1e-3,
        "u" | "mc" => 1e-6,
        "n" => 1e-9,
        "p" => 1e-12,
        "f" => 1e-15,
        _ => return None,
    })
}

impl Concentration {
    /// Parse a folded unit such as `umol/l`, `mg/dl`, `meq/l`, `u/l`, `10*9/l`, `x10^9/l`.
    fn parse(folded: &str) -> Option<Self> {
        let (num, den) = folded.rsplit_once('/')?;
        let litres = prefix(den.strip_suffix('l')?)?;
        let count = num.strip_prefix('x').unwrap_or(num);
        if let Some(exp) = count
            .strip_prefix("10*")
            .or_else(|| count.strip_prefix("10^"))
            .or_else(|| count.strip_prefix("10e"))
        {
            let exp: i32 = exp.parse().ok().filter(|e: &i32| (0..=15).contains(e))?;
            return Some(Concentration {
                amount: Amount::Count,
                scale: 10f64.powi(exp) / litres,
            });
        }
        let bases = [
            ("mol", Amount::Substance),
            ("eq", Amount::Equivalents),
            ("[iu]", Amount::EnzymeUnits),
            ("iu", Amount::EnzymeUnits),
            ("g", Amount::Mass),
            ("u", Amount::EnzymeUnits),
        ];
        bases.iter().find_map(|(base, amount)| {
            let p = prefix(num.strip_suffix(base)?)?;
            Some(Concentration {
                amount: *amount,
                scale: p / litres,
            })
        })
    }

    fn same_as(self, other: Concentration) -> bool {
        self.amount == other.amount && ((self.scale - other.scale) / other.scale).abs() < 1e-9
    }

    /// Moles per litre in one of this unit, where the chemistry allows.
    fn moles(self, chem: Chemistry) -> Option<f64> {
        match self.amount {
            Amount::Substance => Some(self.scale),
            Amount::Equivalents => chem.valence.map(|z| self.scale / z),
            Amount::Mass => chem.molar_mass.map(|m| self.scale / m),
            Amount::EnzymeUnits | Amount::Count => None,
        }
    }

    /// The factor that turns a value in this unit into a value in `to`.
    fn factor_to(self, to: Concentration, chem: Chemistry) -> Option<f64> {
        if self.amount == to.amount {
            return Some(self.scale / to.scale);
        }
        Some(self.moles(chem)? / to.moles(chem)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> UnitTable {
        UnitTable::default()
    }

    fn canonical(loinc: &str, value: f64, unit: &str) -> (f64, String) {
        let n = table().normalise(Some(loinc), None, value, Some(unit));
        assert_eq!(n.not_evaluable, None, "{loinc} {value} {unit}");
        (n.value.expect("value"), n.unit.expect("unit"))
    }

    #[test]
    fn the_built_in_table_loads() {
        assert!(table().analytes().len() >= 20);
    }

    #[test]
    fn potassium_in_meq_per_litre_is_the_same_number_in_mmol_per_litre() {
        assert_eq!(canonical("2823-3", 7.1, "mEq/L"), (7.1, "mmol/L".into()));
    }

    #[test]
    fn creatinine_in_mg_per_decilitre_and_the_same_in_micromol_per_litre_agree() {
        assert_eq!(canonical("2160-0", 1.0, "mg/dL"), (88.42, "umol/L".into()));
        assert_eq!(canonical("14682-9", 88.42, "µmol/L"), (88.42, "umol/L".into()));
        assert_eq!(canonical("14682-9", 88.42, "umol/l"), (88.42, "umol/L".into()));
        assert_eq!(canonical("14682-9", 88.42, "μmol/L"), (88.42, "umol/L".into()));
        assert_eq!(canonical("2160-0", 10.0, "mg/L"), (88.42, "umol/L".into()));
    }

    #[test]
    fn the_scale_trap_creatinine_in_millimoles_is_a_thousand_times_micromoles() {
        assert_eq!(canonical("14682-9", 0.09, "mmol/L"), (90.0, "umol/L".into()));
    }

    #[test]
    fn molar_mass_conversions_follow_the_clinical_rules_table() {
        // glucose 180.16 g/mol: 90 mg/dL ≈ 5 mmol/L; calcium 40.08: 10 mg/dL = 2.495 mmol/L.
        assert_eq!(canonical("2345-7", 90.0, "mg/dL").0, 4.9956);
        assert_eq!(canonical("17861-6", 10.0, "mg/dL").0, 2.495);
        assert_eq!(canonical("6299-2", 14.0, "mg/dL").0, 4.998);
        assert_eq!(canonical("2000-8", 5.0, "mEq/L").0, 2.5);
    }

    #[test]
    fn counts_are_recognised_however_they_are_written() {
        for unit in ["10*9/L", "10^9/L", "x10E9/L", "10*3/uL", "/nL", "x10^9/l"] {
            assert_eq!(canonical("777-3", 250.0, unit), (250.0, "10*9/L".into()), "{unit}");
        }
    }

    #[test]
    fn annotations_and_spaces_are_ignored() {
        assert_eq!(canonical("2823-3", 4.0, "mmol/L{serum}").0, 4.0);
        assert_eq!(canonical("2823-3", 4.0, " mmol / L ").0, 4.0);
        assert_eq!(canonical("6301-6", 2.5, "").0, 2.5);
    }

    #[test]
    fn a_known_analyte_in_an_unknown_unit_is_not_evaluable_and_says_why() {
        let n = table().normalise(Some("2823-3"), None, 7.1, Some("mg/dL"));
        assert_eq!((n.value, n.analyte.as_deref()), (None, Some("potassium")));
        let why = n.not_evaluable.expect("reason");
        assert!(why.contains("mg/dL") && why.contains("mmol/L"), "{why}");
        assert_eq!(n.unit.as_deref(), Some("mg/dL"));
    }

    #[test]
    fn an_unknown_analyte_is_not_evaluable() {
        let n = table().normalise(Some("9999-9"), None, 3.0, Some("kU/L"));
        assert_eq!((n.analyte, n.value), (None, None));
        assert!(n.not_evaluable.expect("reason").contains("9999-9"));
    }

    #[test]
    fn a_local_code_names_its_analyte_and_its_loinc() {
        let n = table().normalise(None, Some("CREA"), 1.0, Some("mg/dL"));
        assert_eq!((n.value, n.loinc.as_deref()), (Some(88.42), Some("14682-9")));
        let unknown = table().normalise(None, Some("ZZZ"), 1.0, Some("mg/dL"));
        assert!(unknown.not_evaluable.expect("reason").contains("`ZZZ`"));
    }

    #[test]
    fn a_broken_file_says_where_and_why() {
        let bad = [
            (r#"{"analytes": [}"#, "line 1"),
            (r#"{"analytes": []}"#, "empty"),
            (
                r#"{"analytes": [{"name":"k","loinc":["1-1"],"canonical":"mmol/L","units":["mg/dL"]}]}"#,
                "molar_mass",
            ),
            (
                r#"{"analytes": [{"name":"k","loinc":["1-1"],"canonical":"%","units":["mmol/L"]}]}"#,
                "explicit factor",
            ),
            (
                r#"{"analytes": [{"name":"c","loinc":["1-1"],"canonical":"umol/L","molar_mass":113.12,
                 "units":[{"unit":"mg/dL","factor":0.8842}]}]}"#,
                "disagrees",
            ),
            (
                r#"{"analytes": [{"name":"a","loinc":["1-1"],"canonical":"g/L","units":["g/L"]},
                              {"name":"b","loinc":["1-1"],"canonical":"g/L","units":["g/L"]}]}"#,
                "two analytes",
            ),
            (r#"{"analytes": [], "extra": 1}"#, "unknown field"),
        ];
        for (text, says) in bad {
            let e = UnitTable::from_json(text).expect_err(text).to_string();
            assert!(e.contains(says), "{e} should say {says}");
        }
    }

    #[test]
    fn conversions_round_trip_across_every_accepted_unit() {
        // Whatever unit a result arrives in, its canonical value divided back gives the value sent.
        for a in table().analytes() {
            for (unit, factor) in &a.units {
                let n = table().normalise(Some(&a.loinc[0]), None, 2.0, Some(unit));
                assert_eq!(n.not_evaluable, None, "{} {unit}", a.name);
                let back = n.value.expect("value") / factor;
                assert!((back - 2.0).abs() < 1e-3, "{} {unit}: {back}", a.name);
            }
        }
    }
}
