//! HL7 v2 over MLLP into an embedded `wardwatch up` (its listener on port 0), over real TCP
//! connections; and HL7 v2 ADT through the real RabbitMQ's `adt-feed` queue.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Host, admitted_events, adt_corpus, clean_up, config, eventually, oru_corpus, placed};
use crate::services::{direct_host_with, publish};

/// How the ADT corpus's hospital names its identifiers.
const V2: &str = "RXH^MR=https://fhir.northgate.example/Id/mrn,NHS^NH=https://fhir.nhs.uk/Id/nhs-number";
/// How the lab corpus's identifiers are mapped (as in the lab tests).
const RXH: &str = "urn:example:rxh";

/// `message` in MLLP framing (a corpus file already framed is sent as it is).
fn framed(message: &[u8]) -> Vec<u8> {
    if message.first() == Some(&0x0b) {
        return message.to_vec();
    }
    let mut out = vec![0x0b];
    out.extend_from_slice(message);
    out.extend_from_slice(&[0x1c, 0x0d]);
    out
}

/// A sender's end of one MLLP connection. Reads frames itself (not with the code under test).
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    async fn send(&mut self, message: &[u8]) {
        self.write(&framed(message)).await;
    }

    /// The next ACK (unframed), or `None` when the connection is closed first.
    async fn ack(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                let frame: Vec<u8> = self.buf.drain(..end + 2).collect();
                assert_eq!(frame[0], 0x0b, "an ACK starts with VT");
                return Some(String::from_utf8(frame[1..end].to_vec()).expect("an ASCII ACK"));
            }
            let mut chunk = [0u8; 4096];
            // Not a speed assertion: only so that a broken server fails the test, not hangs it.
            let n = tokio::time::timeout(Duration::from_secs(60), self.stream.read(&mut chunk))
                .await
                .expect("an answer or a close")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// MSA-1 and MSA-2 of an ACK.
fn msa(ack: &str) -> (String, String) {
    let line = ack
        .split('\r')
        .find(|s| s.starts_with("MSA|"))
        .unwrap_or_else(|| panic!("no MSA: {ack}"));
    let f: Vec<&str> = line.split('|').collect();
    (f[1].to_owned(), f.get(2).copied().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn over_mllp_adt_admits_transfers_and_discharges_one_stay_each_acknowledged_when_written() {
    let (host, addr) = Host::spawn_with_mllp(config(&[("V2_IDENTIFIER_SYSTEMS", V2), ("ESCALATE_EVERY", "0")])).await;
    let mut mllp = Client::connect(addr).await;

    mllp.send(&adt_corpus("01-a01-admit-inpatient-v251.hl7")).await;
    let ack = mllp.ack().await.expect("an ACK");
    assert_eq!(msa(&ack), ("AA".into(), "NGH-ADT-000101".into()), "{ack}");
    assert!(ack.starts_with("MSH|^~\\&|WARDWATCH|NGH|PAS|NGH|"), "{ack}");
    // Written before the ACK: no waiting.
    assert_eq!(placed(&host, "123456").await, Some(("WARD12".into(), "B04".into())));

    mllp.send(&adt_corpus("02-a02-transfer-v251.hl7")).await;
    assert_eq!(msa(&mllp.ack().await.expect("ACK")).0, "AA");
    assert_eq!(placed(&host, "123456").await, Some(("WARD7".into(), "B02".into())));

    mllp.send(&adt_corpus("03-a03-discharge-v251.hl7")).await;
    assert_eq!(msa(&mllp.ack().await.expect("ACK")).0, "AA");
    assert_eq!(placed(&host, "123456").await, None, "discharged");

    // A corpus file that is already framed, with CRLF segment ends.
    mllp.send(&adt_corpus("08-a13-cancel-discharge-mllp-crlf.hl7")).await;
    assert_eq!(
        msa(&mllp.ack().await.expect("ACK")),
        ("AA".into(), "NGH-ADT-000108".into())
    );
    assert_eq!(placed(&host, "123456").await, Some(("WARD7".into(), "B02".into())));
    let inpatients = host.get_json("/api/inpatients").await;
    let mine = inpatients
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["mrn"] == "123456")
        .count();
    assert_eq!(mine, 1, "one patient, one stay throughout");

    // Shutdown ends the open connection: the sender reads the close.
    host.stop().await;
    assert_eq!(mllp.ack().await, None);
}

#[tokio::test]
async fn two_messages_in_one_write_get_two_acks_in_order_and_many_connections_are_served_at_once() {
    let (host, addr) = Host::spawn_with_mllp(config(&[("V2_IDENTIFIER_SYSTEMS", V2), ("ESCALATE_EVERY", "0")])).await;
    let mut mllp = Client::connect(addr).await;
    let mut both = framed(&adt_corpus("01-a01-admit-inpatient-v251.hl7"));
    both.extend_from_slice(&framed(&adt_corpus("02-a02-transfer-v251.hl7")));
    mllp.write(&both).await;
    let first = mllp.ack().await.expect("first ACK");
    let second = mllp.ack().await.expect("second ACK");
    assert_eq!(msa(&first), ("AA".into(), "NGH-ADT-000101".into()));
    assert_eq!(msa(&second), ("AA".into(), "NGH-ADT-000102".into()));
    assert_eq!(placed(&host, "123456").await, Some(("WARD7".into(), "B02".into())));

    // Eight senders at once, each with the other patient's admission: all accepted, one stay.
    let senders: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                c.send(&adt_corpus("09-a01-latin1-escapes.hl7")).await;
                c.ack().await.expect("ACK")
            })
        })
        .collect();
    for s in senders {
        let ack = s.await.expect("sender");
        assert_eq!(msa(&ack), ("AA".into(), "NGH-ADT-000109".into()), "{ack}");
    }
    assert_eq!(admitted_events(&host).await, 2, "two patients, each admitted once");
    host.stop().await;
}

#[tokio::test]
async fn an_oru_over_mllp_is_stored_when_its_aa_arrives_and_a_refused_one_is_kept_with_an_ae() {
    let (host, addr) = Host::spawn_with_mllp(config(&[
        ("V2_IDENTIFIER_SYSTEMS", &format!("RXH^MR={RXH}")),
        ("ESCALATE_EVERY", "0"),
    ]))
    .await;
    let mut mllp = Client::connect(addr).await;
    mllp.send(&oru_corpus("13-")).await;
    let ack = mllp.ack().await.expect("ACK");
    assert_eq!(msa(&ack), ("AA".into(), "PL260305-000612".into()), "{ack}");
    assert!(ack.contains("|ACK^R01^ACK|"), "{ack}");
    // Read at once, no waiting (that the AA waits for the store is shown by the test with the
    // store unavailable).
    let page = host
        .get_json(&format!("/fhir/Observation?patient.identifier={RXH}%7C604418"))
        .await;
    assert_eq!(page["total"], 3, "sodium, potassium, urea: {page}");
    host.stop().await;

    // No mapping for the laboratory's identifiers: refused, AE, and kept like a refused
    // lab-feed delivery.
    let (host, addr) = Host::spawn_with_mllp(config(&[("ESCALATE_EVERY", "0")])).await;
    let mut mllp = Client::connect(addr).await;
    mllp.send(&oru_corpus("01-")).await;
    let ack = mllp.ack().await.expect("ACK");
    let (code, _) = msa(&ack);
    assert_eq!(code, "AE", "{ack}");
    assert!(ack.contains("V2_IDENTIFIER_SYSTEMS"), "the reason: {ack}");
    for private in ["HARGREAVES", "Mabel", "19410318"] {
        assert!(!ack.contains(private), "no patient data in the ACK: {ack}");
    }
    let listed = host.get_json("/api/rejected").await;
    let listed = listed["rejected"].as_array().expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["lane"], "lab-feed");
    host.stop().await;
}

#[tokio::test]
async fn with_the_state_store_unavailable_nothing_is_acknowledged_as_taken_the_sender_is_told_to_resend() {
    // Nothing listens on port 1: every read and write of the state fails, transiently.
    let (host, addr) = Host::spawn_with_mllp(config(&[
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("V2_IDENTIFIER_SYSTEMS", &format!("RXH^MR={RXH}")),
        ("ESCALATE_EVERY", "0"),
    ]))
    .await;
    let mut mllp = Client::connect(addr).await;
    mllp.send(&oru_corpus("13-")).await;
    let ack = mllp.ack().await.expect("ACK");
    assert_eq!(msa(&ack), ("AE".into(), "PL260305-000612".into()), "{ack}");
    assert!(ack.contains("206"), "record locked: send it again: {ack}");
    mllp.send(&adt_corpus("01-a01-admit-inpatient-v251.hl7")).await;
    let ack = mllp.ack().await.expect("ACK");
    assert_eq!(msa(&ack), ("AE".into(), "NGH-ADT-000101".into()), "{ack}");
    assert!(ack.contains("206"), "{ack}");
    host.stop().await;
}

#[tokio::test]
async fn garbage_other_types_and_an_oversized_frame_are_refused_and_the_listener_serves_on() {
    let (host, addr) = Host::spawn_with_mllp(config(&[
        ("V2_IDENTIFIER_SYSTEMS", V2),
        ("ESCALATE_EVERY", "0"),
        ("MAX_BODY_BYTES", "2048"),
    ]))
    .await;
    let mut mllp = Client::connect(addr).await;
    // Bytes outside any frame are skipped; a frame that is not HL7 gets an AR.
    mllp.write(b"\r\n\x00\xffnoise before the frame").await;
    mllp.send(b"hello, not HL7").await;
    let ack = mllp.ack().await.expect("ACK");
    assert_eq!(msa(&ack).0, "AR", "{ack}");
    // A message type not taken here: AR naming it, condition 200.
    mllp.send(b"MSH|^~\\&|RIS|NGH|WARDWATCH|NGH|20261127101502||ORM^O01|NGH-ORM-1|P|2.5.1\rPID|1||123456^^^RXH^MR")
        .await;
    let ack = mllp.ack().await.expect("ACK");
    assert_eq!(msa(&ack), ("AR".into(), "NGH-ORM-1".into()), "{ack}");
    assert!(ack.contains("ORM^O01") || ack.contains("ORM\\S\\O01"), "{ack}");
    assert!(ack.contains("200"), "{ack}");
    // The same connection still admits.
    mllp.send(&adt_corpus("01-a01-admit-inpatient-v251.hl7")).await;
    assert_eq!(msa(&mllp.ack().await.expect("ACK")).0, "AA");

    // Over the limit: an AR naming the message (its MSH is in the first bytes), then the
    // connection is closed, and nothing of it is admitted.
    let mut big = adt_corpus("02-a02-transfer-v251.hl7");
    big.extend(std::iter::repeat_n(b'Z', 4096));
    let mut oversized = Client::connect(addr).await;
    oversized.send(&big).await;
    let ack = oversized.ack().await.expect("an AR before the close");
    assert_eq!(msa(&ack), ("AR".into(), "NGH-ADT-000102".into()), "{ack}");
    assert!(ack.contains("2048"), "says the limit: {ack}");
    assert_eq!(oversized.ack().await, None, "closed");
    assert_eq!(
        placed(&host, "123456").await,
        Some(("WARD12".into(), "B04".into())),
        "not transferred"
    );

    // The listener serves the next connection.
    let mut next = Client::connect(addr).await;
    next.send(&adt_corpus("02-a02-transfer-v251.hl7")).await;
    assert_eq!(msa(&next.ack().await.expect("ACK")).0, "AA");
    assert_eq!(placed(&host, "123456").await, Some(("WARD7".into(), "B02".into())));
    host.stop().await;
}

#[tokio::test]
async fn through_rabbitmq_adt_on_the_adt_feed_queue_admits_and_a_refused_message_is_kept() {
    let (vhost, prefix, host) = direct_host_with(&[("V2_IDENTIFIER_SYSTEMS", V2), ("ESCALATE_EVERY", "0")]).await;
    publish(&vhost.url(), "adt-feed", &adt_corpus("01-a01-admit-inpatient-v251.hl7")).await;
    let place = eventually(Duration::from_secs(20), || placed(&host, "123456"))
        .await
        .expect("admitted from the queue");
    assert_eq!(place, ("WARD12".into(), "B04".into()));

    // An event admit does not take (A35, merge account): kept on the rejected lane with its reason, and listed.
    publish(
        &vhost.url(),
        "adt-feed",
        &adt_corpus("refused-201-a35-merge-account.hl7"),
    )
    .await;
    let listed = eventually(Duration::from_secs(20), || async {
        let l = host.get_json("/api/rejected").await;
        l["rejected"].as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await
    .expect("the refusal is kept");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["lane"], "adt-feed");
    let reason = listed[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("201") && reason.contains("A35"), "{reason}");
    let text = serde_json::to_string(&listed).expect("json");
    assert!(!text.contains("HARGREAVES") && !text.contains("19410318"), "{text}");

    // A FHIR transaction Bundle on the same queue admits too.
    let bundle: Value = crate::helpers::fixture("examples/admission-bundle.json");
    publish(&vhost.url(), "adt-feed", bundle.to_string().as_bytes()).await;
    eventually(Duration::from_secs(20), || async {
        let inpatients = host.get_json("/api/inpatients").await;
        inpatients
            .as_array()?
            .iter()
            .any(|p| p["mrn"] == "MRN0001")
            .then_some(())
    })
    .await
    .expect("the Bundle is admitted from the queue");
    host.stop().await;
    clean_up(&prefix).await;
}
