//! Audio tag bodies: legacy FLV (sound format in the high nibble) and
//! Enhanced RTMP (sound format 9 = ExHeader, FourCC, packet types, ModEx,
//! multitrack).

use super::{Cursor, FlvError};

const SOUND_FORMAT_EX_HEADER: u8 = 9;
const SOUND_FORMAT_AAC: u8 = 10;

/// Enhanced RTMP audio packet types.
const PT_SEQUENCE_START: u8 = 0;
const PT_MULTITRACK: u8 = 5;
/// The packet type [`audio_payload`] reports for legacy formats without one.
const LEGACY_CODED: u8 = 1;

/// Audio codec, either a legacy sound format or an Enhanced RTMP FourCC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// Legacy sound format: 0/3 PCM, 1 ADPCM, 2 MP3, 4-6 Nellymoser,
    /// 7 G.711 A-law, 8 G.711 mu-law, 10 AAC, 11 Speex, 14 MP3 8 kHz,
    /// 15 device specific.
    Legacy(u8),
    /// Enhanced RTMP FourCC (`Opus`, `fLaC`, `ac-3`, `ec-3`, `mp4a`, `.mp3`).
    FourCc([u8; 4]),
}

/// Classification of one audio message.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioTag {
    pub codec: AudioCodec,
    /// True for the Enhanced RTMP (ExHeader) form.
    pub enhanced: bool,
    /// True for an Enhanced RTMP v2 multitrack message; the other fields
    /// then describe its first track.
    pub multitrack: bool,
    /// The (first) track's id in a multitrack message; 0 otherwise.
    pub track: u8,
    /// Decoder configuration players need first: legacy AAC packet type 0 or
    /// enhanced SequenceStart. Enhanced MultichannelConfig is not counted:
    /// keeping only the latest header would let it displace the real one.
    pub is_sequence_header: bool,
}

/// Classifies an audio message body (an FLV AUDIODATA tag body).
pub fn parse_audio(body: &[u8]) -> Result<AudioTag, FlvError> {
    classify(body).map(|(tag, _)| tag)
}

/// Where an audio message's payload starts, beside its classification.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioPayload {
    pub tag: AudioTag,
    /// The packet type: legacy AAC's AACPacketType (0 config, 1 raw frame),
    /// the enhanced AudioPacketType (0 SequenceStart, 1 CodedFrames, ...;
    /// for multitrack, the tracks' type), or 1 for legacy formats that
    /// have none (every body is coded audio).
    pub packet_type: u8,
    /// Offset of the payload in the body: the AudioSpecificConfig, OpusHead
    /// or coded frame. For a multitrack message only past the first track's
    /// header (and may be meaningless): callers skip those.
    pub offset: usize,
}

/// Classifies an audio message body and says where its payload starts, for
/// code that needs the coded bytes rather than a classification (CMAF
/// packaging). [`parse_audio`] gives the same classification.
pub fn audio_payload(body: &[u8]) -> Result<AudioPayload, FlvError> {
    let (tag, (packet_type, offset)) = classify(body)?;
    Ok(AudioPayload {
        tag,
        packet_type,
        offset,
    })
}

/// The classification, the packet type and where parsing stopped.
fn classify(body: &[u8]) -> Result<(AudioTag, (u8, usize)), FlvError> {
    let mut c = Cursor::new(body);
    let b0 = c.u8()?;
    let format = b0 >> 4;
    if format != SOUND_FORMAT_EX_HEADER {
        // Rate, size and channel bits (low nibble) do not matter to a relay.
        let packet_type = if format == SOUND_FORMAT_AAC {
            c.u8()?
        } else {
            LEGACY_CODED
        };
        let is_sequence_header = format == SOUND_FORMAT_AAC && packet_type == 0;
        let tag = AudioTag {
            codec: AudioCodec::Legacy(format),
            enhanced: false,
            multitrack: false,
            track: 0,
            is_sequence_header,
        };
        return Ok((tag, (packet_type, c.pos)));
    }
    let mut packet_type = c.skip_mod_ex(b0 & 0x0F)?;
    let mut multitrack = false;
    let mut track = 0;
    let fourcc = if packet_type == PT_MULTITRACK {
        multitrack = true;
        let (pt, fourcc, id) = c.multitrack_first(PT_MULTITRACK)?;
        packet_type = pt;
        track = id;
        fourcc
    } else {
        c.fourcc()?
    };
    let tag = AudioTag {
        codec: AudioCodec::FourCc(fourcc),
        enhanced: true,
        multitrack,
        track,
        is_sequence_header: packet_type == PT_SEQUENCE_START,
    };
    Ok((tag, (packet_type, c.pos)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn legacy_forms() {
        let seq = parse_audio(&[0xAF, 0x00, 0x11, 0x90]).unwrap();
        assert_eq!(
            seq,
            AudioTag {
                codec: AudioCodec::Legacy(10),
                enhanced: false,
                multitrack: false,
                track: 0,
                is_sequence_header: true
            }
        );
        let raw = parse_audio(&[0xAF, 0x01, 0x21, 0x10]).unwrap();
        assert!(!raw.is_sequence_header);
        let mp3 = parse_audio(&[0x2F, 0xFF, 0xFB]).unwrap();
        assert_eq!(mp3.codec, AudioCodec::Legacy(2));
        assert!(!mp3.is_sequence_header);
        // A non-AAC format needs no second byte.
        assert_eq!(parse_audio(&[0x82]).unwrap().codec, AudioCodec::Legacy(8));
    }

    #[test]
    fn enhanced_forms() {
        let opus = parse_audio(b"\x90Opus\x4F\x70").unwrap();
        assert_eq!(
            opus,
            AudioTag {
                codec: AudioCodec::FourCc(*b"Opus"),
                enhanced: true,
                multitrack: false,
                track: 0,
                is_sequence_header: true
            }
        );
        let frames = parse_audio(b"\x91fLaC\x00").unwrap();
        assert_eq!(frames.codec, AudioCodec::FourCc(*b"fLaC"));
        assert!(!frames.is_sequence_header);
        assert!(!parse_audio(b"\x92mp4a").unwrap().is_sequence_header);
        let mc = parse_audio(b"\x94ac-3\x01\x06\x00\x00\x00\x3F").unwrap();
        assert_eq!(mc.codec, AudioCodec::FourCc(*b"ac-3"));
        assert!(!mc.is_sequence_header);
        assert!(parse_audio(b"\x90ec-3").unwrap().is_sequence_header);
        assert!(parse_audio(b"\x90.mp3").unwrap().is_sequence_header);
    }

    #[test]
    fn enhanced_mod_ex_and_multitrack() {
        let t = parse_audio(b"\x97\x02\x00\x01\x02\x00Opus").unwrap();
        assert_eq!(t.codec, AudioCodec::FourCc(*b"Opus"));
        assert!(t.is_sequence_header);

        // One track.
        let t = parse_audio(b"\x95\x00mp4a\x00\x12\x10").unwrap();
        assert!(t.multitrack && t.is_sequence_header);
        assert_eq!(t.codec, AudioCodec::FourCc(*b"mp4a"));
        // Many tracks, one codec.
        let t = parse_audio(b"\x95\x11Opus\x00\x00\x00\x01Z\x01\x00\x00\x01Z").unwrap();
        assert!(t.multitrack && !t.is_sequence_header);
        // Many tracks, many codecs.
        let t = parse_audio(b"\x95\x20fLaC\x00\x00\x00\x00Opus\x01\x00\x00\x00").unwrap();
        assert_eq!(t.codec, AudioCodec::FourCc(*b"fLaC"));
        assert!(t.is_sequence_header);

        assert_eq!(
            parse_audio(b"\x95\x05Opus\x00"),
            Err(FlvError::NestedMultitrack)
        );
        assert_eq!(
            parse_audio(b"\x95\xF0Opus\x00"),
            Err(FlvError::UnsupportedMultitrackType(15))
        );
    }

    #[test]
    fn truncated_bodies_are_errors() {
        for body in [
            &b""[..],
            &[0xAF],
            b"\x90Opu",
            b"\x97",
            b"\x97\x03\x00",
            b"\x95",
            b"\x95\x11Opus\x00\x00",
        ] {
            assert_eq!(parse_audio(body), Err(FlvError::Truncated), "{body:02x?}");
        }
    }

    #[test]
    fn payload_offsets() {
        let at = |b: &[u8]| audio_payload(b).map(|p| (p.packet_type, p.offset));
        assert_eq!(at(&[0xAF, 0x00, 0x11, 0x90]), Ok((0, 2)));
        assert_eq!(at(&[0xAF, 0x01, 0x21]), Ok((1, 2)));
        assert_eq!(at(&[0x2F, 0xFF, 0xFB]), Ok((1, 1)));
        assert_eq!(at(b"\x90OpusOpusHead"), Ok((0, 5)));
        assert_eq!(at(b"\x91mp4a\x21"), Ok((1, 5)));
        assert_eq!(at(b"\x94Opus\x01"), Ok((4, 5)));
        assert_eq!(at(b"\x97\x02\x00\x01\x02\x01Opus\xFC"), Ok((1, 10)));
        assert_eq!(at(&[0xAF]), Err(FlvError::Truncated));
    }

    proptest! {
        #[test]
        fn audio_payload_agrees_with_parse_audio(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = audio_payload(&body) {
                prop_assert!(p.offset <= body.len());
                prop_assert_eq!(Ok(p.tag), parse_audio(&body));
            }
        }

        #[test]
        fn parse_audio_never_panics(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_audio(&body);
        }

        #[test]
        fn parse_audio_never_panics_on_enhanced(
            low in 0u8..16,
            rest in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut body = vec![0x90 | low];
            body.extend(rest);
            let _ = parse_audio(&body);
        }
    }
}
