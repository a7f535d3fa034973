//! The admit function alone, for a container beside a Dapr sidecar.
use std::sync::Arc;

use wardwatch_adapters::launch::serve_main_with;
use wardwatch_domain::lanes::ADT_FEED;
use wardwatch_runtime::{Config, Metrics};

fn main() -> std::process::ExitCode {
    let metrics = Metrics::new();
    serve_main_with(
        "admit",
        Config::from_env(),
        metrics,
        &[ADT_FEED],
        |w| {
            let admit = Arc::new(admit::Admit::new(w.records(), w.config.identity.clone()));
            let hl7v2 = admit::hl7v2::Hl7v2::new(admit.clone(), w.config.identity.clone(), w.config.zone)
                .with_rules(w.config.rules.clone());
            let feed = admit::feed::AdtFeed::new(admit.clone(), w.config.identity.clone(), w.config.zone)
                .with_rules(w.config.rules.clone());
            w.app()
                .fhir("/fhir", admit)
                .endpoint("/fhir/metadata", admit::capabilities::Capabilities::new(false))
                .endpoint("/hl7v2", hl7v2)
                .binding(ADT_FEED, Arc::new(feed))
                .build()
        },
        // Transactions spanning several patients that a crash left part-way are finished.
        |w, _| {
            let admit = admit::Admit::new(w.records(), w.config.identity.clone());
            async move { admit.roll_forward_at_start().await }
        },
    )
}
