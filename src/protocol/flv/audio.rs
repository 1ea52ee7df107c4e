//! Audio tag bodies: legacy FLV (sound format in the high nibble) and
//! Enhanced RTMP (sound format 9 = ExHeader, FourCC, packet types, ModEx,
//! multitrack).

use super::{Cursor, FlvError};

const SOUND_FORMAT_EX_HEADER: u8 = 9;
const SOUND_FORMAT_AAC: u8 = 10;

/// Enhanced RTMP audio packet types.
const PT_SEQUENCE_START: u8 = 0;
const PT_MULTITRACK: u8 = 5;

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
    let mut c = Cursor::new(body);
    let b0 = c.u8()?;
    let format = b0 >> 4;
    if format != SOUND_FORMAT_EX_HEADER {
        // Rate, size and channel bits (low nibble) do not matter to a relay.
        let is_sequence_header = format == SOUND_FORMAT_AAC && c.u8()? == 0;
        return Ok(AudioTag {
            codec: AudioCodec::Legacy(format),
            enhanced: false,
            multitrack: false,
            track: 0,
            is_sequence_header,
        });
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
    Ok(AudioTag {
        codec: AudioCodec::FourCc(fourcc),
        enhanced: true,
        multitrack,
        track,
        is_sequence_header: packet_type == PT_SEQUENCE_START,
    })
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

    proptest! {
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
