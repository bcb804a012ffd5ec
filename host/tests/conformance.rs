//! One conformance suite, every store: the same cases run against the embedded store
//! (always) and MongoDB (with `TEST_MONGODB_URI`; `.ci/run` points it at FerretDB),
//! through the `Store` trait only. Where FerretDB differs from MongoDB on something
//! we rely on, the case says so.
//!
//! `cargo test -p host --test conformance` runs it on the embedded store;
//! `TEST_MONGODB_URI=mongodb://… cargo test -p host --test conformance -- --ignored`
//! on MongoDB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bson::{Bson, DateTime, Document, RawDocumentBuf, doc, oid::ObjectId};
use doc_query::{Filter, Limits, Projection, Sort, Update};
use host::data::embedded::{EmbeddedOptions, EmbeddedStore};
use host::data::mongo::{MongoConfig, MongoStore};
use host::data::{Change, FindSpec, Query, Store, StoreError};
use std::sync::Arc;

/// A store under test and whatever keeps it alive (a temp dir).
pub struct Harness {
    pub store: Arc<dyn Store>,
    /// The MongoDB database the store uses (None for the embedded store).
    pub database: Option<String>,
    _keep: Option<tempfile::TempDir>,
}

pub fn embedded() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = EmbeddedOptions {
        cache_bytes: 8 << 20,
        scan_threads: 2,
    };
    let store = EmbeddedStore::open(dir.path(), options).expect("open");
    Harness {
        store: Arc::new(store),
        database: None,
        _keep: Some(dir),
    }
}

pub fn mongodb() -> Harness {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let uri = std::env::var("TEST_MONGODB_URI")
        .expect("TEST_MONGODB_URI must point at a MongoDB-compatible server");
    let database = format!(
        "conformance_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let cfg = MongoConfig {
        uri,
        credential: None,
        database: database.clone(),
        max_pool_size: 4,
        min_pool_size: 0,
        server_selection_timeout: std::time::Duration::from_secs(5),
        connect_timeout: std::time::Duration::from_secs(5),
        op_timeout: std::time::Duration::from_secs(10),
        write_concern: "majority".into(),
        journal: true,
    };
    // Opening blocks on the driver's own runtime: do it off the test's runtime.
    let store = std::thread::spawn(move || {
        let metrics = host::telemetry::Metrics::new().expect("metrics");
        MongoStore::open(&cfg, &metrics, &["tasks".to_owned()]).expect("open")
    })
    .join()
    .expect("open thread");
    Harness {
        store: Arc::new(store),
        database: Some(database),
        _keep: None,
    }
}

const C: &str = "tasks";

fn q(d: Document) -> Query {
    let filter = Filter::parse(&d, &Limits::default()).expect("valid filter");
    Query { filter }
}

fn ch(d: Document) -> Change {
    let update = Update::parse(&d, &Limits::default()).expect("valid update");
    Change { update }
}

fn doc_of(r: &RawDocumentBuf) -> Document {
    Document::try_from(r.clone()).expect("decodes")
}

fn ids(docs: &[RawDocumentBuf]) -> Vec<i32> {
    docs.iter()
        .map(|d| doc_of(d).get_i32("_id").expect("int _id"))
        .collect()
}

async fn seed(s: &dyn Store) {
    let docs = [
        doc! {"_id": 1, "n": 5, "s": "apple", "tags": ["a", "b"], "o": {"k": 1}},
        doc! {"_id": 2, "n": 10, "s": "Banana", "tags": ["b"]},
        doc! {"_id": 3, "n": 15.5, "s": "cherry", "tags": [], "opt": Bson::Null},
        doc! {"_id": 4, "n": 10_i64, "s": "date", "o": {"k": 2}},
        doc! {"_id": 5, "s": "élan ☃", "tags": ["c"]},
    ];
    for d in docs {
        s.insert_one(C, d).await.expect("insert");
    }
}

async fn find_ids(s: &dyn Store, filter: Document) -> Vec<i32> {
    let spec = FindSpec {
        sort: Some(Sort::parse(&doc! {"_id": 1}).expect("sort")),
        limit: 1000,
        ..FindSpec::default()
    };
    ids(&s.find(C, &q(filter), &spec).await.expect("find"))
}

pub async fn round_trip_types(s: &dyn Store) {
    let oid = ObjectId::new();
    let when = DateTime::from_millis(1_790_000_000_123);
    let d = doc! {"_id": oid, "title": "unicode ✓ ünïcödé 漢字 🦀", "when": when, "nested": {"a": [1, 2, {"b": "c"}]}, "i64": 1_i64 << 40, "f": 0.25, "t": true, "nil": Bson::Null};
    let stored = s.insert_one(C, d.clone()).await.expect("insert");
    assert_eq!(doc_of(&stored), d);
    let got = s
        .find_one(C, &q(doc! {"_id": oid}))
        .await
        .expect("find")
        .expect("present");
    assert_eq!(
        doc_of(&got),
        d,
        "ObjectId, dates, unicode and nesting round-trip"
    );
    assert!(
        s.find_one(C, &q(doc! {"_id": ObjectId::new()}))
            .await
            .expect("find")
            .is_none()
    );
}

pub async fn duplicate_id_is_a_conflict(s: &dyn Store) {
    s.insert_one(C, doc! {"_id": "x", "v": 1})
        .await
        .expect("insert");
    let e = s
        .insert_one(C, doc! {"_id": "x", "v": 2})
        .await
        .expect_err("duplicate");
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    let got = s
        .find_one(C, &q(doc! {"_id": "x"}))
        .await
        .expect("find")
        .expect("present");
    assert_eq!(
        doc_of(&got).get_i32("v").expect("v"),
        1,
        "the first write stays"
    );
}

pub async fn every_allowed_operator(s: &dyn Store) {
    seed(s).await;
    let cases: Vec<(Document, Vec<i32>)> = vec![
        (doc! {}, vec![1, 2, 3, 4, 5]),
        (doc! {"n": 10}, vec![2, 4]),
        (doc! {"n": {"$eq": 10}}, vec![2, 4]),
        (doc! {"n": {"$ne": 10}}, vec![1, 3, 5]),
        (doc! {"n": {"$gt": 10}}, vec![3]),
        (doc! {"n": {"$gte": 10}}, vec![2, 3, 4]),
        (doc! {"n": {"$lt": 10}}, vec![1]),
        (doc! {"n": {"$lte": 10}}, vec![1, 2, 4]),
        (doc! {"n": {"$gt": 4, "$lt": 11}}, vec![1, 2, 4]),
        (doc! {"n": {"$in": [5, 15.5]}}, vec![1, 3]),
        (doc! {"n": {"$nin": [5, 15.5]}}, vec![2, 4, 5]),
        (doc! {"tags": "b"}, vec![1, 2]),
        (doc! {"tags": {"$in": ["a", "c"]}}, vec![1, 5]),
        (doc! {"o.k": 2}, vec![4]),
        (doc! {"opt": {"$exists": true}}, vec![3]),
        (doc! {"n": {"$exists": false}}, vec![5]),
        (doc! {"opt": Bson::Null}, vec![1, 2, 3, 4, 5]),
        (
            doc! {"$and": [{"n": {"$gte": 5}}, {"tags": "b"}]},
            vec![1, 2],
        ),
        (doc! {"$or": [{"n": 5}, {"s": "date"}]}, vec![1, 4]),
        (doc! {"$nor": [{"n": 5}, {"s": "date"}]}, vec![2, 3, 5]),
        (doc! {"n": {"$not": {"$gt": 5}}}, vec![1, 5]),
        (doc! {"s": {"$regex": "^b", "$options": "i"}}, vec![2]),
        (doc! {"s": {"$regex": "an"}}, vec![2, 5]),
        (doc! {"s": {"$regex": "☃"}}, vec![5]),
        // A string operand never matches numbers (type bracketing).
        (doc! {"n": {"$gt": ""}}, vec![]),
    ];
    for (filter, want) in cases {
        assert_eq!(find_ids(s, filter.clone()).await, want, "filter {filter}");
        assert_eq!(
            s.count(C, &q(filter.clone())).await.expect("count"),
            want.len() as u64,
            "count {filter}"
        );
    }
}

pub async fn sort_limit_skip_projection(s: &dyn Store) {
    seed(s).await;
    let find = |sort: Document, limit: u32, skip: u32, proj: Option<Document>| {
        let spec = FindSpec {
            sort: Some(Sort::parse(&sort).expect("sort")),
            projection: proj.map(|p| Projection::parse(&p).expect("projection")),
            limit,
            skip,
            ..FindSpec::default()
        };
        async move { s.find(C, &q(doc! {}), &spec).await.expect("find") }
    };
    // Missing `n` sorts first ascending; ties (10 and 10_i64) break by _id.
    assert_eq!(
        ids(&find(doc! {"n": 1}, 100, 0, None).await),
        vec![5, 1, 2, 4, 3]
    );
    assert_eq!(
        ids(&find(doc! {"n": -1}, 100, 0, None).await),
        vec![3, 2, 4, 1, 5]
    );
    assert_eq!(ids(&find(doc! {"n": 1}, 2, 1, None).await), vec![1, 2]);
    assert_eq!(
        ids(&find(doc! {"s": 1}, 100, 0, None).await),
        vec![2, 1, 3, 4, 5],
        "binary string order: 'B' < 'a'"
    );
    let projected = find(doc! {"_id": 1}, 1, 0, Some(doc! {"s": 1})).await;
    assert_eq!(doc_of(&projected[0]), doc! {"_id": 1, "s": "apple"});
    let excluded = find(
        doc! {"_id": 1},
        1,
        0,
        Some(doc! {"tags": 0, "o": 0, "n": 0}),
    )
    .await;
    assert_eq!(doc_of(&excluded[0]), doc! {"_id": 1, "s": "apple"});
}

pub async fn update_operators(s: &dyn Store) {
    s.insert_one(
        C,
        doc! {"_id": 1, "a": 1, "n": 1, "t": ["x", "y", "x"], "gone": true, "version": 1_i64},
    )
    .await
    .expect("insert");
    let after = s
        .update_one(
            C,
            &q(doc! {"_id": 1}),
            &ch(doc! {"$set": {"a": "two", "o.p": 3}, "$unset": {"gone": ""}, "$inc": {"n": 4, "version": 1_i64}, "$push": {"t": "z"}}),
            None,
        )
        .await
        .expect("update");
    let d = doc_of(&after);
    assert_eq!(d.get_str("a").expect("a"), "two");
    assert_eq!(d.get_document("o").expect("o"), &doc! {"p": 3});
    assert!(!d.contains_key("gone"));
    assert_eq!(d.get_i32("n").expect("n"), 5);
    assert_eq!(d.get_i64("version").expect("version"), 2);
    assert_eq!(
        d.get_array("t").expect("t"),
        &vec![Bson::from("x"), "y".into(), "x".into(), "z".into()]
    );
    let after = s
        .update_one(
            C,
            &q(doc! {"_id": 1}),
            &ch(doc! {"$pull": {"t": "x"}}),
            None,
        )
        .await
        .expect("pull");
    assert_eq!(
        doc_of(&after).get_array("t").expect("t"),
        &vec![Bson::from("y"), "z".into()]
    );
    let stored = s
        .find_one(C, &q(doc! {"_id": 1}))
        .await
        .expect("find")
        .expect("present");
    assert_eq!(
        doc_of(&stored),
        doc_of(&after),
        "the returned document is what is stored"
    );
    let e = s
        .update_one(C, &q(doc! {"_id": 1}), &ch(doc! {"$inc": {"a": 1}}), None)
        .await
        .expect_err("$inc on text");
    assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");
    let e = s
        .update_one(C, &q(doc! {"_id": 99}), &ch(doc! {"$set": {"a": 1}}), None)
        .await
        .expect_err("missing");
    assert!(matches!(e, StoreError::NotFound), "{e:?}");
}

/// `$pull` conditions as the firewall rebuilds them: an operator document is a
/// condition on each value, a regex a pattern. Both stores remove the same elements.
pub async fn pull_conditions(s: &dyn Store) {
    s.insert_one(
        C,
        doc! {"_id": 1, "nums": [1, 3, 5, 2], "words": ["apple", "Avocado", "banana"]},
    )
    .await
    .expect("insert");
    let after = s
        .update_one(
            C,
            &q(doc! {"_id": 1}),
            &ch(doc! {"$pull": {
                "nums": {"$gte": 3},
                "words": Bson::RegularExpression(bson::Regex {
                    pattern: "^a".try_into().expect("pattern"),
                    options: "i".try_into().expect("options"),
                }),
            }}),
            None,
        )
        .await
        .expect("pull");
    let d = doc_of(&after);
    assert_eq!(
        d.get_array("nums").expect("nums"),
        &vec![Bson::Int32(1), Bson::Int32(2)]
    );
    assert_eq!(
        d.get_array("words").expect("words"),
        &vec![Bson::from("banana")]
    );
}

/// A `$pull` document of fields is a query over the element documents (MongoDB:
/// "applies its query to each element as though it were a top-level object"), so
/// an element with more fields than the query names is removed too. FerretDB 1.24
/// compares such documents as whole values instead: excluded there by name.
pub async fn pull_query_over_documents(s: &dyn Store) {
    s.insert_one(
        C,
        doc! {"_id": 1, "subs": [{"k": 1, "t": "a"}, {"k": 2, "t": "a", "z": 0}, {"k": 3, "t": "b"}, 5]},
    )
    .await
    .expect("insert");
    let after = s
        .update_one(
            C,
            &q(doc! {"_id": 1}),
            &ch(doc! {"$pull": {"subs": {"k": {"$gt": 1}, "t": "a"}}}),
            None,
        )
        .await
        .expect("pull");
    assert_eq!(
        doc_of(&after).get_array("subs").expect("subs"),
        &vec![
            Bson::Document(doc! {"k": 1, "t": "a"}),
            Bson::Document(doc! {"k": 3, "t": "b"}),
            Bson::Int32(5)
        ]
    );
}

pub async fn versioned_updates(s: &dyn Store) {
    s.insert_one(C, doc! {"_id": 7, "title": "v", "version": 1_i64})
        .await
        .expect("insert");
    let bump = ch(doc! {"$set": {"title": "w"}, "$inc": {"version": 1_i64}});
    let d = s
        .update_one(C, &q(doc! {"_id": 7}), &bump, Some(1))
        .await
        .expect("version 1 matches");
    assert_eq!(doc_of(&d).get_i64("version").expect("version"), 2);
    let e = s
        .update_one(C, &q(doc! {"_id": 7}), &bump, Some(1))
        .await
        .expect_err("stale");
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    let e = s
        .update_one(C, &q(doc! {"_id": 8}), &bump, Some(1))
        .await
        .expect_err("missing");
    assert!(matches!(e, StoreError::NotFound), "{e:?}");
    let stored = s
        .find_one(C, &q(doc! {"_id": 7}))
        .await
        .expect("find")
        .expect("present");
    assert_eq!(
        doc_of(&stored).get_i64("version").expect("version"),
        2,
        "the stale write did not land"
    );
}

pub async fn delete_and_not_found(s: &dyn Store) {
    seed(s).await;
    s.delete_one(C, &q(doc! {"_id": 2})).await.expect("delete");
    assert!(matches!(
        s.delete_one(C, &q(doc! {"_id": 2})).await,
        Err(StoreError::NotFound)
    ));
    s.delete_one(C, &q(doc! {"s": "date"}))
        .await
        .expect("delete by filter");
    assert_eq!(find_ids(s, doc! {}).await, vec![1, 3, 5]);
    assert_eq!(s.count(C, &q(doc! {})).await.expect("count"), 3);
}

pub async fn large_documents(s: &dyn Store) {
    // Near the host's default 1 MiB document cap.
    let big = "x".repeat(1000 * 1024);
    s.insert_one(C, doc! {"_id": "big", "body": &big})
        .await
        .expect("insert");
    let got = s
        .find_one(C, &q(doc! {"_id": "big"}))
        .await
        .expect("find")
        .expect("present");
    assert_eq!(doc_of(&got).get_str("body").expect("body").len(), big.len());
}

/// Both stores check the document an update produces, as an insert is checked: past
/// the size limit the update is refused and the stored document is unchanged
/// (MongoDB by itself would let `$push` grow it to 16 MiB).
pub async fn updates_past_the_size_limit_change_nothing(s: &dyn Store) {
    let limits = Limits {
        max_document_bytes: 4096,
        ..Limits::default()
    };
    s.insert_one(C, doc! {"_id": "grow", "items": []})
        .await
        .expect("insert");
    let push = Change {
        update: Update::parse(&doc! {"$push": {"items": "x".repeat(1000)}}, &limits)
            .expect("valid update"),
    };
    let mut pushed = 0;
    let refusal = loop {
        match s.update_one(C, &q(doc! {"_id": "grow"}), &push, None).await {
            Ok(_) => pushed += 1,
            Err(e) => break e,
        }
        assert!(pushed <= 8, "the document grew past the 4 KiB limit");
    };
    assert!(matches!(refusal, StoreError::Invalid(_)), "{refusal:?}");
    let stored = s
        .find_one(C, &q(doc! {"_id": "grow"}))
        .await
        .expect("find")
        .expect("present");
    assert!(pushed >= 1);
    assert!(stored.as_bytes().len() <= 4096);
    let items = doc_of(&stored).get_array("items").expect("items").len();
    assert_eq!(items, pushed, "the refused update changed the document");
}

/// A find holds at most its byte budget of documents: past it the call fails
/// `invalid` (the caller asks for fewer) instead of the host buffering them.
pub async fn a_find_stops_at_its_byte_budget(s: &dyn Store) {
    for i in 0..8 {
        s.insert_one(C, doc! {"_id": i, "pad": "x".repeat(10_000)})
            .await
            .expect("insert");
    }
    let spec = |limit| FindSpec {
        sort: Some(Sort::parse(&doc! {"_id": -1}).expect("sort")),
        limit,
        max_bytes: 50_000,
        ..FindSpec::default()
    };
    let all = s.find(C, &q(doc! {}), &spec(8)).await;
    assert!(matches!(all, Err(StoreError::Invalid(_))), "{all:?}");
    let page = s
        .find(C, &q(doc! {}), &spec(4))
        .await
        .expect("a page within budget");
    assert_eq!(ids(&page), [7, 6, 5, 4]);
}

/// Single-document atomicity, which optimistic concurrency relies on: concurrent
/// version-checked writes have one winner per version, unconditional `$inc`s all
/// count. Known deviation: FerretDB 1.24 with SQLite applies updates outside a
/// transaction (FerretDB#3040) and loses writes here, so `.ci/run` excludes this
/// case from its FerretDB run; it runs against real MongoDB (GitHub Actions).
pub async fn concurrent_updates_are_atomic(s: Arc<dyn Store>) {
    s.insert_one(C, doc! {"_id": "hot", "version": 1_i64, "hits": 0})
        .await
        .expect("insert");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            while won < 5 {
                let cur = s
                    .find_one(C, &q(doc! {"_id": "hot"}))
                    .await
                    .expect("find")
                    .expect("present");
                let v = doc_of(&cur).get_i64("version").expect("version");
                match s
                    .update_one(
                        C,
                        &q(doc! {"_id": "hot"}),
                        &ch(doc! {"$inc": {"version": 1_i64}}),
                        Some(v),
                    )
                    .await
                {
                    Ok(_) => won += 1,
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
            for _ in 0..5 {
                s.update_one(
                    C,
                    &q(doc! {"_id": "hot"}),
                    &ch(doc! {"$inc": {"hits": 1}}),
                    None,
                )
                .await
                .expect("inc");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let d = doc_of(
        &s.find_one(C, &q(doc! {"_id": "hot"}))
            .await
            .expect("find")
            .expect("present"),
    );
    assert_eq!(
        d.get_i64("version").expect("version"),
        1 + 8 * 5,
        "one winner per version"
    );
    assert_eq!(
        d.get_i32("hits").expect("hits"),
        8 * 5,
        "no unconditional update lost"
    );
}

pub async fn empty_collection(s: &dyn Store) {
    assert_eq!(s.count("tasks", &q(doc! {})).await.expect("count"), 0);
    assert!(
        s.find_one("tasks", &q(doc! {"a": 1}))
            .await
            .expect("find")
            .is_none()
    );
    s.ping().await.expect("ping");
}

macro_rules! suite {
    ($name:ident, $harness:path $(, #[$attr:meta])?) => {
        mod $name {

            suite!(@case $harness, round_trip_types $(, #[$attr])?);
            suite!(@case $harness, duplicate_id_is_a_conflict $(, #[$attr])?);
            suite!(@case $harness, every_allowed_operator $(, #[$attr])?);
            suite!(@case $harness, sort_limit_skip_projection $(, #[$attr])?);
            suite!(@case $harness, update_operators $(, #[$attr])?);
            suite!(@case $harness, pull_conditions $(, #[$attr])?);
            suite!(@case $harness, pull_query_over_documents $(, #[$attr])?);
            suite!(@case $harness, versioned_updates $(, #[$attr])?);
            suite!(@case $harness, delete_and_not_found $(, #[$attr])?);
            suite!(@case $harness, large_documents $(, #[$attr])?);
            suite!(@case $harness, updates_past_the_size_limit_change_nothing $(, #[$attr])?);
            suite!(@case $harness, a_find_stops_at_its_byte_budget $(, #[$attr])?);
            suite!(@case $harness, empty_collection $(, #[$attr])?);

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            $(#[$attr])?
            async fn concurrent_updates_are_atomic() {
                let h = $harness();
                super::concurrent_updates_are_atomic(h.store.clone()).await;
            }
        }
    };
    (@case $harness:path, $case:ident $(, #[$attr:meta])?) => {
        #[tokio::test]
        $(#[$attr])?
        async fn $case() {
            let h = $harness();
            super::$case(&*h.store).await;
        }
    };
}

suite!(embedded_store, super::embedded);
suite!(mongodb_store, super::mongodb, #[ignore = "needs TEST_MONGODB_URI; .ci/run runs it against FerretDB"]);

/// On a real MongoDB, the queries the API lists with are answered from the indexes
/// the store creates (`data::SORT_INDEXES` and the status index): no plan scans the
/// collection. FerretDB plans differently (its explain has no such stages), so
/// `.ci/run` skips this; GitHub Actions' `mongo:7` job runs it.
mod mongodb_store_plans {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs TEST_MONGODB_URI on a real MongoDB; GitHub Actions runs it on mongo:7"]
    async fn list_queries_use_indexes() {
        let h = mongodb();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while let Some(why) = h.store.not_ready() {
            assert!(
                std::time::Instant::now() < deadline,
                "indexes not ready: {why}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        for i in 0..200i64 {
            let status = if i % 3 == 0 { "done" } else { "todo" };
            h.store
                .insert_one(
                    "tasks",
                    doc! {"_id": ObjectId::new(), "status": status, "created": DateTime::from_millis(i), "due": DateTime::from_millis(i % 17), "priority": i % 5},
                )
                .await
                .expect("insert");
        }
        let uri = std::env::var("TEST_MONGODB_URI").expect("uri");
        let client = mongodb::Client::with_uri_str(&uri).await.expect("client");
        let db = client.database(h.database.as_deref().expect("database"));
        let v = Bson::DateTime(DateTime::from_millis(100));
        let id = Bson::ObjectId(ObjectId::new());
        let cases = [
            (doc! {}, doc! {"created": -1, "_id": -1}),
            (
                doc! {"$or": [{"created": {"$lt": v.clone()}}, {"created": v.clone(), "_id": {"$lt": id.clone()}}, {"created": Bson::Null}]},
                doc! {"created": -1, "_id": -1},
            ),
            (
                doc! {"$or": [{"created": {"$gt": v.clone()}}, {"created": v, "_id": {"$gt": id}}]},
                doc! {"created": 1, "_id": 1},
            ),
            (doc! {"status": "todo"}, doc! {"created": 1, "_id": 1}),
            (doc! {}, doc! {"due": 1, "_id": 1}),
            (doc! {}, doc! {"priority": -1, "_id": -1}),
        ];
        for (filter, sort) in cases {
            // The filter as the store sends it: rebuilt by the firewall.
            let filter = q(filter).filter.to_document();
            let plan = db
                .run_command(doc! {
                    "explain": {"find": "tasks", "filter": filter.clone(), "sort": sort.clone(), "limit": 21},
                    "verbosity": "queryPlanner",
                })
                .await
                .expect("explain");
            let winning = plan
                .get_document("queryPlanner")
                .and_then(|p| p.get_document("winningPlan"))
                .map(|p| format!("{p:?}"))
                .expect("a winning plan");
            assert!(
                winning.contains("IXSCAN") && !winning.contains("COLLSCAN"),
                "filter {filter:?} sort {sort:?}: {winning}"
            );
        }
    }
}
