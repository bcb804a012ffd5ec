//! The cost of a fresh instance with nothing else in the way: one task stored in an
//! embedded store, then GET one through `Runtime::handle` in a sequential loop on
//! one thread (no socket, no hyper, no other request), printing the time per
//! request and the host's own instantiate metric (`wasm_instantiate_duration_seconds`)
//! per round. It is the floor under what `bench/run.sh` measures with wrk: the
//! metric cannot be lower under load than here.
//!
//! ```sh
//! cargo run --release -p host --example instantiate_floor        # 3 rounds of 20,000
//! N=5000 ROUNDS=5 cargo run --release -p host --example instantiate_floor
//! ```
use std::{sync::Arc, time::Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use clap::Parser;
use host::{
    budget::MemoryBudget,
    config::Cli,
    data::{
        DataConfig,
        embedded::{EmbeddedOptions, EmbeddedStore},
    },
    engine::{self, InstanceSlots, NativeCode, Runtime},
    telemetry::Metrics,
};

fn env_or(name: &str, default: u32) -> anyhow::Result<u32> {
    std::env::var(name).map_or(Ok(default), |v| {
        v.parse().with_context(|| format!("{name}={v}"))
    })
}

async fn send(
    rt: &Runtime,
    slots: &InstanceSlots,
    req: http::Request<Bytes>,
) -> anyhow::Result<http::Response<Bytes>> {
    let (resp, _charge) = rt.handle(slots, req).await.context("request")?;
    Ok(resp)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let n = env_or("N", 20_000)?;
    let rounds = env_or("ROUNDS", 3)?;
    // The host's limits as `host serve` would take them: defaults, or the same
    // environment variables (MEMORY_LIMIT_MIB, EPOCH_TICK_MS, ...).
    let limits = Cli::parse_from(["host"]).serve.limits.engine();
    let engine = engine::build_engine(&limits)?;
    let component = engine::load_component(&engine, None, None, NativeCode::Refused)?;
    let metrics = Metrics::new()?;
    let dir = tempfile::tempdir()?;
    let store = EmbeddedStore::open(
        dir.path(),
        EmbeddedOptions {
            cache_bytes: 8 << 20,
            scan_threads: 2,
        },
    )?;
    let data = DataConfig::new(
        Arc::new(store),
        Arc::new(["tasks".to_owned()].into_iter().collect()),
        doc_query::Limits::default(),
        metrics.clone(),
    );
    let budget = MemoryBudget::new(256 << 20, metrics.memory_budget_used.clone());
    let rt = Runtime::new(
        engine,
        &component,
        limits,
        data,
        None,
        metrics.clone(),
        budget,
    )?;

    let slots = rt.instance_slots(1).remove(0);
    let created = send(
        &rt,
        &slots,
        http::Request::post("http://localhost/api/tasks")
            .header("content-type", "application/json")
            .body(Bytes::from_static(br#"{"title":"floor"}"#))?,
    )
    .await?;
    ensure!(
        created.status() == 201,
        "POST answered {}",
        created.status()
    );
    let task: serde_json::Value = serde_json::from_slice(created.body())?;
    let id = task["id"].as_str().context("the created task has no id")?;
    let uri = format!("http://localhost/api/tasks/{id}");

    for round in 1..=rounds {
        let (sum, count) = (
            metrics.instantiate.get_sample_sum(),
            metrics.instantiate.get_sample_count(),
        );
        let start = Instant::now();
        for _ in 0..n {
            let resp = send(&rt, &slots, http::Request::get(&uri).body(Bytes::new())?).await?;
            ensure!(resp.status() == 200, "GET answered {}", resp.status());
        }
        let per_request = start.elapsed().as_secs_f64() / f64::from(n);
        let instantiate = (metrics.instantiate.get_sample_sum() - sum)
            / (metrics.instantiate.get_sample_count() - count) as f64;
        println!(
            "round {round}: {:.1} µs per GET one, instantiate mean {:.2} µs ({n} requests)",
            per_request * 1e6,
            instantiate * 1e6
        );
    }
    Ok(())
}
