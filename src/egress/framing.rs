//! How a subscriber's frames go on the wire. The hub serializes each frame
//! once as RTMP chunks for the common case (message stream 1, the node's
//! chunk size), and a frame makes its FLV-tag and WebSocket forms once per
//! node on first use; a framing either shares one of those or makes its own.

use bytes::Bytes;

use crate::hub::{Frame, PLAY_STREAM_ID};
use crate::metrics::Protocol;

/// A wire form of a frame that is shared by every subscriber using it, so
/// one buffer can go to all of them in one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// RTMP chunks on message stream 1 at the node's chunk size.
    Chunks,
    /// An FLV tag.
    FlvTag,
    /// An FLV tag in a WebSocket binary message.
    WsFlv,
}

impl Wire {
    pub const ALL: [Wire; 3] = [Wire::Chunks, Wire::FlvTag, Wire::WsFlv];

    /// This form of `frame`.
    pub fn of(self, frame: &Frame) -> &Bytes {
        match self {
            Wire::Chunks => &frame.chunks,
            Wire::FlvTag => frame.flv_tag(),
            Wire::WsFlv => frame.ws_flv(),
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A subscriber's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// RTMP chunks of a play, on the player's message stream.
    RtmpPlay { stream_id: u32, chunk_size: u32 },
    /// RTMP chunks the way a publisher sends them (an upstream publish), on
    /// the message stream the target gave; metadata as `@setDataFrame`.
    RtmpPublish { stream_id: u32, chunk_size: u32 },
    /// FLV tags in one long HTTP response.
    HttpFlv,
    /// FLV tags, each in a WebSocket binary message.
    WsFlv,
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
            Framing::HttpFlv => frame.flv_tag().clone(),
            Framing::WsFlv => frame.ws_flv().clone(),
        }
    }

    /// The message stream and chunk size this subscriber's peer expects
    /// (None: not RTMP).
    pub fn stream(&self) -> Option<(u32, u32)> {
        match *self {
            Framing::RtmpPlay {
                stream_id,
                chunk_size,
            }
            | Framing::RtmpPublish {
                stream_id,
                chunk_size,
            } => Some((stream_id, chunk_size)),
            Framing::HttpFlv | Framing::WsFlv => None,
        }
    }

    /// The node-shared form of `frame` this framing sends as it is, if any:
    /// such bytes can leave untouched and batched with other subscribers'.
    pub fn shared(&self, frame: &Frame) -> Option<Wire> {
        match *self {
            Framing::RtmpPlay {
                stream_id,
                chunk_size,
            } if stream_id == PLAY_STREAM_ID && chunk_size == frame.chunk_size => {
                Some(Wire::Chunks)
            }
            Framing::RtmpPlay { .. } | Framing::RtmpPublish { .. } => None,
            Framing::HttpFlv => Some(Wire::FlvTag),
            Framing::WsFlv => Some(Wire::WsFlv),
        }
    }

    /// How many bytes `frame` takes in this framing.
    pub fn len(&self, frame: &Frame) -> usize {
        match self.shared(frame) {
            Some(w) => w.of(frame).len(),
            None => frame.chunks.len(),
        }
    }

    /// The player protocol this framing serves (metrics' `protocol` label).
    pub fn protocol(&self) -> Protocol {
        match self {
            Framing::RtmpPlay { .. } | Framing::RtmpPublish { .. } => Protocol::Rtmp,
            Framing::HttpFlv => Protocol::HttpFlv,
            Framing::WsFlv => Protocol::WsFlv,
        }
    }
}
