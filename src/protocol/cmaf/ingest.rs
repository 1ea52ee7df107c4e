//! From FLV tag bodies (RTMP media message payloads) to what the packager
//! needs: decoder configurations and frames. The FLV layer classifies the
//! body and says where its payload starts
//! ([`crate::protocol::flv::video_payload`], [`crate::protocol::flv::audio_payload`]);
//! this keeps the codecs CMAF can carry and hands the payload on as a
//! `Bytes::slice` of the body, so frames are never copied here.
//!
//! Multitrack messages and codecs without a CMAF mapping here (VP8/VP9,
//! FLAC, AC-3, MP3, the legacy codecs) come out as [`FlvMedia::Other`]: a
//! packager ignores them rather than failing the stream.

use bytes::Bytes;

use super::{CmafError, CodecConfig};
use crate::protocol::flv::{
    audio_payload, video_payload, AudioCodec, FlvError, VideoCodec, VideoPacket, FOURCC_AV01,
    FOURCC_AVC1, FOURCC_HVC1, FOURCC_MP4A, FOURCC_OPUS,
};

/// What one FLV tag body holds, for the packager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlvMedia {
    /// A sequence header: the decoder configuration for what follows.
    Config(CodecConfig),
    /// One coded frame.
    Frame {
        /// Length-prefixed NAL units (H.264, H.265), OBUs (AV1), or one
        /// raw audio frame (AAC, Opus): a slice of the tag body.
        data: Bytes,
        /// Presentation minus decode time in milliseconds (0 for audio and
        /// for forms that carry none).
        composition_offset_ms: i32,
        /// A sync sample: video key frames, every audio frame.
        keyframe: bool,
    },
    /// Anything else: sequence end, metadata, command frames, multitrack
    /// messages, codecs without a CMAF mapping here.
    Other,
}

/// Legacy FLV video codec ids with a CMAF mapping.
const LEGACY_AVC: u8 = 7;
const LEGACY_HEVC: u8 = 12;
/// Legacy sound format of AAC.
const SOUND_FORMAT_AAC: u8 = 10;

/// Audio packet types shared by legacy AAC and Enhanced RTMP.
const AUDIO_SEQUENCE_START: u8 = 0;
const AUDIO_CODED_FRAMES: u8 = 1;

/// An AV1 temporal delimiter OBU with a zero size field, which encoders
/// (ffmpeg's FLV muxer among them) put at the start of each temporal unit.
/// AV1-ISOBMFF 2.4 says samples should not carry it, and it sits at the
/// front, so dropping it is a slice, not a copy.
const AV1_TEMPORAL_DELIMITER: [u8; 2] = [0x12, 0x00];

#[derive(Clone, Copy)]
enum VideoKind {
    Avc,
    Hevc,
    Av1,
}

/// Reads a video tag body: legacy AVC (codec id 7) and HEVC (12), and
/// Enhanced RTMP `avc1`, `hvc1` and `av01` (SequenceStart, CodedFrames with
/// a composition time, CodedFramesX without).
///
/// Errors only for bodies too short for what their header announces (or a
/// malformed multitrack header); never panics.
pub fn flv_video(body: &Bytes) -> Result<FlvMedia, CmafError> {
    let (tag, offset) = video_payload(body)?;
    if tag.multitrack {
        return Ok(FlvMedia::Other);
    }
    let kind = match tag.codec {
        VideoCodec::Legacy(LEGACY_AVC) => VideoKind::Avc,
        VideoCodec::Legacy(LEGACY_HEVC) => VideoKind::Hevc,
        VideoCodec::FourCc(FOURCC_AVC1) => VideoKind::Avc,
        VideoCodec::FourCc(FOURCC_HVC1) => VideoKind::Hevc,
        VideoCodec::FourCc(FOURCC_AV01) => VideoKind::Av1,
        _ => return Ok(FlvMedia::Other),
    };
    let payload = body.slice(offset..);
    match tag.packet {
        VideoPacket::SequenceStart => {
            if payload.is_empty() {
                return Err(FlvError::Truncated.into());
            }
            Ok(FlvMedia::Config(match kind {
                VideoKind::Avc => CodecConfig::Avc { record: payload },
                VideoKind::Hevc => CodecConfig::Hevc { record: payload },
                VideoKind::Av1 => CodecConfig::Av1 { record: payload },
            }))
        }
        VideoPacket::CodedFrames => {
            let data = match kind {
                VideoKind::Av1 if payload.starts_with(&AV1_TEMPORAL_DELIMITER) => {
                    payload.slice(AV1_TEMPORAL_DELIMITER.len()..)
                }
                _ => payload,
            };
            Ok(FlvMedia::Frame {
                data,
                composition_offset_ms: tag.composition_time,
                keyframe: tag.is_keyframe(),
            })
        }
        _ => Ok(FlvMedia::Other),
    }
}

/// Reads an audio tag body: legacy AAC (sound format 10; packet type 0 is
/// the AudioSpecificConfig, 1 a raw frame) and Enhanced RTMP `Opus` and
/// `mp4a` (SequenceStart, CodedFrames).
///
/// Errors only for bodies too short for what their header announces (or a
/// malformed multitrack header); never panics.
pub fn flv_audio(body: &Bytes) -> Result<FlvMedia, CmafError> {
    let p = audio_payload(body)?;
    if p.tag.multitrack {
        return Ok(FlvMedia::Other);
    }
    let is_aac = match p.tag.codec {
        AudioCodec::Legacy(SOUND_FORMAT_AAC) | AudioCodec::FourCc(FOURCC_MP4A) => true,
        AudioCodec::FourCc(FOURCC_OPUS) => false,
        _ => return Ok(FlvMedia::Other),
    };
    let payload = body.slice(p.offset..);
    match p.packet_type {
        AUDIO_SEQUENCE_START => {
            // An empty Opus SequenceStart is allowed by Enhanced RTMP (the
            // channel layout then comes in a MultichannelConfig), but
            // without an OpusHead there is nothing to build a dOps from.
            if payload.is_empty() {
                return Err(FlvError::Truncated.into());
            }
            Ok(FlvMedia::Config(if is_aac {
                CodecConfig::Aac { asc: payload }
            } else {
                CodecConfig::Opus { head: payload }
            }))
        }
        AUDIO_CODED_FRAMES => Ok(FlvMedia::Frame {
            data: payload,
            composition_offset_ms: 0,
            keyframe: true,
        }),
        _ => Ok(FlvMedia::Other),
    }
}

#[cfg(test)]
#[path = "ingest_tests.rs"]
mod tests;
