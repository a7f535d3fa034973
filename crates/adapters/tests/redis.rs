//! The Redis adapter against the real Redis (127.0.0.1:6379): Dapr's layout and Dapr's ETag,
//! first-write and delete rules (shared/docs/dapr-knative.md facts 13–16, §4.2), each test
//! under a key prefix of its own.

use redis::AsyncCommands;
use wardwatch_adapters::RedisStateStore;
use wardwatch_domain::ports::{CREATE_ONLY_ETAG, PortError, StateStore};
use wardwatch_runtime::Secret;

mod common;

use common::{REDIS, conn};

async fn store() -> (RedisStateStore, String, redis::aio::MultiplexedConnection) {
    let c = conn().await;
    let prefix = format!("ww-adapter-{}", uuid::Uuid::new_v4().simple());
    (
        RedisStateStore::new(&Secret::new(REDIS), &prefix).expect("store"),
        prefix,
        c,
    )
}

async fn cleanup(c: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    let keys: Vec<String> = c.keys(format!("{prefix}||*")).await.expect("keys");
    if !keys.is_empty() {
        let _: () = c.del(keys).await.expect("del");
    }
}

#[tokio::test]
async fn a_value_is_a_hash_with_data_and_a_version_counting_from_one() {
    let (s, prefix, mut c) = store().await;
    s.set("k", br#"{"a":1}"#, None).await.expect("set");
    s.set("k", br#"{"a":2}"#, None).await.expect("set");
    let key = format!("{prefix}||k");
    let (data, version): (Vec<u8>, String) = redis::pipe()
        .hget(&key, "data")
        .hget(&key, "version")
        .query_async(&mut c)
        .await
        .expect("hget");
    assert_eq!((data.as_slice(), version.as_str()), (&br#"{"a":2}"#[..], "2"));
    let got = s.get("k").await.expect("get").expect("some");
    assert_eq!(got.etag, "2");
    cleanup(&mut c, &prefix).await;
}

#[tokio::test]
async fn a_stale_etag_conflicts_and_a_matching_one_wins() {
    let (s, prefix, mut c) = store().await;
    s.set("k", b"1", None).await.expect("set");
    assert_eq!(s.set("k", b"2", Some("7")).await, Err(PortError::Conflict));
    s.set("k", b"2", Some("1")).await.expect("matching etag");
    assert_eq!(s.delete("k", Some("1")).await, Err(PortError::Conflict));
    s.delete("k", Some("2")).await.expect("delete with matching etag");
    assert!(s.get("k").await.expect("get").is_none());
    cleanup(&mut c, &prefix).await;
}

#[tokio::test]
async fn an_etag_on_a_missing_key_creates_it_and_the_create_only_etag_then_conflicts() {
    let (s, prefix, mut c) = store().await;
    s.set("new", b"1", Some(CREATE_ONLY_ETAG)).await.expect("creates");
    assert_eq!(s.get("new").await.expect("get").expect("some").etag, "1");
    assert_eq!(
        s.set("new", b"2", Some(CREATE_ONLY_ETAG)).await,
        Err(PortError::Conflict)
    );
    cleanup(&mut c, &prefix).await;
}

#[tokio::test]
async fn an_entry_dapr_wrote_with_first_write_is_read_and_only_written_with_its_etag() {
    let (s, prefix, mut c) = store().await;
    let key = format!("{prefix}||fw");
    // As daprd leaves an entry saved with concurrency first-write (fact 16).
    let _: () = c
        .hset_multiple(&key, &[("data", "{\"x\":1}"), ("version", "3"), ("first-write", "0")])
        .await
        .expect("hset");
    let got = s.get("fw").await.expect("get").expect("some");
    assert_eq!((got.data.as_slice(), got.etag.as_str()), (&b"{\"x\":1}"[..], "3"));
    assert_eq!(
        s.set("fw", b"{}", None).await,
        Err(PortError::Conflict),
        "last-write refused on a first-write key"
    );
    s.set("fw", b"{}", Some("3")).await.expect("with its etag");
    assert_eq!(s.get("fw").await.expect("get").expect("some").etag, "4");
    cleanup(&mut c, &prefix).await;
}

#[tokio::test]
async fn a_hash_without_version_is_corrupt_not_missing() {
    let (s, prefix, mut c) = store().await;
    let _: () = c.hset(format!("{prefix}||broken"), "data", "x").await.expect("hset");
    assert!(matches!(s.get("broken").await, Err(PortError::Corrupt(_))));
    cleanup(&mut c, &prefix).await;
}

#[tokio::test]
async fn concurrent_read_modify_writes_all_land() {
    let (s, prefix, mut c) = store().await;
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            wardwatch_records::Records::new(
                s,
                wardwatch_adapters::MemoryEventLog::default(),
                wardwatch_adapters::MemoryBus::default(),
                wardwatch_records::Locks::default(),
            )
            .cas::<Vec<u32>, _>("list", |l| {
                l.push(i);
                true
            })
            .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("update");
    }
    let list: Vec<u32> = serde_json::from_slice(&s.get("list").await.expect("get").expect("some").data).expect("json");
    assert_eq!(list.len(), 16, "{list:?}");
    cleanup(&mut c, &prefix).await;
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_not_an_error_of_the_data() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let s = RedisStateStore::new(&Secret::new(format!("redis://127.0.0.1:{port}")), "x").expect("lazy");
    assert!(matches!(s.get("k").await, Err(PortError::Unavailable(_))));
    assert!(matches!(s.ping().await, Err(PortError::Unavailable(_))));
}

#[tokio::test]
async fn a_membership_index_changes_in_place_in_daprs_layout_and_only_forward() {
    let (s, prefix, mut c) = store().await;
    let read = |v: Option<wardwatch_domain::ports::Versioned>| {
        let v = v.expect("stored");
        let doc: serde_json::Value = serde_json::from_slice(&v.data).expect("json");
        (doc["patients"].clone(), v.etag)
    };
    assert!(s.set_member("ward-x-0", "p1", 3, true).await.expect("add"));
    let (patients, etag) = read(s.get("ward-x-0").await.expect("get"));
    assert_eq!((patients, etag.as_str()), (serde_json::json!({"p1": 3}), "1"));
    s.set_member("ward-x-0", "p1", 2, false).await.expect("stale removal");
    assert_eq!(
        read(s.get("ward-x-0").await.expect("get")).0,
        serde_json::json!({"p1": 3}),
        "an older removal changes nothing"
    );
    s.set_member("ward-x-0", "p2", 1, true).await.expect("add");
    s.set_member("ward-x-0", "p1", 5, false).await.expect("removal");
    let (patients, etag) = read(s.get("ward-x-0").await.expect("get"));
    assert_eq!((patients, etag.as_str()), (serde_json::json!({"p2": 1}), "3"));
    s.set_member("ward-x-0", "p2", 9, false).await.expect("removal");
    assert_eq!(
        read(s.get("ward-x-0").await.expect("get")).0,
        serde_json::json!({}),
        "an empty index stays an object"
    );
    let _: () = c
        .hset(format!("{prefix}||ward-y-0"), "data", "not json")
        .await
        .expect("hset");
    let _: () = c
        .hset(format!("{prefix}||ward-y-0"), "version", "1")
        .await
        .expect("hset");
    assert!(matches!(
        s.set_member("ward-y-0", "p1", 1, true).await,
        Err(PortError::Corrupt(_))
    ));
    cleanup(&mut c, &prefix).await;
}

#[tokio::test]
async fn membership_changes_in_any_order_leave_what_a_decoded_index_would() {
    let (s, prefix, mut c) = store().await;
    // The ids include one named like the index's own field, dots and dashes, and one the fast
    // path leaves to the decoding one.
    let ids = ["p1", "p10", "1", "patients", "a-b.c", "x y"];
    let mut model: std::collections::BTreeMap<String, u64> = Default::default();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..300 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let id = ids[(rng % ids.len() as u64) as usize];
        let seq = (rng >> 8) % 40;
        let add = !(rng >> 20).is_multiple_of(3);
        let changed = s.set_member("ward-z-0", id, seq, add).await.expect("change");
        assert!(changed, "the Redis store makes every change itself");
        match (add, model.get(id).copied()) {
            (true, Some(cur)) if cur >= seq => {}
            (true, _) => {
                model.insert(id.to_owned(), seq);
            }
            (false, Some(cur)) if cur < seq => {
                model.remove(id);
            }
            (false, _) => {}
        }
        let stored = s.get("ward-z-0").await.expect("get").expect("stored");
        let doc: serde_json::Value = serde_json::from_slice(&stored.data).expect("json");
        let expected: serde_json::Map<String, serde_json::Value> =
            model.iter().map(|(k, v)| (k.clone(), (*v).into())).collect();
        assert_eq!(doc, serde_json::json!({"patients": expected}));
    }
    cleanup(&mut c, &prefix).await;
}

#[tokio::test]
async fn claims_ride_on_the_records_write_and_never_outlive_a_refused_one() {
    let (s, _prefix, _c) = store().await;
    let item = |k: &str, v: &str, etag: Option<&str>| (k.to_owned(), v.as_bytes().to_vec(), etag.map(str::to_owned));
    let claim = |k: &str, v: &str| (k.to_owned(), v.as_bytes().to_vec());
    // A new record and a new claim: both written, the claim in Dapr's layout (version 1).
    let created = s
        .set_many_and_claim(
            &[item("record-p1", "{}", Some(CREATE_ONLY_ETAG))],
            &[claim("ident-a", "p1"), claim("ident-b", "p1")],
        )
        .await
        .expect("write");
    assert_eq!(created, vec![true, true]);
    let held = s.get("ident-a").await.expect("get").expect("claimed");
    assert_eq!((held.data.as_slice(), held.etag.as_str()), (b"p1".as_slice(), "1"));
    // A claim already held is left as it is and reported so.
    let created = s
        .set_many_and_claim(
            &[item("record-p2", "{}", None)],
            &[claim("ident-a", "p2"), claim("ident-c", "p2")],
        )
        .await
        .expect("write");
    assert_eq!(created, vec![false, true]);
    assert_eq!(s.get("ident-a").await.expect("get").expect("held").data, b"p1");
    // A refused record write writes no claim.
    let refused = s
        .set_many_and_claim(&[item("record-p1", "{}", Some("41"))], &[claim("ident-d", "p1")])
        .await;
    assert_eq!(refused, Err(PortError::Conflict));
    assert_eq!(s.get("ident-d").await.expect("get"), None);
}
