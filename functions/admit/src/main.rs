//! The admit function alone, for a container beside a Dapr sidecar.
use std::sync::Arc;

fn main() -> std::process::ExitCode {
    wardwatch_adapters::launch::main("admit", &[], |w| {
        let admit = admit::Admit::new(w.store.clone(), w.bus.clone(), w.config.mrn_system.clone());
        w.app().fhir("/fhir", Arc::new(admit))
    })
}
