//! The FHIR API as a FHIR client library nobody here wrote meets it: `fhir-kit-client` (npm,
//! MIT, pinned by `host/tests/interop/package-lock.json`) drives an embedded host through
//! `host/tests/interop/interop.mjs` — the CapabilityStatement, create, read, search,
//! conditional create, a transaction, a search of the ward, update, and paging with `next` —
//! and the ward board is checked to list the patient the transaction admitted.
//!
//! Needs Node.js and the script's npm packages. Neither is installed here: a missing one fails
//! the test with the command that installs it (`.ci/run` does both); nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{Host, config};

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn require_node_and_client() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "Node.js is needed for the FHIR client interop test. Install it with: apt-get install -y nodejs npm (or run .ci/run)"
    );
    assert!(
        script_dir().join("node_modules/fhir-kit-client/package.json").exists(),
        "fhir-kit-client is not installed for the FHIR client interop test ({} is missing). Install it with: npm ci --prefix host/tests/interop (or run .ci/run)",
        script_dir().join("node_modules").display()
    );
}

#[tokio::test]
async fn fhir_kit_client_creates_reads_searches_and_admits_by_transaction() {
    require_node_and_client();
    let host = Host::spawn(config(&[])).await;
    let base = host.url("/fhir");
    let mut cmd = Command::new("node");
    cmd.current_dir(script_dir()).arg("interop.mjs").arg(&base);
    // The host is served by this test's runtime: node runs on a blocking thread meanwhile.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    host.stop().await;
    assert!(
        out.status.success(),
        "fhir-kit-client against {base} failed ({}):\n{text}",
        out.status
    );
}
