//! Implementations of the domain's ports, and the start-up choice between them.
//!
//! | port | memory | direct | dapr |
//! |---|---|---|---|
//! | [`StateStore`] | [`MemoryStateStore`] | [`RedisStateStore`] (Dapr's on-Redis layout) | [`DaprClient`] (`/v1.0/state`) |
//! | [`Publisher`] | [`MemoryBus`] | [`AmqpPublisher`] (publisher confirms) | [`DaprClient`] (`/v1.0/bindings`) |
//! | [`EventLog`] | [`MemoryEventLog`] (bounded ring) | [`RedisEventLog`] (bounded Redis Stream) | the Redis Stream, reached directly (the Dapr state API cannot append) |
//!
//! The set is closed: [`Store`], [`Bus`] and [`Log`] are enums chosen once from the [`Config`].

pub mod amqp;
pub mod dapr;
pub mod launch;
pub mod memory;
pub mod memory_log;
pub mod redis;
pub mod redis_log;

pub use amqp::AmqpPublisher;
pub use dapr::DaprClient;
pub use memory::{MemoryBus, MemoryStateStore};
pub use memory_log::MemoryEventLog;
pub use redis::RedisStateStore;
pub use redis_log::RedisEventLog;

use wardwatch_domain::events::WardEvent;
use wardwatch_domain::ports::{
    Appended, Backlog, EventId, EventLog, LogPage, Membership, PortError, Publisher, StateStore, Unpublished, Versioned,
};
use wardwatch_domain::record::Mark;
use wardwatch_runtime::{Backend, Config};

/// The state store chosen at start-up.
#[derive(Clone)]
pub enum Store {
    Memory(MemoryStateStore),
    Redis(RedisStateStore),
    Dapr(DaprClient),
}

/// The publisher chosen at start-up.
#[derive(Clone)]
pub enum Bus {
    Memory(MemoryBus),
    Amqp(AmqpPublisher),
    Dapr(DaprClient),
}

/// The event log chosen at start-up.
#[derive(Clone)]
pub enum Log {
    Memory(MemoryEventLog),
    Redis(RedisEventLog),
}

impl Log {
    pub fn from_config(config: &Config) -> Result<Self, String> {
        Ok(match config.event_log_url() {
            Some(url) => Log::Redis(RedisEventLog::new(url, &config.event_stream(), config.event_log_max)?),
            None => Log::Memory(MemoryEventLog::new(config.event_log_max)),
        })
    }
}

impl EventLog for Log {
    async fn append(&self, owner: &str, seq: u64, event: &WardEvent) -> Result<Appended, PortError> {
        match self {
            Log::Memory(l) => l.append(owner, seq, event).await,
            Log::Redis(l) => l.append(owner, seq, event).await,
        }
    }
    async fn unpublished(
        &self,
        relay: &str,
        which: Backlog,
        max: usize,
        wait: std::time::Duration,
    ) -> Result<Vec<Unpublished>, PortError> {
        match self {
            Log::Memory(l) => l.unpublished(relay, which, max, wait).await,
            Log::Redis(l) => l.unpublished(relay, which, max, wait).await,
        }
    }
    async fn confirm_published(&self, handles: &[String]) -> Result<(), PortError> {
        match self {
            Log::Memory(l) => l.confirm_published(handles).await,
            Log::Redis(l) => l.confirm_published(handles).await,
        }
    }
    async fn mark(&self, owner: &str) -> Result<Option<Mark>, PortError> {
        match self {
            Log::Memory(l) => l.mark(owner).await,
            Log::Redis(l) => l.mark(owner).await,
        }
    }
    async fn read(&self, after: Option<EventId>, limit: usize) -> Result<LogPage, PortError> {
        match self {
            Log::Memory(l) => l.read(after, limit).await,
            Log::Redis(l) => l.read(after, limit).await,
        }
    }
    async fn newest(&self) -> Result<Option<String>, PortError> {
        match self {
            Log::Memory(l) => l.newest().await,
            Log::Redis(l) => l.newest().await,
        }
    }
    async fn retire_relay(&self, relay: &str) -> Result<bool, PortError> {
        match self {
            Log::Memory(l) => l.retire_relay(relay).await,
            Log::Redis(l) => l.retire_relay(relay).await,
        }
    }
    async fn newest_after(&self, seen: Option<&str>, wait: std::time::Duration) -> Result<Option<String>, PortError> {
        match self {
            Log::Memory(l) => l.newest_after(seen, wait).await,
            Log::Redis(l) => l.newest_after(seen, wait).await,
        }
    }
    async fn ping(&self) -> Result<(), PortError> {
        match self {
            Log::Memory(l) => EventLog::ping(l).await,
            Log::Redis(l) => EventLog::ping(l).await,
        }
    }
}

impl Store {
    pub fn from_config(config: &Config) -> Result<Self, String> {
        Ok(match config.state {
            Backend::Memory => Store::Memory(MemoryStateStore::default()),
            Backend::Direct => {
                let url = config.redis_url.as_ref().ok_or("REDIS_URL is not set")?;
                Store::Redis(RedisStateStore::new(url, &config.key_prefix)?)
            }
            Backend::Dapr => Store::Dapr(DaprClient::from_config(config)?),
        })
    }
}

impl Bus {
    pub fn from_config(config: &Config) -> Result<Self, String> {
        Ok(match config.bus {
            Backend::Memory => Bus::Memory(MemoryBus::default()),
            Backend::Direct => Bus::Amqp(AmqpPublisher::new(
                config.amqp_url.clone().ok_or("AMQP_URL is not set")?,
            )),
            Backend::Dapr => Bus::Dapr(DaprClient::from_config(config)?),
        })
    }
}

impl StateStore for Store {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, PortError> {
        match self {
            Store::Memory(s) => s.get(key).await,
            Store::Redis(s) => s.get(key).await,
            Store::Dapr(s) => s.get(key).await,
        }
    }
    async fn set(&self, key: &str, data: &[u8], etag: Option<&str>) -> Result<(), PortError> {
        match self {
            Store::Memory(s) => s.set(key, data, etag).await,
            Store::Redis(s) => s.set(key, data, etag).await,
            Store::Dapr(s) => s.set(key, data, etag).await,
        }
    }
    async fn delete(&self, key: &str, etag: Option<&str>) -> Result<(), PortError> {
        match self {
            Store::Memory(s) => s.delete(key, etag).await,
            Store::Redis(s) => s.delete(key, etag).await,
            Store::Dapr(s) => s.delete(key, etag).await,
        }
    }
    async fn set_many(&self, items: &[(String, Vec<u8>, Option<String>)]) -> Result<(), PortError> {
        match self {
            Store::Memory(s) => s.set_many(items).await,
            Store::Redis(s) => s.set_many(items).await,
            Store::Dapr(s) => s.set_many(items).await,
        }
    }
    async fn set_many_and_claim(
        &self,
        items: &[(String, Vec<u8>, Option<String>)],
        claims: &[(String, Vec<u8>)],
    ) -> Result<Vec<bool>, PortError> {
        match self {
            Store::Memory(s) => s.set_many_and_claim(items, claims).await,
            Store::Redis(s) => s.set_many_and_claim(items, claims).await,
            Store::Dapr(s) => s.set_many_and_claim(items, claims).await,
        }
    }
    async fn set_many_claim_and_members(
        &self,
        items: &[(String, Vec<u8>, Option<String>)],
        claims: &[(String, Vec<u8>)],
        members: &[Membership],
    ) -> Result<(Vec<bool>, bool), PortError> {
        match self {
            Store::Memory(s) => s.set_many_claim_and_members(items, claims, members).await,
            Store::Redis(s) => s.set_many_claim_and_members(items, claims, members).await,
            Store::Dapr(s) => s.set_many_claim_and_members(items, claims, members).await,
        }
    }
    async fn set_member(&self, key: &str, member: &str, seq: u64, present: bool) -> Result<bool, PortError> {
        match self {
            Store::Memory(s) => s.set_member(key, member, seq, present).await,
            Store::Redis(s) => s.set_member(key, member, seq, present).await,
            Store::Dapr(s) => s.set_member(key, member, seq, present).await,
        }
    }
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Versioned>>, PortError> {
        match self {
            Store::Memory(s) => s.get_many(keys).await,
            Store::Redis(s) => s.get_many(keys).await,
            Store::Dapr(s) => s.get_many(keys).await,
        }
    }
    async fn ping(&self) -> Result<(), PortError> {
        match self {
            Store::Memory(s) => StateStore::ping(s).await,
            Store::Redis(s) => StateStore::ping(s).await,
            Store::Dapr(s) => StateStore::ping(s).await,
        }
    }
}

impl Publisher for Bus {
    async fn publish(&self, lane: &str, payload: &[u8]) -> Result<(), PortError> {
        match self {
            Bus::Memory(b) => b.publish(lane, payload).await,
            Bus::Amqp(b) => b.publish(lane, payload).await,
            Bus::Dapr(b) => b.publish(lane, payload).await,
        }
    }
    async fn ping(&self) -> Result<(), PortError> {
        match self {
            Bus::Memory(b) => Publisher::ping(b).await,
            Bus::Amqp(b) => Publisher::ping(b).await,
            Bus::Dapr(b) => Publisher::ping(b).await,
        }
    }
}
