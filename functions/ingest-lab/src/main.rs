//! The ingest-lab function alone, for a container beside a Dapr sidecar.
use std::sync::Arc;
use wardwatch_domain::lanes::LAB_FEED;

fn main() -> std::process::ExitCode {
    wardwatch_adapters::launch::main("ingest-lab", &[LAB_FEED], |w| {
        let ingest = ingest_lab::IngestLab::new(w.records(), w.config.identity.clone());
        w.app()
            .binding(LAB_FEED, Arc::new(ingest))
            .cloudevents_default(LAB_FEED)
    })
}
