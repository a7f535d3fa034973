//! Publishing to RabbitMQ: default exchange, routing key = lane = durable queue name, persistent
//! messages, publisher confirms. `publish` returns only once the broker has confirmed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use wardwatch_domain::ports::{PortError, Publisher};
use wardwatch_runtime::Secret;
use wardwatch_runtime::amqp::queue_declare_options;

const TIMEOUT: Duration = Duration::from_secs(5);

struct Link {
    conn: Connection,
    channel: Channel,
    declared: HashSet<String>,
}

/// Connects lazily, reconnects after a failure; cheap to clone.
#[derive(Clone)]
pub struct AmqpPublisher {
    url: Secret,
    link: Arc<Mutex<Option<Link>>>,
}

fn unavailable(e: impl std::fmt::Display) -> PortError {
    PortError::Unavailable(format!("rabbitmq: {e}"))
}

impl AmqpPublisher {
    pub fn new(url: Secret) -> Self {
        Self {
            url,
            link: Arc::new(Mutex::new(None)),
        }
    }

    /// Connect (confirm mode) unless connected.
    async fn connect(&self, guard: &mut Option<Link>) -> Result<(), PortError> {
        if guard
            .as_ref()
            .is_some_and(|l| !l.conn.status().connected() || !l.channel.status().connected())
        {
            *guard = None;
        }
        if guard.is_none() {
            let conn = Connection::connect(self.url.expose(), ConnectionProperties::default())
                .await
                .map_err(unavailable)?;
            let channel = conn.create_channel().await.map_err(unavailable)?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(unavailable)?;
            *guard = Some(Link {
                conn,
                channel,
                declared: HashSet::new(),
            });
        }
        Ok(())
    }

    /// A confirm-mode channel with `lane` declared, (re)connecting if needed.
    async fn channel_for(&self, lane: &str) -> Result<Channel, PortError> {
        let mut guard = self.link.lock().await;
        self.connect(&mut guard).await?;
        let link = guard.as_mut().ok_or_else(|| unavailable("not connected"))?;
        if !link.declared.contains(lane) {
            link.channel
                .queue_declare(lane.into(), queue_declare_options(), FieldTable::default())
                .await
                .map_err(unavailable)?;
            link.declared.insert(lane.to_owned());
        }
        Ok(link.channel.clone())
    }

    async fn publish_confirmed(&self, lane: &str, payload: &[u8]) -> Result<(), PortError> {
        let channel = self.channel_for(lane).await?;
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        let confirm = channel
            .basic_publish(
                "".into(),
                lane.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                payload,
                properties,
            )
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_returned)) => {
                Err(unavailable(format!("message to `{lane}` was not routed to a queue")))
            }
            Confirmation::Nack(_) => Err(unavailable(format!("broker refused the message to `{lane}`"))),
            Confirmation::NotRequested => Err(unavailable("publisher confirms are off")),
        }
    }
}

impl Publisher for AmqpPublisher {
    async fn publish(&self, lane: &str, payload: &[u8]) -> Result<(), PortError> {
        match tokio::time::timeout(TIMEOUT, self.publish_confirmed(lane, payload)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                // Start afresh next time: the channel may be in an unknown state.
                *self.link.lock().await = None;
                Err(e)
            }
            Err(_) => {
                *self.link.lock().await = None;
                Err(unavailable("publish timed out"))
            }
        }
    }

    async fn ping(&self) -> Result<(), PortError> {
        let mut guard = self.link.lock().await;
        tokio::time::timeout(TIMEOUT, self.connect(&mut guard))
            .await
            .map_err(|_| unavailable("connect timed out"))?
    }
}
