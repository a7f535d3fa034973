//! Configuration: the only place that reads the environment. Fails fast at start-up.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use chrono_tz::Tz;

use wardwatch_domain::identity::IdentityRules;
use wardwatch_domain::rules::CriticalLimits;
use wardwatch_domain::units::UnitTable;

/// A credential or a URL that may contain one. Never printed: `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// For URLs: the URL with any `user:password@` removed, safe to log.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Strip `user:password@` from a URL (`amqp://guest:guest@h:5672/%2f` → `amqp://h:5672/%2f`).
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => "(unparseable URL)".to_owned(),
    }
}

/// Which implementation backs a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In-process; nothing survives a restart. The embedded default.
    Memory,
    /// Redis (state) or RabbitMQ (bus), reached directly.
    Direct,
    /// Through the Dapr sidecar's HTTP API.
    Dapr,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Direct => "direct",
            Backend::Dapr => "dapr",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name}: {problem}")]
    Invalid { name: &'static str, problem: String },
}

/// A data file named by the variable `name`, read and checked by `parse`; unset, the built-in one.
fn data_file<T: Default>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    let Some(path) = get(name) else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| invalid(name, format!("`{path}` cannot be read: {e}")))?;
    parse(&text).map_err(|e| invalid(name, format!("`{path}`: {e}")))
}

fn invalid(name: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        problem: problem.into(),
    }
}

/// Everything a Wardwatch binary can be told. See the README's configuration table.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (`LISTEN`, else `0.0.0.0:$PORT`, `PORT` default 8080).
    pub listen: SocketAddr,
    /// Whether `LISTEN` or `PORT` was set (the host defaults to loopback otherwise).
    pub listen_from_env: bool,
    /// daprd → app token (`APP_API_TOKEN`): required on every route but `/healthz` when set.
    pub app_api_token: Option<Secret>,
    /// The sidecar's HTTP port (`DAPR_HTTP_PORT`); set by the Dapr injector.
    pub dapr_http_port: Option<u16>,
    /// app → daprd token (`DAPR_API_TOKEN`).
    pub dapr_api_token: Option<Secret>,
    /// `REDIS_URL`, e.g. `redis://127.0.0.1:6379/0` (no TLS yet).
    pub redis_url: Option<Secret>,
    /// `AMQP_URL`, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f` (no TLS yet).
    pub amqp_url: Option<Secret>,
    /// `STATE_BACKEND`: memory | redis | dapr. Default: redis with `REDIS_URL`, dapr with
    /// `DAPR_HTTP_PORT`, else memory.
    pub state: Backend,
    /// `BUS_BACKEND`: memory | amqp | dapr. Default: amqp with `AMQP_URL`, dapr with
    /// `DAPR_HTTP_PORT`, else memory.
    pub bus: Backend,
    /// Dapr state store component name (`DAPR_STATE_STORE`, default `statestore`).
    pub dapr_state_store: String,
    /// Prefix of every Redis key, as Dapr's `keyPrefix` would make it (`STATE_KEY_PREFIX`,
    /// default `wardwatch`, lower-cased): keys are `<prefix>||<key>`; `none` = no prefix, as Dapr's
    /// `keyPrefix: none`.
    pub key_prefix: String,
    /// How a patient is known (`MRN_SYSTEMS`, `V2_IDENTIFIER_SYSTEMS`; see `domain::identity`).
    pub identity: IdentityRules,
    /// Where the event log lives (`EVENTS_REDIS_URL`, default `REDIS_URL`): a Redis Stream there,
    /// else a ring in process memory.
    pub events_url: Option<Secret>,
    /// How many events the log keeps (`EVENT_LOG_MAX`, default 100000; Redis trims approximately).
    pub event_log_max: usize,
    /// Unacknowledged deliveries per AMQP consumer (`AMQP_PREFETCH`, default 16).
    pub amqp_prefetch: u16,
    /// Largest accepted request body in bytes (`MAX_BODY_BYTES`, default 4 MiB, daprd's own limit).
    pub max_body_bytes: usize,
    /// Largest accepted queue delivery in bytes (`MAX_DELIVERY_BYTES`, default 16 MiB): lab
    /// feeds carry history bundles over 1 MiB. The HTTP body limit is `max_body_bytes`.
    pub max_delivery_bytes: usize,
    /// The units table (`UNITS_FILE`, else the built-in one): read and checked at start-up.
    pub units: Arc<UnitTable>,
    /// The critical limits (`RULES_FILE`, else the built-in table): read and checked at start-up.
    pub rules: Arc<CriticalLimits>,
    /// The hospital's time zone (`HOSPITAL_TZ`, IANA name, default `Europe/London`): HL7 v2
    /// times without an offset are read in it.
    pub zone: Tz,
    /// `LOG_FORMAT`: text (default) or json.
    pub log_json: bool,
    /// `BOARD_TOKEN`: when set, the board's page, API and event stream need a sign-in with it
    /// (browsers) or `Authorization: Bearer` with it (programs).
    pub board_token: Option<Secret>,
    /// How often `wardwatch up` checks for alerts past their review time (`ESCALATE_EVERY`,
    /// seconds, default 60; 0 turns the in-process ticker off, as for a deployment where a Dapr
    /// cron binding or a Knative PingSource calls `POST /escalate`).
    pub escalate_every: Option<std::time::Duration>,
    /// Where `wardwatch up` takes HL7 v2 over MLLP (`MLLP_LISTEN`, e.g. `0.0.0.0:2575`; `--mllp`).
    /// Unset: no MLLP listener. A message may be at most `max_body_bytes` long.
    pub mllp_listen: Option<SocketAddr>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Build from any lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let port: u16 = match get("PORT") {
            Some(p) => p
                .parse()
                .map_err(|_| invalid("PORT", format!("`{p}` is not a port number")))?,
            None => 8080,
        };
        let listen = match get("LISTEN") {
            Some(l) => l
                .parse()
                .map_err(|_| invalid("LISTEN", format!("`{l}` is not an address like 127.0.0.1:8080")))?,
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        };
        let dapr_http_port = match get("DAPR_HTTP_PORT") {
            Some(p) => Some(
                p.parse()
                    .map_err(|_| invalid("DAPR_HTTP_PORT", format!("`{p}` is not a port number")))?,
            ),
            None => None,
        };
        let redis_url = get("REDIS_URL").map(Secret::new);
        let amqp_url = get("AMQP_URL").map(Secret::new);
        let state = match get("STATE_BACKEND").as_deref() {
            Some("memory") => Backend::Memory,
            Some("redis") => Backend::Direct,
            Some("dapr") => Backend::Dapr,
            Some(other) => {
                return Err(invalid(
                    "STATE_BACKEND",
                    format!("`{other}`: expected memory, redis or dapr"),
                ));
            }
            None if redis_url.is_some() => Backend::Direct,
            None if dapr_http_port.is_some() => Backend::Dapr,
            None => Backend::Memory,
        };
        let bus = match get("BUS_BACKEND").as_deref() {
            Some("memory") => Backend::Memory,
            Some("amqp") => Backend::Direct,
            Some("dapr") => Backend::Dapr,
            Some(other) => {
                return Err(invalid(
                    "BUS_BACKEND",
                    format!("`{other}`: expected memory, amqp or dapr"),
                ));
            }
            None if amqp_url.is_some() => Backend::Direct,
            None if dapr_http_port.is_some() => Backend::Dapr,
            None => Backend::Memory,
        };
        let config = Self {
            listen,
            listen_from_env: get("LISTEN").is_some() || get("PORT").is_some(),
            app_api_token: get("APP_API_TOKEN").map(Secret::new),
            board_token: get("BOARD_TOKEN").filter(|t| !t.is_empty()).map(Secret::new),
            dapr_http_port,
            dapr_api_token: get("DAPR_API_TOKEN").map(Secret::new),
            redis_url,
            amqp_url,
            state,
            bus,
            dapr_state_store: get("DAPR_STATE_STORE").unwrap_or_else(|| "statestore".into()),
            // As Dapr's `keyPrefix`: a custom prefix is lower-cased; `none` means no prefix.
            key_prefix: match get("STATE_KEY_PREFIX").map(|p| p.to_lowercase()) {
                None => "wardwatch".into(),
                Some(p) if p == "none" => String::new(),
                Some(p) => p,
            },
            identity: IdentityRules {
                // `MRN_SYSTEM` (one system) is still read, as the first of the list.
                systems: get("MRN_SYSTEMS")
                    .or_else(|| get("MRN_SYSTEM"))
                    .map(|l| {
                        l.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                v2: match get("V2_IDENTIFIER_SYSTEMS") {
                    Some(t) => IdentityRules::parse_v2_table(&t).map_err(|e| invalid("V2_IDENTIFIER_SYSTEMS", e))?,
                    None => Vec::new(),
                },
            },
            events_url: get("EVENTS_REDIS_URL").map(Secret::new),
            event_log_max: match get("EVENT_LOG_MAX") {
                Some(n) => n
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n >= 100)
                    .ok_or_else(|| invalid("EVENT_LOG_MAX", format!("`{n}`: expected a count ≥ 100")))?,
                None => 100_000,
            },
            amqp_prefetch: match get("AMQP_PREFETCH") {
                Some(p) => p
                    .parse()
                    .ok()
                    .filter(|&n: &u16| n > 0)
                    .ok_or_else(|| invalid("AMQP_PREFETCH", format!("`{p}`: expected 1 to 65535")))?,
                None => 16,
            },
            max_body_bytes: match get("MAX_BODY_BYTES") {
                Some(b) => b
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n >= 1024)
                    .ok_or_else(|| invalid("MAX_BODY_BYTES", format!("`{b}`: expected a byte count ≥ 1024")))?,
                None => 4 * 1024 * 1024,
            },
            max_delivery_bytes: match get("MAX_DELIVERY_BYTES") {
                Some(b) => b
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n >= 1024)
                    .ok_or_else(|| invalid("MAX_DELIVERY_BYTES", format!("`{b}`: expected a byte count ≥ 1024")))?,
                None => 16 * 1024 * 1024,
            },
            units: Arc::new(data_file(&get, "UNITS_FILE", |t| {
                UnitTable::from_json(t).map_err(|e| e.to_string())
            })?),
            rules: Arc::new(data_file(&get, "RULES_FILE", CriticalLimits::parse)?),
            zone: match get("HOSPITAL_TZ") {
                Some(z) => z.parse().map_err(|_| {
                    invalid(
                        "HOSPITAL_TZ",
                        format!("`{z}` is not an IANA time zone (e.g. Europe/London)"),
                    )
                })?,
                None => chrono_tz::Europe::London,
            },
            escalate_every: match get("ESCALATE_EVERY") {
                Some(n) => match n.parse::<u64>() {
                    Ok(0) => None,
                    Ok(s) if s <= 86_400 => Some(std::time::Duration::from_secs(s)),
                    _ => {
                        return Err(invalid(
                            "ESCALATE_EVERY",
                            format!("`{n}`: expected seconds from 0 (off) to 86400"),
                        ));
                    }
                },
                None => Some(std::time::Duration::from_secs(60)),
            },
            mllp_listen: match get("MLLP_LISTEN") {
                Some(l) => Some(
                    l.parse()
                        .map_err(|_| invalid("MLLP_LISTEN", format!("`{l}` is not an address like 0.0.0.0:2575")))?,
                ),
                None => None,
            },
            log_json: match get("LOG_FORMAT").as_deref() {
                None | Some("text") => false,
                Some("json") => true,
                Some(other) => return Err(invalid("LOG_FORMAT", format!("`{other}`: expected text or json"))),
            },
        };
        config.validate_urls()?;
        config.check()?;
        Ok(config)
    }

    /// The URLs' schemes (also after command-line overrides).
    pub fn validate_urls(&self) -> Result<(), ConfigError> {
        if let Some(u) = &self.redis_url
            && !u.expose().starts_with("redis://")
        {
            return Err(invalid(
                "REDIS_URL",
                "must start with redis:// (TLS, rediss://, is not built in yet)",
            ));
        }
        if let Some(u) = &self.events_url
            && !u.expose().starts_with("redis://")
        {
            return Err(invalid(
                "EVENTS_REDIS_URL",
                "must start with redis:// (TLS, rediss://, is not built in yet)",
            ));
        }
        if let Some(u) = &self.amqp_url
            && !u.expose().starts_with("amqp://")
        {
            return Err(invalid(
                "AMQP_URL",
                "must start with amqp:// (TLS, amqps://, is not built in yet)",
            ));
        }
        Ok(())
    }

    /// Cross-field checks, also run after command-line overrides.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.state == Backend::Direct && self.redis_url.is_none() {
            return Err(invalid("STATE_BACKEND", "redis needs REDIS_URL"));
        }
        if self.bus == Backend::Direct && self.amqp_url.is_none() {
            return Err(invalid("BUS_BACKEND", "amqp needs AMQP_URL"));
        }
        if (self.state == Backend::Dapr || self.bus == Backend::Dapr) && self.dapr_http_port.is_none() {
            return Err(invalid(
                "DAPR_HTTP_PORT",
                "the dapr backend needs the sidecar's HTTP port",
            ));
        }
        if self.key_prefix.contains("||") {
            return Err(invalid("STATE_KEY_PREFIX", "must not contain `||`"));
        }
        if self
            .board_token
            .as_ref()
            .is_some_and(|t| t.expose().chars().count() < 16)
        {
            return Err(invalid("BOARD_TOKEN", "must be at least 16 characters"));
        }
        Ok(())
    }

    /// One line for the start-up log: which backends, never credentials.
    pub fn describe_backends(&self) -> String {
        let state = match self.state {
            Backend::Memory => "memory".to_owned(),
            Backend::Direct => format!(
                "redis {} (keys `{}||…`)",
                self.redis_url.as_ref().map(Secret::redacted_url).unwrap_or_default(),
                self.key_prefix
            ),
            Backend::Dapr => format!("dapr state store `{}`", self.dapr_state_store),
        };
        let bus = match self.bus {
            Backend::Memory => "in-process bus".to_owned(),
            Backend::Direct => format!(
                "rabbitmq {}",
                self.amqp_url.as_ref().map(Secret::redacted_url).unwrap_or_default()
            ),
            Backend::Dapr => "dapr output bindings".to_owned(),
        };
        let log = match self.event_log_url() {
            Some(u) => format!("redis stream {} `{}`", u.redacted_url(), self.event_stream()),
            None => "in process memory".to_owned(),
        };
        format!("state: {state}; bus: {bus}; event log: {log}")
    }

    /// The Redis holding the event log: `EVENTS_REDIS_URL`, else `REDIS_URL`.
    pub fn event_log_url(&self) -> Option<&Secret> {
        self.events_url.as_ref().or(self.redis_url.as_ref())
    }

    /// The event log's stream key: `<prefix>:events`.
    pub fn event_stream(&self) -> String {
        if self.key_prefix.is_empty() {
            "wardwatch:events".to_owned()
        } else {
            format!("{}:events", self.key_prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn with_nothing_set_everything_is_embedded_on_port_8080() {
        let c = config(&[]).expect("defaults");
        assert_eq!(
            (c.state, c.bus, c.listen.port()),
            (Backend::Memory, Backend::Memory, 8080)
        );
    }

    #[test]
    fn urls_select_redis_and_rabbitmq() {
        let c = config(&[
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        ])
        .expect("valid");
        assert_eq!((c.state, c.bus), (Backend::Direct, Backend::Direct));
    }

    #[test]
    fn a_broken_units_file_or_time_zone_stops_start_up_saying_where() {
        let dir = std::env::temp_dir().join(format!("ww-units-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let broken = dir.join("units.json");
        std::fs::write(&broken, "{\"analytes\": [\n  {\"name\": \"k\",}\n]}").expect("write");
        let path = broken.to_string_lossy().into_owned();
        let err = config(&[("UNITS_FILE", &path)]).expect_err("broken").to_string();
        assert!(err.starts_with("UNITS_FILE:") && err.contains("line 2"), "{err}");
        let missing = config(&[("UNITS_FILE", "/nonexistent/units.json")]).expect_err("missing");
        assert!(missing.to_string().contains("cannot be read"), "{missing}");
        std::fs::write(
            &broken,
            "{\"limits\": [\n  {\"analyte\": \"k\", \"unit\": \"mmol/L\", \"hihg\": 6}\n]}",
        )
        .expect("write");
        let err = config(&[("RULES_FILE", &path)]).expect_err("broken rules").to_string();
        assert!(
            err.starts_with("RULES_FILE:") && err.contains("line 2") && err.contains("hihg"),
            "{err}"
        );
        let err = config(&[("HOSPITAL_TZ", "Europe/Lundon")])
            .expect_err("zone")
            .to_string();
        assert!(err.starts_with("HOSPITAL_TZ:"), "{err}");
        let c = config(&[("HOSPITAL_TZ", "America/New_York")]).expect("zone");
        assert_eq!(c.zone, chrono_tz::America::New_York);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_bad_port_fails_naming_the_variable() {
        let err = config(&[("PORT", "eighty")]).expect_err("invalid");
        assert!(err.to_string().starts_with("PORT:"), "{err}");
    }

    #[test]
    fn credentials_never_reach_debug_or_the_backend_line() {
        let c = config(&[
            ("AMQP_URL", "amqp://alice:s3cret@mq:5672/%2f"),
            ("APP_API_TOKEN", "tok3n"),
        ])
        .expect("valid");
        let shown = format!("{c:?} {}", c.describe_backends());
        assert!(
            !shown.contains("s3cret") && !shown.contains("alice") && !shown.contains("tok3n"),
            "{shown}"
        );
        assert!(shown.contains("amqp://mq:5672/%2f"), "{shown}");
    }

    #[test]
    fn the_key_prefix_follows_daprs_key_prefix_rules() {
        assert_eq!(config(&[]).expect("valid").key_prefix, "wardwatch");
        assert_eq!(
            config(&[("STATE_KEY_PREFIX", "Ward")]).expect("valid").key_prefix,
            "ward"
        );
        assert_eq!(config(&[("STATE_KEY_PREFIX", "none")]).expect("valid").key_prefix, "");
        assert!(config(&[("STATE_KEY_PREFIX", "a||b")]).is_err());
    }

    #[test]
    fn the_mllp_listener_is_off_unless_mllp_listen_names_an_address() {
        assert_eq!(config(&[]).expect("valid").mllp_listen, None);
        let c = config(&[("MLLP_LISTEN", "127.0.0.1:2575")]).expect("valid");
        assert_eq!(c.mllp_listen, Some(SocketAddr::from(([127, 0, 0, 1], 2575))));
        let err = config(&[("MLLP_LISTEN", "2575")]).expect_err("no host");
        assert!(err.to_string().starts_with("MLLP_LISTEN:"), "{err}");
    }

    #[test]
    fn the_dapr_backend_needs_the_sidecar_port() {
        assert!(config(&[("STATE_BACKEND", "dapr")]).is_err());
        assert_eq!(
            config(&[("DAPR_HTTP_PORT", "3500")]).expect("valid").state,
            Backend::Dapr
        );
    }
}
