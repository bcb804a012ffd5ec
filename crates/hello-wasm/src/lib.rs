//! The smallest useful wasi:http handler: imports only WASI, so `wasmtime serve`
//! runs it as it is, and the comparison with this host measures the two servers.

// The export glue `http_component` generates needs `unsafe`; this file has none.
#![allow(unsafe_code)]

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(_req: Request) -> impl IntoResponse {
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body("hello from the sandbox\n")
        .build()
}
