//! The host binary: parse configuration, wire the capabilities (the `host` library's
//! modules), serve until told to stop. See docs/architecture.md for the architecture.

use host::{
    admin, bench_native, budget, config, data, engine, healthcheck, ingress, keyvalue, server,
    telemetry,
};

use anyhow::Context;
use clap::Parser;
use config::{Cli, Command, ServeArgs};
use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

// Only for static musl builds (`--features mimalloc` or `jemalloc`): see
// host/Cargo.toml.
#[cfg(all(feature = "mimalloc", feature = "jemalloc"))]
compile_error!("features `mimalloc` and `jemalloc` each set the global allocator: pick one");
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_tracing(cli.serve.process.log_format);
    let result = match cli.command {
        Some(Command::Precompile {
            input,
            output,
            dir,
            portable,
        }) => precompile(
            input.as_deref(),
            output.as_deref(),
            dir.as_deref(),
            portable,
        ),
        Some(Command::Healthcheck { timeout_ms }) => {
            return healthcheck::run(
                cli.serve.net.admin_listen,
                Duration::from_millis(timeout_ms),
            );
        }
        Some(Command::Serve) | None => serve(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            ExitCode::FAILURE
        }
    }
}

/// Connections the admin port accepts at once: probes and a scraper need few.
const ADMIN_MAX_CONNECTIONS: usize = 64;

fn precompile(
    input: Option<&std::path::Path>,
    output: Option<&std::path::Path>,
    dir: Option<&std::path::Path>,
    portable: bool,
) -> anyhow::Result<()> {
    let defaults = Cli::parse_from(["host"]).serve;
    let cpu = if portable {
        engine::CpuFeatures::Baseline
    } else {
        engine::CpuFeatures::Native
    };
    let engine = engine::build_engine_for(&defaults.limits.engine(), cpu)?;
    let (wasm, output) = match (input, output, dir) {
        (Some(input), Some(output), None) => (
            std::fs::read(input).with_context(|| format!("reading {}", input.display()))?,
            output.to_owned(),
        ),
        (None, None, Some(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            (
                engine::BUILTIN_COMPONENT.to_vec(),
                dir.join(engine::builtin_cwasm_name()),
            )
        }
        _ => anyhow::bail!("give either INPUT and --output, or --dir"),
    };
    let start = Instant::now();
    let cwasm = engine::precompile(&engine, &wasm)?;
    std::fs::write(&output, &cwasm).with_context(|| format!("writing {}", output.display()))?;
    tracing::info!(output = %output.display(), bytes = cwasm.len(), portable, ms = start.elapsed().as_millis() as u64, "precompiled");
    Ok(())
}

fn open_store(
    args: &ServeArgs,
    metrics: &telemetry::Metrics,
) -> anyhow::Result<Arc<dyn data::Store>> {
    if let Some(uri) = args.mongodb_uri()? {
        let credential = args.mongodb_credential()?.map(|c| {
            mongodb::options::Credential::builder()
                .username(c.username)
                .password(c.password)
                .source(c.source)
                .build()
        });
        let cfg = data::mongo::MongoConfig {
            uri,
            credential,
            database: args.store.mongodb_database.clone(),
            max_pool_size: args.store.mongodb_max_pool_size,
            min_pool_size: args.store.mongodb_min_pool_size,
            server_selection_timeout: Duration::from_millis(
                args.store.mongodb_server_selection_timeout_ms,
            ),
            connect_timeout: Duration::from_millis(args.store.mongodb_connect_timeout_ms),
            op_timeout: Duration::from_millis(args.store.mongodb_op_timeout_ms),
            write_concern: args.store.mongodb_write_concern.clone(),
            journal: args.store.mongodb_journal,
        };
        let store = data::mongo::MongoStore::open(&cfg, metrics, &args.component.grants)?;
        // The URI (and its credentials) is deliberately not logged.
        tracing::info!(database = %args.store.mongodb_database, "using the MongoDB store");
        return Ok(Arc::new(store));
    }
    let store = data::embedded::EmbeddedStore::open(
        &args.store.data_dir,
        data::embedded::EmbeddedOptions {
            cache_bytes: usize::try_from(args.store.embedded_cache_mib << 20).unwrap_or(usize::MAX),
            scan_threads: args.workers(),
        },
    )?;
    tracing::info!(data_dir = %args.store.data_dir.display(), cache_mib = args.store.embedded_cache_mib, "using the embedded store");
    Ok(Arc::new(store))
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    args.validate()?;
    let metrics = telemetry::Metrics::new().context("registering metrics")?;
    let store = open_store(&args, &metrics)?;
    let limits = args.limits.engine();
    let workers = args.workers();

    // Bind before the slow part so a port conflict fails fast.
    let api_listeners = server::bind_reuseport(args.net.listen, workers)?;
    let admin_listener = server::bind_one(args.net.admin_listen)?;
    let api_addr = api_listeners[0].local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let conn_limits = server::ConnLimits {
        header_read_timeout: Duration::from_millis(args.timeouts.header_read_timeout_ms),
        write_timeout: Duration::from_millis(args.timeouts.write_timeout_ms),
        // A little room over our own 414/431 checks, so those answer (as problem
        // documents) before hyper's bare 431 does.
        max_head_bytes: args.limits.max_header_bytes as usize + 4096,
    };
    // Descriptors kept out of the API's reach: the admin port's connections, the
    // MongoDB pool, and the process's own files, sockets and runtimes.
    let reserve = ADMIN_MAX_CONNECTIONS + args.store.mongodb_max_pool_size as usize + 64;
    let max_connections = server::fit_connection_cap(args.limits.max_connections as usize, reserve);

    let stop = CancellationToken::new();
    let shutting_down = Arc::new(AtomicBool::new(false));
    let component_ready = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let admin = admin::admin_app(admin::AdminState {
        store: store.clone(),
        metrics: metrics.clone(),
        component_ready: component_ready.clone(),
        shutting_down: shutting_down.clone(),
    });
    // The admin listener starts first: /healthz answers while the component compiles.
    server::spawn_worker(
        "admin".into(),
        admin_listener,
        admin,
        server::ConnPolicy {
            listener: "admin",
            limits: conn_limits,
            slots: Arc::new(tokio::sync::Semaphore::new(ADMIN_MAX_CONNECTIONS)),
            metrics: metrics.clone(),
        },
        stop.clone(),
        done_tx.clone(),
    )?;

    let start = Instant::now();
    let engine = engine::build_engine(&limits)?;
    let cache = compile_cache(&args);
    let component = match &args.component.component {
        Some(path) => engine::load_component(
            &engine,
            Some(path),
            cache.as_ref(),
            if args.component.allow_precompiled {
                engine::NativeCode::Allowed
            } else {
                engine::NativeCode::Refused
            },
        )?,
        None => {
            let (component, from) = engine::load_builtin(
                &engine,
                args.component.precompiled_dir.as_deref(),
                cache.as_ref(),
            )?;
            tracing::info!(source = ?from, "built-in component loaded");
            component
        }
    };
    let grants: BTreeSet<String> = args.component.grants.iter().cloned().collect();
    let data = data::DataConfig::new(
        store.clone(),
        Arc::new(grants),
        doc_query::Limits {
            max_document_bytes: args.limits.max_body_bytes.max(16 * 1024),
            ..doc_query::Limits::default()
        },
        metrics.clone(),
    );
    let key_value = if args.component.key_value_stores.is_empty() {
        None
    } else {
        tracing::info!(labels = ?args.component.key_value_stores, data_dir = %args.store.data_dir.display(), "providing fermyon:spin/key-value@2.0.0");
        Some(keyvalue::KeyValueConfig::open(
            &args.store.data_dir,
            &args.component.key_value_stores,
            metrics.clone(),
        )?)
    };
    let budget_bytes = usize::try_from(args.limits.memory_budget_mib << 20).unwrap_or(usize::MAX);
    metrics
        .memory_budget_limit
        .set(i64::try_from(budget_bytes).unwrap_or(i64::MAX));
    let budget = budget::MemoryBudget::new(budget_bytes, metrics.memory_budget_used.clone());
    budget::return_memory_to_the_system(&budget, Duration::from_secs(2));
    let runtime = engine::Runtime::new(
        engine,
        &component,
        limits,
        data,
        key_value,
        metrics.clone(),
        budget.clone(),
    )?;
    component_ready.store(true, Ordering::Relaxed);
    tracing::info!(ms = start.elapsed().as_millis() as u64, grants = ?args.component.grants, "component ready");

    let api_policy = server::ConnPolicy {
        listener: "api",
        limits: conn_limits,
        slots: Arc::new(tokio::sync::Semaphore::new(max_connections)),
        metrics: metrics.clone(),
    };
    let slots = runtime.instance_slots(api_listeners.len());
    let state = ingress::AppState {
        slots: slots[0].clone(),
        runtime,
        metrics,
        limits: ingress::IngressLimits {
            max_body_bytes: args.limits.max_body_bytes,
            max_header_bytes: args.limits.max_header_bytes as usize,
            max_uri_bytes: args.limits.max_uri_bytes as usize,
            body_read_timeout: Duration::from_millis(args.timeouts.body_read_timeout_ms),
            response_write_deadline: Duration::from_millis(
                args.timeouts.response_write_deadline_ms,
            ),
        },
        permits: Arc::new(tokio::sync::Semaphore::new(
            args.limits.max_concurrency as usize,
        )),
        budget,
        bench_store: args.process.bench_native_route.then(|| store.clone()),
    };
    // One router per worker: each carries that worker's share of the instances.
    for (i, (listener, slots)) in api_listeners.into_iter().zip(slots).enumerate() {
        let state = ingress::AppState {
            slots,
            ..state.clone()
        };
        let app = if args.process.bench_native_route {
            ingress::app_with(state, bench_native::routes)
        } else {
            ingress::app(state)
        };
        server::spawn_worker(
            format!("api-{i}"),
            listener,
            app,
            api_policy.clone(),
            stop.clone(),
            done_tx.clone(),
        )?;
    }
    drop(done_tx);
    tracing::info!(api = %api_addr, admin = %admin_addr, workers, max_connections, "listening");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    rt.block_on(server::shutdown_signal());
    shutting_down.store(true, Ordering::Relaxed);
    // Draining: not ready, still serving, until the load balancer has taken this
    // instance out (closing now refuses the connections already on their way).
    let delay = Duration::from_secs(args.process.shutdown_delay_secs);
    if !delay.is_zero() {
        tracing::info!(
            delay_secs = args.process.shutdown_delay_secs,
            "draining before the listeners close"
        );
        rt.block_on(async {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = server::shutdown_signal() => {}
            }
        });
    }
    stop.cancel();
    let grace = Duration::from_secs(args.process.shutdown_grace_secs);
    if !server::wait_workers(&done_rx, workers + 1, grace) {
        tracing::warn!(
            grace_secs = args.process.shutdown_grace_secs,
            "in-flight requests did not finish within the grace period"
        );
    }
    rt.block_on(store.flush()).context("flushing the store")?;
    tracing::info!("stopped");
    Ok(())
}

/// The compile cache, unless turned off. One that cannot be used is a warning,
/// not a failed start: the component is then compiled as without a cache.
fn compile_cache(args: &ServeArgs) -> Option<engine::CompileCache> {
    if args.component.no_compile_cache {
        return None;
    }
    let dir = args
        .component
        .compile_cache_dir
        .clone()
        .unwrap_or_else(|| args.store.data_dir.join("compile-cache"));
    engine::CompileCache::open(&dir)
        .inspect_err(|e| tracing::warn!(error = %e, "compile cache not used"))
        .ok()
}
