//! The admin listener, on its own port so it can be kept off the public network:
//! liveness, readiness and Prometheus metrics.

use crate::data::Store;
use crate::telemetry::Metrics;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    /// Set once the component is compiled and linked.
    pub component_ready: Arc<AtomicBool>,
    /// Set when shutdown begins, so load balancers stop sending traffic.
    pub shutting_down: Arc<AtomicBool>,
}

pub fn admin_app(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// What /readyz reports; also exported as `host_ready` at each scrape, so an
/// alert sees the same answer the kubelet does.
struct Readiness {
    component: bool,
    /// Why the store is not ready; None when it is.
    store_error: Option<String>,
    draining: bool,
}

impl Readiness {
    async fn check(s: &AdminState) -> Self {
        Self {
            component: s.component_ready.load(Ordering::Relaxed),
            draining: s.shutting_down.load(Ordering::Relaxed),
            store_error: match tokio::time::timeout(Duration::from_secs(2), s.store.ping()).await {
                Ok(Ok(())) => s.store.not_ready(),
                // The kind only: the detail may quote the driver (addresses).
                Ok(Err(e)) => Some(e.kind().to_owned()),
                Err(_) => Some("no answer within 2 s".into()),
            },
        }
    }

    fn ready(&self) -> bool {
        self.component && self.store_error.is_none() && !self.draining
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let r = Readiness::check(&s).await;
    let ready = r.ready();
    let body = serde_json::json!({"ready": ready, "component": r.component, "store": r.store_error.is_none(),
        "store_error": r.store_error, "draining": r.draining});
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(s): State<AdminState>) -> Response {
    s.metrics
        .ready
        .set(i64::from(Readiness::check(&s).await.ready()));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}
