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

/// A 2xx answer, or the port error it stands for.
fn succeeded(status: StatusCode) -> Result<(), PortError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(failed(status))
    }
}

/// Turn a sidecar error answer into a port error: 409 is an ETag mismatch; 400 is a request the
/// sidecar will never accept (malformed key or ETag) and must not be retried forever; anything
/// else (5xx: the store or broker behind daprd is down, 404: component not loaded yet) is
/// worth retrying.
fn failed(status: StatusCode) -> PortError {
    match status {
        StatusCode::CONFLICT => PortError::Conflict,
        StatusCode::BAD_REQUEST => PortError::Corrupt("the sidecar refused the request as malformed (400)".into()),
        s => unavailable(format!("sidecar answered {s}")),
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
            s => Err(failed(s)),
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
        let (status, _, _) = self
            .call(Method::POST, &self.state_path(None), Some(body), None)
            .await?;
        succeeded(status)
    }

    async fn delete(&self, key: &str, etag: Option<&str>) -> Result<(), PortError> {
        let (status, _, _) = self
            .call(Method::DELETE, &self.state_path(Some(key)), None, etag)
            .await?;
        succeeded(status)
    }

    async fn ping(&self) -> Result<(), PortError> {
        let (status, _, _) = self.call(Method::GET, "/v1.0/healthz", None, None).await?;
        succeeded(status)
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
        let (status, _, _) = self
            .call(
                Method::POST,
                &format!("/v1.0/bindings/{}", segment(lane)),
                Some(body),
                None,
            )
            .await?;
        succeeded(status)
    }

    async fn ping(&self) -> Result<(), PortError> {
        StateStore::ping(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("mrn-12 34/5"), "mrn-12%2034%2F5");
        assert_eq!(segment("result-abc.1"), "result-abc.1");
    }
}
