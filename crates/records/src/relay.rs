//! The relay: publishes the event log's lane outbox on the lanes, off the request path.
//!
//! An event is queued on the lane outbox in the same atomic step that appends it to the log
//! ([`EventLog`]), so once a write has been answered its event is durable and on its way. The
//! relay takes batches of it, publishes each event on its lane (publishes of a batch are issued
//! in order and confirmed together) and only then confirms them to the log, which forgets them.
//! At least once: an event published but not yet confirmed when a relay stops is published again
//! by the next relay that takes it over ([`Backlog::Abandoned`]); a failed publish is retried by
//! the same relay after a pause ([`Backlog::Mine`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::watch;
use wardwatch_domain::ports::{Backlog, EventLog, PortError, Publisher, Unpublished};

/// The most events one batch carries.
const BATCH: usize = 256;
/// How long one read waits for a new event before the relay looks at the stop signal again.
const WAIT: Duration = Duration::from_secs(1);
/// How often a relay looks for events another relay took and never confirmed.
const ADOPT_EVERY: Duration = Duration::from_secs(10);

/// A name no other relay has: this process's id, a counter and the time.
pub(crate) fn inline_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    relay_name(&format!("inline-{}", N.fetch_add(1, Ordering::Relaxed)))
}

fn relay_name(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{what}-{}-{nanos}", std::process::id())
}

/// Publish a batch on the lanes, issued in order; the handles of those the broker confirmed,
/// and the first failure.
async fn publish_batch<P: Publisher>(bus: &P, batch: &[Unpublished]) -> (Vec<String>, Option<PortError>) {
    let sent = join_all(batch.iter().map(|u| async move {
        let payload = serde_json::to_vec(&u.event).map_err(|e| PortError::Corrupt(e.to_string()))?;
        bus.publish(u.event.kind.lane(), &payload).await
    }))
    .await;
    let mut done = Vec::with_capacity(batch.len());
    let mut failure = None;
    for (u, r) in batch.iter().zip(sent) {
        match r {
            Ok(()) => done.push(u.handle.clone()),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    (done, failure)
}

/// Publish and confirm one batch of `which`; how many it held.
async fn pass<L: EventLog, P: Publisher>(
    log: &L,
    bus: &P,
    name: &str,
    which: Backlog,
    wait: Duration,
) -> Result<usize, PortError> {
    let batch = log.unpublished(name, which, BATCH, wait).await?;
    if batch.is_empty() {
        return Ok(0);
    }
    let (done, failure) = publish_batch(bus, &batch).await;
    log.confirm_published(&done).await?;
    match failure {
        Some(e) => Err(e),
        None => Ok(batch.len()),
    }
}

/// Publish, as the relay `name`, what it holds unconfirmed and then everything waiting: the
/// inline path of a repository that runs no relay (tests, tools). Returns the first failure;
/// what failed stays unconfirmed, for the next call.
pub async fn publish_waiting<L: EventLog, P: Publisher>(log: &L, bus: &P, name: &str) -> Result<(), PortError> {
    while pass(log, bus, name, Backlog::Mine, Duration::ZERO).await? == BATCH {}
    while pass(log, bus, name, Backlog::New, Duration::ZERO).await? > 0 {}
    Ok(())
}

/// One round of a relay: abandoned events now and then, its own failed ones after a failure,
/// then new ones (waiting for them up to `wait`). How many new ones it published.
async fn round<L: EventLog, P: Publisher>(
    log: &L,
    bus: &P,
    name: &str,
    adopted_at: &mut Option<Instant>,
    retry_mine: &mut bool,
    wait: Duration,
) -> Result<usize, PortError> {
    if adopted_at.is_none_or(|t| t.elapsed() >= ADOPT_EVERY) {
        *adopted_at = Some(Instant::now());
        let n = pass(log, bus, name, Backlog::Abandoned, Duration::ZERO).await?;
        if n > 0 {
            tracing::info!(events = n, "relay: took over events another relay left unpublished");
        }
    }
    if *retry_mine {
        while pass(log, bus, name, Backlog::Mine, Duration::ZERO).await? == BATCH {}
        *retry_mine = false;
    }
    pass(log, bus, name, Backlog::New, wait).await
}

/// Run a relay until `stop` turns true, then publish what is still waiting and return. Failures
/// (a broker or Redis away) are logged and retried with a growing pause; nothing is dropped.
pub async fn relay<L: EventLog, P: Publisher>(log: L, bus: P, stop: watch::Receiver<bool>) {
    let name = relay_name("relay");
    let mut adopted_at: Option<Instant> = None;
    let mut retry_mine = false;
    let mut pause = Duration::from_millis(100);
    loop {
        let stopping = *stop.borrow();
        let wait = if stopping { Duration::ZERO } else { WAIT };
        match round(&log, &bus, &name, &mut adopted_at, &mut retry_mine, wait).await {
            Ok(n) => {
                pause = Duration::from_millis(100);
                if n == 0 && stopping {
                    // Every start names a new relay: without this the names would pile up.
                    match log.retire_relay(&name).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(relay = %name, "relay stopped holding unconfirmed events: another relay takes them over")
                        }
                        Err(e) => {
                            tracing::warn!(relay = %name, error = %e, "relay stopped; its name could not be removed")
                        }
                    }
                    return;
                }
                // In process every step may complete at once: give the request tasks their turn.
                tokio::task::yield_now().await;
            }
            Err(e) => {
                retry_mine = true;
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "relay: events not yet published on their lanes");
                if stopping {
                    // Left unconfirmed: the next relay to start takes them over.
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(15));
            }
        }
    }
}
