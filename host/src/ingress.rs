//! The public API listener: every request is checked against the host's limits and
//! then handed to a fresh component instance. Errors the host itself produces are
//! RFC 9457 problem documents, like the component's.

use crate::engine::{GuestError, Runtime};
use crate::telemetry::Metrics;
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
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The component's route templates, used as the `route` metric label so label
/// cardinality stays bounded whatever paths clients send.
pub const ROUTES: [&str; 3] = ["/api/tasks", "/api/tasks/{id}", "/api/openapi.json"];

#[derive(Debug, Clone, Copy)]
pub struct IngressLimits {
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
}

#[derive(Clone)]
pub struct AppState {
    pub runtime: Arc<Runtime>,
    pub metrics: Metrics,
    pub limits: IngressLimits,
    /// Shared by every worker: the global concurrency limit.
    pub permits: Arc<Semaphore>,
}

/// The API router. Tests drive it without a socket (`tower::ServiceExt::oneshot`).
pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        router = router.route(route, any(forward));
    }
    router
        .fallback(forward)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                // Honour an incoming x-request-id, else mint one; echo it back.
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        )
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
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > s.limits.max_header_bytes {
        s.metrics
            .rejected
            .with_label_values(&["headers_too_large"])
            .inc();
        return problem(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "Request headers too large",
            &format!(
                "request headers must total at most {} bytes",
                s.limits.max_header_bytes
            ),
        );
    }
    // Refuse rather than queue: a bounded number of instances exist at once, and a
    // client told to retry is better than one waiting on an unbounded queue.
    let Ok(_permit) = s.permits.clone().try_acquire_owned() else {
        s.metrics.rejected.with_label_values(&["overloaded"]).inc();
        let mut r = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Server overloaded",
            "too many requests in progress; retry shortly",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let (mut parts, body) = req.into_parts();
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            &format!(
                "request bodies must be at most {} bytes",
                s.limits.max_body_bytes
            ),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > s.limits.max_body_bytes as u64) {
        s.metrics
            .rejected
            .with_label_values(&["body_too_large"])
            .inc();
        return too_large();
    }
    let body: Bytes = match axum::body::to_bytes(body, s.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            let length_limit = std::error::Error::source(&e)
                .is_some_and(|src| src.is::<http_body_util::LengthLimitError>());
            if length_limit {
                s.metrics
                    .rejected
                    .with_label_values(&["body_too_large"])
                    .inc();
                return too_large();
            }
            s.metrics.rejected.with_label_values(&["body_read"]).inc();
            return problem(
                StatusCode::BAD_REQUEST,
                "body-read",
                "Could not read the request body",
                "the request body ended early or was malformed",
            );
        }
    };
    // wasi:http wants an authority; HTTP/1.0 clients may not send Host.
    if parts.uri.authority().is_none() && !parts.headers.contains_key(header::HOST) {
        parts
            .headers
            .insert(header::HOST, HeaderValue::from_static("localhost"));
    }
    let req = http::Request::from_parts(parts, body);
    match s
        .runtime
        .handle(req)
        .instrument(tracing::Span::current())
        .await
    {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            // The body is complete; hyper sets Content-Length from it.
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.remove(header::TRANSFER_ENCODING);
            Response::from_parts(parts, Body::from(body))
        }
        Err(e) => guest_failure(s, e),
    }
}

fn guest_failure(s: &AppState, e: GuestError) -> Response {
    s.metrics.guest_traps.with_label_values(&[e.kind()]).inc();
    tracing::warn!(error = %e, kind = e.kind(), "component failed");
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
        GuestError::NoResponse | GuestError::BadResponse(_) => problem(
            StatusCode::BAD_GATEWAY,
            "handler-bad-response",
            "The request handler gave no valid response",
            "the handler ended without a valid response; see the host's logs for this request id",
        ),
    }
}
