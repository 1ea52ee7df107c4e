//! Decoder configurations as FLV sequence headers carry them, and what a
//! CMAF track needs to know from them: the RFC 6381 codec string for
//! playlists and manifests, the picture size for the video sample entry,
//! the sample rate and channel count for the audio one.
//!
//! The records themselves are kept as the publisher sent them (a `Bytes`
//! slice of the message) and go into the init segment verbatim; only the
//! few fields named above are read, bounds-checked, from publisher bytes.

use bytes::Bytes;

use super::params::{av1_sequence_header, av1_sequence_header_size, avc_sps_size, hevc_sps_size};

/// A track's decoder configuration, as the sequence header carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecConfig {
    /// H.264: an AVCDecoderConfigurationRecord (the avcC body).
    Avc { record: Bytes },
    /// H.265: an HEVCDecoderConfigurationRecord (the hvcC body).
    Hevc { record: Bytes },
    /// AV1: an AV1CodecConfigurationRecord (the av1C body).
    Av1 { record: Bytes },
    /// AAC: an AudioSpecificConfig.
    Aac { asc: Bytes },
    /// Opus: the OpusHead identification header of RFC 7845 5.1, which is
    /// what an Enhanced RTMP Opus SequenceStart carries (ffmpeg's FLV muxer
    /// writes it verbatim) - little-endian, unlike the dOps box built from it.
    Opus { head: Bytes },
}

/// Sample rates by AAC samplingFrequencyIndex (ISO/IEC 14496-3 1.6.3.4).
const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Opus always decodes at 48 kHz, whatever rate the input had (RFC 7845
/// 5.1: InputSampleRate is informational), so its tracks run at 48 kHz.
pub(crate) const OPUS_RATE: u32 = 48_000;

impl CodecConfig {
    pub fn is_video(&self) -> bool {
        matches!(
            self,
            CodecConfig::Avc { .. } | CodecConfig::Hevc { .. } | CodecConfig::Av1 { .. }
        )
    }

    /// The configuration bytes, whichever codec.
    pub(crate) fn bytes(&self) -> &Bytes {
        match self {
            CodecConfig::Avc { record }
            | CodecConfig::Hevc { record }
            | CodecConfig::Av1 { record } => record,
            CodecConfig::Aac { asc } => asc,
            CodecConfig::Opus { head } => head,
        }
    }

    /// A short name for errors and logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            CodecConfig::Avc { .. } => "H.264",
            CodecConfig::Hevc { .. } => "H.265",
            CodecConfig::Av1 { .. } => "AV1",
            CodecConfig::Aac { .. } => "AAC",
            CodecConfig::Opus { .. } => "Opus",
        }
    }

    /// The RFC 6381 `codecs` value (as HLS and DASH want it), e.g.
    /// `avc1.64001f`, `hvc1.1.6.L93.B0`, `av01.0.08M.08`, `mp4a.40.2`,
    /// `opus`. A record too short to read gives the bare sample entry name
    /// (`avc1`, `hvc1`, `av01`, `mp4a`); [`super::init_segment`] refuses
    /// such records anyway.
    pub fn codec_string(&self) -> String {
        match self {
            CodecConfig::Avc { record } => match record.get(..4) {
                Some(&[1, profile, compat, level]) => {
                    format!("avc1.{profile:02x}{compat:02x}{level:02x}")
                }
                _ => "avc1".into(),
            },
            CodecConfig::Hevc { record } => {
                hevc_codec_string(record).unwrap_or_else(|| "hvc1".into())
            }
            CodecConfig::Av1 { record } => {
                av1_codec_string(record).unwrap_or_else(|| "av01".into())
            }
            CodecConfig::Aac { asc } => match parse_asc(asc) {
                Some(asc) => format!("mp4a.40.{}", asc.object_type),
                None => "mp4a".into(),
            },
            CodecConfig::Opus { .. } => "opus".into(),
        }
    }

    /// Picture width and height (cropped) from the first SPS of an avcC or
    /// hvcC, or the sequence header OBU of an av1C. `None` for audio and
    /// for records that do not parse.
    pub fn video_size(&self) -> Option<(u16, u16)> {
        match self {
            CodecConfig::Avc { record } => avc_sps_size(avcc_first_sps(record)?),
            CodecConfig::Hevc { record } => hevc_sps_size(hvcc_first_sps(record)?),
            CodecConfig::Av1 { record } => {
                // marker + version 1, profile/level, flags, delay; then configOBUs.
                if record.first() != Some(&0x81) {
                    return None;
                }
                av1_sequence_header_size(av1_sequence_header(record.get(4..)?)?)
            }
            CodecConfig::Aac { .. } | CodecConfig::Opus { .. } => None,
        }
    }

    /// Sample rate and channel count: from the AudioSpecificConfig for AAC
    /// (the core rate, which 1024-sample frames are counted in even with
    /// SBR), and 48 kHz with the OpusHead's channel count for Opus. `None`
    /// for video, for configurations that do not parse, and for AAC whose
    /// channels are only described by a program config element.
    pub fn audio_params(&self) -> Option<(u32, u8)> {
        match self {
            CodecConfig::Aac { asc } => {
                let asc = parse_asc(asc)?;
                Some((asc.sample_rate, asc.channels))
            }
            CodecConfig::Opus { head } => Some((OPUS_RATE, OpusHead::parse(head)?.channels)),
            _ => None,
        }
    }
}

/// `hvc1.<space><profile>.<compat>.<tier><level>[.<constraint bytes>]`
/// per ISO/IEC 14496-15 E.3, from the fixed head of an hvcC.
fn hevc_codec_string(record: &[u8]) -> Option<String> {
    let head = record.get(..13)?;
    if head[0] != 1 {
        return None;
    }
    let space = ["", "A", "B", "C"][usize::from(head[1] >> 6)];
    let tier = if head[1] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = head[1] & 0x1F;
    // The compatibility flags are printed bit-reversed, in hex without
    // leading zeros.
    let compat = u32::from_be_bytes([head[2], head[3], head[4], head[5]]).reverse_bits();
    let level = head[12];
    let mut s = format!("hvc1.{space}{profile}.{compat:X}.{tier}{level}");
    let constraints = &head[6..12];
    let used = constraints
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |i| i + 1);
    for b in &constraints[..used] {
        s.push_str(&format!(".{b:02X}"));
    }
    Some(s)
}

/// `av01.<profile>.<level><tier>.<bit depth>` (AV1-ISOBMFF "Codecs
/// Parameter String"), the optional trailing fields left out.
fn av1_codec_string(record: &[u8]) -> Option<String> {
    let head = record.get(..3)?;
    if head[0] != 0x81 {
        return None;
    }
    let profile = head[1] >> 5;
    let level = head[1] & 0x1F;
    let tier = if head[2] & 0x80 != 0 { 'H' } else { 'M' };
    let depth = match (head[2] & 0x40 != 0, head[2] & 0x20 != 0) {
        (true, true) => 12,
        (true, false) => 10,
        (false, _) => 8,
    };
    Some(format!("av01.{profile}.{level:02}{tier}.{depth:02}"))
}

/// The first SPS NAL unit of an AVCDecoderConfigurationRecord.
fn avcc_first_sps(record: &[u8]) -> Option<&[u8]> {
    if *record.first()? != 1 {
        return None;
    }
    let count = record.get(5)? & 0x1F;
    if count == 0 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*record.get(6)?, *record.get(7)?]));
    record.get(8..8 + len)
}

/// HEVC NAL unit type of a sequence parameter set.
const HEVC_NAL_SPS: u8 = 33;

/// The first SPS NAL unit of an HEVCDecoderConfigurationRecord.
fn hvcc_first_sps(record: &[u8]) -> Option<&[u8]> {
    if *record.first()? != 1 {
        return None;
    }
    let arrays = *record.get(22)?;
    let mut pos = 23;
    for _ in 0..arrays {
        let nal_type = record.get(pos)? & 0x3F;
        let nalus = u16::from_be_bytes([*record.get(pos + 1)?, *record.get(pos + 2)?]);
        pos += 3;
        for _ in 0..nalus {
            let len = usize::from(u16::from_be_bytes([
                *record.get(pos)?,
                *record.get(pos + 1)?,
            ]));
            let nal = record.get(pos + 2..pos + 2 + len)?;
            if nal_type == HEVC_NAL_SPS {
                return Some(nal);
            }
            pos += 2 + len;
        }
    }
    None
}

/// The fields of an AudioSpecificConfig the packager uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Asc {
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
}

/// Reads the head of an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1).
pub(crate) fn parse_asc(asc: &[u8]) -> Option<Asc> {
    let mut r = super::bits::BitReader::new(asc);
    let mut object_type = r.bits(5)?;
    if object_type == 31 {
        object_type = 32 + r.bits(6)?;
    }
    if object_type == 0 {
        return None;
    }
    let sample_rate = match r.bits(4)? {
        15 => r.bits(24)?,
        i => *AAC_RATES.get(i as usize)?,
    };
    if sample_rate == 0 {
        return None;
    }
    // channelConfiguration (Table 1.19); 0 means a program config element
    // describes the channels, which is not read here.
    let channels = match r.bits(4)? {
        c @ 1..=6 => c as u8,
        7 | 12 | 14 => 8,
        11 => 7,
        13 => 24,
        _ => return None,
    };
    Some(Asc {
        object_type: u8::try_from(object_type).ok()?,
        sample_rate,
        channels,
    })
}

/// An OpusHead identification header (RFC 7845 5.1), read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpusHead<'a> {
    pub channels: u8,
    pub pre_skip: u16,
    pub input_rate: u32,
    pub output_gain: i16,
    pub mapping_family: u8,
    /// Stream count, coupled count and one mapping byte per channel; empty
    /// for mapping family 0.
    pub mapping_table: &'a [u8],
}

impl<'a> OpusHead<'a> {
    pub(crate) fn parse(head: &'a [u8]) -> Option<Self> {
        let fixed = head.get(..19)?;
        if &fixed[..8] != b"OpusHead" || fixed[8] >> 4 != 0 {
            // Only major version 0 has this layout.
            return None;
        }
        let channels = fixed[9];
        if channels == 0 {
            return None;
        }
        let mapping_family = fixed[18];
        let mapping_table = if mapping_family == 0 {
            if channels > 2 {
                return None;
            }
            &[][..]
        } else {
            head.get(19..21 + usize::from(channels))?
        };
        Some(OpusHead {
            channels,
            pre_skip: u16::from_le_bytes([fixed[10], fixed[11]]),
            input_rate: u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]),
            output_gain: i16::from_le_bytes([fixed[16], fixed[17]]),
            mapping_family,
            mapping_table,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::cmaf::params::tests as real;

    /// An avcC around the real 720p x264 SPS (High 3.1) and its PPS.
    pub(crate) fn avcc_720p() -> Bytes {
        let sps = real::X264_SPS_720P;
        let pps = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
        let mut r = vec![1, sps[1], sps[2], sps[3], 0xFF, 0xE1];
        r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        r.extend_from_slice(sps);
        r.extend_from_slice(&[1, 0, pps.len() as u8]);
        r.extend_from_slice(&pps);
        Bytes::from(r)
    }

    /// An hvcC around the real 1080p x265 SPS, as x265/ffmpeg fill its head.
    pub(crate) fn hvcc_1080p() -> Bytes {
        let mut r = vec![
            1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 120, 0xF0, 0, 0xFC, 0xFD, 0xF8, 0xF8, 0,
            0, 0x0F,
        ];
        r.push(2); // arrays: a VPS-less PPS first, to walk past it, then the SPS
        let pps = [0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];
        r.extend_from_slice(&[0x80 | 34, 0, 1, 0, pps.len() as u8]);
        r.extend_from_slice(&pps);
        let sps = real::X265_SPS_1080P;
        r.extend_from_slice(&[0x80 | HEVC_NAL_SPS, 0, 1, 0, sps.len() as u8]);
        r.extend_from_slice(sps);
        Bytes::from(r)
    }

    /// libsvtav1's av1C at 1280x720 (main profile, level 5 = 3.1, 8 bit, 4:2:0).
    pub(crate) fn av1c_720p() -> Bytes {
        let mut r = vec![0x81, 0x05, 0x0c, 0x00];
        r.extend_from_slice(real::SVTAV1_SEQ_OBU_720P);
        Bytes::from(r)
    }

    /// ffmpeg 9's Opus SequenceStart body: mono, pre-skip 312, 48 kHz input.
    pub(crate) const OPUS_HEAD_MONO: &[u8] =
        b"OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00";

    #[test]
    fn codec_strings() {
        let avc = CodecConfig::Avc {
            record: avcc_720p(),
        };
        assert_eq!(avc.codec_string(), "avc1.64001f");
        let hevc = CodecConfig::Hevc {
            record: hvcc_1080p(),
        };
        assert_eq!(hevc.codec_string(), "hvc1.1.6.L120.90");
        let av1 = CodecConfig::Av1 {
            record: av1c_720p(),
        };
        assert_eq!(av1.codec_string(), "av01.0.05M.08");
        // 12-bit high tier profile 2, level 8.
        let av1_hi = CodecConfig::Av1 {
            record: Bytes::from_static(&[0x81, 0x48, 0xE0, 0]),
        };
        assert_eq!(av1_hi.codec_string(), "av01.2.08H.12");
        let aac = CodecConfig::Aac {
            asc: Bytes::from_static(&[0x11, 0x90]),
        };
        assert_eq!(aac.codec_string(), "mp4a.40.2");
        let he = CodecConfig::Aac {
            asc: Bytes::from_static(&[0x2B, 0x92, 0x08, 0x00]),
        };
        assert_eq!(he.codec_string(), "mp4a.40.5");
        let opus = CodecConfig::Opus {
            head: Bytes::from_static(OPUS_HEAD_MONO),
        };
        assert_eq!(opus.codec_string(), "opus");
        assert!(avc.is_video() && hevc.is_video() && av1.is_video());
        assert!(!aac.is_video() && !opus.is_video());
    }

    #[test]
    fn hevc_codec_string_fields() {
        // Main 10, high tier, profile space 1, level 153, two constraint bytes.
        let mut head = vec![
            1,
            0x40 | 0x20 | 2,
            0x20,
            0,
            0,
            0,
            0xB0,
            0x01,
            0,
            0,
            0,
            0,
            153,
        ];
        head.extend_from_slice(&[0; 10]);
        assert_eq!(hevc_codec_string(&head).unwrap(), "hvc1.A2.4.H153.B0.01");
        // No constraint bytes at all.
        head[6] = 0;
        head[7] = 0;
        assert_eq!(hevc_codec_string(&head).unwrap(), "hvc1.A2.4.H153");
    }

    #[test]
    fn garbage_records_fall_back_to_the_entry_name() {
        let short = Bytes::from_static(&[1, 0x64]);
        assert_eq!(
            CodecConfig::Avc {
                record: short.clone()
            }
            .codec_string(),
            "avc1"
        );
        assert_eq!(
            CodecConfig::Hevc {
                record: short.clone()
            }
            .codec_string(),
            "hvc1"
        );
        assert_eq!(
            CodecConfig::Av1 {
                record: short.clone()
            }
            .codec_string(),
            "av01"
        );
        let bad = CodecConfig::Aac {
            asc: Bytes::from_static(&[0x00]),
        };
        assert_eq!(bad.codec_string(), "mp4a");
        assert_eq!(bad.audio_params(), None);
    }

    #[test]
    fn video_sizes_from_records() {
        assert_eq!(
            CodecConfig::Avc {
                record: avcc_720p()
            }
            .video_size(),
            Some((1280, 720))
        );
        assert_eq!(
            CodecConfig::Hevc {
                record: hvcc_1080p()
            }
            .video_size(),
            Some((1920, 1080))
        );
        assert_eq!(
            CodecConfig::Av1 {
                record: av1c_720p()
            }
            .video_size(),
            Some((1280, 720))
        );
        // No SPS in the record, no size.
        let no_sps = Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xFF, 0xE0, 1, 0, 0]);
        assert_eq!(CodecConfig::Avc { record: no_sps }.video_size(), None);
        // An av1C without configOBUs.
        let bare = Bytes::from_static(&[0x81, 0x05, 0x0c, 0x00]);
        assert_eq!(CodecConfig::Av1 { record: bare }.video_size(), None);
        assert_eq!(
            CodecConfig::Aac {
                asc: Bytes::from_static(&[0x11, 0x90])
            }
            .video_size(),
            None
        );
        // Every truncation of every record is None, never a panic.
        for record in [avcc_720p(), hvcc_1080p(), av1c_720p()] {
            for n in 0..record.len() / 2 {
                let r = record.slice(..n);
                assert_eq!(CodecConfig::Avc { record: r.clone() }.video_size(), None);
                assert_eq!(CodecConfig::Hevc { record: r.clone() }.video_size(), None);
                assert_eq!(CodecConfig::Av1 { record: r }.video_size(), None);
            }
        }
    }

    #[test]
    fn audio_params_from_configs() {
        let lc = |asc: &'static [u8]| {
            CodecConfig::Aac {
                asc: Bytes::from_static(asc),
            }
            .audio_params()
        };
        assert_eq!(lc(&[0x11, 0x90]), Some((48000, 2)));
        assert_eq!(lc(&[0x12, 0x08]), Some((44100, 1)));
        // 5.1 and 7.1.
        assert_eq!(lc(&[0x11, 0xB0]), Some((48000, 6)));
        assert_eq!(lc(&[0x11, 0xB8]), Some((48000, 8)));
        // Explicit frequency (index 15, 24 bits: 48000 = 0x00BB80), stereo.
        assert_eq!(lc(&[0x17, 0x80, 0x5D, 0xC0, 0x10]), Some((48000, 2)));
        // Escaped object type 31 + 6 bits (AOT 42, xHE-AAC), 48 kHz stereo.
        let xhe = parse_asc(&[0xF9, 0x46, 0x40]).unwrap();
        assert_eq!(xhe.object_type, 42);
        assert_eq!((xhe.sample_rate, xhe.channels), (48000, 2));
        // HE-AAC, explicit SBR (22.05 kHz core, 44.1 kHz out): the core rate.
        assert_eq!(lc(&[0x2B, 0x92, 0x08, 0x00]), Some((22050, 2)));
        // PCE-described channels, reserved frequency index, truncated.
        assert_eq!(lc(&[0x11, 0x80]), None);
        assert_eq!(lc(&[0x16, 0x90]), None);
        assert_eq!(lc(&[0x11]), None);

        let opus = |head: &'static [u8]| {
            CodecConfig::Opus {
                head: Bytes::from_static(head),
            }
            .audio_params()
        };
        assert_eq!(opus(OPUS_HEAD_MONO), Some((48000, 1)));
        // 44.1 kHz input still decodes at 48 kHz.
        assert_eq!(
            opus(b"OpusHead\x01\x02\x38\x01\x44\xac\x00\x00\x00\x00\x00"),
            Some((48000, 2))
        );
        // Wrong magic, zero channels, family 0 with 3 channels, truncated.
        assert_eq!(
            opus(b"OpusTags\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00"),
            None
        );
        assert_eq!(
            opus(b"OpusHead\x01\x00\x38\x01\x80\xbb\x00\x00\x00\x00\x00"),
            None
        );
        assert_eq!(
            opus(b"OpusHead\x01\x03\x38\x01\x80\xbb\x00\x00\x00\x00\x00"),
            None
        );
        assert_eq!(opus(&OPUS_HEAD_MONO[..18]), None);
        // Family 1 with its table (6 channels: 4 streams, 2 coupled).
        let surround =
            b"OpusHead\x01\x06\x38\x01\x80\xbb\x00\x00\x00\x00\x01\x04\x02\x00\x04\x01\x02\x03\x05";
        let head = OpusHead::parse(surround).unwrap();
        assert_eq!(head.mapping_table, &surround[19..]);
        assert_eq!(OpusHead::parse(&surround[..24]), None);
    }
}
