//! A chunk-stream reader for players that only look at the start of media.
//!
//! The harness must cost far less than the server it measures. The full
//! [`ChunkDecoder`](cascade::protocol::chunk::ChunkDecoder) reassembles every
//! message (a copy and an allocation per multi-chunk frame); a player only
//! needs each video message's first bytes (where the latency stamp is), so
//! this reader walks chunk headers straight out of the read buffer, keeps
//! the first [`HEAD_CAP`] bytes of each audio/video message, and
//! reassembles only control, command and data messages (small and rare).
//! It follows the same header rules as the cascade decoder (type-1 on a new
//! chunk stream accepted, extended timestamp on type-3 chunks consumed only
//! when it repeats the expected value).

use bytes::{Bytes, BytesMut};

use cascade::protocol::chunk::RawMessage;
use cascade::protocol::message::type_id;

/// Bytes kept of each media message: enough for the FLV header, a NAL
/// length and our escaped SEI stamp.
pub const HEAD_CAP: usize = 96;
/// Largest control/command/data message reassembled.
const MAX_FULL: u32 = 1024 * 1024;
const MAX_STREAMS: usize = 64;
/// Longest chunk header: 3-byte basic + 11 + 4 extended timestamp.
const MAX_HEADER: usize = 18;
const EXTENDED: u32 = 0x00FF_FFFF;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SkimError {
    #[error("compressed header on chunk stream {0} without a previous full header")]
    NoPreviousHeader(u32),
    #[error("more than {MAX_STREAMS} chunk streams")]
    TooManyStreams,
    #[error("message of {0} bytes is too large")]
    TooLarge(u32),
    #[error("invalid chunk size")]
    BadChunkSize,
}

/// What the reader hands out.
pub enum Skimmed<'a> {
    /// A media message: its type, total length and first bytes.
    Media {
        type_id: u8,
        timestamp: u32,
        #[allow(dead_code)] // for diagnostics and the decoder comparison test
        len: u32,
        head: &'a [u8],
    },
    /// A control, command or data message, whole.
    Full(RawMessage),
}

struct Stream {
    csid: u32,
    timestamp: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Extended timestamp of the last full header, if it had one.
    extended: Option<u32>,
    /// Bytes of the current message still to come (0: between messages).
    remaining: u32,
    head: [u8; HEAD_CAP],
    head_len: usize,
    full: Option<BytesMut>,
}

pub struct Skimmer {
    chunk_size: u32,
    streams: Vec<Stream>,
    /// Chunk stream index and payload bytes left in the current chunk.
    current: Option<(usize, u32)>,
    /// A chunk header split across reads.
    carry: Vec<u8>,
}

impl Default for Skimmer {
    fn default() -> Self {
        Skimmer {
            chunk_size: 128,
            streams: Vec::new(),
            current: None,
            carry: Vec::with_capacity(MAX_HEADER),
        }
    }
}

fn u24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

fn u32be(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Whether a message type is reassembled whole.
fn wants_full(t: u8) -> bool {
    !matches!(t, type_id::AUDIO | type_id::VIDEO | type_id::AGGREGATE)
}

impl Skimmer {
    /// Consumes `data` entirely (an incomplete header is carried over) and
    /// reports each message that completes.
    pub fn push(
        &mut self,
        mut data: &[u8],
        on: &mut impl FnMut(Skimmed<'_>),
    ) -> Result<(), SkimError> {
        loop {
            if let Some((idx, left)) = self.current {
                if left > 0 && data.is_empty() {
                    return Ok(());
                }
                let take = (left as usize).min(data.len());
                let (part, rest) = data.split_at(take);
                data = rest;
                let left = left - take as u32;
                self.current = if left == 0 { None } else { Some((idx, left)) };
                self.payload(idx, part, on)?;
                continue;
            }
            if data.is_empty() {
                return Ok(());
            }
            // Parse a header, from the carried bytes plus new ones if needed.
            if self.carry.is_empty() {
                match self.header(data)? {
                    Some(used) => data = &data[used..],
                    None => {
                        self.carry.extend_from_slice(data);
                        return Ok(());
                    }
                }
            } else {
                let old = self.carry.len();
                let add = (MAX_HEADER - old).min(data.len());
                let mut buf = [0u8; MAX_HEADER];
                buf[..old].copy_from_slice(&self.carry);
                buf[old..old + add].copy_from_slice(&data[..add]);
                match self.header(&buf[..old + add])? {
                    Some(used) => {
                        self.carry.clear();
                        data = &data[used - old..];
                    }
                    None => {
                        self.carry.extend_from_slice(&data[..add]);
                        data = &data[add..];
                    }
                }
            }
        }
    }

    /// Parses one chunk header; `None` when `b` is too short. Sets `current`.
    fn header(&mut self, b: &[u8]) -> Result<Option<usize>, SkimError> {
        let Some(&b0) = b.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3F {
            0 => match b.get(1) {
                Some(&x) => (u32::from(x) + 64, 2),
                None => return Ok(None),
            },
            1 => match b.get(1..3) {
                Some(x) => (u32::from(x[0]) + 64 + u32::from(x[1]) * 256, 3),
                None => return Ok(None),
            },
            c => (u32::from(c), 1),
        };
        let mh = [11usize, 7, 3, 0][usize::from(fmt)];
        let Some(h) = b.get(pos..pos + mh) else {
            return Ok(None);
        };
        pos += mh;
        let idx = match self.streams.iter().position(|s| s.csid == csid) {
            Some(i) => i,
            None => {
                if fmt >= 2 {
                    return Err(SkimError::NoPreviousHeader(csid));
                }
                if self.streams.len() >= MAX_STREAMS {
                    return Err(SkimError::TooManyStreams);
                }
                self.streams.push(Stream {
                    csid,
                    timestamp: 0,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    extended: None,
                    remaining: 0,
                    head: [0; HEAD_CAP],
                    head_len: 0,
                    full: None,
                });
                self.streams.len() - 1
            }
        };
        let s = &mut self.streams[idx];
        let mut ts_field = None;
        if fmt <= 2 {
            ts_field = Some(u24(&h[0..3]));
        }
        let ext = if ts_field == Some(EXTENDED) {
            let Some(e) = b.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some(u32be(e))
        } else if fmt == 3 {
            match s.extended {
                // Repeated by Adobe-era senders, omitted by others: peek.
                Some(v) => match b.get(pos..pos + 4) {
                    Some(e) if u32be(e) == v => {
                        pos += 4;
                        Some(v)
                    }
                    Some(_) => Some(v),
                    None => return Ok(None),
                },
                None => None,
            }
        } else {
            None
        };
        // Commit the header.
        let starts = fmt != 3 || s.remaining == 0;
        match fmt {
            0 => {
                s.length = u24(&h[3..6]);
                s.type_id = h[6];
                s.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
                s.timestamp = ext.unwrap_or(u24(&h[0..3]));
            }
            1 | 2 => {
                if fmt == 1 {
                    s.length = u24(&h[3..6]);
                    s.type_id = h[6];
                }
                s.timestamp = s.timestamp.wrapping_add(ext.unwrap_or(u24(&h[0..3])));
            }
            _ => {}
        }
        if fmt <= 2 {
            s.extended = ext;
        }
        if starts {
            if wants_full(s.type_id) && s.length > MAX_FULL {
                return Err(SkimError::TooLarge(s.length));
            }
            s.remaining = s.length;
            s.head_len = 0;
            s.full = wants_full(s.type_id).then(|| BytesMut::with_capacity(s.length as usize));
        }
        // A zero-length message completes through `push` with no payload.
        self.current = Some((idx, s.remaining.min(self.chunk_size)));
        Ok(Some(pos))
    }

    fn payload(
        &mut self,
        idx: usize,
        part: &[u8],
        on: &mut impl FnMut(Skimmed<'_>),
    ) -> Result<(), SkimError> {
        let s = &mut self.streams[idx];
        let room = HEAD_CAP - s.head_len;
        let n = room.min(part.len());
        s.head[s.head_len..s.head_len + n].copy_from_slice(&part[..n]);
        s.head_len += n;
        if let Some(f) = s.full.as_mut() {
            f.extend_from_slice(part);
        }
        s.remaining -= part.len() as u32;
        if s.remaining == 0 {
            self.complete(idx, on)?;
        }
        Ok(())
    }

    fn complete(&mut self, idx: usize, on: &mut impl FnMut(Skimmed<'_>)) -> Result<(), SkimError> {
        let s = &mut self.streams[idx];
        match s.full.take() {
            Some(full) => {
                let raw = RawMessage {
                    csid: s.csid,
                    timestamp: s.timestamp,
                    type_id: s.type_id,
                    stream_id: s.stream_id,
                    payload: Bytes::from(full),
                };
                if raw.type_id == type_id::SET_CHUNK_SIZE {
                    let size = raw
                        .payload
                        .get(..4)
                        .map(u32be)
                        .ok_or(SkimError::BadChunkSize)?
                        & 0x7FFF_FFFF;
                    if size == 0 {
                        return Err(SkimError::BadChunkSize);
                    }
                    self.chunk_size = size;
                } else if raw.type_id == type_id::ABORT {
                    if let Some(c) = raw.payload.get(..4).map(u32be) {
                        self.abort(c);
                    }
                }
                on(Skimmed::Full(raw));
            }
            None => on(Skimmed::Media {
                type_id: s.type_id,
                timestamp: s.timestamp,
                len: s.length,
                head: &s.head[..s.head_len],
            }),
        }
        Ok(())
    }

    fn abort(&mut self, csid: u32) {
        if let Some(i) = self.streams.iter().position(|s| s.csid == csid) {
            self.streams[i].remaining = 0;
            self.streams[i].full = None;
            if self.current.is_some_and(|(c, _)| c == i) {
                self.current = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade::protocol::chunk::{encode_message, ChunkDecoder, ChunkLimits};
    use proptest::prelude::*;

    /// (type, payload len, timestamp) -> the stream the encoder produces.
    fn encode(msgs: &[(u8, usize, u32)], chunk: u32) -> Vec<u8> {
        let mut out = BytesMut::new();
        // Announce the chunk size first, as servers do.
        encode_message(
            2,
            0,
            type_id::SET_CHUNK_SIZE,
            0,
            &chunk.to_be_bytes(),
            128,
            &mut out,
        );
        for (i, &(t, len, ts)) in msgs.iter().enumerate() {
            let payload: Vec<u8> = (0..len).map(|j| (i * 7 + j) as u8).collect();
            let csid = if t == type_id::VIDEO { 6 } else { 4 };
            encode_message(csid, ts, t, 1, &payload, chunk, &mut out);
        }
        out.to_vec()
    }

    fn skim_all(bytes: &[u8], cuts: &[usize]) -> Vec<(u8, u32, Vec<u8>)> {
        let mut sk = Skimmer::default();
        let mut got = Vec::new();
        let mut on = |m: Skimmed<'_>| match m {
            Skimmed::Media {
                type_id, len, head, ..
            } => got.push((type_id, len, head.to_vec())),
            Skimmed::Full(r) => got.push((
                r.type_id,
                r.payload.len() as u32,
                r.payload[..r.payload.len().min(HEAD_CAP)].to_vec(),
            )),
        };
        let mut pos = 0;
        for &c in cuts {
            let c = c.min(bytes.len());
            if c > pos {
                sk.push(&bytes[pos..c], &mut on).unwrap();
                pos = c;
            }
        }
        sk.push(&bytes[pos..], &mut on).unwrap();
        got
    }

    fn decode_all(bytes: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut buf = BytesMut::from(bytes);
        let mut got = Vec::new();
        while let Some(r) = dec.decode(&mut buf).unwrap() {
            got.push((
                r.type_id,
                r.payload.len() as u32,
                r.payload[..r.payload.len().min(HEAD_CAP)].to_vec(),
            ));
        }
        got
    }

    #[test]
    fn extended_timestamps_and_zero_length() {
        let msgs = [
            (type_id::VIDEO, 300, 0x0100_0000),
            (type_id::DATA_AMF0, 0, 5),
            (type_id::AUDIO, 10, 0xFFFF_FFFF),
        ];
        let bytes = encode(&msgs, 128);
        assert_eq!(skim_all(&bytes, &[]), decode_all(&bytes));
        assert_eq!(
            skim_all(&bytes, &(0..bytes.len()).collect::<Vec<_>>()),
            decode_all(&bytes)
        );
    }

    proptest! {
        #[test]
        fn same_messages_as_the_full_decoder(
            msgs in proptest::collection::vec((prop_oneof![Just(8u8), Just(9u8), Just(18u8), Just(20u8)], 0usize..3000, any::<u32>()), 1..12),
            chunk in prop_oneof![Just(1u32), Just(128), Just(300), Just(4096), Just(65536)],
            mut cuts in proptest::collection::vec(0usize..40000, 0..20),
        ) {
            let bytes = encode(&msgs, chunk);
            cuts.sort_unstable();
            prop_assert_eq!(skim_all(&bytes, &cuts), decode_all(&bytes));
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000), cut in 0usize..2000) {
            let mut sk = Skimmer::default();
            let cut = cut.min(data.len());
            let mut on = |_: Skimmed<'_>| {};
            if sk.push(&data[..cut], &mut on).is_ok() {
                let _ = sk.push(&data[cut..], &mut on);
            }
        }
    }
}
