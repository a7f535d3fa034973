//! CloudEvents 1.0 over HTTP, binary and structured mode — what Knative Eventing's RabbitMQ
//! source (and a RabbitMQ Broker's Trigger) delivers.

use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;

/// The parts of a CloudEvent the runtime uses.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    pub id: String,
    pub event_type: Option<String>,
    /// The event data as bytes (the queue message body).
    pub data: Bytes,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// True when the request carries a CloudEvent (either mode).
pub fn is_cloudevent(headers: &HeaderMap) -> bool {
    headers.contains_key("ce-specversion")
        || header(headers, "content-type").is_some_and(|c| c.trim_start().starts_with("application/cloudevents+json"))
}

/// Read a CloudEvent from an HTTP request. The error says what is wrong with it.
pub fn from_http(headers: &HeaderMap, body: Bytes) -> Result<CloudEvent, String> {
    if let Some(version) = header(headers, "ce-specversion") {
        if version != "1.0" {
            return Err(format!(
                "unsupported CloudEvents specversion `{version}` (expected 1.0)"
            ));
        }
        let id = header(headers, "ce-id").ok_or("binary-mode CloudEvent without a ce-id header")?;
        return Ok(CloudEvent {
            id: id.to_owned(),
            event_type: header(headers, "ce-type").map(str::to_owned),
            data: body,
        });
    }
    let event: Value = serde_json::from_slice(&body).map_err(|e| format!("structured CloudEvent is not JSON: {e}"))?;
    let obj = event.as_object().ok_or("structured CloudEvent is not a JSON object")?;
    match obj.get("specversion").and_then(Value::as_str) {
        Some("1.0") => {}
        Some(v) => return Err(format!("unsupported CloudEvents specversion `{v}` (expected 1.0)")),
        None => return Err("structured CloudEvent without specversion".into()),
    }
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .ok_or("structured CloudEvent without an id")?;
    let data = if let Some(b64) = obj.get("data_base64") {
        let text = b64.as_str().ok_or("data_base64 is not a string")?;
        Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("data_base64 is not base64: {e}"))?,
        )
    } else {
        match obj.get("data") {
            None | Some(Value::Null) => Bytes::new(),
            Some(Value::String(s)) => Bytes::from(s.clone()),
            Some(other) => Bytes::from(other.to_string()),
        }
    };
    Ok(CloudEvent {
        id: id.to_owned(),
        event_type: obj.get("type").and_then(Value::as_str).map(str::to_owned),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_mode_takes_the_body_as_data_and_the_id_from_ce_id() {
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", "1.0".parse().expect("header"));
        h.insert("ce-id", "abc".parse().expect("header"));
        h.insert("ce-type", "dev.knative.rabbitmq.event".parse().expect("header"));
        let ce = from_http(&h, Bytes::from_static(b"{\"a\":1}")).expect("event");
        assert_eq!((ce.id.as_str(), &ce.data[..]), ("abc", &b"{\"a\":1}"[..]));
    }

    #[test]
    fn structured_mode_reads_json_data_and_base64_data() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "application/cloudevents+json; charset=utf-8".parse().expect("header"),
        );
        assert!(is_cloudevent(&h));
        let ce = from_http(
            &h,
            Bytes::from_static(br#"{"specversion":"1.0","id":"1","type":"t","source":"s","data":{"k":2}}"#),
        )
        .expect("event");
        assert_eq!(&ce.data[..], br#"{"k":2}"#);
        let ce = from_http(
            &h,
            Bytes::from_static(br#"{"specversion":"1.0","id":"2","type":"t","source":"s","data_base64":"aGk="}"#),
        )
        .expect("event");
        assert_eq!(&ce.data[..], b"hi");
    }

    #[test]
    fn a_broken_cloudevent_is_refused_with_a_reason() {
        let h = HeaderMap::new();
        assert!(
            from_http(&h, Bytes::from_static(b"{}"))
                .expect_err("refused")
                .contains("specversion")
        );
        assert!(from_http(&h, Bytes::from_static(b"nope")).is_err());
    }
}
