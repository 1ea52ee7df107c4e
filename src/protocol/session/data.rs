//! Data messages (type 18, or 15 normalised) as encoders and servers send
//! them: metadata wrapped in `@setDataFrame` or bare, session chatter, and
//! everything else (cue points, captions) passed through.

use bytes::Bytes;

use super::server::MediaKind;
use crate::protocol::amf::{decode_amf0_all, AmfError, AmfLimits};

pub enum DataMessage {
    /// Stream content: metadata (body starting with "onMetaData") or other data.
    Media(MediaKind, Bytes),
    /// `|RtmpSampleAccess`, `onStatus` notices: session chatter, not content.
    Chatter,
    /// `@clearDataFrame`: nothing to forward.
    Clear,
}

/// Classifies a data message; `@setDataFrame("onMetaData", …)` becomes
/// `onMetaData …` as a slice past the first string, with no re-encoding.
pub fn classify_data(payload: Bytes) -> DataMessage {
    match first_amf_string(&payload) {
        Some(("@setDataFrame", len)) => {
            let rest = payload.slice(len..);
            match first_amf_string(&rest) {
                Some(("onMetaData", _)) => DataMessage::Media(MediaKind::Metadata, rest),
                _ => DataMessage::Media(MediaKind::Data, rest),
            }
        }
        Some(("@clearDataFrame", _)) => DataMessage::Clear,
        Some(("onMetaData", _)) => DataMessage::Media(MediaKind::Metadata, payload),
        Some(("|RtmpSampleAccess" | "onStatus", _)) => DataMessage::Chatter,
        _ => DataMessage::Media(MediaKind::Data, payload),
    }
}

/// Checks metadata against the AMF limits before it is cached and replayed
/// to every player: a nesting or item bomb is refused here rather than
/// handed to players' parsers. Other decode errors pass (the body is
/// forwarded untouched, as encoders' metadata is not always clean AMF).
pub fn check_metadata(body: &[u8], limits: &AmfLimits) -> Result<(), AmfError> {
    match decode_amf0_all(body, limits) {
        Err(e @ (AmfError::TooDeep | AmfError::TooManyItems)) => Err(e),
        _ => Ok(()),
    }
}

/// The first AMF0 value if it is a short string: the string and the bytes it spans.
pub fn first_amf_string(p: &[u8]) -> Option<(&str, usize)> {
    if p.first() != Some(&0x02) {
        return None;
    }
    let len = u16::from_be_bytes([*p.get(1)?, *p.get(2)?]) as usize;
    let s = std::str::from_utf8(p.get(3..3 + len)?).ok()?;
    Some((s, 3 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amf_str(s: &str) -> Vec<u8> {
        let mut v = vec![0x02];
        v.extend_from_slice(&(s.len() as u16).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn set_data_frame_is_unwrapped_without_copy() {
        let mut p = amf_str("@setDataFrame");
        p.extend(amf_str("onMetaData"));
        p.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 0, 9]);
        let payload = Bytes::from(p);
        let DataMessage::Media(kind, body) = classify_data(payload.clone()) else {
            panic!()
        };
        assert_eq!(kind, MediaKind::Metadata);
        assert_eq!(first_amf_string(&body), Some(("onMetaData", 13)));
        assert_eq!(body.as_ptr(), payload[16..].as_ptr());
    }

    #[test]
    fn metadata_bombs_are_refused_and_sloppy_metadata_passes() {
        let limits = AmfLimits::default();
        let mut deep = amf_str("onMetaData");
        for _ in 0..100 {
            deep.extend_from_slice(&[0x0A, 0, 0, 0, 1]); // strict array of one
        }
        deep.push(0x05);
        assert_eq!(check_metadata(&deep, &limits), Err(AmfError::TooDeep));
        let mut wide = amf_str("onMetaData");
        wide.extend_from_slice(&[0x0A, 0, 1, 0, 0]); // 65,536 items
        wide.extend(std::iter::repeat(0x05).take(65_536));
        assert_eq!(check_metadata(&wide, &limits), Err(AmfError::TooManyItems));
        let mut truncated = amf_str("onMetaData");
        truncated.extend_from_slice(&[0x08, 0, 0, 0, 5]);
        assert_eq!(check_metadata(&truncated, &limits), Ok(()));
    }

    #[test]
    fn chatter_and_other_data() {
        assert!(matches!(
            classify_data(Bytes::from(amf_str("|RtmpSampleAccess"))),
            DataMessage::Chatter
        ));
        assert!(matches!(
            classify_data(Bytes::from(amf_str("onCuePoint"))),
            DataMessage::Media(MediaKind::Data, _)
        ));
        assert!(matches!(
            classify_data(Bytes::from_static(&[0x02, 0xFF])),
            DataMessage::Media(MediaKind::Data, _)
        ));
    }
}
