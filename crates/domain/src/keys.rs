//! Every state key, in one place. None contains `||` (Dapr's key separator). Identifiers and
//! ward names are hashed into name-based ids; a patient id is used as it is (a FHIR id: letters,
//! digits, `-` and `.`, at most 64), also when a client chose it.
//!
//! | key | holds | size |
//! |---|---|---|
//! | `record-<patient id>` | the patient record: identity, encounters, bounded results, alerts, outbox | one patient |
//! | `patient-<patient id>-<digest>` | a Patient resource as received (one key per version) | one resource |
//! | `encounter-<encounter id>-<digest>` | an Encounter resource as received | one resource |
//! | `result-<result id>-<digest>` | an Observation as received, with Wardwatch's id | one resource |
//! | `stay-<encounter id>` | `{"patient_id"}`: whose record an Encounter is in (for `GET /fhir/Encounter/<id>`), written with the record | tiny |
//! | `intent-<digest>` | a transaction spanning several patients, made durable before its first write and deleted after its last (rolled forward on retry or at start-up) | one request |
//! | `intents` | the intents not yet rolled forward | those requests |
//! | `ident-<hash of system and value>` | `{"patient_id"}`: which record an identifier belongs to | tiny |
//! | `ward-<hash of ward name>-<0…7>` | the ward's current inpatients (patient id → sequence), in eight shards by patient | an eighth of a ward |
//! | `wards` | the list of ward names seen | the hospital's wards |
//! | `unplaced` | patients on no ward with alerts nobody has acknowledged (not admitted yet, or discharged: needs follow-up) | that work list |
//! | `review` | patients with an unacknowledged alert that has a review time (read by the escalation tick) | that work list |
//! | `layout` | `{"version": 2}`: which layout this data is in | tiny |

use crate::ids;

/// The layout these keys make; written once, checked at start-up.
pub const LAYOUT_VERSION: u32 = 2;
pub const LAYOUT: &str = "layout";
pub const WARDS: &str = "wards";
pub const UNPLACED: &str = "unplaced";
pub const REVIEW: &str = "review";
/// Keys only the first layout (census + `alerts-open`) had: their presence means old data.
pub const OLD_LAYOUT: &[&str] = &["census", "alerts-open"];

pub fn record(patient_id: &str) -> String {
    format!("record-{patient_id}")
}

pub fn patient_resource(patient_id: &str, digest: &str) -> String {
    format!("patient-{patient_id}-{digest}")
}

pub fn encounter_resource(encounter_id: &str, digest: &str) -> String {
    format!("encounter-{encounter_id}-{digest}")
}

pub fn result_resource(result_id: &str, digest: &str) -> String {
    format!("result-{result_id}-{digest}")
}

/// The list of kept rejected deliveries (bounded: `records::rejects`).
pub const REJECTED_INDEX: &str = "rejected-index";

/// One kept rejected delivery, by its handle.
pub fn rejected(handle: &str) -> String {
    format!("rejected-{handle}")
}

/// Whose record Encounter `encounter_id` is in.
pub fn stay(encounter_id: &str) -> String {
    format!("stay-{encounter_id}")
}

/// A transaction spanning several patients, until it is rolled forward.
pub fn intent(digest: &str) -> String {
    format!("intent-{digest}")
}

/// The intents not yet rolled forward.
pub const INTENTS: &str = "intents";

pub fn identifier(system: &str, value: &str) -> String {
    format!("ident-{}", ids::derived("identifier", &[system, value]))
}

/// How many keys a ward's index is spread over: a write touches one, sized to an eighth of the
/// ward however many patients it holds.
pub const WARD_SHARDS: usize = 8;

/// The shard of ward `name`'s index that lists `patient_id`.
pub fn ward(name: &str, patient_id: &str) -> String {
    let shard = ids::derived("shard", &[patient_id]).as_bytes()[0] as usize % WARD_SHARDS;
    format!("ward-{}-{shard}", ids::derived("ward", &[name]))
}

/// Every shard of ward `name`'s index.
pub fn ward_shards(name: &str) -> Vec<String> {
    let base = ids::derived("ward", &[name]);
    (0..WARD_SHARDS).map(|i| format!("ward-{base}-{i}")).collect()
}

/// What kind of key this is (`record-…` → `record`), for messages and logs.
pub fn kind(key: &str) -> &str {
    key.split('-').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_carry_the_identifier_or_ward_name_itself() {
        let k = identifier("https://h.example/mrn", "555 || x");
        assert!(!k.contains("555") && !k.contains("||"), "{k}");
        assert!(!ward("Ward 7B", "p1").contains("7B"));
        assert!(ward_shards("Ward 7B").contains(&ward("Ward 7B", "p1")));
        assert_ne!(identifier("urn:a", "555"), identifier("urn:b", "555"));
    }
}
