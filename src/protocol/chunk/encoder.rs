//! Message -> chunks. Every message starts with a type-0 header, so the
//! bytes do not depend on what was sent before on that chunk stream and can
//! be shared between all players of a stream.

use bytes::{BufMut, BytesMut};

use super::{basic_header_len, clamp_csid, EXTENDED_TS_MARKER};

/// Largest payload a 24-bit length field can describe.
const MAX_PAYLOAD: usize = 0x00FF_FFFF;

/// Serializes one message: a type-0 first chunk, then type-3 continuation
/// chunks of at most `chunk_size` payload bytes each.
///
/// When `timestamp >= 0xFFFFFF` the 4-byte extended timestamp follows the
/// type-0 header and is repeated on every continuation chunk (Flash-era
/// receivers require the repetition; tolerant receivers peek for it).
/// `csid` must be 2..=65599 and `payload` shorter than 16 MiB; a chunk size of
/// 0 is treated as 1. Out-of-range inputs are clamped (a longer payload is
/// truncated) so the framing on the wire always stays valid.
pub fn encode_message(
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: u32,
    out: &mut BytesMut,
) {
    let mut writer = ChunkWriter::new(csid, timestamp, type_id, stream_id, payload, chunk_size);
    out.reserve(writer.total_len());
    while !writer.is_done() {
        writer.write_chunk(out);
    }
}

/// Exact number of bytes [`encode_message`] appends, so a caller can reserve
/// once (or size a shared buffer for many messages).
pub fn encoded_len(payload_len: usize, csid: u32, timestamp: u32, chunk_size: u32) -> usize {
    let payload_len = payload_len.min(MAX_PAYLOAD);
    let chunk_size = effective_chunk_size(chunk_size);
    let basic = basic_header_len(csid);
    let ext = if timestamp >= EXTENDED_TS_MARKER {
        4
    } else {
        0
    };
    let chunks = payload_len.div_ceil(chunk_size).max(1);
    basic + 11 + ext + payload_len + (chunks - 1) * (basic + ext)
}

fn effective_chunk_size(chunk_size: u32) -> usize {
    // u32 always fits usize on the 32/64-bit targets we build for.
    usize::try_from(chunk_size.max(1)).unwrap_or(usize::MAX)
}

/// Emits one message chunk by chunk, so tests (and a future scheduler) can
/// interleave chunk streams the way real encoders do.
pub(crate) struct ChunkWriter<'a> {
    basic: [u8; 3],
    basic_len: usize,
    header: [u8; 11],
    extended: Option<u32>,
    payload: &'a [u8],
    offset: usize,
    chunk_size: usize,
    started: bool,
}

impl<'a> ChunkWriter<'a> {
    pub(crate) fn new(
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &'a [u8],
        chunk_size: u32,
    ) -> Self {
        let csid = clamp_csid(csid);
        debug_assert!(payload.len() <= MAX_PAYLOAD, "payload too large for RTMP");
        let payload = payload.get(..MAX_PAYLOAD).unwrap_or(payload);
        let (basic, basic_len) = basic_header(csid);
        let ts_field = timestamp.min(EXTENDED_TS_MARKER);
        let len = payload.len() as u32; // <= 0xFFFFFF after the truncation above
        let mut header = [0u8; 11];
        header[0..3].copy_from_slice(&ts_field.to_be_bytes()[1..]);
        header[3..6].copy_from_slice(&len.to_be_bytes()[1..]);
        header[6] = type_id;
        header[7..11].copy_from_slice(&stream_id.to_le_bytes());
        Self {
            basic,
            basic_len,
            header,
            extended: (timestamp >= EXTENDED_TS_MARKER).then_some(timestamp),
            payload,
            offset: 0,
            chunk_size: effective_chunk_size(chunk_size),
            started: false,
        }
    }

    /// Bytes the whole message will take on the wire.
    pub(crate) fn total_len(&self) -> usize {
        let ext = if self.extended.is_some() { 4 } else { 0 };
        let chunks = self.payload.len().div_ceil(self.chunk_size).max(1);
        self.basic_len + 11 + ext + self.payload.len() + (chunks - 1) * (self.basic_len + ext)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.started && self.offset >= self.payload.len()
    }

    /// Appends the next chunk (header and payload) to `out`; no-op when done.
    pub(crate) fn write_chunk(&mut self, out: &mut BytesMut) {
        if self.is_done() {
            return;
        }
        let basic = self.basic.get(..self.basic_len).unwrap_or(&self.basic);
        if self.started {
            // fmt 3: same basic header with the two top bits set.
            out.put_u8(basic.first().copied().unwrap_or(0) | 0xC0);
            out.put_slice(basic.get(1..).unwrap_or(&[]));
        } else {
            out.put_slice(basic);
            out.put_slice(&self.header);
            self.started = true;
        }
        if let Some(ts) = self.extended {
            out.put_u32(ts);
        }
        let end = self
            .offset
            .saturating_add(self.chunk_size)
            .min(self.payload.len());
        out.put_slice(self.payload.get(self.offset..end).unwrap_or(&[]));
        self.offset = end;
    }
}

/// Basic header for fmt 0; the caller ORs in another fmt when needed.
fn basic_header(csid: u32) -> ([u8; 3], usize) {
    match csid {
        0..=63 => ([csid as u8, 0, 0], 1),
        64..=319 => ([0, (csid - 64) as u8, 0], 2),
        _ => {
            let v = csid - 64;
            ([1, (v & 0xFF) as u8, (v >> 8) as u8], 3)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(csid: u32, ts: u32, payload: &[u8], chunk_size: u32) -> BytesMut {
        let mut out = BytesMut::new();
        encode_message(csid, ts, 9, 1, payload, chunk_size, &mut out);
        assert_eq!(out.len(), encoded_len(payload.len(), csid, ts, chunk_size));
        out
    }

    #[test]
    fn one_byte_basic_header_and_type0() {
        let out = encode(6, 0x010203, &[0xAA, 0xBB], 128);
        assert_eq!(
            &out[..],
            &[6, 0x01, 0x02, 0x03, 0, 0, 2, 9, 1, 0, 0, 0, 0xAA, 0xBB]
        );
    }

    #[test]
    fn two_and_three_byte_basic_headers() {
        assert_eq!(&encode(64, 0, &[], 128)[..2], &[0, 0]);
        assert_eq!(&encode(319, 0, &[], 128)[..2], &[0, 255]);
        assert_eq!(&encode(320, 0, &[], 128)[..3], &[1, 0, 1]);
        assert_eq!(&encode(65_599, 0, &[], 128)[..3], &[1, 255, 255]);
    }

    #[test]
    fn continuation_chunks_are_type3() {
        let payload: Vec<u8> = (0..10).collect();
        let out = encode(320, 5, &payload, 4);
        // 3 basic + 11 header + 4 payload, then (3 basic + 4), then (3 basic + 2).
        assert_eq!(out.len(), 14 + 4 + 7 + 5);
        assert_eq!(&out[18..21], &[0xC1, 0, 1]);
        assert_eq!(&out[21..25], &[4, 5, 6, 7]);
        assert_eq!(&out[25..28], &[0xC1, 0, 1]);
        assert_eq!(&out[28..], &[8, 9]);
    }

    #[test]
    fn extended_timestamp_repeated_on_continuations() {
        let out = encode(4, 0x0100_0000, &[1, 2, 3], 2);
        assert_eq!(&out[1..4], &[0xFF, 0xFF, 0xFF]);
        assert_eq!(&out[12..16], &[1, 0, 0, 0]);
        assert_eq!(&out[16..18], &[1, 2]);
        assert_eq!(&out[18..23], &[0xC4, 1, 0, 0, 0]);
        assert_eq!(&out[23..], &[3]);
    }

    #[test]
    fn exact_length_matches_for_boundaries() {
        for &(len, cs) in &[(0, 1), (1, 1), (128, 128), (129, 128), (4096, 4096), (5, 0)] {
            for &ts in &[0, 0xFF_FFFE, 0xFF_FFFF, u32::MAX] {
                for &csid in &[2, 63, 64, 319, 320, 65_599] {
                    let payload = vec![0u8; len];
                    let mut out = BytesMut::new();
                    encode_message(csid, ts, 8, 1, &payload, cs, &mut out);
                    assert_eq!(out.len(), encoded_len(len, csid, ts, cs));
                }
            }
        }
    }

    #[test]
    fn huge_chunk_size_is_one_chunk() {
        let out = encode(3, 0, &[7; 1000], super::super::MAX_CHUNK_SIZE);
        assert_eq!(out.len(), 12 + 1000);
    }
}
