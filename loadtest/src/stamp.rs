//! Latency stamps carried inside the stream.
//!
//! H.264 frames get an SEI NAL (user_data_unregistered, our own UUID) in
//! front of their NAL list: servers forward NAL units untouched and decoders
//! skip SEI payloads they do not know, so the stamp survives any relay. Other
//! codecs get a tiny AMF0 data message `onCascadeStamp` right before each
//! frame. Either way a stamp is a sequence number (to count lost frames) and
//! the sender's wall clock in unix microseconds.

use bytes::BytesMut;

use cascade::protocol::amf::{encode_amf0, Amf0Value};

/// Marks our SEI payload; anything else in an SEI is not ours.
pub const STAMP_UUID: [u8; 16] = *b"cascade-loadtst!";
/// Name of the data message used for codecs without SEI.
pub const STAMP_DATA_NAME: &str = "onCascadeStamp";

pub const NAL_TYPE_SEI: u8 = 6;
const SEI_USER_DATA_UNREGISTERED: u8 = 5;
/// UUID + seq + micros.
const SEI_PAYLOAD_LEN: usize = 16 + 8 + 8;
const LEGACY_AVC: u8 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u64,
    pub micros: u64,
}

/// Where the interesting bytes of a video body are, for H.264 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvcLayout {
    /// AVCDecoderConfigurationRecord starts at this offset.
    SequenceHeader { record: usize },
    /// Length-prefixed NAL units start at this offset.
    Frames { nal: usize, key: bool },
    /// Not H.264 (or a form we do not stamp: multitrack, ModEx, commands).
    NotAvc,
}

/// Finds the H.264 parts of a video message body (legacy codec 7 or
/// enhanced `avc1`), reading only the first few bytes.
pub fn avc_layout(body: &[u8]) -> AvcLayout {
    let Some(&b0) = body.first() else {
        return AvcLayout::NotAvc;
    };
    let key = (b0 >> 4) & 0x07 == 1;
    if b0 & 0x80 == 0 {
        if b0 & 0x0F != LEGACY_AVC {
            return AvcLayout::NotAvc;
        }
        return match body.get(1) {
            Some(0) => AvcLayout::SequenceHeader { record: 5 },
            Some(1) => AvcLayout::Frames { nal: 5, key },
            _ => AvcLayout::NotAvc,
        };
    }
    if (b0 >> 4) & 0x07 == 5 || body.get(1..5) != Some(&b"avc1"[..]) {
        return AvcLayout::NotAvc;
    }
    match b0 & 0x0F {
        0 => AvcLayout::SequenceHeader { record: 5 },
        1 => AvcLayout::Frames { nal: 8, key },
        3 => AvcLayout::Frames { nal: 5, key },
        _ => AvcLayout::NotAvc,
    }
}

/// NAL length size (1..=4) declared by an AVCDecoderConfigurationRecord.
pub fn nal_length_size(record: &[u8]) -> Option<usize> {
    record.get(4).map(|b| usize::from(b & 0x03) + 1)
}

/// Appends `src` with H.264 emulation prevention (00 00 0x -> 00 00 03 0x).
fn escape_into(src: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &b in src {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
}

/// The complete SEI NAL unit (header byte included) carrying `stamp`.
pub fn sei_nal(stamp: Stamp) -> Vec<u8> {
    let mut rbsp = [0u8; 2 + SEI_PAYLOAD_LEN + 1];
    rbsp[0] = SEI_USER_DATA_UNREGISTERED;
    rbsp[1] = SEI_PAYLOAD_LEN as u8;
    rbsp[2..18].copy_from_slice(&STAMP_UUID);
    rbsp[18..26].copy_from_slice(&stamp.seq.to_be_bytes());
    rbsp[26..34].copy_from_slice(&stamp.micros.to_be_bytes());
    rbsp[34] = 0x80; // rbsp_trailing_bits
    let mut nal = Vec::with_capacity(48);
    nal.push(NAL_TYPE_SEI);
    escape_into(&rbsp, &mut nal);
    nal
}

/// A copy of `body` with the stamp SEI inserted as the first NAL unit.
pub fn insert_sei(
    body: &[u8],
    nal_offset: usize,
    length_size: usize,
    stamp: Stamp,
) -> Option<BytesMut> {
    let head = body.get(..nal_offset)?;
    let rest = body.get(nal_offset..)?;
    if !(1..=4).contains(&length_size) {
        return None;
    }
    let nal = sei_nal(stamp);
    let mut out = BytesMut::with_capacity(body.len() + length_size + nal.len());
    out.extend_from_slice(head);
    let len = (nal.len() as u32).to_be_bytes();
    out.extend_from_slice(&len[4 - length_size..]);
    out.extend_from_slice(&nal);
    out.extend_from_slice(rest);
    Some(out)
}

/// Reads our stamp from the first NAL unit at `nal_offset`, if it is ours.
/// Touches only the first ~50 bytes and does not allocate.
pub fn extract_sei(body: &[u8], nal_offset: usize, length_size: usize) -> Option<Stamp> {
    let len_bytes = body.get(nal_offset..nal_offset.checked_add(length_size)?)?;
    let nal_len = len_bytes
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let start = nal_offset + length_size;
    sei_stamp(body.get(start..start.checked_add(nal_len)?)?)
}

/// Reads our stamp from an H.264 NAL unit (header byte first), if it is our
/// SEI. Only the first ~50 bytes are read, so a prefix of a longer NAL is
/// enough (the fMP4 reader keeps no more than that of each SEI).
pub fn sei_stamp(nal: &[u8]) -> Option<Stamp> {
    if nal.first()? & 0x1F != NAL_TYPE_SEI {
        return None;
    }
    // Undo emulation prevention into a small stack buffer.
    let mut rbsp = [0u8; 2 + SEI_PAYLOAD_LEN];
    let mut n = 0;
    let mut zeros = 0;
    for &b in &nal[1..] {
        if n == rbsp.len() {
            break;
        }
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        rbsp[n] = b;
        n += 1;
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    if n < rbsp.len()
        || rbsp[0] != SEI_USER_DATA_UNREGISTERED
        || usize::from(rbsp[1]) != SEI_PAYLOAD_LEN
        || rbsp[2..18] != STAMP_UUID
    {
        return None;
    }
    let seq = u64::from_be_bytes(rbsp[18..26].try_into().ok()?);
    let micros = u64::from_be_bytes(rbsp[26..34].try_into().ok()?);
    Some(Stamp { seq, micros })
}

/// Body of the `onCascadeStamp` AMF0 data message.
pub fn stamp_data_body(stamp: Stamp) -> BytesMut {
    let mut out = BytesMut::with_capacity(40);
    encode_amf0(&Amf0Value::String(STAMP_DATA_NAME.into()), &mut out);
    encode_amf0(&Amf0Value::Number(stamp.seq as f64), &mut out);
    encode_amf0(&Amf0Value::Number(stamp.micros as f64), &mut out);
    out
}

/// Parses an `onCascadeStamp` data message by its fixed layout (string
/// marker, name, two number markers); anything else is not a stamp.
pub fn parse_stamp_data(body: &[u8]) -> Option<Stamp> {
    let name = STAMP_DATA_NAME.as_bytes();
    let len = (name.len() as u16).to_be_bytes();
    if body.first() != Some(&0x02) || body.get(1..3) != Some(&len[..]) || !is_stamp_data(body) {
        return None;
    }
    let rest = body.get(3 + name.len()..)?;
    let number = |b: &[u8]| -> Option<f64> {
        if *b.first()? != 0x00 {
            return None;
        }
        Some(f64::from_be_bytes(b.get(1..9)?.try_into().ok()?))
    };
    let seq = number(rest)?;
    let micros = number(rest.get(9..)?)?;
    Some(Stamp {
        seq: seq as u64,
        micros: micros as u64,
    })
}

/// True when a data message body starts with the stamp's name; cheap check
/// before the full parse.
pub fn is_stamp_data(body: &[u8]) -> bool {
    body.get(3..3 + STAMP_DATA_NAME.len()) == Some(STAMP_DATA_NAME.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn legacy_frame(key: bool, nals: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        for n in nals {
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn layout_of_legacy_and_enhanced() {
        assert_eq!(
            avc_layout(&[0x17, 0, 0, 0, 0, 1]),
            AvcLayout::SequenceHeader { record: 5 }
        );
        assert_eq!(
            avc_layout(&[0x27, 1, 0, 0, 0]),
            AvcLayout::Frames { nal: 5, key: false }
        );
        let mut enh = vec![0x91];
        enh.extend_from_slice(b"avc1");
        assert_eq!(avc_layout(&enh), AvcLayout::Frames { nal: 8, key: true });
        enh[0] = 0x93;
        assert_eq!(avc_layout(&enh), AvcLayout::Frames { nal: 5, key: true });
        enh[1..5].copy_from_slice(b"hvc1");
        assert_eq!(avc_layout(&enh), AvcLayout::NotAvc);
        assert_eq!(avc_layout(&[0x22, 0]), AvcLayout::NotAvc);
        assert_eq!(avc_layout(&[]), AvcLayout::NotAvc);
    }

    #[test]
    fn sei_is_first_nal_and_rest_is_intact() {
        let body = legacy_frame(true, &[&[0x65, 1, 2, 3]]);
        let stamp = Stamp { seq: 0, micros: 0 };
        let out = insert_sei(&body, 5, 4, stamp).unwrap();
        assert_eq!(&out[..5], &body[..5]);
        assert!(out.ends_with(&body[5..]));
        assert_eq!(extract_sei(&out, 5, 4), Some(stamp));
        // A plain frame has no stamp.
        assert_eq!(extract_sei(&body, 5, 4), None);
    }

    #[test]
    fn escaped_sei_has_no_start_code_patterns() {
        let nal = sei_nal(Stamp { seq: 1, micros: 0 });
        for w in nal.windows(3) {
            assert!(!(w[0] == 0 && w[1] == 0 && w[2] <= 2), "{nal:?}");
        }
    }

    proptest! {
        #[test]
        fn sei_round_trip(seq: u64, micros: u64, ls in 1usize..=4, tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut body = vec![0x27, 1, 0, 0, 0];
            body.extend_from_slice(&tail);
            let stamp = Stamp { seq, micros };
            let out = insert_sei(&body, 5, ls, stamp).unwrap();
            prop_assert_eq!(extract_sei(&out, 5, ls), Some(stamp));
            prop_assert_eq!(&out[out.len() - tail.len()..], &tail[..]);
        }

        #[test]
        fn extract_never_panics(body in proptest::collection::vec(any::<u8>(), 0..80), off in 0usize..10, ls in 0usize..6) {
            let _ = extract_sei(&body, off, ls);
            let _ = avc_layout(&body);
            let _ = parse_stamp_data(&body);
        }

        #[test]
        fn data_stamp_round_trip(seq in 0u64..(1 << 53), micros in 0u64..(1 << 53)) {
            let stamp = Stamp { seq, micros };
            let body = stamp_data_body(stamp);
            prop_assert!(is_stamp_data(&body));
            prop_assert_eq!(parse_stamp_data(&body), Some(stamp));
        }
    }
}
