//! The admit function alone, for a container beside a Dapr sidecar.
use std::sync::Arc;

fn main() -> std::process::ExitCode {
    wardwatch_adapters::launch::main("admit", &[], |w| {
        let admit = Arc::new(admit::Admit::new(w.records(), w.config.identity.clone()));
        let hl7v2 = admit::hl7v2::Hl7v2::new(admit.clone(), w.config.identity.clone(), w.config.zone)
            .with_rules(w.config.rules.clone());
        w.app()
            .fhir("/fhir", admit)
            .endpoint("/fhir/metadata", admit::capabilities::Capabilities::new(false))
            .endpoint("/hl7v2", hl7v2)
    })
}
