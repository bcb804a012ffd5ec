//! Graceful shutdown: on SIGTERM the host stops accepting, lets in-flight requests
//! finish, and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Guest, Opts, Server, client};
use std::time::Duration;

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
