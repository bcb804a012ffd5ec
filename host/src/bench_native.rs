//! The benchmark's baseline (`--bench-native-route`, hidden, off by default): the
//! same lookups as the component's `GET /api/tasks/{id}` and `GET /api/tasks?limit=20`,
//! done natively on the same store behind the same middleware, so the ratio
//! between the two in `bench/run.sh` measures what the sandbox costs. Not part of
//! the production API; kept out of `ingress` so that module reads as production
//! code only.

use crate::ingress::{AppState, problem};
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use std::time::Instant;

/// Adds the two baseline routes to the API router.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route(BENCH_NATIVE_ROUTE, axum::routing::get(native_get_task))
        .route(
            BENCH_NATIVE_LIST_ROUTE,
            axum::routing::get(native_list_tasks),
        )
}

pub const BENCH_NATIVE_ROUTE: &str = "/bench/native/tasks/{id}";
pub const BENCH_NATIVE_LIST_ROUTE: &str = "/bench/native/tasks";

fn native_task_json(doc: &bson::Document) -> serde_json::Value {
    let date = |k: &str| {
        doc.get_datetime(k)
            .ok()
            .and_then(|d| d.try_to_rfc3339_string().ok())
    };
    serde_json::json!({
        "id": doc.get_object_id("_id").ok().map(|o| o.to_hex()),
        "title": doc.get_str("title").ok(),
        "description": doc.get_str("description").ok(),
        "status": doc.get_str("status").ok(),
        "priority": doc.get_i32("priority").ok(),
        "tags": doc.get_array("tags").ok().map(|a| a.iter().filter_map(|t| t.as_str()).collect::<Vec<_>>()),
        "due": date("due"),
        "created": date("created"),
        "updated": date("updated"),
        "version": doc.get_i64("version").unwrap_or_default(),
    })
}

fn bench_query(raw: bson::Document) -> Option<crate::data::Query> {
    let filter = doc_query::Filter::parse(&raw, &doc_query::Limits::default()).ok()?;
    Some(crate::data::Query { filter })
}

fn record_native(s: &AppState, route: &str, start: Instant, resp: Response) -> Response {
    s.metrics
        .http_requests
        .with_label_values(&[route, "GET", resp.status().as_str()])
        .inc();
    s.metrics
        .http_duration
        .with_label_values(&[route, "GET"])
        .observe(start.elapsed().as_secs_f64());
    resp
}

async fn native_get_task(
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let start = Instant::now();
    let resp = async {
        let store = s.bench_store.as_ref()?;
        let oid = bson::oid::ObjectId::parse_str(&id).ok()?;
        let found = store
            .find_one("tasks", &bench_query(bson::doc! {"_id": oid})?)
            .await
            .ok()??;
        let doc = bson::Document::try_from(found).ok()?;
        let version = doc.get_i64("version").unwrap_or_default();
        Some(
            (
                [
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                    (header::ETAG, format!("\"v{version}\"")),
                ],
                native_task_json(&doc).to_string(),
            )
                .into_response(),
        )
    }
    .await
    .unwrap_or_else(|| {
        problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such resource",
            "no such task",
        )
    });
    record_native(&s, BENCH_NATIVE_ROUTE, start, resp)
}

async fn native_list_tasks(State(s): State<AppState>) -> Response {
    use crate::data::FindSpec;
    let start = Instant::now();
    let resp = async {
        let store = s.bench_store.as_ref()?;
        let sort = bson::doc! {"created": 1, "_id": 1};
        let spec = FindSpec {
            sort: Some(doc_query::Sort::parse(&sort).ok()?),
            limit: 21,
            ..FindSpec::default()
        };
        let mut docs = store
            .find("tasks", &bench_query(bson::doc! {})?, &spec)
            .await
            .ok()?;
        let more = docs.len() > 20;
        docs.truncate(20);
        let items: Vec<serde_json::Value> = docs
            .into_iter()
            .filter_map(|d| bson::Document::try_from(d).ok())
            .map(|d| native_task_json(&d))
            .collect();
        let body = serde_json::json!({"items": items, "next_cursor": more.then_some("native")});
        Some(
            (
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response(),
        )
    }
    .await
    .unwrap_or_else(|| {
        problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "native list failed",
        )
    });
    record_native(&s, BENCH_NATIVE_LIST_ROUTE, start, resp)
}
