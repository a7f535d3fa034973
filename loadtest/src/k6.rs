//! k6's raw CSV output (`k6 run --out csv=F.csv`) aggregated per second: requests/s, failed/s,
//! and `http_req_duration` p50/p95/p99/max in ms, for a chart of a run over time.
//!
//! k6 writes one row per sample: `metric_name,timestamp,metric_value,…tags…` with the timestamp
//! in Unix seconds by default (`K6_CSV_TIME_FORMAT=unix`; `unix_milli`, `unix_micro` and
//! `unix_nano` are read too, told apart by their size). One request gives one `http_reqs` row
//! (value 1), one `http_req_failed` row (1 when it failed: a status ≥ 400 or no answer) and one
//! `http_req_duration` row (ms; 0 for a request that got no answer). Other metrics are ignored.
//! With Unix seconds, the first and last seconds of a run are partial. Requests made in
//! `setup()` or `teardown()` (group `::setup`, `::teardown`: the scripts' server check) are left
//! out, so that the seconds count from the load's first request.

use std::io::Read;

/// One second of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecondStats {
    /// Seconds since the run's first request (the second it falls in).
    pub second: u64,
    pub requests: u64,
    pub failed: u64,
    /// `http_req_duration` percentiles and maximum in ms; `NaN` in a second without requests.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// A sample that matters here.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sample {
    Request,
    Failed(bool),
    DurationMs(f64),
}

/// The `p`-th percentile (0–100) of sorted values, interpolated between the closest ranks as
/// k6 computes its own `p(95)`; `NaN` when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rank = p / 100.0 * (n - 1) as f64;
            let lower = rank.floor() as usize;
            let upper = (lower + 1).min(n - 1);
            let weight = rank - lower as f64;
            sorted[lower] + (sorted[upper] - sorted[lower]) * weight
        }
    }
}

/// A k6 timestamp in seconds: Unix seconds, or milli-, micro- or nanoseconds, told apart by
/// magnitude (any date after 1973 in one unit is larger than every date before 2286 in the next).
pub fn timestamp_seconds(field: &str) -> Option<f64> {
    let v: f64 = field.trim().parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    Some(if v >= 1e17 {
        v / 1e9
    } else if v >= 1e14 {
        v / 1e6
    } else if v >= 1e11 {
        v / 1e3
    } else {
        v
    })
}

/// Per-second statistics of `(timestamp in seconds, sample)`; seconds count from the earliest
/// sample, every second up to the last is present (empty ones with no requests and `NaN`
/// latencies).
pub fn aggregate(samples: &[(f64, Sample)]) -> Vec<SecondStats> {
    let Some(start) = samples.iter().map(|(t, _)| t.floor()).reduce(f64::min) else {
        return Vec::new();
    };
    let last = samples.iter().map(|(t, _)| t.floor()).fold(start, f64::max);
    let n = (last - start) as usize + 1;
    let mut seconds: Vec<(SecondStats, Vec<f64>)> = (0..n)
        .map(|i| {
            (
                SecondStats {
                    second: i as u64,
                    ..SecondStats::default()
                },
                Vec::new(),
            )
        })
        .collect();
    for (t, sample) in samples {
        let Some((stats, durations)) = seconds.get_mut((t.floor() - start) as usize) else {
            continue;
        };
        match sample {
            Sample::Request => stats.requests += 1,
            Sample::Failed(failed) => stats.failed += u64::from(*failed),
            Sample::DurationMs(ms) => durations.push(*ms),
        }
    }
    seconds
        .into_iter()
        .map(|(stats, mut durations)| {
            durations.sort_by(f64::total_cmp);
            SecondStats {
                p50_ms: percentile(&durations, 50.0),
                p95_ms: percentile(&durations, 95.0),
                p99_ms: percentile(&durations, 99.0),
                max_ms: durations.last().copied().unwrap_or(f64::NAN),
                ..stats
            }
        })
        .collect()
}

/// Reads k6's CSV output (with its header line) into the samples [`aggregate`] takes.
pub fn read_samples(reader: impl Read) -> Result<Vec<(f64, Sample)>, String> {
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let headers = csv.headers().map_err(|e| e.to_string())?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("no `{name}` column: is this k6's --out csv output?"))
    };
    let (metric, time, value) = (column("metric_name")?, column("timestamp")?, column("metric_value")?);
    let group = headers.iter().position(|h| h == "group");
    let mut samples = Vec::new();
    for (row, record) in csv.records().enumerate() {
        let record = record.map_err(|e| e.to_string())?;
        let field = |i: usize| record.get(i).unwrap_or_default();
        if matches!(group.map(field), Some("::setup" | "::teardown")) {
            continue;
        }
        let number = || {
            field(value)
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("row {}: metric_value `{}` is not a number", row + 2, field(value)))
        };
        let sample = match field(metric) {
            "http_reqs" => Sample::Request,
            "http_req_failed" => Sample::Failed(number()? != 0.0),
            "http_req_duration" => Sample::DurationMs(number()?),
            _ => continue,
        };
        let t = timestamp_seconds(field(time)).ok_or_else(|| {
            format!(
                "row {}: timestamp `{}` is not Unix time (set K6_CSV_TIME_FORMAT=unix)",
                row + 2,
                field(time)
            )
        })?;
        samples.push((t, sample));
    }
    Ok(samples)
}

/// The per-second statistics as CSV: `second,requests_per_s,failed_per_s,p50_ms,p95_ms,p99_ms,max_ms`
/// (latencies empty in a second without requests).
pub fn to_csv(seconds: &[SecondStats]) -> String {
    let ms = |v: f64| {
        if v.is_finite() {
            format!("{v:.3}")
        } else {
            String::new()
        }
    };
    let mut out = String::from("second,requests_per_s,failed_per_s,p50_ms,p95_ms,p99_ms,max_ms\n");
    for s in seconds {
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            s.second,
            s.requests,
            s.failed,
            ms(s.p50_ms),
            ms(s.p95_ms),
            ms(s.p99_ms),
            ms(s.max_ms)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_k6() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert!((percentile(&v, 95.0) - 3.85).abs() < 1e-9);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn timestamps_in_any_unit_become_seconds() {
        assert_eq!(timestamp_seconds("1764770000"), Some(1_764_770_000.0));
        assert_eq!(timestamp_seconds("1764770000500"), Some(1_764_770_000.5));
        assert_eq!(timestamp_seconds("1764770000500000"), Some(1_764_770_000.5));
        assert_eq!(timestamp_seconds("1764770000500000000"), Some(1_764_770_000.5));
        assert_eq!(timestamp_seconds("2025-12-03T10:00:00Z"), None);
    }

    #[test]
    fn samples_are_counted_per_second_with_empty_seconds_kept() {
        let mut samples = vec![
            (100.2, Sample::Request),
            (100.2, Sample::Failed(false)),
            (100.2, Sample::DurationMs(2.0)),
        ];
        for ms in [4.0, 6.0] {
            samples.extend([
                (101.9, Sample::Request),
                (101.9, Sample::Failed(false)),
                (101.9, Sample::DurationMs(ms)),
            ]);
        }
        samples.extend([
            (103.0, Sample::Request),
            (103.0, Sample::Failed(true)),
            (103.0, Sample::DurationMs(9.0)),
        ]);
        let s = aggregate(&samples);
        assert_eq!(s.len(), 4, "seconds 0..=3");
        assert_eq!((s[0].requests, s[0].failed, s[0].p50_ms, s[0].max_ms), (1, 0, 2.0, 2.0));
        assert_eq!((s[1].requests, s[1].p50_ms, s[1].max_ms), (2, 5.0, 6.0));
        assert_eq!(s[2].requests, 0);
        assert!(s[2].p99_ms.is_nan());
        assert_eq!((s[3].second, s[3].failed), (3, 1));
        assert!(aggregate(&[]).is_empty());
        let csv = to_csv(&s);
        assert!(csv.starts_with("second,requests_per_s,failed_per_s,p50_ms,p95_ms,p99_ms,max_ms\n0,1,0,2.000,"));
        assert!(csv.contains("\n2,0,0,,,,\n"), "{csv}");
    }

    #[test]
    fn k6_csv_is_read_with_quoted_fields_and_other_metrics_skipped() {
        let text = "metric_name,timestamp,metric_value,check,error,error_code,expected_response,group,method,name,proto,scenario,service,status,subproto,tls_version,url,extra_tags,metadata\n\
            http_reqs,1764769990,1.000000,,,,true,::setup,GET,http://127.0.0.1:8080/healthz,HTTP/1.1,,,200,,,http://127.0.0.1:8080/healthz,,\n\
            http_req_duration,1764769990,0.400000,,,,true,::setup,GET,http://127.0.0.1:8080/healthz,HTTP/1.1,,,200,,,http://127.0.0.1:8080/healthz,,\n\
            http_reqs,1764770000,1.000000,,,,true,,POST,http://127.0.0.1:8080/fhir,HTTP/1.1,default,,200,,,http://127.0.0.1:8080/fhir,,\n\
            http_req_duration,1764770000,1.250000,,,,true,,POST,http://127.0.0.1:8080/fhir,HTTP/1.1,default,,200,,,http://127.0.0.1:8080/fhir,,\n\
            http_req_failed,1764770000,0.000000,,,,true,,POST,http://127.0.0.1:8080/fhir,HTTP/1.1,default,,200,,,http://127.0.0.1:8080/fhir,,\n\
            http_reqs,1764770001,1.000000,,\"dial: connection refused, again\",1212,true,,POST,x,,default,,0,,,x,,\n\
            http_req_failed,1764770001,1.000000,,\"dial: connection refused, again\",1212,true,,POST,x,,default,,0,,,x,,\n\
            vus,1764770001,3.000000,,,,,,,,,,,,,,,,\n\
            checks,1764770001,1.000000,admission 200,,,,,,,,default,,,,,,,\n";
        let samples = read_samples(text.as_bytes()).expect("read");
        assert_eq!(samples.len(), 5, "setup's request, vus and checks skipped");
        let s = aggregate(&samples);
        assert_eq!((s[0].requests, s[0].failed, s[0].p50_ms), (1, 0, 1.25));
        assert_eq!((s[1].requests, s[1].failed), (1, 1));
        assert!(s[1].p50_ms.is_nan(), "this second has no duration sample");
        let err = read_samples("a,b\n1,2\n".as_bytes()).expect_err("not k6");
        assert!(err.contains("metric_name"), "{err}");
    }
}
