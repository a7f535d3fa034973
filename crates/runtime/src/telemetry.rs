//! Logging: `tracing` with one span per invocation; text or JSON lines on stdout.
//!
//! Logs carry resource ids, request ids, kinds and JSON locations — never names, birth dates,
//! free text or payloads (patient data), and never credentials.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `RUST_LOG` overrides the default `info` filter.
pub fn init(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,lapin=warn,amq_protocol=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
