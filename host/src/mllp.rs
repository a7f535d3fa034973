//! `wardwatch up --mllp <addr>` (`MLLP_LISTEN`): HL7 v2 over MLLP, as interface engines send it.
//! The framing and the listener are the runtime's (`wardwatch_runtime::mllp`); this is where
//! each message goes, by MSH-9, and the ACK it gets — written back only once the message is
//! durably taken:
//!
//! | MSH-9 | goes to | ACK |
//! |---|---|---|
//! | `ADT^…` | admit, the code path of `POST /hl7v2` ([`Hl7v2::receive`]) | AA once the patient record is written; AE (MSA-3/ERR say why) when refused; AR when not taken at all; AE 206 when the state store is unavailable (send it again) |
//! | `ORU^R01` | ingest-lab, the function the `lab-feed` lane calls | AA once the results are stored; AE 207 when refused (the message is kept on `lab-feed-rejected`, as a refused `lab-feed` delivery is); AE 206 when it could not be stored or kept now (send it again) |
//! | anything else, or no MSH | nothing | AR 200 naming the type (AR 100 without MSH) |
//! | a message over the size limit (`MAX_BODY_BYTES`) | nothing; the connection is closed after the ACK | AR 207 saying the limit |
//!
//! Logs name the peer address, the message control id and the event, never patient data.

use std::net::SocketAddr;

use bytes::Bytes;
use chrono::Utc;
use tracing::Instrument;
use wardwatch_domain::adt::{self, AckCode, Header, condition};
use wardwatch_domain::decide::digest;
use wardwatch_domain::ports::{EventLog, Publisher, StateStore};
use wardwatch_runtime::delivery::Deliverer;
use wardwatch_runtime::mllp::Receiver;
use wardwatch_runtime::{BoxFuture, Disposition, Trigger};

use admit::hl7v2::Hl7v2;

/// Where MLLP messages go: ADT to admit, ORU^R01 to the lab feed.
pub struct Route<S, L, P> {
    adt: Hl7v2<S, L, P>,
    /// The lab feed's deliverer (`None` in a process without ingest-lab: ORU is refused).
    lab: Option<Deliverer>,
}

impl<S, L, P> Route<S, L, P> {
    pub fn new(adt: Hl7v2<S, L, P>, lab: Option<Deliverer>) -> Self {
        Self { adt, lab }
    }
}

/// A fresh ACK control id (MSH-10 of the ACK).
fn ack_id(control_id: &str) -> String {
    format!("WW{}", digest(&format!("{control_id}{}", Utc::now())))
}

fn refuse(header: Option<&Header>, code: AckCode, condition: &str, text: &str) -> Bytes {
    let id = header.map(|h| h.control_id.as_str()).unwrap_or_default();
    Bytes::from(adt::ack(header, code, Some((condition, text)), &ack_id(id), Utc::now()))
}

impl<S: StateStore, L: EventLog, P: Publisher> Route<S, L, P> {
    async fn route(&self, message: Bytes) -> Bytes {
        let Some(header) = adt::header(&message) else {
            tracing::info!("an MLLP message without a readable MSH segment was refused");
            return refuse(
                None,
                AckCode::AR,
                condition::SEGMENT_SEQUENCE,
                "not an HL7 v2 message: no readable MSH segment first",
            );
        };
        match (header.message_type.as_str(), header.event.as_str()) {
            ("ADT", _) => Bytes::from(self.adt.receive(&message).await.1),
            ("ORU", "R01") => self.lab(message, &header).await,
            (kind, event) => {
                tracing::info!(control_id = %header.control_id, message_type = kind, event, "an MLLP message of a type not taken here was refused");
                let named = if event.is_empty() {
                    kind.to_owned()
                } else {
                    format!("{kind}^{event}")
                };
                refuse(
                    Some(&header),
                    AckCode::AR,
                    condition::MESSAGE_TYPE,
                    &format!("{named} is not taken here: MLLP takes ADT (admissions) and ORU^R01 (laboratory results)"),
                )
            }
        }
    }

    async fn lab(&self, message: Bytes, header: &Header) -> Bytes {
        let Some(lab) = &self.lab else {
            return refuse(
                Some(header),
                AckCode::AR,
                condition::MESSAGE_TYPE,
                "ORU^R01 is not taken by this process",
            );
        };
        let (disposition, failure) = lab
            .deliver_told(message, Trigger::Mllp, Some(header.control_id.clone()))
            .await;
        match disposition {
            Disposition::Done => {
                tracing::info!(control_id = %header.control_id, event = "R01", "HL7 v2 ORU stored");
                Bytes::from(adt::ack(
                    Some(header),
                    AckCode::AA,
                    None,
                    &ack_id(&header.control_id),
                    Utc::now(),
                ))
            }
            Disposition::Rejected => {
                // The failure's own words (for the sender) and the places it names; the
                // message itself is kept on lab-feed-rejected to be fixed and replayed.
                let mut text = failure.as_ref().map(|f| f.message.clone()).unwrap_or_default();
                for issue in failure.iter().flat_map(|f| f.issues.iter()).take(3) {
                    text.push_str(&format!("; {}: {}", issue.location, issue.message));
                }
                tracing::info!(control_id = %header.control_id, event = "R01", "HL7 v2 ORU refused and kept on the rejected lane");
                refuse(Some(header), AckCode::AE, condition::APPLICATION, &text)
            }
            Disposition::Retry => {
                tracing::warn!(control_id = %header.control_id, event = "R01", "HL7 v2 ORU not stored now: the sender is told to send it again");
                refuse(
                    Some(header),
                    AckCode::AE,
                    condition::RECORD_LOCKED,
                    "the results cannot be stored now: nothing was kept, send the message again",
                )
            }
        }
    }
}

impl<S: StateStore, L: EventLog, P: Publisher> Receiver for Route<S, L, P> {
    fn receive(&self, message: Bytes, peer: SocketAddr) -> BoxFuture<'_, Bytes> {
        Box::pin(self.route(message).instrument(tracing::info_span!("mllp", %peer)))
    }

    fn refuse_too_large(&self, head: &[u8], limit: usize, peer: SocketAddr) -> Bytes {
        // Whole segments only: the head ends wherever the limit fell.
        let whole = head
            .iter()
            .rposition(|&b| b == b'\r' || b == b'\n')
            .map_or(head, |end| &head[..=end]);
        let header = adt::header(whole);
        let id = header.as_ref().map(|h| h.control_id.clone()).unwrap_or_default();
        tracing::warn!(%peer, control_id = %id, limit, "an MLLP message over the size limit was refused");
        refuse(
            header.as_ref(),
            AckCode::AR,
            condition::APPLICATION,
            &format!(
                "the message is larger than the {limit} bytes taken here (MAX_BODY_BYTES); the connection is closed"
            ),
        )
    }
}
