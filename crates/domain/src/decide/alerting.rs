//! Alerts as a projection of the patient's result history, kept in step with it.
//!
//! A stored result is evaluated by re-reading the history of every rule its analyte touches
//! (`critical-high:<analyte>`, `critical-low:<analyte>`, and `aki` for creatinine and potassium):
//! 1. **Findings**: each result the laboratory stands by (final, amended, corrected; never a
//!    preliminary, registered, unknown, retracted or not-evaluable one), in collection-time
//!    order, either meets the rule (a finding), clears it (evaluable and plainly not meeting it),
//!    or says nothing (a bound such as `>5` for a high limit). AKI: every creatinine is assessed
//!    again against all the others ([`crate::aki::assess`]), so a late, older result re-evaluates
//!    the newer ones whose windows it falls in.
//! 2. **Episodes**: a finding within the rule's repeat window of the episode's last finding joins
//!    that episode (suppression); a clearing result ends it (resolved). An episode's headline is
//!    its most severe finding (stage, then severity), the latest of equals.
//! 3. **Reconcile** with the alerts the record holds: an episode keeps the alert that shares a
//!    result with it (the earliest raised); one with none raises a new alert whose id derives
//!    from (patient, rule, the result being evaluated — or the episode's first result). An alert
//!    no episode keeps, while its results are still in the history, is withdrawn with the reason.
//!
//! Each change is one audit entry and one event: raised, updated (another result joined, or the
//! figures changed), upgraded (higher stage or severity: active again, published again, a new
//! review time), resolved, withdrawn, reopened (what closed it was retracted). Evaluating the
//! same history again changes nothing, so a redelivered result never changes anything.
//!
//! What depends on arrival: which result's id an alert carries (the one that raised it), and
//! alerts raised on the evidence at hand and withdrawn or merged when older results came in
//! later. Once every result is in, the alerts that are not withdrawn are the same — rule,
//! stage, severity, results, status — in whatever order the results arrived.

use std::cmp::Ordering;
use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};

use crate::aki::{self, AkiPatient, Creatinine, Outcome};
use crate::alert::{Acknowledgement, Alert, AlertStatus, AuditAction, AuditEntry, Closure, Evidence, Severity};
use crate::events::EventType;
use crate::ids;
use crate::record::{Decision, PatientRecord, ResultEntry, RrtRecord, finish};
use crate::rules::{CriticalLimits, critical_limits};

/// The rule name of AKI alerts.
pub const AKI_RULE: &str = "aki";
/// Who the audit trail names for the rules' own changes.
pub const BY_RULES: &str = "evaluate-alert";
/// Who the audit trail names for escalations.
pub const BY_ESCALATION: &str = "escalation";

/// The id of the alert a rule raises for a patient on a result: the same every time.
pub fn alert_id(patient_id: &str, rule: &str, result_id: &str) -> String {
    ids::derived("alert", &[patient_id, rule, result_id])
}

/// A result the laboratory stands by.
fn stands_by(r: &ResultEntry) -> bool {
    matches!(r.status.as_str(), "final" | "amended" | "corrected")
}

fn by_time(a: &&ResultEntry, b: &&ResultEntry) -> Ordering {
    a.when().cmp(&b.when()).then_with(|| a.result_id.cmp(&b.result_id))
}

fn minutes(m: u32) -> Duration {
    Duration::minutes(i64::from(m))
}

/// A number as people write it: at most two decimals, no trailing zeros.
fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// What an alert shows: its most severe finding.
#[derive(Debug, Clone, PartialEq)]
struct Headline {
    result_id: String,
    loinc: String,
    analyte: Option<String>,
    value: f64,
    unit: String,
    stage: Option<u8>,
    severity: Severity,
    message: String,
    evidence: Evidence,
    telephone: bool,
    review: Option<Duration>,
}

impl Headline {
    fn of(r: &ResultEntry) -> Self {
        Self {
            result_id: r.result_id.clone(),
            loinc: r.loinc.clone(),
            analyte: r.analyte.clone(),
            value: r.evaluable().unwrap_or_default(),
            unit: r.unit.clone(),
            stage: None,
            severity: Severity::Critical,
            message: String::new(),
            evidence: Evidence::default(),
            telephone: false,
            review: None,
        }
    }

    fn level(&self) -> (u8, u8) {
        (self.stage.unwrap_or(0), self.severity.rank())
    }
}

/// What one result says about a rule.
enum Step {
    Finding(Box<Headline>, Duration),
    Clears,
    Silent,
}

/// One episode of a rule, as the history shows it.
struct Episode {
    results: Vec<String>,
    last: Option<DateTime<Utc>>,
    head: Headline,
    resolved_by: Option<String>,
}

fn episodes(steps: Vec<(&ResultEntry, Step)>) -> Vec<Episode> {
    let mut out: Vec<Episode> = Vec::new();
    for (r, step) in steps {
        match step {
            Step::Finding(head, repeat) => {
                let joins = out.last().is_some_and(|e| {
                    e.resolved_by.is_none()
                        && match (e.last, r.when()) {
                            (Some(last), Some(t)) => t - last <= repeat,
                            _ => true,
                        }
                });
                match out.last_mut().filter(|_| joins) {
                    Some(e) => {
                        e.results.push(r.result_id.clone());
                        e.last = r.when().or(e.last);
                        if head.level() >= e.head.level() {
                            e.head = *head;
                        }
                    }
                    None => out.push(Episode {
                        results: vec![r.result_id.clone()],
                        last: r.when(),
                        head: *head,
                        resolved_by: None,
                    }),
                }
            }
            Step::Clears => {
                if let Some(e) = out.last_mut().filter(|e| e.resolved_by.is_none()) {
                    e.resolved_by = Some(r.result_id.clone());
                }
            }
            Step::Silent => {}
        }
    }
    out
}

fn age_years(record: &PatientRecord, r: &ResultEntry) -> Option<u32> {
    record
        .birth_date
        .zip(r.when())
        .and_then(|(birth, when)| aki::Age::at(birth, when))
        .map(|a| a.years)
}

/// A critical-limit rule (`critical-high:potassium`) over the analyte's history.
fn critical_steps<'a>(
    record: &'a PatientRecord,
    rule: &str,
    analyte: &str,
    limits: &CriticalLimits,
) -> Vec<(&'a ResultEntry, Step)> {
    let high = rule.starts_with("critical-high:");
    let mut history: Vec<&ResultEntry> = record
        .results
        .iter()
        .filter(|r| r.analyte.as_deref() == Some(analyte) && stands_by(r) && r.evaluable().is_some())
        .collect();
    history.sort_by(by_time);
    // Whether the previous result met the rule (for limits that alert on new findings only).
    let mut previous_met = false;
    history
        .into_iter()
        .map(|r| {
            let age = age_years(record, r);
            let Some(limit) = limits.limit_for(analyte, &r.unit, age) else {
                previous_met = false;
                return (r, Step::Silent);
            };
            let finding = critical_limits(r, limits, age).into_iter().find(|f| f.rule == rule);
            let known = std::mem::replace(&mut previous_met, finding.is_some());
            if finding.is_some() && known && limit.new_finding_only {
                return (r, Step::Silent);
            }
            if let Some(f) = finding {
                let mut head = Headline::of(r);
                head.severity = f.severity;
                head.message = f.message;
                head.evidence.limit = f.limit;
                head.telephone = true;
                head.review = Some(minutes(limit.review_minutes.unwrap_or(limits.review_minutes)));
                let repeat = minutes(limit.repeat_minutes.unwrap_or(limits.repeat_minutes));
                return (r, Step::Finding(Box::new(head), repeat));
            }
            // Only a value that plainly does not meet the rule clears it: `>7` says nothing
            // about a high limit, nor `<7` when the limit is 6.5 (it may be 6.8).
            let v = r.evaluable().unwrap_or_default();
            let plain = match (r.comparator.as_deref(), high) {
                (Some(">" | ">="), true) | (Some("<" | "<="), false) => false,
                (Some("<"), true) => limit.high.is_some_and(|h| v <= h),
                (Some("<="), true) => limit.high.is_some_and(|h| v < h),
                (Some(">"), false) => limit.low.is_some_and(|l| v >= l),
                (Some(">="), false) => limit.low.is_some_and(|l| v > l),
                _ => true,
            };
            let limited = if high {
                limit.high.is_some()
            } else {
                limit.low.is_some()
            };
            (r, if plain && limited { Step::Clears } else { Step::Silent })
        })
        .collect()
}

/// The creatinine results AKI reads, in time order, and the same as the algorithm's input.
fn creatinine_history(record: &PatientRecord) -> (Vec<&ResultEntry>, Vec<Creatinine>) {
    let mut history: Vec<&ResultEntry> = record
        .results
        .iter()
        .filter(|r| r.analyte.as_deref() == Some("creatinine") && stands_by(r) && r.evaluable().is_some())
        // A bound (`<18`) is no creatinine value: neither C1 nor a baseline.
        .filter(|r| r.when().is_some() && r.unit == "umol/L" && r.comparator.is_none())
        .collect();
    history.sort_by(by_time);
    let all: Vec<Creatinine> = history
        .iter()
        .filter_map(|r| {
            Some(Creatinine {
                result_id: r.result_id.clone(),
                at: r.when()?,
                umol_per_l: r.evaluable()?,
            })
        })
        .collect();
    (history, all)
}

/// The patient as the AKI algorithm sees them when `c1_at` was taken.
fn aki_patient(record: &PatientRecord, c1_at: DateTime<Utc>) -> AkiPatient {
    let female = match record.gender.as_deref() {
        Some("female") => Some(true),
        Some("male") => Some(false),
        _ => None,
    };
    let age = record.birth_date.and_then(|b| aki::Age::at(b, c1_at));
    AkiPatient {
        age,
        upper_reference_limit: aki::default_upper_reference_limit(age, female),
        rrt: record.rrt(),
    }
}

/// The AKI rule: every creatinine assessed against all the others.
fn aki_steps<'a>(record: &'a PatientRecord, limits: &CriticalLimits) -> Vec<(&'a ResultEntry, Step)> {
    let rules = &limits.aki;
    let (history, all) = creatinine_history(record);
    let mut potassium: Vec<&ResultEntry> = record
        .results
        .iter()
        .filter(|r| r.analyte.as_deref() == Some("potassium") && stands_by(r) && r.evaluable().is_some())
        .filter(|r| r.when().is_some() && !matches!(r.comparator.as_deref(), Some("<" | "<=")))
        .collect();
    potassium.sort_by(by_time);
    history
        .into_iter()
        .zip(all.iter())
        .map(|(r, c1)| {
            let a = aki::assess(c1, &all, &aki_patient(record, c1.at));
            let mut head = Headline::of(r);
            let step = match a.outcome {
                Outcome::Warning(stage) => {
                    let k = potassium
                        .iter()
                        .rev()
                        .find(|k| {
                            k.when()
                                .is_some_and(|t| t <= c1.at && c1.at - t <= minutes(rules.potassium_window_minutes))
                        })
                        .and_then(|k| k.evaluable());
                    let telephone = stage >= aki::Stage::Two || k.is_some_and(|k| k > rules.telephone_potassium_above);
                    let basis = match (a.ratio, a.d48) {
                        (Some(ratio), _) if ratio >= 1.5 => format!("{} × the baseline", num(ratio)),
                        (_, Some(d)) => format!("a rise of {} µmol/L in 48 h", num(d)),
                        _ => a.rule.clone(),
                    };
                    head.stage = Some(stage as u8);
                    head.severity = if telephone { Severity::Critical } else { Severity::Warning };
                    head.telephone = telephone;
                    head.message = format!(
                        "AKI warning stage {}: creatinine {} µmol/L, {basis}{}",
                        stage as u8,
                        num(c1.umol_per_l),
                        if telephone { " (telephone: RCPath)" } else { "" }
                    );
                    head.evidence.potassium = k;
                    head.review = if telephone {
                        Some(minutes(rules.review_minutes_telephoned))
                    } else {
                        rules.review_minutes_stage_1.map(minutes)
                    };
                    Step::Finding(Box::new(head), minutes(rules.repeat_minutes))
                }
                Outcome::PossibleAkiNoBaseline => {
                    head.stage = Some(0);
                    head.severity = Severity::Warning;
                    head.message = format!(
                        "Possible AKI, no baseline: creatinine {} µmol/L is above the upper reference limit {} µmol/L and there is no result in the previous 365 days (for clinical review)",
                        num(c1.umol_per_l),
                        num(a.upper_reference_limit)
                    );
                    head.review = rules.review_minutes_no_baseline.map(minutes);
                    Step::Finding(Box::new(head), minutes(rules.repeat_minutes))
                }
                Outcome::None => Step::Clears,
                Outcome::NotApplicable => Step::Silent,
            };
            if let Step::Finding(h, _) = &step {
                let mut h = h.clone();
                h.evidence.aki = Some(a);
                return (r, Step::Finding(h, minutes(rules.repeat_minutes)));
            }
            (r, step)
        })
        .collect()
}

/// One change to one alert: its audit entry and its event.
struct Change {
    kind: EventType,
    entry: AuditEntry,
    analyte: Option<String>,
}

fn change(
    kind: EventType,
    action: AuditAction,
    a: &Alert,
    by: &str,
    result_id: Option<&str>,
    detail: String,
    now: DateTime<Utc>,
) -> Change {
    Change {
        kind,
        entry: AuditEntry {
            at: now,
            alert_id: a.id.clone(),
            action,
            by: by.to_owned(),
            status: a.status,
            severity: a.severity,
            stage: a.stage,
            result_id: result_id.map(str::to_owned),
            detail,
        },
        analyte: a.analyte.clone(),
    }
}

fn show(a: &mut Alert, head: &Headline, results: &[String]) {
    a.results = results.to_vec();
    a.stage = head.stage;
    a.severity = head.severity;
    a.message = head.message.clone();
    a.loinc = head.loinc.clone();
    a.analyte = head.analyte.clone();
    a.value = head.value;
    a.unit = head.unit.clone();
    a.evidence = head.evidence.clone();
    a.telephone = head.telephone;
}

/// An id for a new alert of `rule` on this episode: derived from the result being evaluated if
/// it is in the episode, else from the episode's first result — unless an alert of that id is
/// already kept (the result's own alert since matched to another episode), then from the next
/// result, then with a counter. A withdrawn alert of the id that nothing claimed is reinstated.
fn fresh_id(
    r: &PatientRecord,
    rule: &str,
    e: &Episode,
    trigger: Option<&str>,
    claimed: &HashSet<String>,
) -> (String, String) {
    let mut firsts: Vec<&str> = trigger
        .filter(|t| e.results.iter().any(|x| x == t))
        .into_iter()
        .collect();
    firsts.extend(e.results.iter().map(String::as_str));
    let free = |id: &str| {
        r.alerts
            .iter()
            .all(|a| a.id != id || a.status == AlertStatus::Withdrawn && !claimed.contains(&a.id))
    };
    for first in &firsts {
        let id = alert_id(&r.id, rule, first);
        if free(&id) {
            return (id, (*first).to_owned());
        }
    }
    let first = firsts[0];
    let mut n = 2u32;
    loop {
        let id = ids::derived("alert", &[&r.id, rule, first, &n.to_string()]);
        if free(&id) {
            return (id, first.to_owned());
        }
        n += 1;
    }
}

/// Bring the record's alerts of `rule` in step with the episodes its history shows.
fn reconcile(
    r: &mut PatientRecord,
    rule: &str,
    found: Vec<Episode>,
    trigger: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<Change> {
    let held: HashSet<String> = r.results.iter().map(|x| x.result_id.clone()).collect();
    let retracted: HashSet<String> = r
        .results
        .iter()
        .filter(|x| x.is_retracted())
        .map(|x| x.result_id.clone())
        .collect();
    let trigger_at = trigger.and_then(|t| r.result(t)).and_then(ResultEntry::when);
    let mut claimed: HashSet<String> = HashSet::new();
    // Each episode's alert, with the episode's results: where an alert no episode keeps went.
    let mut kept: Vec<(String, Vec<String>)> = Vec::new();
    let mut changes = Vec::new();
    for e in &found {
        let shares = |a: &Alert| a.implicated().iter().any(|x| e.results.iter().any(|y| y == x));
        let (new_id, first) = fresh_id(r, rule, e, trigger, &claimed);
        let at = r
            .alerts
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                a.rule == rule && a.status != AlertStatus::Withdrawn && !claimed.contains(&a.id) && shares(a)
            })
            .min_by(|(_, a), (_, b)| a.raised_at.cmp(&b.raised_at).then_with(|| a.id.cmp(&b.id)))
            .map(|(i, _)| i)
            .or_else(|| r.alerts.iter().position(|a| a.id == new_id));
        let review_by = e.head.review.map(|d| now + d);
        // An episode that is over and holds no alert is raised (and resolved at once) only when
        // the result being evaluated could have made it: it is in it, or older than its last
        // finding (a late baseline). An old episode whose alert the record no longer keeps is
        // not raised again by every newer result.
        let could_have_made_it = trigger.is_some_and(|t| e.results.iter().any(|x| x == t))
            || matches!((trigger_at, e.last), (Some(t), Some(last)) if t <= last);
        if at.is_none() && e.resolved_by.is_some() && !could_have_made_it {
            continue;
        }
        let Some(i) = at else {
            let mut a = Alert {
                id: new_id,
                rule: rule.to_owned(),
                severity: e.head.severity,
                stage: None,
                status: AlertStatus::Active,
                message: String::new(),
                result_id: first.clone(),
                results: Vec::new(),
                loinc: String::new(),
                analyte: None,
                value: 0.0,
                unit: String::new(),
                evidence: Evidence::default(),
                telephone: false,
                raised_at: now,
                updated_at: None,
                review_by,
                escalated_at: None,
                acknowledged: None,
                closed: None,
            };
            show(&mut a, &e.head, &e.results);
            changes.push(change(
                EventType::AlertRaised,
                AuditAction::Raised,
                &a,
                BY_RULES,
                Some(&first),
                a.message.clone(),
                now,
            ));
            if let Some(y) = &e.resolved_by {
                resolve(&mut a, y, now, &mut changes);
            }
            claimed.insert(a.id.clone());
            kept.push((a.id.clone(), e.results.clone()));
            r.alerts.push(a);
            continue;
        };
        let a = &mut r.alerts[i];
        claimed.insert(a.id.clone());
        kept.push((a.id.clone(), e.results.clone()));
        let before = a.clone();
        show(a, &e.head, &e.results);
        let upgraded = e.head.level() > before.level();
        let why = trigger.filter(|t| e.results.iter().chain(&e.resolved_by).any(|x| x == t));
        let ruled = |kind: EventType, action: AuditAction, a: &Alert, detail: String| {
            change(kind, action, a, BY_RULES, why, detail, now)
        };
        match (&e.resolved_by, before.status) {
            (Some(_), AlertStatus::Resolved) => {
                if *a != before {
                    changes.push(ruled(
                        EventType::AlertUpdated,
                        AuditAction::Updated,
                        a,
                        a.message.clone(),
                    ));
                }
            }
            (Some(y), _) => resolve(a, y, now, &mut changes),
            (None, AlertStatus::Resolved | AlertStatus::Withdrawn) if upgraded => {
                // Back, and more serious than anyone acknowledged: it needs someone again.
                needs_someone(a, review_by);
                changes.push(ruled(
                    EventType::AlertUpgraded,
                    AuditAction::Upgraded,
                    a,
                    format!("open again, at a higher stage or severity: {}", a.message),
                ));
            }
            (None, AlertStatus::Resolved | AlertStatus::Withdrawn) => {
                a.status = if a.acknowledged.is_some() {
                    AlertStatus::Acknowledged
                } else {
                    AlertStatus::Active
                };
                a.closed = None;
                a.escalated_at = None;
                a.review_by = review_by.filter(|_| a.status == AlertStatus::Active);
                changes.push(ruled(
                    EventType::AlertUpdated,
                    AuditAction::Reopened,
                    a,
                    "what closed it no longer stands: open again".into(),
                ));
            }
            (None, _) if upgraded => {
                // A higher stage or severity needs someone to see it again.
                needs_someone(a, review_by);
                changes.push(ruled(
                    EventType::AlertUpgraded,
                    AuditAction::Upgraded,
                    a,
                    a.message.clone(),
                ));
            }
            (None, status) => {
                if e.head.level() < before.level() && status == AlertStatus::Active {
                    // Less serious now: the review time of the new level, never a later one.
                    a.review_by = match (review_by, before.review_by) {
                        (Some(new), Some(old)) => Some(new.min(old)),
                        (new, _) => new,
                    };
                }
                if *a != before {
                    changes.push(ruled(
                        EventType::AlertUpdated,
                        AuditAction::Updated,
                        a,
                        a.message.clone(),
                    ));
                }
            }
        }
        if *a != before {
            a.updated_at = Some(now);
        }
    }
    // Alerts no episode keeps, while the history still holds what they rest on: merged into the
    // episode's alert that shares their results, else withdrawn.
    let mut merged: Vec<(String, Alert)> = Vec::new();
    for a in r
        .alerts
        .iter_mut()
        .filter(|a| a.rule == rule && a.status != AlertStatus::Withdrawn && !claimed.contains(&a.id))
    {
        if !a.implicated().iter().any(|x| held.contains(*x)) {
            continue;
        }
        let into = kept
            .iter()
            .find(|(_, results)| a.implicated().iter().any(|x| results.iter().any(|y| y == x)))
            .map(|(id, _)| id.clone());
        let reason = if let Some(into) = &into {
            format!("merged into alert {into}: a result that came later joined the two episodes")
        } else if a.implicated().iter().any(|x| retracted.contains(*x)) {
            "the laboratory retracted a result it rested on".to_owned()
        } else if rule == AKI_RULE
            && a.evidence.aki.is_some()
            && r.rrt.as_ref().is_some_and(|x| x.rrt == aki::Rrt::OnRrt)
        {
            "renal replacement therapy recorded: the AKI algorithm does not apply".to_owned()
        } else {
            "re-evaluated: its results no longer meet the rule (a corrected value, or earlier results that arrived later)".to_owned()
        };
        if let Some(into) = into {
            merged.push((into, a.clone()));
        }
        a.status = AlertStatus::Withdrawn;
        a.review_by = None;
        a.closed = Some(Closure {
            at: now,
            reason: reason.clone(),
            result_id: None,
        });
        a.updated_at = Some(now);
        changes.push(change(
            EventType::AlertWithdrawn,
            AuditAction::Withdrawn,
            a,
            BY_RULES,
            trigger,
            reason,
            now,
        ));
    }
    // An alert nobody acknowledged, merged into one somebody did: the merged one needs someone
    // again, as soon as the earlier of the two asked.
    for (into, gone) in merged {
        let Some(a) = r.alerts.iter_mut().find(|a| a.id == into) else {
            continue;
        };
        if !gone.status.needs_acknowledgement() || a.status.needs_acknowledgement() || !a.status.is_open() {
            continue;
        }
        a.status = gone.status;
        a.acknowledged = None;
        a.escalated_at = gone.escalated_at;
        a.review_by = gone.review_by;
        a.updated_at = Some(now);
        changes.push(change(
            EventType::AlertUpdated,
            AuditAction::Updated,
            a,
            BY_RULES,
            trigger,
            format!(
                "took in alert {}, which nobody had acknowledged: needs acknowledging again",
                gone.id
            ),
            now,
        ));
    }
    changes
}

/// Resolved by the result `by`.
fn resolve(a: &mut Alert, by: &str, now: DateTime<Utc>, changes: &mut Vec<Change>) {
    a.status = AlertStatus::Resolved;
    a.review_by = None;
    a.closed = Some(Closure {
        at: now,
        reason: "a later result cleared the rule".into(),
        result_id: Some(by.to_owned()),
    });
    changes.push(change(
        EventType::AlertResolved,
        AuditAction::Resolved,
        a,
        BY_RULES,
        Some(by),
        "a later result cleared the rule".into(),
        now,
    ));
}

/// Active again: nobody has acknowledged what it says now.
fn needs_someone(a: &mut Alert, review_by: Option<DateTime<Utc>>) {
    a.status = AlertStatus::Active;
    a.acknowledged = None;
    a.escalated_at = None;
    a.closed = None;
    a.review_by = review_by;
}

/// The rules a result of `analyte` touches.
fn rules_of(r: &PatientRecord, analyte: &str, limits: &CriticalLimits) -> Vec<String> {
    let mut rules: Vec<String> = Vec::new();
    let mut add = |rule: String| {
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    };
    for l in limits.limits.iter().filter(|l| l.analyte == analyte) {
        if l.high.is_some() {
            add(format!("critical-high:{analyte}"));
        }
        if l.low.is_some() {
            add(format!("critical-low:{analyte}"));
        }
    }
    // Alerts of a rule the table no longer has are still kept in step (withdrawn).
    for a in r
        .alerts
        .iter()
        .filter(|a| a.analyte.as_deref() == Some(analyte) && a.rule != AKI_RULE)
    {
        add(a.rule.clone());
    }
    // Potassium changes only the telephone rule of AKI findings that creatinine made: with no
    // AKI alert there is nothing for it to change.
    let has_aki = r.alerts.iter().any(|a| a.rule == AKI_RULE);
    if limits.aki.enabled && (analyte == "creatinine" || analyte == "potassium" && has_aki) {
        add(AKI_RULE.to_owned());
    }
    rules
}

fn evaluate(
    r: &mut PatientRecord,
    rules: &[String],
    trigger: Option<&str>,
    limits: &CriticalLimits,
    now: DateTime<Utc>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for rule in rules {
        if quiet(r, rule, trigger, limits) {
            continue;
        }
        let found = if rule == AKI_RULE {
            episodes(aki_steps(r, limits))
        } else {
            let analyte = rule.split_once(':').map(|(_, a)| a).unwrap_or_default();
            episodes(critical_steps(r, rule, analyte, limits))
        };
        changes.extend(reconcile(r, rule, found, trigger, now));
    }
    changes
}

/// Whether evaluating `rule` again cannot change anything, known without re-reading the
/// history: the patient has no alert of the rule, and the result being evaluated is no finding
/// of it (for AKI: it is also the latest creatinine, so no other assessment depends on it). The
/// other results' findings made their alerts when they were evaluated; an episode whose alert
/// bounding let go is not raised again anyway. Most results take this way.
fn quiet(r: &PatientRecord, rule: &str, trigger: Option<&str>, limits: &CriticalLimits) -> bool {
    if r.alerts.iter().any(|a| a.rule == rule) {
        return false;
    }
    let Some(x) = trigger.and_then(|t| r.result(t)) else {
        return false;
    };
    if !stands_by(x) || x.evaluable().is_none() {
        // Not evaluated; for AKI it may still have been a baseline (a correction of one).
        return rule != AKI_RULE;
    }
    if rule != AKI_RULE {
        return !critical_limits(x, limits, age_years(r, x))
            .iter()
            .any(|f| f.rule == rule);
    }
    let latest = r
        .results
        .iter()
        .filter(|c| c.analyte.as_deref() == Some("creatinine") && c.result_id != x.result_id)
        .all(|c| c.when() < x.when());
    if !latest {
        return false;
    }
    let (_, all) = creatinine_history(r);
    all.iter().find(|c| c.result_id == x.result_id).is_none_or(|c1| {
        !matches!(
            aki::assess(c1, &all, &aki_patient(r, c1.at)).outcome,
            Outcome::Warning(_) | Outcome::PossibleAkiNoBaseline
        )
    })
}

/// Queue the changes: the work lists first, then the audit entries and the events (a reader
/// who sees an event finds the patient listed).
fn record_changes(r: &mut PatientRecord, changes: Vec<Change>, now: DateTime<Utc>) {
    r.sync_unplaced();
    for c in changes {
        let alert_id = c.entry.alert_id.clone();
        let result_id = c.entry.result_id.clone();
        r.audit.push(c.entry);
        r.emit(c.kind, now, |e| {
            e.alert_id = Some(alert_id);
            e.result_id = result_id;
            e.analyte = c.analyte;
        });
    }
}

/// Evaluate the stored result `result_id`: every rule its analyte touches, over the whole history.
///
/// `carried`: the result as a record joined into this one held it, for an evaluation that
/// followed the join before the result was copied over; it is added if this record lacks it.
pub fn decide(
    record: PatientRecord,
    result_id: &str,
    carried: Option<&ResultEntry>,
    limits: &CriticalLimits,
    now: DateTime<Utc>,
) -> Decision {
    let before = record.clone();
    let mut r = record;
    if r.result(result_id).is_none()
        && let Some(entry) = carried.filter(|e| e.result_id == result_id)
    {
        r.results.push(entry.clone());
    }
    let Some(analyte) = r.result(result_id).map(|x| x.analyte.clone()) else {
        return Decision::unchanged(before);
    };
    let Some(analyte) = analyte else {
        // Not a known analyte: stored as received, never evaluated.
        return finish(Some(&before), r, now);
    };
    let rules = rules_of(&r, &analyte, limits);
    let changes = evaluate(&mut r, &rules, Some(result_id), limits, now);
    record_changes(&mut r, changes, now);
    finish(Some(&before), r, now)
}

/// Re-derive the record's alerts from its whole history: every rule any kept result's analyte
/// touches, and every rule an alert it keeps was raised by, evaluated with no result in
/// particular (as recording RRT does). For a history that changed other than by one result
/// arriving — another patient's results merged in (`decide::merge`). The changes are queued
/// like any evaluation's (audit entries, events); the caller finishes the decision. Re-deriving
/// the same history again changes nothing.
pub fn rederive(r: &mut PatientRecord, limits: &CriticalLimits, now: DateTime<Utc>) {
    let mut analytes: Vec<String> = r.results.iter().filter_map(|x| x.analyte.clone()).collect();
    analytes.sort();
    analytes.dedup();
    let mut rules: Vec<String> = Vec::new();
    for analyte in &analytes {
        for rule in rules_of(r, analyte, limits) {
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
    }
    for a in &r.alerts {
        let kept = a.rule != AKI_RULE || limits.aki.enabled;
        if kept && !rules.contains(&a.rule) {
            rules.push(a.rule.clone());
        }
    }
    let changes = evaluate(r, &rules, None, limits, now);
    record_changes(r, changes, now);
}

/// Escalate every active alert whose review time has passed. Returns the alerts escalated.
pub fn escalate(record: PatientRecord, now: DateTime<Utc>) -> (Decision, Vec<String>) {
    let before = record.clone();
    let mut r = record;
    let mut changes = Vec::new();
    for a in r
        .alerts
        .iter_mut()
        .filter(|a| a.status == AlertStatus::Active && a.review_by.is_some_and(|t| t <= now))
    {
        a.status = AlertStatus::Escalated;
        a.escalated_at = Some(now);
        a.updated_at = Some(now);
        let due = a.review_by.map(|t| t.to_rfc3339()).unwrap_or_default();
        changes.push(change(
            EventType::AlertEscalated,
            AuditAction::Escalated,
            a,
            BY_ESCALATION,
            None,
            format!("not acknowledged by its review time ({due})"),
            now,
        ));
    }
    let escalated: Vec<String> = changes.iter().map(|c| c.entry.alert_id.clone()).collect();
    if changes.is_empty() {
        // Keep the review list honest even when nothing was due (a list entry left behind).
        r.sync_unplaced();
        return (finish(Some(&before), r, now), escalated);
    }
    record_changes(&mut r, changes, now);
    (finish(Some(&before), r, now), escalated)
}

/// Record renal replacement therapy (a board action) and re-evaluate AKI: on it, the
/// algorithm does not apply and AKI alerts are withdrawn; off it, they come back.
pub fn set_rrt(
    record: PatientRecord,
    rrt: aki::Rrt,
    by: &str,
    limits: &CriticalLimits,
    now: DateTime<Utc>,
) -> Decision {
    if record.rrt() == rrt && record.rrt.is_some() {
        return Decision::unchanged(record);
    }
    let before = record.clone();
    let mut r = record;
    r.rrt = Some(RrtRecord {
        rrt,
        by: by.to_owned(),
        at: now,
    });
    let changes = if limits.aki.enabled {
        evaluate(&mut r, &[AKI_RULE.to_owned()], None, limits, now)
    } else {
        Vec::new()
    };
    record_changes(&mut r, changes, now);
    finish(Some(&before), r, now)
}

/// What acknowledging an alert came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledged {
    /// It was active or escalated and is acknowledged now (one `alert-acknowledged` event).
    Now,
    /// It was acknowledged already: nothing changed.
    Already,
    /// It is resolved or withdrawn: acknowledging it changes nothing.
    NotActive(AlertStatus),
    /// The record has no alert of that id.
    NotFound,
}

/// Acknowledge one of the patient's alerts: `by` (a signed-in user or a name typed on the
/// board) saw it, with an optional `note`. Acknowledging twice changes nothing. An escalated
/// alert can be acknowledged; so can one whose patient has left.
pub fn acknowledge(
    record: PatientRecord,
    alert_id: &str,
    by: &str,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> (Decision, Acknowledged) {
    let Some(i) = record.alerts.iter().position(|a| a.id == alert_id) else {
        return (Decision::unchanged(record), Acknowledged::NotFound);
    };
    match record.alerts[i].status {
        AlertStatus::Active | AlertStatus::Escalated => {}
        AlertStatus::Acknowledged => return (Decision::unchanged(record), Acknowledged::Already),
        other => return (Decision::unchanged(record), Acknowledged::NotActive(other)),
    }
    let before = record.clone();
    let mut r = record;
    let alert = &mut r.alerts[i];
    let was = alert.status;
    alert.status = AlertStatus::Acknowledged;
    alert.updated_at = Some(now);
    alert.acknowledged = Some(Acknowledgement {
        by: by.to_owned(),
        at: now,
        note: note.map(str::to_owned),
    });
    let detail = if was == AlertStatus::Escalated {
        "acknowledged after escalation"
    } else {
        "acknowledged"
    };
    let result_id = alert.result_id.clone();
    let c = change(
        EventType::AlertAcknowledged,
        AuditAction::Acknowledged,
        alert,
        by,
        Some(&result_id),
        detail.into(),
        now,
    );
    record_changes(&mut r, vec![c], now);
    (finish(Some(&before), r, now), Acknowledged::Now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aki::Rrt;
    use crate::decide::{digest, result};
    use crate::record::Action;

    fn t(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + hours * 3600, 0).expect("time")
    }

    fn day(d: i64) -> DateTime<Utc> {
        t(d * 24)
    }

    /// A result of `analyte` taken (and issued) at `at`.
    fn lab(id: &str, analyte: &str, value: f64, status: &str, at: DateTime<Utc>) -> ResultEntry {
        let (loinc, unit) = match analyte {
            "creatinine" => ("14682-9", "umol/L"),
            _ => ("2823-3", "mmol/L"),
        };
        let d = digest(&format!("{id}{value}{status}"));
        ResultEntry {
            result_id: id.into(),
            loinc: loinc.into(),
            analyte: Some(analyte.into()),
            value: Some(value),
            unit: unit.into(),
            reported_value: Some(value),
            reported_unit: unit.into(),
            effective: Some(at),
            issued: Some(at),
            resource_key: format!("result-{id}-{d}"),
            digest: d,
            ..crate::record::potassium_result(value, status)
        }
    }

    /// A delivery: ingest-lab stores the result, evaluate-alert evaluates it.
    fn arrive(record: Option<PatientRecord>, e: &ResultEntry, now: DateTime<Utc>) -> Decision {
        let stored = result::decide(record, "p1", e.clone(), None, now).record;
        decide(stored, &e.result_id, None, &CriticalLimits::default(), now)
    }

    fn kinds(d: &Decision) -> Vec<EventType> {
        d.events().map(|e| e.kind).collect()
    }

    fn run(results: &[ResultEntry], now: DateTime<Utc>) -> (PatientRecord, Vec<EventType>) {
        let mut record = None;
        let mut events = Vec::new();
        for e in results {
            let d = arrive(record, e, now);
            events.extend(kinds(&d));
            record = Some(d.record);
        }
        (record.expect("a record"), events)
    }

    #[test]
    fn a_critical_potassium_raises_one_alert_and_a_redelivery_changes_nothing() {
        let k = lab("k1", "potassium", 7.1, "final", t(0));
        let (r, events) = run(std::slice::from_ref(&k), t(1));
        assert_eq!(events, [EventType::AlertRaised]);
        let a = &r.alerts[0];
        assert_eq!(a.id, alert_id("p1", "critical-high:potassium", "k1"));
        assert_eq!(
            (a.status, a.severity, a.telephone),
            (AlertStatus::Active, Severity::Critical, true)
        );
        assert_eq!(a.evidence.limit, Some(6.5));
        assert_eq!(
            a.review_by,
            Some(t(1) + Duration::minutes(60)),
            "potassium's review window"
        );
        assert_eq!(r.audit.len(), 1);
        let again = decide(r, "k1", None, &CriticalLimits::default(), t(2));
        assert!(!again.changed && again.emitted.is_empty());
    }

    #[test]
    fn a_repeat_within_the_window_updates_the_open_alert_and_one_after_it_raises_another() {
        let (r, events) = run(
            &[
                lab("k1", "potassium", 7.0, "final", t(0)),
                lab("k2", "potassium", 7.4, "final", t(2)),
            ],
            t(3),
        );
        assert_eq!(events, [EventType::AlertRaised, EventType::AlertUpdated]);
        assert_eq!(r.alerts.len(), 1);
        assert_eq!(r.alerts[0].results, ["k1", "k2"]);
        assert_eq!(r.alerts[0].value, 7.4, "the latest of equals is the headline");
        // 30 h after the last finding: past the 24 h repeat window, a new episode.
        let d = arrive(Some(r), &lab("k3", "potassium", 7.1, "final", t(32)), t(33));
        assert_eq!(kinds(&d), [EventType::AlertRaised]);
        assert_eq!(d.record.alerts.len(), 2);
    }

    #[test]
    fn a_later_normal_result_resolves_and_a_critical_one_after_it_raises_a_new_alert() {
        let (r, events) = run(
            &[
                lab("k1", "potassium", 7.0, "final", t(0)),
                lab("k2", "potassium", 4.5, "final", t(2)),
                lab("k3", "potassium", 6.9, "final", t(4)),
            ],
            t(5),
        );
        assert_eq!(
            events,
            [EventType::AlertRaised, EventType::AlertResolved, EventType::AlertRaised]
        );
        assert_eq!(r.alerts[0].status, AlertStatus::Resolved);
        assert_eq!(
            r.alerts[0].closed.as_ref().and_then(|c| c.result_id.as_deref()),
            Some("k2")
        );
        assert_eq!(r.alerts[1].status, AlertStatus::Active);
        // A bound that says nothing about the high limit neither raises nor clears.
        let mut bound = lab("k4", "potassium", 5.0, "final", t(5));
        bound.comparator = Some(">".into());
        let d = arrive(Some(r), &bound, t(6));
        assert!(d.events().next().is_none());
    }

    #[test]
    fn a_correction_that_clears_the_value_withdraws_the_alert_and_a_retraction_too_saying_why() {
        let (r, _) = run(&[lab("k1", "potassium", 7.1, "final", t(0))], t(1));
        let mut corrected = lab("k1", "potassium", 4.9, "corrected", t(0));
        corrected.issued = Some(t(2));
        let d = arrive(Some(r.clone()), &corrected, t(3));
        assert_eq!(kinds(&d), [EventType::AlertWithdrawn]);
        let a = &d.record.alerts[0];
        assert_eq!(a.status, AlertStatus::Withdrawn);
        assert!(a.closed.as_ref().is_some_and(|c| c.reason.contains("no longer meet")));

        let mut retracted = lab("k1", "potassium", 7.1, "entered-in-error", t(0));
        retracted.issued = Some(t(2));
        let d = arrive(Some(r), &retracted, t(3));
        assert_eq!(kinds(&d), [EventType::AlertWithdrawn]);
        assert!(
            d.record.alerts[0]
                .closed
                .as_ref()
                .is_some_and(|c| c.reason.contains("retracted"))
        );
        assert_eq!(d.record.audit.last().map(|e| e.action), Some(AuditAction::Withdrawn));
        // Nothing needs anyone now: off the work lists.
        assert!(!d.record.unplaced_listed && !d.record.review_listed);
    }

    #[test]
    fn preliminary_unknown_analyte_and_not_evaluable_results_never_fire() {
        let mut unknown_unit = lab("k2", "potassium", 7.1, "final", t(0));
        unknown_unit.not_evaluable = Some("unit mg is not one the units table accepts".into());
        let mut other = lab("x1", "potassium", 9.9, "final", t(0));
        other.analyte = None;
        let (r, events) = run(
            &[lab("k1", "potassium", 7.1, "preliminary", t(0)), unknown_unit, other],
            t(1),
        );
        assert!(events.is_empty() && r.alerts.is_empty());
    }

    /// Two creatinine results 20 and 30 days before day 0 (RV2 = 80 µmol/L).
    fn baseline() -> Vec<ResultEntry> {
        vec![
            lab("c-30", "creatinine", 80.0, "final", day(-30)),
            lab("c-20", "creatinine", 80.0, "final", day(-20)),
        ]
    }

    #[test]
    fn aki_stage_1_then_stage_2_is_one_alert_upgraded_and_active_again() {
        let mut series = baseline();
        series.push(lab("c0", "creatinine", 130.0, "final", day(0)));
        let (r, events) = run(&series, day(0) + Duration::hours(1));
        assert_eq!(events, [EventType::AlertRaised]);
        let a = &r.alerts[0];
        assert_eq!(
            (a.rule.as_str(), a.stage, a.severity),
            (AKI_RULE, Some(1), Severity::Warning)
        );
        assert!(!a.telephone);
        let aki = a.evidence.aki.as_ref().expect("the assessment");
        assert_eq!(aki.rv2, Some(80.0));
        assert!(aki.notes.iter().any(|n| n.contains("assumed none")), "{:?}", aki.notes);
        let id = a.id.clone();
        let (acked, _) = acknowledge(r, &id, "Dr Patel", None, day(0) + Duration::hours(2));
        let d = arrive(
            Some(acked.record),
            &lab("c1", "creatinine", 170.0, "final", day(1)),
            day(1) + Duration::hours(1),
        );
        assert_eq!(kinds(&d), [EventType::AlertUpgraded]);
        let a = &d.record.alerts[0];
        assert_eq!(d.record.alerts.len(), 1);
        assert_eq!((a.stage, a.severity, a.telephone), (Some(2), Severity::Critical, true));
        assert_eq!(
            a.status,
            AlertStatus::Active,
            "an upgrade needs someone to see it again"
        );
        assert_eq!(a.results, ["c0", "c1"]);
        assert_eq!(
            a.review_by,
            Some(day(1) + Duration::hours(1) + Duration::hours(6)),
            "stage 2: 6 h (NICE QS76)"
        );
    }

    #[test]
    fn a_high_but_stable_creatinine_never_gives_an_aki_stage() {
        let series: Vec<ResultEntry> = [
            (-300, 250.0),
            (-200, 262.0),
            (-100, 255.0),
            (-30, 270.0),
            (-2, 248.0),
            (0, 265.0),
        ]
        .iter()
        .map(|(d, v)| lab(&format!("c{d}"), "creatinine", *v, "final", day(*d)))
        .collect();
        let (r, _) = run(&series, day(0));
        assert!(r.alerts.iter().all(|a| a.stage.unwrap_or(0) == 0), "{:?}", r.alerts);
        // The first result had no baseline: flagged for review, and cleared by the next one.
        assert!(!r.has_open_alerts());
    }

    #[test]
    fn a_late_older_result_re_evaluates_the_newer_one_without_a_second_alert() {
        let c0 = lab("c0", "creatinine", 130.0, "final", day(0));
        let (r, events) = run(std::slice::from_ref(&c0), day(0));
        assert_eq!(events, [EventType::AlertRaised]);
        assert_eq!(r.alerts[0].stage, Some(0), "possible AKI, no baseline");
        let d = arrive(Some(r), &lab("c-3", "creatinine", 80.0, "final", day(-3)), day(0));
        assert_eq!(kinds(&d), [EventType::AlertUpgraded]);
        assert_eq!(d.record.alerts.len(), 1);
        assert_eq!(d.record.alerts[0].stage, Some(1));
        // A result dated after C1 is never its baseline.
        let d = arrive(Some(d.record), &lab("c5", "creatinine", 40.0, "final", day(5)), day(5));
        let c0_assessed = d.record.alerts[0].evidence.aki.as_ref().expect("assessment");
        assert_eq!(c0_assessed.rv1.as_ref().map(|x| x.0), Some(80.0));
    }

    #[test]
    fn stage_1_with_potassium_over_6_is_telephoned() {
        let mut series = baseline();
        series.push(lab("k0", "potassium", 6.1, "final", day(0) - Duration::hours(2)));
        series.push(lab("c0", "creatinine", 130.0, "final", day(0)));
        let (r, _) = run(&series, day(0));
        let aki = r.alerts.iter().find(|a| a.rule == AKI_RULE).expect("an AKI alert");
        assert!(aki.telephone);
        assert_eq!(aki.severity, Severity::Critical);
        assert_eq!(aki.evidence.potassium, Some(6.1));
        // A potassium arriving later that puts it under the line re-evaluates the AKI alert.
        let mut series = baseline();
        series.push(lab("c0", "creatinine", 130.0, "final", day(0)));
        let (r, _) = run(&series, day(0));
        assert!(!r.alerts[0].telephone);
        let d = arrive(Some(r), &lab("k0", "potassium", 6.4, "final", day(0)), day(0));
        let aki = d
            .record
            .alerts
            .iter()
            .find(|a| a.rule == AKI_RULE)
            .expect("an AKI alert");
        assert!(aki.telephone);
        assert!(kinds(&d).contains(&EventType::AlertUpgraded));
    }

    #[test]
    fn renal_replacement_therapy_recorded_withdraws_aki_alerts_and_says_why() {
        let mut series = baseline();
        series.push(lab("c0", "creatinine", 200.0, "final", day(0)));
        let (r, _) = run(&series, day(0));
        let d = set_rrt(r, Rrt::OnRrt, "Sister Jones", &CriticalLimits::default(), day(0));
        assert_eq!(kinds(&d), [EventType::AlertWithdrawn]);
        assert!(
            d.record.alerts[0]
                .closed
                .as_ref()
                .is_some_and(|c| c.reason.contains("renal replacement therapy"))
        );
        let again = set_rrt(d.record, Rrt::OnRrt, "Sister Jones", &CriticalLimits::default(), day(0));
        assert!(!again.changed);
        let off = set_rrt(
            again.record,
            Rrt::NotOnRrt,
            "Dr Patel",
            &CriticalLimits::default(),
            day(0),
        );
        assert_eq!(kinds(&off), [EventType::AlertUpdated], "reopened");
        assert_eq!(off.record.alerts[0].status, AlertStatus::Active);
    }

    #[test]
    fn an_unacknowledged_alert_is_escalated_once_after_its_review_window_and_can_then_be_acknowledged() {
        let (r, _) = run(&[lab("k1", "potassium", 7.1, "final", t(0))], t(0));
        assert!(r.review_listed && r.outbox.iter().any(|p| p.action == Action::ListForReview));
        let (early, none) = escalate(r, t(0) + Duration::minutes(59));
        assert!(none.is_empty() && !early.changed);
        let (d, ids) = escalate(early.record, t(1));
        assert_eq!(ids.len(), 1);
        assert_eq!(kinds(&d), [EventType::AlertEscalated]);
        let a = &d.record.alerts[0];
        assert_eq!((a.status, a.escalated_at), (AlertStatus::Escalated, Some(t(1))));
        assert!(!d.record.review_listed, "nothing waits for a review time now");
        let (again, ids) = escalate(d.record, t(5));
        assert!(ids.is_empty() && !again.changed);
        let id = again.record.alerts[0].id.clone();
        let (acked, what) = acknowledge(again.record, &id, "Dr Patel", Some("repeat sent"), t(6));
        assert_eq!(what, Acknowledged::Now);
        assert_eq!(acked.record.alerts[0].status, AlertStatus::Acknowledged);
        let actions: Vec<AuditAction> = acked.record.audit.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [AuditAction::Raised, AuditAction::Escalated, AuditAction::Acknowledged]
        );
        assert_eq!(acked.record.audit[2].by, "Dr Patel");
    }

    #[test]
    fn a_patient_on_no_ward_stays_listed_until_someone_acknowledges_the_alert() {
        let (r, _) = run(&[lab("k1", "potassium", 7.1, "final", t(0))], t(0));
        assert!(r.unplaced_listed);
        let id = r.alerts[0].id.clone();
        let (d, _) = acknowledge(r, &id, "Dr Patel", None, t(1));
        assert!(!d.record.unplaced_listed);
        assert!(d.emitted.iter().any(|p| p.action == Action::UnlistUnplaced));
        let events: Vec<&crate::events::WardEvent> = d.events().collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].result_id.as_deref(), Some("k1"));
        let (none, what) = acknowledge(d.record, "no-such-alert", "x", None, t(1));
        assert_eq!(what, Acknowledged::NotFound);
        assert!(!none.changed);
    }

    /// A small deterministic generator for the order tests (no dependency needed).
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    /// What must not depend on arrival: every alert that is not withdrawn, without its id and
    /// times.
    fn settled(r: &PatientRecord) -> Vec<String> {
        let mut out: Vec<String> = r
            .alerts
            .iter()
            .filter(|a| a.status != AlertStatus::Withdrawn)
            .map(|a| {
                format!(
                    "{} stage {:?} {:?} {:?} {:?} telephone {} value {}",
                    a.rule, a.stage, a.severity, a.status, a.results, a.telephone, a.value
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn once_every_result_is_in_the_alerts_are_the_same_whatever_the_order_and_redeliveries() {
        // Two AKI episodes (a rise, recovery, a second rise), a CKD-like plateau, potassium that
        // makes one stage telephoned, a critical potassium resolved later, a clearing result
        // between two criticals, and a retraction.
        let mut all = vec![
            lab("c1", "creatinine", 80.0, "final", day(-40)),
            lab("c2", "creatinine", 84.0, "final", day(-25)),
            lab("c3", "creatinine", 78.0, "final", day(-10)),
            lab("c4", "creatinine", 125.0, "final", day(0)),
            lab("c5", "creatinine", 175.0, "final", day(1)),
            lab("c6", "creatinine", 250.0, "final", day(2)),
            lab("c7", "creatinine", 90.0, "final", day(6)),
            lab("c8", "creatinine", 88.0, "final", day(7)),
            lab("c9", "creatinine", 140.0, "final", day(20)),
            lab("k1", "potassium", 6.2, "final", day(0) - Duration::hours(1)),
            lab("k2", "potassium", 6.8, "final", day(3)),
            lab("k3", "potassium", 4.1, "final", day(4)),
            // A clearing result that, arriving late, splits an episode in two.
            lab("k4", "potassium", 7.1, "final", day(10) + Duration::hours(5)),
            lab("k5", "potassium", 4.0, "final", day(10) + Duration::hours(10)),
            lab("k6", "potassium", 7.0, "final", day(10) + Duration::hours(20)),
        ];
        let mut retraction = lab("c8", "creatinine", 88.0, "entered-in-error", day(7));
        retraction.issued = Some(day(8));
        all.push(retraction);
        let now = day(21);
        let (in_order, _) = run(&all, now);
        let expected = settled(&in_order);
        assert!(
            expected.iter().any(|a| a.starts_with("aki stage Some(3)")),
            "{expected:?}"
        );
        assert!(expected.iter().any(|a| a.contains("Resolved")), "{expected:?}");
        let mut rng = Lcg(7);
        for round in 0..150 {
            let mut order = all.clone();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
            // Redeliver some, immediately or later.
            for _ in 0..3 {
                let i = rng.below(order.len());
                let again = order[i].clone();
                let at = rng.below(order.len() + 1);
                order.insert(at.max(i + 1).min(order.len()), again);
            }
            let mut record = None;
            for e in &order {
                let d = arrive(record, e, now);
                let repeat = decide(d.record.clone(), &e.result_id, None, &CriticalLimits::default(), now);
                assert!(
                    repeat.emitted.is_empty(),
                    "round {round}: a redelivery changed something"
                );
                record = Some(d.record);
            }
            let record = record.expect("a record");
            assert_eq!(settled(&record), expected, "round {round}");
        }
    }

    #[test]
    fn an_aki_rise_raises_one_alert_in_every_arrival_order_and_with_redeliveries() {
        let mut all = baseline();
        all.push(lab("c0", "creatinine", 130.0, "final", day(0)));
        all.push(lab("c1", "creatinine", 170.0, "final", day(1)));
        let mut rng = Lcg(11);
        for round in 0..100 {
            let mut order = all.clone();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
            let i = rng.below(order.len());
            order.insert(i, order[i].clone());
            let (r, events) = run(&order, day(1));
            let raised = events.iter().filter(|k| **k == EventType::AlertRaised).count();
            assert_eq!(raised, 1, "round {round}: {events:?}");
            assert_eq!(
                settled(&r),
                ["aki stage Some(2) Critical Active [\"c0\", \"c1\"] telephone true value 170"]
            );
        }
    }

    #[test]
    fn an_old_episode_whose_alert_the_record_let_go_is_not_raised_again_by_newer_results() {
        let (mut r, _) = run(
            &[
                lab("k1", "potassium", 7.0, "final", t(0)),
                lab("k2", "potassium", 4.5, "final", t(2)),
            ],
            t(3),
        );
        // As if bounding had let the resolved alert go while its results are still held.
        r.alerts.clear();
        let d = arrive(Some(r), &lab("k3", "potassium", 4.4, "final", t(4)), t(5));
        assert!(d.events().next().is_none() && d.record.alerts.is_empty());
        // A late result older than the episode could have made it: it is raised, and resolved.
        let (mut r, _) = run(&[lab("k2", "potassium", 4.5, "final", t(2))], t(3));
        r.alerts.clear();
        let d = arrive(Some(r), &lab("k1", "potassium", 7.0, "final", t(0)), t(5));
        assert_eq!(kinds(&d), [EventType::AlertRaised, EventType::AlertResolved]);
    }

    #[test]
    fn a_late_clearing_result_that_splits_an_episode_never_makes_two_alerts_of_one_id() {
        // k1 raises A; k0, older, joins it; km, between them, clears k0's part: two episodes.
        let (r, _) = run(
            &[
                lab("k1", "potassium", 7.0, "final", t(20)),
                lab("k0", "potassium", 7.1, "final", t(5)),
                lab("km", "potassium", 4.0, "final", t(10)),
            ],
            t(21),
        );
        let mut ids: Vec<&str> = r.alerts.iter().map(|a| a.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), r.alerts.len(), "{:?}", r.alerts);
        assert_eq!(r.alerts.iter().filter(|a| a.status == AlertStatus::Active).count(), 1);
        // Redelivering any of them changes nothing.
        for id in ["k1", "k0", "km"] {
            let again = decide(r.clone(), id, None, &CriticalLimits::default(), t(22));
            assert!(again.emitted.is_empty(), "{id}: {:?}", kinds(&again));
        }
        // The open one can be acknowledged.
        let open = r
            .alerts
            .iter()
            .find(|a| a.status == AlertStatus::Active)
            .expect("open")
            .id
            .clone();
        assert_eq!(acknowledge(r, &open, "Dr Patel", None, t(23)).1, Acknowledged::Now);
    }

    #[test]
    fn an_unacknowledged_alert_merged_into_an_acknowledged_one_needs_acknowledging_again() {
        let (r, _) = run(&[lab("k1", "potassium", 7.0, "final", t(0))], t(0));
        let a = r.alerts[0].id.clone();
        let (acked, _) = acknowledge(r, &a, "Dr X", None, t(1));
        // 40 h later, past the 24 h window: a second alert nobody acknowledges.
        let d = arrive(Some(acked.record), &lab("k3", "potassium", 7.4, "final", t(40)), t(40));
        assert_eq!(d.record.alerts.len(), 2);
        // A late result between them joins the two episodes.
        let d = arrive(Some(d.record), &lab("k2", "potassium", 7.1, "final", t(20)), t(41));
        let open: Vec<&Alert> = d.record.alerts.iter().filter(|x| x.status.is_open()).collect();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].status, AlertStatus::Active, "the 7.4 was never acknowledged");
        assert!(open[0].acknowledged.is_none());
        assert!(d.record.needs_attention() && d.record.unplaced_listed);
        let gone = d
            .record
            .alerts
            .iter()
            .find(|x| x.status == AlertStatus::Withdrawn)
            .expect("merged");
        assert!(gone.closed.as_ref().is_some_and(|c| c.reason.contains("merged into")));
    }

    #[test]
    fn an_alert_reopened_at_a_higher_stage_than_was_acknowledged_needs_acknowledging_again() {
        let mut series = baseline();
        series.push(lab("c0", "creatinine", 130.0, "final", day(0)));
        let (r, _) = run(&series, day(0));
        let a = r.alerts[0].id.clone();
        let (acked, _) = acknowledge(r, &a, "Dr X", None, day(0));
        let (r, _) = {
            let mut record = Some(acked.record);
            let mut events = Vec::new();
            for e in [
                lab("c1", "creatinine", 85.0, "final", day(1)),
                lab("c2", "creatinine", 260.0, "final", day(2)),
            ] {
                let d = arrive(record, &e, day(2));
                events.extend(kinds(&d));
                record = Some(d.record);
            }
            (record.expect("record"), events)
        };
        assert_eq!(r.alerts[0].status, AlertStatus::Resolved);
        // The result that resolved it is retracted: one episode again, at stage 3.
        let mut retracted = lab("c1", "creatinine", 85.0, "entered-in-error", day(1));
        retracted.issued = Some(day(3));
        let d = arrive(Some(r), &retracted, day(3));
        let open: Vec<&Alert> = d.record.alerts.iter().filter(|x| x.status.is_open()).collect();
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].stage, open[0].status), (Some(3), AlertStatus::Active));
        assert!(open[0].acknowledged.is_none());
    }

    #[test]
    fn a_stable_high_creatinine_telephones_once_as_a_new_finding_only() {
        let series: Vec<ResultEntry> = (0..6)
            .map(|m| lab(&format!("c{m}"), "creatinine", 420.0 + m as f64, "final", day(m * 30)))
            .collect();
        let (r, events) = run(&series, day(150));
        let critical: Vec<&Alert> = r
            .alerts
            .iter()
            .filter(|a| a.rule == "critical-high:creatinine")
            .collect();
        assert_eq!(critical.len(), 1, "{:?}", r.alerts);
        assert_eq!(critical[0].results, ["c0"]);
        assert!(r.alerts.iter().all(|a| a.stage.unwrap_or(0) == 0), "never an AKI stage");
        assert_eq!(
            events.iter().filter(|k| **k == EventType::AlertRaised).count(),
            2,
            "{events:?}"
        );
    }

    #[test]
    fn a_bound_clears_a_rule_only_when_it_plainly_does_not_meet_it() {
        let (r, _) = run(&[lab("k1", "potassium", 7.0, "final", t(0))], t(0));
        let mut under_7 = lab("k2", "potassium", 7.0, "final", t(1));
        under_7.comparator = Some("<".into());
        let d = arrive(Some(r.clone()), &under_7, t(1));
        assert_eq!(d.record.alerts[0].status, AlertStatus::Active, "<7 may still be 6.8");
        let mut under_6 = lab("k2", "potassium", 6.0, "final", t(1));
        under_6.comparator = Some("<".into());
        let d = arrive(Some(r), &under_6, t(1));
        assert_eq!(d.record.alerts[0].status, AlertStatus::Resolved);
    }
}
