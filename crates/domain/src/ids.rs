//! Deterministic identifiers: the same input always gets the same id, so a redelivered message
//! or a re-posted Bundle updates what it created the first time instead of duplicating it.

use uuid::Uuid;

/// Namespace for Wardwatch's name-based (v5) UUIDs.
const NAMESPACE: Uuid = Uuid::from_u128(0x7761_7264_7761_7463_6800_0000_0000_0001);

/// A stable id derived from the given parts (joined with an unambiguous separator).
pub fn derived(kind: &str, parts: &[&str]) -> String {
    let mut name = String::from(kind);
    for p in parts {
        name.push('\u{1f}');
        name.push_str(p);
    }
    Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string()
}

/// True when `id` is a valid FHIR id (`[A-Za-z0-9\-\.]{1,64}`) and safe as part of a state key.
pub fn is_fhir_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_parts_give_the_same_id_and_different_parts_a_different_one() {
        assert_eq!(derived("p", &["a", "b"]), derived("p", &["a", "b"]));
        assert_ne!(derived("p", &["a", "b"]), derived("p", &["ab", ""]));
        assert_ne!(derived("p", &["a"]), derived("q", &["a"]));
    }

    #[test]
    fn fhir_ids_exclude_the_state_key_separator() {
        assert!(is_fhir_id("example-1.2"));
        assert!(!is_fhir_id("a||b"));
        assert!(!is_fhir_id(""));
        assert!(!is_fhir_id(&"x".repeat(65)));
    }
}
