//! `host healthcheck`, the container's HEALTHCHECK: exit 0 when the admin port's
//! `/readyz` says ready, non-zero when nothing answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Guest, HOST, Opts, Server};
use std::process::Command;

fn healthcheck(admin: &str) -> std::process::ExitStatus {
    Command::new(HOST)
        .args([
            "healthcheck",
            "--timeout-ms",
            "2000",
            "--admin-listen",
            admin,
        ])
        .env("RUST_LOG", "warn")
        .status()
        .unwrap()
}

#[test]
fn healthy_when_ready_and_not_when_nothing_answers() {
    let s = Server::start(Opts::new(Guest::App));
    let admin = s.admin.trim_start_matches("http://").to_owned();
    assert!(healthcheck(&admin).success(), "ready host");
    // A port nobody listens on (bound, then released).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    assert_eq!(healthcheck(&addr).code(), Some(1), "nothing listening");
}
