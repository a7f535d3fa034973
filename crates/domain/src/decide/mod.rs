//! The decisions, each a pure function `(record, input, now) -> (record', events)`:
//! - [`admission`]: a Patient and/or Encounters change identity, encounters and placement;
//!   admitted / transferred / discharged follow from the placement before and after;
//! - [`result`]: a laboratory result joins the history, ordered by the laboratory's own
//!   status and issue time, never by arrival;
//! - [`alerting`]: a stored result is checked against the rules; new findings become alerts.
//!
//! The caller loads the record, decides, writes the record back with its ETag and, only once
//! that write won, carries out the queued side effects (the record's outbox).

pub mod admission;
pub mod alerting;
pub mod result;

/// A short, stable digest of some content: name-based, so equal content gives equal digests.
pub fn digest(content: &str) -> String {
    crate::ids::derived("digest", &[content])
        .chars()
        .filter(|c| *c != '-')
        .take(16)
        .collect()
}
