//! The ward board in a real browser: Debian's Chromium (headless) driven by `playwright-core`
//! from `host/tests/browser/board.mjs`, against the `wardwatch` binary on 127.0.0.1:0. Each test
//! runs one scenario of that script (its header says what each proves). They take turns: six
//! Chromiums at once on a two-core machine would only make each slower.
//!
//! Needs Node.js and Chromium (a missing one fails the test with the command that installs it;
//! `.ci/run` installs both) and the script's one npm package, which the first test installs with
//! `npm ci` from its lock file.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{REDIS, VHost, clean_up, require_redis, unique};

static ONE_BROWSER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

static NPM: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn require_browser_tools() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "Node.js is needed for the browser tests. Install it with: apt-get install -y nodejs npm (or run .ci/run)"
    );
    // The script's one package, pinned by its package-lock.json: installed on first use, as
    // cargo fetches crates.
    let installed = || script_dir().join("node_modules/playwright-core/package.json").exists();
    let _npm = NPM.lock().unwrap_or_else(|p| p.into_inner());
    if !installed() {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(script_dir())
            .output();
        assert!(
            out.as_ref().is_ok_and(|o| o.status.success()) && installed(),
            "playwright-core could not be installed for the browser tests ({}). Install it with: npm ci --prefix host/tests/browser (or run .ci/run)",
            match &out {
                Ok(o) => String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .to_owned(),
                Err(e) => e.to_string(),
            }
        );
    }
    assert!(
        Path::new(&chromium()).exists(),
        "Chromium is needed for the browser tests ({} not found). Install it with: apt-get install -y chromium (or run .ci/run), or set CHROMIUM",
        chromium()
    );
}

/// Where the `alerts` scenario saves its picture of a ward with alerts.
pub fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots/board.png")
}

async fn scenario(name: &str, env: &[(&str, String)]) {
    require_browser_tools();
    let _turn = ONE_BROWSER_AT_A_TIME.lock().await;
    let mut cmd = Command::new("node");
    cmd.current_dir(script_dir())
        .arg("board.mjs")
        .arg(name)
        .env("WARDWATCH_BIN", env!("CARGO_BIN_EXE_wardwatch"))
        .env("CHROMIUM", chromium())
        // The host must not pick up a developer's own settings.
        .env_remove("REDIS_URL")
        .env_remove("AMQP_URL")
        .env_remove("BOARD_TOKEN")
        .env_remove("LISTEN")
        .env_remove("PORT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser scenario `{name}` failed:\n{text}");
}

#[tokio::test]
async fn a_patient_admitted_over_fhir_appears_on_the_open_page() {
    scenario("admission", &[]).await;
}

#[tokio::test]
async fn a_critical_potassium_shows_its_alert_on_the_open_page() {
    let shot = screenshot_path();
    std::fs::create_dir_all(shot.parent().expect("dir")).expect("screenshot dir");
    scenario("alerts", &[("SCREENSHOT", shot.display().to_string())]).await;
    assert!(shot.exists(), "the scenario saved no screenshot");
}

#[tokio::test]
async fn acknowledge_on_one_page_updates_a_second_page() {
    scenario("acknowledge", &[]).await;
}

#[tokio::test]
async fn a_page_cut_off_while_two_alerts_are_raised_shows_both_after_reconnecting() {
    scenario("offline", &[]).await;
}

#[tokio::test]
async fn a_page_open_across_a_host_restart_misses_and_doubles_nothing() {
    require_redis().await;
    let vhost = VHost::new().await;
    let prefix = unique("browser").replace('-', "");
    scenario(
        "restart",
        &[
            ("REDIS_URL", REDIS.to_owned()),
            ("AMQP_URL", vhost.url()),
            ("STATE_KEY_PREFIX", prefix.clone()),
        ],
    )
    .await;
    clean_up(&prefix).await;
}

#[tokio::test]
async fn a_discharged_patients_unacknowledged_alert_is_followed_up_and_acknowledged_on_the_board() {
    scenario("discharged", &[]).await;
}
