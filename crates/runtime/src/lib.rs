//! A thin function runtime on hyper and tokio.
//!
//! A [`Function`] is a handler: an [`Event`] (payload + context) in, an [`Output`] or a
//! [`Failure`] out. The runtime owns everything around it — the HTTP server and its routes, the
//! Dapr input-binding contract, CloudEvents, the direct AMQP consumer, the rejected lanes,
//! readiness, metrics, tracing and graceful shutdown — so that the same handler runs in one
//! process with every other function, against Redis and RabbitMQ, or alone beside a Dapr sidecar.

pub mod amqp;
pub mod cloudevents;
pub mod config;
pub mod delivery;
pub mod function;
pub mod http;
pub mod metrics;
pub mod mllp;
pub mod telemetry;

pub use config::{Backend, Config, ConfigError, Secret};
pub use delivery::{Disposition, RejectLane};
pub use function::{BoxFuture, Event, Failure, FailureKind, Function, Output, Trigger};
pub use http::{App, AppBuilder, Body, Endpoint, full, json_response, serve};
pub use metrics::Metrics;

/// Resolves on SIGTERM (what Knative and Kubernetes send) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received: draining"),
        () = term => tracing::info!("SIGTERM received: draining"),
    }
}
