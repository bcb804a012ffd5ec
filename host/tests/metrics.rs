//! `/metrics` is valid Prometheus text and counts what was sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Guest, Opts, Server, client, create};
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use serde_json::json;

type Scrape = MetricsExposition<PrometheusType, PrometheusValue>;

/// Sum of a counter/gauge (or a histogram's `_count`) over the series whose labels
/// include `labels`.
fn counter(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (family, histogram_count) = match name.strip_suffix("_count") {
        Some(base) if scrape.families.contains_key(base) => (base, true),
        _ => (name, false),
    };
    let Some(f) = scrape.families.get(family) else {
        return 0.0;
    };
    f.iter_samples()
        .filter(|s| {
            let set = s.get_labelset().expect("labels");
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .map(|s| match &s.value {
            PrometheusValue::Counter(c) => c.value.as_f64(),
            PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
            PrometheusValue::Histogram(h) if histogram_count => h.count.unwrap_or(0) as f64,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_parse_and_match_the_traffic() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    let mut ids = Vec::new();
    for i in 0..5 {
        let t = create(&c, &s, json!({"title": format!("m{i}")})).await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    for id in ids.iter().cycle().take(7) {
        assert_eq!(
            c.get(s.url(&format!("/api/tasks/{id}")))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    for _ in 0..3 {
        assert_eq!(
            c.get(s.url("/api/tasks/0123456789abcdef01234567"))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
    }
    for _ in 0..2 {
        assert_eq!(
            c.get(s.url("/api/tasks?limit=2"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(c.get(s.url("/nowhere")).send().await.unwrap().status(), 404);

    let text = common::metrics_text(&c, &s).await;
    let scrape = parse_prometheus(&text).expect("valid Prometheus text");
    let req = |route, method, status| {
        counter(
            &scrape,
            "http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(req("/api/tasks", "POST", "201"), 5.0);
    assert_eq!(req("/api/tasks/{id}", "GET", "200"), 7.0);
    assert_eq!(req("/api/tasks/{id}", "GET", "404"), 3.0);
    assert_eq!(req("/api/tasks", "GET", "200"), 2.0);
    assert_eq!(req("unmatched", "GET", "404"), 1.0);
    assert_eq!(
        counter(&scrape, "http_requests_total", &[]),
        18.0,
        "nothing else was counted"
    );
    assert_eq!(
        counter(&scrape, "http_request_duration_seconds_count", &[]),
        18.0
    );
    assert_eq!(
        counter(&scrape, "wasm_instantiate_duration_seconds_count", &[]),
        18.0,
        "one fresh instance per request"
    );
    assert_eq!(counter(&scrape, "http_requests_in_flight", &[]), 0.0);
    assert_eq!(counter(&scrape, "wasm_guest_traps_total", &[]), 0.0);
    let op = |op: &str, collection: &str| {
        counter(
            &scrape,
            "store_operation_duration_seconds_count",
            &[("op", op), ("collection", collection)],
        )
    };
    if common::spin_mode() {
        // The Spin build reaches data through key-value (label `default`): a create
        // checks the key then sets it; a GET one reads its key; a list lists the keys
        // and reads the collection's 5 documents. `documents` is not used at all.
        assert_eq!(op("kv_exists", "default"), 5.0);
        assert_eq!(op("kv_set", "default"), 5.0);
        assert_eq!(op("kv_get", "default"), 7.0 + 3.0 + 2.0 * 5.0);
        assert_eq!(op("kv_get_keys", "default"), 2.0);
        assert_eq!(op("insert_one", "tasks"), 0.0);
    } else {
        // Creates: insert; GETs: find_one; lists: find.
        assert_eq!(op("insert_one", "tasks"), 5.0);
        assert_eq!(op("find_one", "tasks"), 10.0);
        assert_eq!(op("find", "tasks"), 2.0);
    }
    assert_eq!(
        counter(&scrape, "build_info", &[("wasmtime", "48.0.8")]),
        1.0
    );
    for name in [
        "http_request_duration_seconds",
        "store_operation_duration_seconds",
        "wasm_instantiate_duration_seconds",
    ] {
        assert_eq!(
            scrape.families[name].family_type,
            PrometheusType::Histogram,
            "{name} is a histogram"
        );
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    let r = c.get(s.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(s.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"ready": true, "component": true, "store": true, "store_error": null, "draining": false})
    );
    // The admin port does not serve the API, and the API port not the admin routes.
    assert_eq!(
        c.get(s.admin_url("/api/tasks"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(c.get(s.url("/metrics")).send().await.unwrap().status(), 404);
}

/// Series in a scrape: every sample line (comments and blank lines are not series).
fn series(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

#[tokio::test]
async fn series_stay_bounded_across_a_thousand_task_ids() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    let id = |i: usize| format!("{i:024x}");
    // Every route, method and status these requests produce, once.
    let round = |ids: std::ops::Range<usize>| {
        let (c, s) = (&c, &s);
        async move {
            for chunk in ids.collect::<Vec<_>>().chunks(50) {
                let sent = chunk.iter().map(|&i| async move {
                    let url = s.url(&format!("/api/tasks/{}", id(i)));
                    let r = match i % 3 {
                        0 => c.get(url).send().await,
                        1 => c.delete(url).send().await,
                        _ => {
                            c.patch(url)
                                .header("content-type", "application/merge-patch+json")
                                .body(r#"{"title":"x"}"#)
                                .send()
                                .await
                        }
                    };
                    assert_eq!(r.unwrap().status(), 404);
                });
                futures::future::join_all(sent).await;
            }
        }
    };
    round(0..30).await;
    let before = common::metrics_text(&c, &s).await;
    round(30..1000).await;
    let after = common::metrics_text(&c, &s).await;
    assert_eq!(
        series(&after),
        series(&before),
        "970 more distinct ids added series: ids leak into labels"
    );
    for i in [31, 500, 999] {
        assert!(!after.contains(&id(i)), "an id appears in /metrics");
    }
    let scrape = parse_prometheus(&after).expect("valid Prometheus text");
    assert_eq!(
        counter(
            &scrape,
            "http_requests_total",
            &[("route", "/api/tasks/{id}")]
        ),
        1000.0
    );
}

#[tokio::test]
async fn process_and_readiness_metrics() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    let scrape = parse_prometheus(&common::metrics_text(&c, &s).await).expect("valid");
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(counter(&scrape, name, &[]) > 0.0, "{name} missing or zero");
    }
    assert!(scrape.families.contains_key("process_cpu_seconds_total"));
    assert_eq!(counter(&scrape, "host_ready", &[]), 1.0);
    let pool_max = counter(&scrape, "mongodb_pool_max_connections", &[]);
    if common::store_is_mongodb() {
        assert!(pool_max > 0.0, "the pool's maximum is exported");
    } else {
        assert_eq!(pool_max, 0.0, "no pool on the embedded store");
    }
}

/// Every counter whose label values are known starts with a series at 0 for each,
/// before any traffic: a series born at its first increment has no increase(), so
/// an alert on the first burst would never fire. Each label list is owned by the
/// module that uses it and started there.
#[tokio::test]
async fn known_series_exist_at_zero_from_the_start() {
    let s = Server::start(Opts::new(Guest::App));
    let c = client();
    let text = common::metrics_text(&c, &s).await;
    let mut want = Vec::new();
    for reason in [
        "overloaded",
        "memory_budget",
        "uri_too_long",
        "headers_too_large",
        "body_too_large",
        "body_read",
        "body_timeout",
    ] {
        want.push(format!(
            "http_requests_rejected_total{{reason=\"{reason}\"}} 0"
        ));
    }
    for kind in ["deadline", "memory", "trap", "bad_response"] {
        want.push(format!("wasm_guest_traps_total{{kind=\"{kind}\"}} 0"));
    }
    for reason in ["grant", "firewall"] {
        want.push(format!(
            "data_requests_denied_total{{reason=\"{reason}\"}} 0"
        ));
    }
    for op in [
        "insert_one",
        "find_one",
        "find",
        "count",
        "update_one",
        "delete_one",
    ] {
        for kind in ["unavailable", "internal"] {
            want.push(format!(
                "store_errors_total{{kind=\"{kind}\",op=\"{op}\"}} 0"
            ));
        }
    }
    if common::store_is_mongodb() {
        for reason in ["timeout", "connection_error"] {
            want.push(format!(
                "mongodb_pool_checkout_failures_total{{reason=\"{reason}\"}} 0"
            ));
        }
    }
    let missing: Vec<_> = want
        .iter()
        .filter(|w| !text.lines().any(|l| l == w.as_str()))
        .collect();
    assert!(missing.is_empty(), "not started at 0: {missing:?}");
}
