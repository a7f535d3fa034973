//! `GET /api/events/stream`: the event log as Server-Sent Events.
//!
//! A stream starts after the id in `Last-Event-ID` (a browser's reconnect), else after `?after=`
//! (the id the page's state is current to), else at the newest event. It replays what the log
//! holds after that id, then follows it: one watcher per process waits on the log for a new
//! event (`EventLog::newest_after`: Redis `XREAD BLOCK`, in memory a notification, so an event
//! reaches the streams as it is appended, not at the next poll) and wakes every stream, and each
//! stream reads the log itself from its own position — so a stream never skips an event,
//! whichever board replica serves it, and a reconnect to another replica or after a restart
//! (Redis mode) carries on where it stopped.
//!
//! - every event: `id: <log id>` and `data: <the event as JSON>` (the default `message` type);
//! - `event: heartbeat` every [`HEARTBEAT`], so a page can tell a quiet ward from a dead link;
//! - `event: reset` (with `id:` the newest) when the log no longer holds the id asked for: the
//!   page reloads its state instead of showing a silent gap;
//! - the stream ends when the log cannot be read (the page reconnects) and when the server stops.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use wardwatch_domain::ports::{EventId, EventLog};
use wardwatch_runtime::Body;

/// How often an idle stream says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The longest one wait on the log for a new event lasts (then it is asked again).
const WAIT: Duration = Duration::from_secs(2);
/// The pause before asking again a log that could not be read.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// How many events one read takes.
const PAGE: usize = 200;
/// What a browser waits before reconnecting.
const RETRY_MS: u64 = 2000;

/// The process's watch on the log, shared by its streams.
pub struct Feed<L> {
    log: L,
    newest: OnceLock<watch::Receiver<Option<String>>>,
    closing: watch::Sender<bool>,
}

impl<L: EventLog + Clone> Feed<L> {
    pub fn new(log: L) -> Self {
        Self {
            log,
            newest: OnceLock::new(),
            closing: watch::Sender::new(false),
        }
    }

    /// End every stream: the server is stopping.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Started on the first stream, so a process that serves none polls nothing.
    fn newest(&self) -> watch::Receiver<Option<String>> {
        self.newest
            .get_or_init(|| {
                let (tx, rx) = watch::channel(None);
                let log = self.log.clone();
                let mut closing = self.closing.subscribe();
                tokio::spawn(async move {
                    let mut seen: Option<String> = None;
                    while !*closing.borrow() {
                        // Waits in the log for the next append (no polling delay between an
                        // event and the streams that carry it); a failing log is retried after
                        // a pause.
                        let next = tokio::select! {
                            next = log.newest_after(seen.as_deref(), WAIT) => next,
                            _ = closing.changed() => return,
                        };
                        match next {
                            Ok(id) if id != seen => {
                                seen.clone_from(&id);
                                tx.send_replace(id);
                            }
                            Ok(_) => {}
                            Err(_) => tokio::select! {
                                () = tokio::time::sleep(RETRY_AFTER) => {}
                                _ = closing.changed() => return,
                            },
                        }
                    }
                });
                rx
            })
            .clone()
    }

    /// The streaming response. `after`: where to start (`None`: at the newest event).
    pub fn open(&self, after: Option<EventId>) -> Response<Body> {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let log = self.log.clone();
        let newest = self.newest();
        let closing = self.closing.subscribe();
        tokio::spawn(follow(log, after, tx, newest, closing));
        let body = BodyExt::boxed(StreamBody::new(ReceiverStream::new(rx).map(|b| Ok(Frame::data(b)))));
        let mut r = Response::new(body);
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // Proxies (nginx and the like) must not buffer the stream.
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        r
    }
}

fn frame(id: Option<&str>, event: Option<&str>, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 64);
    if let Some(id) = id {
        s.push_str("id: ");
        s.push_str(id);
        s.push('\n');
    }
    if let Some(e) = event {
        s.push_str("event: ");
        s.push_str(e);
        s.push('\n');
    }
    // JSON has no raw newlines, but a `data:` line per line is what the format asks for.
    for line in data.split('\n') {
        s.push_str("data: ");
        s.push_str(line);
        s.push('\n');
    }
    s.push('\n');
    Bytes::from(s)
}

async fn follow<L: EventLog>(
    log: L,
    after: Option<EventId>,
    tx: mpsc::Sender<Bytes>,
    mut newest: watch::Receiver<Option<String>>,
    mut closing: watch::Receiver<bool>,
) {
    if tx.send(Bytes::from(format!("retry: {RETRY_MS}\n\n"))).await.is_err() {
        return;
    }
    let mut cursor = match after {
        Some(a) => Some(a),
        None => match log.newest().await {
            Ok(n) => n.as_deref().and_then(EventId::parse),
            Err(_) => return,
        },
    };
    let mut beat = tokio::time::Instant::now() + HEARTBEAT;
    loop {
        if *closing.borrow() {
            return;
        }
        // Mark what we have seen before reading, so a change during the read wakes us again.
        newest.borrow_and_update();
        let page = match log.read(cursor, PAGE).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "event stream: the log cannot be read; ending the stream");
                return;
            }
        };
        let oldest = page.oldest.as_deref().and_then(EventId::parse);
        if let (Some(c), Some(o)) = (cursor, oldest)
            && c.ms != 0
            && c < o
        {
            // Some of what the reader asked for was trimmed away: tell it to reload its state.
            let newest_id = page.newest.clone().unwrap_or_default();
            let data = json!({"reason": "the event log no longer holds the requested id", "oldest": page.oldest, "newest": page.newest});
            if tx
                .send(frame(Some(&newest_id), Some("reset"), &data.to_string()))
                .await
                .is_err()
            {
                return;
            }
            cursor = EventId::parse(&newest_id);
            continue;
        }
        let full = page.events.len() >= PAGE;
        for event in &page.events {
            let data = match serde_json::to_string(event) {
                Ok(d) => d,
                Err(_) => continue,
            };
            if tx.send(frame(Some(&event.id), None, &data)).await.is_err() {
                return;
            }
            cursor = EventId::parse(&event.id).or(cursor);
        }
        if !page.events.is_empty() {
            beat = tokio::time::Instant::now() + HEARTBEAT;
        }
        if full {
            continue;
        }
        tokio::select! {
            changed = newest.changed() => if changed.is_err() { return },
            () = tokio::time::sleep_until(beat) => {
                let data = json!({"newest": page.newest}).to_string();
                if tx.send(frame(None, Some("heartbeat"), &data)).await.is_err() {
                    return;
                }
                beat = tokio::time::Instant::now() + HEARTBEAT;
            }
            _ = closing.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_the_event_stream_format() {
        assert_eq!(frame(Some("1-0"), None, "{}"), Bytes::from("id: 1-0\ndata: {}\n\n"));
        assert_eq!(
            frame(None, Some("heartbeat"), "a\nb"),
            Bytes::from("event: heartbeat\ndata: a\ndata: b\n\n")
        );
    }
}
