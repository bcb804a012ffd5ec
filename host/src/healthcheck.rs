//! `host healthcheck`: the container's HEALTHCHECK without a shell or curl in the
//! image. Asks the admin port's `/readyz` on loopback; exit 0 means ready.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

pub fn run(admin: SocketAddr, timeout: Duration) -> ExitCode {
    let target = on_loopback(admin);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "could not start a runtime");
            return ExitCode::FAILURE;
        }
    };
    // The timer must be made inside the runtime.
    match rt.block_on(async { tokio::time::timeout(timeout, readyz(target)).await }) {
        Ok(Ok(200)) => ExitCode::SUCCESS,
        Ok(Ok(status)) => {
            tracing::warn!(%target, status, "not ready");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            tracing::warn!(%target, error = format!("{e:#}"), "not ready");
            ExitCode::FAILURE
        }
        Err(_) => {
            tracing::warn!(%target, timeout_ms = timeout.as_millis() as u64, "not ready: no answer in time");
            ExitCode::FAILURE
        }
    }
}

/// The admin listener's address as seen from inside the container: a wildcard bind
/// is reached on loopback.
fn on_loopback(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

async fn readyz(addr: SocketAddr) -> anyhow::Result<u16> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(conn);
    let req = http::Request::get("/readyz")
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let resp = sender.send_request(req).await.context("GET /readyz")?;
    Ok(resp.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::on_loopback;

    #[test]
    fn wildcard_binds_are_reached_on_loopback() {
        let a = on_loopback("0.0.0.0:9090".parse().expect("addr"));
        assert_eq!(a.to_string(), "127.0.0.1:9090");
        let a = on_loopback("[::]:9090".parse().expect("addr"));
        assert_eq!(a.to_string(), "[::1]:9090");
        let a = on_loopback("10.1.2.3:9090".parse().expect("addr"));
        assert_eq!(a.to_string(), "10.1.2.3:9090");
    }
}
