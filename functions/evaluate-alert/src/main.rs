//! The evaluate-alert function alone, for a container beside a Dapr sidecar.
use std::sync::Arc;
use wardwatch_domain::lanes::LAB_RESULTED;

fn main() -> std::process::ExitCode {
    wardwatch_adapters::launch::main("evaluate-alert", &[LAB_RESULTED], |w| {
        let evaluate = evaluate_alert::EvaluateAlert::new(w.records(), (*w.config.rules).clone());
        w.app()
            .binding(LAB_RESULTED, Arc::new(evaluate))
            .cloudevents_default(LAB_RESULTED)
    })
}
