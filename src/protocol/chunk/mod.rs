//! RTMP chunk stream: splitting messages into chunks and reassembling them.
//!
//! The decoder is incremental (bytes in, whole messages out) and keeps the
//! read buffer's memory for single-chunk messages, so a relay can forward
//! media without copying it. The encoder always starts a message with a full
//! type-0 header, so one serialized message can be sent to any player no
//! matter what that player's chunk-stream state is.
//!
//! Memory is bounded per connection by [`ChunkLimits`]: a message length is
//! checked at its header, a chunk size by Set Chunk Size, and the bytes held
//! for incomplete messages (over all chunk streams, plus the chunk being
//! waited for) against `max_reassembly_bytes` before anything is allocated.
//!
//! Choices where peers disagree (documented here because they decide interop):
//! - A type-3 chunk that *starts* a message after a type-0 header reuses the
//!   type-0 timestamp as its delta (the spec's note in 5.3.1.2.4, and what
//!   ffmpeg and SRS do); nginx-rtmp would reuse a delta of 0 instead.
//! - A type-1 header on a chunk stream never seen before is accepted with
//!   message stream id 0 and a base timestamp of 0: librtmp (rtmpdump, old
//!   OBS builds) sends its first control and media messages that way.
//!   Type 2 and 3 with no previous header are errors.
//! - The extended timestamp on type-3 chunks is repeated by some senders and
//!   omitted by others: the decoder peeks and consumes the 4 bytes only when
//!   they match the timestamp it expects.

mod decoder;
mod encoder;

#[cfg(test)]
mod limit_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use decoder::{Admission, ChunkDecoder};
pub use encoder::{encode_message, encoded_len};

/// The chunk size every RTMP connection starts with, in both directions.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest legal chunk size: the top bit of Set Chunk Size must be zero.
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Largest chunk stream id expressible in a basic header.
pub const MAX_CSID: u32 = 65_599;
/// Smallest chunk stream id usable for messages (0 and 1 select the long forms).
pub const MIN_CSID: u32 = 2;
/// The 24-bit timestamp value that announces a 4-byte extended timestamp.
pub(crate) const EXTENDED_TS_MARKER: u32 = 0x00FF_FFFF;

/// Message type of Set Chunk Size, applied by the decoder itself.
pub const TYPE_SET_CHUNK_SIZE: u8 = 1;
/// Message type of Abort Message, applied by the decoder itself.
pub const TYPE_ABORT: u8 = 2;

/// One reassembled RTMP message with its chunk-level addressing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// Chunk stream it arrived on (useful to answer on the same one).
    pub csid: u32,
    /// Absolute timestamp in milliseconds; wraps at 2^32.
    pub timestamp: u32,
    pub type_id: u8,
    /// Message stream id (0 for control and NetConnection commands).
    pub stream_id: u32,
    pub payload: Bytes,
}

/// Resource limits of one decoder; every one is an attack surface.
#[derive(Debug, Clone)]
pub struct ChunkLimits {
    /// Largest message length accepted in a header (checked before any
    /// allocation). The wire format caps it at 2^24-1 anyway.
    pub max_message_size: u32,
    /// Most distinct chunk stream ids that may carry state at once.
    pub max_chunk_streams: usize,
    /// Largest chunk size the peer may announce with Set Chunk Size. A large
    /// chunk size costs no memory by itself: a chunk is never buffered past
    /// what the message length and `max_reassembly_bytes` allow.
    pub max_chunk_size: u32,
    /// Bytes one connection may hold for messages not yet complete: the
    /// reassembly buffers of all its chunk streams plus the chunk it is
    /// waiting for. Checked before anything is allocated. Without it, one
    /// peer could hold `max_chunk_streams` x `max_message_size` (1 GiB with
    /// the defaults).
    pub max_reassembly_bytes: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self {
            max_message_size: 4 * 1024 * 1024,
            max_chunk_streams: 64,
            max_chunk_size: MAX_CHUNK_SIZE,
            max_reassembly_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Why the chunk stream could not be decoded; the connection should close.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("message of {length} bytes on chunk stream {csid} exceeds the limit of {max}")]
    MessageTooLarge { csid: u32, length: u32, max: u32 },
    #[error("more than {max} chunk streams in use (new chunk stream {csid})")]
    TooManyChunkStreams { csid: u32, max: usize },
    #[error("invalid chunk size {0} (must be 1..=2147483647)")]
    InvalidChunkSize(u32),
    #[error("chunk size {size} exceeds the limit of {max}")]
    ChunkSizeTooLarge { size: u32, max: u32 },
    #[error("{needed} bytes of incomplete messages on chunk stream {csid} would exceed the reassembly budget of {max} bytes")]
    ReassemblyBudget {
        csid: u32,
        needed: usize,
        max: usize,
    },
    #[error("compressed chunk header on chunk stream {csid} without a previous full header")]
    NoPreviousHeader { csid: u32 },
    #[error("chunk of format {fmt} on chunk stream {csid} in the middle of a message")]
    HeaderInsideMessage { csid: u32, fmt: u8 },
    #[error("protocol control message type {type_id} with a {len}-byte payload")]
    InvalidControlMessage { type_id: u8, len: usize },
    #[error("message type {type_id} of {length} bytes refused at its header: {why}")]
    NotAdmitted {
        type_id: u8,
        length: u32,
        why: &'static str,
    },
}

/// Length of the basic header that carries `csid` (ids out of range are
/// clamped the same way the encoder clamps them).
pub(crate) fn basic_header_len(csid: u32) -> usize {
    match clamp_csid(csid) {
        MIN_CSID..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

/// Keeps a caller's csid inside the encodable range instead of emitting a
/// basic header that a receiver would misread.
pub(crate) fn clamp_csid(csid: u32) -> u32 {
    debug_assert!(
        (MIN_CSID..=MAX_CSID).contains(&csid),
        "csid {csid} out of range"
    );
    csid.clamp(MIN_CSID, MAX_CSID)
}
