//! The admit function alone, for a container beside a Dapr sidecar.
use std::sync::Arc;

use wardwatch_domain::lanes::ADT_FEED;

fn main() -> std::process::ExitCode {
    wardwatch_adapters::launch::main("admit", &[ADT_FEED], |w| {
        let admit = Arc::new(admit::Admit::new(w.records(), w.config.identity.clone()));
        let hl7v2 = admit::hl7v2::Hl7v2::new(admit.clone(), w.config.identity.clone(), w.config.zone);
        let feed = admit::feed::AdtFeed::new(admit.clone(), w.config.identity.clone(), w.config.zone);
        w.app()
            .fhir("/fhir", admit)
            .endpoint("/fhir/metadata", admit::capabilities::Capabilities::new(false))
            .endpoint("/hl7v2", hl7v2)
            .binding(ADT_FEED, Arc::new(feed))
    })
}
