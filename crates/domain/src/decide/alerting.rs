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
    history
        .into_iter()
        .map(|r| {
            let age = age_years(record, r);
            let Some(limit) = limits.limit_for(analyte, &r.unit, age) else {
                return (r, Step::Silent);
            };
            if let Some(f) = critical_limits(r, limits, age).into_iter().find(|f| f.rule == rule) {
                let mut head = Headline::of(r);
                head.severity = f.severity;
                head.message = f.message;
                head.evidence.limit = f.limit;
                head.telephone = true;
                head.review = Some(minutes(limit.review_minutes.unwrap_or(limits.review_minutes)));
                let repeat = minutes(limit.repeat_minutes.unwrap_or(limits.repeat_minutes));
                return (r, Step::Finding(Box::new(head), repeat));
            }
            // `>7` says nothing about a low limit's opposite: only a value that plainly does not
            // meet the rule clears it.
            let bound_only = match r.comparator.as_deref() {
                Some(">" | ">=") => high,
                Some("<" | "<=") => !high,
                _ => false,
            };
            let limited = if high { limit.high.is_some() } else { limit.low.is_some() };
            (r, if bound_only || !limited { Step::Silent } else { Step::Clears })
        })
        .collect()
}

/// The AKI rule: every creatinine assessed against all the others.
fn aki_steps<'a>(record: &'a PatientRecord, limits: &CriticalLimits) -> Vec<(&'a ResultEntry, Step)> {
    let rules = &limits.aki;
    let mut history: Vec<&ResultEntry> = record
        .results
        .iter()
        .filter(|r| r.analyte.as_deref() == Some("creatinine") && stands_by(r) && r.evaluable().is_some())
        .filter(|r| r.when().is_some() && r.unit == "umol/L")
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
    let female = match record.gender.as_deref() {
        Some("female") => Some(true),
        Some("male") => Some(false),
        _ => None,
    };
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
            let age = record.birth_date.and_then(|b| aki::Age::at(b, c1.at));
            let patient = AkiPatient {
                age,
                upper_reference_limit: aki::default_upper_reference_limit(age, female),
                rrt: record.rrt(),
            };
            let a = aki::assess(c1, &all, &patient);
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

fn change(kind: EventType, action: AuditAction, a: &Alert, by: &str, result_id: Option<&str>, detail: String, now: DateTime<Utc>) -> Change {
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
    let pid = r.id.clone();
    let mut claimed: HashSet<String> = HashSet::new();
    let mut changes = Vec::new();
    for e in &found {
        let shares = |a: &Alert| a.implicated().iter().any(|x| e.results.iter().any(|y| y == x));
        let first = trigger
            .filter(|t| e.results.iter().any(|x| x == t))
            .unwrap_or(e.results[0].as_str());
        let new_id = alert_id(&pid, rule, first);
        let at = r
            .alerts
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                a.rule == rule && a.status != AlertStatus::Withdrawn && !claimed.contains(&a.id) && shares(a)
            })
            .min_by(|(_, a), (_, b)| a.raised_at.cmp(&b.raised_at).then_with(|| a.id.cmp(&b.id)))
            .map(|(i, _)| i)
            .or_else(|| r.alerts.iter().position(|a| a.id == new_id && !claimed.contains(&a.id)));
        let review_by = e.head.review.map(|d| now + d);
        let Some(i) = at else {
            let mut a = Alert {
                id: new_id,
                rule: rule.to_owned(),
                severity: e.head.severity,
                stage: None,
                status: AlertStatus::Active,
                message: String::new(),
                result_id: first.to_owned(),
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
            changes.push(change(EventType::AlertRaised, AuditAction::Raised, &a, BY_RULES, Some(first), a.message.clone(), now));
            if let Some(y) = &e.resolved_by {
                a.status = AlertStatus::Resolved;
                a.review_by = None;
                a.closed = Some(Closure {
                    at: now,
                    reason: "a later result cleared the rule".into(),
                    result_id: Some(y.clone()),
                });
                changes.push(change(EventType::AlertResolved, AuditAction::Resolved, &a, BY_RULES, Some(y), "a later result cleared the rule".into(), now));
            }
            claimed.insert(a.id.clone());
            r.alerts.push(a);
            continue;
        };
        let a = &mut r.alerts[i];
        claimed.insert(a.id.clone());
        let before = a.clone();
        show(a, &e.head, &e.results);
        let upgraded = e.head.level() > before.level();
        let why = trigger.filter(|t| e.results.iter().chain(&e.resolved_by).any(|x| x == t));
        match (&e.resolved_by, before.status) {
            (Some(_), AlertStatus::Resolved) => {
                if *a != before {
                    changes.push(change(EventType::AlertUpdated, AuditAction::Updated, a, BY_RULES, why, a.message.clone(), now));
                }
            }
            (Some(y), _) => {
                a.status = AlertStatus::Resolved;
                a.review_by = None;
                a.closed = Some(Closure {
                    at: now,
                    reason: "a later result cleared the rule".into(),
                    result_id: Some(y.clone()),
                });
                changes.push(change(EventType::AlertResolved, AuditAction::Resolved, a, BY_RULES, Some(y), "a later result cleared the rule".into(), now));
            }
            (None, AlertStatus::Resolved | AlertStatus::Withdrawn) => {
                a.status = if a.acknowledged.is_some() {
                    AlertStatus::Acknowledged
                } else {
                    AlertStatus::Active
                };
                a.closed = None;
                a.review_by = review_by.filter(|_| a.status == AlertStatus::Active);
                changes.push(change(
                    EventType::AlertUpdated,
                    AuditAction::Reopened,
                    a,
                    BY_RULES,
                    why,
                    "what closed it no longer stands: open again".into(),
                    now,
                ));
            }
            (None, _) if upgraded => {
                // A higher stage or severity needs someone to see it again.
                a.status = AlertStatus::Active;
                a.acknowledged = None;
                a.escalated_at = None;
                a.review_by = review_by;
                changes.push(change(EventType::AlertUpgraded, AuditAction::Upgraded, a, BY_RULES, why, a.message.clone(), now));
            }
            (None, _) => {
                if *a != before {
                    changes.push(change(EventType::AlertUpdated, AuditAction::Updated, a, BY_RULES, why, a.message.clone(), now));
                }
            }
        }
        if *a != before {
            a.updated_at = Some(now);
        }
    }
    // Alerts no episode keeps: withdrawn, while the history still holds what they rest on.
    for a in r.alerts.iter_mut().filter(|a| {
        a.rule == rule && a.status != AlertStatus::Withdrawn && !claimed.contains(&a.id)
    }) {
        if !a.implicated().iter().any(|x| held.contains(*x)) {
            continue;
        }
        let reason = if a.implicated().iter().any(|x| retracted.contains(*x)) {
            "the laboratory retracted a result it rested on"
        } else if rule == AKI_RULE && a.evidence.aki.is_some() && r.rrt.as_ref().is_some_and(|x| x.rrt == aki::Rrt::OnRrt) {
            "renal replacement therapy recorded: the AKI algorithm does not apply"
        } else {
            "re-evaluated: its results no longer meet the rule (a corrected value, or earlier results that arrived later)"
        };
        a.status = AlertStatus::Withdrawn;
        a.review_by = None;
        a.closed = Some(Closure {
            at: now,
            reason: reason.into(),
            result_id: None,
        });
        a.updated_at = Some(now);
        changes.push(change(EventType::AlertWithdrawn, AuditAction::Withdrawn, a, BY_RULES, trigger, reason.into(), now));
    }
    changes
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
    for a in r.alerts.iter().filter(|a| a.analyte.as_deref() == Some(analyte) && a.rule != AKI_RULE) {
        add(a.rule.clone());
    }
    if limits.aki.enabled && matches!(analyte, "creatinine" | "potassium") {
        add(AKI_RULE.to_owned());
    }
    rules
}

fn evaluate(r: &mut PatientRecord, rules: &[String], trigger: Option<&str>, limits: &CriticalLimits, now: DateTime<Utc>) -> Vec<Change> {
    let mut changes = Vec::new();
    for rule in rules {
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
