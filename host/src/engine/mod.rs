//! The WebAssembly side of the host: one [`Engine`] for the process, the component
//! compiled (or loaded precompiled) once and pre-instantiated, and a fresh `Store` and
//! instance for every request with its own memory limit and wall-clock deadline.

mod cache;
mod host;
mod trust;

pub use cache::{CacheOutcome, CompileCache};
pub use host::Host;

use crate::budget::{Charge, MemoryBudget};
use crate::data::DataConfig;
use crate::keyvalue::KeyValueConfig;
use crate::telemetry::Metrics;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::bail;
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context as _;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    UpdateDeadline,
};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

/// The tasks API component, built by `build.rs` from `app-wasm/`.
pub const BUILTIN_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/app.wasm"));

/// The first 16 hex digits of the built-in component's SHA-256 (from `build.rs`):
/// names its compiled form, so a stale one is never picked up.
pub const BUILTIN_DIGEST: &str = env!("APP_COMPONENT_DIGEST");

/// The file name of the built-in component's compiled form in a precompiled
/// directory (`host precompile --dir`, `--precompiled-dir`).
pub fn builtin_cwasm_name() -> String {
    format!("tasks-{BUILTIN_DIGEST}-wasmtime-48.0.8.cwasm")
}

/// Epoch ticks after which a guest counts as long-running and gives way more.
const LONG_RUNNING_TICKS: u32 = 10;
/// Yields per tick of a long-running guest.
const LONG_RUNNING_YIELDS: u32 = 4;

/// Linear memory a pool slot keeps resident (zeroed) after its instance ends, so the
/// next instance in it starts without page faults. Measured: 1 -> 2 MiB was the step
/// (docs/performance.md); more only adds to what the pool keeps after a burst (the
/// slots used at the peak, each up to this: outside the memory budget).
const LINEAR_MEMORY_KEEP_RESIDENT: usize = 2 << 20;

/// Pool slots beyond `Limits::max_instances`, see `build_engine_for`.
const POOL_SLACK: u32 = 4;

/// What an instance must find room for in the memory budget before it starts when
/// the component's own initial memory cannot be known (it imports a module).
pub const INSTANCE_ADMISSION_CHARGE: usize = 1 << 20;

/// What an instance of `component` takes from the memory budget at admission,
/// where it can wait for room: its memories at their declared initial sizes, which
/// every instance allocates before running a single instruction. Growth past it is
/// charged as it happens, into the headroom the budget keeps for admitted work
/// (`budget.rs`). Not a learned "typical" size: one large request would raise it
/// for every small one, and a burst of small requests would queue behind it.
pub fn admission_charge(component: &Component) -> usize {
    component
        .resources_required()
        .and_then(|r| {
            let pages = r.max_initial_memory_size?;
            usize::try_from(
                pages
                    .checked_mul(u64::from(r.num_memories))?
                    .checked_mul(65536)?,
            )
            .ok()
        })
        .unwrap_or(INSTANCE_ADMISSION_CHARGE)
}

/// Largest response body a component may produce.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Per-request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: usize,
    pub deadline: Duration,
    pub epoch_tick: Duration,
    /// Instances alive at once (requests wait for one); sizes the pooling allocator.
    pub max_instances: u32,
}

/// Why a request's component did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("the component exceeded its {0:?} deadline")]
    Deadline(Duration),
    #[error("the component exceeded its memory limit")]
    Memory,
    #[error("the component trapped: {0}")]
    Trap(String),
    #[error("the component returned no response")]
    NoResponse,
    #[error("the component's response was too large or malformed: {0}")]
    BadResponse(String),
    /// The process-wide memory budget (`budget.rs`) had no room for the
    /// instance's memory or its response: the request is refused, not failed.
    #[error("the memory budget for requests is used up")]
    OverBudget,
    /// No instance slot came free within the request's deadline: refused, like
    /// `OverBudget`, not failed.
    #[error("no instance slot came free in time")]
    NoInstance,
}

impl GuestError {
    pub fn kind(&self) -> &'static str {
        match self {
            GuestError::Deadline(_) => "deadline",
            GuestError::Memory => "memory",
            GuestError::Trap(_) => "trap",
            GuestError::NoResponse | GuestError::BadResponse(_) => "bad_response",
            GuestError::OverBudget => "over_budget",
            GuestError::NoInstance => "no_instance",
        }
    }

    /// The kinds counted in `wasm_guest_traps_total` (started at 0): every value of
    /// [`GuestError::kind`] but the refusals, `over_budget` and `no_instance`,
    /// counted in `http_requests_rejected_total{reason="memory_budget"}` and
    /// `{reason="overloaded"}`.
    pub const TRAP_KINDS: [&'static str; 4] = ["deadline", "memory", "trap", "bad_response"];
}

/// Which limit refused the instance memory, if one did.
#[derive(Debug, Default, Clone, Copy)]
struct Denied {
    memory: bool,
    budget: bool,
}

/// Marker error raised from the epoch callback once the deadline has passed.
#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// Build the engine. Every setting here was chosen by measurement (PERF-NOTES.md
/// and docs/performance.md): pooling with keep-resident memory and
/// pagemap scanning make a fresh instance per request cheap.
pub fn build_engine(limits: &Limits) -> wasmtime::Result<Engine> {
    build_engine_for(limits, CpuFeatures::Native)
}

/// Which CPU features compiled code may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuFeatures {
    /// Whatever this CPU has (the default: fastest code, valid only here and on
    /// CPUs with at least these features).
    Native,
    /// The target's baseline only (x86-64: SSE2), so a `.cwasm` made on one
    /// machine loads on any other of the same architecture. wasmtime checks at
    /// load that every feature an artifact uses is present.
    Baseline,
}

pub fn build_engine_for(limits: &Limits, cpu: CpuFeatures) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    // A few slots past the cap: a slot returns to the pool when its store is
    // dropped, which can trail the end of the request that used it (an aborted
    // guest task).
    let n = limits.max_instances.max(1).saturating_add(POOL_SLACK);
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(8))
        .total_stacks(n)
        .max_memory_size(limits.memory_bytes)
        // Resetting a slot by zeroing the first pages instead of unmapping them was
        // the biggest single win.
        .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT)
        .table_keep_resident(1 << 20)
        .async_stack_keep_resident(256 << 10)
        // Linux >= 6.7 can tell which kept pages were dirtied; elsewhere it is off.
        .pagemap_scan(Enabled::Yes)
        // Reuse the slots already used before touching new ones: a slot keeps its
        // resident pages after use, so the memory the pool holds follows the most
        // instances alive at once (capped by max_instances), not how many slots
        // have been used over the process's life.
        .max_unused_warm_slots(0);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if cpu == CpuFeatures::Baseline {
        // An explicit target turns off the inference of the host's CPU features.
        config.target(env!("HOST_TARGET"))?;
    }
    Engine::new(&config).context("creating the wasmtime engine")
}

/// Compile a component to a `.cwasm` for this engine configuration.
pub fn precompile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Vec<u8>> {
    engine
        .precompile_component(wasm)
        .context("compiling the component")
}

/// Where the built-in component came from at start (logged, and for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinSource {
    /// Its compiled form from the precompiled directory.
    Precompiled,
    /// Its compiled form from the compile cache (an earlier start compiled it).
    Cached,
    /// Compiled now: no precompiled directory, or no file for this component.
    Compiled,
    /// Compiled now because this engine refused the precompiled file (another CPU,
    /// another wasmtime, a damaged file).
    Refused,
}

/// Compiles `wasm`, through the compile cache when there is one.
fn compile(
    engine: &Engine,
    name: &str,
    wasm: &[u8],
    digest: Option<&str>,
    cache: Option<&CompileCache>,
) -> wasmtime::Result<(Component, BuiltinSource)> {
    let Some(cache) = cache else {
        let c = Component::new(engine, wasm).with_context(|| format!("compiling {name}"))?;
        return Ok((c, BuiltinSource::Compiled));
    };
    let (c, outcome) = cache
        .load_or_compile(engine, name, wasm, digest)
        .with_context(|| format!("compiling {name}"))?;
    tracing::info!(component = name, ?outcome, "compile cache");
    let source = match outcome {
        CacheOutcome::Hit => BuiltinSource::Cached,
        CacheOutcome::Miss | CacheOutcome::Replaced | CacheOutcome::Unusable => {
            BuiltinSource::Compiled
        }
    };
    Ok((c, source))
}

/// The built-in component: its compiled form from `dir` when this engine accepts it,
/// else from the compile cache, else compiled now. A refused file costs a warning
/// and the compile time, never the start: an image precompiled on one CPU still
/// starts on another.
pub fn load_builtin(
    engine: &Engine,
    dir: Option<&Path>,
    cache: Option<&CompileCache>,
) -> wasmtime::Result<(Component, BuiltinSource)> {
    let compile = || {
        compile(
            engine,
            "tasks",
            BUILTIN_COMPONENT,
            Some(BUILTIN_DIGEST),
            cache,
        )
    };
    let Some(dir) = dir else {
        return compile();
    };
    let file = dir.join(builtin_cwasm_name());
    if !file.is_file() {
        tracing::info!(file = %file.display(), "no precompiled built-in component");
        return compile();
    }
    let loaded = trust::read(&file)
        .map_err(wasmtime::Error::from)
        .and_then(|bytes| match Engine::detect_precompiled(&bytes) {
            Some(wasmtime::Precompiled::Component) => deserialize(engine, &file, &bytes),
            _ => Err(wasmtime::format_err!("not a precompiled component")),
        });
    match loaded {
        Ok(c) => Ok((c, BuiltinSource::Precompiled)),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = format!("{e:#}"), "this engine refused the precompiled built-in component; compiling it instead");
            Ok((compile()?.0, BuiltinSource::Refused))
        }
    }
}

/// Whether precompiled native code may be loaded (`--allow-precompiled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeCode {
    Refused,
    Allowed,
}

/// Load a component: the built-in one, a `.wasm` (compiled now, or taken from the
/// compile cache), or a `.cwasm` (only with [`NativeCode::Allowed`], from a file
/// nobody else could have written, read not mapped; wasmtime refuses one built by an
/// incompatible engine).
pub fn load_component(
    engine: &Engine,
    path: Option<&Path>,
    cache: Option<&CompileCache>,
    native: NativeCode,
) -> wasmtime::Result<Component> {
    let Some(path) = path else {
        return Ok(load_builtin(engine, None, cache)?.0);
    };
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(b"\0asm") {
        return Ok(compile(engine, "component", &bytes, None, cache)
            .with_context(|| format!("compiling {}", path.display()))?
            .0);
    }
    match Engine::detect_precompiled(&bytes) {
        Some(wasmtime::Precompiled::Component) if native == NativeCode::Refused => bail!(
            "{} is a precompiled component: native code that runs outside the sandbox with this \
             host's privileges; load it only if you built it, with --allow-precompiled",
            path.display()
        ),
        Some(wasmtime::Precompiled::Component) => {
            // Read again through the checks: the first read only told what it is.
            let bytes = trust::read(path)?;
            deserialize(engine, path, &bytes)
        }
        Some(wasmtime::Precompiled::Module) => bail!(
            "{} is a precompiled core module, not a component",
            path.display()
        ),
        None => bail!(
            "{} is neither a wasm component nor a precompiled .cwasm",
            path.display()
        ),
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path, bytes: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize` trusts the bytes to be wasmtime output. They are an
    // artifact the operator chose to trust (`--allow-precompiled`), read from a file
    // that only this user or root could have written (`trust.rs`), into memory (a
    // later write to the file cannot change them); wasmtime checks the header and
    // the engine compatibility hash, refusing another version or configuration.
    unsafe { Component::deserialize(engine, bytes) }.with_context(|| {
        format!(
            "loading precompiled component {} (rebuild it with `host precompile` for this host)",
            path.display()
        )
    })
}

/// Instances one API worker may have alive at once: its share of
/// `Limits::max_instances` (`Runtime::instance_slots`).
#[derive(Clone)]
pub struct InstanceSlots(Arc<tokio::sync::Semaphore>);

/// The engine, the pre-instantiated component and everything a request needs.
pub struct Runtime {
    engine: Engine,
    pre: ProxyPre<Host>,
    limits: Limits,
    data: Arc<DataConfig>,
    key_value: Option<KeyValueConfig>,
    metrics: Metrics,
    budget: MemoryBudget,
    /// See [`admission_charge`].
    admission: usize,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    pub fn new(
        engine: Engine,
        component: &Component,
        limits: Limits,
        data: DataConfig,
        key_value: Option<KeyValueConfig>,
        metrics: Metrics,
        budget: MemoryBudget,
    ) -> wasmtime::Result<Arc<Self>> {
        let mut linker: Linker<Host> = Linker::new(&engine);
        // Full WASI p2 so components built by Rust's std link, but the context
        // grants nothing: no preopens, env, args, sockets or name lookups.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).context("linking WASI")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .context("linking wasi:http")?;
        crate::data::add_to_linker(&mut linker, |h: &mut Host| &mut h.documents)
            .context("linking app:data/documents")?;
        // Only for the Spin build (the handler composed with its key-value adapter):
        // without it, a component that imports key-value fails to instantiate.
        if key_value.is_some() {
            crate::keyvalue::add_to_linker(&mut linker, Host::key_value)
                .context("linking fermyon:spin/key-value")?;
        }
        let pre = ProxyPre::new(
            linker
                .instantiate_pre(component)
                .context("the component's imports cannot be satisfied by this host")?,
        )
        .context("the component does not export wasi:http/incoming-handler")?;
        let admission = admission_charge(component).min(limits.memory_bytes);
        for kind in GuestError::TRAP_KINDS {
            // Starts at 0, so that the first trap is an increase an alert sees.
            metrics.guest_traps.with_label_values(&[kind]);
        }
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), limits.epoch_tick, ticker_stop.clone())?;
        Ok(Arc::new(Self {
            engine,
            pre,
            limits,
            data: Arc::new(data),
            key_value,
            metrics,
            budget,
            admission,
            ticker_stop,
        }))
    }

    /// `Limits::max_instances` split into one share per API worker, as evenly as it
    /// goes; past `max_instances` workers, workers share. A request waits only for
    /// a slot of its own worker's share: with one queue for all, a slot freed on one
    /// worker went to a request waiting on another, a wake-up across threads per
    /// request once the slots were all taken (with a share per worker, at 256
    /// connections GET one 1.07-1.21x and lists 1.15-1.33x; unchanged at 32:
    /// docs/performance.md).
    pub fn instance_slots(&self, workers: usize) -> Vec<InstanceSlots> {
        let max = self.limits.max_instances.max(1) as usize;
        let shares = workers.clamp(1, max);
        let slots: Vec<InstanceSlots> = (0..shares)
            .map(|i| {
                let n = max / shares + usize::from(i < max % shares);
                InstanceSlots(Arc::new(tokio::sync::Semaphore::new(n)))
            })
            .collect();
        (0..workers.max(1))
            .map(|w| slots[w % shares].clone())
            .collect()
    }

    /// Run one request through a fresh instance, in a slot of `slots`. The body is already read (and
    /// size-limited) by the ingress, and the response body is collected (and
    /// size-limited) here, so it leaves with a Content-Length. The instance's
    /// memory and the response are charged to the memory budget; the response's
    /// charge is returned with it, to be held until the client has taken it.
    pub async fn handle(
        &self,
        slots: &InstanceSlots,
        req: http::Request<Bytes>,
    ) -> Result<(http::Response<Bytes>, Charge), GuestError> {
        // A read may be refused past the budget at any point; the result of a write
        // is delivered even then (it happened: a 503 would invite a retry).
        let refusable = req.method().is_safe();
        let admitted_by = Instant::now() + self.limits.deadline;
        // A slot first, then room for its memory: a burst waits briefly for both
        // (not past the deadline) rather than being refused at once.
        let slot = tokio::time::timeout_at(admitted_by.into(), slots.0.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(GuestError::NoInstance)?;
        let instance_charge = self
            .budget
            .charge_waiting(self.admission, admitted_by)
            .await
            .ok_or(GuestError::OverBudget)?;
        let mut store = Store::new(
            &self.engine,
            Host::new(
                self.data.context(),
                self.key_value
                    .as_ref()
                    .map(KeyValueConfig::context)
                    .unwrap_or_default(),
                self.limits.memory_bytes,
                instance_charge,
            ),
        );
        store.limiter(|h| &mut h.limiter);
        let wall_deadline = Instant::now() + self.limits.deadline;
        // Yield to other requests on every epoch tick (so a runaway guest cannot hold
        // a worker thread) and trap once the wall-clock deadline has passed. The
        // yield is tokio's, which resumes the guest only after the runtime has
        // polled for I/O: wasmtime's plain `Yield` re-queues it at once, and with
        // guests always runnable a current-thread runtime looks at its sockets
        // only every 61 polls, so two spinning guests per worker cut healthy
        // throughput to 0.11 of baseline (bench/runaway.sh).
        // A guest that has run for more than LONG_RUNNING_TICKS gives way more: it
        // yields several times per tick, so requests that finish in a tick keep
        // most of the worker while it runs (a round-robin tick each would leave
        // them about half). When nothing else is runnable the extra yields return
        // at once.
        let mut ticks: u32 = 0;
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= wall_deadline {
                return Err(DeadlineExceeded.into());
            }
            ticks = ticks.saturating_add(1);
            let yields = if ticks > LONG_RUNNING_TICKS {
                LONG_RUNNING_YIELDS
            } else {
                1
            };
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                }),
            ))
        });

        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = req.map(Full::new);
        let (req, out) = {
            let mut http = store.data_mut().http();
            let req = http
                .new_incoming_request(Scheme::Http, req)
                .map_err(|e| GuestError::BadResponse(format!("request: {e}")))?;
            let out = http
                .new_response_outparam(tx)
                .map_err(|e| GuestError::BadResponse(format!("outparam: {e}")))?;
            (req, out)
        };

        let pre = self.pre.clone();
        let instantiate = self.metrics.instantiate.clone();
        let guest = async move {
            // Armed when the task first runs, not when the request arrived: time
            // spent queued must not make the guest yield again before its first tick.
            store.set_epoch_deadline(1);
            let start = Instant::now();
            let result = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                instantiate.observe(start.elapsed().as_secs_f64());
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            }
            .await;
            let denied = Denied {
                memory: store.data().limiter.denied,
                budget: store.data().limiter.over_budget,
            };
            // Dropping the store here closes the response channel if it was never
            // used, gives the instance's memory back to the budget and its slot
            // back to the pool; only then may another instance take the slot.
            drop(store);
            drop(slot);
            (result, denied)
        };
        let budget = self.budget.clone();
        let response = async move {
            let resp = rx.await.map_err(|_| GuestError::NoResponse)?;
            let resp = resp.map_err(|e| GuestError::BadResponse(format!("{e:?}")))?;
            let (parts, mut body) = resp.into_parts();
            let mut buf = bytes::BytesMut::new();
            let mut charge = budget.empty_response();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| GuestError::BadResponse(e.to_string()))?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if buf.len() + data.len() > MAX_RESPONSE_BYTES {
                    return Err(GuestError::BadResponse("length limit exceeded".into()));
                }
                let before = buf.capacity();
                buf.extend_from_slice(&data);
                // What the buffer really holds, its spare capacity included.
                let grown = buf.capacity().saturating_sub(before);
                if refusable {
                    if !charge.try_grow_response(grown) {
                        return Err(GuestError::OverBudget);
                    }
                } else {
                    charge.force_grow(grown);
                }
            }
            Ok::<_, GuestError>((http::Response::from_parts(parts, buf.freeze()), charge))
        };

        // The guest runs in its own task, as in `wasmtime serve`: the response is
        // returned as soon as its body is complete, while the instance's teardown
        // (dropping the store returns its slot to the pool) overlaps with writing
        // it out. Measured: see docs/performance.md.
        let deadline = self.limits.deadline;
        let guest = tokio::spawn(async move {
            // Epochs interrupt running wasm; this also bounds time in host calls.
            match tokio::time::timeout(deadline + Duration::from_millis(100), guest).await {
                Ok(outcome) => outcome,
                Err(_) => (Err(DeadlineExceeded.into()), Denied::default()),
            }
        });
        let response = tokio::time::timeout(deadline + Duration::from_millis(200), response).await;
        match response {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(no_response)) => {
                // The guest ended without a complete response: say why.
                let (result, denied) = guest.await.unwrap_or_else(|e| {
                    (
                        Err(wasmtime::Error::msg(format!("guest task failed: {e}"))),
                        Denied::default(),
                    )
                });
                match result {
                    Ok(()) => Err(no_response),
                    Err(e) if e.chain().any(|c| c.is::<DeadlineExceeded>()) => {
                        Err(GuestError::Deadline(deadline))
                    }
                    Err(_) if denied.memory => Err(GuestError::Memory),
                    Err(_) if denied.budget => Err(GuestError::OverBudget),
                    Err(e) => Err(GuestError::Trap(format!("{e:#}"))),
                }
            }
            Err(_) => {
                guest.abort();
                Err(GuestError::Deadline(deadline))
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Advance the engine's epoch on a dedicated thread. A thread (not a tokio task)
/// keeps ticking even when every worker is busy running guests.
fn spawn_epoch_ticker(
    engine: Engine,
    tick: Duration,
    stop: Arc<AtomicBool>,
) -> wasmtime::Result<()> {
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })
        .context("starting the epoch ticker")?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Limits for tests that build an engine and runtime in-process.
    pub(crate) fn test_limits() -> Limits {
        Limits {
            memory_bytes: 64 << 20,
            deadline: Duration::from_secs(5),
            epoch_tick: Duration::from_millis(1),
            max_instances: 16,
        }
    }

    /// The documents capability on a fresh embedded store in `dir`, granting `tasks`.
    /// A budget no test request comes near.
    pub(crate) fn test_budget(metrics: &Metrics) -> MemoryBudget {
        MemoryBudget::new(256 << 20, metrics.memory_budget_used.clone())
    }

    pub(crate) fn test_data(dir: &Path, metrics: &Metrics) -> DataConfig {
        DataConfig::new(
            Arc::new(
                crate::data::embedded::EmbeddedStore::open(
                    dir,
                    crate::data::embedded::tests::options(),
                )
                .expect("store"),
            ),
            Arc::new(["tasks".to_owned()].into_iter().collect()),
            doc_query::Limits::default(),
            metrics.clone(),
        )
    }

    fn test_engine() -> Engine {
        build_engine(&test_limits()).expect("engine")
    }

    /// The security point of the design, checked on the artifact itself: the built-in
    /// component can import WASI and `app:data/documents`, nothing else (a stray
    /// spin-sdk API would add `fermyon:spin/*`, which this host does not provide).
    #[test]
    fn builtin_component_imports_only_wasi_and_documents() {
        let engine = test_engine();
        let (imports, exports) = interface(&engine, BUILTIN_COMPONENT);
        assert_handler(&imports, &exports, "app:data/documents@0.1.0");
    }

    /// Admission takes what the component declares: the built-in one has one
    /// memory of at least 1 MiB; the Spin build (handler and adapter) has two.
    #[test]
    fn admission_charge_is_the_declared_initial_memory() {
        let engine = test_engine();
        let builtin =
            admission_charge(&Component::new(&engine, BUILTIN_COMPONENT).expect("component"));
        assert!((1 << 20..2 << 20).contains(&builtin), "{builtin}");
        let spin = std::fs::read(env!("SPIN_APP_COMPONENT")).expect("composed component");
        let spin = admission_charge(&Component::new(&engine, spin).expect("component"));
        assert!(spin > builtin, "{spin} <= {builtin}");
    }

    /// A request handler: it imports WASI and `data` (which must be there), nothing
    /// else, no outbound HTTP, and exports the incoming handler.
    fn assert_handler(imports: &[String], exports: &[String], data: &str) {
        assert!(imports.iter().any(|i| i == data), "{imports:?}");
        for i in imports {
            assert!(i.starts_with("wasi:") || i == data, "unexpected import {i}");
        }
        assert!(
            !imports
                .iter()
                .any(|i| i.starts_with("wasi:http/outgoing-handler")),
            "the tasks API makes no outbound calls: {imports:?}"
        );
        assert!(
            exports
                .iter()
                .any(|e| e.starts_with("wasi:http/incoming-handler@0.2")),
            "{exports:?}"
        );
    }

    /// Import names of a component, and export names.
    fn interface(engine: &Engine, wasm: &[u8]) -> (Vec<String>, Vec<String>) {
        let component = Component::new(engine, wasm).expect("component");
        let ty = component.component_type();
        (
            ty.imports(engine).map(|(n, _)| n.to_owned()).collect(),
            ty.exports(engine).map(|(n, _)| n.to_owned()).collect(),
        )
    }

    /// What `spin up` runs: the handler composed with the key-value adapter. Its
    /// `documents` import is satisfied inside; what is left is WASI and Spin's
    /// key-value store, both of which Spin provides.
    #[test]
    fn spin_build_imports_only_wasi_and_spin_key_value() {
        let engine = test_engine();
        let composed = std::fs::read(env!("SPIN_APP_COMPONENT")).expect("composed component");
        let (imports, exports) = interface(&engine, &composed);
        assert_handler(&imports, &exports, "fermyon:spin/key-value@2.0.0");
        // The adapter alone: exports the data contract, imports only WASI and key-value.
        let adapter = std::fs::read(env!("DOCUMENTS_KV_COMPONENT")).expect("adapter");
        let (imports, exports) = interface(&engine, &adapter);
        assert_eq!(exports, vec!["app:data/documents@0.1.0".to_owned()]);
        for i in &imports {
            assert!(
                i.starts_with("wasi:") || i == "fermyon:spin/key-value@2.0.0",
                "unexpected adapter import {i}"
            );
        }
    }

    /// Key-value is opt-in: without it the Spin build cannot start, and the error
    /// names the missing import.
    #[test]
    fn spin_build_needs_the_key_value_capability() {
        let limits = test_limits();
        let engine = build_engine(&limits).expect("engine");
        let component = load_component(
            &engine,
            Some(Path::new(env!("SPIN_APP_COMPONENT"))),
            None,
            NativeCode::Refused,
        )
        .expect("component");
        let metrics = Metrics::new().expect("metrics");
        let dir = tempfile::tempdir().expect("tempdir");
        let data = test_data(dir.path(), &metrics);
        let Err(err) = Runtime::new(
            engine.clone(),
            &component,
            limits,
            data.clone(),
            None,
            metrics.clone(),
            test_budget(&metrics),
        ) else {
            panic!("the Spin build started without key-value");
        };
        assert!(
            format!("{err:#}").contains("fermyon:spin/key-value@2.0.0"),
            "{err:#}"
        );
        let kv =
            KeyValueConfig::open(dir.path(), &["default".to_owned()], metrics.clone()).expect("kv");
        let budget = test_budget(&metrics);
        Runtime::new(engine, &component, limits, data, Some(kv), metrics, budget).expect("runtime");
    }

    /// A runtime of the built-in component with `max_instances` slots and a
    /// short deadline.
    fn capped_runtime(max_instances: u32, dir: &Path) -> Arc<Runtime> {
        let limits = Limits {
            max_instances,
            deadline: Duration::from_millis(400),
            ..test_limits()
        };
        let engine = build_engine(&limits).expect("engine");
        let component =
            load_component(&engine, None, None, NativeCode::Refused).expect("component");
        let metrics = Metrics::new().expect("metrics");
        let data = test_data(dir, &metrics);
        let budget = test_budget(&metrics);
        Runtime::new(engine, &component, limits, data, None, metrics, budget).expect("runtime")
    }

    fn list() -> http::Request<Bytes> {
        http::Request::get("http://localhost/api/tasks?limit=1")
            .body(Bytes::new())
            .expect("request")
    }

    /// Each worker gets its share of `max_instances`, as even as it goes, and the
    /// shares never add up to more than the cap, whatever the number of workers.
    #[test]
    fn instance_slots_split_the_cap_and_never_exceed_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (max, workers, want) in [
            (24, 2, vec![12, 12]),
            (5, 2, vec![3, 2]),
            (5, 3, vec![2, 2, 1]),
            (2, 3, vec![1, 1, 1]),
            (7, 0, vec![7]),
        ] {
            let rt = capped_runtime(max, dir.path());
            let slots = rt.instance_slots(workers);
            let got: Vec<usize> = slots.iter().map(|s| s.0.available_permits()).collect();
            assert_eq!(got, want, "{max} over {workers}");
            let mut distinct: Vec<&Arc<tokio::sync::Semaphore>> = Vec::new();
            for s in &slots {
                if !distinct.iter().any(|d| Arc::ptr_eq(d, &s.0)) {
                    distinct.push(&s.0);
                }
            }
            let total: usize = distinct.iter().map(|s| s.available_permits()).sum();
            assert_eq!(total, max as usize, "{max} over {workers}");
        }
    }

    /// Past `max_instances`, requests wait for a slot (the pool has only a few
    /// more than that, so without the wait most of these would fail to
    /// instantiate) and are refused `NoInstance` once their deadline has passed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_past_the_instance_cap_wait_for_a_slot_up_to_their_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = capped_runtime(1, dir.path());
        let slots = rt.instance_slots(1).remove(0);
        let burst: Vec<_> = (0..16)
            .map(|_| {
                let (rt, slots) = (rt.clone(), slots.clone());
                tokio::spawn(
                    async move { rt.handle(&slots, list()).await.map(|(r, _)| r.status()) },
                )
            })
            .collect();
        for r in burst {
            assert_eq!(
                r.await.expect("task").expect("served"),
                http::StatusCode::OK
            );
        }

        // The one slot is taken (as by a guest that runs to its deadline): a request
        // waits, and is served if the slot comes free in time...
        let held = slots.0.clone().acquire_owned().await.expect("permit");
        let waiting = tokio::spawn({
            let (rt, slots) = (rt.clone(), slots.clone());
            async move { rt.handle(&slots, list()).await.map(|(r, _)| r.status()) }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
        assert_eq!(
            waiting.await.expect("task").expect("served"),
            http::StatusCode::OK
        );
        // ...and refused, not failed, if it does not.
        let _held = slots.0.clone().acquire_owned().await.expect("permit");
        let start = Instant::now();
        assert!(matches!(
            rt.handle(&slots, list()).await,
            Err(GuestError::NoInstance)
        ));
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "waited for its deadline"
        );
    }

    #[test]
    fn the_builtin_comes_from_the_precompiled_dir_or_is_compiled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = build_engine(&test_limits()).expect("engine");
        let portable = build_engine_for(&test_limits(), CpuFeatures::Baseline).expect("engine");
        let (_, from) = load_builtin(&engine, Some(dir.path()), None).expect("compiles");
        assert_eq!(from, BuiltinSource::Compiled, "no file yet");
        // A baseline (portable) artifact loads on this CPU's engine.
        let file = dir.path().join(builtin_cwasm_name());
        std::fs::write(
            &file,
            precompile(&portable, BUILTIN_COMPONENT).expect("precompile"),
        )
        .expect("write");
        let (_, from) = load_builtin(&engine, Some(dir.path()), None).expect("loads");
        assert_eq!(from, BuiltinSource::Precompiled);
        // A file this engine refuses (here: damaged) is replaced by a compile.
        let mut bytes = std::fs::read(&file).expect("read");
        let n = bytes.len();
        bytes.truncate(n / 2);
        std::fs::write(&file, bytes).expect("write");
        let (_, from) = load_builtin(&engine, Some(dir.path()), None).expect("falls back");
        assert_eq!(from, BuiltinSource::Refused);
    }

    /// The built-in component precompiled by `engine`, as `app.cwasm` in `dir`.
    fn write_precompiled(engine: &Engine, dir: &Path) -> std::path::PathBuf {
        let cwasm = dir.join("app.cwasm");
        std::fs::write(
            &cwasm,
            precompile(engine, BUILTIN_COMPONENT).expect("precompile"),
        )
        .expect("write");
        cwasm
    }

    #[test]
    fn precompiled_artifacts_round_trip() {
        let engine = test_engine();
        let dir = tempfile::tempdir().expect("tempdir");
        let cwasm = write_precompiled(&engine, dir.path());
        load_component(&engine, Some(&cwasm), None, NativeCode::Allowed).expect("loads");
        let refused = load_component(&engine, Some(&cwasm), None, NativeCode::Refused)
            .expect_err("native code only by choice");
        assert!(
            format!("{refused:#}").contains("--allow-precompiled"),
            "{refused:#}"
        );
        let wasm = dir.path().join("app.wasm");
        std::fs::write(&wasm, BUILTIN_COMPONENT).expect("write");
        load_component(&engine, Some(&wasm), None, NativeCode::Refused).expect("compiles");
        std::fs::write(&cwasm, b"garbage").expect("write");
        assert!(load_component(&engine, Some(&cwasm), None, NativeCode::Allowed).is_err());
    }

    /// A `.cwasm` someone else could have written is not loaded: one writable by
    /// others, one in a directory writable by others (not sticky), one behind a link.
    #[test]
    fn precompiled_files_others_could_write_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let engine = test_engine();
        let dir = tempfile::tempdir().expect("tempdir");
        let cwasm = write_precompiled(&engine, dir.path());
        let load = |p: &Path| load_component(&engine, Some(p), None, NativeCode::Allowed);
        load(&cwasm).expect("owner-only file in an owner-only directory");
        std::fs::set_permissions(&cwasm, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let e = load(&cwasm).expect_err("world-writable file");
        assert!(
            format!("{e:#}").contains("writable by group or others"),
            "{e:#}"
        );
        std::fs::set_permissions(&cwasm, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let e = load(&cwasm).expect_err("world-writable directory");
        assert!(
            format!("{e:#}").contains("writable by group or others"),
            "{e:#}"
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777))
            .expect("chmod");
        load(&cwasm).expect("a sticky directory like /tmp: others cannot replace our file");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let link = dir.path().join("link.cwasm");
        std::os::unix::fs::symlink(&cwasm, &link).expect("symlink");
        assert!(load(&link).is_err(), "a link is not followed");
    }
}
