//! Video tag bodies: legacy FLV (codec id in the low nibble) and Enhanced
//! RTMP (IsExHeader bit, FourCC, packet types, ModEx, multitrack).

use super::{Cursor, FlvError, FOURCC_AVC1, FOURCC_HVC1};

/// Legacy codec ids that carry an AVC-style packet type and composition
/// time: 7 is H.264; 12 is the non-standard HEVC extension used by Chinese
/// CDNs (SRS, nginx-http-flv) before Enhanced RTMP existed.
const LEGACY_AVC: u8 = 7;
const LEGACY_HEVC: u8 = 12;

/// Enhanced RTMP video packet types.
const PT_SEQUENCE_START: u8 = 0;
const PT_CODED_FRAMES: u8 = 1;
const PT_SEQUENCE_END: u8 = 2;
const PT_CODED_FRAMES_X: u8 = 3;
const PT_METADATA: u8 = 4;
const PT_MPEG2TS_SEQUENCE_START: u8 = 5;
const PT_MULTITRACK: u8 = 6;

const FRAME_TYPE_COMMAND: u8 = 5;

/// FLV video frame type (3 bits in both forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoFrameType {
    /// 1: a seekable frame.
    Key,
    /// 2: a non-seekable frame.
    Inter,
    /// 3: H.263 only.
    DisposableInter,
    /// 4: reserved for server use.
    Generated,
    /// 5: a video info / command frame; carries no media.
    Command,
    /// 0, 6, 7.
    Reserved(u8),
}

impl VideoFrameType {
    fn from_bits(v: u8) -> Self {
        match v {
            1 => VideoFrameType::Key,
            2 => VideoFrameType::Inter,
            3 => VideoFrameType::DisposableInter,
            4 => VideoFrameType::Generated,
            FRAME_TYPE_COMMAND => VideoFrameType::Command,
            other => VideoFrameType::Reserved(other),
        }
    }
}

/// Video codec, either a legacy codec id or an Enhanced RTMP FourCC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// Legacy codec id: 2 H.263, 3 screen, 4 VP6, 5 VP6 alpha, 6 screen v2,
    /// 7 AVC, 12 HEVC (non-standard extension).
    Legacy(u8),
    /// Enhanced RTMP FourCC (`avc1`, `hvc1`, `av01`, `vp09`, ...). An
    /// enhanced command frame has no FourCC on the wire and reports
    /// `[0; 4]`.
    FourCc([u8; 4]),
}

/// What a video message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoPacket {
    /// Decoder configuration (AVC packet type 0 / SequenceStart).
    SequenceStart,
    /// Coded frames (AVC NALUs, CodedFrames, CodedFramesX, legacy codecs).
    CodedFrames,
    /// End of sequence.
    SequenceEnd,
    /// Enhanced AMF metadata (e.g. HDR colorInfo); the frame type is ignored.
    Metadata,
    /// Enhanced MPEG-2 TS descriptor (AV1), an alternative sequence start.
    Mpeg2TsSequenceStart,
    /// Command frames, reserved or unknown packet types.
    Other,
}

/// Classification of one video message.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoTag {
    pub frame_type: VideoFrameType,
    pub codec: VideoCodec,
    pub packet: VideoPacket,
    /// True for the Enhanced RTMP (IsExHeader) form.
    pub enhanced: bool,
    /// True for an Enhanced RTMP v2 multitrack message; the other fields
    /// then describe its first track.
    pub multitrack: bool,
    /// The (first) track's id in a multitrack message; 0 otherwise.
    pub track: u8,
    /// Composition time offset in ms (PTS - DTS); 0 where the form has none.
    pub composition_time: i32,
}

impl VideoTag {
    /// A key coded frame: where a late joiner can start decoding.
    ///
    /// False for sequence headers even though encoders mark them key (the
    /// GOP cache checks [`VideoTag::is_sequence_header`] first and keeps
    /// them separately), and false for generated key frames (type 4, server
    /// use only), which are not guaranteed to be decodable on their own.
    pub fn is_keyframe(&self) -> bool {
        self.frame_type == VideoFrameType::Key && self.packet == VideoPacket::CodedFrames
    }

    /// Decoder configuration that players need before any frame: legacy
    /// AVC/HEVC packet type 0, enhanced SequenceStart or
    /// MPEG2TSSequenceStart (the two are mutually exclusive per stream).
    pub fn is_sequence_header(&self) -> bool {
        matches!(
            self.packet,
            VideoPacket::SequenceStart | VideoPacket::Mpeg2TsSequenceStart
        )
    }

    /// A command frame (client-side seek markers), not media.
    pub fn is_command(&self) -> bool {
        self.frame_type == VideoFrameType::Command && self.packet == VideoPacket::Other
    }
}

/// Classifies a video message body (an FLV VIDEODATA tag body).
pub fn parse_video(body: &[u8]) -> Result<VideoTag, FlvError> {
    classify(body).map(|(tag, _)| tag)
}

/// Classifies a video message body and says where its payload starts, for
/// code that needs the coded bytes rather than a classification (CMAF
/// packaging): the decoder configuration record of a sequence start, the
/// coded data of frames (after the composition time where the form has
/// one). For a multitrack message the offset is only past the first
/// track's header (and may be meaningless): callers skip those.
///
/// Unlike [`parse_video`], a legacy AVC/HEVC sequence start must carry its
/// three composition time bytes, since the record follows them.
pub fn video_payload(body: &[u8]) -> Result<(VideoTag, usize), FlvError> {
    let (tag, mut offset) = classify(body)?;
    let legacy_avc_like = matches!(tag.codec, VideoCodec::Legacy(LEGACY_AVC | LEGACY_HEVC));
    if legacy_avc_like && tag.packet == VideoPacket::SequenceStart {
        // parse_video leaves the (meaningless) composition time unread there.
        offset += 3;
        if offset > body.len() {
            return Err(FlvError::Truncated);
        }
    }
    Ok((tag, offset))
}

/// The classification and the cursor position where parsing stopped.
fn classify(body: &[u8]) -> Result<(VideoTag, usize), FlvError> {
    let mut c = Cursor::new(body);
    let b0 = c.u8()?;
    let frame_bits = (b0 >> 4) & 0x07;
    let frame_type = VideoFrameType::from_bits(frame_bits);
    let tag = if b0 & 0x80 != 0 {
        parse_enhanced(&mut c, frame_type, b0 & 0x0F)?
    } else {
        parse_legacy(&mut c, frame_type, b0 & 0x0F)?
    };
    Ok((tag, c.pos))
}

fn parse_legacy(
    c: &mut Cursor<'_>,
    frame_type: VideoFrameType,
    codec_id: u8,
) -> Result<VideoTag, FlvError> {
    let mut tag = VideoTag {
        frame_type,
        codec: VideoCodec::Legacy(codec_id),
        packet: VideoPacket::CodedFrames,
        enhanced: false,
        multitrack: false,
        track: 0,
        composition_time: 0,
    };
    if frame_type == VideoFrameType::Command {
        // The body is a one-byte command instead of video data.
        c.u8()?;
        tag.packet = VideoPacket::Other;
        return Ok(tag);
    }
    if codec_id == LEGACY_AVC || codec_id == LEGACY_HEVC {
        tag.packet = match c.u8()? {
            0 => VideoPacket::SequenceStart,
            1 => VideoPacket::CodedFrames,
            2 => VideoPacket::SequenceEnd,
            _ => VideoPacket::Other,
        };
        // The composition time field is always present on the wire but only
        // meaningful for NALUs; some encoders cut it from sequence-end
        // packets, so only require it where it matters.
        if tag.packet == VideoPacket::CodedFrames {
            tag.composition_time = c.i24()?;
        }
    }
    Ok(tag)
}

fn parse_enhanced(
    c: &mut Cursor<'_>,
    frame_type: VideoFrameType,
    packet_type: u8,
) -> Result<VideoTag, FlvError> {
    let mut packet_type = c.skip_mod_ex(packet_type)?;
    let mut tag = VideoTag {
        frame_type,
        codec: VideoCodec::FourCc([0; 4]),
        packet: VideoPacket::Other,
        enhanced: true,
        multitrack: false,
        track: 0,
        composition_time: 0,
    };
    if frame_type == VideoFrameType::Command && packet_type != PT_METADATA {
        // Enhanced command frames carry the command byte and no FourCC.
        c.u8()?;
        return Ok(tag);
    }
    let fourcc = if packet_type == PT_MULTITRACK {
        tag.multitrack = true;
        let (pt, fourcc, id) = c.multitrack_first(PT_MULTITRACK)?;
        packet_type = pt;
        tag.track = id;
        fourcc
    } else {
        c.fourcc()?
    };
    tag.codec = VideoCodec::FourCc(fourcc);
    tag.packet = match packet_type {
        PT_SEQUENCE_START => VideoPacket::SequenceStart,
        PT_CODED_FRAMES | PT_CODED_FRAMES_X => VideoPacket::CodedFrames,
        PT_SEQUENCE_END => VideoPacket::SequenceEnd,
        PT_METADATA => VideoPacket::Metadata,
        PT_MPEG2TS_SEQUENCE_START => VideoPacket::Mpeg2TsSequenceStart,
        _ => VideoPacket::Other,
    };
    // Only AVC and HEVC CodedFrames carry SI24; CodedFramesX means zero.
    if packet_type == PT_CODED_FRAMES && (fourcc == FOURCC_AVC1 || fourcc == FOURCC_HVC1) {
        tag.composition_time = c.i24()?;
    }
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tag(
        frame_type: VideoFrameType,
        codec: VideoCodec,
        packet: VideoPacket,
        enhanced: bool,
        composition_time: i32,
    ) -> VideoTag {
        VideoTag {
            frame_type,
            codec,
            packet,
            enhanced,
            multitrack: false,
            track: 0,
            composition_time,
        }
    }

    #[test]
    fn legacy_avc_forms() {
        let seq = parse_video(&[0x17, 0x00, 0, 0, 0, 0x01, 0x64]).unwrap();
        assert_eq!(
            seq,
            tag(
                VideoFrameType::Key,
                VideoCodec::Legacy(7),
                VideoPacket::SequenceStart,
                false,
                0
            )
        );
        assert!(seq.is_sequence_header());
        assert!(!seq.is_keyframe());

        let key = parse_video(&[0x17, 0x01, 0x00, 0x00, 0x28, 0, 0, 0, 1, 0x65]).unwrap();
        assert_eq!(key.composition_time, 40);
        assert!(key.is_keyframe());
        assert!(!key.is_sequence_header());

        let inter = parse_video(&[0x27, 0x01, 0xFF, 0xFF, 0xF6, 0x41]).unwrap();
        assert_eq!(inter.frame_type, VideoFrameType::Inter);
        assert_eq!(inter.composition_time, -10);
        assert!(!inter.is_keyframe());

        let eos = parse_video(&[0x17, 0x02, 0, 0, 0]).unwrap();
        assert_eq!(eos.packet, VideoPacket::SequenceEnd);
        // Sequence end without the composition time field is tolerated.
        assert_eq!(
            parse_video(&[0x17, 0x02]).unwrap().packet,
            VideoPacket::SequenceEnd
        );
        assert_eq!(
            parse_video(&[0x17, 0x09, 0, 0, 0]).unwrap().packet,
            VideoPacket::Other
        );
    }

    #[test]
    fn legacy_hevc_extension_and_old_codecs() {
        let hevc = parse_video(&[0x1C, 0x01, 0, 0, 0x21, 0xAA]).unwrap();
        assert_eq!(hevc.codec, VideoCodec::Legacy(12));
        assert_eq!(hevc.composition_time, 33);
        assert!(hevc.is_keyframe());
        assert!(parse_video(&[0x1C, 0x00, 0, 0, 0])
            .unwrap()
            .is_sequence_header());

        let h263 = parse_video(&[0x12, 0x00, 0x00]).unwrap();
        assert_eq!(
            h263,
            tag(
                VideoFrameType::Key,
                VideoCodec::Legacy(2),
                VideoPacket::CodedFrames,
                false,
                0
            )
        );
        assert!(h263.is_keyframe());
        let vp6 = parse_video(&[0x34, 0x00]).unwrap();
        assert_eq!(vp6.frame_type, VideoFrameType::DisposableInter);
        assert_eq!(vp6.codec, VideoCodec::Legacy(4));
        // A bare header byte is a (possibly empty) frame for codecs without
        // a packet type.
        assert_eq!(
            parse_video(&[0x22]).unwrap().packet,
            VideoPacket::CodedFrames
        );
    }

    #[test]
    fn legacy_command_and_reserved_frames() {
        let cmd = parse_video(&[0x57, 0x01]).unwrap();
        assert_eq!(cmd.frame_type, VideoFrameType::Command);
        assert_eq!(cmd.packet, VideoPacket::Other);
        assert!(cmd.is_command() && !cmd.is_keyframe() && !cmd.is_sequence_header());
        assert_eq!(parse_video(&[0x57]), Err(FlvError::Truncated));
        assert_eq!(
            parse_video(&[0x47, 0x01, 0, 0, 0]).unwrap().frame_type,
            VideoFrameType::Generated
        );
        assert!(!parse_video(&[0x47, 0x01, 0, 0, 0]).unwrap().is_keyframe());
        assert_eq!(
            parse_video(&[0x07, 0x01, 0, 0, 0]).unwrap().frame_type,
            VideoFrameType::Reserved(0)
        );
        assert_eq!(
            parse_video(&[0x67, 0x01, 0, 0, 0]).unwrap().frame_type,
            VideoFrameType::Reserved(6)
        );
    }

    #[test]
    fn enhanced_sequence_start_and_frames() {
        let seq = parse_video(b"\x90hvc1\x01\x02").unwrap();
        assert_eq!(
            seq,
            tag(
                VideoFrameType::Key,
                VideoCodec::FourCc(*b"hvc1"),
                VideoPacket::SequenceStart,
                true,
                0
            )
        );
        assert!(seq.is_sequence_header() && !seq.is_keyframe());

        let key = parse_video(b"\x91hvc1\x00\x00\x21\x00\x00\x00\x01").unwrap();
        assert_eq!(key.packet, VideoPacket::CodedFrames);
        assert_eq!(key.composition_time, 33);
        assert!(key.is_keyframe());

        let neg = parse_video(b"\xA1avc1\xFF\xFF\xFE\x01").unwrap();
        assert_eq!(neg.frame_type, VideoFrameType::Inter);
        assert_eq!(neg.composition_time, -2);

        // CodedFramesX: no composition time; the payload is not read as one.
        let x = parse_video(b"\xA3hvc1\x7F\x7F\x7F").unwrap();
        assert_eq!(x.packet, VideoPacket::CodedFrames);
        assert_eq!(x.composition_time, 0);

        // AV1 / VP9 CodedFrames never carry a composition time.
        let av1 = parse_video(b"\x91av01\x12\x00").unwrap();
        assert_eq!(av1.composition_time, 0);
        assert!(av1.is_keyframe());
        let vp9 = parse_video(b"\xA1vp09").unwrap();
        assert_eq!(vp9.codec, VideoCodec::FourCc(*b"vp09"));
        assert!(!vp9.is_keyframe());
    }

    #[test]
    fn enhanced_other_packet_types() {
        assert_eq!(
            parse_video(b"\x92hvc1").unwrap().packet,
            VideoPacket::SequenceEnd
        );
        let meta = parse_video(b"\x84hvc1\x02\x00\x09colorInfo").unwrap();
        assert_eq!(meta.packet, VideoPacket::Metadata);
        assert!(!meta.is_keyframe() && !meta.is_sequence_header());
        // Metadata with frame type Command is still metadata (frame type ignored).
        assert_eq!(
            parse_video(b"\xD4av01").unwrap().packet,
            VideoPacket::Metadata
        );
        let ts = parse_video(b"\x95av01\x80").unwrap();
        assert_eq!(ts.packet, VideoPacket::Mpeg2TsSequenceStart);
        assert!(ts.is_sequence_header());
        assert_eq!(parse_video(b"\x9Favc1").unwrap().packet, VideoPacket::Other);
    }

    #[test]
    fn enhanced_command_frame_has_no_fourcc() {
        let cmd = parse_video(&[0xD1, 0x00]).unwrap();
        assert_eq!(cmd.frame_type, VideoFrameType::Command);
        assert_eq!(cmd.codec, VideoCodec::FourCc([0; 4]));
        assert!(cmd.is_command() && !cmd.is_keyframe() && !cmd.is_sequence_header());
        assert_eq!(parse_video(&[0xD1]), Err(FlvError::Truncated));
    }

    #[test]
    fn enhanced_mod_ex_prelude_is_skipped() {
        // ModEx, 3 bytes of TimestampOffsetNano, then CodedFrames.
        let mut b = vec![0x97, 0x02, 0x01, 0x02, 0x03, 0x01];
        b.extend_from_slice(b"hvc1\x00\x00\x10\xAA");
        let t = parse_video(&b).unwrap();
        assert_eq!(t.codec, VideoCodec::FourCc(*b"hvc1"));
        assert!(t.is_keyframe());
        assert_eq!(t.composition_time, 16);

        // Two chained entries, the first with a 16-bit size (257 bytes).
        let mut b = vec![0x97, 0xFF, 0x01, 0x00];
        b.extend_from_slice(&[0u8; 257]);
        b.extend_from_slice(&[0x07, 0x00, 0x09, 0x00]);
        b.extend_from_slice(b"av01");
        let t = parse_video(&b).unwrap();
        assert_eq!(t.packet, VideoPacket::SequenceStart);
        assert_eq!(t.codec, VideoCodec::FourCc(*b"av01"));

        // ModEx data running past the body.
        assert_eq!(parse_video(&[0x97, 0x05, 0x00]), Err(FlvError::Truncated));
        assert_eq!(parse_video(&[0x97, 0xFF, 0x00]), Err(FlvError::Truncated));
    }

    #[test]
    fn multitrack_layouts() {
        // One track: type 0, SequenceStart, hvc1, track 0.
        let t = parse_video(b"\x96\x00hvc1\x00\x01\x01").unwrap();
        assert!(t.multitrack && t.enhanced);
        assert_eq!(t.codec, VideoCodec::FourCc(*b"hvc1"));
        assert!(t.is_sequence_header());

        // Many tracks, one codec: avc1 CodedFrames, size, then SI24.
        let t = parse_video(b"\x96\x11avc1\x00\x00\x00\x08\x00\x00\x05DATADATA\x01").unwrap();
        assert!(t.is_keyframe());
        assert_eq!(t.composition_time, 5);

        // Many tracks, many codecs: av01 first, inter CodedFramesX.
        let t = parse_video(b"\xA6\x23av01\x00\x00\x00\x02ABvp09\x01\x00\x00\x00").unwrap();
        assert_eq!(t.codec, VideoCodec::FourCc(*b"av01"));
        assert_eq!(t.packet, VideoPacket::CodedFrames);
        assert!(!t.is_keyframe());

        // ModEx before the multitrack header.
        let t = parse_video(b"\x97\x00\x00\x06\x00hvc1\x00").unwrap();
        assert!(t.multitrack && t.is_sequence_header());

        assert_eq!(
            parse_video(b"\x96\x06hvc1\x00"),
            Err(FlvError::NestedMultitrack)
        );
        assert_eq!(
            parse_video(b"\x96\x31hvc1\x00"),
            Err(FlvError::UnsupportedMultitrackType(3))
        );
        assert_eq!(
            parse_video(b"\x96\x11avc1\x00\x00"),
            Err(FlvError::Truncated)
        );
    }

    #[test]
    fn truncated_bodies_are_errors() {
        for body in [
            &b""[..],
            &[0x17],
            &[0x17, 0x01, 0x00, 0x00],
            &[0x1C, 0x01],
            b"\x90hvc",
            b"\x91hvc1\x00\x00",
            b"\x96",
            b"\x96\x00hvc1",
            b"\x97",
        ] {
            assert_eq!(parse_video(body), Err(FlvError::Truncated), "{body:02x?}");
        }
    }

    #[test]
    fn payload_offsets() {
        let at = |b: &[u8]| video_payload(b).map(|(_, offset)| offset);
        // Legacy: header, packet type, composition time (read for the
        // sequence start too, which parse_video leaves unread).
        assert_eq!(at(&[0x17, 0x00, 0, 0, 0, 0x01]), Ok(5));
        assert_eq!(at(&[0x17, 0x01, 0, 0, 0x28, 0xAA]), Ok(5));
        assert_eq!(at(&[0x17, 0x00, 0, 0]), Err(FlvError::Truncated));
        assert!(parse_video(&[0x17, 0x00, 0, 0]).is_ok());
        assert_eq!(at(&[0x17, 0x02]), Ok(2));
        // Enhanced: after the FourCC, and the SI24 where there is one.
        assert_eq!(at(b"\x90hvc1\x01"), Ok(5));
        assert_eq!(at(b"\x91hvc1\x00\x00\x21\xAA"), Ok(8));
        assert_eq!(at(b"\xA3hvc1\xAA"), Ok(5));
        assert_eq!(at(b"\x91av01\x12\x00"), Ok(5));
        assert_eq!(at(b"\x97\x02\x01\x02\x03\x01hvc1\x00\x00\x10\xAA"), Ok(13));
        let (tag, _) = video_payload(b"\x91hvc1\x00\x00\x21").unwrap();
        assert_eq!(tag, parse_video(b"\x91hvc1\x00\x00\x21").unwrap());
    }

    proptest! {
        #[test]
        fn video_payload_agrees_with_parse_video(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok((tag, offset)) = video_payload(&body) {
                prop_assert!(offset <= body.len());
                prop_assert_eq!(Ok(tag), parse_video(&body));
            }
        }

        #[test]
        fn parse_video_never_panics(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_video(&body);
        }

        #[test]
        fn parse_video_never_panics_on_enhanced(
            b0 in 0x80u8..=0xFF,
            rest in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut body = vec![b0];
            body.extend(rest);
            let _ = parse_video(&body);
        }
    }
}
