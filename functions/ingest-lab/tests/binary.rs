//! The `ingest-lab` binary itself, as a container would run it: configuration from the
//! environment, Dapr's probe and a CloudEvent on `/`, and a clean exit on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn the_binary_serves_dapr_and_cloudevents_and_drains_on_sigterm() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ingest-lab"))
        .env_clear()
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn ingest-lab");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "ingest-lab did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let options = client
        .request(reqwest::Method::OPTIONS, format!("{base}/lab-feed"))
        .send()
        .await
        .expect("options");
    assert_eq!(options.status(), 200, "daprd's probe subscribes lab-feed");
    let other = client
        .request(reqwest::Method::OPTIONS, format!("{base}/lab-resulted"))
        .send()
        .await
        .expect("options");
    assert_eq!(other.status(), 404, "not another function's binding");
    let ce = client
        .post(format!("{base}/"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "x-1")
        .header("ce-type", "dev.knative.rabbitmq.event")
        .header("ce-source", "test")
        .body("not a lab result")
        .send()
        .await
        .expect("cloudevent");
    assert_eq!(
        ce.status(),
        200,
        "a bad CloudEvent is recorded on the rejected lane and acknowledged"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "ingest-lab did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

#[test]
fn a_bad_configuration_stops_the_binary_with_exit_code_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_ingest-lab"))
        .env_clear()
        .env("PORT", "eighty")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PORT"), "names the variable: {text}");
}
