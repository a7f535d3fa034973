//! `POST /hl7v2`: HL7 v2 ADT as a second way in (issue 9, first part). The body is ER7 (MLLP
//! framing bytes, CR/LF/CRLF, batches and the character set MSH-18 names are accepted); each
//! message is read by `domain::adt` into the Patient and Encounter a FHIR client would post,
//! and admitted by the same validation and decision ([`Admit::admit_adt`]). The answer is the
//! HL7 ACK of each message, in order (`x-application/hl7-v2+er7`), sent once the message is
//! written:
//!
//! | outcome | ACK | HTTP |
//! |---|---|---|
//! | admitted (or nothing new: the same message again) | `AA` | 200 |
//! | merged (A40, A34: [`crate::merge`]; or nothing new: the same merge again) | `AA` | 200 |
//! | read, refused by its content or the admission rules (MSA-3/ERR say why) | `AE` | 422 |
//! | a merge whose surviving patient is not known (204), or whose identifiers name more than one patient (205) | `AE` | 422 |
//! | not taken at all: unreadable, another message type or event (A17, A35 …), another version | `AR` | 400 |
//! | the state store is unavailable: nothing written, send it again | `AE`, condition 206 | 503 |
//!
//! A merge re-derives the survivor's alerts with the rules table evaluate-alert uses
//! ([`Hl7v2::with_rules`], `RULES_FILE`).
//!
//! A batch stops at the first message that is not accepted: the ACKs of the messages before it
//! (admitted) and its own are sent; the ones after it are not taken and get no ACK.
//! Behind `APP_API_TOKEN` like `/fhir`. Logs name the message control id and the event, never
//! patient data. `wardwatch up --mllp` answers each ADT message over MLLP with [`Hl7v2::receive`]
//! too (`host/src/mllp.rs`), and the `adt-feed` lane reads ADT the same way ([`crate::feed`]).

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use http::{HeaderValue, Request, Response, header};
use wardwatch_domain::adt::{self, AckCode, condition};
use wardwatch_domain::identity::IdentityRules;
use wardwatch_domain::ports::{EventLog, Publisher, StateStore};
use wardwatch_domain::rules::CriticalLimits;
use wardwatch_runtime::{Body, Endpoint, Failure, FailureKind, full};

use crate::Admit;

/// The media type of ER7 over HTTP.
pub const ER7: &str = "x-application/hl7-v2+er7";

/// The HL7 v2 receiver, over an [`Admit`].
pub struct Hl7v2<S, L, P> {
    admit: std::sync::Arc<Admit<S, L, P>>,
    identity: IdentityRules,
    zone: chrono_tz::Tz,
    rules: Arc<CriticalLimits>,
}

impl<S: StateStore, L: EventLog, P: Publisher> Hl7v2<S, L, P> {
    pub fn new(admit: std::sync::Arc<Admit<S, L, P>>, identity: IdentityRules, zone: chrono_tz::Tz) -> Self {
        Self {
            admit,
            identity,
            zone,
            rules: Arc::new(CriticalLimits::default()),
        }
    }

    /// The rules table evaluate-alert uses (`RULES_FILE`): a merge re-derives the survivor's
    /// alerts with it. Without it, the built-in table.
    pub fn with_rules(mut self, rules: Arc<CriticalLimits>) -> Self {
        self.rules = rules;
        self
    }

    /// Write what one message says: a merge ([`crate::merge`]) or an admission
    /// ([`Admit::admit_adt`]). A refusal comes with what its AE says by table 0357 when it is
    /// not transient. The same for every way in (`/hl7v2`, MLLP, the `adt-feed` queue).
    pub async fn take(&self, m: &adt::AdtMessage, now: chrono::DateTime<Utc>) -> Result<(), (Failure, &'static str)> {
        match &m.merge {
            Some(merge) => self
                .admit
                .merge(m, merge, &self.rules, now)
                .await
                .map(|_| ())
                .map_err(|e| {
                    let refused = e.condition();
                    (Failure::from(e), refused)
                }),
            None => self
                .admit
                .admit_adt(m, now)
                .await
                .map_err(|e| (Failure::from(e), condition::APPLICATION)),
        }
    }

    /// The ACKs for a payload, and the HTTP status they go with.
    pub async fn receive(&self, payload: &[u8]) -> (u16, String) {
        let now = Utc::now();
        let settings = adt::Settings {
            identity: &self.identity,
            zone: self.zone,
            visit_system: None,
        };
        let ack_id =
            |control_id: &str| format!("WW{}", wardwatch_domain::decide::digest(&format!("{control_id}{now}")));
        let messages = match adt::read(payload, &settings) {
            Ok(m) => m,
            Err(refusal) => {
                let id = refusal
                    .header
                    .as_ref()
                    .map(|h| h.control_id.clone())
                    .unwrap_or_default();
                tracing::warn!(control_id = %id, condition = refusal.condition, "an HL7 v2 message was refused");
                let status = if refusal.code == AckCode::AR { 400 } else { 422 };
                return (status, refusal.ack(&ack_id(&id), now));
            }
        };
        let mut acks = String::new();
        for m in &messages {
            match self.take(m, now).await {
                Ok(()) => {
                    tracing::info!(control_id = %m.control_id, event = m.trigger.code(), "HL7 v2 ADT admitted");
                    acks.push_str(&adt::ack(
                        Some(&m.sender),
                        AckCode::AA,
                        None,
                        &ack_id(&m.control_id),
                        now,
                    ));
                }
                Err((failure, refused)) => {
                    let transient = failure.kind == FailureKind::Transient;
                    tracing::warn!(control_id = %m.control_id, event = m.trigger.code(), kind = failure.kind.as_str(), "an HL7 v2 ADT message was not admitted");
                    // What the client is told: the failure's own words and the places it names
                    // (never an internal error's text).
                    let mut text = failure.message.clone();
                    for issue in failure.issues.iter().take(3) {
                        text.push_str(&format!("; {}: {}", issue.location, issue.message));
                    }
                    let (condition, status) = if transient {
                        (condition::RECORD_LOCKED, 503)
                    } else {
                        (refused, 422)
                    };
                    acks.push_str(&adt::ack(
                        Some(&m.sender),
                        AckCode::AE,
                        Some((condition, &text)),
                        &ack_id(&m.control_id),
                        now,
                    ));
                    return (status, acks);
                }
            }
        }
        (200, acks)
    }
}

fn er7_response(status: u16, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ER7));
    r
}

impl<S: StateStore, L: EventLog, P: Publisher> Endpoint for Hl7v2<S, L, P> {
    fn handle(&self, request: Request<Bytes>) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send + '_>> {
        Box::pin(async move {
            if request.method() != http::Method::POST {
                let mut r = er7_response(
                    405,
                    adt::ack(
                        None,
                        AckCode::AR,
                        Some((condition::MESSAGE_TYPE, "POST an HL7 v2 message here")),
                        "WW405",
                        Utc::now(),
                    ),
                );
                r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
                return r;
            }
            let (status, acks) = self.receive(request.body()).await;
            er7_response(status, acks)
        })
    }
}
