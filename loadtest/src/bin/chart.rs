//! `chart`: PNG charts of the benchmarks' time series (plotters, with the font compiled in), and
//! k6's raw CSV output aggregated per second.
//!
//!     chart line --csv F.csv --x second --y p50_ms,p99_ms --title T --ylabel ms \
//!         [--y2 requests_per_s --y2label requests/s] --out F.png
//!     chart k6 --csv target/k6/admissions.csv --out target/k6/admissions-series.csv \
//!         [--chart target/k6/admissions.png --title T]
//!
//! `line` draws the named numeric columns of a CSV (header line; an empty field leaves a gap)
//! against `--x`, with a legend, and `--y2` columns against a right axis of their own. `k6`
//! writes `second,requests_per_s,failed_per_s,p50_ms,p95_ms,p99_ms,max_ms` (see
//! `wardwatch_loadtest::k6`) and, with `--chart`, draws p50/p95/p99 on the left and requests/s
//! and failed/s on the right.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wardwatch_loadtest::k6;
use wardwatch_loadtest::plot::{Chart, Panel, column_list, parse_table, series_of, write_png};

#[derive(Parser)]
#[command(
    name = "chart",
    about = "PNG charts of benchmark time series; k6's CSV output per second"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lines of a CSV's columns against one of them, as a PNG
    Line {
        /// The CSV (a header line, then numbers; an empty field is a gap)
        #[arg(long)]
        csv: PathBuf,
        /// The x column (seconds since the start)
        #[arg(long)]
        x: String,
        /// Columns drawn against the left axis, comma-separated
        #[arg(long)]
        y: String,
        /// Columns drawn against a right axis, comma-separated
        #[arg(long)]
        y2: Option<String>,
        #[arg(long, default_value = "")]
        title: String,
        #[arg(long, default_value = "")]
        ylabel: String,
        #[arg(long, default_value = "")]
        y2label: String,
        #[arg(long, default_value = "seconds since start")]
        xlabel: String,
        /// The PNG to write
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1000)]
        width: u32,
        #[arg(long, default_value_t = 500)]
        height: u32,
    },
    /// k6's `--out csv=` file per second: requests/s, failed/s, latency p50/p95/p99/max
    K6 {
        /// k6's raw CSV output
        #[arg(long)]
        csv: PathBuf,
        /// The per-second CSV to write
        #[arg(long)]
        out: PathBuf,
        /// Also draw it: latency on the left, requests/s and failed/s on the right
        #[arg(long)]
        chart: Option<PathBuf>,
        #[arg(long, default_value = "")]
        title: String,
    },
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A one-panel chart of `csv`'s columns.
fn line_chart(csv: &Path, x: &str, y: &str, y2: Option<&str>, labels: [&str; 4]) -> Result<Chart, String> {
    let text = std::fs::read_to_string(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    let table = parse_table(&text).map_err(|e| format!("{}: {e}", csv.display()))?;
    let left = series_of(&table, x, &column_list(y))?;
    let right = match y2 {
        Some(y2) => series_of(&table, x, &column_list(y2))?,
        None => Vec::new(),
    };
    let [title, xlabel, ylabel, y2label] = labels.map(str::to_string);
    Ok(Chart {
        title,
        xlabel,
        panels: vec![Panel {
            ylabel,
            left,
            y2label,
            right,
        }],
        ..Chart::default()
    })
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Line {
            csv,
            x,
            y,
            y2,
            title,
            ylabel,
            y2label,
            xlabel,
            out,
            width,
            height,
        } => {
            let chart = line_chart(&csv, &x, &y, y2.as_deref(), [&title, &xlabel, &ylabel, &y2label])?;
            write_png(&chart, &out, width, height)
        }
        Command::K6 { csv, out, chart, title } => {
            let file = File::open(&csv).map_err(|e| format!("{}: {e}", csv.display()))?;
            let samples = k6::read_samples(BufReader::new(file)).map_err(|e| format!("{}: {e}", csv.display()))?;
            write(&out, &k6::to_csv(&k6::aggregate(&samples)))?;
            if let Some(png) = chart {
                let chart = line_chart(
                    &out,
                    "second",
                    "p50_ms,p95_ms,p99_ms",
                    Some("requests_per_s,failed_per_s"),
                    [&title, "seconds since start", "http_req_duration (ms)", "requests/s"],
                )?;
                write_png(&chart, &png, 1000, 500)?;
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chart: {e}");
            ExitCode::FAILURE
        }
    }
}
