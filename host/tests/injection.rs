//! The NoSQL-injection firewall, from both sides: what a client can send through the
//! API, and what a (compromised) component can send straight to the host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Guest, Opts, Server, client, create, get_json, problem, refused_as_new_and_as_patch};
use serde_json::{Value, json};

async fn all_tasks(c: &reqwest::Client, s: &Server) -> Vec<Value> {
    let page: Value = get_json(c, s, "/api/tasks?limit=100").await;
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn operator_payloads_through_the_api_are_rejected_and_change_nothing() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    let t = create(&c, &s, json!({"title": "victim", "tags": ["a"]})).await;
    let url = s.url(&format!("/api/tasks/{}", t["id"].as_str().unwrap()));
    let before = all_tasks(&c, &s).await;

    let mut bomb = String::new();
    for _ in 0..10_000 {
        bomb.push_str("{\"a\":");
    }
    bomb.push('1');
    for _ in 0..10_000 {
        bomb.push('}');
    }
    let bodies = [
        json!({"title": {"$gt": ""}}).to_string(),
        json!({"title": "x", "status": {"$ne": "done"}}).to_string(),
        json!({"title": "x", "$where": "sleep(5000)"}).to_string(),
        json!({"title": "x", "tags": [{"$function": {"body": "return 1"}}]}).to_string(),
        json!({"title": "x", "due": {"$expr": {"$gt": ["$a", 1]}}}).to_string(),
        json!({"title": "x", "priority": {"$gt": 0}}).to_string(),
        json!({"title": "x", "description": {"$set": {"title": "pwned"}}}).to_string(),
        bomb.clone(),
    ];
    for body in &bodies {
        refused_as_new_and_as_patch(&c, &s, &url, body.clone(), body.clone()).await;
    }
    for body in [
        json!({"$set": {"title": "pwned"}}),
        json!({"$unset": {"title": ""}}),
        json!({"$inc": {"version": 100}}),
        json!({"_id": "other"}),
    ] {
        let r = c
            .patch(&url)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        problem(r, 400).await;
    }
    // Operators in query parameters are not parsed as operators.
    for q in [
        "status[$ne]=done",
        "tag[$gt]=",
        "status=%7B%22%24ne%22%3A%22x%22%7D",
        "q[$regex]=.*",
        "sort=%7B%22%24natural%22%3A1%7D",
    ] {
        problem(
            c.get(s.url(&format!("/api/tasks?{q}")))
                .send()
                .await
                .unwrap(),
            400,
        )
        .await;
    }
    // A tag that looks like an operator is just a string that matches nothing.
    let page: Value = get_json(&c, &s, "/api/tasks?tag=%24gt").await;
    assert_eq!(page["items"], json!([]));

    assert_eq!(all_tasks(&c, &s).await, before, "the store is untouched");
}

#[tokio::test]
async fn the_host_refuses_forbidden_operators_from_the_component_itself() {
    let s = Server::start(Opts::new(Guest::Fault));
    let c = client();
    for (path, expect) in [
        (
            "/fault/inject?op=where",
            "invalid: operator `$where` is not allowed",
        ),
        (
            "/fault/inject?op=function",
            "invalid: operator `$function` is not allowed",
        ),
        (
            "/fault/inject?op=expr",
            "invalid: operator `$expr` is not allowed",
        ),
        (
            "/fault/inject?op=gt-empty",
            "invalid: operator `$comment` is not allowed",
        ),
        (
            "/fault/inject?op=depth",
            "invalid: input is nested deeper than 32 levels",
        ),
        (
            "/fault/inject?op=regex-long",
            "invalid: `$regex` pattern longer than 256 bytes",
        ),
        (
            "/fault/inject?op=regex-heavy",
            "invalid: `$regex`: a repeated group may not repeat or alternate inside",
        ),
        (
            "/fault/inject?op=regex-backtrack",
            "invalid: `$regex`: a repeated group may not repeat or alternate inside",
        ),
        ("/fault/inject?op=op-long", "invalid: operator `$kkkkkkkk"),
        (
            "/fault/inject-update?op=rename",
            "invalid: operator `$rename` is not allowed",
        ),
        (
            "/fault/inject-update?op=replace",
            "invalid: update must use operators",
        ),
        (
            "/fault/inject-update?op=id",
            "invalid: `_id` cannot be updated",
        ),
        (
            "/fault/insert-operator",
            "invalid: field name `$where` is not allowed",
        ),
        ("/fault/garbage", "invalid: not a well-formed BSON document"),
    ] {
        let r: Value = get_json(&c, &s, path).await;
        let outcome = r["outcome"].as_str().unwrap();
        assert!(outcome.starts_with(expect), "{path}: {outcome}");
    }
    // Nothing was written: the collection is still empty.
    let r: Value = get_json(&c, &s, "/fault/ok").await;
    assert_eq!(r["outcome"], "ok");
    let metrics = common::metrics_text(&c, &s).await;
    assert!(
        metrics.contains("data_requests_denied_total{reason=\"firewall\"} 14"),
        "{metrics}"
    );
    // The component's 200 KB operator name reached no log line whole.
    let logs = s.log_text();
    assert!(logs.contains("firewall refused a data call"), "{logs}");
    assert!(
        !logs.contains(&"k".repeat(1000)),
        "an unbounded guest string was logged"
    );
}
