//! `kpa`: replay a measured concurrency timeline through Knative's KPA rules (see
//! `wardwatch_loadtest::kpa`) and chart it, to choose `target` and `min-scale` before deploying;
//! and chart what `loadtest/knative-observe.sh` measured on a cluster.
//!
//! `kpa replay --timeline t.csv [--out r.csv] [--chart r.svg] [settings…]` reads a CSV with a
//! header and the columns `second,concurrency` (others ignored), writes
//! `second,concurrency,desired,ready,panic` (to stdout without `--out`) and prints a summary to
//! stderr. `kpa chart --input t.csv --chart t.svg` charts any such CSV.

// The replay's CSV goes to stdout when no --out is given.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use wardwatch_loadtest::kpa::chart::{Table, parse_table, png_chart, svg};
use wardwatch_loadtest::kpa::{Settings, Step, parse_timeline, replay, steps_csv};

#[derive(Parser)]
#[command(
    name = "kpa",
    about = "Replay a concurrency timeline through Knative's KPA rules and chart the pods"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a timeline (CSV with `second,concurrency`) and write the pods the KPA would run
    Replay {
        /// The timeline: a CSV whose header names `second` and `concurrency`
        #[arg(long)]
        timeline: PathBuf,
        /// Where to write `second,concurrency,desired,ready,panic` (default: stdout)
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where to write an SVG chart (with the timeline's own `desired`/`ready` columns, if
        /// any, drawn dashed as "observed"); the same chart as a PNG is written next to it
        /// (`.png` instead of the extension)
        #[arg(long)]
        chart: Option<PathBuf>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Chart a CSV (a `second` column, `concurrency` on top, other numeric columns as pods) as an
    /// SVG, and as a PNG next to it
    Chart {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        chart: PathBuf,
        /// The chart's title (default: the input's file name)
        #[arg(long)]
        title: Option<String>,
    },
}

/// Knative's settings; the defaults are Knative's (shared/docs/dapr-knative.md fact 29).
#[derive(Args)]
struct SettingsArgs {
    /// Annotation `autoscaling.knative.dev/target`: concurrent requests per pod
    #[arg(long, default_value_t = 100.0)]
    target: f64,
    /// `containerConcurrency` (0 = unlimited; when > 0 the smaller of it and target is used)
    #[arg(long, default_value_t = 0)]
    container_concurrency: u32,
    /// Target utilisation as a fraction (`target-utilization-percentage` / 100)
    #[arg(long, default_value_t = 0.70)]
    utilisation: f64,
    /// Stable window in seconds (annotation `window`)
    #[arg(long, default_value_t = 60)]
    window: u32,
    #[arg(long, default_value_t = 10.0)]
    panic_window_percentage: f64,
    #[arg(long, default_value_t = 200.0)]
    panic_threshold_percentage: f64,
    #[arg(long, default_value_t = 1000.0)]
    max_scale_up_rate: f64,
    #[arg(long, default_value_t = 2.0)]
    max_scale_down_rate: f64,
    #[arg(long, default_value_t = 0)]
    min_scale: u32,
    /// 0 = unlimited
    #[arg(long, default_value_t = 0)]
    max_scale: u32,
    /// Pods ready when the replay starts
    #[arg(long, default_value_t = 1)]
    initial_scale: u32,
    #[arg(long, default_value_t = 1)]
    activation_scale: u32,
    /// Seconds
    #[arg(long, default_value_t = 0)]
    scale_down_delay: u32,
    /// 0 = activator only from zero, -1 = always in the path
    #[arg(long, default_value_t = 211.0, allow_negative_numbers = true)]
    target_burst_capacity: f64,
    /// Keep at least one pod (`enable-scale-to-zero: false`)
    #[arg(long)]
    no_scale_to_zero: bool,
    /// Seconds (`scale-to-zero-grace-period`)
    #[arg(long, default_value_t = 30)]
    scale_to_zero_grace: u32,
    /// Model assumption: seconds from a pod being asked for to its being ready
    #[arg(long, default_value_t = 2)]
    pod_start: u32,
}

impl From<&SettingsArgs> for Settings {
    fn from(a: &SettingsArgs) -> Self {
        Settings {
            target: a.target,
            container_concurrency: a.container_concurrency,
            utilisation: a.utilisation,
            stable_window: a.window,
            panic_window_percentage: a.panic_window_percentage,
            panic_threshold_percentage: a.panic_threshold_percentage,
            max_scale_up_rate: a.max_scale_up_rate,
            max_scale_down_rate: a.max_scale_down_rate,
            min_scale: a.min_scale,
            max_scale: a.max_scale,
            initial_scale: a.initial_scale,
            activation_scale: a.activation_scale,
            scale_down_delay: a.scale_down_delay,
            target_burst_capacity: a.target_burst_capacity,
            enable_scale_to_zero: !a.no_scale_to_zero,
            scale_to_zero_grace: a.scale_to_zero_grace,
            tick: 2,
            pod_start: a.pod_start,
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// What a user weighs: cost (pod-seconds) against waiting (seconds with requests and no ready
/// pod, seconds over the per-pod target).
fn summary(settings: &Settings, steps: &[Step]) -> String {
    let target = settings.target_value();
    let peak_c = steps.iter().map(|s| s.concurrency).fold(0.0, f64::max);
    let peak_d = steps.iter().map(|s| s.desired).max().unwrap_or(0);
    let pod_seconds: u64 = steps.iter().map(|s| u64::from(s.desired)).sum();
    let panic = steps.iter().filter(|s| s.panic).count();
    let cold = steps.iter().filter(|s| s.concurrency > 0.0 && s.ready == 0).count();
    let over = steps
        .iter()
        .filter(|s| s.concurrency > f64::from(s.ready) * target)
        .count();
    let zero = steps.iter().filter(|s| s.desired == 0).count();
    format!(
        "seconds {}  target/pod {target:.2}  peak concurrency {peak_c}  peak pods {peak_d}  \
         pod-seconds {pod_seconds}\nseconds in panic {panic}  at zero pods {zero}  \
         with requests and no ready pod {cold}  over target on the ready pods {over}\n",
        steps.len()
    )
}

/// The replay's columns plus the timeline's own `desired`/`ready`/`actual`, as "observed …".
fn replay_table(steps: &[Step], timeline: &Table) -> Table {
    let n = steps.len();
    let mut columns = vec![
        (
            "second".to_string(),
            steps.iter().map(|s| f64::from(s.second)).collect(),
        ),
        ("concurrency".to_string(), steps.iter().map(|s| s.concurrency).collect()),
        (
            "desired".to_string(),
            steps.iter().map(|s| f64::from(s.desired)).collect(),
        ),
        ("ready".to_string(), steps.iter().map(|s| f64::from(s.ready)).collect()),
        (
            "panic".to_string(),
            steps.iter().map(|s| f64::from(u8::from(s.panic))).collect(),
        ),
    ];
    if let Some(seconds) = timeline.column("second") {
        for name in ["desired", "actual", "ready"] {
            if let Some(values) = timeline.column(name) {
                let mut by_second = vec![f64::NAN; n];
                for (s, v) in seconds.iter().zip(values) {
                    if let Some(slot) = by_second.get_mut(*s as usize) {
                        *slot = *v;
                    }
                }
                columns.push((format!("observed {name}"), by_second));
            }
        }
    }
    Table { columns }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Replay {
            timeline,
            out,
            chart,
            settings,
        } => {
            let settings = Settings::from(&settings);
            let text = read(&timeline)?;
            let parsed = parse_timeline(&text).map_err(|e| format!("{}: {e}", timeline.display()))?;
            let steps = replay(&settings, &parsed.concurrency).map_err(|e| e.to_string())?;
            let csv = steps_csv(&steps);
            match &out {
                Some(path) => write(path, &csv)?,
                None => print!("{csv}"),
            }
            if let Some(path) = &chart {
                // The timeline parsed once as a timeline, so it is a table too.
                let observed = parse_table(&text).unwrap_or_default();
                let title = format!(
                    "KPA replay of {}: target {} × {}, min-scale {}, max-scale {} (0 = none)",
                    timeline.display(),
                    settings.total_value(),
                    settings.utilisation,
                    settings.min_scale,
                    settings.max_scale
                );
                let table = replay_table(&steps, &observed);
                write(path, &svg(&title, &table))?;
                write_png_beside(path, &title, &table)?;
            }
            eprint!("{}", summary(&settings, &steps));
            Ok(())
        }
        Command::Chart { input, chart, title } => {
            let table = parse_table(&read(&input)?).map_err(|e| format!("{}: {e}", input.display()))?;
            let title = title.unwrap_or_else(|| input.display().to_string());
            write(&chart, &svg(&title, &table))?;
            write_png_beside(&chart, &title, &table)
        }
    }
}

/// The same chart as a PNG next to the SVG (`replay.svg` → `replay.png`).
fn write_png_beside(svg_path: &Path, title: &str, table: &Table) -> Result<(), String> {
    let png = svg_path.with_extension("png");
    wardwatch_loadtest::plot::write_png(&png_chart(title, table), &png, 1000, 650)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kpa: {e}");
            ExitCode::FAILURE
        }
    }
}
