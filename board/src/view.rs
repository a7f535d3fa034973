//! What the page shows, computed from patient records: plain strings and numbers, so that the
//! templates only lay them out. Pure functions of (records, now).

use chrono::{DateTime, Utc};
use wardwatch_domain::alert::{Alert, AlertStatus, Severity};
use wardwatch_domain::record::{PatientRecord, ResultEntry};

/// How many analytes a ward row shows (the most recently reported first).
const ROW_RESULTS: usize = 4;

pub struct WardView {
    pub name: String,
    pub patients: Vec<PatientRow>,
    pub active_alerts: usize,
}

pub struct PatientRow {
    pub id: String,
    pub name: String,
    pub mrn: String,
    pub bed: String,
    pub days: String,
    pub results: Vec<ResultChip>,
    pub alerts: Vec<AlertChip>,
}

pub struct ResultChip {
    pub label: String,
    pub value: String,
    pub unit: String,
    /// "↑", "↓", "→" or "" (no earlier result).
    pub trend: &'static str,
    /// The trend in words, for screen readers.
    pub trend_words: &'static str,
    pub flagged: bool,
}

pub struct AlertChip {
    pub severity: &'static str,
    pub status: &'static str,
    pub label: String,
}

pub struct FeedItem {
    pub id: String,
    pub patient_id: String,
    pub name: String,
    pub mrn: String,
    pub place: String,
    pub severity: &'static str,
    pub status: &'static str,
    pub message: String,
    pub value: String,
    pub raised: String,
    pub raised_iso: String,
    pub active: bool,
    pub acknowledged: Option<String>,
    pub note: Option<String>,
}

pub struct UnplacedRow {
    pub id: String,
    pub name: String,
    pub mrn: String,
    pub open_alerts: usize,
    pub worst: &'static str,
}

pub struct SeriesView {
    pub label: String,
    pub unit: String,
    pub points: Vec<PointView>,
    /// SVG polyline points in a 300 × 80 box.
    pub polyline: String,
    pub dots: Vec<(f64, f64)>,
    pub min: String,
    pub max: String,
}

pub struct PointView {
    pub when: String,
    pub value: String,
    pub status: String,
    /// Why a number is shown but not evaluated (a unit or analyte the units table lacks).
    pub not_evaluated: Option<String>,
}

pub struct TrailItem {
    pub id: String,
    pub patient_id: String,
    pub active: bool,
    pub raised: String,
    pub severity: &'static str,
    pub status: &'static str,
    pub message: String,
    pub value: String,
    pub acknowledged: Option<String>,
    pub note: Option<String>,
}

pub fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
    }
}

pub fn status(s: AlertStatus) -> &'static str {
    match s {
        AlertStatus::Active => "active",
        AlertStatus::Acknowledged => "acknowledged",
        AlertStatus::Escalated => "escalated",
        AlertStatus::Resolved => "resolved",
        AlertStatus::Withdrawn => "withdrawn",
    }
}

/// A sort key that puts "Bed 2" before "Bed 10": the text, then the number in it.
pub fn natural(s: &str) -> (String, u64, String) {
    let start = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
    let digits: String = s[start..].chars().take_while(char::is_ascii_digit).collect();
    let rest = &s[start + digits.len()..];
    (s[..start].to_owned(), digits.parse().unwrap_or(0), rest.to_owned())
}

/// Hours and minutes in UTC, the page's clock (the page says so).
pub fn hhmm(t: DateTime<Utc>) -> String {
    t.format("%H:%M").to_string()
}

fn day_and_time(t: DateTime<Utc>) -> String {
    t.format("%d %b %H:%M").to_string()
}

/// A UCUM unit as people write it: `umol/L` → `µmol/L`.
pub fn unit(ucum: &str) -> String {
    match ucum.strip_prefix('u') {
        Some(rest) if rest.starts_with("mol") || rest.starts_with('g') => format!("µ{rest}"),
        _ => ucum.to_owned(),
    }
}

/// A value without spurious digits: 7.1, 5.25, 120.
pub fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// A result as shown: the canonical number with its comparator; a result that cannot be
/// evaluated as it was reported, marked; text as it is.
pub fn shown(r: &ResultEntry) -> String {
    let c = r.comparator.as_deref().unwrap_or("");
    match (r.value, r.reported_value, &r.text) {
        (Some(v), _, _) => format!("{c}{}", number(v)),
        (None, Some(v), _) => format!("{c}{} (not evaluated)", number(v)),
        (None, None, Some(t)) => t.clone(),
        (None, None, None) => "—".into(),
    }
}

fn label(r: &ResultEntry) -> String {
    match r.analyte.as_deref() {
        Some(name) => {
            let mut c = name.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        }
        None if !r.loinc.is_empty() => format!("LOINC {}", r.loinc),
        None => r
            .local_code
            .as_deref()
            .and_then(|c| c.rsplit('|').next())
            .unwrap_or("result")
            .to_owned(),
    }
}

/// Results worth plotting or showing, oldest first: stored, not taken back.
fn usable(record: &PatientRecord) -> Vec<&ResultEntry> {
    let mut v: Vec<&ResultEntry> = record.results.iter().filter(|r| !r.is_retracted()).collect();
    v.sort_by(|a, b| a.when().cmp(&b.when()).then_with(|| a.result_id.cmp(&b.result_id)));
    v
}

fn series_key(r: &ResultEntry) -> &str {
    r.analyte.as_deref().unwrap_or(&r.loinc)
}

fn latest_results(record: &PatientRecord) -> Vec<ResultChip> {
    let results = usable(record);
    let mut keys: Vec<&str> = Vec::new();
    for r in results.iter().rev() {
        if !keys.contains(&series_key(r)) {
            keys.push(series_key(r));
        }
    }
    keys.into_iter()
        .take(ROW_RESULTS)
        .filter_map(|k| {
            let mut of: Vec<&&ResultEntry> = results.iter().filter(|r| series_key(r) == k).collect();
            let latest = of.pop()?;
            let (trend, trend_words) = match of.pop() {
                None => ("", ""),
                Some(prev) if latest.value > prev.value => ("↑", "rising"),
                Some(prev) if latest.value < prev.value => ("↓", "falling"),
                Some(_) => ("→", "unchanged"),
            };
            let flagged = record
                .alerts
                .iter()
                .any(|a| a.result_id == latest.result_id && a.status.is_open());
            Some(ResultChip {
                label: label(latest),
                value: shown(latest),
                unit: unit(&latest.unit),
                trend,
                trend_words,
                flagged,
            })
        })
        .collect()
}

fn rank(a: &Alert) -> (u8, std::cmp::Reverse<DateTime<Utc>>) {
    let s = match a.severity {
        Severity::Critical => 0,
        Severity::Warning => 1,
    };
    (s, std::cmp::Reverse(a.raised_at))
}

/// Where a patient is, in words: "Ward 7B, bed 4" (a bed already named "Bed 4" kept as it is).
pub fn place(record: &PatientRecord) -> String {
    let bed = record.placement.as_ref().and_then(|p| p.bed.clone());
    match (record.ward(), bed) {
        (Some(w), Some(b)) if b.to_ascii_lowercase().starts_with("bed") => format!("{w}, {b}"),
        (Some(w), Some(b)) => format!("{w}, bed {b}"),
        (Some(w), None) => w,
        (None, _) => "on no ward".to_owned(),
    }
}

/// A short name for an alert on a ward row: "Potassium high" for `critical-high:potassium`.
fn short_label(a: &Alert) -> String {
    let (kind, analyte) = a.rule.split_once(':').unwrap_or((a.rule.as_str(), ""));
    let direction = match kind {
        "critical-high" => "high",
        "critical-low" => "low",
        _ => return a.message.clone(),
    };
    let name = a.analyte.as_deref().unwrap_or(analyte);
    let mut c = name.chars();
    let name = c
        .next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default();
    format!("{name} {direction}")
}

fn alert_chips(record: &PatientRecord) -> Vec<AlertChip> {
    let mut open: Vec<&Alert> = record
        .alerts
        .iter()
        .filter(|a| {
            matches!(
                a.status,
                AlertStatus::Active | AlertStatus::Escalated | AlertStatus::Acknowledged
            )
        })
        .collect();
    open.sort_by_key(|a| rank(a));
    open.into_iter()
        .map(|a| AlertChip {
            severity: severity(a.severity),
            status: status(a.status),
            label: short_label(a),
        })
        .collect()
}

fn name(record: &PatientRecord) -> String {
    record.name.clone().unwrap_or_else(|| "(name not known)".to_owned())
}

pub fn patient_row(record: &PatientRecord, now: DateTime<Utc>) -> PatientRow {
    let p = record.placement.as_ref();
    let days = p
        .and_then(|p| p.admitted_at)
        .map(|t| (now - t).num_days().max(0).to_string())
        .unwrap_or_default();
    PatientRow {
        id: record.id.clone(),
        name: name(record),
        mrn: record.mrn().unwrap_or_default(),
        bed: p.and_then(|p| p.bed.clone()).unwrap_or_default(),
        days,
        results: latest_results(record),
        alerts: alert_chips(record),
    }
}

/// Records come ward by ward (as the board reads them).
pub fn wards(records: &[PatientRecord], now: DateTime<Utc>) -> Vec<WardView> {
    let mut out: Vec<WardView> = Vec::new();
    for r in records {
        let ward = r.ward().unwrap_or_default();
        if out.last().is_none_or(|w| w.name != ward) {
            out.push(WardView {
                name: ward,
                patients: Vec::new(),
                active_alerts: 0,
            });
        }
        if let Some(w) = out.last_mut() {
            w.active_alerts += r.alerts.iter().filter(|a| a.status == AlertStatus::Active).count();
            w.patients.push(patient_row(r, now));
        }
    }
    out
}

fn acknowledged(a: &Alert) -> (Option<String>, Option<String>) {
    match &a.acknowledged {
        Some(k) => (Some(format!("{} at {}", k.by, hhmm(k.at))), k.note.clone()),
        None => (None, None),
    }
}

/// Open alerts of these records, newest first.
pub fn feed<'a>(records: impl Iterator<Item = &'a PatientRecord>) -> Vec<FeedItem> {
    let mut items: Vec<(&PatientRecord, &Alert)> = records
        .flat_map(|r| r.alerts.iter().map(move |a| (r, a)))
        .filter(|(_, a)| a.status.is_open())
        .collect();
    items.sort_by(|(_, a), (_, b)| b.raised_at.cmp(&a.raised_at).then_with(|| a.id.cmp(&b.id)));
    items
        .into_iter()
        .map(|(r, a)| {
            let place = place(r);
            let (acknowledged, note) = acknowledged(a);
            FeedItem {
                id: a.id.clone(),
                patient_id: r.id.clone(),
                name: name(r),
                mrn: r.mrn().unwrap_or_default(),
                place,
                severity: severity(a.severity),
                status: status(a.status),
                message: a.message.clone(),
                value: format!("{} {}", number(a.value), unit(&a.unit)),
                raised: hhmm(a.raised_at),
                raised_iso: a.raised_at.to_rfc3339(),
                active: a.status == AlertStatus::Active,
                acknowledged,
                note,
            }
        })
        .collect()
}

pub fn unplaced(records: &[PatientRecord]) -> Vec<UnplacedRow> {
    records
        .iter()
        .map(|r| {
            let open: Vec<&Alert> = r.alerts.iter().filter(|a| a.status.is_open()).collect();
            let worst = if open.iter().any(|a| a.severity == Severity::Critical) {
                "critical"
            } else {
                "warning"
            };
            UnplacedRow {
                id: r.id.clone(),
                name: name(r),
                mrn: r.mrn().unwrap_or_default(),
                open_alerts: open.len(),
                worst,
            }
        })
        .collect()
}

const CHART_W: f64 = 300.0;
const CHART_H: f64 = 80.0;
const CHART_PAD: f64 = 6.0;

/// Every analyte's history, each with a small line chart.
pub fn series(record: &PatientRecord) -> Vec<SeriesView> {
    let results = usable(record);
    let mut keys: Vec<&str> = Vec::new();
    for r in &results {
        if !keys.contains(&series_key(r)) {
            keys.push(series_key(r));
        }
    }
    keys.into_iter()
        .map(|k| {
            let of: Vec<&&ResultEntry> = results.iter().filter(|r| series_key(r) == k).collect();
            // Only evaluable numbers are charted; every result is listed.
            let values: Vec<f64> = of.iter().filter_map(|r| r.value).collect();
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let span = if hi > lo { hi - lo } else { 1.0 };
            let n = values.len();
            let dots: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let x = if n > 1 {
                        CHART_PAD + (CHART_W - 2.0 * CHART_PAD) * i as f64 / (n - 1) as f64
                    } else {
                        CHART_W / 2.0
                    };
                    let y = if hi > lo {
                        CHART_H - CHART_PAD - (CHART_H - 2.0 * CHART_PAD) * (v - lo) / span
                    } else {
                        CHART_H / 2.0
                    };
                    ((x * 10.0).round() / 10.0, (y * 10.0).round() / 10.0)
                })
                .collect();
            let polyline = dots
                .iter()
                .map(|(x, y)| format!("{x},{y}"))
                .collect::<Vec<_>>()
                .join(" ");
            let first = of.first();
            SeriesView {
                label: first.map(|r| label(r)).unwrap_or_default(),
                unit: first.map(|r| unit(&r.unit)).unwrap_or_default(),
                points: of
                    .iter()
                    .rev()
                    .map(|r| PointView {
                        when: r.when().map(day_and_time).unwrap_or_default(),
                        value: shown(r),
                        status: r.status.clone(),
                        not_evaluated: r.not_evaluable.clone().filter(|_| r.reported_value.is_some()),
                    })
                    .collect(),
                polyline,
                dots,
                min: number(lo),
                max: number(hi),
            }
        })
        .collect()
}

/// Every alert the record keeps, newest first.
pub fn trail(record: &PatientRecord) -> Vec<TrailItem> {
    let mut alerts: Vec<&Alert> = record.alerts.iter().collect();
    alerts.sort_by_key(|a| std::cmp::Reverse(a.raised_at));
    alerts
        .into_iter()
        .map(|a| {
            let (acknowledged, note) = acknowledged(a);
            TrailItem {
                id: a.id.clone(),
                patient_id: record.id.clone(),
                active: a.status == AlertStatus::Active,
                raised: day_and_time(a.raised_at),
                severity: severity(a.severity),
                status: status(a.status),
                message: a.message.clone(),
                value: format!("{} {}", number(a.value), unit(&a.unit)),
                acknowledged,
                note,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_drop_spurious_digits() {
        assert_eq!(number(7.1), "7.1");
        assert_eq!(number(120.0), "120");
        assert_eq!(number(5.25), "5.25");
        assert_eq!(number(0.333333), "0.33");
    }

    #[test]
    fn micro_units_are_written_with_mu() {
        assert_eq!(unit("umol/L"), "µmol/L");
        assert_eq!(unit("ug/L"), "µg/L");
        assert_eq!(unit("mmol/L"), "mmol/L");
        assert_eq!(unit("U/L"), "U/L");
    }

    #[test]
    fn beds_sort_by_their_number() {
        let mut beds = vec!["Bed 10", "Bed 2", "Side room 1", "Bed 1A"];
        beds.sort_by_key(|b| natural(b));
        assert_eq!(beds, ["Bed 1A", "Bed 2", "Bed 10", "Side room 1"]);
    }
}
