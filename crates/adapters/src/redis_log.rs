//! The event log in Redis: a bounded Redis Stream (`XADD … MAXLEN ~ n`), ids `<ms>-<seq>` made by
//! Redis, increasing across restarts. Written directly, not through Dapr: the Dapr state API can
//! neither append nor list. Beside it, one small HASH per record (`…:mark:<patient id>.<incarnation>`: the
//! last appended outbox seq and its id), updated in the same Lua script as the append, so a
//! re-driven outbox item is never appended twice.
//!
//! The same script queues the event on the **lane outbox**, a second stream (`…:lanes`) that is
//! never trimmed: relays read it through the consumer group `relays` (`XREADGROUP`), publish,
//! then `XACK` and `XDEL` each entry. An entry a relay took and never confirmed stays in the
//! group's pending list until another relay claims it (`XAUTOCLAIM`, after [`ABANDONED_AFTER`]).
//! A full lane outbox (as many entries as the log keeps) refuses appends: transient, nothing lost.

use std::time::Duration;

use redis::{RedisError, Script, Value};
use wardwatch_domain::events::WardEvent;
use wardwatch_domain::ports::{Appended, Backlog, EventId, EventLog, LogPage, PortError, Unpublished};
use wardwatch_domain::record::Mark;
use wardwatch_runtime::Secret;

/// KEYS: stream, mark, lane outbox. ARGV: seq, event JSON, max length, mark TTL seconds.
const APPEND: &str = r#"
local m = redis.call("HMGET", KEYS[2], "seq", "id")
local seq = tonumber(ARGV[1])
if m[1] then
  local s = tonumber(m[1])
  if s > seq then return {"earlier", ""} end
  if s == seq then return {"already", m[2]} end
end
if redis.call("XLEN", KEYS[3]) >= tonumber(ARGV[3]) then
  return redis.error_reply("BACKLOG the lane outbox is full: events are not being published on the lanes")
end
local id = redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[3], "*", "e", ARGV[2])
redis.call("XADD", KEYS[3], "*", "id", id, "e", ARGV[2])
redis.call("HSET", KEYS[2], "seq", ARGV[1], "id", id)
redis.call("EXPIRE", KEYS[2], ARGV[4])
return {"new", id}
"#;

/// The lane outbox's consumer group.
const GROUP: &str = "relays";

/// How long a relay may hold an entry unconfirmed before another relay takes it over.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(30);

/// A patient's mark outlives any realistic gap between two writes to their record.
const MARK_TTL_SECONDS: u64 = 400 * 24 * 3600;

#[derive(Clone)]
pub struct RedisEventLog {
    conn: redis::aio::ConnectionManager,
    /// For the relay's blocking reads only: a blocked command holds up its connection.
    waiting: redis::aio::ConnectionManager,
    /// For the board's blocking wait on the stream's newest id ([`EventLog::newest_after`]):
    /// its own, so the relay's waits never delay it. Connects on first use.
    following: redis::aio::ConnectionManager,
    stream: String,
    lanes: String,
    max_len: usize,
    abandoned_after: Duration,
    append: Script,
}

fn classify(e: &RedisError) -> PortError {
    if e.kind() == redis::ErrorKind::Parse || e.code() == Some("WRONGTYPE") {
        PortError::Corrupt(format!("redis event log: {}", e.category()))
    } else {
        PortError::Unavailable(format!("redis event log: {}", e.category()))
    }
}

type Entry = (String, Vec<String>);

/// The longest a relay's read waits for a new event.
const MAX_WAIT: Duration = Duration::from_secs(5);

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// What a read of the lane outbox found.
#[derive(Default)]
struct Outbox {
    events: Vec<Unpublished>,
    /// Entries deleted while pending (their fields are nil): done.
    gone: Vec<String>,
    /// Entries that cannot be read as an event (not written by this log's script).
    malformed: Vec<String>,
}

/// Lane-outbox entries (`[id, [field, value, …]]`).
fn parse_outbox(entries: Value) -> Outbox {
    let mut out = Outbox::default();
    let Value::Array(entries) = entries else {
        return out;
    };
    for entry in entries {
        let Value::Array(parts) = entry else { continue };
        let Some(handle) = parts.first().and_then(text) else {
            continue;
        };
        let Some(Value::Array(fields)) = parts.get(1) else {
            out.gone.push(handle);
            continue;
        };
        let field = |name: &str| {
            fields
                .chunks(2)
                .find(|kv| kv.first().and_then(text).as_deref() == Some(name))
                .and_then(|kv| kv.get(1))
                .and_then(text)
        };
        let event = match (field("id"), field("e")) {
            (Some(id), Some(json)) => serde_json::from_str::<WardEvent>(&json).ok().map(|mut e| {
                e.id = id;
                e
            }),
            _ => None,
        };
        match event {
            Some(event) => out.events.push(Unpublished { handle, event }),
            None => out.malformed.push(handle),
        }
    }
    out
}

fn parse_entries(entries: Vec<Entry>) -> Result<Vec<WardEvent>, PortError> {
    let mut out = Vec::with_capacity(entries.len());
    for (id, fields) in entries {
        let json = fields
            .chunks(2)
            .find(|kv| kv.first().map(String::as_str) == Some("e"))
            .and_then(|kv| kv.get(1))
            .ok_or_else(|| PortError::Corrupt("an event log entry has no `e` field".into()))?;
        let mut event: WardEvent = serde_json::from_str(json)
            .map_err(|e| PortError::Corrupt(format!("event log entry: line {} column {}", e.line(), e.column())))?;
        event.id = id;
        out.push(event);
    }
    Ok(out)
}

/// `XRANGE`/`XREVRANGE <stream> <from> <to> COUNT <count>`.
fn range(stream: &str, command: &str, from: &str, to: &str, count: usize) -> redis::Cmd {
    let mut cmd = redis::cmd(command);
    cmd.arg(stream).arg(from).arg(to).arg("COUNT").arg(count);
    cmd
}

impl RedisEventLog {
    /// `stream`: the stream's key (`<prefix>:events`).
    pub fn new(url: &Secret, stream: &str, max_len: usize) -> Result<Self, String> {
        let conn = crate::redis::connect(url, "EVENTS_REDIS_URL", Duration::from_secs(2))?;
        let waiting = crate::redis::connect(url, "EVENTS_REDIS_URL", MAX_WAIT + Duration::from_secs(2))?;
        let following = crate::redis::connect(url, "EVENTS_REDIS_URL", MAX_WAIT + Duration::from_secs(2))?;
        Ok(Self {
            conn,
            waiting,
            following,
            stream: stream.to_owned(),
            lanes: format!("{stream}:lanes"),
            max_len: max_len.max(1),
            abandoned_after: ABANDONED_AFTER,
            append: Script::new(APPEND),
        })
    }

    /// How long an entry may stay unconfirmed before another relay takes it over (default
    /// [`ABANDONED_AFTER`]).
    pub fn abandoned_after(mut self, after: Duration) -> Self {
        self.abandoned_after = after;
        self
    }

    /// `XREADGROUP` / `XAUTOCLAIM` answered `NOGROUP`: make the group (and the stream). From id
    /// 0: everything in the lane outbox is unpublished, confirmed entries having been deleted.
    async fn ensure_group(&self) -> Result<(), PortError> {
        let mut conn = self.conn.clone();
        let made: Result<String, RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.lanes)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match made {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(classify(&e)),
        }
    }

    fn read_cmd(&self, relay: &str, which: Backlog, max: usize, wait: Duration) -> redis::Cmd {
        match which {
            Backlog::Abandoned => {
                let mut cmd = redis::cmd("XAUTOCLAIM");
                cmd.arg(&self.lanes)
                    .arg(GROUP)
                    .arg(relay)
                    .arg(self.abandoned_after.as_millis() as u64)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(max.max(1));
                cmd
            }
            Backlog::Mine | Backlog::New => {
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg("GROUP").arg(GROUP).arg(relay).arg("COUNT").arg(max.max(1));
                if which == Backlog::New && !wait.is_zero() {
                    cmd.arg("BLOCK").arg(wait.min(MAX_WAIT).as_millis() as u64);
                }
                cmd.arg("STREAMS")
                    .arg(&self.lanes)
                    .arg(if which == Backlog::New { ">" } else { "0" });
                cmd
            }
        }
    }

    fn mark_key(&self, owner: &str) -> String {
        format!("{}:mark:{owner}", self.stream)
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }
}

impl EventLog for RedisEventLog {
    async fn append(&self, owner: &str, seq: u64, event: &WardEvent) -> Result<Appended, PortError> {
        let json = serde_json::to_string(event).map_err(|e| PortError::Corrupt(e.to_string()))?;
        let mut conn = self.conn.clone();
        let (what, id): (String, String) = self
            .append
            .key(&self.stream)
            .key(self.mark_key(owner))
            .key(&self.lanes)
            .arg(seq)
            .arg(json)
            .arg(self.max_len)
            .arg(MARK_TTL_SECONDS)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| classify(&e))?;
        Ok(match what.as_str() {
            "new" => Appended::New(id),
            "already" => Appended::Already(id),
            _ => Appended::Earlier,
        })
    }

    async fn unpublished(
        &self,
        relay: &str,
        which: Backlog,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Unpublished>, PortError> {
        let cmd = self.read_cmd(relay, which, max, wait);
        let mut conn = if which == Backlog::New && !wait.is_zero() {
            self.waiting.clone()
        } else {
            self.conn.clone()
        };
        let reply: Value = match cmd.query_async(&mut conn).await {
            Err(e) if e.code() == Some("NOGROUP") => {
                self.ensure_group().await?;
                cmd.query_async(&mut conn).await.map_err(|e| classify(&e))?
            }
            other => other.map_err(|e| classify(&e))?,
        };
        let entries = match which {
            // [next cursor, [entries], [deleted ids]]
            Backlog::Abandoned => match reply {
                Value::Array(mut parts) if parts.len() >= 2 => parts.swap_remove(1),
                _ => Value::Nil,
            },
            // [[stream, [entries]]], or nil when the wait ran out
            Backlog::Mine | Backlog::New => match reply {
                Value::Array(mut streams) if !streams.is_empty() => match streams.swap_remove(0) {
                    Value::Array(mut pair) if pair.len() == 2 => pair.swap_remove(1),
                    _ => Value::Nil,
                },
                _ => Value::Nil,
            },
        };
        let Outbox {
            events,
            mut gone,
            malformed,
        } = parse_outbox(entries);
        for handle in &malformed {
            // Never one that stops every event behind it: the log keeps what it holds.
            tracing::error!(
                lanes = %self.lanes,
                entry = %handle,
                "a lane outbox entry is not an event: removed without being published"
            );
        }
        gone.extend(malformed);
        if !gone.is_empty() {
            // Deleted while pending (confirmed by a relay that was thought gone), or unreadable.
            self.confirm_published(&gone).await?;
        }
        Ok(events)
    }

    /// `XACK` and `XDEL` in one round trip.
    async fn confirm_published(&self, handles: &[String]) -> Result<(), PortError> {
        if handles.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: (i64, i64) = redis::pipe()
            .cmd("XACK")
            .arg(&self.lanes)
            .arg(GROUP)
            .arg(handles)
            .cmd("XDEL")
            .arg(&self.lanes)
            .arg(handles)
            .query_async(&mut conn)
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    /// `XGROUP DELCONSUMER` once `XPENDING` shows the name holds nothing: deleting a consumer
    /// deletes its pending entries too, and those must stay for `XAUTOCLAIM`. Only the stopped
    /// relay reads under its name, so nothing becomes pending for it in between.
    async fn retire_relay(&self, relay: &str) -> Result<bool, PortError> {
        let mut conn = self.conn.clone();
        let pending: Result<Value, RedisError> = redis::cmd("XPENDING")
            .arg(&self.lanes)
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(relay)
            .query_async(&mut conn)
            .await;
        match pending {
            // No lane outbox or group yet: no name to forget.
            Err(e) if e.code() == Some("NOGROUP") => return Ok(true),
            Err(e) => return Err(classify(&e)),
            Ok(Value::Array(entries)) if !entries.is_empty() => return Ok(false),
            Ok(_) => {}
        }
        let _: i64 = redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(&self.lanes)
            .arg(GROUP)
            .arg(relay)
            .query_async(&mut conn)
            .await
            .map_err(|e| classify(&e))?;
        Ok(true)
    }

    async fn mark(&self, owner: &str) -> Result<Option<Mark>, PortError> {
        let mut conn = self.conn.clone();
        let (seq, id): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(self.mark_key(owner))
            .arg("seq")
            .arg("id")
            .query_async(&mut conn)
            .await
            .map_err(|e| classify(&e))?;
        Ok(match (seq, id) {
            (Some(seq), Some(id)) => Some(Mark { seq, id }),
            _ => None,
        })
    }

    async fn read(&self, after: Option<EventId>, limit: usize) -> Result<LogPage, PortError> {
        let mut conn = self.conn.clone();
        let start = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let (entries, oldest, newest): (Vec<Entry>, Vec<Entry>, Vec<Entry>) = redis::pipe()
            .add_command(range(&self.stream, "XRANGE", &start, "+", limit.max(1)))
            .add_command(range(&self.stream, "XRANGE", "-", "+", 1))
            .add_command(range(&self.stream, "XREVRANGE", "+", "-", 1))
            .query_async(&mut conn)
            .await
            .map_err(|e| classify(&e))?;
        let mut events = parse_entries(entries)?;
        events.truncate(limit);
        Ok(LogPage {
            events,
            oldest: oldest.into_iter().next().map(|(id, _)| id),
            newest: newest.into_iter().next().map(|(id, _)| id),
        })
    }

    async fn newest(&self) -> Result<Option<String>, PortError> {
        let mut conn = self.conn.clone();
        let newest: Vec<Entry> = range(&self.stream, "XREVRANGE", "+", "-", 1)
            .query_async(&mut conn)
            .await
            .map_err(|e| classify(&e))?;
        Ok(newest.into_iter().next().map(|(id, _)| id))
    }

    async fn newest_after(&self, seen: Option<&str>, wait: Duration) -> Result<Option<String>, PortError> {
        let wait = wait.min(MAX_WAIT);
        if !wait.is_zero() {
            // Returns at once when the stream holds an entry after `seen`, else blocks until one
            // is added (`XADD`) or `wait` has passed (nil). What it read is not needed: the
            // newest id is read next either way.
            let mut conn = self.following.clone();
            let _: Value = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg((wait.as_millis() as u64).max(1))
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(seen.unwrap_or("0-0"))
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
        }
        self.newest().await
    }

    async fn ping(&self) -> Result<(), PortError> {
        crate::redis::ping(&self.conn).await
    }
}
