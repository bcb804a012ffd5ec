//! Builds the guest components with a nested cargo so `cargo run -p host` needs
//! nothing else. The nested build uses its own target dir (sharing the outer one
//! would deadlock on cargo's lock) and a clean RUSTFLAGS (host flags are not wasm's).
//!
//! It also makes the Spin build of the tasks API: the handler with its `documents`
//! import satisfied by `adapters/documents-kv`, composed the way `wac plug` does it
//! (wac-graph, the library behind wac-cli), so tests can run what `spin up` runs.

// A build script reports failure by panicking, so `expect` is the right tool here.
#![allow(clippy::expect_used)]

use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("host/ lives in the workspace root")
        .to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for p in [
        "app-wasm/src",
        "app-wasm/Cargo.toml",
        "app-wasm/build.rs",
        "app-wasm/openapi.json",
        "crates/fault-wasm/src",
        "crates/fault-wasm/Cargo.toml",
        "adapters/documents-kv/src",
        "adapters/documents-kv/Cargo.toml",
        "crates/doc-query/src",
        "wit",
        "Cargo.lock",
        // [profile.wasm] lives here: a changed profile must rebuild the guests.
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let target_dir = root.join("target").join("guest");
    ensure_wasm_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--locked",
            "--profile",
            "wasm",
            "--target",
            "wasm32-wasip2",
            "-p",
            "app-wasm",
            "-p",
            "fault-wasm",
            "-p",
            "documents-kv",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("running the nested cargo build of the components");
    assert!(
        status.success(),
        "building the wasm components failed (see the cargo output above)"
    );
    let built = target_dir.join("wasm32-wasip2").join("wasm");
    copy(&built.join("app_wasm.wasm"), &out.join("app.wasm"));
    copy(&built.join("fault_wasm.wasm"), &out.join("fault.wasm"));
    copy(
        &built.join("documents_kv.wasm"),
        &out.join("documents-kv.wasm"),
    );
    println!(
        "cargo:rustc-env=DOCUMENTS_KV_COMPONENT={}",
        out.join("documents-kv.wasm").display()
    );
    let composed = compose(
        &built.join("app_wasm.wasm"),
        &built.join("documents_kv.wasm"),
    );
    std::fs::write(out.join("spin-app.wasm"), &composed).expect("writing the composed component");
    // Also beside the inputs, where `.ci/run` checks that `wac plug` makes the same bytes.
    std::fs::write(target_dir.join("spin-app.wasm"), &composed)
        .expect("writing the composed component");
    println!(
        "cargo:rustc-env=SPIN_APP_COMPONENT={}",
        out.join("spin-app.wasm").display()
    );
    // Tests find the fault component here.
    println!(
        "cargo:rustc-env=FAULT_COMPONENT={}",
        out.join("fault.wasm").display()
    );
    println!(
        "cargo:rustc-env=APP_COMPONENT={}",
        out.join("app.wasm").display()
    );
    // Names the built-in component's compiled form (`host precompile --dir`).
    let app = std::fs::read(out.join("app.wasm")).expect("reading the built component");
    let digest: String = sha2::Sha256::digest(&app)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=APP_COMPONENT_DIGEST={digest}");
    // The triple a portable (baseline CPU) `.cwasm` is compiled for.
    println!(
        "cargo:rustc-env=HOST_TARGET={}",
        std::env::var("TARGET").expect("cargo sets TARGET")
    );
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.split_whitespace().nth(1).unwrap_or("unknown").to_owned())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=HOST_RUSTC_VERSION={version}");
}

const WASM_TARGET: &str = "wasm32-wasip2";

/// Makes sure the active toolchain can build for `wasm32-wasip2` before the nested
/// build needs it. rustup adds the `targets` of rust-toolchain.toml by itself only
/// when auto-install is on; with `RUSTUP_AUTO_INSTALL=0` (locked-down CI images and
/// laptops) it adds nothing, and the nested build would die on a missing `core`.
/// So, like `cargo component`, install the target explicitly when rustup manages
/// this toolchain. Nothing is downloaded when the target is already there.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if wasm_target_installed(&rustc) {
        return;
    }
    // rustup's proxies set RUSTUP_TOOLCHAIN for the processes they start, so a plain
    // `rustup target add` below acts on the toolchain that is building us.
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok();
    let rustup = toolchain.as_ref().and_then(|_| {
        Command::new("rustup")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
    });
    let Some(_) = rustup else {
        panic!(
            "\n\nThe Rust standard library for {WASM_TARGET} is missing, and this Rust was not \
             no rustup manages this toolchain, so the build cannot add it.\n\
             The handlers are compiled to {WASM_TARGET}; install that target for `{rustc}` \
             (for example, from your distribution's rust-std package for wasm32-wasip2), or \
             install Rust with rustup (https://rustup.rs) and run:\n\n    \
             rustup toolchain install   # in this repository: installs rust-toolchain.toml's \
             toolchain with {WASM_TARGET}\n\n"
        );
    };
    let toolchain = toolchain.unwrap_or_default();
    println!(
        "cargo:warning=the {WASM_TARGET} target is missing from toolchain {toolchain}: \
         running `rustup target add {WASM_TARGET} --toolchain {toolchain}` (one download, once)"
    );
    eprintln!("build.rs: rustup target add {WASM_TARGET} --toolchain {toolchain}");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET, "--toolchain", &toolchain])
        .status()
        .expect("running rustup");
    assert!(
        status.success() && wasm_target_installed(&rustc),
        "\n\n`rustup target add {WASM_TARGET} --toolchain {toolchain}` failed (see above). \
         Run it by hand once (it needs to reach the Rust distribution server), then build again.\n\n"
    );
}

/// The target is usable when its `core` is in the sysroot rustc would search.
fn wasm_target_installed(rustc: &str) -> bool {
    let Some(libdir) = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
    else {
        return false;
    };
    std::fs::read_dir(libdir.trim()).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
    })
}

/// `wac plug <socket> --plug <plug>`: the plug's exports satisfy the socket's imports
/// of the same name. Package names are the ones wac-cli gives, so the output is
/// byte-for-byte what the CLI writes.
fn compose(socket: &Path, plug: &Path) -> Vec<u8> {
    use wac_graph::{CompositionGraph, EncodeOptions, types::Package};
    let mut graph = CompositionGraph::new();
    let bytes = std::fs::read(socket).expect("reading the handler component");
    let socket = Package::from_bytes("socket", None, bytes, graph.types_mut())
        .expect("parsing the handler component");
    let socket = graph
        .register_package(socket)
        .expect("registering the handler");
    let name = plug
        .file_stem()
        .expect("the adapter path has a file name")
        .to_string_lossy();
    let plug = Package::from_file(&format!("plug:{name}"), None, plug, graph.types_mut())
        .expect("parsing the adapter component");
    let plug = graph
        .register_package(plug)
        .expect("registering the adapter");
    wac_graph::plug(&mut graph, vec![plug], socket).expect("plugging the adapter into the handler");
    graph
        .encode(EncodeOptions::default())
        .expect("encoding the composed component")
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
}
