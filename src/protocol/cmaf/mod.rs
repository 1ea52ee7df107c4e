//! CMAF (fragmented MP4) packaging, sans IO: FLV media in, ISO BMFF boxes
//! out, for the Low-Latency HLS and DASH outputs.
//!
//! The pieces, in the order a packager uses them:
//!
//! - [`flv_video`] / [`flv_audio`] turn one FLV tag body (an RTMP media
//!   message payload) into a [`CodecConfig`] (sequence header) or a frame
//!   whose data is a zero-copy slice of the body;
//! - [`init_segment`] writes `ftyp` + `moov` (with `mvex`) for a set of
//!   tracks, the picture size and audio parameters read from the configs;
//! - [`fragment`] writes one `moof` + `mdat` for runs of samples, one run
//!   per track.
//!
//! Nothing here knows about time beyond the numbers it is given: the caller
//! chooses timescales, decode times and when to cut a fragment.
//!
//! The boxes are written by hand (`boxes.rs`) rather than with an MP4 crate:
//! the decoder configuration records must go into the sample entries as the
//! publisher sent them, and `mp4-atom` (the crate evaluated) models avcC,
//! hvcC and av1C as parsed structures, so each record would be decoded and
//! re-encoded (any field or extension it does not model is lost or refused),
//! and its `mdat` owns a `Vec<u8>`, a copy of every sample before the copy
//! into the fragment. The subset of ISO/IEC 14496-12 needed here is small;
//! `tests/cmaf_ffprobe.rs` checks the output with ffprobe and ffmpeg.

mod bits;
mod boxes;
mod codec;
mod fragment;
mod ingest;
mod init;
mod params;

pub use codec::CodecConfig;
pub use fragment::fragment;
pub use ingest::{flv_audio, flv_video, FlvMedia};
pub use init::{init_segment, MAX_CONFIG_LEN};

use bytes::Bytes;

use super::flv::FlvError;

/// One track of an init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackConfig {
    /// The track_ID, 1 or more, unique in the init segment; [`Run::track_id`]
    /// refers to it.
    pub id: u32,
    /// Units per second of this track's decode times, durations and
    /// composition offsets (e.g. 90000 for video, the sample rate for audio).
    pub timescale: u32,
    pub codec: CodecConfig,
}

/// One access unit: a video frame (length-prefixed NAL units for H.264 and
/// H.265, OBUs for AV1) or an audio frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode duration in the track's timescale.
    pub duration: u32,
    /// Presentation time minus decode time, in the track's timescale
    /// (negative values are allowed: the `trun` is written as version 1).
    pub composition_offset: i32,
    /// A sync sample: decoding can start here. Audio frames are all sync.
    pub keyframe: bool,
    pub data: Bytes,
}

/// Consecutive samples of one track, for [`fragment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run<'a> {
    pub track_id: u32,
    /// Decode time of the first sample, in the track's timescale, counted
    /// from the start of the track (the `tfdt`).
    pub base_decode_time: u64,
    pub samples: &'a [Sample],
}

/// Why a tag body or a track could not be packaged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmafError {
    /// The FLV tag body is malformed (truncated, bad multitrack header).
    #[error(transparent)]
    Flv(#[from] FlvError),
    /// An init segment needs at least one track.
    #[error("an init segment needs at least one track")]
    NoTracks,
    /// A track id of 0, or one used by two tracks.
    #[error("track id {0} is zero or used by two tracks")]
    BadTrackId(u32),
    /// A track whose timescale is 0.
    #[error("track {0} has timescale 0")]
    ZeroTimescale(u32),
    /// A video configuration whose picture size cannot be read (no SPS or
    /// sequence header OBU, or one that does not parse).
    #[error("{codec} decoder configuration has no readable picture size")]
    NoVideoSize { codec: &'static str },
    /// An audio configuration whose sample rate or channel count cannot be
    /// read (malformed, or AAC channels given only by a program config
    /// element).
    #[error("{codec} decoder configuration has no readable sample rate and channel count")]
    NoAudioParams { codec: &'static str },
    /// A decoder configuration larger than [`MAX_CONFIG_LEN`].
    #[error("{codec} decoder configuration of {len} bytes exceeds {max}")]
    ConfigTooLarge {
        codec: &'static str,
        len: usize,
        max: usize,
    },
}
