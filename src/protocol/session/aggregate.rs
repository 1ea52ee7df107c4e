//! Aggregate messages (type 22): FLV-style sub-messages packed into one
//! RTMP message by Wowza/FMS-style origins. An edge must split them.

use bytes::Bytes;

/// One sub-message of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubMessage {
    pub type_id: u8,
    pub timestamp: u32,
    pub payload: Bytes,
}

/// Splits an aggregate payload. Sub-message timestamps are rebased so the
/// first one lands on the aggregate's own timestamp. Stops quietly at a
/// truncated tail (what arrived intact is still delivered).
pub fn split_aggregate(payload: &Bytes, aggregate_ts: u32) -> Vec<SubMessage> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut base: Option<u32> = None;
    while let Some(h) = payload.get(pos..pos + 11) {
        let type_id = h[0];
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let start = pos + 11;
        let Some(end) = start.checked_add(size) else {
            break;
        };
        if end > payload.len() {
            break;
        }
        let first = *base.get_or_insert(ts);
        out.push(SubMessage {
            type_id,
            timestamp: aggregate_ts.wrapping_add(ts.wrapping_sub(first)),
            payload: payload.slice(start..end),
        });
        // Each sub-message is followed by a 4-byte back pointer.
        pos = end + 4;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(type_id: u8, ts: u32, data: &[u8], out: &mut Vec<u8>) {
        out.push(type_id);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.push((ts >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(data);
        out.extend_from_slice(&(11 + data.len() as u32).to_be_bytes());
    }

    #[test]
    fn splits_and_rebases() {
        let mut p = Vec::new();
        sub(9, 1000, b"vid", &mut p);
        sub(8, 1020, b"au", &mut p);
        let msgs = split_aggregate(&Bytes::from(p), 50);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].type_id, 9);
        assert_eq!(msgs[0].timestamp, 50);
        assert_eq!(&msgs[1].payload[..], b"au");
        assert_eq!(msgs[1].timestamp, 70);
    }

    #[test]
    fn truncated_tail_is_ignored() {
        let mut p = Vec::new();
        sub(9, 0, b"abcd", &mut p);
        p.extend_from_slice(&[8, 0xFF, 0xFF, 0xFF, 0, 0]);
        let msgs = split_aggregate(&Bytes::from(p), 0);
        assert_eq!(msgs.len(), 1);
    }
}
