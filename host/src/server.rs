//! Listeners, worker threads and shutdown.
//!
//! Each API worker is a single-threaded tokio runtime on its own thread with its own
//! listening socket on the same port (SO_REUSEPORT, so the kernel spreads
//! connections). Measured here this beat one multi-threaded runtime by 43-72 %:
//! no cross-thread wake-ups on the hot path. The cost is no work stealing, which is
//! why a running guest yields on every epoch tick. The admin listener has its own
//! thread, its own connection cap and reserved file descriptors, so probes answer
//! even when every worker is busy or the public port is flooded.

use crate::telemetry::Metrics;
use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Bind `count` sockets to `addr` with SO_REUSEPORT. With port 0 the first socket
/// picks the port and the others join it.
pub fn bind_reuseport(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // Rebinding right after a restart must not fail on TIME_WAIT sockets.
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket
            .bind(&addr.into())
            .with_context(|| format!("binding {addr}"))?;
        socket.listen(1024)?;
        let listener: TcpListener = socket.into();
        addr = listener.local_addr()?;
        out.push(listener);
    }
    Ok(out)
}

pub fn bind_one(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    Ok(bind_reuseport(addr, 1)?.remove(0))
}

/// What one connection may hold, and for how long. Slow clients are attackers too:
/// without these a socket that sends a byte a minute keeps its connection forever.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time to receive a complete request head, counted from the moment the
    /// connection is ready for one. hyper restarts it after every response, so it
    /// is also the keep-alive idle timeout.
    pub header_read_timeout: Duration,
    /// Longest a response write may stay blocked on a client that does not read.
    pub write_timeout: Duration,
    /// hyper's read buffer, which bounds the request head (line + headers).
    pub max_head_bytes: usize,
}

/// One listener's connection policy: its limits and its share of file descriptors.
#[derive(Clone)]
pub struct ConnPolicy {
    /// `api` or `admin`: the metric label.
    pub listener: &'static str,
    pub limits: ConnLimits,
    /// Open connections allowed on this listener (all its worker sockets together).
    /// Past it, new connections are closed at once: a full process table of idle
    /// sockets must not take the file descriptors the store and the probes need.
    pub slots: Arc<Semaphore>,
    pub metrics: Metrics,
}

/// Serve `app` on `listener` in a new thread with its own current-thread runtime
/// until `stop` fires, then finish in-flight requests. `done` is told on exit.
pub fn spawn_worker(
    name: String,
    listener: TcpListener,
    app: Router,
    policy: ConnPolicy,
    stop: CancellationToken,
    done: mpsc::Sender<String>,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, worker = %name, "could not start a runtime");
                    let _ = done.send(name);
                    return;
                }
            };
            rt.block_on(async {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => serve(l, app, policy, stop).await,
                    Err(e) => {
                        tracing::error!(error = %e, worker = %name, "could not register the listener");
                    }
                }
            });
            let _ = done.send(name);
        })
        .context("spawning a worker thread")?;
    Ok(())
}

/// The accept loop: hyper's HTTP/1 server per connection, with the policy's limits.
/// (axum::serve has no knobs for header or write timeouts, nor a connection cap.)
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    policy: ConnPolicy,
    stop: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(policy.limits.header_read_timeout)
        // hyper refuses a buffer under 8 KiB.
        .max_buf_size(policy.limits.max_head_bytes.max(8192));
    let open = policy
        .metrics
        .connections
        .with_label_values(&[policy.listener]);
    let refused = policy
        .metrics
        .connections_refused
        .with_label_values(&[policy.listener]);
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                accept_error(policy.listener, &e).await;
                continue;
            }
        };
        let Ok(slot) = policy.slots.clone().try_acquire_owned() else {
            refused.inc();
            drop(tcp);
            continue;
        };
        // Responses are small and complete: send them now (no Nagle delay).
        let _ = tcp.set_nodelay(true);
        let mut io = tokio_io_timeout::TimeoutStream::new(tcp);
        io.set_write_timeout(Some(policy.limits.write_timeout));
        let conn = http.serve_connection(
            TokioIo::new(Box::pin(io)),
            TowerToHyperService::new(app.clone()),
        );
        let conn = graceful.watch(conn);
        let open = open.clone();
        open.inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Timeouts, resets and malformed requests: the client's problem.
                tracing::debug!(error = %e, "connection closed with an error");
            }
            open.dec();
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Accept fails for two reasons: the connection died before we took it (go on), or
/// the process is out of descriptors or memory (back off so we do not spin; the
/// connection cap exists so this is rare).
async fn accept_error(listener: &str, e: &std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) {
        return;
    }
    tracing::warn!(error = %e, listener, "accept failed; backing off");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Raise the soft open-file limit to the hard one (as Go's runtime does at start)
/// and fit the API connection cap inside it, leaving `reserve` descriptors for
/// everything else. Returns the cap to use.
pub fn fit_connection_cap(wanted: usize, reserve: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the open-file limit; keeping --max-connections as given");
            return wanted;
        }
    };
    let room = limit.saturating_sub(reserve).max(1);
    if wanted > room {
        tracing::warn!(
            max_connections = wanted,
            open_file_limit = limit,
            reserve,
            using = room,
            "--max-connections does not fit the open-file limit; lowered (raise `ulimit -n` to allow more)"
        );
        room
    } else {
        wanted
    }
}

/// Wait for `expected` workers to report done, at most `grace`.
pub fn wait_workers(done: &mpsc::Receiver<String>, expected: usize, grace: Duration) -> bool {
    let deadline = std::time::Instant::now() + grace;
    for _ in 0..expected {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if done.recv_timeout(left).is_err() {
            return false;
        }
    }
    true
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
