//! Graceful shutdown: on SIGTERM the host drains for SHUTDOWN_DELAY_SECS (not
//! ready, still serving), then stops accepting, lets in-flight requests finish,
//! and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Guest, Opts, Server, client};
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let mut s = Server::start(Opts::new(Guest::Fault).arg("--deadline-ms").arg("1500"));
    let c = client();
    // A slow request (a guest that runs until its deadline) is in flight...
    let slow = {
        let (c, url) = (c.clone(), s.url("/fault/loop"));
        tokio::spawn(async move { c.get(url).send().await.map(|r| r.status().as_u16()) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let api = s.api.clone();
    let status = tokio::task::spawn_blocking(move || s.terminate())
        .await
        .unwrap();
    // ...and still gets its answer, rather than a reset connection.
    assert_eq!(slow.await.unwrap().unwrap(), 504);
    assert!(status.success(), "clean exit: {status:?}");
    // And nothing listens any more.
    assert!(c.get(format!("{api}/fault/ok")).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_before_the_listeners_close() {
    // What a rolling update needs: between SIGTERM and the load balancer taking the
    // instance out, new connections still get answers (the real node's rolling
    // update refused 39 of 5000 requests without this), while /readyz says 503.
    let mut s = Server::start(Opts::new(Guest::Fault).env("SHUTDOWN_DELAY_SECS", "2"));
    let c = client();
    // SIGTERM's handler is installed once the host has logged `listening`; a
    // signal before that ends the process as the default action does.
    while !s.log_text().contains("listening") {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(s.pid().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    let mut drained = false;
    while t0.elapsed() < Duration::from_millis(1500) {
        let ready = c.get(s.admin_url("/readyz")).send().await.unwrap();
        if ready.status() == 503 {
            let body: serde_json::Value = ready.json().await.unwrap();
            assert_eq!(body["draining"], true, "{body}");
            // A new connection, not one kept alive: the listener still accepts.
            let fresh = common::client();
            let ok = fresh.get(s.url("/fault/ok")).send().await.unwrap();
            assert_eq!(ok.status(), 200);
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(drained, "/readyz never said draining within the delay");
    // Once the delay has run out, the listeners are closed and the process gone
    // (a second SIGTERM would have ended the delay early: none is sent before).
    tokio::time::sleep(Duration::from_millis(3000).saturating_sub(t0.elapsed())).await;
    let api = s.api.clone();
    assert!(
        common::client()
            .get(format!("{api}/fault/ok"))
            .send()
            .await
            .is_err()
    );
    let status = tokio::task::spawn_blocking(move || s.terminate())
        .await
        .unwrap();
    assert!(status.success(), "clean exit: {status:?}");
}
