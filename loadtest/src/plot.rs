//! PNG charts of time series with `plotters` (its bitmap backend and PNG encoder), for the
//! benchmark tools: one or more panels over the same x axis, each with lines on a left axis and
//! optionally on a right one (latency on the left, throughput on the right), a legend, and shaded
//! x ranges.
//!
//! The text is drawn with DejaVu Sans compiled into the binary (`loadtest/fonts/`, its licence
//! beside it) through plotters' `ab_glyph` feature: no system font, fontconfig or FreeType is
//! needed, so a chart looks the same on every machine.
//!
//! Also the reader of the CSV tables these charts come from ([`parse_table`]).

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

/// The font every chart's text is drawn with (Bitstream Vera licence: `loadtest/fonts/LICENSE`).
const FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// The series' colours, in order (the same as the SVG charts of `kpa`).
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
];
const BAND: RGBColor = RGBColor(0xfd, 0xe0, 0xdd);

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

/// One line of a chart: points `(x, y)`; a point whose x or y is not finite leaves a gap.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (e.g. what was observed, beside what a model computed).
    pub dashed: bool,
    /// Drawn as steps (the value holds until the next point), for counts such as pods.
    pub steps: bool,
}

impl Series {
    /// A solid line through `ys` against `xs`.
    pub fn line(name: &str, xs: &[f64], ys: &[f64]) -> Self {
        Self {
            name: name.to_string(),
            points: xs.iter().copied().zip(ys.iter().copied()).collect(),
            dashed: false,
            steps: false,
        }
    }

    /// The runs of consecutive finite points, as drawn: steps add the corner point before each
    /// new value.
    pub fn segments(&self) -> Vec<Vec<(f64, f64)>> {
        let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut current: Vec<(f64, f64)> = Vec::new();
        for &(x, y) in &self.points {
            if !(x.is_finite() && y.is_finite()) {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                continue;
            }
            if let (true, Some(&(_, last_y))) = (self.steps, current.last()) {
                current.push((x, last_y));
            }
            current.push((x, y));
        }
        if !current.is_empty() {
            out.push(current);
        }
        out
    }
}

/// One panel: lines against the left axis, and optionally against a right axis of its own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Panel {
    pub ylabel: String,
    pub left: Vec<Series>,
    pub y2label: String,
    pub right: Vec<Series>,
}

/// A chart: a title, then its panels stacked over the same x axis; `bands` are x ranges shaded
/// in every panel (named `band_label` in the first panel's legend).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chart {
    pub title: String,
    pub xlabel: String,
    pub panels: Vec<Panel>,
    pub bands: Vec<(f64, f64)>,
    pub band_label: String,
}

/// The smallest and largest finite values, padded into a range plotters can draw: from 0 when
/// all are positive, `headroom` (a fraction of the span) above the largest, at least 1 wide.
fn range(values: impl Iterator<Item = f64>, headroom: f64) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    let lo = lo.min(0.0);
    let hi = hi + (hi - lo) * headroom;
    if hi - lo < 1e-9 { (lo, lo + 1.0) } else { (lo, hi) }
}

/// An axis label: no trailing zeros, thousands without decimals.
pub fn tick_label(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err("the bundled font could not be read".to_string())
    }
}

/// Writes `chart` as a PNG of `width` × `height` pixels.
pub fn write_png(chart: &Chart, path: &Path, width: u32, height: u32) -> Result<(), String> {
    register_font()?;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    draw(chart, &root).map_err(|e| format!("{}: {e}", path.display()))?;
    root.present().map_err(|e| format!("{}: {e}", path.display()))
}

type DrawResult = Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

fn draw(chart: &Chart, root: &DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult {
    root.fill(&WHITE)?;
    // DejaVu Sans averages about 0.55 em a character: a long title gets a smaller font.
    let fit = f64::from(root.dim_in_pixel().0.saturating_sub(20)) / (0.55 * chart.title.chars().count().max(1) as f64);
    let body = root.titled(&chart.title, (FAMILY, fit.clamp(10.0, 20.0)))?;
    let all_x = chart
        .panels
        .iter()
        .flat_map(|p| p.left.iter().chain(&p.right))
        .flat_map(|s| s.points.iter().map(|(x, _)| *x));
    let (x0, x1) = range(all_x, 0.0);
    let areas = body.split_evenly((chart.panels.len().max(1), 1));
    let mut colour = 0;
    for (i, (panel, area)) in chart.panels.iter().zip(&areas).enumerate() {
        let y_of = |series: &[Series]| {
            range(
                series
                    .iter()
                    .flat_map(|s| s.points.iter().map(|(_, y)| *y))
                    .collect::<Vec<_>>()
                    .into_iter(),
                0.08,
            )
        };
        let (y0, y1) = y_of(&panel.left);
        let (r0, r1) = y_of(&panel.right);
        let has_right = !panel.right.is_empty();
        let mut cc = ChartBuilder::on(area)
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .right_y_label_area_size(if has_right { 70 } else { 8 })
            .build_cartesian_2d(x0..x1, y0..y1)?
            .set_secondary_coord(x0..x1, r0..r1);
        cc.configure_mesh()
            .x_desc(chart.xlabel.as_str())
            .y_desc(panel.ylabel.as_str())
            .x_label_formatter(&|v| tick_label(*v))
            .y_label_formatter(&|v| tick_label(*v))
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(0xe6, 0xe6, 0xe6))
            .draw()?;
        if has_right {
            cc.configure_secondary_axes()
                .y_desc(panel.y2label.as_str())
                .y_label_formatter(&|v| tick_label(*v))
                .label_style((FAMILY, 13))
                .axis_desc_style((FAMILY, 14))
                .draw()?;
        }
        if !chart.bands.is_empty() {
            let anno = cc.draw_series(
                chart
                    .bands
                    .iter()
                    .map(|&(a, b)| Rectangle::new([(a, y0), (b, y1)], BAND.mix(0.8).filled())),
            )?;
            if i == 0 && !chart.band_label.is_empty() {
                anno.label(chart.band_label.as_str())
                    .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], BAND.filled()));
            }
        }
        for (series, right) in panel
            .left
            .iter()
            .map(|s| (s, false))
            .chain(panel.right.iter().map(|s| (s, true)))
        {
            let c = COLOURS[colour % COLOURS.len()];
            colour += 1;
            let style = c.stroke_width(2);
            let segments = series.segments();
            let mut labelled = false;
            for segment in segments.iter().map(Vec::as_slice).chain(std::iter::once(&[][..])) {
                // The empty segment at the end carries the legend entry of a series with no point.
                if labelled && segment.is_empty() {
                    break;
                }
                let points = segment.iter().copied();
                let anno = match (series.dashed, right) {
                    (false, false) => cc.draw_series(LineSeries::new(points, style))?,
                    (false, true) => cc.draw_secondary_series(LineSeries::new(points, style))?,
                    (true, false) => cc.draw_series(DashedLineSeries::new(points, 6, 4, style))?,
                    (true, true) => cc.draw_secondary_series(DashedLineSeries::new(points, 6, 4, style))?,
                };
                if !labelled {
                    let name = if right {
                        format!("{} (right)", series.name)
                    } else {
                        series.name.clone()
                    };
                    // Two strokes: a gap between them when dashed.
                    let (a, b) = if series.dashed {
                        ((0, 6), (10, 18))
                    } else {
                        ((0, 9), (9, 18))
                    };
                    anno.label(name).legend(move |(x, y)| {
                        let style = c.stroke_width(2);
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(a.0, 0), (a.1, 0)], style)
                            + PathElement::new(vec![(b.0, 0), (b.1, 0)], style)
                    });
                    labelled = true;
                }
            }
        }
        cc.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FAMILY, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0x99, 0x99, 0x99))
            .draw()?;
    }
    Ok(())
}

/// `--y a,b,c` into column names (trimmed, empty ones dropped).
pub fn column_list(spec: &str) -> Vec<String> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The series named by `names` from `table` against column `x`.
pub fn series_of(table: &Table, x: &str, names: &[String]) -> Result<Vec<Series>, String> {
    let xs = table.column(x).ok_or_else(|| format!("no numeric column `{x}`"))?;
    names
        .iter()
        .map(|n| {
            table
                .column(n)
                .map(|ys| Series::line(n, xs, ys))
                .ok_or_else(|| format!("no numeric column `{n}`"))
        })
        .collect()
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
    fn segments_split_at_gaps_and_steps_add_corners() {
        let s = Series::line("a", &[0.0, 1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, f64::NAN, 4.0, 5.0]);
        assert_eq!(
            s.segments(),
            vec![vec![(0.0, 1.0), (1.0, 2.0)], vec![(3.0, 4.0), (4.0, 5.0)]]
        );
        let steps = Series {
            steps: true,
            ..Series::line("b", &[0.0, 1.0, 2.0], &[1.0, 3.0, 2.0])
        };
        assert_eq!(
            steps.segments(),
            vec![vec![(0.0, 1.0), (1.0, 1.0), (1.0, 3.0), (2.0, 3.0), (2.0, 2.0)]]
        );
        assert!(Series::line("c", &[0.0], &[f64::NAN]).segments().is_empty());
    }

    #[test]
    fn ranges_start_at_zero_and_are_never_empty() {
        assert_eq!(range([f64::NAN].into_iter(), 0.0), (0.0, 1.0));
        assert_eq!(range([0.0, 0.0].into_iter(), 0.0), (0.0, 1.0));
        assert_eq!(range([-2.0, 5.0].into_iter(), 0.0), (-2.0, 5.0));
        let (lo, hi) = range([2.0, 10.0].into_iter(), 0.08);
        assert!(lo == 0.0 && hi > 10.0);
        assert_eq!(tick_label(1500.0), "1500");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(2.0), "2");
    }

    #[test]
    fn a_png_is_written() {
        let dir = std::env::temp_dir().join(format!("ww-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("chart.png");
        let xs: Vec<f64> = (0..30).map(f64::from).collect();
        let ys: Vec<f64> = xs.iter().map(|x| x * 2.0).collect();
        let chart = Chart {
            title: "test — latency and throughput".into(),
            xlabel: "seconds since start".into(),
            panels: vec![
                Panel {
                    ylabel: "ms".into(),
                    left: vec![Series::line("p99", &xs, &ys), Series::line("empty", &[], &[])],
                    y2label: "requests/s".into(),
                    right: vec![Series {
                        dashed: true,
                        ..Series::line("rps", &xs, &xs)
                    }],
                },
                Panel {
                    ylabel: "pods".into(),
                    left: vec![Series {
                        steps: true,
                        ..Series::line("ready", &xs, &xs)
                    }],
                    ..Panel::default()
                },
            ],
            bands: vec![(3.0, 5.0)],
            band_label: "panic".into(),
        };
        write_png(&chart, &path, 640, 480).expect("png");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR");
        let width = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
        let height = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        assert_eq!((width, height), (640, 480));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
