//! Dialling a peer for an upstream session (edge pull, publish forward,
//! static push): TCP connect, the client handshake, and reads that give
//! way to a periodic tick without losing bytes.
//!
//! This is the one place a connection to an origin or push target is made,
//! so it is where the TLS client plugs in for `rtmps://` URLs: today
//! [`connect`] refuses them (and configuration refuses them earlier, see
//! `config::RTMPS_AVAILABLE`).

use std::time::Duration;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;

use crate::config::OriginUrl;
use crate::protocol::handshake::{ClientHandshake, HandshakeStatus};

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
    #[error("rtmps is not available in this build")]
    TlsUnavailable,
    #[error("handshake: {0}")]
    Handshake(std::io::Error),
    #[error("handshake timed out")]
    HandshakeTimeout,
}

/// Connects to `origin` and completes the RTMP handshake, each step within
/// `timeout`. Bytes the peer sent after its S2 are left in `buf`.
pub async fn connect(
    origin: &OriginUrl,
    timeout: Duration,
    buf: &mut BytesMut,
) -> Result<TcpStream, DialError> {
    if origin.tls {
        // The TLS connector goes here: wrap the TCP stream, then hand the
        // TLS stream to the same handshake and sessions.
        return Err(DialError::TlsUnavailable);
    }
    let connect = TcpStream::connect(origin.addr.as_str());
    let mut stream = match monoio::time::timeout(timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(DialError::Connect(e)),
        Err(_) => return Err(DialError::ConnectTimeout),
    };
    let _ = stream.set_nodelay(true);
    match monoio::time::timeout(timeout, handshake(&mut stream, buf)).await {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(e)) => Err(DialError::Handshake(e)),
        Err(_) => Err(DialError::HandshakeTimeout),
    }
}

/// C0+C1 out, S0+S1+S2 in, C2 out; bytes after S2 stay in `buf`.
/// Complex (FP9) C1, which simple-only servers also accept.
async fn handshake(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<()> {
    let mut hs = ClientHandshake::new(true);
    let mut out = BytesMut::with_capacity(1537);
    hs.start(&mut out);
    loop {
        if !out.is_empty() {
            let (res, _) = stream.write_all(out.split().freeze()).await;
            res?;
        }
        let status = hs
            .feed(buf, &mut out)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        if status == HandshakeStatus::Done {
            if !out.is_empty() {
                let (res, _) = stream.write_all(out.split().freeze()).await;
                res?;
            }
            return Ok(());
        }
        if !out.is_empty() {
            continue;
        }
        reserve(buf);
        let len = buf.len();
        let (res, slice) = stream.read(std::mem::take(buf).slice_mut(len..)).await;
        *buf = slice.into_inner();
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
    stream: &mut TcpStream,
    mut buf: BytesMut,
) -> (std::io::Result<Option<usize>>, BytesMut) {
    reserve(&mut buf);
    let len = buf.len();
    let canceller = Canceller::new();
    let read = stream.cancelable_read(buf.slice_mut(len..), canceller.handle());
    let mut read = std::pin::pin!(read);
    let first = monoio::select! {
        r = &mut read => Some(r),
        _ = monoio::time::sleep(TICK) => None,
    };
    let (res, slice) = match first {
        Some(r) => r,
        None => {
            let _ = canceller.cancel();
            read.await
        }
    };
    let buf = slice.into_inner();
    match res {
        Ok(n) => (Ok(Some(n)), buf),
        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => (Ok(None), buf),
        Err(e) => (Err(e), buf),
    }
}
