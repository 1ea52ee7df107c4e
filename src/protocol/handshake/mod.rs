//! RTMP handshake, both roles, sans-IO.
//!
//! The server answers the Flash Player 9 "complex" handshake when the
//! client's C1 carries a valid digest, and the plain one otherwise; it never
//! mixes the two, because ffmpeg and librtmp check S1's digest and S2's
//! signature whenever S1's version bytes are non-zero. The client can speak
//! either and accepts a plain answer from servers (such as `ffmpeg -listen`)
//! that know nothing else.
//!
//! Both sides read incrementally: bytes may arrive one at a time or together
//! with the first chunks, and whatever follows the handshake is left in the
//! caller's buffer for the chunk decoder. Memory is fixed: at most one
//! 1537-byte packet is buffered per side.

mod client;
mod digest;
mod server;
#[cfg(test)]
mod tests;

use bytes::{Buf, BytesMut};

pub use client::ClientHandshake;
pub use server::ServerHandshake;

/// The only protocol version spoken: plain RTMP. (6 and 8 are RTMPE, which
/// needs encryption this relay does not do, so they are refused.)
pub const RTMP_VERSION: u8 = 3;

/// Length of C1/S1/C2/S2.
pub const HANDSHAKE_PACKET_LEN: usize = digest::PACKET_LEN;

/// Why a handshake failed. After an error the handshake stays failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// C0/S0 asked for a version other than [`RTMP_VERSION`].
    #[error("unsupported RTMP version {0}")]
    UnsupportedVersion(u8),
    /// Client side: S1 claims a complex handshake but its digest is wrong in both schemas.
    #[error("server S1 digest does not validate in either schema")]
    InvalidDigest,
    /// Client side: `feed` was called before `start`.
    #[error("client handshake fed before start")]
    NotStarted,
    /// `feed` was called again after an error.
    #[error("handshake already failed")]
    Failed,
}

/// Which handshake was negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// RTMP 1.0 plain handshake: zero version bytes, echoed packets.
    Simple,
    /// Flash Player 9 digest handshake. `schema` 0 puts the digest in the
    /// block at bytes 8..772, schema 1 in the block at 772..1536.
    Complex { schema: u8 },
}

/// Progress after a `feed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// Needs more input.
    InProgress,
    /// Finished; any bytes left in the input belong to the chunk stream.
    Done,
}

/// Fills a fixed-size packet from the caller's buffer across several feeds.
struct Collector<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Collector<N> {
    fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// Takes as many bytes as still missing; true once the packet is complete.
    fn fill(&mut self, input: &mut BytesMut) -> bool {
        let take = (N - self.len).min(input.len());
        if let (Some(dst), Some(src)) = (
            self.buf.get_mut(self.len..self.len + take),
            input.get(..take),
        ) {
            dst.copy_from_slice(src);
        }
        input.advance(take);
        self.len += take;
        self.len == N
    }

    /// Bytes collected so far.
    fn filled(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// Splits a complete C0+C1 or S0+S1 into the version byte and the packet.
fn split_version(buf: &[u8; 1 + digest::PACKET_LEN]) -> (u8, digest::Packet) {
    let mut packet = [0u8; digest::PACKET_LEN];
    packet.copy_from_slice(&buf[1..]);
    (buf[0], packet)
}
