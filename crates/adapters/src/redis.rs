//! State in Redis, in exactly the layout of Dapr's `state.redis` component, so that a Dapr
//! sidecar reads what direct mode wrote and the reverse:
//! - key `<prefix>||<key>` (Dapr's `keyPrefix`; Wardwatch's components set `keyPrefix: wardwatch`);
//! - one HASH per key with fields `data` (the value bytes) and `version` (the ETag, a decimal
//!   integer counting from 1);
//! - writes and deletes through Dapr's own Lua scripts, so the ETag and first-write rules are
//!   the same to the letter.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, RedisError, Script};
use wardwatch_domain::ports::{Membership, PortError, StateStore, Versioned};
use wardwatch_runtime::Secret;

/// Dapr components-contrib `state/redis/redis.go` `setDefaultQuery`.
const SET_SCRIPT: &str = r#"
local etag = redis.pcall("HGET", KEYS[1], "version");
if type(etag) == "table" then
  redis.call("DEL", KEYS[1]);
end;
local fwr = redis.pcall("HGET", KEYS[1], "first-write");
if not etag or type(etag)=="table" or etag == "" or etag == ARGV[1] or (not fwr and ARGV[1] == "0") then
  redis.call("HSET", KEYS[1], "data", ARGV[2]);
  if ARGV[3] == "0" then
    redis.call("HSET", KEYS[1], "first-write", 0);
  end;
  return redis.call("HINCRBY", KEYS[1], "version", 1)
else
  return error("failed to set key " .. KEYS[1])
end"#;

/// Dapr components-contrib `state/redis/redis.go` `delDefaultQuery`.
const DEL_SCRIPT: &str = r#"
local etag = redis.pcall("HGET", KEYS[1], "version");
if not etag or type(etag)=="table" or etag == ARGV[1] or etag == "" or ARGV[1] == "0" then
  return redis.call("DEL", KEYS[1])
else
  return error("failed to delete " .. KEYS[1])
end"#;

/// Dapr's set script applied to each key in turn (`ARGV`: ETag-or-"0" and data per key), in one
/// round trip; the first refusal stops it with Dapr's own error. No first-write flag, as `set`.
const SET_MANY_SCRIPT: &str = r#"
for i = 1, #KEYS do
  local etag = redis.pcall("HGET", KEYS[i], "version");
  if type(etag) == "table" then
    redis.call("DEL", KEYS[i]);
  end;
  local fwr = redis.pcall("HGET", KEYS[i], "first-write");
  local ver = ARGV[2 * i - 1];
  if not etag or type(etag)=="table" or etag == "" or etag == ver or (not fwr and ver == "0") then
    redis.call("HSET", KEYS[i], "data", ARGV[2 * i]);
    redis.call("HINCRBY", KEYS[i], "version", 1);
  else
    return error("failed to set key " .. KEYS[i])
  end;
end;
return #KEYS"#;

/// A Lua function changing a membership index (`{"patients": {id: seq}}`) in place, in Dapr's
/// layout: the JSON in `data` rewritten and `version` counted up, as a compare-and-set by the
/// client would leave it. Returns 1 when it changed something, 0 when a later seq already did,
/// or an error reply (a key that is not a hash, data that is not JSON).
const MEMBER_FUNCTION: &str = r#"
local function set_member(key, member, seq, add)
  if type(redis.pcall("HGET", key, "version")) == "table" then
    return redis.error_reply("CORRUPT not a hash")
  end
  local data = redis.call("HGET", key, "data")
  -- The compact form serde_json and cjson write, and an id that needs no escaping: changed as
  -- text, the cost of a copy rather than of decoding and encoding every member.
  local head = '{"patients":{'
  if (not data or (string.sub(data, 1, #head) == head and string.sub(data, -2) == "}}"))
      and not string.find(member, "[^%w%.%-]") then
    local body = data and string.sub(data, #head + 1, -3) or ""
    local list = ","
    if body ~= "" then list = "," .. body .. "," end
    local s, e = string.find(list, ',"' .. member .. '":', 1, true)
    local current, rest
    if s then
      local digits = string.match(list, "^%d+,", e + 1)
      if digits then
        current = tonumber(string.sub(digits, 1, -2))
        rest = e + #digits
      end
    end
    if not s or current then
      if add then
        if current and current >= seq then return 0 end
        if current then
          list = string.sub(list, 1, e) .. seq .. string.sub(list, rest)
        else
          list = list .. '"' .. member .. '":' .. seq .. ","
        end
      else
        if not current or current >= seq then return 0 end
        list = string.sub(list, 1, s) .. string.sub(list, rest + 1)
      end
      redis.call("HSET", key, "data", head .. string.sub(list, 2, -2) .. "}}")
      redis.call("HINCRBY", key, "version", 1)
      return 1
    end
  end
  local doc = {}
  if data then
    local ok, decoded = pcall(cjson.decode, data)
    if not ok or type(decoded) ~= "table" then
      return redis.error_reply("CORRUPT not JSON")
    end
    doc = decoded
  end
  if type(doc.patients) ~= "table" then
    doc.patients = {}
  end
  local current = doc.patients[member]
  if add then
    if current and current >= seq then return 0 end
    doc.patients[member] = seq
  else
    if not current or current >= seq then return 0 end
    doc.patients[member] = nil
  end
  redis.call("HSET", key, "data", cjson.encode(doc))
  redis.call("HINCRBY", key, "version", 1)
  return 1
end
"#;

/// One membership change. KEYS: the index. ARGV: member, seq, "1" to add or "0" to remove.
const SET_MEMBER_BODY: &str = r#"
return set_member(KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3] == "1")"#;

/// [`SET_MANY_SCRIPT`] for the first `ARGV[1]` keys, then `ARGV[2]` claims: each key created with
/// its data (`version` 1, as Dapr's set script leaves a new key) unless it already exists, which
/// is left alone; then the remaining keys' membership changes. `ARGV` after the counts: ETag-or-"0"
/// and data per key, data per claim, member, seq and "1"/"0" per membership. Nothing after a
/// refusal is written. Returns 1 or 0 per claim: created or not.
const COMMIT_BODY: &str = r#"
local n = tonumber(ARGV[1])
local c = tonumber(ARGV[2])
for i = 1, n do
  local etag = redis.pcall("HGET", KEYS[i], "version");
  if type(etag) == "table" then
    redis.call("DEL", KEYS[i]);
  end;
  local fwr = redis.pcall("HGET", KEYS[i], "first-write");
  local ver = ARGV[2 * i + 1];
  if not etag or type(etag)=="table" or etag == "" or etag == ver or (not fwr and ver == "0") then
    redis.call("HSET", KEYS[i], "data", ARGV[2 * i + 2]);
    redis.call("HINCRBY", KEYS[i], "version", 1);
  else
    return error("failed to set key " .. KEYS[i])
  end;
end;
local created = {}
local a = 2 * n + 2
for i = n + 1, n + c do
  a = a + 1
  if redis.call("EXISTS", KEYS[i]) == 1 then
    created[#created + 1] = 0
  else
    redis.call("HSET", KEYS[i], "data", ARGV[a], "version", 1);
    created[#created + 1] = 1
  end;
end;
for i = n + c + 1, #KEYS do
  local r = set_member(KEYS[i], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3] == "1")
  if type(r) == "table" then return r end
  a = a + 3
end;
return created"#;

/// Redis state store. Connects lazily and reconnects by itself; cheap to clone.
#[derive(Clone)]
pub struct RedisStateStore {
    conn: ConnectionManager,
    prefix: String,
    set: Script,
    set_many: Script,
    commit: Script,
    set_member: Script,
    del: Script,
}

fn classify(e: &RedisError) -> PortError {
    let text = e.to_string();
    if text.contains("failed to set key") || text.contains("failed to delete") {
        // The script's refusal: the ETag did not match. (The text names the key: not logged.)
        PortError::Conflict
    } else if e.kind() == redis::ErrorKind::Parse || matches!(e.code(), Some("WRONGTYPE" | "CORRUPT")) {
        PortError::Corrupt(format!("redis: {}", e.category()))
    } else {
        // Connection refused or dropped, timeouts, LOADING, OOM, MASTERDOWN…: worth retrying.
        PortError::Unavailable(format!("redis: {}", e.category()))
    }
}

/// A lazily connecting, self-reconnecting Redis connection with short timeouts (a slow Redis is
/// an unavailable one). `what` names the setting the URL came from, for errors.
pub(crate) fn connect(url: &Secret, what: &str, response_timeout: Duration) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url.expose()).map_err(|e| format!("{what}: {}", e.category()))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config).map_err(|e| format!("{what}: {}", e.category()))
}

/// `PING`, classified as every other call.
pub(crate) async fn ping(conn: &ConnectionManager) -> Result<(), PortError> {
    let mut conn = conn.clone();
    let _: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(|e| classify(&e))?;
    Ok(())
}

impl RedisStateStore {
    /// `prefix` is Dapr's key prefix (`wardwatch` → `wardwatch||<key>`); empty for none.
    pub fn new(url: &Secret, prefix: &str) -> Result<Self, String> {
        let conn = connect(url, "REDIS_URL", Duration::from_secs(2))?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            set: Script::new(SET_SCRIPT),
            set_many: Script::new(SET_MANY_SCRIPT),
            commit: Script::new(&format!("{MEMBER_FUNCTION}{COMMIT_BODY}")),
            set_member: Script::new(&format!("{MEMBER_FUNCTION}{SET_MEMBER_BODY}")),
            del: Script::new(DEL_SCRIPT),
        })
    }

    /// The Redis key for a state key, as daprd would form it.
    pub fn redis_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}||{key}", self.prefix)
        }
    }
}

/// A Dapr state entry from its HASH fields: both `data` and `version`, or nothing at all.
fn versioned(
    key: &str,
    mut fields: std::collections::HashMap<String, Vec<u8>>,
) -> Result<Option<Versioned>, PortError> {
    if fields.is_empty() {
        return Ok(None);
    }
    match (fields.remove("data"), fields.remove("version")) {
        (Some(data), Some(version)) => Ok(Some(Versioned {
            data,
            etag: String::from_utf8_lossy(&version).into_owned(),
        })),
        _ => Err(PortError::Corrupt(format!(
            "{}: required hash field 'data' or 'version' was not found",
            wardwatch_domain::ports::key_kind(key)
        ))),
    }
}

/// The script's version argument: the ETag (an integer, as Dapr requires), or "0" for none.
fn version_arg(etag: Option<&str>) -> Result<&str, PortError> {
    match etag {
        Some(e) if !e.is_empty() => {
            e.parse::<i64>()
                .map_err(|_| PortError::Corrupt("an ETag must be an integer".into()))?;
            Ok(e)
        }
        _ => Ok("0"),
    }
}

fn check_key(key: &str) -> Result<(), PortError> {
    if key.contains("||") || key.is_empty() {
        return Err(PortError::Corrupt(
            "state keys must be non-empty and must not contain `||`".into(),
        ));
    }
    Ok(())
}

impl StateStore for RedisStateStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, PortError> {
        check_key(key)?;
        let mut conn = self.conn.clone();
        let fields: std::collections::HashMap<String, Vec<u8>> =
            conn.hgetall(self.redis_key(key)).await.map_err(|e| classify(&e))?;
        versioned(key, fields)
    }

    async fn set(&self, key: &str, data: &[u8], etag: Option<&str>) -> Result<(), PortError> {
        check_key(key)?;
        let version = version_arg(etag)?;
        let mut conn = self.conn.clone();
        // ARGV[3] = "1": last-write / no first-write flag, as daprd sends by default.
        let _: i64 = self
            .set
            .key(self.redis_key(key))
            .arg(version)
            .arg(data)
            .arg("1")
            .invoke_async(&mut conn)
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn set_many(&self, items: &[(String, Vec<u8>, Option<String>)]) -> Result<(), PortError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut invocation = self.set_many.prepare_invoke();
        for (key, data, etag) in items {
            check_key(key)?;
            invocation.key(self.redis_key(key));
            invocation.arg(version_arg(etag.as_deref())?).arg(data.as_slice());
        }
        let mut conn = self.conn.clone();
        let _: i64 = invocation.invoke_async(&mut conn).await.map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn set_many_and_claim(
        &self,
        items: &[(String, Vec<u8>, Option<String>)],
        claims: &[(String, Vec<u8>)],
    ) -> Result<Vec<bool>, PortError> {
        if claims.is_empty() {
            self.set_many(items).await?;
            return Ok(Vec::new());
        }
        Ok(self.set_many_claim_and_members(items, claims, &[]).await?.0)
    }

    async fn set_many_claim_and_members(
        &self,
        items: &[(String, Vec<u8>, Option<String>)],
        claims: &[(String, Vec<u8>)],
        members: &[Membership],
    ) -> Result<(Vec<bool>, bool), PortError> {
        let mut invocation = self.commit.prepare_invoke();
        invocation.arg(items.len()).arg(claims.len());
        for (key, data, etag) in items {
            check_key(key)?;
            invocation.key(self.redis_key(key));
            invocation.arg(version_arg(etag.as_deref())?).arg(data.as_slice());
        }
        for (key, data) in claims {
            check_key(key)?;
            invocation.key(self.redis_key(key));
            invocation.arg(data.as_slice());
        }
        for m in members {
            check_key(&m.key)?;
            invocation.key(self.redis_key(&m.key));
            invocation
                .arg(&m.member)
                .arg(m.seq)
                .arg(if m.present { "1" } else { "0" });
        }
        let mut conn = self.conn.clone();
        let created: Vec<i64> = invocation.invoke_async(&mut conn).await.map_err(|e| classify(&e))?;
        if created.len() != claims.len() {
            return Err(PortError::Corrupt(
                "redis: the commit script answered the wrong count".into(),
            ));
        }
        Ok((created.into_iter().map(|c| c == 1).collect(), true))
    }

    async fn set_member(&self, key: &str, member: &str, seq: u64, present: bool) -> Result<bool, PortError> {
        check_key(key)?;
        let mut conn = self.conn.clone();
        let _: i64 = self
            .set_member
            .key(self.redis_key(key))
            .arg(member)
            .arg(seq)
            .arg(if present { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(|e| classify(&e))?;
        Ok(true)
    }

    async fn delete(&self, key: &str, etag: Option<&str>) -> Result<(), PortError> {
        check_key(key)?;
        let mut conn = self.conn.clone();
        let _: i64 = self
            .del
            .key(self.redis_key(key))
            .arg(etag.filter(|e| !e.is_empty()).unwrap_or("0"))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    /// One pipelined round trip of `HGETALL`s.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Versioned>>, PortError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            check_key(key)?;
            pipe.cmd("HGETALL").arg(self.redis_key(key));
        }
        let mut conn = self.conn.clone();
        let replies: Vec<std::collections::HashMap<String, Vec<u8>>> =
            pipe.query_async(&mut conn).await.map_err(|e| classify(&e))?;
        keys.iter()
            .zip(replies)
            .map(|(key, fields)| versioned(key, fields))
            .collect()
    }

    async fn ping(&self) -> Result<(), PortError> {
        ping(&self.conn).await
    }
}
