//! The RabbitMQ side the load tools share: connections, confirmed channels, and persistent
//! publishes whose confirms are checked.

use lapin::options::{BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm};

pub async fn connect(url: &str) -> Result<Connection, String> {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(|e| format!("cannot connect to RabbitMQ: {e}"))
}

/// A channel in confirm mode: every publish on it is acknowledged by the broker.
pub async fn confirm_channel(conn: &Connection) -> Result<Channel, String> {
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| format!("cannot open a channel: {e}"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("confirm.select failed: {e}"))?;
    Ok(channel)
}

/// A channel for consuming, at most `prefetch` unacknowledged deliveries at once.
pub async fn consume_channel(conn: &Connection, prefetch: u16) -> Result<Channel, String> {
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| format!("cannot open a channel: {e}"))?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| format!("basic.qos failed: {e}"))?;
    Ok(channel)
}

/// Durable, as Wardwatch declares its queues (runtime::amqp::queue_declare_options).
pub fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// A publisher confirm that says the message is safely queued; anything else is an error.
pub fn check(confirmation: Result<Confirmation, lapin::Error>, queue: &str) -> Result<(), String> {
    match confirmation {
        Ok(Confirmation::Ack(None)) => Ok(()),
        Ok(Confirmation::Ack(Some(_))) => Err(format!("a message to `{queue}` was not routed")),
        Ok(Confirmation::Nack(_)) => Err(format!("the broker refused a message to `{queue}`")),
        Ok(Confirmation::NotRequested) => Err("publisher confirms are off".into()),
        Err(e) => Err(format!("publish to `{queue}` failed: {e}")),
    }
}

/// Publish `body` to `queue` through the default exchange: persistent, mandatory, with its
/// message id and content type. The confirm is the caller's to await.
pub async fn publish(
    channel: &Channel,
    queue: &str,
    id: &str,
    content_type: &str,
    body: &[u8],
) -> Result<PublisherConfirm, String> {
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(content_type.into())
        .with_message_id(id.into());
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            properties,
        )
        .await
        .map_err(|e| format!("publish to `{queue}` failed: {e}"))
}
