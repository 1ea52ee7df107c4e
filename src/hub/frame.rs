//! A media message as it leaves the node: serialized once, shared by all.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::protocol::chunk::{encode_message, encoded_len};
use crate::protocol::flv::{self, AudioCodec, FlvTag, VideoCodec};
use crate::protocol::message::{csid, type_id};
use crate::protocol::session::{set_data_frame, MediaKind};

/// The message stream id cascade gives a player's first `createStream`;
/// shared frames are serialized for it.
pub const PLAY_STREAM_ID: u32 = 1;

/// Which sequence header a frame is: one slot per media kind and track
/// (a track has one codec at a time; a new codec's header replaces the
/// old), so cameras that resend headers every GOP replace rather than pile
/// up, and a publisher cycling through made-up FourCCs fills one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKey {
    /// Video track id (0 outside Enhanced RTMP multitrack).
    Video(u8),
    /// Audio track id.
    Audio(u8),
}

/// What a cached frame costs beyond its bytes: the frame itself in the
/// cache's queue and the bookkeeping of its two shared buffers. Counting it
/// keeps a flood of tiny messages from hiding under the byte bound.
pub const FRAME_OVERHEAD: usize = 160;

/// What the GOP cache needs to know about a message, read from its FLV body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Class {
    pub keyframe: bool,
    /// Video composition offset (ms), 0 where absent.
    pub cts: i32,
    pub header: Option<HeaderKey>,
    pub video: Option<VideoCodec>,
    pub audio: Option<AudioCodec>,
    /// Enhanced RTMP multitrack track id (0 otherwise).
    pub track: u8,
}

/// Classifies a message body: legacy and Enhanced RTMP alike.
pub fn classify(kind: MediaKind, payload: &[u8]) -> Class {
    match kind {
        MediaKind::Video => match flv::parse_video(payload) {
            Ok(tag) => Class {
                keyframe: tag.is_keyframe(),
                cts: tag.composition_time,
                header: tag
                    .is_sequence_header()
                    .then_some(HeaderKey::Video(tag.track)),
                video: Some(tag.codec),
                audio: None,
                track: tag.track,
            },
            Err(_) => Class::default(),
        },
        MediaKind::Audio => match flv::parse_audio(payload) {
            Ok(tag) => Class {
                keyframe: false,
                cts: 0,
                header: tag
                    .is_sequence_header
                    .then_some(HeaderKey::Audio(tag.track)),
                video: None,
                audio: Some(tag.codec),
                track: tag.track,
            },
            Err(_) => Class::default(),
        },
        _ => Class::default(),
    }
}

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
    /// Set on sequence headers: which cache slot it fills.
    pub header: Option<HeaderKey>,
    /// Enhanced RTMP multitrack track id (0 otherwise).
    pub track: u8,
    /// The RTMP message body, for players that need a different framing.
    pub payload: Bytes,
    /// The message serialized as RTMP chunks on message stream 1.
    pub chunks: Bytes,
    /// The chunk size `chunks` was cut with.
    pub chunk_size: u32,
    /// When the publisher's last byte of this message was read.
    pub ingest: Instant,
    /// The frame's other wire forms, made by the first core whose
    /// subscribers need them and shared by every core after that.
    wire: Arc<WireForms>,
}

/// Wire forms of a frame other than RTMP chunks. Each is made at most once
/// per node (whichever core asks first) and only if some subscriber asks,
/// so a node with only RTMP players never pays for them.
#[derive(Debug, Default)]
struct WireForms {
    /// The FLV tag with its trailing PreviousTagSize (HTTP-FLV).
    flv: OnceLock<Bytes>,
    /// The FLV tag as one WebSocket binary message (WebSocket-FLV).
    ws: OnceLock<Bytes>,
}

impl Frame {
    pub fn new(
        kind: MediaKind,
        timestamp: u32,
        class: Class,
        payload: Bytes,
        chunk_size: u32,
        ingest: Instant,
    ) -> Frame {
        let chunks = serialize(kind, timestamp, &payload, PLAY_STREAM_ID, chunk_size);
        Frame {
            kind,
            timestamp,
            keyframe: class.keyframe,
            header: class.header,
            track: class.track,
            payload,
            chunks,
            chunk_size,
            ingest,
            wire: Arc::default(),
        }
    }

    /// The frame as an FLV tag (and PreviousTagSize), shared node-wide.
    pub fn flv_tag(&self) -> &Bytes {
        self.wire.flv.get_or_init(|| {
            let tag_type = match self.kind {
                MediaKind::Audio => flv::TAG_AUDIO,
                MediaKind::Video => flv::TAG_VIDEO,
                MediaKind::Metadata | MediaKind::Data => flv::TAG_SCRIPT,
            };
            let tag = FlvTag {
                tag_type,
                timestamp: self.timestamp,
                data: self.payload.clone(),
            };
            let mut out = BytesMut::new();
            flv::write_tag(&tag, &mut out);
            out.freeze()
        })
    }

    /// The FLV tag as one WebSocket binary message, shared node-wide.
    pub fn ws_flv(&self) -> &Bytes {
        self.wire
            .ws
            .get_or_init(|| crate::protocol::ws::binary(self.flv_tag()))
    }

    /// The same frame with a different timestamp (re-serialized).
    pub fn retimed(&self, timestamp: u32, chunk_size: u32) -> Frame {
        let class = Class {
            keyframe: self.keyframe,
            header: self.header,
            track: self.track,
            ..Class::default()
        };
        Frame::new(
            self.kind,
            timestamp,
            class,
            self.payload.clone(),
            chunk_size,
            self.ingest,
        )
    }

    /// Chunks for a peer on message stream `stream_id` that was told
    /// `chunk_size`: the shared bytes when both match, else serialized anew.
    pub fn chunks_for(&self, stream_id: u32, chunk_size: u32) -> Bytes {
        if stream_id == PLAY_STREAM_ID && chunk_size == self.chunk_size {
            self.chunks.clone()
        } else {
            serialize(
                self.kind,
                self.timestamp,
                &self.payload,
                stream_id,
                chunk_size,
            )
        }
    }

    /// Chunks for an upstream we publish to (forward, push): like
    /// [`Frame::chunks_for`], except that metadata goes out as
    /// `@setDataFrame("onMetaData", …)`, the way publishers send it.
    pub fn publish_chunks(&self, stream_id: u32, chunk_size: u32) -> Bytes {
        if self.kind != MediaKind::Metadata {
            return self.chunks_for(stream_id, chunk_size);
        }
        let body = set_data_frame(&self.payload);
        serialize(self.kind, self.timestamp, &body, stream_id, chunk_size)
    }

    /// What holding this frame costs in memory: its serialized chunks, the
    /// payload it keeps alive and [`FRAME_OVERHEAD`].
    pub fn cost(&self) -> usize {
        self.chunks.len() + self.payload.len() + FRAME_OVERHEAD
    }

    pub fn is_video(&self) -> bool {
        self.kind == MediaKind::Video
    }
}

fn serialize(
    kind: MediaKind,
    timestamp: u32,
    payload: &[u8],
    stream_id: u32,
    chunk_size: u32,
) -> Bytes {
    let (cs, ty) = match kind {
        MediaKind::Audio => (csid::AUDIO, type_id::AUDIO),
        MediaKind::Video => (csid::VIDEO, type_id::VIDEO),
        MediaKind::Metadata | MediaKind::Data => (csid::DATA, type_id::DATA_AMF0),
    };
    let mut out = BytesMut::with_capacity(encoded_len(payload.len(), cs, timestamp, chunk_size));
    encode_message(cs, timestamp, ty, stream_id, payload, chunk_size, &mut out);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(timestamp: u32) -> Frame {
        // A legacy H.264 keyframe, coded frame, composition time 0.
        let payload = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0xAA, 0xBB]);
        let class = classify(MediaKind::Video, &payload);
        Frame::new(
            MediaKind::Video,
            timestamp,
            class,
            payload,
            4096,
            Instant::now(),
        )
    }

    #[test]
    fn the_flv_forms_are_made_once_and_shared_by_every_clone() {
        let frame = video(0x0102_0304);
        let other = frame.clone();
        let (a, b) = (other.flv_tag().clone(), frame.flv_tag().clone());
        assert_eq!(a.as_ptr(), b.as_ptr(), "a clone made its own tag");
        // Type, size, timestamp (low 24 bits, then the extension byte),
        // stream id, body, PreviousTagSize.
        assert_eq!(&a[..11], &[9, 0, 0, 7, 0x02, 0x03, 0x04, 0x01, 0, 0, 0]);
        assert_eq!(&a[11..18], &frame.payload[..]);
        assert_eq!(&a[18..], &18u32.to_be_bytes());
        let ws = frame.ws_flv();
        assert_eq!(other.ws_flv().as_ptr(), ws.as_ptr());
        assert_eq!(&ws[..2], &[0x82, 22]);
        assert_eq!(&ws[2..], &a[..]);
        // A retimed frame is a new message with its own forms.
        assert_ne!(frame.retimed(5, 4096).flv_tag()[4..7], a[4..7]);
    }
}
