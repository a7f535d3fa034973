//! The Dapr sidecar's HTTP API (`http://127.0.0.1:$DAPR_HTTP_PORT`): state and output bindings.
//! Every call carries `dapr-api-token` when `DAPR_API_TOKEN` is set.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use wardwatch_domain::ports::{PortError, Publisher, StateStore, Versioned};
use wardwatch_runtime::{Config, Secret};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A client of one sidecar. Cheap to clone.
#[derive(Clone)]
pub struct DaprClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    store: String,
    token: Option<Secret>,
}

/// Percent-encode one path segment (RFC 3986 unreserved characters pass).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unavailable(e: impl std::fmt::Display) -> PortError {
    PortError::Unavailable(format!("dapr: {e}"))
}

impl DaprClient {
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let port = config.dapr_http_port.ok_or("DAPR_HTTP_PORT is not set")?;
        Ok(Self::new(
            &format!("http://127.0.0.1:{port}"),
            &config.dapr_state_store,
            config.dapr_api_token.clone(),
        ))
    }

    pub fn new(base: &str, store: &str, token: Option<Secret>) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            store: store.to_owned(),
            token,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        if_match: Option<&str>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), PortError> {
        let mut builder = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            builder = builder.header("dapr-api-token", token.expose());
        }
        if let Some(etag) = if_match {
            builder = builder.header("If-Match", etag);
        }
        if body.is_some() {
            builder = builder.header("Content-Type", "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(unavailable)?;
        let response = tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| unavailable("sidecar timed out"))?
            .map_err(|e| unavailable(format!("sidecar unreachable ({e})")))?;
        let status = response.status();
        let (parts, body) = response.into_parts();
        let bytes = tokio::time::timeout(TIMEOUT, body.collect())
            .await
            .map_err(|_| unavailable("sidecar timed out"))?
            .map_err(unavailable)?
            .to_bytes();
        Ok((status, parts.headers, bytes))
    }

    fn state_path(&self, key: Option<&str>) -> String {
        match key {
            Some(k) => format!("/v1.0/state/{}/{}", segment(&self.store), segment(k)),
            None => format!("/v1.0/state/{}", segment(&self.store)),
        }
    }
}

/// Dapr's answer when the state store named in the request is unknown to the sidecar: HTTP 400,
/// though nothing is wrong with the request (dapr-knative.md §5).
const STORE_NOT_FOUND: &str = "ERR_STATE_STORE_NOT_FOUND";
/// Dapr's answer when no state store is loaded at all.
const STORES_NOT_CONFIGURED: &str = "ERR_STATE_STORES_NOT_CONFIGURED";

/// The state key `/readyz` reads. Never written: the sidecar answers 204.
const READINESS_PROBE_KEY: &str = "wardwatch-readiness-probe";

/// The `errorCode` of a sidecar error body `{"errorCode": "...", "message": "..."}`, read
/// defensively: a body that is not JSON, not an object or has no usable code gives `None`. Only
/// the code is kept (it is logged); the message is not, since it can quote a state key and keys
/// carry MRNs.
fn error_code(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let code = value.get("errorCode")?.as_str()?;
    let plausible = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    plausible.then(|| code.to_owned())
}

impl DaprClient {
    /// A 2xx answer, or the port error it stands for.
    fn succeeded(&self, status: StatusCode, body: &[u8]) -> Result<(), PortError> {
        if status.is_success() {
            Ok(())
        } else {
            Err(self.failed(status, body))
        }
    }

    /// Turn a sidecar error answer into a port error, by its `errorCode` first, then its status:
    /// - `ERR_STATE_STORE_NOT_FOUND` (a 400) and `ERR_STATE_STORES_NOT_CONFIGURED` are faults of
    ///   the deployment, not of the message: transient, so that a delivery is redelivered once
    ///   the sidecar is fixed and never lands on a rejected lane; the message names the fix;
    /// - 409 is an ETag mismatch;
    /// - any other 400 is a request the sidecar will never accept (malformed key or ETag), and
    ///   413 a body larger than the sidecar takes (daprd's max body size, 4 MB by default):
    ///   neither may be retried forever;
    /// - anything else (5xx: the store or broker behind daprd is down, 404: component not
    ///   loaded yet) is worth retrying.
    fn failed(&self, status: StatusCode, body: &[u8]) -> PortError {
        let code = error_code(body);
        let shown = code.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
        match code.as_deref() {
            Some(STORE_NOT_FOUND) => {
                return unavailable(format!(
                    "the sidecar does not know the state store `{}` ({STORE_NOT_FOUND}): check \
                     DAPR_STATE_STORE against the state component's metadata.name (misspelt?), that \
                     the component is loaded by this sidecar (components path or namespace), and \
                     that this app id is in the component's `scopes`",
                    self.store
                ));
            }
            Some(STORES_NOT_CONFIGURED) => {
                return unavailable(format!(
                    "the sidecar has no state store loaded ({STORES_NOT_CONFIGURED}); DAPR_STATE_STORE \
                     is `{}`: check that a state component with that metadata.name is in this \
                     sidecar's components path or namespace and that this app id is in its `scopes`",
                    self.store
                ));
            }
            _ => {}
        }
        match status {
            StatusCode::CONFLICT => PortError::Conflict,
            StatusCode::BAD_REQUEST => {
                PortError::Corrupt(format!("the sidecar refused the request as malformed (400{shown})"))
            }
            StatusCode::PAYLOAD_TOO_LARGE => PortError::Corrupt(format!(
                "the sidecar refused the request as too large (413{shown}): daprd's max body size is below it"
            )),
            s => unavailable(format!("sidecar answered {s}{shown}")),
        }
    }
}

impl StateStore for DaprClient {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, PortError> {
        let (status, headers, body) = self.call(Method::GET, &self.state_path(Some(key)), None, None).await?;
        match status {
            StatusCode::OK => {
                // Without its ETag a read-modify-write would silently become last-write-wins.
                let etag = headers
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .filter(|e| !e.is_empty())
                    .ok_or_else(|| PortError::Corrupt("the sidecar returned state without an ETag".into()))?
                    .to_owned();
                Ok(Some(Versioned {
                    data: body.to_vec(),
                    etag,
                }))
            }
            StatusCode::NO_CONTENT => Ok(None),
            s => Err(self.failed(s, &body)),
        }
    }

    async fn set(&self, key: &str, data: &[u8], etag: Option<&str>) -> Result<(), PortError> {
        // The state API takes a JSON value and re-encodes it (semantically equal, not
        // byte-equal): Wardwatch only stores JSON.
        let value: Value = serde_json::from_slice(data)
            .map_err(|_| PortError::Corrupt("only JSON values can be stored through Dapr".into()))?;
        let mut item = json!({"key": key, "value": value});
        if let Some(e) = etag {
            item["etag"] = Value::String(e.to_owned());
        }
        let body = serde_json::to_vec(&json!([item])).map_err(|e| PortError::Corrupt(e.to_string()))?;
        let (status, _, answer) = self
            .call(Method::POST, &self.state_path(None), Some(body), None)
            .await?;
        self.succeeded(status, &answer)
    }

    async fn delete(&self, key: &str, etag: Option<&str>) -> Result<(), PortError> {
        let (status, _, answer) = self
            .call(Method::DELETE, &self.state_path(Some(key)), None, etag)
            .await?;
        self.succeeded(status, &answer)
    }

    /// Reads a key that is never written (`GET /v1.0/state/<store>/wardwatch-readiness-probe`,
    /// answered 204) rather than asking daprd's `/v1.0/healthz`: that only says daprd is up,
    /// while this also proves that the sidecar knows `DAPR_STATE_STORE` (else
    /// `ERR_STATE_STORE_NOT_FOUND`, reported with its fix) and that the store behind it answers,
    /// as the Redis adapter's `PING` does. Asking on every probe, rather than remembering the
    /// last configuration fault a delivery met, catches the fault before the first delivery and
    /// sees it fixed (component reloaded, sidecar restarted) without needing a delivery to
    /// succeed first — which an unready pod might never be sent. The cost is one read of a
    /// missing key (one `HGETALL` in Redis) per probe.
    async fn ping(&self) -> Result<(), PortError> {
        let (status, _, answer) = self
            .call(Method::GET, &self.state_path(Some(READINESS_PROBE_KEY)), None, None)
            .await?;
        self.succeeded(status, &answer)
    }
}

impl Publisher for DaprClient {
    /// `POST /v1.0/bindings/<lane>` with `operation: create`. The JSON payload is sent as a
    /// JSON value (not a string), so the queue receives the JSON itself.
    async fn publish(&self, lane: &str, payload: &[u8]) -> Result<(), PortError> {
        let data: Value = serde_json::from_slice(payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()));
        let body = json!({"data": data, "operation": "create", "metadata": {"contentType": "application/json"}});
        let body = serde_json::to_vec(&body).map_err(|e| PortError::Corrupt(e.to_string()))?;
        let (status, _, answer) = self
            .call(
                Method::POST,
                &format!("/v1.0/bindings/{}", segment(lane)),
                Some(body),
                None,
            )
            .await?;
        self.succeeded(status, &answer)
    }

    /// daprd's own health: the bus may be Dapr while the state is not (no state component at
    /// all), so this must not read the state store.
    async fn ping(&self) -> Result<(), PortError> {
        let (status, _, answer) = self.call(Method::GET, "/v1.0/healthz", None, None).await?;
        self.succeeded(status, &answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(token: Option<&str>) -> DaprClient {
        DaprClient::new("http://127.0.0.1:9", "statestor", token.map(Secret::new))
    }

    #[test]
    fn the_error_code_is_read_defensively() {
        assert_eq!(
            error_code(br#"{"errorCode":"ERR_STATE_GET","message":"key mrn-1"}"#).as_deref(),
            Some("ERR_STATE_GET")
        );
        for body in [
            &b""[..],
            b"not json",
            b"\xff\xfe",
            b"[1,2]",
            b"null",
            br#"{"errorCode":42}"#,
            br#"{"errorCode":"lower case or <script>"}"#,
            br#"{"message":"no code"}"#,
        ] {
            assert_eq!(error_code(body), None, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn an_unknown_or_missing_state_store_is_a_transient_configuration_fault_naming_the_fix() {
        let c = client(Some("t0ken-never-shown"));
        for code in [STORE_NOT_FOUND, STORES_NOT_CONFIGURED] {
            let body = format!(r#"{{"errorCode":"{code}","message":"state store statestor is not found"}}"#);
            let e = c.failed(StatusCode::BAD_REQUEST, body.as_bytes());
            let PortError::Unavailable(message) = &e else {
                panic!("{code} must be transient, got {e:?}");
            };
            for needle in [code, "`statestor`", "DAPR_STATE_STORE", "scopes"] {
                assert!(message.contains(needle), "{message} should name {needle}");
            }
            assert!(!message.contains("t0ken"), "{message}");
        }
    }

    #[test]
    fn other_answers_keep_their_classification() {
        let c = client(None);
        let malformed = br#"{"errorCode":"ERR_MALFORMED_REQUEST","message":"bad etag"}"#;
        assert!(
            matches!(c.failed(StatusCode::BAD_REQUEST, malformed), PortError::Corrupt(m) if m.contains("ERR_MALFORMED_REQUEST"))
        );
        assert!(matches!(
            c.failed(StatusCode::BAD_REQUEST, b"<html>"),
            PortError::Corrupt(_)
        ));
        assert_eq!(
            c.failed(StatusCode::CONFLICT, br#"{"errorCode":"ERR_STATE_SAVE"}"#),
            PortError::Conflict
        );
        assert!(matches!(
            c.failed(StatusCode::PAYLOAD_TOO_LARGE, b""),
            PortError::Corrupt(_)
        ));
        assert!(matches!(
            c.failed(StatusCode::INTERNAL_SERVER_ERROR, br#"{"errorCode":"ERR_STATE_GET"}"#),
            PortError::Unavailable(_)
        ));
        assert!(matches!(
            c.failed(StatusCode::NOT_FOUND, b"{"),
            PortError::Unavailable(_)
        ));
        assert!(c.succeeded(StatusCode::NO_CONTENT, b"").is_ok());
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("mrn-12 34/5"), "mrn-12%2034%2F5");
        assert_eq!(segment("result-abc.1"), "result-abc.1");
    }
}
