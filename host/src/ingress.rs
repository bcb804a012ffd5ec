//! The public API listener: every request is checked against the host's limits and
//! then handed to a fresh component instance. Errors the host itself produces are
//! RFC 9457 problem documents, like the component's.

use crate::budget::{Charge, ChargedBody, MemoryBudget, ResponseClock};
use crate::engine::{GuestError, InstanceSlots, Runtime};
use crate::telemetry::{Metrics, bounded};
use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode, header};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::LatencyUnit;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The component's route templates, used as the `route` metric label so label
/// cardinality stays bounded whatever paths clients send.
pub const ROUTES: [&str; 3] = ["/api/tasks", "/api/tasks/{id}", "/api/openapi.json"];

#[derive(Debug, Clone, Copy)]
pub struct IngressLimits {
    pub max_body_bytes: usize,
    /// Request target plus headers.
    pub max_header_bytes: usize,
    pub max_uri_bytes: usize,
    /// The whole body must arrive within this, once the head has.
    pub body_read_timeout: std::time::Duration,
    /// The whole response must be taken by the client within this, once its
    /// first bytes are written; progress does not extend it.
    pub response_write_deadline: std::time::Duration,
}

#[derive(Clone)]
pub struct AppState {
    pub runtime: Arc<Runtime>,
    /// This worker's share of the instances (`Runtime::instance_slots`): each
    /// worker's router has its own.
    pub slots: InstanceSlots,
    pub metrics: Metrics,
    pub limits: IngressLimits,
    /// Shared by every worker: the global concurrency limit.
    pub permits: Arc<Semaphore>,
    /// Shared by every worker: the bytes held for requests (`budget.rs`).
    pub budget: MemoryBudget,
    /// Set only by `--bench-native-route`: the store, for the benchmark's native
    /// baseline handler. `None` in normal operation.
    pub bench_store: Option<Arc<dyn crate::data::Store>>,
}

/// The API router. Tests drive it without a socket (`tower::ServiceExt::oneshot`).
pub fn app(state: AppState) -> Router {
    app_with(state, std::convert::identity)
}

/// [`app`] with more routes behind the same middleware: `main` adds the
/// benchmark's native baseline this way, so this module never depends on it.
pub fn app_with(
    state: AppState,
    extra: impl FnOnce(Router<AppState>) -> Router<AppState>,
) -> Router {
    for reason in Refusal::ALL {
        // Counters start at 0 for each known label, so that rate() sees the first
        // increment and an alert fires on the first burst.
        state.metrics.rejected.with_label_values(&[reason.label()]);
    }
    let mut router = Router::new();
    for route in ROUTES {
        router = router.route(route, any(forward));
    }
    extra(router)
        .fallback(forward)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                // A client's x-request-id is kept only if it is a short token: it is
                // echoed in the response and written on every log line.
                .map_request(drop_unusable_request_id)
                // Honour an incoming x-request-id, else mint one; echo it back.
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %bounded(req.uri().path(), LOGGED_PATH_MAX))
                })
                // One access-log line per request, carrying the span's request id.
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(LatencyUnit::Micros))
                // 5xx answers are logged at WARN, not tower-http's default ERROR:
                // clients can cause 503 (overload) and 504 (a slow handler) at will,
                // and ERROR is what pages someone. Store failures log ERROR where
                // they happen.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN).latency_unit(LatencyUnit::Micros)))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        )
}

/// Longest client-supplied request id kept; longer ones are replaced.
pub const REQUEST_ID_MAX: usize = 128;
/// Longest path written to a log line.
const LOGGED_PATH_MAX: usize = 256;

fn drop_unusable_request_id(mut req: Request) -> Request {
    let usable = req.headers().get(REQUEST_ID).is_none_or(|v| {
        !v.is_empty()
            && v.len() <= REQUEST_ID_MAX
            && v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    });
    if !usable {
        req.headers_mut().remove(REQUEST_ID);
    }
    req
}

/// An RFC 9457 problem produced by the host (not the component).
pub fn problem(status: StatusCode, slug: &str, title: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": format!("/problems/{slug}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Decrements the in-flight gauge however the handler exits.
struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn forward(
    State(s): State<AppState>,
    matched: Option<MatchedPath>,
    req: Request,
) -> Response {
    let route = matched
        .as_ref()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let method = method_label(req.method());
    let start = Instant::now();
    s.metrics.in_flight.inc();
    let _guard = InFlight(s.metrics.in_flight.clone());
    let resp = handle(&s, req).await;
    s.metrics
        .http_requests
        .with_label_values(&[route.as_str(), method, resp.status().as_str()])
        .inc();
    s.metrics
        .http_duration
        .with_label_values(&[route.as_str(), method])
        .observe(start.elapsed().as_secs_f64());
    resp
}

async fn handle(s: &AppState, req: Request) -> Response {
    if let Some(refused) = check_head(s, &req) {
        return refused;
    }
    let (mut parts, body) = req.into_parts();
    // The connection's response clock (server.rs); absent when the router is
    // driven without a connection (tests).
    let clock = parts.extensions.get::<ResponseClock>().cloned();
    let mut body_charge = s.budget.empty();
    let body = match read_limited_body(s, &parts.headers, body, &mut body_charge).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    // The permit is taken only now: a client dribbling its body holds a connection
    // (bounded by --max-connections and the body deadline), never an instance slot.
    // Refuse rather than queue: a client told to retry is better than one waiting
    // on an unbounded queue.
    let Ok(_permit) = s.permits.clone().try_acquire_owned() else {
        return retry_later(
            s,
            Refusal::Overloaded,
            "too many requests in progress; retry shortly",
        );
    };
    // wasi:http wants an authority; HTTP/1.0 clients may not send Host.
    if parts.uri.authority().is_none() && !parts.headers.contains_key(header::HOST) {
        parts
            .headers
            .insert(header::HOST, HeaderValue::from_static("localhost"));
    }
    let req = http::Request::from_parts(parts, body);
    let outcome = s
        .runtime
        .handle(&s.slots, req)
        .instrument(tracing::Span::current())
        .await;
    // The request body is in the instance's memory now, or no longer needed.
    drop(body_charge);
    match outcome {
        Ok((resp, charge)) => {
            let (mut parts, body) = resp.into_parts();
            // The body is complete; hyper sets Content-Length from its size hint.
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.remove(header::TRANSFER_ENCODING);
            let clock = clock.map(|c| (c, s.limits.response_write_deadline));
            Response::from_parts(parts, Body::new(ChargedBody::new(body, charge, clock)))
        }
        Err(e) => guest_failure(s, e),
    }
}

/// 503 for work refused because the memory budget is used up: the client may
/// retry once the held responses have been taken.
fn over_budget(s: &AppState) -> Response {
    retry_later(
        s,
        Refusal::MemoryBudget,
        "the server is holding too much data for other clients; retry shortly",
    )
}

/// 503 `overloaded` with `Retry-After: 1`, counted under `reason`.
fn retry_later(s: &AppState, reason: Refusal, detail: &str) -> Response {
    let mut r = refuse(
        s,
        reason,
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "Server overloaded",
        detail,
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The request head against the limits: the target alone (414), then target and
/// headers together (431). hyper's own buffer cap sits a little above these, so
/// what reaches here is already bounded.
fn check_head(s: &AppState, req: &Request) -> Option<Response> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    if target > s.limits.max_uri_bytes {
        return Some(refuse(
            s,
            Refusal::UriTooLong,
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            "Request target too long",
            &format!(
                "the path and query must total at most {} bytes",
                s.limits.max_uri_bytes
            ),
        ));
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if target + header_bytes > s.limits.max_header_bytes {
        return Some(refuse(
            s,
            Refusal::HeadersTooLarge,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "Request headers too large",
            &format!(
                "the request target and headers must total at most {} bytes",
                s.limits.max_header_bytes
            ),
        ));
    }
    None
}

/// Why the host refused a request: the `reason` label of
/// `http_requests_rejected_total`. This module owns the list; [`app_with`] starts
/// each series at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Overloaded,
    MemoryBudget,
    UriTooLong,
    HeadersTooLarge,
    BodyTooLarge,
    BodyRead,
    BodyTimeout,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::Overloaded,
        Refusal::UriTooLong,
        Refusal::HeadersTooLarge,
        Refusal::BodyTooLarge,
        Refusal::BodyRead,
        Refusal::BodyTimeout,
        Refusal::MemoryBudget,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::Overloaded => "overloaded",
            Refusal::MemoryBudget => "memory_budget",
            Refusal::UriTooLong => "uri_too_long",
            Refusal::HeadersTooLarge => "headers_too_large",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::BodyRead => "body_read",
            Refusal::BodyTimeout => "body_timeout",
        }
    }
}

/// A request refused by the host: counted by reason, answered as a problem.
fn refuse(
    s: &AppState,
    reason: Refusal,
    status: StatusCode,
    slug: &str,
    title: &str,
    detail: &str,
) -> Response {
    s.metrics
        .rejected
        .with_label_values(&[reason.label()])
        .inc();
    problem(status, slug, title, detail)
}

fn closing(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The whole body, within the size limit and the body deadline; or the response
/// that refuses it.
async fn read_limited_body(
    s: &AppState,
    headers: &http::HeaderMap,
    body: Body,
    charge: &mut Charge,
) -> Result<Bytes, Response> {
    let limit = s.limits.max_body_bytes;
    let too_large = || {
        closing(refuse(
            s,
            Refusal::BodyTooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            &format!("request bodies must be at most {limit} bytes"),
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A client that sent `Expect: 100-continue` waits for our go-ahead before
    // uploading: answer 413 now, and hyper never sends `100 Continue` because the
    // body is never polled.
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if declared.is_some_and(|n| n > limit as u64) && expects_continue {
        return Err(too_large());
    }
    // Far too large to be worth draining: refuse at once.
    if declared.is_some_and(|n| n > (limit + DRAIN_MAX_BYTES) as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(s.limits.body_read_timeout, read_body(body, limit, charge)).await {
        Ok(BodyRead::Complete(b)) => Ok(b),
        Ok(BodyRead::OverBudget) => Err(closing(over_budget(s))),
        Ok(BodyRead::TooLarge) => Err(too_large()),
        Ok(BodyRead::Broken) => Err(refuse(
            s,
            Refusal::BodyRead,
            StatusCode::BAD_REQUEST,
            "body-read",
            "Could not read the request body",
            "the request body ended early or was malformed",
        )),
        Err(_) => Err(closing(refuse(
            s,
            Refusal::BodyTimeout,
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            "Request body too slow",
            &format!(
                "the request body must arrive within {} ms",
                s.limits.body_read_timeout.as_millis()
            ),
        ))),
    }
}

enum BodyRead {
    Complete(Bytes),
    TooLarge,
    Broken,
    OverBudget,
}

/// Most a client may send past the limit before we stop reading and close.
const DRAIN_MAX_BYTES: usize = 8 * 1024 * 1024;
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Read the body up to `limit`. Past the limit the rest is read and discarded (a
/// bounded amount, for a bounded time) before we answer: a client still uploading
/// when we answer and close would see a broken pipe instead of our 413.
async fn read_body(body: Body, limit: usize, charge: &mut Charge) -> BodyRead {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut over = false;
    let mut drained = 0usize;
    let drain_until = Instant::now() + DRAIN_MAX_TIME;
    loop {
        let frame = if over {
            match tokio::time::timeout_at(drain_until.into(), body.frame()).await {
                Ok(f) => f,
                Err(_) => return BodyRead::TooLarge,
            }
        } else {
            body.frame().await
        };
        let Some(frame) = frame else { break };
        let Ok(frame) = frame else {
            return if over {
                BodyRead::TooLarge
            } else {
                BodyRead::Broken
            };
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if over {
            drained += data.len();
            if drained > DRAIN_MAX_BYTES {
                return BodyRead::TooLarge;
            }
        } else if buf.len() + data.len() > limit {
            over = true;
            buf = bytes::BytesMut::new();
            charge.shrink(charge.bytes());
        } else {
            let before = buf.capacity();
            buf.extend_from_slice(&data);
            if !charge.try_grow(buf.capacity().saturating_sub(before)) {
                return BodyRead::OverBudget;
            }
        }
    }
    if over {
        BodyRead::TooLarge
    } else {
        BodyRead::Complete(buf.freeze())
    }
}

fn guest_failure(s: &AppState, e: GuestError) -> Response {
    if !matches!(e, GuestError::OverBudget | GuestError::NoInstance) {
        // A refusal is not the component's failure: it is counted as a refusal
        // (`memory_budget`, `overloaded`), not as a trap.
        s.metrics.guest_traps.with_label_values(&[e.kind()]).inc();
        tracing::warn!(error = %e, kind = e.kind(), "component failed");
    }
    match e {
        GuestError::Deadline(d) => problem(
            StatusCode::GATEWAY_TIMEOUT,
            "handler-timeout",
            "The request handler ran out of time",
            &format!("the handler did not finish within {} ms", d.as_millis()),
        ),
        GuestError::Memory => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "handler-memory-limit",
            "The request handler ran out of memory",
            "the handler exceeded its memory limit",
        ),
        GuestError::Trap(_) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "handler-failed",
            "The request handler failed",
            "the handler stopped with an error; see the host's logs for this request id",
        ),
        GuestError::OverBudget => over_budget(s),
        GuestError::NoInstance => retry_later(
            s,
            Refusal::Overloaded,
            "every instance is busy; retry shortly",
        ),
        GuestError::NoResponse | GuestError::BadResponse(_) => problem(
            StatusCode::BAD_GATEWAY,
            "handler-bad-response",
            "The request handler gave no valid response",
            "the handler ended without a valid response; see the host's logs for this request id",
        ),
    }
}

#[cfg(test)]
mod tests {
    /// The routes the host labels in its metrics are exactly the paths the
    /// component's OpenAPI document declares.
    #[test]
    fn the_routes_are_the_documented_paths() {
        let openapi: serde_json::Value =
            serde_json::from_str(include_str!("../../app-wasm/openapi.json")).expect("JSON");
        let documented: std::collections::BTreeSet<&str> = openapi["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            ROUTES
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>(),
            documented
        );
    }

    use super::*;
    use crate::engine;
    use crate::engine::tests::test_budget;
    use std::sync::OnceLock;
    use tower::ServiceExt;

    /// One runtime for the module: compiling the component takes seconds in debug.
    fn runtime() -> (Arc<Runtime>, Metrics) {
        static RT: OnceLock<(Arc<Runtime>, Metrics, tempfile::TempDir)> = OnceLock::new();
        let (rt, m, _) = RT.get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let metrics = Metrics::new().expect("metrics");
            let limits = engine::tests::test_limits();
            let e = engine::build_engine(&limits).expect("engine");
            let c = engine::load_component(&e, None, None, engine::NativeCode::Refused)
                .expect("component");
            let data = engine::tests::test_data(dir.path(), &metrics);
            let rt = Runtime::new(
                e,
                &c,
                limits,
                data,
                None,
                metrics.clone(),
                test_budget(&metrics),
            )
            .expect("runtime");
            (rt, metrics, dir)
        });
        (rt.clone(), m.clone())
    }

    fn test_app(permits: usize) -> Router {
        let (runtime, metrics) = runtime();
        let budget = test_budget(&metrics);
        app(AppState {
            slots: runtime.instance_slots(1).remove(0),
            runtime,
            metrics,
            limits: IngressLimits {
                max_body_bytes: 1024,
                max_header_bytes: 2048,
                max_uri_bytes: 512,
                body_read_timeout: std::time::Duration::from_millis(300),
                response_write_deadline: std::time::Duration::from_secs(30),
            },
            permits: Arc::new(Semaphore::new(permits)),
            budget,
            bench_store: None,
        })
    }

    async fn send(
        app: Router,
        req: http::Request<Body>,
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let resp = app.oneshot(req).await.expect("infallible");
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }

    #[tokio::test]
    async fn a_request_reaches_the_component_and_gets_an_id() {
        let req = http::Request::get("/api/tasks?limit=1")
            .body(Body::empty())
            .expect("request");
        let (status, headers, body) = send(test_app(4), req).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers.contains_key(REQUEST_ID));
        assert_eq!(body["next_cursor"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn oversized_body_is_413_and_closes_the_connection() {
        let req = http::Request::post("/api/tasks")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(vec![b' '; 4096]))
            .expect("request");
        let (status, headers, body) = send(test_app(4), req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(headers[header::CONNECTION], "close");
        assert_eq!(body["type"], "/problems/body-too-large");
    }

    #[tokio::test]
    async fn hopelessly_large_declared_body_is_refused_without_reading() {
        // The body is empty: only the declared length can cause the 413.
        let huge = (1024 + DRAIN_MAX_BYTES + 1).to_string();
        let req = http::Request::post("/api/tasks")
            .header(header::CONTENT_LENGTH, huge)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::empty())
            .expect("request");
        let (status, _, body) = send(test_app(4), req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["type"], "/problems/body-too-large");
    }

    #[tokio::test]
    async fn oversized_headers_are_431() {
        let req = http::Request::get("/api/tasks")
            .header("x-pad", "p".repeat(4096))
            .body(Body::empty())
            .expect("request");
        let (status, _, body) = send(test_app(4), req).await;
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(body["type"], "/problems/headers-too-large");
    }

    #[tokio::test]
    async fn no_permits_means_503_with_retry_after() {
        let req = http::Request::get("/api/tasks")
            .body(Body::empty())
            .expect("request");
        let (status, headers, body) = send(test_app(0), req).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(body["type"], "/problems/overloaded");
    }

    #[tokio::test]
    async fn incoming_request_id_is_echoed() {
        let req = http::Request::get("/api/openapi.json")
            .header(REQUEST_ID, "abc-123")
            .body(Body::empty())
            .expect("request");
        let (status, headers, _) = send(test_app(4), req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[REQUEST_ID], "abc-123");
    }
}
