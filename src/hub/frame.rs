//! A media message as it leaves the node: serialized once, shared by all.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::protocol::chunk::{encode_message, encoded_len};
use crate::protocol::message::{csid, type_id};
use crate::protocol::session::MediaKind;

/// The message stream id cascade gives a player's first `createStream`;
/// shared frames are serialized for it.
pub const PLAY_STREAM_ID: u32 = 1;

/// One media or data message, already chunked for any player.
///
/// Cloning is two refcount bumps; the payload bytes are never copied after
/// serialization.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: MediaKind,
    /// Timestamp as players see it (after any reconnect offset).
    pub timestamp: u32,
    /// A video keyframe (coded frame, not a sequence header).
    pub keyframe: bool,
    /// The RTMP message body, for players that need a different framing.
    pub payload: Bytes,
    /// The message serialized as RTMP chunks on message stream 1.
    pub chunks: Bytes,
    /// When the publisher's last byte of this message was read.
    pub ingest: Instant,
}

impl Frame {
    pub fn new(
        kind: MediaKind,
        timestamp: u32,
        keyframe: bool,
        payload: Bytes,
        chunk_size: u32,
        ingest: Instant,
    ) -> Frame {
        let chunks = serialize(kind, timestamp, &payload, PLAY_STREAM_ID, chunk_size);
        Frame {
            kind,
            timestamp,
            keyframe,
            payload,
            chunks,
            ingest,
        }
    }

    /// The same frame with a different timestamp (re-serialized).
    pub fn retimed(&self, timestamp: u32, chunk_size: u32) -> Frame {
        Frame::new(
            self.kind,
            timestamp,
            self.keyframe,
            self.payload.clone(),
            chunk_size,
            self.ingest,
        )
    }

    /// Chunks for a player whose play stream is not [`PLAY_STREAM_ID`].
    pub fn chunks_for(&self, stream_id: u32, chunk_size: u32) -> Bytes {
        if stream_id == PLAY_STREAM_ID {
            self.chunks.clone()
        } else {
            serialize(self.kind, self.timestamp, &self.payload, stream_id, chunk_size)
        }
    }

    pub fn is_video(&self) -> bool {
        self.kind == MediaKind::Video
    }
}

fn serialize(kind: MediaKind, timestamp: u32, payload: &[u8], stream_id: u32, chunk_size: u32) -> Bytes {
    let (cs, ty) = match kind {
        MediaKind::Audio => (csid::AUDIO, type_id::AUDIO),
        MediaKind::Video => (csid::VIDEO, type_id::VIDEO),
        MediaKind::Metadata | MediaKind::Data => (csid::DATA, type_id::DATA_AMF0),
    };
    let mut out = BytesMut::with_capacity(encoded_len(payload.len(), cs, timestamp, chunk_size));
    encode_message(cs, timestamp, ty, stream_id, payload, chunk_size, &mut out);
    out.freeze()
}
