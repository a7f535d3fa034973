//! The board over real HTTP: its event stream (replay after an id, `Last-Event-ID` winning over
//! the URL), acknowledging through the API, and access with `BOARD_TOKEN` (sign-in cookie,
//! bearer, CSRF), none of it behind daprd's `APP_API_TOKEN`.

use std::time::Duration;

use reqwest::redirect::Policy;
use serde_json::{Value, json};

use crate::helpers::{Host, alerts_for, config, fixture};

const TOKEN: &str = "a-long-enough-board-token";

/// An event stream being read: every `id:` seen so far, in order.
struct Stream {
    response: reqwest::Response,
    text: String,
}

impl Stream {
    fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            text: String::new(),
        }
    }

    fn ids(&self) -> Vec<String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .map(str::to_owned)
            .collect()
    }

    /// Read until at least `n` events have arrived in all; their ids in order.
    async fn until(&mut self, n: usize) -> Vec<String> {
        let read = async {
            while self.ids().len() < n {
                let Some(chunk) = self.response.chunk().await.expect("stream chunk") else {
                    break;
                };
                self.text.push_str(&String::from_utf8_lossy(&chunk));
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("the stream delivered the events");
        self.ids()
    }
}

/// Read a new event stream until `n` events have arrived; their ids in order.
async fn stream_ids(response: reqwest::Response, n: usize) -> Vec<String> {
    Stream::new(response).until(n).await
}

#[tokio::test]
async fn the_event_stream_replays_after_an_id_and_a_reconnect_resumes_where_it_stopped() {
    let host = Host::spawn(config(&[])).await;
    host.admit_example().await;
    assert_eq!(
        host.post_json("/lab-feed", &fixture("examples/potassium-critical.json"))
            .await
            .status(),
        200
    );
    alerts_for(&host, "MRN0001", Duration::from_secs(30))
        .await
        .expect("the alert is raised");
    let client = reqwest::Client::new();
    let all = stream_ids(
        client
            .get(host.url("/api/events/stream?after=0-0"))
            .send()
            .await
            .expect("stream"),
        3,
    )
    .await;
    assert_eq!(all.len(), 3, "admitted, result-stored, alert-raised: {all:?}");
    // A browser reconnecting sends Last-Event-ID: it wins over the `after` it first used.
    let rest = client
        .get(host.url("/api/events/stream?after=0-0"))
        .header("last-event-id", &all[0])
        .send()
        .await
        .expect("stream");
    assert_eq!(rest.headers()["content-type"], "text/event-stream");
    assert_eq!(rest.headers()["cache-control"], "no-store");
    let mut rest = Stream::new(rest);
    assert_eq!(rest.until(2).await, all[1..].to_vec());
    // What happens next follows on the open stream once, after what was replayed.
    let mut second = fixture("examples/admission-bundle.json");
    second["entry"][0]["resource"]["identifier"][0]["value"] = json!("MRN0002");
    second["entry"][1]["resource"]["identifier"][0]["value"] = json!("SPELL0002");
    assert_eq!(host.post_json("/fhir", &second).await.status(), 200);
    let newest = host.get_json("/api/events?after=0-0").await["newest"]
        .as_str()
        .expect("newest")
        .to_owned();
    let mut expected = all[1..].to_vec();
    expected.push(newest);
    assert_eq!(rest.until(3).await, expected, "each event once, in order");
    let bad = client
        .get(host.url("/api/events/stream"))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 400);
    host.stop().await;
}

#[tokio::test]
async fn acknowledging_through_the_api_is_listed_logged_once_and_idempotent() {
    let host = Host::spawn(config(&[])).await;
    host.admit_example().await;
    host.post_json("/lab-feed", &fixture("examples/potassium-critical.json"))
        .await;
    let alerts = alerts_for(&host, "MRN0001", Duration::from_secs(30))
        .await
        .expect("the alert is raised");
    let id = alerts[0]["id"].as_str().expect("id").to_owned();
    let client = reqwest::Client::new();
    let send = |path: String, content_type: &'static str, body: String| {
        client
            .post(host.url(&path))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let ack = |body: Value| send(format!("/api/alerts/{id}/ack"), "application/json", body.to_string());
    // Malformed acknowledgements get a clear 4xx and change nothing.
    for (content_type, body, status, why) in [
        (
            "application/json",
            json!({"note": "seen"}).to_string(),
            400,
            "who acknowledges is required",
        ),
        ("application/json", "{\"by\": ".to_owned(), 400, "broken JSON"),
        (
            "application/json",
            json!({"by": "x", "extra": 1}).to_string(),
            400,
            "unknown fields",
        ),
        (
            "application/json",
            json!({"by": "x".repeat(81)}).to_string(),
            400,
            "a name too long",
        ),
        (
            "application/json",
            json!({"by": "x", "note": "n".repeat(501)}).to_string(),
            400,
            "a note too long",
        ),
        ("text/plain", "by=x".to_owned(), 415, "not JSON"),
    ] {
        let r = send(format!("/api/alerts/{id}/ack"), content_type, body)
            .await
            .expect("ack");
        assert_eq!(r.status(), status, "{why}");
        let outcome: Value = r.json().await.expect("an OperationOutcome");
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{why}");
    }
    assert!(
        host.get_json("/api/alerts?status=acknowledged")
            .await
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    for path in ["/patients/a/b", "/patients/", "/partials/patients/a%20b"] {
        let r = reqwest::get(host.url(path)).await.expect("page");
        assert_eq!(r.status(), 404, "{path}");
    }
    let first: Value = ack(json!({"by": "Nurse Ade", "note": "doctor informed"}))
        .await
        .expect("ack")
        .json()
        .await
        .expect("json");
    assert_eq!(first["changed"], true);
    let second: Value = ack(json!({"by": "Nurse Bo"}))
        .await
        .expect("ack")
        .json()
        .await
        .expect("json");
    assert_eq!(second["changed"], false);
    let acked = host.get_json("/api/alerts?status=acknowledged").await;
    assert_eq!(acked.as_array().map(Vec::len), Some(1));
    assert!(
        host.get_json("/api/alerts?status=active")
            .await
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    let record = host
        .get_json(&format!(
            "/api/patients/{}",
            alerts[0]["patient_id"].as_str().expect("pid")
        ))
        .await;
    assert_eq!(record["alerts"][0]["acknowledged"]["by"], "Nurse Ade");
    let events = host.get_json("/api/events?after=0-0").await;
    let acks = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "alert-acknowledged")
        .count();
    assert_eq!(acks, 1, "one alert-acknowledged event for two acknowledgements");
    let unknown = send(
        "/api/alerts/no-such-alert/ack".to_owned(),
        "application/json",
        json!({"by": "x"}).to_string(),
    )
    .await
    .expect("request");
    assert_eq!(unknown.status(), 404);
    host.stop().await;
}

#[tokio::test]
async fn with_a_board_token_the_board_needs_a_sign_in_and_acknowledging_needs_the_csrf_token() {
    let host = Host::spawn(config(&[("BOARD_TOKEN", TOKEN), ("APP_API_TOKEN", "daprd-token")])).await;
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    // Not signed in: the page sends to the sign-in, the API and the stream answer 401.
    let page = client.get(host.url("/")).send().await.expect("page");
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/signin");
    for path in ["/api/alerts", "/api/events/stream", "/partials/board"] {
        assert_eq!(
            client.get(host.url(path)).send().await.expect("api").status(),
            401,
            "{path}"
        );
    }
    // Programs: the bearer token (and daprd's token is not asked for on the board).
    let api = client
        .get(host.url("/api/alerts"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), 200);
    // A wrong access code is refused; the right one gives a strict, HttpOnly session cookie.
    let wrong = client
        .post(host.url("/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=Sister+Ward&token=not-the-token-at-all")
        .send()
        .await
        .expect("signin");
    assert_eq!(wrong.status(), 401);
    let signed = client
        .post(host.url("/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name=Sister+Ward&token={TOKEN}"))
        .send()
        .await
        .expect("signin");
    assert_eq!(signed.status(), 303);
    let cookie = signed.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().expect("pair").to_owned();
    let page = client
        .get(host.url("/"))
        .header("cookie", &session)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.expect("html");
    assert!(html.contains("Sister Ward"), "the page names who is signed in");
    assert!(
        !html.contains("This board is open"),
        "a board with access configured does not say it is open"
    );
    let csrf = html
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its CSRF token")
        .to_owned();
    // Acknowledging with the cookie alone is refused; with the CSRF token it goes through.
    // daprd's token still guards the functions' routes.
    for (path, body) in [
        ("/fhir", fixture("examples/admission-bundle.json")),
        ("/lab-feed", fixture("examples/potassium-critical.json")),
    ] {
        let unguarded = client
            .post(host.url(path))
            .body(body.to_string())
            .send()
            .await
            .expect("post");
        assert_eq!(unguarded.status(), 401, "{path} without daprd's token");
        let r = client
            .post(host.url(path))
            .header("dapr-api-token", "daprd-token")
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200, "{path}");
    }
    let mut id = None;
    for _ in 0..300 {
        let alerts: Value = client
            .get(host.url("/api/alerts"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("alerts")
            .json()
            .await
            .expect("json");
        if let Some(a) = alerts.as_array().and_then(|a| a.first()) {
            id = a["id"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = id.expect("the alert is raised");
    let ack = |csrf: Option<&str>| {
        let mut r = client
            .post(host.url(&format!("/api/alerts/{id}/ack")))
            .header("cookie", &session)
            .header("content-type", "application/json")
            .body(json!({"note": "seen", "by": "someone else"}).to_string());
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        r.send()
    };
    assert_eq!(ack(None).await.expect("ack").status(), 403);
    assert_eq!(ack(Some("forged")).await.expect("ack").status(), 403);
    assert_eq!(ack(Some(&csrf)).await.expect("ack").status(), 200);
    let acked: Value = client
        .get(host.url("/api/alerts?status=acknowledged"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("alerts")
        .json()
        .await
        .expect("json");
    let pid = acked[0]["patient_id"].as_str().expect("pid").to_owned();
    let record: Value = client
        .get(host.url(&format!("/api/patients/{pid}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("record")
        .json()
        .await
        .expect("json");
    assert_eq!(
        record["alerts"][0]["acknowledged"]["by"], "Sister Ward",
        "who acknowledged comes from the session, not the body"
    );
    host.stop().await;
}

#[tokio::test]
async fn a_stream_asked_for_events_the_log_no_longer_holds_says_reset_instead_of_a_silent_gap() {
    let host = Host::spawn(config(&[("EVENT_LOG_MAX", "100")])).await;
    host.admit_example().await;
    let first = host.get_json("/api/events?after=0-0").await["events"][0]["id"]
        .as_str()
        .expect("an event")
        .to_owned();
    // A hundred more admissions: the ring of 100 no longer holds the first.
    for i in 2..=101 {
        let mut bundle = fixture("examples/admission-bundle.json");
        bundle["entry"][0]["resource"]["identifier"][0]["value"] = json!(format!("MRN{i:04}"));
        bundle["entry"][1]["resource"]["identifier"][0]["value"] = json!(format!("SPELL{i:04}"));
        assert_eq!(host.post_json("/fhir", &bundle).await.status(), 200);
    }
    let mut stream = reqwest::Client::new()
        .get(host.url("/api/events/stream"))
        .header("last-event-id", &first)
        .send()
        .await
        .expect("stream");
    let mut text = String::new();
    let read = async {
        while !text.contains("event: reset") {
            let Some(chunk) = stream.chunk().await.expect("chunk") else {
                break;
            };
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("a reset arrives");
    let reset = text
        .split("\n\n")
        .find(|f| f.contains("event: reset"))
        .expect("reset frame");
    let newest = host.get_json("/api/events?after=0-0").await["newest"]
        .as_str()
        .expect("newest")
        .to_owned();
    assert!(
        reset.contains(&format!("id: {newest}")),
        "the reset names the newest id: {reset}"
    );
    assert!(
        !text.contains(&format!("id: {first}\n")),
        "the trimmed event is not sent"
    );
    host.stop().await;
}

#[tokio::test]
async fn every_board_process_on_one_redis_streams_what_another_process_wrote() {
    crate::helpers::require_redis().await;
    let prefix = crate::helpers::unique("boards").replace('-', "");
    let vars = [
        ("REDIS_URL", crate::helpers::REDIS),
        ("STATE_KEY_PREFIX", prefix.as_str()),
    ];
    let writer = Host::spawn(config(&vars)).await;
    let reader = Host::spawn(config(&vars)).await;
    let stream = reqwest::Client::new()
        .get(reader.url("/api/events/stream?after=0-0"))
        .send()
        .await
        .expect("stream");
    writer.admit_example().await;
    let ids = stream_ids(stream, 1).await;
    let written = writer.get_json("/api/events?after=0-0").await;
    assert_eq!(ids, vec![written["events"][0]["id"].as_str().expect("id").to_owned()]);
    // And the reader's page shows the patient the writer admitted.
    let page = reqwest::get(reader.url("/partials/board"))
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("MRN0001"), "the second process's board lists the patient");
    writer.stop().await;
    reader.stop().await;
    crate::helpers::clean_up(&prefix).await;
}
