//! The event log in Redis: a bounded Redis Stream (`XADD … MAXLEN ~ n`), ids `<ms>-<seq>` made by
//! Redis, increasing across restarts. Written directly, not through Dapr: the Dapr state API can
//! neither append nor list. Beside it, one small HASH per record (`…:mark:<patient id>.<incarnation>`: the
//! last appended outbox seq, its id, whether it was published), updated in the same Lua script
//! as the append, so a re-driven outbox item is never appended twice. `pub` holds the last seq
//! published: the mark's item counts as published when `pub` equals `seq`.

use redis::aio::ConnectionManager;
use redis::{RedisError, Script};
use wardwatch_domain::events::WardEvent;
use wardwatch_domain::ports::{Appended, EventId, EventLog, LogPage, PortError};
use wardwatch_domain::record::Mark;
use wardwatch_runtime::Secret;

/// KEYS: stream, mark. ARGV: seq, event JSON, max length, mark TTL seconds.
const APPEND: &str = r#"
local m = redis.call("HMGET", KEYS[2], "seq", "id")
local seq = tonumber(ARGV[1])
if m[1] then
  local s = tonumber(m[1])
  if s > seq then return {"earlier", ""} end
  if s == seq then return {"already", m[2]} end
end
local id = redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[3], "*", "e", ARGV[2])
redis.call("HSET", KEYS[2], "seq", ARGV[1], "id", id)
redis.call("EXPIRE", KEYS[2], ARGV[4])
return {"new", id}
"#;

/// A patient's mark outlives any realistic gap between two writes to their record.
const MARK_TTL_SECONDS: u64 = 400 * 24 * 3600;

#[derive(Clone)]
pub struct RedisEventLog {
    conn: ConnectionManager,
    stream: String,
    max_len: usize,
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
        let conn = crate::redis::connect(url, "EVENTS_REDIS_URL")?;
        Ok(Self {
            conn,
            stream: stream.to_owned(),
            max_len: max_len.max(1),
            append: Script::new(APPEND),
        })
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

    /// A plain `HSET`: should a later item have been appended meanwhile, `pub` names this one,
    /// not that one, so the later item still counts as unpublished (published again at worst).
    async fn published(&self, owner: &str, seq: u64) -> Result<(), PortError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("HSET")
            .arg(self.mark_key(owner))
            .arg("pub")
            .arg(seq)
            .query_async(&mut conn)
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn mark(&self, owner: &str) -> Result<Option<Mark>, PortError> {
        let mut conn = self.conn.clone();
        let (seq, id, published): (Option<u64>, Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.mark_key(owner))
            .arg("seq")
            .arg("id")
            .arg("pub")
            .query_async(&mut conn)
            .await
            .map_err(|e| classify(&e))?;
        Ok(match (seq, id) {
            (Some(seq), Some(id)) => Some(Mark {
                seq,
                id,
                published: published.and_then(|p| p.parse::<u64>().ok()) == Some(seq),
            }),
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

    async fn ping(&self) -> Result<(), PortError> {
        crate::redis::ping(&self.conn).await
    }
}
