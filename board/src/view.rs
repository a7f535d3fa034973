//! What the page shows, computed from patient records: plain strings and numbers, so that the
//! templates only lay them out. Pure functions of (records, now).
//!
//! Alerts are shown by what they are: a critical limit by its message ("potassium 7.1 mmol/L is
//! at or above the critical limit 6.5"), an AKI alert by its stage ("AKI stage 2", "Possible AKI
//! (no baseline)") with the message beneath. Alerts nobody has acknowledged (active or
//! escalated) offer Acknowledge; escalated ones are marked and come first.

use chrono::{DateTime, Utc};
use wardwatch_domain::aki::Rrt;
use wardwatch_domain::alert::{Alert, AlertStatus, AuditAction, Severity};
use wardwatch_domain::decide::alerting::AKI_RULE;
use wardwatch_domain::record::{PatientRecord, ResultEntry};

/// How many analytes a ward row shows (the most recently reported first).
const ROW_RESULTS: usize = 4;

pub struct WardView {
    pub name: String,
    pub patients: Vec<PatientRow>,
    /// Alerts nobody has acknowledged yet (active or escalated).
    pub unacknowledged: usize,
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
    /// Unique on the page (an alert can be shown twice: in the feed and under "on no ward"):
    /// names the note field of its Acknowledge form.
    pub form_id: String,
    pub name: String,
    pub mrn: String,
    pub place: String,
    pub severity: &'static str,
    pub status: &'static str,
    /// What it is: "AKI stage 2", or a critical limit's message.
    pub label: String,
    /// The message, when the label is not it (AKI).
    pub detail: Option<String>,
    pub value: String,
    /// To be telephoned (RCPath).
    pub telephone: bool,
    pub escalated: bool,
    pub raised: String,
    pub raised_iso: String,
    /// Nobody has acknowledged it yet (active or escalated): Acknowledge is offered.
    pub needs_ack: bool,
    pub acknowledged: Option<String>,
    pub note: Option<String>,
}

/// A patient on no ward with alerts nobody has acknowledged.
pub struct UnplacedRow {
    pub id: String,
    pub name: String,
    pub mrn: String,
    /// How many of the patient's alerts need acknowledging.
    pub to_acknowledge: usize,
    pub worst: &'static str,
    /// Discharged: the ward left and when ("Ward 7B, 28 Nov 09:00"), when known.
    pub left: Option<String>,
    /// The alerts that need acknowledging, each with its Acknowledge form.
    pub alerts: Vec<FeedItem>,
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
    pub form_id: String,
    /// Nobody has acknowledged it yet (active or escalated): Acknowledge is offered.
    pub needs_ack: bool,
    pub raised: String,
    pub severity: &'static str,
    pub status: &'static str,
    pub label: String,
    pub detail: Option<String>,
    pub value: String,
    pub telephone: bool,
    pub escalated: bool,
    /// "escalated 28 Nov 10:35", "review by 28 Nov 10:35": when it was or will be escalated.
    pub review: Option<String>,
    pub acknowledged: Option<String>,
    pub note: Option<String>,
    /// Resolved or withdrawn, and why: "Withdrawn: the laboratory retracted a result it rested on".
    pub closed: Option<String>,
    /// The figures it rests on, one line each.
    pub evidence: Vec<String>,
    /// The results behind it, one line each.
    pub results: Vec<String>,
}

/// One entry of the alert audit trail.
pub struct AuditRow {
    pub when: String,
    pub when_iso: String,
    pub alert: String,
    pub action: &'static str,
    pub by: String,
    pub status: &'static str,
    pub detail: String,
}

/// Renal replacement therapy as recorded, in words, and the choices the page offers.
pub struct RrtView {
    pub line: String,
    /// `on-rrt`, `not-on-rrt`, `unknown`, or empty when nothing is recorded.
    pub current: &'static str,
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

pub fn action(a: AuditAction) -> &'static str {
    match a {
        AuditAction::Raised => "raised",
        AuditAction::Updated => "updated",
        AuditAction::Upgraded => "upgraded",
        AuditAction::Acknowledged => "acknowledged",
        AuditAction::Escalated => "escalated",
        AuditAction::Resolved => "resolved",
        AuditAction::Withdrawn => "withdrawn",
        AuditAction::Reopened => "reopened",
    }
}

/// What an alert is, short: "AKI stage 2", "Possible AKI (no baseline)", else its message.
pub fn alert_label(a: &Alert) -> String {
    match (a.rule.as_str(), a.stage) {
        (AKI_RULE, Some(0)) => "Possible AKI (no baseline)".to_owned(),
        (AKI_RULE, Some(n)) => format!("AKI stage {n}"),
        (AKI_RULE, None) => "AKI".to_owned(),
        _ => a.message.clone(),
    }
}

/// The message, when the label is not it.
fn alert_detail(a: &Alert) -> Option<String> {
    (a.rule == AKI_RULE).then(|| a.message.clone())
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

pub fn day_and_time(t: DateTime<Utc>) -> String {
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

/// Where a patient is, in words: "Ward 7B, bed 4" (a bed already named "Bed 4" kept as it is),
/// "discharged", "on no ward".
pub fn place(record: &PatientRecord) -> String {
    let bed = record.placement.as_ref().and_then(|p| p.bed.clone());
    match (record.ward(), bed) {
        (Some(w), Some(b)) if b.to_ascii_lowercase().starts_with("bed") => format!("{w}, {b}"),
        (Some(w), Some(b)) => format!("{w}, bed {b}"),
        (Some(w), None) => w,
        (None, _) if record.discharged() => "discharged".to_owned(),
        (None, _) => "on no ward".to_owned(),
    }
}

/// A short name for an alert on a ward row: "Potassium high" for `critical-high:potassium`.
fn short_label(a: &Alert) -> String {
    let (kind, analyte) = a.rule.split_once(':').unwrap_or((a.rule.as_str(), ""));
    let direction = match kind {
        "critical-high" => "high",
        "critical-low" => "low",
        _ => return alert_label(a),
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
    let mut open: Vec<&Alert> = record.alerts.iter().filter(|a| a.status.is_open()).collect();
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
                unacknowledged: 0,
            });
        }
        if let Some(w) = out.last_mut() {
            w.unacknowledged += r.alerts.iter().filter(|a| a.status.needs_acknowledgement()).count();
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

/// The feed's order: escalated first, then the newest raised first.
pub fn feed_order(a: &Alert, b: &Alert) -> std::cmp::Ordering {
    let escalated = |x: &Alert| x.status != AlertStatus::Escalated;
    escalated(a)
        .cmp(&escalated(b))
        .then_with(|| b.raised_at.cmp(&a.raised_at))
        .then_with(|| a.id.cmp(&b.id))
}

fn feed_item(r: &PatientRecord, a: &Alert, form_prefix: &str) -> FeedItem {
    let (acknowledged, note) = acknowledged(a);
    FeedItem {
        id: a.id.clone(),
        patient_id: r.id.clone(),
        form_id: format!("{form_prefix}{}", a.id),
        name: name(r),
        mrn: r.mrn().unwrap_or_default(),
        place: place(r),
        severity: severity(a.severity),
        status: status(a.status),
        label: alert_label(a),
        detail: alert_detail(a),
        value: format!("{} {}", number(a.value), unit(&a.unit)),
        telephone: a.telephone,
        escalated: a.status == AlertStatus::Escalated,
        raised: hhmm(a.raised_at),
        raised_iso: a.raised_at.to_rfc3339(),
        needs_ack: a.status.needs_acknowledgement(),
        acknowledged,
        note,
    }
}

/// Open alerts of these records: escalated first, then newest first.
pub fn feed<'a>(records: impl Iterator<Item = &'a PatientRecord>) -> Vec<FeedItem> {
    let mut items: Vec<(&PatientRecord, &Alert)> = records
        .flat_map(|r| r.alerts.iter().map(move |a| (r, a)))
        .filter(|(_, a)| a.status.is_open())
        .collect();
    items.sort_by(|(_, a), (_, b)| feed_order(a, b));
    items.into_iter().map(|(r, a)| feed_item(r, a, "")).collect()
}

/// The ward a discharged patient left, and when: the finished encounter that ended last.
fn left(record: &PatientRecord) -> Option<String> {
    let e = record
        .encounters
        .iter()
        .filter(|e| e.status == "finished")
        .max_by_key(|e| e.end.or(e.start))?;
    match (e.ward.as_deref(), e.end) {
        (Some(w), Some(t)) => Some(format!("left {w}, {}", day_and_time(t))),
        (Some(w), None) => Some(format!("left {w}")),
        (None, Some(t)) => Some(format!("discharged {}", day_and_time(t))),
        (None, None) => None,
    }
}

fn unplaced_row(r: &PatientRecord) -> UnplacedRow {
    let mut waiting: Vec<&Alert> = r.alerts.iter().filter(|a| a.status.needs_acknowledgement()).collect();
    waiting.sort_by(|a, b| feed_order(a, b));
    let worst = if waiting.iter().any(|a| a.severity == Severity::Critical) {
        "critical"
    } else {
        "warning"
    };
    UnplacedRow {
        id: r.id.clone(),
        name: name(r),
        mrn: r.mrn().unwrap_or_default(),
        to_acknowledge: waiting.len(),
        worst,
        left: left(r),
        alerts: waiting.into_iter().map(|a| feed_item(r, a, "nw-")).collect(),
    }
}

/// Patients on no ward with alerts nobody has acknowledged: (discharged — needs follow-up, not
/// admitted yet), each in the order given.
pub fn unplaced(records: &[PatientRecord]) -> (Vec<UnplacedRow>, Vec<UnplacedRow>) {
    let (discharged, rest): (Vec<&PatientRecord>, Vec<&PatientRecord>) = records.iter().partition(|r| r.discharged());
    (
        discharged.into_iter().map(unplaced_row).collect(),
        rest.into_iter().map(unplaced_row).collect(),
    )
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

/// The figures an alert rests on, one line each.
pub fn evidence(a: &Alert) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(limit) = a.evidence.limit {
        out.push(format!("Critical limit {} {}", number(limit), unit(&a.unit)));
    }
    if let Some(aki) = &a.evidence.aki {
        let mut parts = vec![format!("C1 {} µmol/L", number(aki.c1))];
        if let Some((rv1, _)) = &aki.rv1 {
            parts.push(format!("RV1 {} µmol/L", number(*rv1)));
        }
        if let Some(rv2) = aki.rv2 {
            parts.push(format!("RV2 {} µmol/L", number(rv2)));
        }
        if let Some(ratio) = aki.ratio {
            parts.push(format!("ratio {ratio:.2}"));
        }
        if let Some(d) = aki.d48 {
            parts.push(format!("D48 {} µmol/L", number(d)));
        }
        parts.push(format!(
            "upper reference limit {} µmol/L",
            number(aki.upper_reference_limit)
        ));
        out.push(parts.join(" · "));
        out.push(format!("Rule {}", aki.rule));
        out.extend(aki.notes.iter().cloned());
    }
    if let Some(k) = a.evidence.potassium {
        out.push(format!("Potassium {} mmol/L", number(k)));
    }
    out
}

/// The results behind an alert, one line each ("Potassium 7.1 mmol/L · 27 Nov 09:30 · final").
fn implicated(record: &PatientRecord, a: &Alert) -> Vec<String> {
    a.implicated()
        .into_iter()
        .map(|id| match record.result(id) {
            Some(r) => {
                let when = r.when().map(day_and_time).unwrap_or_default();
                format!("{} {} {} · {when} · {}", label(r), shown(r), unit(&r.unit), r.status)
            }
            None => format!("result {id} (no longer kept)"),
        })
        .collect()
}

/// Why an alert closed, in words: "Withdrawn 28 Nov 10:02: the laboratory retracted a result
/// it rested on".
fn closed(a: &Alert) -> Option<String> {
    let c = a.closed.as_ref()?;
    let what = match a.status {
        AlertStatus::Resolved => "Resolved",
        AlertStatus::Withdrawn => "Withdrawn",
        _ => "Closed",
    };
    Some(format!("{what} {}: {}", day_and_time(c.at), c.reason))
}

/// Every alert the record keeps: escalated first, then newest first.
pub fn trail(record: &PatientRecord) -> Vec<TrailItem> {
    let mut alerts: Vec<&Alert> = record.alerts.iter().collect();
    alerts.sort_by(|a, b| feed_order(a, b));
    alerts
        .into_iter()
        .map(|a| {
            let (acknowledged, note) = acknowledged(a);
            let review = match (a.escalated_at, a.review_by) {
                (Some(t), _) => Some(format!("escalated {}", day_and_time(t))),
                (None, Some(t)) if a.status.needs_acknowledgement() => {
                    Some(format!("to acknowledge by {}", day_and_time(t)))
                }
                _ => None,
            };
            TrailItem {
                id: a.id.clone(),
                patient_id: record.id.clone(),
                form_id: a.id.clone(),
                needs_ack: a.status.needs_acknowledgement(),
                raised: day_and_time(a.raised_at),
                severity: severity(a.severity),
                status: status(a.status),
                label: alert_label(a),
                detail: alert_detail(a),
                value: format!("{} {}", number(a.value), unit(&a.unit)),
                telephone: a.telephone,
                escalated: a.status == AlertStatus::Escalated,
                review,
                acknowledged,
                note,
                closed: closed(a),
                evidence: evidence(a),
                results: implicated(record, a),
            }
        })
        .collect()
}

/// The alert audit trail, newest first.
pub fn audit(record: &PatientRecord) -> Vec<AuditRow> {
    record
        .audit
        .iter()
        .rev()
        .map(|e| AuditRow {
            when: day_and_time(e.at),
            when_iso: e.at.to_rfc3339(),
            alert: record
                .alerts
                .iter()
                .find(|a| a.id == e.alert_id)
                .map(alert_label)
                .unwrap_or_else(|| "(an alert no longer kept)".to_owned()),
            action: action(e.action),
            by: e.by.clone(),
            status: status(e.status),
            detail: e.detail.clone(),
        })
        .collect()
}

/// Renal replacement therapy as recorded.
pub fn rrt(record: &PatientRecord) -> RrtView {
    match &record.rrt {
        None => RrtView {
            line: "not recorded (assumed none)".to_owned(),
            current: "",
        },
        Some(r) => {
            let (what, current) = match r.rrt {
                Rrt::OnRrt => ("on RRT", "on-rrt"),
                Rrt::NotOnRrt => ("not on RRT", "not-on-rrt"),
                Rrt::Unknown => ("not known (assumed none)", "unknown"),
            };
            RrtView {
                line: format!("{what} (recorded by {} at {})", r.by, day_and_time(r.at)),
                current,
            }
        }
    }
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
    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).expect("time")
    }

    fn alert(id: &str, rule: &str, stage: Option<u8>, status: AlertStatus, raised: i64) -> Alert {
        Alert {
            id: id.into(),
            rule: rule.into(),
            severity: Severity::Critical,
            stage,
            status,
            message: format!("message of {id}"),
            result_id: format!("r-{id}"),
            results: Vec::new(),
            loinc: "2823-3".into(),
            analyte: Some("potassium".into()),
            value: 7.1,
            unit: "mmol/L".into(),
            evidence: Default::default(),
            telephone: true,
            raised_at: at(raised),
            updated_at: None,
            review_by: None,
            escalated_at: None,
            acknowledged: None,
            closed: None,
        }
    }

    fn encounter(status: &str) -> wardwatch_domain::record::EncounterState {
        wardwatch_domain::record::EncounterState {
            id: format!("e-{status}"),
            status: status.into(),
            class: Some("IMP".into()),
            ward: Some("Ward 7B".into()),
            bed: None,
            start: Some(at(0)),
            end: Some(at(60)),
            source_version: None,
            digest: String::new(),
            resource_key: String::new(),
            version: None,
            deleted: false,
        }
    }

    #[test]
    fn aki_alerts_are_labelled_by_stage_and_critical_limits_by_their_message() {
        assert_eq!(
            alert_label(&alert("a", "aki", Some(2), AlertStatus::Active, 0)),
            "AKI stage 2"
        );
        assert_eq!(
            alert_label(&alert("a", "aki", Some(0), AlertStatus::Active, 0)),
            "Possible AKI (no baseline)"
        );
        let k = alert("k", "critical-high:potassium", None, AlertStatus::Active, 0);
        assert_eq!(alert_label(&k), "message of k");
        assert_eq!(alert_detail(&k), None);
        assert_eq!(
            alert_detail(&alert("a", "aki", Some(1), AlertStatus::Active, 0)).as_deref(),
            Some("message of a")
        );
    }

    #[test]
    fn the_feed_puts_escalated_alerts_first_then_the_newest_and_offers_acknowledge_on_both() {
        let mut r = PatientRecord::new("p", at(0));
        r.alerts = vec![
            alert(
                "old-escalated",
                "critical-high:potassium",
                None,
                AlertStatus::Escalated,
                1,
            ),
            alert("newest", "critical-high:potassium", None, AlertStatus::Active, 9),
            alert("acked", "critical-high:potassium", None, AlertStatus::Acknowledged, 5),
            alert("gone", "critical-high:potassium", None, AlertStatus::Resolved, 10),
        ];
        let feed = feed(std::iter::once(&r));
        let ids: Vec<&str> = feed.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            ["old-escalated", "newest", "acked"],
            "closed alerts are not in the feed"
        );
        let offered: Vec<bool> = feed.iter().map(|f| f.needs_ack).collect();
        assert_eq!(offered, [true, true, false]);
        assert!(feed[0].escalated && !feed[1].escalated);
    }

    #[test]
    fn patients_on_no_ward_split_into_discharged_and_not_admitted_with_what_awaits_acknowledgement() {
        let mut discharged = PatientRecord::new("gone-home", at(0));
        discharged.encounters = vec![encounter("finished")];
        discharged.alerts = vec![
            alert("a1", "critical-high:potassium", None, AlertStatus::Active, 1),
            alert("a2", "aki", Some(2), AlertStatus::Escalated, 2),
            alert("a3", "critical-low:sodium", None, AlertStatus::Acknowledged, 3),
        ];
        let mut early = PatientRecord::new("results-first", at(0));
        early.alerts = vec![alert("b1", "critical-high:potassium", None, AlertStatus::Active, 1)];
        let (d, n) = unplaced(&[discharged, early]);
        assert_eq!((d.len(), n.len()), (1, 1));
        assert_eq!(d[0].id, "gone-home");
        assert_eq!(d[0].to_acknowledge, 2, "the acknowledged one is not counted");
        assert_eq!(d[0].alerts[0].id, "a2", "escalated first");
        assert_eq!(d[0].left.as_deref(), Some("left Ward 7B, 15 Jan 09:00"));
        assert!(
            d[0].alerts.iter().all(|a| a.form_id.starts_with("nw-")),
            "its forms are told apart from the feed's"
        );
        assert_eq!(n[0].id, "results-first");
    }

    #[test]
    fn the_trail_says_why_an_alert_closed_and_what_it_rests_on() {
        let mut r = PatientRecord::new("p", at(0));
        let mut a = alert("k", "critical-high:potassium", None, AlertStatus::Withdrawn, 0);
        a.evidence.limit = Some(6.5);
        a.closed = Some(wardwatch_domain::alert::Closure {
            at: at(30),
            reason: "the laboratory retracted a result it rested on".into(),
            result_id: None,
        });
        r.alerts.push(a);
        let t = trail(&r);
        assert_eq!(
            t[0].closed.as_deref(),
            Some("Withdrawn 15 Jan 08:30: the laboratory retracted a result it rested on")
        );
        assert_eq!(t[0].evidence, ["Critical limit 6.5 mmol/L"]);
        assert_eq!(t[0].results, ["result r-k (no longer kept)"]);
        assert!(!t[0].needs_ack);
    }

    #[test]
    fn renal_replacement_therapy_not_recorded_is_said_to_be_assumed_none() {
        let mut r = PatientRecord::new("p", at(0));
        assert_eq!(rrt(&r).line, "not recorded (assumed none)");
        r.rrt = Some(wardwatch_domain::record::RrtRecord {
            rrt: Rrt::OnRrt,
            by: "Dr Renal".into(),
            at: at(0),
        });
        let v = rrt(&r);
        assert_eq!(
            (v.line.as_str(), v.current),
            ("on RRT (recorded by Dr Renal at 15 Jan 08:00)", "on-rrt")
        );
    }
}
