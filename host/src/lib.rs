//! The host's capabilities, one module each (as Spin's factor crates): the HTTP
//! ingress and its limits, the sandbox (wasmtime), the data interface the guest gets
//! and its stores, the key-value capability, health, metrics and logs. The binary
//! (`main.rs`) wires them; the end-to-end and conformance suites under `tests/` use
//! them from outside, as any caller would.

pub mod admin;
pub mod bench_native;
pub mod budget;
pub mod config;
pub mod data;
pub mod engine;
pub mod healthcheck;
pub mod ingress;
pub mod keyvalue;
pub mod server;
pub mod telemetry;
