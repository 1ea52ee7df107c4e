//! Picture size from the parameter sets a video sequence header carries:
//! the H.264 and H.265 sequence parameter sets and the AV1 sequence header
//! OBU. The sample entry of a CMAF video track must state the size, and
//! players size their buffers by it, so it is read from the bitstream
//! rather than trusted from metadata.
//!
//! Parsing stops at the size fields; nothing after them is read. Every
//! read is bounded ([`BitReader`]) and every loop count is capped by the
//! standard's limits, so garbage gives `None`, never a panic or a long loop.

use super::bits::{unescape_rbsp, BitReader};

/// Picture size as the sample entry holds it; `None` if zero or wider than
/// 16 bits (no real stream is).
fn size(width: u64, height: u64) -> Option<(u16, u16)> {
    let w = u16::try_from(width).ok().filter(|w| *w > 0)?;
    let h = u16::try_from(height).ok().filter(|h| *h > 0)?;
    Some((w, h))
}

/// H.264 profiles whose SPS carries chroma format, bit depths and scaling
/// matrices (ITU-T H.264 7.3.2.1.1).
const AVC_HIGH_PROFILES: &[u8] = &[100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

/// Cropped picture size from an H.264 SPS NAL unit (header byte included).
pub(crate) fn avc_sps_size(nal: &[u8]) -> Option<(u16, u16)> {
    let rbsp = unescape_rbsp(nal.get(1..)?);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)? as u8;
    r.skip(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if AVC_HIGH_PROFILES.contains(&profile_idc) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return None;
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            // seq_scaling_matrix_present_flag: the lists must be walked to
            // reach the fields after them.
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        _ => return None,
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let mut width = width_mbs * 16;
    let mut height = height_map_units * 16 * field_factor;
    if r.bit()? {
        // frame_cropping_flag: offsets are in chroma sample units (7.4.2.1.1).
        let chroma_array_type = if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        };
        let (unit_x, unit_y) = match chroma_array_type {
            0 => (1, field_factor),
            1 => (2, 2 * field_factor),
            2 => (2, field_factor),
            _ => (1, field_factor),
        };
        let (left, right) = (u64::from(r.ue()?), u64::from(r.ue()?));
        let (top, bottom) = (u64::from(r.ue()?), u64::from(r.ue()?));
        width = width.checked_sub(unit_x * (left + right))?;
        height = height.checked_sub(unit_y * (top + bottom))?;
    }
    size(width, height)
}

/// Skips one `scaling_list()` of `n` coefficients (H.264 7.3.2.1.1.1).
fn skip_scaling_list(r: &mut BitReader<'_>, n: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..n {
        if next != 0 {
            let delta = i64::from(r.se()?);
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Conformance-window-cropped picture size from an H.265 SPS NAL unit
/// (two header bytes included), per ITU-T H.265 7.3.2.2.
pub(crate) fn hevc_sps_size(nal: &[u8]) -> Option<(u16, u16)> {
    let rbsp = unescape_rbsp(nal.get(2..)?);
    let mut r = BitReader::new(&rbsp);
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)? as usize;
    r.skip(1)?; // sps_temporal_id_nesting_flag
    skip_profile_tier_level(&mut r, max_sub_layers_minus1)?;
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.ue()?;
    if chroma_format_idc > 3 {
        return None;
    }
    let separate_colour_plane = chroma_format_idc == 3 && r.bit()?;
    let mut width = u64::from(r.ue()?);
    let mut height = u64::from(r.ue()?);
    if r.bit()? {
        // conformance_window_flag: offsets in chroma units (Table 6-1).
        let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
            (1, _) => (2, 2),
            (2, _) => (2, 1),
            _ => (1, 1),
        };
        let (left, right) = (u64::from(r.ue()?), u64::from(r.ue()?));
        let (top, bottom) = (u64::from(r.ue()?), u64::from(r.ue()?));
        width = width.checked_sub(sub_w * (left + right))?;
        height = height.checked_sub(sub_h * (top + bottom))?;
    }
    size(width, height)
}

/// Skips `profile_tier_level(1, max_sub_layers_minus1)` (H.265 7.3.3).
fn skip_profile_tier_level(r: &mut BitReader<'_>, max_sub_layers_minus1: usize) -> Option<()> {
    // General profile space .. level: 2+1+5+32+4+43+1 bits, then level_idc.
    r.skip(88 + 8)?;
    let mut profile_present = [false; 8];
    let mut level_present = [false; 8];
    for i in 0..max_sub_layers_minus1 {
        profile_present[i] = r.bit()?;
        level_present[i] = r.bit()?;
    }
    if max_sub_layers_minus1 > 0 {
        // reserved_zero_2bits for the unused sub-layer slots.
        r.skip(2 * (8 - max_sub_layers_minus1))?;
    }
    for i in 0..max_sub_layers_minus1 {
        if profile_present[i] {
            r.skip(88)?;
        }
        if level_present[i] {
            r.skip(8)?;
        }
    }
    Some(())
}

/// AV1 OBU type of the sequence header.
const OBU_SEQUENCE_HEADER: u8 = 1;

/// Walks the OBUs of `data` (the configOBUs of an av1C, or a sample) and
/// returns the body of the first sequence header OBU.
pub(crate) fn av1_sequence_header(mut data: &[u8]) -> Option<&[u8]> {
    while let Some((&header, rest)) = data.split_first() {
        let obu_type = (header >> 3) & 0x0F;
        let has_extension = header & 0x04 != 0;
        let has_size = header & 0x02 != 0;
        let rest = if has_extension { rest.get(1..)? } else { rest };
        let (body, next) = if has_size {
            let (len, used) = leb128(rest)?;
            let len = usize::try_from(len).ok()?;
            let body = rest.get(used..used.checked_add(len)?)?;
            (body, &rest[used + len..])
        } else {
            // Without a size field the OBU runs to the end of the data.
            (rest, &[][..])
        };
        if obu_type == OBU_SEQUENCE_HEADER {
            return Some(body);
        }
        data = next;
    }
    None
}

/// AV1 `leb128()`: up to 8 bytes, 7 bits each. Returns (value, bytes used).
fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for i in 0..8 {
        let b = *data.get(i)?;
        value |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Maximum frame size from an AV1 sequence header OBU body (AV1 spec
/// 5.5.1): what the sample entry must state.
pub(crate) fn av1_sequence_header_size(body: &[u8]) -> Option<(u16, u16)> {
    let mut r = BitReader::new(body);
    r.skip(3)?; // seq_profile
    r.skip(1)?; // still_picture
    if r.bit()? {
        // reduced_still_picture_header: one level, no timing or operating points.
        r.skip(5)?; // seq_level_idx[0]
    } else {
        let mut buffer_delay_length = 0;
        let timing_info_present = r.bit()?;
        let mut decoder_model_info_present = false;
        if timing_info_present {
            r.skip(64)?; // num_units_in_display_tick, time_scale
            if r.bit()? {
                // equal_picture_interval
                r.uvlc()?; // num_ticks_per_picture_minus_1
            }
            decoder_model_info_present = r.bit()?;
            if decoder_model_info_present {
                buffer_delay_length = r.bits(5)? as usize + 1;
                r.skip(32)?; // num_units_in_decoding_tick
                r.skip(10)?; // buffer_removal_time / frame_presentation_time lengths
            }
        }
        let initial_display_delay_present = r.bit()?;
        let operating_points = r.bits(5)? + 1;
        for _ in 0..operating_points {
            r.skip(12)?; // operating_point_idc
            if r.bits(5)? > 7 {
                r.skip(1)?; // seq_tier
            }
            if decoder_model_info_present && r.bit()? {
                // operating_parameters_info: two delays and low_delay_mode_flag.
                r.skip(2 * buffer_delay_length + 1)?;
            }
            if initial_display_delay_present && r.bit()? {
                r.skip(4)?; // initial_display_delay_minus_1
            }
        }
    }
    let width_bits = r.bits(4)? + 1;
    let height_bits = r.bits(4)? + 1;
    let width = u64::from(r.bits(width_bits)?) + 1;
    let height = u64::from(r.bits(height_bits)?) + 1;
    size(width, height)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// SPS of libx264 at 1280x720 (`ffmpeg -f lavfi -i
    /// testsrc2=size=1280x720:rate=30 -c:v libx264 -f h264`), High profile.
    pub(crate) const X264_SPS_720P: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    /// The same at 854x480: 864 wide in macroblocks, cropped by 10.
    const X264_SPS_854X480: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0xd8, 0x3d, 0xe6, 0xf0, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x18, 0x31, 0x96,
    ];
    /// SPS of libx265 at 1920x1080, Main profile.
    pub(crate) const X265_SPS_1080P: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x78, 0xa0, 0x03, 0xc0, 0x80, 0x10, 0xe5, 0x96, 0x56, 0x69, 0x24, 0xca, 0xf0,
        0x16, 0x80, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0f, 0x04,
    ];
    /// configOBUs of libsvtav1's av1C at 1280x720: one sequence header OBU.
    pub(crate) const SVTAV1_SEQ_OBU_720P: &[u8] = &[
        0x0a, 0x0c, 0x02, 0x00, 0x00, 0x2d, 0x2a, 0x67, 0xfd, 0x9e, 0x01, 0x7c, 0x00, 0x20,
    ];

    #[test]
    fn real_h264_sps() {
        assert_eq!(avc_sps_size(X264_SPS_720P), Some((1280, 720)));
        assert_eq!(avc_sps_size(X264_SPS_854X480), Some((854, 480)));
    }

    #[test]
    fn real_h265_sps() {
        assert_eq!(hevc_sps_size(X265_SPS_1080P), Some((1920, 1080)));
    }

    #[test]
    fn real_av1_sequence_header() {
        let body = av1_sequence_header(SVTAV1_SEQ_OBU_720P).unwrap();
        assert_eq!(body.len(), 12);
        assert_eq!(av1_sequence_header_size(body), Some((1280, 720)));
        // A temporal delimiter before it is walked over.
        let mut obus = vec![0x12, 0x00];
        obus.extend_from_slice(SVTAV1_SEQ_OBU_720P);
        assert_eq!(av1_sequence_header(&obus), Some(body));
    }

    /// Every prefix of `data` gives no size until the size fields are
    /// complete, then the full size; returns the shortest prefix that does.
    fn prefixes(data: &[u8], parse: fn(&[u8]) -> Option<(u16, u16)>) -> usize {
        let full = parse(data).expect("the whole set parses");
        let needed = (0..=data.len())
            .find(|n| parse(&data[..*n]).is_some())
            .unwrap();
        for n in 0..=data.len() {
            let want = if n < needed { None } else { Some(full) };
            assert_eq!(parse(&data[..n]), want, "prefix of {n} bytes");
        }
        needed
    }

    #[test]
    fn truncated_parameter_sets_are_none() {
        // The size fields sit well into each set: the header alone is not enough.
        assert!(prefixes(X264_SPS_720P, avc_sps_size) > 8);
        assert!(prefixes(X264_SPS_854X480, avc_sps_size) > 8);
        assert!(prefixes(X265_SPS_1080P, hevc_sps_size) > 20);
        let body = av1_sequence_header(SVTAV1_SEQ_OBU_720P).unwrap();
        assert!(prefixes(body, av1_sequence_header_size) > 6);
        // An OBU whose size runs past the data.
        assert_eq!(av1_sequence_header(&[0x0a, 0x7F, 0x00]), None);
        assert_eq!(av1_sequence_header(&[0x0a, 0x80]), None);
    }

    #[test]
    fn impossible_values_are_none() {
        // Cropping more than the picture: profile 66, sps id 0, frame num 0,
        // poc type 2, refs 0, no gaps, 1x1 macroblocks (16x16), frame only,
        // direct 8x8, then a crop of 7 + 7 chroma units (28 luma columns).
        let crop = [
            0x67,
            66,
            0,
            0,
            0b1101_1101,
            0b1111_0001,
            0b0000_0010,
            0b0011_0000,
        ];
        assert_eq!(avc_sps_size(&crop), None);
        // poc type 3 does not exist.
        assert_eq!(avc_sps_size(&[0x67, 66, 0, 0, 0b1100_1000]), None);
        assert_eq!(hevc_sps_size(&[0x42, 0x01, 0xFF, 0xFF]), None);
        // Zero-sized and over-wide pictures.
        assert_eq!(size(0, 10), None);
        assert_eq!(size(70_000, 10), None);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)) {
            let _ = avc_sps_size(&data);
            let _ = hevc_sps_size(&data);
            if let Some(body) = av1_sequence_header(&data) {
                let _ = av1_sequence_header_size(body);
            }
            let _ = av1_sequence_header_size(&data);
        }
    }
}
