//! How a subscriber's frames go on the wire. The hub serializes each frame
//! once as RTMP chunks for the common case (message stream 1, the node's
//! chunk size); a framing either shares those bytes or makes its own.

use bytes::Bytes;

use crate::hub::{Frame, PLAY_STREAM_ID};

/// A subscriber's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// RTMP chunks of a play, on the player's message stream.
    RtmpPlay { stream_id: u32, chunk_size: u32 },
    /// RTMP chunks the way a publisher sends them (an upstream publish), on
    /// the message stream the target gave; metadata as `@setDataFrame`.
    RtmpPublish { stream_id: u32, chunk_size: u32 },
}

impl Default for Framing {
    fn default() -> Self {
        Framing::RtmpPlay {
            stream_id: PLAY_STREAM_ID,
            chunk_size: 4096,
        }
    }
}

impl Framing {
    /// `frame` in this framing: the shared bytes where they fit, else
    /// serialized for this subscriber.
    pub fn bytes(&self, frame: &Frame) -> Bytes {
        match *self {
            Framing::RtmpPlay {
                stream_id,
                chunk_size,
            } => frame.chunks_for(stream_id, chunk_size),
            Framing::RtmpPublish {
                stream_id,
                chunk_size,
            } => frame.publish_chunks(stream_id, chunk_size),
        }
    }

    /// The message stream and chunk size this subscriber's peer expects.
    pub fn stream(&self) -> (u32, u32) {
        match *self {
            Framing::RtmpPlay {
                stream_id,
                chunk_size,
            }
            | Framing::RtmpPublish {
                stream_id,
                chunk_size,
            } => (stream_id, chunk_size),
        }
    }

    /// Whether the frame's shared bytes are this framing's as they are, so
    /// they can leave untouched (and batched with other subscribers').
    pub fn shares(&self, frame: &Frame) -> bool {
        matches!(*self, Framing::RtmpPlay { stream_id, chunk_size }
            if stream_id == PLAY_STREAM_ID && chunk_size == frame.chunk_size)
    }
}
