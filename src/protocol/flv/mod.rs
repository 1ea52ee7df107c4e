//! FLV tag bodies (legacy and Enhanced RTMP v1/v2) and FLV files.
//!
//! The relay only needs to classify media messages (codec, key frame,
//! sequence header, composition time) for the GOP cache; payloads are
//! forwarded untouched, so parsing stops once the classification is known.
//! Every read is bounds-checked: malformed bodies yield [`FlvError`], never
//! a panic.

mod audio;
mod file;
mod video;

pub use audio::{audio_payload, parse_audio, AudioCodec, AudioPayload, AudioTag};
pub use file::{
    parse_file_header, try_write_tag, write_file_header, write_tag, FlvHeader, FlvLimits, FlvTag,
    FlvTagReader, FILE_HEADER_LEN, MAX_FILE_HEADER_LEN, TAG_AUDIO, TAG_HEADER_LEN, TAG_SCRIPT,
    TAG_VIDEO,
};
pub use video::{parse_video, video_payload, VideoCodec, VideoFrameType, VideoPacket, VideoTag};

/// Video FourCCs defined by Enhanced RTMP.
pub const FOURCC_AVC1: [u8; 4] = *b"avc1";
pub const FOURCC_HVC1: [u8; 4] = *b"hvc1";
pub const FOURCC_AV01: [u8; 4] = *b"av01";
pub const FOURCC_VP09: [u8; 4] = *b"vp09";
pub const FOURCC_VP08: [u8; 4] = *b"vp08";
/// Audio FourCCs defined by Enhanced RTMP.
pub const FOURCC_OPUS: [u8; 4] = *b"Opus";
pub const FOURCC_FLAC: [u8; 4] = *b"fLaC";
pub const FOURCC_AC3: [u8; 4] = *b"ac-3";
pub const FOURCC_EAC3: [u8; 4] = *b"ec-3";
pub const FOURCC_MP4A: [u8; 4] = *b"mp4a";
pub const FOURCC_MP3: [u8; 4] = *b".mp3";

/// Errors from parsing FLV tag bodies and FLV files.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    /// The body or buffer ended before a field the format requires.
    #[error("FLV data truncated")]
    Truncated,
    /// A multitrack packet announced another multitrack packet for its tracks.
    #[error("nested multitrack packet type")]
    NestedMultitrack,
    /// A reserved multitrack type whose track layout is unknown.
    #[error("unsupported multitrack type {0}")]
    UnsupportedMultitrackType(u8),
    /// The file does not start with "FLV".
    #[error("not an FLV file (bad signature)")]
    BadSignature,
    /// The file header's DataOffset is below 9 or above the limit.
    #[error("bad FLV header size {0}")]
    BadHeaderSize(u32),
    /// A tag larger than the configured limit.
    #[error("FLV tag of {size} bytes exceeds limit {max}")]
    TagTooLarge { size: usize, max: usize },
    /// PreviousTagSize does not match the tag it follows (only when checked).
    #[error("PreviousTagSize {found} does not match tag size {expected}")]
    PreviousTagSizeMismatch { expected: u32, found: u32 },
}

/// Multitrack layouts (AvMultitrackType) shared by audio and video; 1 is
/// "many tracks, one codec".
const MULTITRACK_ONE_TRACK: u8 = 0;
const MULTITRACK_MANY_CODECS: u8 = 2;

/// Packet type value that introduces a ModEx prelude, for audio and video.
const PACKET_TYPE_MOD_EX: u8 = 7;

/// Bounds-checked big-endian reader over a tag body.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FlvError> {
        let end = self.pos.checked_add(n).ok_or(FlvError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(FlvError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, FlvError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FlvError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Result<u32, FlvError> {
        let b = self.take(3)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    /// Signed 24-bit (composition time), sign-extended.
    fn i24(&mut self) -> Result<i32, FlvError> {
        let v = self.u24()?;
        Ok(((v << 8) as i32) >> 8)
    }

    fn fourcc(&mut self) -> Result<[u8; 4], FlvError> {
        let b = self.take(4)?;
        Ok([b[0], b[1], b[2], b[3]])
    }

    /// Skips the Enhanced RTMP v2 ModEx chain (size-prefixed modifier data,
    /// e.g. a nanosecond timestamp offset the relay does not need) and
    /// returns the real packet type that follows it. Each link consumes at
    /// least two bytes, so the loop is bounded by the body length.
    fn skip_mod_ex(&mut self, mut packet_type: u8) -> Result<u8, FlvError> {
        while packet_type == PACKET_TYPE_MOD_EX {
            let mut size = usize::from(self.u8()?) + 1;
            if size == 256 {
                size = usize::from(self.u16()?) + 1;
            }
            self.take(size)?;
            // High nibble: modifier type; low nibble: the next packet type.
            packet_type = self.u8()? & 0x0F;
        }
        Ok(packet_type)
    }

    /// Reads the multitrack header and the first track's header, returning
    /// `(packet_type, first track fourcc, first track id)`. Tracks after
    /// the first are not needed to classify the message.
    fn multitrack_first(&mut self, multitrack_packet: u8) -> Result<(u8, [u8; 4], u8), FlvError> {
        let b = self.u8()?;
        let layout = b >> 4;
        let packet_type = b & 0x0F;
        if packet_type == multitrack_packet {
            return Err(FlvError::NestedMultitrack);
        }
        if layout > MULTITRACK_MANY_CODECS {
            return Err(FlvError::UnsupportedMultitrackType(layout));
        }
        // The shared FourCC (one codec) sits in the header and the per-track
        // one (many codecs) at the start of the track, so for the first track
        // the byte order is the same: FourCC, track id, then the track size
        // unless there is only one track.
        let fourcc = self.fourcc()?;
        let track_id = self.u8()?;
        if layout != MULTITRACK_ONE_TRACK {
            let _track_size = self.u24()?;
        }
        Ok((packet_type, fourcc, track_id))
    }
}
