//! The decisions, each a pure function `(record, input, now) -> (record', events)`:
//! - [`admission`]: a Patient and/or Encounters change identity, encounters and placement;
//!   admitted / transferred / discharged follow from the placement before and after;
//! - [`result`]: a laboratory result joins the history, ordered by the laboratory's own
//!   status and issue time, never by arrival;
//! - [`alerting`]: a stored result is checked against the rules; new findings become alerts;
//! - [`merge`]: a patient merged into another (HL7 v2 A40 / A34): the merged record is closed,
//!   the survivor takes its results, alerts and audit trail, and its alerts are re-derived.
//!
//! The caller loads the record, decides, writes the record back with its ETag and, only once
//! that write won, carries out the queued side effects (the record's outbox).

pub mod admission;
pub mod alerting;
pub mod merge;
pub mod result;

/// A short, stable digest of some content: name-based, so equal content gives equal digests.
pub fn digest(content: &str) -> String {
    crate::ids::derived("digest", &[content])
        .chars()
        .filter(|c| *c != '-')
        .take(16)
        .collect()
}
