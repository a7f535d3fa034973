//! HL7 v2 merges on memory adapters, no socket: a merge interrupted after each of its writes is
//! finished by the resend, announced once; the merged patient's bed goes to a survivor without
//! one, and the sender's next message of that stay, under the survivor, reaches it.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use wardwatch_adapters::{MemoryBus, MemoryEventLog, MemoryStateStore};
use wardwatch_domain::decide::merge::{self, MergeInput};
use wardwatch_domain::identity::{Identifier, IdentityRules};
use wardwatch_domain::rules::CriticalLimits;
use wardwatch_records::{Locks, Records, Step};

type Repo = Records<MemoryStateStore, MemoryEventLog, MemoryBus>;
type Hl7v2 = admit::hl7v2::Hl7v2<MemoryStateStore, MemoryEventLog, MemoryBus>;

const MRN: &str = "https://fhir.northgate.example/Id/mrn";

fn corpus(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus/adt")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn setup() -> (Hl7v2, Repo, MemoryBus) {
    let bus = MemoryBus::default();
    let records = Records::new(
        MemoryStateStore::default(),
        MemoryEventLog::default(),
        bus.clone(),
        Locks::default(),
    );
    let identity = IdentityRules {
        systems: Vec::new(),
        v2: IdentityRules::parse_v2_table(&format!("RXH^MR={MRN},NHS^NH=https://fhir.nhs.uk/Id/nhs-number"))
            .expect("table"),
    };
    let admit = Arc::new(admit::Admit::new(records.clone(), identity.clone()));
    (
        admit::hl7v2::Hl7v2::new(admit, identity, chrono_tz::Europe::London),
        records,
        bus,
    )
}

/// Send a payload; the HTTP status and MSA-1.
async fn send(h: &Hl7v2, payload: &[u8]) -> (u16, String) {
    let (status, ack) = h.receive(payload).await;
    let code = ack
        .split('\r')
        .find(|s| s.starts_with("MSA|"))
        .and_then(|s| s.split('|').nth(1))
        .unwrap_or_default()
        .to_owned();
    (status, code)
}

async fn accepted(h: &Hl7v2, name: &str) {
    assert_eq!(send(h, &corpus(name)).await, (200, "AA".to_owned()), "{name}");
}

async fn holder(records: &Repo, mrn: &str) -> Option<String> {
    let identifier = Identifier {
        system: MRN.into(),
        value: mrn.into(),
    };
    records.lookup(&identifier).await.expect("lookup")
}

/// The `patient-merged` events on the `admissions` lane.
fn merges(bus: &MemoryBus) -> Vec<Value> {
    bus.messages("admissions")
        .iter()
        .map(|m| serde_json::from_slice::<Value>(m).expect("json"))
        .filter(|e| e["type"] == "patient-merged")
        .collect()
}

/// Step 1 alone, as a merge interrupted after its first write leaves it.
async fn close(records: &Repo, merged: &str, survivor: &str) {
    records
        .update(merged, |r| {
            let d = merge::close(r.expect("record"), survivor, chrono::Utc::now());
            Ok::<_, wardwatch_domain::ports::PortError>(Step::Write {
                record: d.record,
                resources: Vec::new(),
                out: (),
            })
        })
        .await
        .expect("closed");
}

/// Step 2 alone, after step 1.
async fn absorb(records: &Repo, merged: &str, survivor: &str) {
    let closed = records.load(merged).await.expect("load").expect("record");
    records
        .update(survivor, |r| {
            let d = merge::absorb(
                r.expect("record"),
                Some(&closed),
                MergeInput::default(),
                &CriticalLimits::default(),
                chrono::Utc::now(),
            );
            Ok::<_, wardwatch_domain::ports::PortError>(Step::Write {
                record: d.record,
                resources: Vec::new(),
                out: (),
            })
        })
        .await
        .expect("absorbed");
}

#[tokio::test]
async fn a_merge_interrupted_after_any_write_is_finished_by_the_resend_and_announced_once() {
    for interrupted_after in [1, 2] {
        let (h, records, bus) = setup();
        accepted(&h, "01-a01-admit-inpatient-v251.hl7").await;
        accepted(&h, "11-a01-second-record-v251.hl7").await;
        let survivor = holder(&records, "123456").await.expect("survivor");
        let merged = holder(&records, "777777").await.expect("merged");
        close(&records, &merged, &survivor).await;
        if interrupted_after == 2 {
            absorb(&records, &merged, &survivor).await;
            assert_eq!(merges(&bus).len(), 1);
        }
        // Not re-pointed yet: MRG-1 still leads to the closed record.
        assert_eq!(holder(&records, "777777").await.as_deref(), Some(merged.as_str()));

        accepted(&h, "12-a40-merge-v251.hl7").await;
        assert_eq!(
            holder(&records, "777777").await.as_deref(),
            Some(survivor.as_str()),
            "after step {interrupted_after}: re-pointed by the resend"
        );
        let s = records.load(&survivor).await.expect("load").expect("survivor");
        assert_eq!(
            s.merged_from,
            std::slice::from_ref(&merged),
            "after step {interrupted_after}"
        );
        let announced = merges(&bus);
        assert_eq!(announced.len(), 1, "after step {interrupted_after}: {announced:#?}");
        assert_eq!(announced[0]["merged_id"], Value::String(merged.clone()));
        // Once more: nothing changes.
        let lane = bus.messages("admissions").len();
        accepted(&h, "12-a40-merge-v251.hl7").await;
        assert_eq!(bus.messages("admissions").len(), lane);
        assert_eq!(records.load(&survivor).await.expect("load"), Some(s));
    }
}

#[tokio::test]
async fn the_merged_patients_bed_goes_to_a_survivor_without_one_and_its_stay_goes_on_under_the_survivor() {
    let (h, records, _) = setup();
    accepted(&h, "01-a01-admit-inpatient-v251.hl7").await;
    accepted(&h, "03-a03-discharge-v251.hl7").await;
    accepted(&h, "11-a01-second-record-v251.hl7").await;
    let survivor = holder(&records, "123456").await.expect("survivor");
    let merged = holder(&records, "777777").await.expect("merged");
    assert_eq!(
        records.ward_members("WARD12").await.expect("ward"),
        std::slice::from_ref(&merged)
    );

    accepted(&h, "12-a40-merge-v251.hl7").await;
    let s = records.load(&survivor).await.expect("load").expect("survivor");
    let p = s
        .placement
        .clone()
        .expect("the survivor is in the merged patient's bed");
    assert_eq!((p.ward.as_deref(), p.bed.as_deref()), (Some("WARD12"), Some("B05")));
    assert_eq!(
        records.ward_members("WARD12").await.expect("ward"),
        std::slice::from_ref(&survivor)
    );
    let m = records.load(&merged).await.expect("load").expect("merged");
    assert_eq!((m.placement, m.merged_into.as_deref()), (None, Some(survivor.as_str())));

    // The sender discharges that stay, now under the survivor's identifiers: the same encounter.
    let a03 = String::from_utf8(corpus("11-a01-second-record-v251.hl7"))
        .expect("text")
        .replace("ADT^A01^ADT_A01|NGH-ADT-000111", "ADT^A03^ADT_A03|NGH-ADT-000114")
        .replace("EVN|A01|20261127094500", "EVN|A03|20261128120000")
        .replace("PID|1||777777^^^RXH^MR|", "PID|1||123456^^^RXH^MR|")
        .replace("|20261127093000\r", "|20261127093000|20261128115500\r");
    assert_eq!(send(&h, a03.as_bytes()).await, (200, "AA".to_owned()));
    let s = records.load(&survivor).await.expect("load").expect("survivor");
    assert_eq!(s.placement, None, "discharged: {:?}", s.encounters);
    assert!(
        s.encounters.iter().all(|e| e.status == "finished"),
        "{:?}",
        s.encounters
    );
    assert!(records.ward_members("WARD12").await.expect("ward").is_empty());
}
