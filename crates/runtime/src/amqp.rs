//! The direct RabbitMQ consumer, for running without Dapr: manual ack only after the handler's
//! writes are durable, nack + requeue (after a pause) on transient failure, bounded prefetch,
//! reconnect with backoff, and a drain of in-flight deliveries on shutdown.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::config::Secret;
use crate::delivery::{Deliverer, Disposition};
use crate::function::Trigger;
use crate::metrics::Metrics;

/// How long a delivery that failed transiently waits before it is handed back to the broker,
/// so that a backend outage does not become a hot redelivery loop.
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The first wait before reconnecting; it doubles up to 15 s while the broker stays away.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// How often a consumer asks the broker how many messages wait on its queue
/// (`wardwatch_queue_messages`).
pub const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// The queue arguments every declarer of a Wardwatch queue uses (Dapr's RabbitMQ binding must
/// be configured to match: `durable: "true"`, nothing else).
pub fn queue_declare_options() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Consume `deliverer`'s queue until `stop` turns true. Reconnects on failure.
pub async fn consume(url: Secret, deliverer: Deliverer, prefetch: u16, mut stop: watch::Receiver<bool>) {
    let queue = deliverer.binding().to_owned();
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *stop.borrow() {
            return;
        }
        match consume_once(&url, &deliverer, prefetch, &mut stop, &mut backoff).await {
            Ok(()) => return,
            Err(e) => {
                // lapin's errors do not contain the URL or credentials.
                warn!(queue = %queue, error = %e, retry_in_ms = backoff.as_millis() as u64, "RabbitMQ consumer lost; reconnecting");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stopped(&mut stop) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(15));
            }
        }
    }
}

/// One connection's worth of consuming; `backoff` is reset once consuming has started.
async fn consume_once(
    url: &Secret,
    deliverer: &Deliverer,
    prefetch: u16,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
) -> Result<(), lapin::Error> {
    let queue = deliverer.binding();
    let conn = Connection::connect(url.expose(), ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
    channel
        .queue_declare(queue.into(), queue_declare_options(), FieldTable::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    info!(queue, prefetch, "consuming from RabbitMQ");
    *backoff = FIRST_BACKOFF;
    let depth = report_depth(&conn, queue, deliverer.metrics(), DEPTH_EVERY);
    tokio::pin!(depth);
    let mut depth_done = false;
    let mut tasks = JoinSet::new();
    let outcome = loop {
        tokio::select! {
            () = &mut depth, if !depth_done => depth_done = true,
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let deliverer = deliverer.clone();
                    tasks.spawn(async move {
                        let id = delivery.properties.message_id().as_ref().map(|m| m.to_string());
                        let payload = Bytes::from(delivery.data.clone());
                        match deliverer.deliver(payload, Trigger::Amqp, id).await {
                            Disposition::Done | Disposition::Rejected => {
                                if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                                    warn!(error = %e, "ack failed: the message will be redelivered");
                                }
                            }
                            Disposition::Retry => {
                                tokio::time::sleep(RETRY_PAUSE).await;
                                let _ = delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
                            }
                        }
                    });
                    // Reap finished tasks so the set does not grow.
                    while tasks.try_join_next().is_some() {}
                }
                Some(Err(e)) => break Err(e),
                None => break Err(lapin::Error::from(std::io::Error::other("the consumer stream ended"))),
            },
            () = stopped(stop) => break Ok(()),
        }
    };
    // Stop taking new deliveries, then let the ones in flight finish and be acked.
    let _ = channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await;
    while tasks.join_next().await.is_some() {}
    if outcome.is_ok() {
        let _ = channel.close(200, "shutdown".into()).await;
        let _ = conn.close(200, "shutdown".into()).await;
        info!(queue, "RabbitMQ consumer stopped");
    }
    outcome
}

/// Every `every`, set `queue`'s ready-message count from a passive declare, on a channel of its
/// own (a failed declare closes that channel, not the consumer's). Returns, leaving the gauge
/// as last set and logging a warning, once the broker no longer answers it; the consumer goes
/// on, and a reconnect starts the report again.
pub(crate) async fn report_depth(conn: &Connection, queue: &str, metrics: &Metrics, every: Duration) {
    let channel = match conn.create_channel().await {
        Ok(c) => c,
        Err(e) => {
            debug!(queue, error = %e, "no channel for the queue's depth: not reported");
            return;
        }
    };
    let passive = QueueDeclareOptions {
        passive: true,
        ..queue_declare_options()
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
        {
            Ok(q) => metrics.queue_messages(queue, q.message_count()),
            Err(e) => {
                // The gauge keeps its last value: say so where an operator looks.
                warn!(queue, error = %e, "the queue's depth could not be read: wardwatch_queue_messages no longer updated until the consumer reconnects");
                return;
            }
        }
    }
}

/// Feed an in-process channel (the embedded bus) to a deliverer until `stop`. A delivery that
/// fails transiently is retried after a pause, so nothing is lost.
pub async fn drain_channel(mut rx: mpsc::Receiver<Bytes>, deliverer: Deliverer, mut stop: watch::Receiver<bool>) {
    loop {
        let payload = tokio::select! {
            p = rx.recv() => match p { Some(p) => p, None => return },
            () = stopped(&mut stop) => return,
        };
        loop {
            match deliverer.deliver(payload.clone(), Trigger::Memory, None).await {
                Disposition::Done | Disposition::Rejected => break,
                Disposition::Retry => tokio::select! {
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                    () = stopped(&mut stop) => return,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use lapin::BasicProperties;
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions};

    use super::*;

    /// The test broker's default virtual host; each test makes and deletes its own queue.
    const RABBITMQ: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

    async fn broker() -> Connection {
        Connection::connect(RABBITMQ, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "RabbitMQ is not answering on 127.0.0.1:5672 ({e}). Start it with: rabbitmq-server -detached \
                     (and wait for: rabbitmqctl await_startup); .ci/run starts it"
                )
            })
    }

    #[tokio::test]
    async fn the_depth_of_a_queue_with_messages_waiting_is_reported_as_the_broker_counts_it() {
        let conn = broker().await;
        let queue = format!(
            "ww-test-depth-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let channel = conn.create_channel().await.expect("channel");
        channel
            .queue_declare(queue.as_str().into(), queue_declare_options(), FieldTable::default())
            .await
            .expect("declare");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        for n in 0..3u8 {
            channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &[n],
                    BasicProperties::default(),
                )
                .await
                .expect("publish")
                .await
                .expect("confirmed");
        }
        let metrics = Metrics::new();
        // It reports until the broker stops answering: run it for a few rounds.
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            report_depth(&conn, &queue, &metrics, Duration::from_millis(50)),
        )
        .await;
        let text = metrics.render();
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("delete");
        let _ = conn.close(200, "done".into()).await;
        assert!(
            text.contains(&format!("wardwatch_queue_messages{{queue=\"{queue}\"}} 3")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_queue_that_is_not_there_ends_the_report_and_leaves_the_connection_usable() {
        let conn = broker().await;
        let metrics = Metrics::new();
        let missing = format!("ww-test-missing-{}", std::process::id());
        // Returns by itself (the passive declare fails); a hang would be a timeout here.
        tokio::time::timeout(
            Duration::from_secs(10),
            report_depth(&conn, &missing, &metrics, Duration::from_millis(10)),
        )
        .await
        .expect("the report ends once the queue cannot be read");
        assert!(!metrics.render().contains(&missing));
        // Only the report's own channel was closed by the broker.
        conn.create_channel()
            .await
            .expect("the connection still opens channels");
        let _ = conn.close(200, "done".into()).await;
    }
}
