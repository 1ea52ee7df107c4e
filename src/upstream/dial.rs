//! Dialling a peer for an upstream session (edge pull, publish forward,
//! static push): TCP connect, TLS for `rtmps://` URLs, the client
//! handshake, and reads that give way to a periodic tick without losing
//! bytes. This is the one place a connection to an origin or push target
//! is made.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::io::Canceller;
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
    let connect = TcpStream::connect(origin.addr.as_str());
    let tcp = match monoio::time::timeout(timeout, connect).await {
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

/// Reads once, or returns `Ok(None)` after [`TICK`] without data. The read
/// is cancelled rather than dropped, so no received byte is ever lost.
pub async fn read_tick(
    rd: &mut ReadHalf,
    mut buf: BytesMut,
) -> (std::io::Result<Option<usize>>, BytesMut) {
    reserve(&mut buf);
    let canceller = Canceller::new();
    let read = rd.read_cancelable(buf, canceller.handle());
    let mut read = std::pin::pin!(read);
    let first = monoio::select! {
        r = &mut read => Some(r),
        _ = monoio::time::sleep(TICK) => None,
    };
    let (res, buf) = match first {
        Some(r) => r,
        None => {
            let _ = canceller.cancel();
            read.await
        }
    };
    match res {
        Ok(n) => (Ok(Some(n)), buf),
        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => (Ok(None), buf),
        Err(e) => (Err(e), buf),
    }
}
