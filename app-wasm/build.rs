//! Link settings of the component's linear memory (measured in docs/performance.md).

fn main() {
    // Off wasm (the unit tests run natively) the platform's defaults apply.
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("wasm32") {
        return;
    }
    // A 256 KiB stack, not Rust's default 1 MiB. The deepest a request goes is
    // serde_json's parse at its 128-level limit, which needs between 32 and 64 KiB
    // (host/tests/api.rs `deeply_nested_json_is_a_400_not_a_trap` fails at 32).
    println!("cargo:rustc-link-arg-cdylib=-zstack-size=262144");
    // The memory an instance starts with stays 18 pages, what the 1 MiB stack made
    // it: the 768 KiB the stack gave up are heap, so a list of 20 no longer grows
    // memory. Growing costs an mprotect, and another when the next instance starts
    // in the slot, smaller again (list of 20: 1.11-1.20x). Same admission charge
    // as before (host/src/engine/mod.rs `admission_charge`).
    println!("cargo:rustc-link-arg-cdylib=--initial-memory=1179648");
}
