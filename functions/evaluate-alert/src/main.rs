//! The evaluate-alert function alone, for a container beside a Dapr sidecar.
use std::sync::Arc;
use wardwatch_domain::lanes::{ESCALATE, LAB_RESULTED};

fn main() -> std::process::ExitCode {
    wardwatch_adapters::launch::main("evaluate-alert", &[LAB_RESULTED], |w| {
        let evaluate = evaluate_alert::EvaluateAlert::new(w.records(), (*w.config.rules).clone());
        let escalate = evaluate_alert::Escalate::new(w.records());
        w.app()
            .binding(LAB_RESULTED, Arc::new(evaluate))
            // A Dapr cron binding named `escalate`, or a PingSource whose sink URI ends in /escalate.
            .binding(ESCALATE, Arc::new(escalate))
            .cloudevents_default(LAB_RESULTED)
    })
}
