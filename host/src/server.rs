//! Listeners, worker threads and shutdown.
//!
//! Each API worker is a single-threaded tokio runtime on its own thread with its own
//! listening socket on the same port (SO_REUSEPORT, so the kernel spreads
//! connections). Measured here this beat one multi-threaded runtime by 43-72 %:
//! no cross-thread wake-ups on the hot path. The cost is no work stealing, which is
//! why a running guest yields on every epoch tick. The admin listener has its own
//! thread, its own connection cap and reserved file descriptors, so probes answer
//! even when every worker is busy or the public port is flooded.

use crate::budget::ResponseClock;
use crate::telemetry::Metrics;
use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::task::{self, Poll};
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
        let cut_flag = Arc::new(AtomicBool::new(false));
        let mut io = tokio_io_timeout::TimeoutStream::new(ResetOnCut {
            tcp,
            cut: cut_flag.clone(),
        });
        io.set_write_timeout(Some(policy.limits.write_timeout));
        // The response being written starts and stops this clock (budget.rs); the
        // task below closes the connection when it runs out.
        let clock = ResponseClock::default();
        let service = {
            let clock = clock.clone();
            tower::ServiceExt::map_request(app.clone(), move |mut req: http::Request<_>| {
                req.extensions_mut().insert(clock.clone());
                req
            })
        };
        let conn = http.serve_connection(
            TokioIo::new(Box::pin(io)),
            TowerToHyperService::new(service),
        );
        let conn = graceful.watch(conn);
        let open = open.clone();
        let cut = policy
            .metrics
            .connections_cut
            .with_label_values(&["write_deadline"]);
        open.inc();
        tokio::spawn(async move {
            if let Err(e) = until_response_deadline(conn, &clock, &cut_flag).await {
                match e {
                    ConnEnd::WriteDeadline => cut.inc(),
                    // Timeouts, resets and malformed requests: the client's problem.
                    ConnEnd::Error(e) => {
                        tracing::debug!(error = %e, "connection closed with an error")
                    }
                }
            }
            open.dec();
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A client socket that closes with a reset (SO_LINGER 0) instead of a FIN when its
/// connection was cut: a graceful close would keep sending what the kernel still
/// buffers to the very client too slow to take it, for as long as it keeps reading.
struct ResetOnCut {
    tcp: tokio::net::TcpStream,
    cut: Arc<AtomicBool>,
}

impl Drop for ResetOnCut {
    fn drop(&mut self) {
        if self.cut.load(Ordering::Relaxed) {
            let _ = socket2::SockRef::from(&self.tcp).set_linger(Some(Duration::ZERO));
        }
    }
}

impl tokio::io::AsyncRead for ResetOnCut {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ResetOnCut {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

enum ConnEnd {
    WriteDeadline,
    Error(hyper::Error),
}

/// Drive the connection until it ends, or until a response has been in the writing
/// for longer than its deadline: then drop it with `cut` set, which resets the
/// socket and frees what it held.
async fn until_response_deadline<F>(
    conn: F,
    clock: &ResponseClock,
    cut: &AtomicBool,
) -> Result<(), ConnEnd>
where
    F: Future<Output = Result<(), hyper::Error>>,
{
    let mut conn = std::pin::pin!(conn);
    loop {
        let deadline = clock.deadline();
        let expired = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => return r.map_err(ConnEnd::Error),
            () = clock.changed() => {}
            () = expired => {
                // Re-read: the response may have finished at this very moment.
                if clock.deadline().is_some_and(|at| at <= std::time::Instant::now()) {
                    cut.store(true, Ordering::Relaxed);
                    return Err(ConnEnd::WriteDeadline);
                }
            }
        }
    }
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
