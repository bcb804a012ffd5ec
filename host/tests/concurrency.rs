//! Optimistic concurrency: no lost updates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Guest, Opts, Server, client, create};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn if_match_writers_never_lose_an_update() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    let t = create(&c, &s, json!({"title": "contended", "priority": 1})).await;
    let url = s.url(&format!("/api/tasks/{}", t["id"].as_str().unwrap()));

    const CLIENTS: usize = 8;
    const WRITES_EACH: usize = 10;
    let mut handles = Vec::new();
    for i in 0..CLIENTS {
        let (c, url) = (c.clone(), url.clone());
        handles.push(tokio::spawn(async move {
            let (mut ok, mut stale) = (0usize, 0usize);
            let mut wins_by_version = Vec::new();
            while ok < WRITES_EACH {
                let r = c.get(&url).send().await.unwrap();
                let etag = r.headers()["etag"].to_str().unwrap().to_owned();
                let r = c
                    .patch(&url)
                    .header("content-type", "application/merge-patch+json")
                    .header("if-match", &etag)
                    .body(json!({"title": format!("client {i} write {ok}")}).to_string())
                    .send()
                    .await
                    .unwrap();
                match r.status().as_u16() {
                    200 => {
                        ok += 1;
                        wins_by_version.push(etag);
                    }
                    412 => stale += 1,
                    other => panic!("unexpected status {other}"),
                }
            }
            (ok, stale, wins_by_version)
        }));
    }
    let mut total_ok = 0;
    let mut total_stale = 0;
    let mut all_wins = Vec::new();
    for h in handles {
        let (ok, stale, wins) = h.await.unwrap();
        total_ok += ok;
        total_stale += stale;
        all_wins.extend(wins);
    }
    let final_task: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(total_ok, CLIENTS * WRITES_EACH);
    assert_eq!(
        final_task["version"].as_u64().unwrap() as usize,
        1 + total_ok,
        "every successful write is counted once"
    );
    all_wins.sort();
    let before = all_wins.len();
    all_wins.dedup();
    assert_eq!(all_wins.len(), before, "exactly one writer won per version");
    eprintln!("{total_ok} writes won, {total_stale} stale attempts refused with 412");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unconditional_patches_are_all_applied() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    let t = create(&c, &s, json!({"title": "merge target"})).await;
    let url = s.url(&format!("/api/tasks/{}", t["id"].as_str().unwrap()));
    let mut handles = Vec::new();
    for i in 0..20 {
        let (c, url) = (c.clone(), url.clone());
        handles.push(tokio::spawn(async move {
            let r = c
                .patch(&url)
                .header("content-type", "application/merge-patch+json")
                .body(json!({"priority": (i % 5) + 1}).to_string())
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            200 => ok += 1,
            409 => {}
            other => panic!("unexpected {other}"),
        }
    }
    let final_task: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        final_task["version"].as_u64().unwrap(),
        1 + ok,
        "each 200 is exactly one version"
    );
    assert!(ok >= 15, "retries absorb most races ({ok}/20)");
}
