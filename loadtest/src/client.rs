//! The HTTP side the load tools share: a plain hyper client, one call with a deadline, and the
//! admission of a run's patients through `POST /fhir`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::{admission_bundle, lab_mrn, ward_and_bed};

/// A plain HTTP/1.1 client (loopback only: no TLS).
pub type Http = Client<HttpConnector, Full<Bytes>>;

/// A client with hyper's default pool.
pub fn http_client() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One request with a body of JSON (FHIR), answered within 30 s: the status and the whole body.
pub async fn http_call(
    client: &Http,
    method: Method,
    url: &str,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Bytes), String> {
    let mut builder = Request::builder().method(method).uri(url);
    if body.is_some() {
        builder = builder.header("content-type", "application/fhir+json");
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| format!("bad request for {url}: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .map_err(|_| format!("{url}: no answer within 30 s"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: reading the body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// Admit patients `0..patients` of the run `tag` ([`lab_mrn`]) through `POST /fhir`, `concurrency`
/// requests at a time; any answer but 2xx stops it.
pub async fn admit(base: &str, patients: u64, tag: &str, concurrency: u64) -> Result<Value, String> {
    let client = http_client();
    let url = format!("{}/fhir", base.trim_end_matches('/'));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, url, next, tag) = (client.clone(), url.clone(), next.clone(), tag.to_owned());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= patients {
                    return Ok::<(), String>(());
                }
                let (ward, bed) = ward_and_bed(i);
                let mrn = lab_mrn(&tag, i);
                let bundle = admission_bundle(&mrn, &format!("{mrn}-S"), &ward, &bed, i);
                let (status, body) =
                    http_call(&client, Method::POST, &url, Some(bundle.to_string().into_bytes())).await?;
                if !status.is_success() {
                    return Err(format!(
                        "admitting {mrn} answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| format!("an admitting task failed: {e}"))??;
    }
    Ok(json!({"patients": patients, "seconds": start.elapsed().as_secs_f64()}))
}
