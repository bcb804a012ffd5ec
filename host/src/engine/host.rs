//! `Host`: the per-request store state, as in `wasmtime serve`. It holds the WASI
//! and wasi:http contexts (granting nothing), the memory limiter, and the
//! `documents` and (opt-in) key-value contexts.

use crate::budget::Charge;
use crate::data::DocumentsCtx;
use crate::keyvalue::{KeyValueCtx, KeyValueView};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

pub struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: DenyOutbound,
    pub(super) limiter: Limiter,
    pub(crate) documents: DocumentsCtx,
    key_value: KeyValueCtx,
}

impl Host {
    pub(super) fn new(
        documents: DocumentsCtx,
        key_value: KeyValueCtx,
        memory_bytes: usize,
        memory_charge: Charge,
    ) -> Self {
        // Nothing is granted: no env, args, preopened dirs, sockets or DNS.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: DenyOutbound,
            limiter: Limiter {
                memory_bytes,
                denied: false,
                charge: memory_charge,
                linear_memory: 0,
                over_budget: false,
            },
            documents,
            key_value,
        }
    }

    pub(crate) fn key_value(&mut self) -> KeyValueView<'_> {
        KeyValueView {
            ctx: &mut self.key_value,
            table: &mut self.table,
        }
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound HTTP from the guest is denied: the host owns every connection.
struct DenyOutbound;

impl WasiHttpHooks for DenyOutbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        tracing::warn!(authority = ?request.uri().authority().map(|a| a.as_str().to_owned()), "denied outbound HTTP from the component");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// Caps linear memory growth and remembers a refusal, so a trap that follows can be
/// reported as "memory limit" (the instance's own limit) or as "overloaded" (the
/// process-wide budget, see `budget.rs`) rather than a generic trap. The memory
/// is charged to the budget as it grows, and given back when the store is dropped.
pub(super) struct Limiter {
    memory_bytes: usize,
    pub(super) denied: bool,
    charge: Charge,
    /// The instance's linear memories, all together.
    linear_memory: usize,
    pub(super) over_budget: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.denied = true;
            return Ok(false);
        }
        // The charge taken at admission covers the instance's memories (all of them
        // together) up to its size; growth past it is charged as it happens.
        let total = self.linear_memory + desired.saturating_sub(current);
        let more = total.saturating_sub(self.charge.bytes());
        if more > 0 && !self.charge.try_grow_running(more) {
            self.over_budget = true;
            return Ok(false);
        }
        self.linear_memory = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
