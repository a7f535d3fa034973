//! `adt-feed`: admissions from a queue (issue 9). The hospital's PAS or interface engine puts
//! HL7 v2 ADT messages (or FHIR transaction Bundles, Patients, Encounters) on the `adt-feed`
//! queue; daprd delivers them as `POST /adt-feed`, or `wardwatch up` consumes the queue itself.
//!
//! The same code as the HTTP ways in: ER7 is read by `domain::adt` and admitted by
//! [`Admit::admit_adt`] (as `POST /hl7v2`), one message after the other; JSON goes to [`Admit`]'s
//! own FHIR handling (as `POST /fhir`). What the runtime does with the outcome:
//!
//! | outcome | delivery |
//! |---|---|
//! | admitted (or nothing new: the same message again) | acked |
//! | refused (unreadable, another event, refused by the admission rules) | kept on `adt-feed-rejected` with the reason (table 0357 condition and text), acked |
//! | the state store is unavailable, or a concurrent update | not acked: redelivered |
//!
//! A batch is refused whole when any of its messages cannot be read; the messages before one
//! that the admission rules refuse are admitted, and a replay of the whole batch finds them
//! already there (nothing new). Logs name the message control id and the event, never patient
//! data.

use std::sync::Arc;

use chrono::Utc;
use wardwatch_domain::adt;
use wardwatch_domain::identity::IdentityRules;
use wardwatch_domain::lab::er7;
use wardwatch_domain::ports::{EventLog, Publisher, StateStore};
use wardwatch_runtime::{Event, Failure, FailureKind, Function, Output};

use crate::Admit;
use crate::hl7v2::Hl7v2;

/// The `adt-feed` consumer, over an [`Admit`].
pub struct AdtFeed<S, L, P> {
    admit: Arc<Admit<S, L, P>>,
    hl7v2: Hl7v2<S, L, P>,
    identity: IdentityRules,
    zone: chrono_tz::Tz,
}

impl<S: StateStore, L: EventLog, P: Publisher> AdtFeed<S, L, P> {
    pub fn new(admit: Arc<Admit<S, L, P>>, identity: IdentityRules, zone: chrono_tz::Tz) -> Self {
        let hl7v2 = Hl7v2::new(admit.clone(), identity.clone(), zone);
        Self {
            admit,
            hl7v2,
            identity,
            zone,
        }
    }

    /// The rules table a merge re-derives the survivor's alerts with (as [`Hl7v2::with_rules`]).
    pub fn with_rules(mut self, rules: Arc<wardwatch_domain::rules::CriticalLimits>) -> Self {
        self.hl7v2 = self.hl7v2.with_rules(rules);
        self
    }

    async fn adt(&self, payload: &[u8]) -> Result<Output, Failure> {
        let now = Utc::now();
        let settings = adt::Settings {
            identity: &self.identity,
            zone: self.zone,
            visit_system: None,
        };
        let messages = adt::read(payload, &settings).map_err(|refusal| {
            let id = refusal.header.as_ref().map(|h| h.control_id.clone()).unwrap_or_default();
            tracing::info!(control_id = %id, condition = refusal.condition, "an HL7 v2 message on adt-feed was refused");
            Failure::invalid(format!(
                "HL7 v2 {} ({} {}): {}",
                refusal.code.as_str(),
                refusal.condition,
                adt::condition::text(refusal.condition),
                refusal.reason
            ))
        })?;
        for (i, m) in messages.iter().enumerate() {
            match self.hl7v2.take(m, now).await {
                Ok(()) => {
                    tracing::info!(control_id = %m.control_id, event = m.trigger.code(), "HL7 v2 ADT admitted from adt-feed");
                }
                Err((mut failure, refused)) => {
                    if failure.kind != FailureKind::Transient {
                        failure.message = format!(
                            "HL7 v2 AE ({refused} {}): {}",
                            adt::condition::text(refused),
                            failure.message
                        );
                    }
                    tracing::info!(control_id = %m.control_id, event = m.trigger.code(), kind = failure.kind.as_str(), "an HL7 v2 ADT message on adt-feed was not admitted");
                    if failure.kind != FailureKind::Transient && messages.len() > 1 {
                        failure.message = format!(
                            "message {} of the batch (MSH-10 {}; the ones before it are admitted): {}",
                            i + 1,
                            m.control_id,
                            failure.message
                        );
                    }
                    return Err(failure);
                }
            }
        }
        Ok(Output::accepted())
    }
}

impl<S: StateStore, L: EventLog, P: Publisher> Function for AdtFeed<S, L, P> {
    fn name(&self) -> &'static str {
        "admit"
    }

    async fn call(&self, event: Event) -> Result<Output, Failure> {
        if er7::looks_like_er7(&event.payload) {
            return self.adt(&event.payload).await;
        }
        if event.payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            // FHIR: the way `POST /fhir` takes it (the queue says no method or media type).
            let mut event = event;
            event.context.method = None;
            event.context.content_type = None;
            event.context.source = crate::rest::PREFIX.to_owned();
            return self.admit.call(event).await;
        }
        Err(Failure::invalid(
            "neither HL7 v2 (no MSH segment first) nor FHIR JSON: adt-feed takes HL7 v2 ADT messages \
             or FHIR transaction Bundles, Patients and Encounters",
        ))
    }

    async fn ready(&self) -> Result<(), String> {
        self.admit.ready().await
    }

    fn prepare(&self) {
        self.admit.prepare();
    }
}
