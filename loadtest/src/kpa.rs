//! A replay of Knative's KPA (the Knative Pod Autoscaler) over a measured concurrency timeline.
//!
//! Pure and deterministic: [`replay`] takes one observed total concurrency per second (requests in
//! flight summed over the revision's pods, as queue-proxy and the activator report it) and
//! [`Settings`], and returns, per second, the pods the autoscaler would ask for, the pods that
//! would be ready, and whether it would be in panic mode. It is meant for choosing `target` and
//! `min-scale` before deploying; it is a model, not Knative.
//!
//! Rules and defaults follow `shared/docs/dapr-knative.md` §7.2–7.3 (fact 29), which cite
//! knative/serving `pkg/autoscaler/scaling/autoscaler.go` (Scale), `pkg/reconciler/autoscaling/
//! resources/target.go`, `multiscaler.go` (tick 2 s) and `config.go` (bucket 1 s):
//! - target value = `target` (min'ed with `containerConcurrency` when > 0) × utilisation, floored
//!   at 0.01 — default 100 × 0.70 = 70 per pod;
//! - every tick (2 s): `ready = max(1, ready pods)`; stable = average concurrency over the stable
//!   window (60 s), panic = average over the panic window (10 % of it: 6 s); `dspc =
//!   ceil(stable/target)`, `dppc = ceil(panic/target)`, both clamped into `[floor(ready /
//!   max-scale-down-rate), ceil(max-scale-up-rate × ready)]`, raised to `activation-scale` when > 0;
//! - panic starts when `dppc / ready ≥ panic threshold` (200 %); in panic the count never falls
//!   (the max of stable, panic and the previous panic maximum); panic ends once a full stable
//!   window passes without crossing the threshold;
//! - `scale-down-delay` keeps the largest count asked for within the delay;
//! - `min-scale`/`max-scale` bound the count (max 0 = unlimited);
//! - scale to zero: when the count asked for is 0, the last pod goes only after the revision has
//!   been active for a stable window and then after the scale-to-zero grace period (30 s, an
//!   upper bound: the time the activator was already in the data path counts towards it) — the
//!   order of these steps is from knative/serving `pkg/reconciler/autoscaling/kpa/scaler.go`
//!   (handleScaleToZero), read for this model; the doc gives only the outline. The
//!   activator is in the path while the excess burst capacity `floor(ready × target − target-
//!   burst-capacity − panic concurrency)` is negative (target-burst-capacity 211 by default,
//!   −1 = always, 0 = only from zero).
//!
//! Where the doc says nothing the model chooses, and says so here:
//! - the stable and panic averages cover only the seconds recorded so far when fewer than a
//!   window have passed (as Knative's `TimedFloat64Buckets.WindowAverage` does); ticks fall on the
//!   seconds 0, 2, 4 …;
//! - the replay starts with `initial-scale` pods ready (a revision already deployed) and not in
//!   panic;
//! - a pod asked for becomes ready `pod_start` seconds later (2 s by default: §7.4 reports ~2 s
//!   on an idle node, 4–15 s with a mesh or a cold image — measure yours); pods removed stop at
//!   once, not-yet-ready ones first;
//! - the activator's "poke" on a request at zero pods is not modelled: scale-from-zero waits for
//!   the next tick.

use std::fmt;

pub mod chart;

/// The autoscaler's settings. [`Settings::default`] holds Knative's documented defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Annotation `autoscaling.knative.dev/target`: concurrent requests per pod (default 100).
    pub target: f64,
    /// `spec.template.spec.containerConcurrency` (0 = unlimited); when > 0 the smaller of it and
    /// `target` is used.
    pub container_concurrency: u32,
    /// `target-utilization-percentage` / 100 (default 0.70).
    pub utilisation: f64,
    /// `window`, the stable window in seconds (default 60, range 6 s – 1 h).
    pub stable_window: u32,
    /// `panic-window-percentage` (default 10.0, range 1–100).
    pub panic_window_percentage: f64,
    /// `panic-threshold-percentage` (default 200.0, range 110–1000).
    pub panic_threshold_percentage: f64,
    /// `max-scale-up-rate` (default 1000.0).
    pub max_scale_up_rate: f64,
    /// `max-scale-down-rate` (default 2.0).
    pub max_scale_down_rate: f64,
    /// `min-scale` (default 0).
    pub min_scale: u32,
    /// `max-scale` (default 0 = unlimited).
    pub max_scale: u32,
    /// `initial-scale` (default 1): the pods ready when the replay starts.
    pub initial_scale: u32,
    /// `activation-scale` (default 1; must be ≥ 2 when set).
    pub activation_scale: u32,
    /// `scale-down-delay` in seconds (default 0).
    pub scale_down_delay: u32,
    /// `target-burst-capacity` (default 211; 0 = activator only from zero, −1 = always).
    pub target_burst_capacity: f64,
    /// `enable-scale-to-zero` (default true).
    pub enable_scale_to_zero: bool,
    /// `scale-to-zero-grace-period` in seconds (default 30).
    pub scale_to_zero_grace: u32,
    /// The autoscaler's tick in seconds (2 in Knative).
    pub tick: u32,
    /// Model assumption, not a Knative setting: seconds from a pod being asked for to its being
    /// ready (default 2).
    pub pod_start: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            target: 100.0,
            container_concurrency: 0,
            utilisation: 0.70,
            stable_window: 60,
            panic_window_percentage: 10.0,
            panic_threshold_percentage: 200.0,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            min_scale: 0,
            max_scale: 0,
            initial_scale: 1,
            activation_scale: 1,
            scale_down_delay: 0,
            target_burst_capacity: 211.0,
            enable_scale_to_zero: true,
            scale_to_zero_grace: 30,
            tick: 2,
            pod_start: 2,
        }
    }
}

/// A setting out of the range Knative accepts (or the model needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub String);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

impl Settings {
    /// Checks the ranges of §7.2.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |what: &str| Err(SettingsError(what.to_string()));
        if !(self.target.is_finite() && self.target > 0.0) {
            return bad("target must be > 0");
        }
        if !(self.utilisation > 0.0 && self.utilisation <= 1.0) {
            return bad("utilisation must be in (0, 1]");
        }
        if !(6..=3600).contains(&self.stable_window) {
            return bad("stable window must be 6 s – 1 h");
        }
        if !(1.0..=100.0).contains(&self.panic_window_percentage) {
            return bad("panic window percentage must be 1–100");
        }
        if !(110.0..=1000.0).contains(&self.panic_threshold_percentage) {
            return bad("panic threshold percentage must be 110–1000");
        }
        if self.max_scale_up_rate <= 1.0 || self.max_scale_down_rate <= 1.0 {
            return bad("max scale up/down rates must be > 1");
        }
        if self.max_scale > 0 && self.min_scale > self.max_scale {
            return bad("min-scale must not exceed max-scale");
        }
        if self.activation_scale == 0 {
            return bad("activation scale must be ≥ 1");
        }
        if self.scale_down_delay > 3600 {
            return bad("scale-down-delay must be 0 s – 1 h");
        }
        if self.target_burst_capacity < -1.0 {
            return bad("target burst capacity must be ≥ -1");
        }
        if self.tick == 0 {
            return bad("tick must be ≥ 1 s");
        }
        Ok(())
    }

    /// The per-pod target before utilisation (Knative's `TotalValue`).
    pub fn total_value(&self) -> f64 {
        if self.container_concurrency > 0 {
            self.target.min(f64::from(self.container_concurrency))
        } else {
            self.target
        }
    }

    /// The per-pod target the autoscaler divides by: total × utilisation, at least 0.01.
    pub fn target_value(&self) -> f64 {
        (self.total_value() * self.utilisation).max(0.01)
    }

    /// The panic window in whole seconds (stable window × percentage, at least 1 s).
    pub fn panic_window(&self) -> u32 {
        let w = (f64::from(self.stable_window) * self.panic_window_percentage / 100.0).round();
        // In range: stable_window ≤ 3600 and the percentage ≤ 100.
        (w as u32).max(1)
    }

    fn panic_threshold(&self) -> f64 {
        self.panic_threshold_percentage / 100.0
    }
}

/// What one autoscaler tick decides from the two averages and the ready pods (Knative's
/// `autoscaler.Scale`, without the reconciler's bounds and scale-to-zero handling).
#[derive(Clone, Debug, Default)]
pub struct Decider {
    /// The tick (second) panic mode was last entered or extended; `None` when not panicking.
    panic_time: Option<u32>,
    max_panic_pods: u32,
    /// (second, count) of recent decisions, for `scale-down-delay`.
    delay: Vec<(u32, u32)>,
}

impl Decider {
    /// One tick at second `now`: `stable` and `panic` are the window averages, `ready_pods` the
    /// pods ready now. Returns the count asked for.
    pub fn scale(&mut self, settings: &Settings, now: u32, stable: f64, panic: f64, ready_pods: u32) -> u32 {
        let ready = f64::from(ready_pods.max(1));
        let max_up = (settings.max_scale_up_rate * ready).ceil();
        // The revision receives traffic (Knative's `Reachable`).
        let max_down = (ready / settings.max_scale_down_rate).floor();
        let target = settings.target_value();
        let dspc = (stable / target).ceil();
        let dppc = (panic / target).ceil();
        let clamp = |x: f64| x.max(max_down).min(max_up) as u32;
        let mut stable_pods = clamp(dspc);
        let mut panic_pods = clamp(dppc);
        let activation = settings.activation_scale;
        if activation > 1 {
            if dspc > 0.0 && activation > stable_pods {
                stable_pods = activation;
            }
            if dppc > 0.0 && activation > panic_pods {
                panic_pods = activation;
            }
        }
        let over = dppc / ready >= settings.panic_threshold();
        match self.panic_time {
            _ if over => self.panic_time = Some(now),
            Some(since) if now > since + settings.stable_window => {
                self.panic_time = None;
                self.max_panic_pods = 0;
            }
            _ => {}
        }
        let mut desired = stable_pods;
        if self.panic_time.is_some() {
            desired = desired.max(panic_pods).max(self.max_panic_pods);
            self.max_panic_pods = desired;
        }
        if settings.scale_down_delay > 0 {
            let delay = settings.scale_down_delay;
            self.delay.retain(|&(t, _)| t + delay > now);
            self.delay.push((now, desired));
            desired = self.delay.iter().map(|&(_, d)| d).max().unwrap_or(desired);
        }
        desired
    }

    /// Whether the last tick left the autoscaler in panic mode.
    pub fn panicking(&self) -> bool {
        self.panic_time.is_some()
    }
}

/// One second of a replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub second: u32,
    pub concurrency: f64,
    /// The pods the autoscaler asks for (the Deployment's replicas).
    pub desired: u32,
    /// The pods ready to take requests.
    pub ready: u32,
    pub panic: bool,
}

/// Average of `values[from..=to]`.
fn average(values: &[f64], from: usize, to: usize) -> f64 {
    let slice = &values[from..=to];
    slice.iter().sum::<f64>() / slice.len() as f64
}

/// Replays `concurrency` (one value per second, from second 0) through the KPA.
pub fn replay(settings: &Settings, concurrency: &[f64]) -> Result<Vec<Step>, SettingsError> {
    settings.validate()?;
    if let Some(bad) = concurrency.iter().find(|c| !(c.is_finite() && **c >= 0.0)) {
        return Err(SettingsError(format!("concurrency must be a number ≥ 0, not {bad}")));
    }
    let stable_window = settings.stable_window as usize;
    let panic_window = settings.panic_window() as usize;
    let bounds = |x: u32| {
        let x = x.max(settings.min_scale);
        if settings.max_scale > 0 {
            x.min(settings.max_scale)
        } else {
            x
        }
    };

    let mut decider = Decider::default();
    // Second each pod is (or will be) ready at; the revision starts with initial-scale ready pods.
    let mut pods: Vec<u32> = vec![0; bounds(settings.initial_scale) as usize];
    let mut active_since: Option<u32> = Some(0);
    let mut inactive_since: Option<u32> = None;
    let mut proxy_since: Option<u32> = None;
    let mut steps = Vec::with_capacity(concurrency.len());

    for (i, &c) in concurrency.iter().enumerate() {
        let now = i as u32;
        let ready_now = |pods: &[u32]| pods.iter().filter(|&&r| r <= now).count() as u32;
        if now.is_multiple_of(settings.tick) {
            let ready = ready_now(&pods);
            let stable = average(concurrency, (i + 1).saturating_sub(stable_window), i);
            let panic = average(concurrency, (i + 1).saturating_sub(panic_window), i);
            let asked = bounds(decider.scale(settings, now, stable, panic, ready));

            // Is the activator in the data path (the SKS in proxy mode)?
            let ebc = if settings.target_burst_capacity < 0.0 {
                -1.0
            } else if settings.target_burst_capacity == 0.0 {
                0.0
            } else {
                (f64::from(ready) * settings.total_value() - settings.target_burst_capacity - panic).floor()
            };
            if ebc < 0.0 || pods.is_empty() {
                proxy_since.get_or_insert(now);
            } else {
                proxy_since = None;
            }

            let want = if asked > 0 {
                inactive_since = None;
                active_since.get_or_insert(now);
                Some(asked)
            } else if !settings.enable_scale_to_zero {
                Some(1)
            } else if pods.is_empty() {
                Some(0)
            } else {
                let active_for = active_since.map_or(u32::MAX, |s| now - s);
                if inactive_since.is_none() && active_for < settings.stable_window {
                    // Scale down to at most 1 for the rest of the stable window.
                    Some(1)
                } else {
                    // Inactive: the activator takes the path; the last pod waits for the grace.
                    active_since = None;
                    let inactive = *inactive_since.get_or_insert(now);
                    let proxy = *proxy_since.get_or_insert(now);
                    let grace = settings.scale_to_zero_grace;
                    if now - inactive >= grace || now - proxy >= grace {
                        Some(0)
                    } else {
                        None // not applied: the pods stay as they are
                    }
                }
            };
            if let Some(want) = want {
                let want = want as usize;
                if want > pods.len() {
                    let at = now + settings.pod_start;
                    pods.resize(want, at);
                } else {
                    // Remove the pods ready last (not-yet-ready ones) first.
                    pods.sort_unstable();
                    pods.truncate(want);
                }
            }
        }
        steps.push(Step {
            second: now,
            concurrency: c,
            desired: pods.len() as u32,
            ready: ready_now(&pods),
            panic: decider.panicking(),
        });
    }
    Ok(steps)
}

/// A concurrency timeline read from CSV.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    /// Concurrency per second from second 0; seconds missing from the file are 0.
    pub concurrency: Vec<f64>,
}

/// The longest timeline read: a day of seconds.
pub const MAX_SECONDS: u32 = 86_400;

/// Reads a CSV timeline: a header line naming the columns, of which `second` (whole seconds,
/// 0 or more, any order) and `concurrency` (a number ≥ 0) are used and any others ignored (so the
/// files `knative-observe.sh` and `kpa replay` write can be read back). Blank lines and lines
/// starting with `#` are skipped. A second given twice keeps its last value; a missing second is
/// 0 (no request in flight). Errors name the line.
pub fn parse_timeline(text: &str) -> Result<Timeline, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let (_, header) = lines.next().ok_or("the timeline is empty")?;
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let find = |name: &str| {
        columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("line 1: the header has no `{name}` column: {header}"))
    };
    let (sec_col, conc_col) = (find("second")?, find("concurrency")?);
    let mut concurrency: Vec<f64> = Vec::new();
    for (n, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let field = |col: usize| {
            fields
                .get(col)
                .copied()
                .ok_or_else(|| format!("line {n}: too few columns"))
        };
        let second: u32 = field(sec_col)?
            .parse()
            .map_err(|_| format!("line {n}: `second` is not a whole number ≥ 0"))?;
        if second >= MAX_SECONDS {
            return Err(format!("line {n}: second {second} is beyond a day"));
        }
        let value: f64 = field(conc_col)?
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("line {n}: `concurrency` is not a number ≥ 0"))?;
        let at = second as usize;
        if concurrency.len() <= at {
            concurrency.resize(at + 1, 0.0);
        }
        concurrency[at] = value;
    }
    if concurrency.is_empty() {
        return Err("the timeline has no rows".to_string());
    }
    Ok(Timeline { concurrency })
}

/// The CSV a replay writes: `second,concurrency,desired,ready,panic` (panic 0/1).
pub fn steps_csv(steps: &[Step]) -> String {
    let mut out = String::from("second,concurrency,desired,ready,panic\n");
    for s in steps {
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            s.second,
            s.concurrency,
            s.desired,
            s.ready,
            u8::from(s.panic)
        ));
    }
    out
}

#[cfg(test)]
mod tests;
