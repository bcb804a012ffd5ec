//! Crash safety of the embedded store: a write acknowledged with 2xx survives SIGKILL,
//! and the indexes the lists are read from agree with the documents after it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Guest, Opts, Server, client};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let mut s = Server::start(Opts::new(Guest::App));
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let url = s.url("/api/tasks");

    let mut writers = Vec::new();
    for w in 0..8 {
        let (c, url, acked) = (c.clone(), url.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for n in 0..10_000 {
                let r = c
                    .post(&url)
                    .json(&json!({"title": format!("w{w} n{n}")}))
                    .send()
                    .await;
                let Ok(r) = r else { return };
                if r.status() != 201 {
                    return;
                }
                let Ok(t) = r.json::<Value>().await else {
                    return;
                };
                let id = t["id"].as_str().unwrap().to_owned();
                // PATCH too, so the burst has updates in flight as well.
                let r = c
                    .patch(format!("{url}/{id}"))
                    .header("content-type", "application/merge-patch+json")
                    .body(r#"{"status":"doing"}"#)
                    .send()
                    .await;
                let version = match r {
                    Ok(r) if r.status() == 200 => 2,
                    _ => 1,
                };
                acked.lock().unwrap().push((id, version));
            }
        }));
    }
    // Let the burst run, then pull the plug mid-write.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.kill();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "the burst wrote something ({})",
        acked.len()
    );

    let (dir, _keep) = s.stop_keep_data();
    let s2 = Server::start(Opts::new(Guest::App).data_dir(&dir));
    let c = client();
    let mut missing = Vec::new();
    for (id, version) in &acked {
        let r = c
            .get(s2.url(&format!("/api/tasks/{id}")))
            .send()
            .await
            .unwrap();
        if r.status() != 200 {
            missing.push(id.clone());
            continue;
        }
        let t: Value = r.json().await.unwrap();
        assert!(
            t["version"].as_i64().unwrap() >= *version,
            "acknowledged update of {id} lost"
        );
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged tasks lost: {missing:?}",
        missing.len(),
        acked.len()
    );
    eprintln!(
        "{} acknowledged writes all present after SIGKILL",
        acked.len()
    );

    // The lists are read from the indexes, written in the documents' transactions:
    // paging through every indexed order lists each stored task exactly once, every
    // acknowledged one among them, and nothing that is not there.
    for sort in ["-created", "created", "due", "-priority"] {
        let mut listed = std::collections::BTreeSet::new();
        let mut next: Option<String> = None;
        loop {
            let mut url = s2.url(&format!("/api/tasks?sort={sort}&limit=100"));
            if let Some(cursor) = &next {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let page: Value = c.get(url).send().await.unwrap().json().await.unwrap();
            for t in page["items"].as_array().unwrap() {
                let id = t["id"].as_str().unwrap().to_owned();
                assert!(listed.insert(id.clone()), "{id} listed twice by {sort}");
                let r = c
                    .get(s2.url(&format!("/api/tasks/{id}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{sort} lists {id}, which is not stored");
            }
            match page["next_cursor"].as_str() {
                Some(cursor) => next = Some(cursor.to_owned()),
                None => break,
            }
        }
        for (id, _) in &acked {
            assert!(
                listed.contains(id),
                "acknowledged {id} missing from the {sort} list"
            );
        }
    }
}
