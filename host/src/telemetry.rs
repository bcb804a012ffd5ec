//! Logs and metrics. One Prometheus registry per process, shared by every worker.

use clap::ValueEnum;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// How log lines are written: text for a terminal, JSON for a container's collector.
/// Defined here, not in config, because config reads the engine's limits and the
/// engine records metrics: telemetry must import nothing of the crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Install the global tracing subscriber. `RUST_LOG` overrides the default level.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` so tests that build several apps in one process don't panic.
    let _ = match format {
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(use_colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR"),
            ))
            .try_init(),
    };
}

/// Colour only for a person at a terminal: escapes in a file or a pipe are noise to
/// every tool that reads it. `NO_COLOR` (any non-empty value) turns it off, as
/// <https://no-color.org> asks.
fn use_colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// At most `max` bytes of `s`, cut on a character boundary, with a marker when cut:
/// what a client or a component sends is bounded before it reaches a log line.
pub fn bounded(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...({} bytes)", &s[..end], s.len()).into()
}

/// Longest text from a component (an error reason, a name) written to a log line.
pub const LOGGED_GUEST_TEXT_MAX: usize = 256;

/// Every metric the host exports. Cloning is one `Arc` increment: the state that
/// holds it is cloned for every request.
#[derive(Clone)]
pub struct Metrics(std::sync::Arc<MetricsInner>);

impl std::ops::Deref for Metrics {
    type Target = MetricsInner;
    fn deref(&self) -> &MetricsInner {
        &self.0
    }
}

pub struct MetricsInner {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub in_flight: IntGauge,
    pub rejected: IntCounterVec,
    pub instantiate: prometheus::Histogram,
    pub guest_traps: IntCounterVec,
    pub store_ops: HistogramVec,
    pub store_errors: IntCounterVec,
    pub data_denied: IntCounterVec,
    pub mongo_pool: IntGaugeVec,
    pub mongo_pool_max: IntGauge,
    pub mongo_checkout: prometheus::Histogram,
    pub mongo_checkout_failures: IntCounterVec,
    pub mongo_commands: HistogramVec,
    pub ready: IntGauge,
    pub connections: IntGaugeVec,
    pub connections_refused: IntCounterVec,
    pub connections_cut: IntCounterVec,
    pub memory_budget_used: IntGauge,
    pub memory_budget_limit: IntGauge,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "API requests by route template, method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "API request latency, from routing to response head.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        let in_flight =
            IntGauge::new("http_requests_in_flight", "API requests being handled now.")?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "http_requests_rejected_total",
                "API requests refused by the host before the component ran.",
            ),
            &["reason"],
        )?;
        let instantiate = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "wasm_instantiate_duration_seconds",
                "Time to create a fresh component instance.",
            )
            .buckets(vec![
                0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.01,
            ]),
        )?;
        let guest_traps = IntCounterVec::new(
            Opts::new(
                "wasm_guest_traps_total",
                "Requests whose component instance failed, by kind.",
            ),
            &["kind"],
        )?;
        let store_ops = HistogramVec::new(
            HistogramOpts::new(
                "store_operation_duration_seconds",
                "Store operation latency by operation and collection.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["op", "collection"],
        )?;
        let store_errors = IntCounterVec::new(
            Opts::new(
                "store_errors_total",
                "Store operations that failed, by operation and error kind.",
            ),
            &["op", "kind"],
        )?;
        let data_denied = IntCounterVec::new(
            Opts::new(
                "data_requests_denied_total",
                "Guest data calls refused by the host (grant or firewall).",
            ),
            &["reason"],
        )?;
        let mongo_pool = IntGaugeVec::new(
            Opts::new(
                "mongodb_pool_connections",
                "MongoDB pool connections: open, and in use (checked out); available = open - in_use.",
            ),
            &["state"],
        )?;
        let mongo_pool_max = IntGauge::new(
            "mongodb_pool_max_connections",
            "The MongoDB pool's configured maximum (--mongodb-max-pool-size); 0 on the embedded store.",
        )?;
        let mongo_checkout = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "mongodb_pool_checkout_duration_seconds",
                "Time a store operation waited for a pooled MongoDB connection.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let mongo_checkout_failures = IntCounterVec::new(
            Opts::new(
                "mongodb_pool_checkout_failures_total",
                "Connection checkouts that failed, by reason (timeout or connection_error).",
            ),
            &["reason"],
        )?;
        let ready = IntGauge::new(
            "host_ready",
            "1 when /readyz would answer 200 (component loaded, store reachable, not draining), else 0; evaluated at scrape time.",
        )?;
        let mongo_commands = HistogramVec::new(
            HistogramOpts::new(
                "mongodb_command_duration_seconds",
                "MongoDB command latency by command and outcome.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["command", "outcome"],
        )?;
        let connections = IntGaugeVec::new(
            Opts::new(
                "http_connections_open",
                "Open client connections, by listener (api or admin).",
            ),
            &["listener"],
        )?;
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "http_connections_refused_total",
                "Connections closed at accept because the listener's connection cap was reached.",
            ),
            &["listener"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "Build information; the value is always 1."),
            &["version", "wasmtime", "rustc"],
        )?;
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                "48.0.8",
                env!("HOST_RUSTC_VERSION"),
            ])
            .set(1);
        let connections_cut = IntCounterVec::new(
            Opts::new(
                "http_connections_cut_total",
                "Connections the host closed because a response was not taken in time (write_deadline).",
            ),
            &["reason"],
        )?;
        let memory_budget_used = IntGauge::new(
            "host_memory_budget_used_bytes",
            "Bytes held on behalf of requests (bodies, instance memory, responses not yet taken), charged to --memory-budget-mib.",
        )?;
        let memory_budget_limit = IntGauge::new(
            "host_memory_budget_limit_bytes",
            "The memory budget for requests (--memory-budget-mib), in bytes.",
        )?;
        // Counters whose labels take a few known values start at 0 for each
        // (rate() and increase() miss a series born at 4): done by the module that
        // owns each label list, where it starts (ingress::Refusal,
        // engine::GuestError::TRAP_KINDS, data::Op and data::Denial, the MongoDB
        // store's checkout failures).
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(instantiate.clone()))?;
        registry.register(Box::new(guest_traps.clone()))?;
        registry.register(Box::new(store_ops.clone()))?;
        registry.register(Box::new(store_errors.clone()))?;
        registry.register(Box::new(data_denied.clone()))?;
        registry.register(Box::new(mongo_pool.clone()))?;
        registry.register(Box::new(mongo_pool_max.clone()))?;
        registry.register(Box::new(mongo_checkout.clone()))?;
        registry.register(Box::new(mongo_checkout_failures.clone()))?;
        registry.register(Box::new(mongo_commands.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        // process_* (RSS, CPU seconds, open and max fds, start time) from /proc.
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(connections_cut.clone()))?;
        registry.register(Box::new(memory_budget_used.clone()))?;
        registry.register(Box::new(memory_budget_limit.clone()))?;
        connections_cut.with_label_values(&["write_deadline"]);
        registry.register(Box::new(build_info))?;
        Ok(Self(std::sync::Arc::new(MetricsInner {
            registry,
            http_requests,
            http_duration,
            in_flight,
            rejected,
            instantiate,
            guest_traps,
            store_ops,
            store_errors,
            data_denied,
            mongo_pool,
            mongo_pool_max,
            mongo_checkout,
            mongo_checkout_failures,
            mongo_commands,
            ready,
            connections,
            connections_refused,
            connections_cut,
            memory_budget_used,
            memory_budget_limit,
        })))
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::use_colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("".into())));
        assert!(!use_colour(true, Some("1".into())));
        assert!(!use_colour(false, None));
    }
}
