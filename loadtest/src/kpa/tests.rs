//! Each test names the rule of `shared/docs/dapr-knative.md` it pins (§7.2 table, §7.3 bullets,
//! fact 29 for the defaults).

use super::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// A timeline of `secs` seconds at `c`, then `zeros` seconds of nothing.
fn busy_then_idle(secs: usize, c: f64, zeros: usize) -> Vec<f64> {
    let mut v = vec![c; secs];
    v.extend(std::iter::repeat_n(0.0, zeros));
    v
}

// Fact 29: the documented defaults.
#[test]
fn defaults_are_the_documented_ones() {
    let s = Settings::default();
    assert_eq!(s.target, 100.0);
    assert_eq!(s.utilisation, 0.70);
    assert_eq!(s.stable_window, 60);
    assert_eq!(s.panic_window(), 6, "panic window 10 % of 60 s");
    assert_eq!(s.panic_threshold_percentage, 200.0);
    assert_eq!(s.tick, 2);
    assert_eq!(s.scale_to_zero_grace, 30);
    assert_eq!((s.min_scale, s.max_scale, s.initial_scale), (0, 0, 1));
    assert_eq!(s.target_burst_capacity, 211.0);
    assert_eq!((s.max_scale_up_rate, s.max_scale_down_rate), (1000.0, 2.0));
    assert_eq!(s.scale_down_delay, 0);
    assert!(s.enable_scale_to_zero);
    assert_eq!(s.validate(), Ok(()));
}

// §7.3: target = (containerConcurrency if > 0 else 100) [or annotation target, min'ed with
// containerConcurrency] × utilisation, floored at 0.01 ⇒ default 70.
#[test]
fn target_is_target_times_utilisation() {
    assert!(close(Settings::default().target_value(), 70.0));
    let cc = Settings {
        container_concurrency: 10,
        ..Settings::default()
    };
    assert!(
        close(cc.target_value(), 7.0),
        "containerConcurrency 10 < target 100 wins"
    );
    let small = Settings {
        target: 10.0,
        container_concurrency: 50,
        ..Settings::default()
    };
    assert!(
        close(small.target_value(), 7.0),
        "target 10 < containerConcurrency 50 wins"
    );
    let tiny = Settings {
        target: 0.001,
        ..Settings::default()
    };
    assert!(close(tiny.target_value(), 0.01), "floored at 0.01");
}

// §7.3: dspc = ceil(stable / target).
#[test]
fn stable_average_over_target_gives_desired() {
    let s = Settings::default();
    assert_eq!(Decider::default().scale(&s, 0, 140.0, 140.0, 2), 2);
    assert_eq!(Decider::default().scale(&s, 0, 141.0, 141.0, 2), 3);
    assert_eq!(Decider::default().scale(&s, 0, 0.5, 0.5, 1), 1);
}

// §7.3: stable = average over the stable window (60 s); one tick every 2 s. Panic is kept out of
// the way (threshold 1000 %) so that only the stable average decides.
#[test]
fn replay_averages_over_the_stable_window() {
    let s = Settings {
        panic_threshold_percentage: 1000.0,
        min_scale: 1,
        ..Settings::default()
    };
    // Idle for 100 s, then 140 in flight: the 60-s average at second t ≥ 100 is
    // 140 × (t − 99) / 60, over 70 (a second pod) only from t = 130 (31 × 140 / 60 = 72.3).
    let mut timeline = vec![0.0; 100];
    timeline.extend(vec![140.0; 60]);
    let steps = replay(&s, &timeline).expect("replay");
    assert!(steps[..130].iter().all(|st| st.desired == 1 && !st.panic));
    assert_eq!(steps[130].desired, 2);
    assert_eq!(steps[159].desired, 2);
}

// §7.3: panic starts when dppc / ready ≥ panicThreshold (2.0).
#[test]
fn panic_starts_at_the_threshold() {
    let s = Settings::default();
    let mut d = Decider::default();
    d.scale(&s, 0, 70.0, 210.0, 2); // dppc 3, 3/2 < 2
    assert!(!d.panicking());
    d.scale(&s, 2, 70.0, 280.0, 2); // dppc 4, 4/2 ≥ 2
    assert!(d.panicking());
}

// §7.3: while panicking the count never decreases; panic ends once a full stable window passes
// without crossing the threshold.
#[test]
fn panic_never_scales_down_and_ends_after_a_stable_window() {
    let s = Settings::default();
    let mut d = Decider::default();
    assert_eq!(d.scale(&s, 0, 70.0, 560.0, 2), 8, "dppc 8, 8/2 ≥ 2: panic");
    assert_eq!(d.scale(&s, 2, 70.0, 70.0, 8), 8, "no scale down in panic");
    let mut t = 4;
    while t <= 60 {
        assert_eq!(d.scale(&s, t, 70.0, 70.0, 8), 8, "still in panic at {t}");
        assert!(d.panicking());
        t += 2;
    }
    // 62 > 0 + 60: out of panic, and the stable count applies (4 = floor(8 / 2) down-rate floor).
    assert_eq!(d.scale(&s, 62, 70.0, 70.0, 8), 4);
    assert!(!d.panicking());
}

// §7.3: crossing the threshold again extends the panic (the window restarts from that tick).
#[test]
fn crossing_again_extends_the_panic() {
    let s = Settings::default();
    let mut d = Decider::default();
    d.scale(&s, 0, 70.0, 560.0, 2);
    d.scale(&s, 40, 70.0, 1200.0, 8); // dppc 18, 18/8 ≥ 2
    assert!(d.panicking());
    d.scale(&s, 62, 70.0, 70.0, 18);
    assert!(d.panicking(), "62 ≤ 40 + 60");
    d.scale(&s, 102, 70.0, 70.0, 18);
    assert!(!d.panicking());
}

// §7.3: clamp into [.., ceil(maxScaleUpRate × ready)].
#[test]
fn scale_up_is_bounded_by_max_scale_up_rate() {
    let s = Settings {
        max_scale_up_rate: 2.0,
        ..Settings::default()
    };
    assert_eq!(Decider::default().scale(&s, 0, 700.0, 700.0, 1), 2);
    assert_eq!(Decider::default().scale(&s, 0, 700.0, 700.0, 3), 6);
    assert_eq!(Decider::default().scale(&s, 0, 700.0, 700.0, 0), 2, "ready = max(1, 0)");
}

// §7.3: clamp into [floor(ready / maxScaleDownRate), ..].
#[test]
fn scale_down_is_bounded_by_max_scale_down_rate() {
    let s = Settings::default();
    assert_eq!(Decider::default().scale(&s, 0, 0.0, 0.0, 10), 5);
    assert_eq!(Decider::default().scale(&s, 0, 0.0, 0.0, 1), 0);
}

// §7.3: raise to activation-scale if > 0 desired.
#[test]
fn activation_scale_raises_a_nonzero_count() {
    let s = Settings {
        activation_scale: 3,
        ..Settings::default()
    };
    assert_eq!(Decider::default().scale(&s, 0, 10.0, 10.0, 1), 3);
    assert_eq!(Decider::default().scale(&s, 0, 0.0, 0.0, 1), 0);
}

// §7.3: scale-down-delay keeps the max desired count seen within the delay window.
#[test]
fn scale_down_delay_keeps_the_max_of_the_window() {
    let s = Settings {
        scale_down_delay: 10,
        ..Settings::default()
    };
    let mut d = Decider::default();
    assert_eq!(d.scale(&s, 0, 350.0, 350.0, 5), 5);
    for t in [2, 4, 6, 8] {
        assert_eq!(d.scale(&s, t, 70.0, 70.0, 5), 5, "held at {t}");
    }
    assert_eq!(d.scale(&s, 10, 70.0, 70.0, 5), 2, "the 5 of second 0 left the window");
}

// §7.3 scale to zero + §7.2 scale-to-zero-grace-period 30 s: the stable average reaches 0 a
// stable window after the last request, then the last pod goes after the grace period (the
// activator was not in the path before: target-burst-capacity 0).
#[test]
fn scale_to_zero_after_a_stable_window_of_zero_and_the_grace() {
    let s = Settings {
        target_burst_capacity: 0.0,
        ..Settings::default()
    };
    // Last request at second 19; window [20, 79] is all zero at the tick of second 80.
    let steps = replay(&s, &busy_then_idle(20, 35.0, 200)).expect("replay");
    assert!(steps[..110].iter().all(|st| st.desired == 1 && st.ready == 1));
    assert!(steps[110..].iter().all(|st| st.desired == 0 && st.ready == 0));
}

// §7.2: the grace period is an upper bound — the time the activator was already in the data
// path (negative excess burst capacity, §7.3; default target-burst-capacity 211) counts.
#[test]
fn scale_to_zero_is_at_once_when_the_activator_was_in_the_path() {
    let s = Settings::default(); // 1 pod × 100 − 211 − panic < 0: activator in path throughout
    let steps = replay(&s, &busy_then_idle(20, 35.0, 200)).expect("replay");
    assert_eq!(steps[79].desired, 1);
    assert_eq!(steps[80].desired, 0);
}

// §7.2: enable-scale-to-zero false keeps one pod.
#[test]
fn no_scale_to_zero_when_disabled() {
    let s = Settings {
        enable_scale_to_zero: false,
        ..Settings::default()
    };
    let steps = replay(&s, &busy_then_idle(20, 35.0, 200)).expect("replay");
    assert!(steps.iter().all(|st| st.desired == 1));
}

// §7.2: min-scale floor (and fact 28: min-scale 1 keeps a binding consumer up).
#[test]
fn min_scale_is_a_floor() {
    let s = Settings {
        min_scale: 2,
        ..Settings::default()
    };
    let steps = replay(&s, &busy_then_idle(20, 35.0, 200)).expect("replay");
    assert!(steps.iter().all(|st| st.desired == 2));
}

// §7.2: max-scale caps the count.
#[test]
fn max_scale_is_a_cap() {
    let s = Settings {
        max_scale: 3,
        ..Settings::default()
    };
    let steps = replay(&s, &vec![1000.0; 120]).expect("replay");
    assert!(steps.iter().all(|st| st.desired <= 3));
    assert_eq!(steps[119].desired, 3);
    let unbounded = replay(&Settings::default(), &vec![1000.0; 120]).expect("replay");
    assert_eq!(unbounded[119].desired, 15, "ceil(1000 / 70)");
}

// §7.2 initial-scale: the replay starts with initial-scale pods ready.
#[test]
fn the_replay_starts_at_initial_scale() {
    let s = Settings {
        initial_scale: 3,
        ..Settings::default()
    };
    let steps = replay(&s, &[150.0; 10]).expect("replay");
    assert!(steps.iter().all(|st| st.desired == 3 && st.ready == 3));
}

// Model assumption (module docs): a pod asked for is ready pod_start seconds later.
#[test]
fn pods_are_ready_after_the_start_latency() {
    let s = Settings {
        pod_start: 5,
        ..Settings::default()
    };
    let mut timeline = vec![0.0; 10];
    timeline.extend(vec![700.0; 20]);
    let steps = replay(&s, &timeline).expect("replay");
    // Tick of second 10: panic average 700/6 → 2 pods, 2/1 ≥ 2 → panic.
    assert_eq!((steps[10].desired, steps[10].ready), (2, 1));
    assert!(steps[10].panic);
    assert_eq!(steps[14].ready, 1);
    assert!(steps[15].ready >= 2);
}

// §7.2 ranges.
#[test]
fn settings_out_of_range_are_refused() {
    let bad = [
        Settings {
            stable_window: 5,
            ..Settings::default()
        },
        Settings {
            panic_threshold_percentage: 100.0,
            ..Settings::default()
        },
        Settings {
            utilisation: 0.0,
            ..Settings::default()
        },
        Settings {
            min_scale: 4,
            max_scale: 3,
            ..Settings::default()
        },
        Settings {
            target: f64::NAN,
            ..Settings::default()
        },
    ];
    for s in bad {
        assert!(replay(&s, &[1.0]).is_err(), "{s:?}");
    }
    assert!(replay(&Settings::default(), &[f64::INFINITY]).is_err());
    assert!(replay(&Settings::default(), &[-1.0]).is_err());
}

#[test]
fn timeline_csv_is_read_by_column_name() {
    let t = parse_timeline("second,concurrency\n0,1\n1,2.5\n3,4\n").expect("parse");
    assert_eq!(t.concurrency, vec![1.0, 2.5, 0.0, 4.0], "missing second 2 is 0");
    // The observe script's file: other columns, another order, comments.
    let observed = "# from knative-observe.sh\nsecond,desired,actual,ready,concurrency\n0,1,1,1,3\n1,1,1,1,5\n";
    assert_eq!(parse_timeline(observed).expect("parse").concurrency, vec![3.0, 5.0]);
    // A replay's own output reads back.
    let steps = replay(&Settings::default(), &[1.0, 2.0]).expect("replay");
    assert_eq!(
        parse_timeline(&steps_csv(&steps)).expect("parse").concurrency,
        vec![1.0, 2.0]
    );
}

#[test]
fn bad_timeline_csv_names_the_line() {
    for (text, wanted) in [
        ("", "empty"),
        ("second,vus\n0,1\n", "no `concurrency` column"),
        ("second,concurrency\n", "no rows"),
        ("second,concurrency\n0,1\nx,2\n", "line 3"),
        ("second,concurrency\n0,-1\n", "line 2"),
        ("second,concurrency\n0\n", "line 2: too few columns"),
        ("second,concurrency\n99999999,1\n", "beyond a day"),
    ] {
        let err = parse_timeline(text).expect_err(text);
        assert!(err.contains(wanted), "{text:?}: {err}");
    }
}

// §7.3 scale to zero, as knative/serving `pkg/reconciler/autoscaling/kpa/scaler.go`
// handleScaleToZero does it (read for this model; the doc only says "when stable concurrency
// reaches 0"): an active revision keeps 1 pod until it has been active for a stable window, then
// turns inactive, and the last pod goes once it has been inactive for the grace period.
#[test]
fn an_idle_new_revision_keeps_a_pod_for_a_stable_window_then_the_grace() {
    let s = Settings {
        target_burst_capacity: 0.0,
        ..Settings::default()
    };
    let steps = replay(&s, &[0.0; 150]).expect("replay");
    assert!(steps[..90].iter().all(|st| st.desired == 1));
    assert!(steps[90..].iter().all(|st| st.desired == 0));
}

// §7.3 scale from zero: requests at zero pods (buffered by the activator, which reports them)
// make the deployment go 0 → N; the replay asks at the next tick and the pod is ready
// pod_start seconds later.
#[test]
fn scale_from_zero_asks_for_a_pod_and_waits_for_it() {
    let mut timeline = busy_then_idle(20, 35.0, 200);
    timeline.extend(vec![5.0; 10]);
    let steps = replay(&Settings::default(), &timeline).expect("replay");
    assert_eq!((steps[219].desired, steps[219].ready), (0, 0));
    assert_eq!((steps[220].desired, steps[220].ready), (1, 0));
    assert_eq!((steps[222].desired, steps[222].ready), (1, 1));
}
