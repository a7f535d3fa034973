//! Wardwatch's pure core: what a FHIR resource says, patient identity, canonical units,
//! clinical rules, the patient record and the decisions over it, the event log's events, state
//! keys, and the ports the functions use to reach the outside world.
//!
//! Nothing here does I/O or knows about tokio; the current time is always passed in.

pub mod adt;
pub mod aki;
pub mod alert;
pub mod decide;
pub mod events;
pub mod facts;
pub mod identity;
pub mod ids;
pub mod issue;
pub mod keys;
pub mod lab;
pub mod outcome;
pub mod ports;
pub mod record;
pub mod rules;
pub mod units;

pub use issue::Issue;

/// Names shared by every way of running Wardwatch: Dapr binding name = HTTP route = queue name.
pub mod lanes {
    /// Lab results arriving from the laboratory system (HL7 v2 ORU^R01, FHIR Observations in any shape).
    pub const LAB_FEED: &str = "lab-feed";
    /// A lab result has been stored (published by ingest-lab, consumed by evaluate-alert).
    pub const LAB_RESULTED: &str = "lab-resulted";
    /// An alert has been raised or changed (published by evaluate-alert).
    pub const ALERTS: &str = "alerts";
    /// A patient was admitted, transferred or discharged (published by admit).
    pub const ADMISSIONS: &str = "admissions";
    /// HL7 v2 ADT (and FHIR transaction Bundles) from the hospital's PAS or interface engine,
    /// queued for admit: the same admissions as `POST /hl7v2` and `POST /fhir`.
    pub const ADT_FEED: &str = "adt-feed";
    /// The binding (and route, `POST /escalate`) that wakes evaluate-alert to escalate alerts past
    /// their review time: a Dapr cron binding, a Knative PingSource, or `wardwatch up`'s ticker.
    pub const ESCALATE: &str = "escalate";
    /// Where a permanently failed delivery on `lane` is recorded, with the reason.
    pub fn rejected(lane: &str) -> String {
        format!("{lane}-rejected")
    }
}
