//! The ingest-lab function alone, for a container beside a Dapr sidecar.
use std::sync::Arc;
use wardwatch_domain::lanes::LAB_FEED;

fn main() -> std::process::ExitCode {
    wardwatch_adapters::launch::main("ingest-lab", &[LAB_FEED], |w| {
        let settings = ingest_lab::LabSettings::from_config(&w.config);
        let search = ingest_lab::search::ObservationSearch::new(w.records(), w.config.identity.clone(), "/fhir");
        let ingest = ingest_lab::IngestLab::with_settings(w.records(), settings);
        w.app()
            .binding(LAB_FEED, Arc::new(ingest))
            .endpoint("/fhir/Observation", search)
            .cloudevents_default(LAB_FEED)
    })
}
