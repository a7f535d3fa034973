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

// --- the alert lifecycle through the board's API (issue 8) -----------------------------------

const MRN_SYSTEM: &str = "https://fhir.example-hospital.nhs.uk/Id/mrn";

/// A potassium for the example patient (MRN0001): the example Observation with another result
/// id, value and time.
fn potassium(result: &str, value: f64, at: chrono::DateTime<chrono::Utc>) -> Value {
    let mut o = fixture("examples/potassium-critical.json");
    o["identifier"][0]["value"] = json!(result);
    o["valueQuantity"]["value"] = json!(value);
    o["effectiveDateTime"] = json!(at.to_rfc3339());
    o["issued"] = json!(at.to_rfc3339());
    o
}

/// A creatinine in µmol/L for the example patient.
fn creatinine(result: &str, value: f64, at: chrono::DateTime<chrono::Utc>) -> Value {
    let mut o = potassium(result, value, at);
    o["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "14682-9", "display": "Creatinine [Moles/volume] in Serum or Plasma"}]});
    o["valueQuantity"] =
        json!({"value": value, "unit": "umol/L", "system": "http://unitsofmeasure.org", "code": "umol/L"});
    o
}

async fn listed(host: &Host, query: &str) -> Vec<Value> {
    host.get_json(&format!("/api/alerts{query}"))
        .await
        .as_array()
        .cloned()
        .expect("a list")
}

/// The alert `id` once `GET /api/alerts<query>` lists it.
async fn once_listed(host: &Host, query: &str, id: &str) -> Value {
    crate::helpers::eventually(Duration::from_secs(30), || async {
        listed(host, query).await.into_iter().find(|a| a["id"] == id)
    })
    .await
    .unwrap_or_else(|| panic!("alert {id} is listed under {query}"))
}

async fn post(host: &Host, path: &str, content_type: &str, body: String) -> reqwest::Response {
    reqwest::Client::new()
        .post(host.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request")
}

async fn diagnostics(r: reqwest::Response) -> String {
    let outcome: Value = r.json().await.expect("an OperationOutcome");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn page(host: &Host, path: &str) -> String {
    let r = reqwest::get(host.url(path)).await.expect("page");
    assert_eq!(r.status(), 200, "{path}");
    r.text().await.expect("html")
}

#[tokio::test]
async fn an_acknowledged_alert_is_listed_as_such_and_the_audit_shows_raised_then_acknowledged_newest_first() {
    let host = Host::spawn(config(&[])).await;
    host.admit_example().await;
    host.post_json("/lab-feed", &fixture("examples/potassium-critical.json"))
        .await;
    let active = alerts_for(&host, "MRN0001", Duration::from_secs(30))
        .await
        .expect("the alert is raised and listed under status=active");
    assert_eq!(active.len(), 1);
    let a = &active[0];
    let id = a["id"].as_str().expect("id").to_owned();
    let pid = a["patient_id"].as_str().expect("patient id").to_owned();
    assert_eq!(
        (&a["rule"], &a["status"], &a["telephone"], &a["discharged"], &a["ward"]),
        (
            &json!("critical-high:potassium"),
            &json!("active"),
            &json!(true),
            &json!(false),
            &json!("Ward 7B")
        )
    );
    assert_eq!(a["evidence"]["limit"], 6.5);
    assert_eq!(a["results"], json!([a["result_id"]]), "the Observation behind it");
    assert!(a["review_by"].is_string() && a["acknowledged"].is_null() && a["closed"].is_null());

    // The alert as a FHIR DetectedIssue, found with and without the patient id.
    for path in [
        format!("/api/alerts/{id}"),
        format!("/api/alerts/{id}?patient_id={pid}"),
    ] {
        let r = reqwest::get(host.url(&path)).await.expect("issue");
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "application/fhir+json");
        let issue: Value = r.json().await.expect("json");
        assert_eq!(issue["resourceType"], "DetectedIssue");
        assert_eq!(issue["id"], id.as_str());
        assert_eq!(issue["patient"]["reference"], format!("Patient/{pid}"));
        assert_eq!(issue["code"]["text"], "critical-high:potassium");
        assert_eq!(
            issue["implicated"][0]["reference"],
            format!("Observation/{}", a["result_id"].as_str().expect("result id"))
        );
    }
    let missing = reqwest::get(host.url("/api/alerts/no-such-alert"))
        .await
        .expect("issue");
    assert_eq!(missing.status(), 404);
    diagnostics(missing).await;

    // Found by the patient's identifier: the MRN alone, or system and value.
    for q in [
        "?patient.identifier=MRN0001".to_owned(),
        format!("?patient.identifier={MRN_SYSTEM}%7CMRN0001"),
    ] {
        let found = listed(&host, &q).await;
        assert_eq!(found.len(), 1, "{q}");
        assert_eq!(found[0]["id"], id.as_str(), "{q}");
    }
    assert!(listed(&host, "?patient.identifier=MRN9999").await.is_empty());
    assert!(
        listed(&host, &format!("?patient.identifier={MRN_SYSTEM}%7CMRN9999"))
            .await
            .is_empty()
    );

    // Anything but the five statuses is refused, naming them.
    for bad in ["?status=bogus", "?status=active,bogus", "?status=open"] {
        let r = reqwest::get(host.url(&format!("/api/alerts{bad}")))
            .await
            .expect("alerts");
        assert_eq!(r.status(), 400, "{bad}");
        let why = diagnostics(r).await;
        assert!(
            why.contains("active, acknowledged, escalated, resolved, withdrawn"),
            "{bad}: {why}"
        );
    }

    // Nothing is due yet: the escalation tick answers and escalates nothing.
    let tick = post(&host, "/escalate", "application/json", "{}".to_owned()).await;
    assert_eq!(tick.status(), 200);
    assert!(listed(&host, "?status=escalated").await.is_empty());

    let ack = post(
        &host,
        &format!("/api/alerts/{id}/ack"),
        "application/json",
        json!({"by": "Nurse Ade", "note": "doctor informed"}).to_string(),
    )
    .await;
    assert_eq!(ack.status(), 200);
    assert!(listed(&host, "?status=active").await.is_empty());
    let acked = once_listed(&host, "?status=acknowledged", &id).await;
    assert_eq!(acked["acknowledged"]["by"], "Nurse Ade");
    assert_eq!(acked["acknowledged"]["note"], "doctor informed");
    assert_eq!(listed(&host, "?status=active,acknowledged").await.len(), 1);
    assert_eq!(listed(&host, "").await.len(), 1, "acknowledged is open");

    let audit = host.get_json(&format!("/api/patients/{pid}/audit")).await;
    assert_eq!(audit["patient_id"], pid.as_str());
    assert_eq!(audit["kept_at_most"], 200);
    let entries = audit["audit"].as_array().expect("entries");
    let actions: Vec<&str> = entries.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["acknowledged", "raised"], "newest first");
    assert_eq!(
        (&entries[0]["by"], &entries[0]["status"], &entries[0]["alert_id"]),
        (&json!("Nurse Ade"), &json!("acknowledged"), &json!(id))
    );
    assert_eq!(entries[1]["by"], "evaluate-alert");
    let unknown = reqwest::get(host.url("/api/patients/no-such-patient/audit"))
        .await
        .expect("audit");
    assert_eq!(unknown.status(), 404);

    // The patient page shows the audit trail.
    let html = page(&host, &format!("/patients/{pid}")).await;
    assert!(html.contains("id=\"audit-h\""), "an audit section");
    assert!(
        html.contains("Nurse Ade") && html.contains(">acknowledged<"),
        "the acknowledgement in it"
    );
    assert!(
        html.contains("not recorded (assumed none)"),
        "renal replacement therapy line"
    );
    host.stop().await;
}

#[tokio::test]
async fn a_later_normal_result_resolves_the_alert_which_stays_listed_as_resolved_after_discharge() {
    let host = Host::spawn(config(&[])).await;
    host.admit_example().await;
    let now = chrono::Utc::now();
    host.post_json(
        "/lab-feed",
        &potassium("LAB-K-HIGH", 7.1, now - chrono::Duration::hours(2)),
    )
    .await;
    let id = alerts_for(&host, "MRN0001", Duration::from_secs(30))
        .await
        .expect("raised")[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    host.post_json(
        "/lab-feed",
        &potassium("LAB-K-NORMAL", 4.2, now - chrono::Duration::hours(1)),
    )
    .await;
    let resolved = once_listed(&host, "?status=resolved", &id).await;
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["closed"]["reason"], "a later result cleared the rule");
    let record = host
        .get_json(&format!(
            "/api/patients/{}",
            resolved["patient_id"].as_str().expect("pid")
        ))
        .await;
    let normal = record["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["value"] == 4.2)
        .expect("the normal result")["result_id"]
        .clone();
    assert_eq!(
        resolved["closed"]["result_id"], normal,
        "names the result that cleared it"
    );
    assert!(listed(&host, "").await.is_empty(), "a resolved alert is not open");
    assert!(listed(&host, "?status=active").await.is_empty());

    // Discharged, with nothing to acknowledge: on no board list, and still listed as resolved
    // (its patient is named by alert events of the last 24 hours).
    let mut discharge = fixture("examples/admission-bundle.json");
    discharge["entry"][1]["resource"]["status"] = json!("finished");
    assert_eq!(host.post_json("/fhir", &discharge).await.status(), 200);
    let after = crate::helpers::eventually(Duration::from_secs(30), || async {
        listed(&host, "?status=resolved,withdrawn")
            .await
            .into_iter()
            .find(|a| a["id"] == id.as_str() && a["discharged"] == true)
    })
    .await
    .expect("still listed after discharge");
    assert!(after["ward"].is_null());
    assert_eq!(
        listed(&host, "?status=resolved&patient.identifier=MRN0001").await.len(),
        1
    );
    host.stop().await;
}

#[tokio::test]
async fn an_entered_in_error_correction_of_its_only_result_withdraws_the_alert_with_the_reason() {
    let host = Host::spawn(config(&[])).await;
    host.admit_example().await;
    let original = fixture("examples/potassium-critical.json");
    host.post_json("/lab-feed", &original).await;
    let raised = alerts_for(&host, "MRN0001", Duration::from_secs(30))
        .await
        .expect("raised");
    let id = raised[0]["id"].as_str().expect("id").to_owned();
    let pid = raised[0]["patient_id"].as_str().expect("pid").to_owned();
    let mut retracted = original.clone();
    retracted["status"] = json!("entered-in-error");
    retracted["issued"] = json!("2026-11-27T11:00:00Z");
    assert_eq!(host.post_json("/lab-feed", &retracted).await.status(), 200);
    let withdrawn = once_listed(&host, "?status=withdrawn", &id).await;
    assert_eq!(
        withdrawn["closed"]["reason"],
        "the laboratory retracted a result it rested on"
    );
    assert!(listed(&host, "").await.is_empty(), "no open alert is left");
    let issue = host.get_json(&format!("/api/alerts/{id}")).await;
    assert_eq!(issue["resourceType"], "DetectedIssue");
    assert_eq!(issue["extension"][0]["valueCode"], "withdrawn");
    // A closed alert cannot be acknowledged, and the answer says it is closed.
    let ack = post(
        &host,
        &format!("/api/alerts/{id}/ack"),
        "application/json",
        json!({"by": "Nurse Ade"}).to_string(),
    )
    .await;
    assert_eq!(ack.status(), 409);
    let why = diagnostics(ack).await;
    assert!(why.contains("withdrawn") && why.contains("closed"), "{why}");
    let html = page(&host, &format!("/patients/{pid}")).await;
    assert!(
        html.contains("Withdrawn") && html.contains("the laboratory retracted a result it rested on"),
        "the trail says why"
    );
    let actions: Vec<String> = host.get_json(&format!("/api/patients/{pid}/audit")).await["audit"]
        .as_array()
        .expect("audit")
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(actions, ["withdrawn", "raised"]);
    host.stop().await;
}

#[tokio::test]
async fn recording_renal_replacement_therapy_withdraws_aki_alerts_and_recording_it_off_brings_them_back() {
    let host = Host::spawn(config(&[])).await;
    host.admit_example().await;
    let now = chrono::Utc::now();
    // 80 then 200 µmol/L within a week: ratio 2.5, AKI stage 2.
    host.post_json(
        "/lab-feed",
        &creatinine("LAB-CREA-1", 80.0, now - chrono::Duration::days(2)),
    )
    .await;
    host.post_json(
        "/lab-feed",
        &creatinine("LAB-CREA-2", 200.0, now - chrono::Duration::hours(1)),
    )
    .await;
    let aki = crate::helpers::eventually(Duration::from_secs(30), || async {
        listed(&host, "?status=active")
            .await
            .into_iter()
            .find(|a| a["rule"] == "aki" && a["stage"] == 2)
    })
    .await
    .expect("an AKI stage 2 alert");
    let id = aki["id"].as_str().expect("id").to_owned();
    let pid = aki["patient_id"].as_str().expect("pid").to_owned();
    assert_eq!(
        aki["results"].as_array().map(Vec::len),
        Some(1),
        "the 200 is the finding"
    );
    assert_eq!(aki["evidence"]["aki"]["rv1"][0], 80.0, "the 80 is its reference value");
    assert!(
        aki["evidence"]["aki"]["notes"]
            .as_array()
            .expect("notes")
            .contains(&json!("no renal replacement therapy recorded; assumed none")),
        "{aki}"
    );
    assert!(
        page(&host, "/").await.contains("AKI stage 2"),
        "the board labels it by stage"
    );

    let rrt_path = format!("/api/patients/{pid}/rrt");
    let rrt = |body: Value| post(&host, &rrt_path, "application/json", body.to_string());
    for (body, status, why) in [
        (json!({"rrt": "on-rrt"}), 400, "who records it is required"),
        (json!({"rrt": "dialysis", "by": "Dr Renal"}), 400, "an unknown value"),
        (json!({"by": "Dr Renal"}), 400, "rrt is required"),
        (
            json!({"rrt": "on-rrt", "by": "Dr Renal", "extra": 1}),
            400,
            "unknown fields",
        ),
    ] {
        let r = rrt(body).await;
        assert_eq!(r.status(), status, "{why}");
        diagnostics(r).await;
    }
    assert_eq!(
        post(&host, &rrt_path, "text/plain", "on-rrt".into()).await.status(),
        415
    );
    assert_eq!(
        post(
            &host,
            "/api/patients/no-such-patient/rrt",
            "application/json",
            json!({"rrt": "on-rrt", "by": "Dr Renal"}).to_string()
        )
        .await
        .status(),
        404
    );

    let on: Value = rrt(json!({"rrt": "on-rrt", "by": "Dr Renal"}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!((&on["changed"], &on["rrt"]), (&json!(true), &json!("on-rrt")));
    assert!(
        on["alerts"]
            .as_array()
            .expect("alerts")
            .contains(&json!({"type": "alert-withdrawn", "alert_id": id})),
        "{on}"
    );
    let again: Value = rrt(json!({"rrt": "on-rrt", "by": "Dr Renal"}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again["changed"], false, "recording it twice changes nothing");
    let withdrawn = once_listed(&host, "?status=withdrawn", &id).await;
    assert_eq!(
        withdrawn["closed"]["reason"],
        "renal replacement therapy recorded: the AKI algorithm does not apply"
    );
    let record = host.get_json(&format!("/api/patients/{pid}")).await;
    assert_eq!(
        (&record["rrt"]["rrt"], &record["rrt"]["by"]),
        (&json!("on-rrt"), &json!("Dr Renal"))
    );
    assert!(
        page(&host, &format!("/patients/{pid}"))
            .await
            .contains("on RRT (recorded by Dr Renal")
    );

    let off = rrt(json!({"rrt": "not-on-rrt", "by": "Dr Renal"})).await;
    assert_eq!(off.status(), 200);
    let back = once_listed(&host, "?status=active", &id).await;
    assert_eq!(back["stage"], 2);
    host.stop().await;
}
