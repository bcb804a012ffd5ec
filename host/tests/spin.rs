//! The Spin build (the tasks API composed with `adapters/documents-kv`) in this host
//! with `--key-value-store`. `.ci/run` also runs the whole API suite on it
//! (`TEST_GUEST=spin`); these cases run in every `cargo test` and cover what is
//! particular to it: where data lands, and what happens without its store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Guest, HOST, Opts, Server, client, create, get_json, precompiled, problem};
use serde_json::json;
use std::process::{Command, Stdio};

#[tokio::test]
async fn the_spin_build_keeps_tasks_in_the_key_value_store() {
    let s = Server::start(Opts::new(Guest::SpinApp));
    let c = client();
    let a = create(&c, &s, json!({"title": "under spin", "priority": 5})).await;
    let b = create(&c, &s, json!({"title": "second"})).await;
    let id = a["id"].as_str().unwrap();
    assert_eq!(get_json(&c, &s, &format!("/api/tasks/{id}")).await, a);
    let list = get_json(&c, &s, "/api/tasks?sort=-priority").await;
    let titles: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["under spin", "second"]);
    let r = c
        .delete(s.url(&format!("/api/tasks/{}", b["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Data went through key-value into its own file, not the documents store.
    assert!(s.data_dir.join("kv.redb").exists());
    let metrics = common::metrics_text(&c, &s).await;
    assert!(
        metrics.contains(r#"op="kv_set""#),
        "no key-value writes counted:\n{metrics}"
    );
    // No documents operation ran (store_errors_total lists its ops at 0 from the
    // start, so only the operation histogram says what ran).
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("store_operation_duration_seconds")
                && l.contains(r#"op="insert_one""#)),
        "{metrics}"
    );
}

/// Granting another label than the one the adapter opens: Spin answers
/// `access-denied`, and so does this host; the API says 500 without details.
#[tokio::test]
async fn an_ungranted_store_is_denied_not_created() {
    let s = Server::start(
        Opts::new(Guest::SpinApp)
            .arg("--key-value-store")
            .arg("other"),
    );
    let c = client();
    let r = c
        .post(s.url("/api/tasks"))
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    let body = problem(r, 500).await;
    assert!(!body.to_string().contains("default"), "{body}");
    assert!(
        s.log_text()
            .contains("component asked for an ungranted key-value store"),
        "{}",
        s.log_text()
    );
}

/// Without `--key-value-store` the interface is not provided at all: the Spin build
/// is refused at start with the missing import named, and the host exits non-zero.
#[test]
fn without_key_value_the_spin_build_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(HOST)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--component")
        .arg(precompiled(Guest::SpinApp))
        .arg("--allow-precompiled")
        .env_remove("MONGODB_URI")
        .env_remove("KEY_VALUE_STORES")
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .output()
        .expect("run host");
    assert!(!out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("fermyon:spin/key-value@2.0.0"), "{logs}");
    assert!(!dir.path().join("kv.redb").exists());
}
