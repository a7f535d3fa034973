//! Charts of a timeline as SVG, written by hand: two panels over the same seconds — concurrency on
//! top, pods below (every other numeric column: desired, ready, actual …), panic seconds shaded.
//! Pods are drawn as steps, concurrency as a line; an empty field (not sampled) leaves a gap.
//!
//! SVG rather than a PNG from `plotters`: a PNG with text needs plotters' font features (a font
//! loader and rasteriser); an SVG is a few lines of text that any browser opens, and it adds no
//! dependency.

use std::fmt::Write as _;

/// Columns of a CSV table by name, each indexed by row; an empty field is `NaN` (not sampled).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<(String, Vec<f64>)>,
}

impl Table {
    /// The values of column `name` (case-insensitive).
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.columns
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Reads a CSV with a header line; numeric columns are kept (empty field = `NaN`), columns with
/// any other text are dropped. Blank lines and `#` lines are skipped.
pub fn parse_table(text: &str) -> Result<Table, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let (_, header) = lines.next().ok_or("the table is empty")?;
    let names: Vec<String> = header.split(',').map(|c| c.trim().to_string()).collect();
    let mut values: Vec<Option<Vec<f64>>> = vec![Some(Vec::new()); names.len()];
    for (n, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != names.len() {
            return Err(format!(
                "line {n}: {} fields, the header has {}",
                fields.len(),
                names.len()
            ));
        }
        for (col, field) in values.iter_mut().zip(fields) {
            let parsed = if field.is_empty() {
                Some(f64::NAN)
            } else {
                field.parse::<f64>().ok().filter(|v| v.is_finite())
            };
            match (col.as_mut(), parsed) {
                (Some(c), Some(v)) => c.push(v),
                _ => *col = None,
            }
        }
    }
    let columns = names
        .into_iter()
        .zip(values)
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .collect();
    Ok(Table { columns })
}

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

/// The SVG chart of `table`: x = column `second` (else the row number), top = the columns whose
/// name contains `concurrency`, bottom = every other column except `panic`, which shades the
/// seconds where it is 1. Columns named `actual` or `observed …` are dashed.
pub fn svg(title: &str, table: &Table) -> String {
    let rows = table.columns.first().map_or(0, |(_, v)| v.len());
    let xs: Vec<f64> = match table.column("second") {
        Some(s) => s.to_vec(),
        None => (0..rows).map(|i| i as f64).collect(),
    };
    let x_max = xs.iter().copied().filter(|x| x.is_finite()).fold(1.0, f64::max);
    let sx = |x: f64| LEFT + x / x_max * (WIDTH - LEFT - RIGHT);

    let top: Vec<(&str, &[f64])> = table
        .columns
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().contains("concurrency"))
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let bottom: Vec<(&str, &[f64])> = table
        .columns
        .iter()
        .filter(|(n, _)| {
            let n = n.to_ascii_lowercase();
            !(n == "second" || n == "panic" || n.contains("concurrency"))
        })
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();

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
            let dash = if name.starts_with("observed") || name.eq_ignore_ascii_case("actual") {
                r#" stroke-dasharray="5,3""#
            } else {
                ""
            };
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
    fn table_keeps_numeric_columns_and_gaps() {
        let t = parse_table("second,concurrency,desired,rev\n0,1,,a\n1,2,3,b\n").expect("parse");
        assert_eq!(t.column("second"), Some(&[0.0, 1.0][..]));
        let desired = t.column("desired").expect("desired");
        assert!(desired[0].is_nan() && desired[1] == 3.0);
        assert!(t.column("rev").is_none(), "text column dropped");
        assert!(parse_table("a,b\n1\n").expect_err("short").contains("line 2"));
    }

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
}
