//! Laboratory feeds as they arrive, read into FHIR R4 Observations: HL7 v2 ORU^R01 ([`oru`],
//! on top of [`er7`]) and FHIR shapes (single resources, Bundles of any type, DiagnosticReports,
//! NDJSON: [`fhir`]). Pure; what is then stored, and how, is `decide::result`'s and ingest-lab's.

pub mod er7;
pub mod fhir;
pub mod oru;

/// `Observation.identifier.system` of a result read from HL7 v2: its value is
/// `<filler|placer>|<order number>|<OBX-3>|<OBX-4>`, the result's identity across corrections.
pub const RESULT_IDENTIFIER_SYSTEM: &str = "https://wardwatch.dev/fhir/sid/v2-result";
/// Extension (`valueString`) naming the HL7 v2 message (MSH-10) a result came in.
pub const MESSAGE_ID_EXTENSION: &str = "https://wardwatch.dev/fhir/StructureDefinition/v2-message-control-id";
/// Extension (sub-extensions `value`, `unit`) keeping a result's value and unit as received.
pub const RECEIVED_EXTENSION: &str = "https://wardwatch.dev/fhir/StructureDefinition/as-received";
/// The coding system of a laboratory's local code (HL7 v2 coding system name appended).
const LOCAL_SYSTEM_BASE: &str = "https://wardwatch.dev/fhir/CodeSystem/v2-local/";

/// The FHIR system for an HL7 v2 coding system name that is not a known terminology.
pub fn local_system(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{LOCAL_SYSTEM_BASE}{safe}")
}

/// Whether a coding's system is one of ours for local codes.
pub fn is_local_system(system: &str) -> bool {
    system.starts_with(LOCAL_SYSTEM_BASE)
}
