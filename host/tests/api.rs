//! The tasks API over real HTTP against the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Guest, Opts, Server, client, create, get_json, problem, refused_as_new_and_as_patch};
use serde_json::{Value, json};

#[tokio::test]
async fn crud_flow() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();

    let r = c.post(s.url("/api/tasks"))
        .json(&json!({"title": "write docs", "description": "all of them", "priority": 2, "tags": ["docs", "q4"], "due": "2026-12-01T17:00:00Z"}))
        .send().await.unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(r.headers().contains_key("x-request-id"));
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/tasks/{}", t["id"].as_str().unwrap())
    );
    assert_eq!(etag, "\"v1\"");
    assert_eq!(
        (
            t["title"].as_str(),
            t["status"].as_str(),
            t["priority"].as_i64(),
            t["version"].as_i64()
        ),
        (Some("write docs"), Some("todo"), Some(2), Some(1))
    );
    assert_eq!(t["due"], "2026-12-01T17:00:00.000Z");
    assert_eq!(t["tags"], json!(["docs", "q4"]));
    assert_eq!(t["created"], t["updated"]);

    let r = c.get(s.url(&location)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "\"v1\"");
    assert_eq!(r.json::<Value>().await.unwrap(), t);

    let r = c
        .patch(s.url(&location))
        .header("content-type", "application/merge-patch+json")
        .header("if-match", "\"v1\"")
        .body(json!({"status": "doing", "description": null, "due": null}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "\"v2\"");
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        (
            p["status"].as_str(),
            p["description"].as_str(),
            p["version"].as_i64()
        ),
        (Some("doing"), Some(""), Some(2))
    );
    assert_eq!(p["due"], Value::Null);
    assert_eq!(p["title"], "write docs", "fields not in the patch are kept");
    assert_eq!(p["created"], t["created"]);

    let r = c.delete(s.url(&location)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    problem(c.get(s.url(&location)).send().await.unwrap(), 404).await;
    problem(c.delete(s.url(&location)).send().await.unwrap(), 404).await;
}

#[tokio::test]
async fn conditional_requests() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    let t = create(&c, &s, json!({"title": "etag me"})).await;
    let url = s.url(&format!("/api/tasks/{}", t["id"].as_str().unwrap()));

    let r = c
        .get(&url)
        .header("if-none-match", "\"v1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], "\"v1\"");
    assert!(r.bytes().await.unwrap().is_empty());
    let r = c
        .get(&url)
        .header("if-none-match", "\"v9\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A list-valued header sent as two lines counts as one list (RFC 9110 §5.3):
    // the tag in the first line matches although the last one does not.
    let r = c
        .get(&url)
        .header("if-none-match", "\"v1\"")
        .header("if-none-match", "\"v9\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let patch = |etag: &'static str, title: &'static str| {
        c.patch(&url)
            .header("content-type", "application/merge-patch+json")
            .header("if-match", etag)
            .body(json!({"title": title}).to_string())
            .send()
    };
    assert_eq!(patch("\"v1\"", "second").await.unwrap().status(), 200);
    let p = problem(patch("\"v1\"", "stale").await.unwrap(), 412).await;
    assert_eq!(p["type"], "/problems/precondition-failed");
    let got: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["title"], "second", "a stale write must not land");
    // An invalid patch is a 400 even with a stale If-Match: re-reading would not
    // make it valid (found by schemathesis, which expects the validation error).
    let p = problem(patch("\"v1\"", "").await.unwrap(), 400).await;
    assert_eq!(p["type"], "/problems/validation-error");
    assert_eq!(patch("*", "any version").await.unwrap().status(), 200);
    // A malformed If-Match is the client's error, whatever the task's state: 400,
    // where a well-formed stale one is 412, and nothing is written.
    for malformed in ["", "v3", "\"v3", "\"v3\", *", "\"v3\" \"v4\""] {
        let r = c
            .patch(&url)
            .header("content-type", "application/merge-patch+json")
            .header("if-match", malformed)
            .body(json!({"title": "malformed"}).to_string())
            .send()
            .await
            .unwrap();
        let p = problem(r, 400).await;
        assert_eq!(p["type"], "/problems/invalid-header", "{malformed:?}");
        let r = c
            .delete(&url)
            .header("if-match", malformed)
            .send()
            .await
            .unwrap();
        problem(r, 400).await;
    }
    let got: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["title"], "any version");

    problem(
        c.delete(&url)
            .header("if-match", "\"v1\"")
            .send()
            .await
            .unwrap(),
        412,
    )
    .await;
    assert_eq!(
        c.delete(&url)
            .header("if-match", "\"v3\"")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
}

#[tokio::test]
async fn pagination_filters_and_search() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    for i in 0..23 {
        let status = ["todo", "doing", "done"][i % 3];
        let mut body = json!({"title": format!("task {i:02} (a.b)"), "status": status, "priority": (i % 5) + 1, "tags": [format!("t{}", i % 2)]});
        if i % 4 != 0 {
            body["due"] = json!(format!("2027-01-{:02}T00:00:00Z", 28 - i));
        }
        create(&c, &s, body).await;
    }

    // Every sort, both directions: walking the pages yields every task once, in order.
    for sort in [
        "created",
        "-created",
        "priority",
        "-priority",
        "due",
        "-due",
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut url = format!("/api/tasks?limit=5&sort={sort}");
            if let Some(cur) = &cursor {
                url.push_str(&format!("&cursor={cur}"));
            }
            let r = c.get(s.url(&url)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{url}");
            let page: Value = r.json().await.unwrap();
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 5);
            seen.extend(items.iter().cloned());
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 23, "sort={sort}");
        assert_eq!(pages, 5, "sort={sort}");
        let mut ids: Vec<_> = seen
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 23, "no task twice (sort={sort})");
        let field = sort.trim_start_matches('-');
        let key = |t: &Value| match field {
            "priority" => t["priority"].as_i64().map(|p| format!("{p:03}")),
            _ => t[field].as_str().map(str::to_owned),
        };
        let keys: Vec<Option<String>> = seen.iter().map(key).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        if sort.starts_with('-') {
            sorted.reverse();
        }
        assert_eq!(keys, sorted, "order for sort={sort}");
    }

    let page: Value = get_json(&c, &s, "/api/tasks?status=done&limit=100").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 7);
    assert!(items.iter().all(|t| t["status"] == "done"));

    let page: Value = get_json(&c, &s, "/api/tasks?tag=t1&status=todo").await;
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["tags"] == json!(["t1"]) && t["status"] == "todo")
    );
    assert_eq!(page["items"].as_array().unwrap().len(), 4);

    // Search is case-insensitive and literal: regex metacharacters match themselves.
    let page: Value = get_json(&c, &s, "/api/tasks?q=TASK%2007").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let page: Value = get_json(&c, &s, "/api/tasks?q=(a.b)&limit=100").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 23);
    let page: Value = get_json(&c, &s, "/api/tasks?q=a.c").await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        0,
        "`.` must not be a wildcard"
    );
    let page: Value = get_json(&c, &s, "/api/tasks?q=.*").await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        0,
        "`.*` must not match everything"
    );

    // A cursor is a position (the last item's sort value and id) read in the
    // request's order: any string of its documented shape is one, anything else is
    // a 400. With the sort that issued it, the next page starts right after it.
    let first: Value = get_json(&c, &s, "/api/tasks?limit=2&sort=priority").await;
    let cur = first["next_cursor"].as_str().unwrap();
    let (value, last_id) = cur.split_once('.').unwrap();
    assert_eq!(value, first["items"][1]["priority"].to_string());
    assert_eq!(last_id, first["items"][1]["id"].as_str().unwrap());
    let next: Value = get_json(
        &c,
        &s,
        &format!("/api/tasks?limit=1&sort=priority&cursor={cur}"),
    )
    .await;
    assert_ne!(next["items"][0]["id"], first["items"][1]["id"]);
    assert!(next["items"][0]["priority"].as_i64() >= first["items"][1]["priority"].as_i64());
    let beyond: Value = get_json(
        &c,
        &s,
        "/api/tasks?sort=priority&cursor=999.ffffffffffffffffffffffff",
    )
    .await;
    assert_eq!(beyond, json!({"items": [], "next_cursor": null}));
    for bad in [
        "not-a-cursor",
        "5.65A1B2C3D4E5F60718293A4B",
        "1234567890123456789.65a1b2c3d4e5f60718293a4b",
    ] {
        let p = problem(
            c.get(s.url(&format!("/api/tasks?cursor={bad}")))
                .send()
                .await
                .unwrap(),
            400,
        )
        .await;
        assert_eq!(p["type"], "/problems/invalid-query", "{bad}");
    }
}

#[tokio::test]
async fn list_query_rules() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    for q in [
        "limit=0",
        "limit=101",
        "limit=x",
        "status=nope",
        "sort=title",
        "tag=",
        "q=",
        "unknown=1",
        "limit=5&limit=6",
        &format!("q={}", "x".repeat(101)),
    ] {
        let p = problem(
            c.get(s.url(&format!("/api/tasks?{q}")))
                .send()
                .await
                .unwrap(),
            400,
        )
        .await;
        assert_eq!(p["type"], "/problems/invalid-query", "{q}");
        assert!(p["errors"].as_array().is_some_and(|e| !e.is_empty()), "{q}");
    }
    let page: Value = get_json(&c, &s, "/api/tasks?limit=100").await;
    assert_eq!(page, json!({"items": [], "next_cursor": null}));
}

/// A body past the guest's one-call-per-4-kB path (64 kB, `app-wasm/src/http.rs`)
/// arrives whole, with its length.
#[tokio::test]
async fn a_large_list_arrives_whole() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    let description = "d".repeat(10 * 1024);
    for i in 0..12 {
        create(
            &c,
            &s,
            json!({"title": format!("large {i}"), "description": description}),
        )
        .await;
    }
    let r = c.get(s.url("/api/tasks?limit=100")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let length = r.content_length();
    let body = r.bytes().await.unwrap();
    assert!(body.len() > 120 * 1024, "{}", body.len());
    assert_eq!(length, Some(body.len() as u64));
    let page: Value = serde_json::from_slice(&body).unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 12);
    assert!(
        items
            .iter()
            .all(|t| t["description"] == description.as_str())
    );
}

/// JSON nested as deep as the guest's parser goes (serde_json stops at 128 levels)
/// is a 400 like any other bad field, never a trap: the guest's stack (256 KiB,
/// `app-wasm/build.rs`) holds the deepest parse, for a POST and a merge patch.
#[tokio::test]
async fn deeply_nested_json_is_a_400_not_a_trap() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    let t = create(&c, &s, json!({"title": "nest"})).await;
    let url = s.url(&format!("/api/tasks/{}", t["id"].as_str().unwrap()));
    for depth in [100, 126, 127, 5000] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        for nested in [arrays, objects] {
            let post = format!("{{\"title\":\"x\",\"tags\":{nested}}}");
            let patch = format!("{{\"description\":{nested}}}");
            refused_as_new_and_as_patch(&c, &s, &url, post, patch).await;
        }
    }
}

#[tokio::test]
async fn every_field_rule_is_a_400() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    let cases = [
        (json!({}), "title"),
        (json!({"title": ""}), "title"),
        (json!({"title": "   "}), "title"),
        (json!({"title": "x".repeat(201)}), "title"),
        (json!({"title": 5}), "title"),
        (
            json!({"title": "x", "description": "d".repeat(10 * 1024 + 1)}),
            "description",
        ),
        (json!({"title": "x", "description": 1}), "description"),
        (json!({"title": "x", "status": "later"}), "status"),
        (json!({"title": "x", "priority": 0}), "priority"),
        (json!({"title": "x", "priority": 6}), "priority"),
        (json!({"title": "x", "priority": 2.5}), "priority"),
        (json!({"title": "x", "priority": "3"}), "priority"),
        (json!({"title": "x", "tags": "a"}), "tags"),
        (
            json!({"title": "x", "tags": (0..11).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
            "tags",
        ),
        (json!({"title": "x", "tags": ["y".repeat(33)]}), "tags[0]"),
        (json!({"title": "x", "tags": ["a", "a"]}), "tags[1]"),
        (json!({"title": "x", "tags": [1]}), "tags[0]"),
        (json!({"title": "x", "due": "tomorrow"}), "due"),
        (json!({"title": "x", "due": 1700000000}), "due"),
        (json!({"title": "x", "id": "abc"}), "id"),
        (json!({"title": "x", "version": 7}), "version"),
        (
            json!({"title": "x", "created": "2026-01-01T00:00:00Z"}),
            "created",
        ),
        (json!({"title": "x", "owner": "me"}), "owner"),
    ];
    for (body, field) in cases {
        let p = problem(
            c.post(s.url("/api/tasks"))
                .json(&body)
                .send()
                .await
                .unwrap(),
            400,
        )
        .await;
        assert_eq!(p["type"], "/problems/validation-error", "{body}");
        let fields: Vec<&str> = p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&field),
            "{body}: expected an error on {field}, got {fields:?}"
        );
    }
    // Boundaries that are allowed.
    create(&c, &s, json!({"title": "é".repeat(200), "description": "d".repeat(10 * 1024), "tags": (0..10).map(|i| format!("{i}").repeat(32)).collect::<Vec<_>>(), "priority": 5, "due": "2026-12-01T17:00:00.123+02:00"})).await;

    // The same rules apply to the result of a PATCH.
    let t = create(&c, &s, json!({"title": "patch me"})).await;
    let url = s.url(&format!("/api/tasks/{}", t["id"].as_str().unwrap()));
    for (body, field) in [
        (json!({"title": null}), "title"),
        (json!({"priority": 9}), "priority"),
        (json!({"version": 5}), "version"),
        (json!({"nope": 1}), "nope"),
    ] {
        let r = c
            .patch(&url)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let p = problem(r, 400).await;
        assert!(
            p["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{body}"
        );
    }
    let got: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["version"], 1, "rejected patches change nothing");
}

#[tokio::test]
async fn protocol_errors() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    // 400: not JSON, not an object, truncated.
    for body in ["{", "not json", "[1,2]", "\"str\"", ""] {
        let p = problem(
            c.post(s.url("/api/tasks"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap(),
            400,
        )
        .await;
        assert_eq!(p["type"], "/problems/invalid-json", "{body:?}");
    }
    // 415: wrong or missing media type.
    let p = problem(
        c.post(s.url("/api/tasks"))
            .header("content-type", "text/plain")
            .body("{\"title\":\"x\"}")
            .send()
            .await
            .unwrap(),
        415,
    )
    .await;
    assert_eq!(p["type"], "/problems/unsupported-media-type");
    problem(
        c.post(s.url("/api/tasks"))
            .body("{\"title\":\"x\"}")
            .send()
            .await
            .unwrap(),
        415,
    )
    .await;
    assert_eq!(
        c.post(s.url("/api/tasks"))
            .header("content-type", "application/json; charset=utf-8")
            .body("{\"title\":\"x\"}")
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let t = create(&c, &s, json!({"title": "x"})).await;
    let url = s.url(&format!("/api/tasks/{}", t["id"].as_str().unwrap()));
    problem(
        c.patch(&url)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap(),
        415,
    )
    .await;
    // 405 with Allow.
    let r = c.put(s.url("/api/tasks")).send().await.unwrap();
    assert_eq!(r.headers()["allow"], "GET, HEAD, POST");
    problem(r, 405).await;
    let r = c
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "GET, HEAD, PATCH, DELETE");
    problem(r, 405).await;
    // 404: unknown routes and ids that are not ids.
    problem(c.get(s.url("/api/nope")).send().await.unwrap(), 404).await;
    problem(
        c.get(s.url("/api/tasks/not-an-id")).send().await.unwrap(),
        404,
    )
    .await;
    problem(
        c.get(s.url("/api/tasks/0123456789abcdef01234567"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    // 413: over the body limit, declared or streamed.
    let big = "x".repeat(1024 * 1024 + 1);
    let r = c
        .post(s.url("/api/tasks"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["connection"], "close");
    let p = problem(r, 413).await;
    assert_eq!(p["type"], "/problems/body-too-large");
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(
        (0..9).map(|_| Ok::<_, std::io::Error>(vec![b' '; 128 * 1024])),
    ));
    problem(
        c.post(s.url("/api/tasks"))
            .header("content-type", "application/json")
            .body(stream)
            .send()
            .await
            .unwrap(),
        413,
    )
    .await;
    // 431: oversized headers.
    let r = c
        .get(s.url("/api/tasks"))
        .header("x-big", "y".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    // The request id is honoured when sent.
    let r = c
        .get(s.url("/api/tasks"))
        .header("x-request-id", "test-id-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "test-id-123");
    let logged = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        s.log_text()
            .lines()
            .any(|l| l.contains("test-id-123") && l.contains("finished processing request"))
    });
    assert!(logged, "the access log line carries the request id");
}

#[tokio::test]
async fn openapi_document_is_served_and_covers_the_routes() {
    let s = Server::start(Opts::new(Guest::App));
    let r = client()
        .get(s.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/tasks", vec!["get", "post"]),
        ("/api/tasks/{id}", vec!["get", "patch", "delete"]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{m} {path} documented");
        }
    }
}

#[tokio::test]
async fn tasks_survive_a_restart() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    let t = create(&c, &s, json!({"title": "persist me", "tags": ["keep"]})).await;
    let id = t["id"].as_str().unwrap().to_owned();
    let mut s = s;
    assert!(s.terminate().success(), "SIGTERM exits cleanly");
    let (dir, keep) = s.stop_keep_data();
    let s2 = Server::start(Opts::new(Guest::App).data_dir(&dir));
    let got: Value = get_json(&c, &s2, &format!("/api/tasks/{id}")).await;
    assert_eq!(got, t);
    drop(keep);
}
