//! Charts of a timeline as SVG, written by hand: two panels over the same seconds — concurrency on
//! top, pods below (every other numeric column: desired, ready, actual …), panic seconds shaded.
//! Pods are drawn as steps, concurrency as a line; an empty field (not sampled) leaves a gap.
//!
//! The same chart as a PNG ([`png_chart`], drawn by `crate::plot` with plotters), written next to
//! the SVG.

use std::fmt::Write as _;

use crate::plot::{Chart, Panel, Series};
pub use crate::plot::{Table, parse_table};

const WIDTH: f64 = 960.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 150.0;
const PANELS: [(f64, f64); 2] = [(48.0, 250.0), (300.0, 500.0)];
const HEIGHT: f64 = 550.0;
const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A round step for axis ticks: about `n` ticks up to `max`.
fn tick_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// The seconds: column `second`, else the row numbers.
fn seconds(table: &Table) -> Vec<f64> {
    match table.column("second") {
        Some(s) => s.to_vec(),
        None => {
            let rows = table.columns.first().map_or(0, |(_, v)| v.len());
            (0..rows).map(|i| i as f64).collect()
        }
    }
}

/// The top panel's columns (names containing `concurrency`) and the bottom's (every other but
/// `second` and `panic`).
type Columns<'t> = Vec<(&'t str, &'t [f64])>;
fn panels(table: &Table) -> (Columns<'_>, Columns<'_>) {
    table
        .columns
        .iter()
        .filter(|(n, _)| !(n.eq_ignore_ascii_case("second") || n.eq_ignore_ascii_case("panic")))
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .partition(|(n, _)| n.to_ascii_lowercase().contains("concurrency"))
}

/// Whether a column is drawn dashed: what was observed beside what the replay computed.
fn dashed(name: &str) -> bool {
    name.starts_with("observed") || name.eq_ignore_ascii_case("actual")
}

/// One band per run of panic rows, from its first second to the first second out of panic (or
/// `x_max`).
fn panic_bands(xs: &[f64], panic: &[f64], x_max: f64) -> Vec<(f64, f64)> {
    let mut start: Option<f64> = None;
    let mut bands = Vec::new();
    for (x, p) in xs.iter().zip(panic) {
        match (start, *p >= 0.5) {
            (None, true) => start = Some(*x),
            (Some(s), false) => {
                bands.push((s, *x));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        bands.push((s, x_max));
    }
    bands
}

/// The chart of [`svg`] for `crate::plot::write_png`: concurrency on top, pods below as steps,
/// panic seconds shaded.
pub fn png_chart(title: &str, table: &Table) -> Chart {
    let xs = seconds(table);
    let x_max = xs.iter().copied().filter(|x| x.is_finite()).fold(1.0, f64::max);
    let (top, bottom) = panels(table);
    let series = |columns: &Columns<'_>, steps: bool| {
        columns
            .iter()
            .map(|(n, v)| Series {
                dashed: dashed(n),
                steps,
                ..Series::line(n, &xs, v)
            })
            .collect()
    };
    Chart {
        title: title.to_string(),
        xlabel: "second".to_string(),
        panels: vec![
            Panel {
                ylabel: "concurrency".to_string(),
                left: series(&top, false),
                ..Panel::default()
            },
            Panel {
                ylabel: "pods".to_string(),
                left: series(&bottom, true),
                ..Panel::default()
            },
        ],
        bands: table
            .column("panic")
            .map(|p| panic_bands(&xs, p, x_max))
            .unwrap_or_default(),
        band_label: "panic".to_string(),
    }
}

/// The SVG chart of `table`: x = column `second` (else the row number), top = the columns whose
/// name contains `concurrency`, bottom = every other column except `panic`, which shades the
/// seconds where it is 1. Columns named `actual` or `observed …` are dashed.
pub fn svg(title: &str, table: &Table) -> String {
    let xs = seconds(table);
    let x_max = xs.iter().copied().filter(|x| x.is_finite()).fold(1.0, f64::max);
    let sx = |x: f64| LEFT + x / x_max * (WIDTH - LEFT - RIGHT);

    let (top, bottom) = panels(table);

    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="24" font-size="15">{}</text>
"#,
        escape(title)
    );

    // Panic seconds, shaded over both panels: one band per run of panic rows, from its first
    // second to the first second out of panic (or the end).
    if let Some(panic) = table.column("panic") {
        let bands = panic_bands(&xs, panic, x_max);
        for (from, to) in bands {
            let _ = writeln!(
                out,
                r##"<rect x="{:.1}" y="{}" width="{:.2}" height="{}" fill="#fde0dd"/>"##,
                sx(from),
                PANELS[0].0,
                (sx(to) - sx(from)).max(1.0),
                PANELS[1].1 - PANELS[0].0
            );
        }
        let _ = writeln!(
            out,
            r##"<rect x="{}" y="{}" width="12" height="12" fill="#fde0dd"/><text x="{}" y="{}">panic</text>"##,
            WIDTH - RIGHT + 12.0,
            PANELS[1].1 - 12.0,
            WIDTH - RIGHT + 30.0,
            PANELS[1].1 - 2.0
        );
    }

    let mut colour = 0;
    for (panel, (series, label, steps)) in [(&top, "concurrency", false), (&bottom, "pods", true)]
        .into_iter()
        .enumerate()
    {
        let (y0, y1) = PANELS[panel];
        let y_max = series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|v| v.is_finite())
            .fold(1.0, f64::max);
        let step = if steps {
            tick_step(y_max, 5.0).max(1.0)
        } else {
            tick_step(y_max, 5.0)
        };
        let y_top = (y_max / step).ceil() * step;
        let sy = |y: f64| y1 - y / y_top * (y1 - y0);
        // Axes, grid and labels.
        let mut t = 0.0;
        while t <= y_top + 1e-9 {
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e6e6e6"/><text x="{}" y="{:.1}" text-anchor="end">{t}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                sy(t) + 4.0,
                y = sy(t)
            );
            t += step;
        }
        let _ = writeln!(
            out,
            r##"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{label}</text>"##,
            (y0 + y1) / 2.0,
            (y0 + y1) / 2.0
        );
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{y0}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
            WIDTH - LEFT - RIGHT,
            y1 - y0
        );
        // The series: pods as steps, concurrency as a line; gaps where a value is missing.
        for (i, (name, values)) in series.iter().enumerate() {
            let c = COLOURS[colour % COLOURS.len()];
            colour += 1;
            let mut path = String::new();
            let mut pen_down = false;
            let mut last_y = 0.0;
            for (x, v) in xs.iter().zip(values.iter()) {
                if !(x.is_finite() && v.is_finite()) {
                    pen_down = false;
                    continue;
                }
                let (px, py) = (sx(*x), sy(*v));
                if !pen_down {
                    let _ = write!(path, "M{px:.1},{py:.1}");
                    pen_down = true;
                } else if steps {
                    let _ = write!(path, "L{px:.1},{last_y:.1}L{px:.1},{py:.1}");
                } else {
                    let _ = write!(path, "L{px:.1},{py:.1}");
                }
                last_y = py;
            }
            let dash = if dashed(name) { r#" stroke-dasharray="5,3""# } else { "" };
            let _ = writeln!(
                out,
                r#"<path d="{path}" fill="none" stroke="{c}" stroke-width="1.6"{dash}/>"#
            );
            let ly = y0 + 14.0 + 18.0 * i as f64;
            let _ = writeln!(
                out,
                r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
                WIDTH - RIGHT + 10.0,
                WIDTH - RIGHT + 26.0,
                WIDTH - RIGHT + 30.0,
                ly + 4.0,
                escape(name)
            );
        }
    }
    // The seconds axis.
    let step = tick_step(x_max, 10.0).max(1.0);
    let mut t = 0.0;
    while t <= x_max + 1e-9 {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{t}</text>"#,
            sx(t),
            PANELS[1].1 + 16.0
        );
        t += step;
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">second</text>"#,
        (LEFT + WIDTH - RIGHT) / 2.0,
        PANELS[1].1 + 34.0
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_draws_each_series_and_the_panic_seconds() {
        let t =
            parse_table("second,concurrency,desired,ready,panic\n0,0,1,1,0\n1,5,2,1,1\n2,5,2,2,0\n").expect("parse");
        let out = svg("a <b> & c", &t);
        assert!(out.starts_with("<svg") && out.ends_with("</svg>\n"));
        assert!(out.contains("a &lt;b&gt; &amp; c"));
        assert_eq!(out.matches("<path ").count(), 3, "concurrency, desired, ready");
        assert_eq!(
            out.matches(r##"fill="#fde0dd"/>"##).count(),
            2,
            "one panic second + legend"
        );
        let t = parse_table("second,concurrency,stable_concurrency,observed ready\n0,1,2,3\n1,1,2,3\n").expect("parse");
        let both = svg("", &t);
        assert_eq!(
            both.matches("stroke-dasharray").count(),
            2,
            "observed dashed, path + legend"
        );
        assert_eq!(both.matches("<path ").count(), 3);
        for name in [">concurrency<", ">desired<", ">ready<", ">panic<"] {
            assert!(out.contains(name), "{name}");
        }
    }

    #[test]
    fn png_chart_has_the_svg_panels_steps_and_panic_bands() {
        let t = parse_table("second,concurrency,desired,observed ready,panic\n0,0,1,1,0\n1,5,2,1,1\n2,5,2,2,1\n")
            .expect("parse");
        let chart = png_chart("t", &t);
        let names = |p: usize| chart.panels[p].left.iter().map(|s| s.name.as_str()).collect::<Vec<_>>();
        assert_eq!(names(0), ["concurrency"]);
        assert_eq!(names(1), ["desired", "observed ready"]);
        assert!(chart.panels[1].left.iter().all(|s| s.steps));
        assert!(chart.panels[1].left[1].dashed && !chart.panels[1].left[0].dashed);
        assert_eq!(chart.bands, vec![(1.0, 2.0)], "panic from second 1 to the end");
    }
}
