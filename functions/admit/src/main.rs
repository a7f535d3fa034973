//! The admit function alone, for a container beside a Dapr sidecar.
use std::sync::Arc;

fn main() -> std::process::ExitCode {
    wardwatch_adapters::launch::main("admit", &[], |w| {
        let admit = admit::Admit::new(w.records(), w.config.identity.clone());
        w.app().fhir("/fhir", Arc::new(admit))
    })
}
