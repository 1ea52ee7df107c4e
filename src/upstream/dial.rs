//! Dialling a peer for an upstream session (edge pull, publish forward,
//! static push): TCP connect, TLS for `rtmps://` URLs, the client
//! handshake, and reads that give way to a periodic tick without losing
//! bytes. This is the one place a connection to an origin or push target
//! is made.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::TcpStream;

use crate::config::OriginUrl;
use crate::protocol::handshake::{ClientHandshake, HandshakeStatus};
use crate::transport::{ReadHalf, Stream, WriteHalf};

/// How often a live upstream session looks up from its socket.
pub const TICK: Duration = Duration::from_millis(250);
pub const READ_MIN: usize = 16 * 1024;

/// Why a dial failed, before any RTMP session existed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("tls: {0}")]
    Tls(String),
    #[error("handshake: {0}")]
    Handshake(std::io::Error),
    #[error("handshake timed out")]
    HandshakeTimeout,
}

/// A connected peer after the RTMP handshake.
pub struct Dialed {
    pub rd: ReadHalf,
    pub wr: WriteHalf,
    /// The socket, for a forced shutdown.
    pub fd: RawFd,
}

/// Connects to `origin` (with TLS when it is `rtmps://`, using `tls`) and
/// completes the RTMP handshake, each step within `timeout`. Bytes the
/// peer sent after its S2 are left in `buf`.
pub async fn connect(
    origin: &OriginUrl,
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
    buf: &mut BytesMut,
) -> Result<Dialed, DialError> {
    let started = std::time::Instant::now();
    let addr = resolve(&origin.addr, timeout).await?;
    let left = timeout.saturating_sub(started.elapsed());
    let connect = TcpStream::connect_addr(addr);
    let tcp = match monoio::time::timeout(left, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(DialError::Connect(e)),
        Err(_) => return Err(DialError::ConnectTimeout),
    };
    let _ = tcp.set_nodelay(true);
    let stream = if origin.tls {
        let config = tls.ok_or_else(|| DialError::Tls("no usable TLS client settings".into()))?;
        let name = origin
            .server_name()
            .ok_or_else(|| DialError::Tls(format!("{:?} is not a TLS server name", origin.host)))?;
        let hs = Stream::connect_tls(tcp, config.clone(), name);
        match monoio::time::timeout(timeout, hs).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(DialError::Tls(e.to_string())),
            Err(_) => return Err(DialError::Tls("handshake timed out".into())),
        }
    } else {
        Stream::plain(tcp)
    };
    let fd = stream.fd();
    let (mut rd, mut wr) = stream.into_split();
    match monoio::time::timeout(timeout, handshake(&mut rd, &mut wr, buf)).await {
        Ok(Ok(())) => Ok(Dialed { rd, wr, fd }),
        Ok(Err(e)) => Err(DialError::Handshake(e)),
        Err(_) => Err(DialError::HandshakeTimeout),
    }
}

/// `host:port` to a socket address. An IP address is used as it is; a
/// name is looked up on a short-lived thread, so a slow resolver never
/// stalls the core (and the lookup is bounded by `timeout`).
async fn resolve(addr: &str, timeout: Duration) -> Result<std::net::SocketAddr, DialError> {
    if let Ok(a) = addr.parse::<std::net::SocketAddr>() {
        return Ok(a);
    }
    let (tx, rx) = futures_channel::oneshot::channel();
    let name = addr.to_string();
    std::thread::Builder::new()
        .name("dns".into())
        .spawn(move || {
            use std::net::ToSocketAddrs;
            let _ = tx.send(name.to_socket_addrs().map(|mut a| a.next()));
        })
        .map_err(DialError::Connect)?;
    let not_found = || {
        DialError::Connect(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{addr}: no address"),
        ))
    };
    match monoio::time::timeout(timeout, rx).await {
        Ok(Ok(Ok(Some(a)))) => Ok(a),
        Ok(Ok(Ok(None))) | Ok(Err(_)) => Err(not_found()),
        Ok(Ok(Err(e))) => Err(DialError::Connect(e)),
        Err(_) => Err(DialError::ConnectTimeout),
    }
}

/// Client TLS settings for `edge` if any of `urls` is `rtmps://` (None,
/// logged, when `edge.tls_ca_file` cannot be read: those dials fail).
pub fn tls_for(
    urls: &[OriginUrl],
    edge: &crate::config::EdgeSection,
) -> Option<Arc<rustls::ClientConfig>> {
    if !urls.iter().any(|o| o.tls) {
        return None;
    }
    crate::transport::client_config(&edge.tls_ca_file, edge.tls_verify)
        .map_err(|e| tracing::warn!(error = %e, "rtmps peers unusable"))
        .ok()
}

/// C0+C1 out, S0+S1+S2 in, C2 out; bytes after S2 stay in `buf`.
/// Complex (FP9) C1, which simple-only servers also accept.
async fn handshake(
    rd: &mut ReadHalf,
    wr: &mut WriteHalf,
    buf: &mut BytesMut,
) -> std::io::Result<()> {
    let mut hs = ClientHandshake::new(true);
    let mut out = BytesMut::with_capacity(1537);
    hs.start(&mut out);
    loop {
        if !out.is_empty() {
            wr.write_all(out.split().freeze()).await?;
        }
        let status = hs
            .feed(buf, &mut out)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        if status == HandshakeStatus::Done {
            if !out.is_empty() {
                wr.write_all(out.split().freeze()).await?;
            }
            return Ok(());
        }
        if !out.is_empty() {
            continue;
        }
        reserve(buf);
        let (res, back) = rd.read(std::mem::take(buf)).await;
        *buf = back;
        if res? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

pub fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_MIN / 2 {
        buf.reserve(READ_MIN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn addresses_resolve_off_the_core() {
        let t = Duration::from_secs(2);
        let ip = block_on(resolve("127.0.0.1:1935", t)).unwrap();
        assert_eq!(ip, "127.0.0.1:1935".parse().unwrap());
        let named = block_on(resolve("localhost:1936", t)).unwrap();
        assert!(named.ip().is_loopback() && named.port() == 1936, "{named}");
        // A name that cannot resolve fails within the bound, whatever the resolver does.
        let started = std::time::Instant::now();
        assert!(block_on(resolve(
            "no-such-host.invalid:1",
            Duration::from_millis(500)
        ))
        .is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
