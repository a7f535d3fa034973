//! Prometheus metrics, served as text on `GET /metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(&'static str, String)>;

struct Inner {
    registry: Mutex<Registry>,
    requests: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    in_flight: Family<Labels, Gauge>,
    queue_messages: Family<Labels, Gauge>,
    latency: Family<Labels, Histogram>,
    first_request: Gauge<f64, AtomicU64>,
    first_served: AtomicBool,
    started: Instant,
}

/// Cheap to clone; one per process.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Create at the very start of `main`: the start → first request gauge counts from here.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wardwatch");
        let requests = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let rejected = Family::<Labels, Counter>::default();
        let in_flight = Family::<Labels, Gauge>::default();
        let queue_messages = Family::<Labels, Gauge>::default();
        let latency = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
        });
        let first_request = Gauge::<f64, AtomicU64>::default();
        registry.register("requests", "Invocations by function and trigger", requests.clone());
        registry.register(
            "failures",
            "Failed invocations by function and failure kind",
            failures.clone(),
        );
        registry.register(
            "rejected",
            "Deliveries recorded on a rejected lane, by lane",
            rejected.clone(),
        );
        registry.register("in_flight", "Invocations in progress by function", in_flight.clone());
        registry.register(
            "queue_messages",
            "Messages ready on a consumed RabbitMQ queue (not yet delivered), as the broker last reported them",
            queue_messages.clone(),
        );
        registry.register(
            "invocation_duration_seconds",
            "Invocation latency by function and trigger",
            latency.clone(),
        );
        registry.register(
            "start_to_first_request_seconds",
            "Seconds from process start to the first request served (cold start)",
            first_request.clone(),
        );
        Self(Arc::new(Inner {
            registry: Mutex::new(registry),
            requests,
            failures,
            rejected,
            in_flight,
            queue_messages,
            latency,
            first_request,
            first_served: AtomicBool::new(false),
            started: Instant::now(),
        }))
    }

    /// Start timing one invocation; call [`InvocationTimer::finish`] when it ends.
    pub fn start(&self, function: &'static str, trigger: &'static str) -> InvocationTimer {
        self.0
            .requests
            .get_or_create(&vec![("function", function.into()), ("trigger", trigger.into())])
            .inc();
        self.0
            .in_flight
            .get_or_create(&vec![("function", function.into())])
            .inc();
        InvocationTimer {
            metrics: self.clone(),
            function,
            trigger,
            start: Instant::now(),
            done: false,
        }
    }

    pub fn failure(&self, function: &'static str, kind: &'static str) {
        self.0
            .failures
            .get_or_create(&vec![("function", function.into()), ("kind", kind.into())])
            .inc();
    }

    /// The broker's count of messages ready on `queue` (a backlog: more arriving than is consumed).
    pub fn queue_messages(&self, queue: &str, ready: u32) {
        self.0
            .queue_messages
            .get_or_create(&vec![("queue", queue.to_owned())])
            .set(i64::from(ready));
    }

    pub fn rejected(&self, lane: &str) {
        self.0.rejected.get_or_create(&vec![("lane", lane.to_owned())]).inc();
    }

    /// Record the cold-start figure once, when the first request has been answered.
    pub fn served(&self) {
        if !self.0.first_served.swap(true, Ordering::Relaxed) {
            self.0.first_request.set(self.0.started.elapsed().as_secs_f64());
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.0.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

/// Ends an invocation's in-flight count and records its latency, also when dropped early.
pub struct InvocationTimer {
    metrics: Metrics,
    function: &'static str,
    trigger: &'static str,
    start: Instant,
    done: bool,
}

impl InvocationTimer {
    pub fn finish(mut self) {
        self.record();
    }
    fn record(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let m = &self.metrics.0;
        m.in_flight
            .get_or_create(&vec![("function", self.function.into())])
            .dec();
        m.latency
            .get_or_create(&vec![
                ("function", self.function.into()),
                ("trigger", self.trigger.into()),
            ])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for InvocationTimer {
    fn drop(&mut self) {
        self.record();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invocation_is_counted_and_timed() {
        let m = Metrics::new();
        m.start("admit", "http").finish();
        m.failure("admit", "invalid");
        m.served();
        let text = m.render();
        assert!(
            text.contains(r#"wardwatch_requests_total{function="admit",trigger="http"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"wardwatch_failures_total{function="admit",kind="invalid"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"wardwatch_in_flight{function="admit"} 0"#), "{text}");
        assert!(text.contains("wardwatch_invocation_duration_seconds_count"), "{text}");
        assert!(text.contains("wardwatch_start_to_first_request_seconds"), "{text}");
    }
}
