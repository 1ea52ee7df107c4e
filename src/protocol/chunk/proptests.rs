//! Round trips: random messages on random chunk streams, chunked either by
//! `encode_message` or by a header-compressing sender (fmt 1/2/3, extended
//! timestamps repeated or omitted), interleaved chunk by chunk, fed to the
//! decoder in random pieces: the same messages must come out.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::encoder::ChunkWriter;
use super::*;

#[derive(Debug, Clone)]
struct Msg {
    slot: usize,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    len: usize,
    seed: u64,
}

/// Cheap deterministic bytes: generating 20 KB per message through
/// proptest's byte strategy would dominate the test time.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = XorShift(seed | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

fn csid_strategy() -> impl Strategy<Value = u32> {
    // csid 2 is left to the Set Chunk Size message sent first.
    prop_oneof![3u32..=63, 64u32..=319, 320u32..=65_599]
}

fn ts_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..5000, 0xFF_FFF0u32..0x100_0010, any::<u32>()]
}

fn msg_strategy() -> impl Strategy<Value = Msg> {
    (
        0usize..6,
        ts_strategy(),
        any::<u8>(),
        prop_oneof![Just(0u32), Just(1u32), any::<u32>()],
        prop_oneof![0usize..200, 0usize..20_000],
        any::<u64>(),
    )
        .prop_map(|(slot, timestamp, t, stream_id, len, seed)| Msg {
            slot,
            timestamp,
            // Control types would change the decoder state under the test.
            type_id: if t == TYPE_SET_CHUNK_SIZE || t == TYPE_ABORT {
                9
            } else {
                t
            },
            stream_id,
            len,
            seed,
        })
}

/// Per-chunk-stream memory of the compressing sender.
#[derive(Clone, Copy)]
struct Prev {
    timestamp: u32,
    len: usize,
    type_id: u8,
    stream_id: u32,
    /// Value of the last timestamp field (absolute for fmt 0, else delta).
    field: u32,
}

fn push_basic(out: &mut Vec<u8>, fmt: u8, csid: u32) {
    let f = fmt << 6;
    match csid {
        0..=63 => out.push(f | csid as u8),
        64..=319 => out.extend_from_slice(&[f, (csid - 64) as u8]),
        _ => out.extend_from_slice(&[f | 1, ((csid - 64) & 0xFF) as u8, ((csid - 64) >> 8) as u8]),
    }
}

/// Would a decoder peeking at `data` mistake it for (or wait on) one of the
/// timestamps a sender may repeat? Then repeat it instead of omitting.
fn ambiguous(data: &[u8], candidates: [u32; 2]) -> bool {
    let n = data.len().min(4);
    data.is_empty()
        || candidates
            .iter()
            .any(|c| data.get(..n) == c.to_be_bytes().get(..n))
}

/// Chunks of one message the way librtmp/ffmpeg compress headers.
fn compressed_chunks(
    prev: &mut Option<Prev>,
    csid: u32,
    m: &Msg,
    data: &[u8],
    chunk_size: usize,
    omit_ext: bool,
) -> Vec<Vec<u8>> {
    let (fmt, field) = match *prev {
        Some(p) if p.stream_id == m.stream_id && m.timestamp >= p.timestamp => {
            let delta = m.timestamp - p.timestamp;
            let fmt = if p.len != m.len || p.type_id != m.type_id {
                1
            } else if delta != p.field {
                2
            } else {
                3
            };
            (fmt, delta)
        }
        _ => (0, m.timestamp),
    };
    *prev = Some(Prev {
        timestamp: m.timestamp,
        len: m.len,
        type_id: m.type_id,
        stream_id: m.stream_id,
        field,
    });
    let extended = field >= 0xFF_FFFF;
    let candidates = [field, m.timestamp];
    let mut chunks = Vec::new();
    let mut offset = 0;
    loop {
        let end = (offset + chunk_size).min(data.len());
        let body = &data[offset..end];
        let mut c = Vec::with_capacity(body.len() + 18);
        let first = offset == 0;
        push_basic(&mut c, if first { fmt } else { 3 }, csid);
        if first && fmt < 3 {
            c.extend_from_slice(&field.min(0xFF_FFFF).to_be_bytes()[1..]);
            if fmt < 2 {
                c.extend_from_slice(&(m.len as u32).to_be_bytes()[1..]);
                c.push(m.type_id);
            }
            if fmt == 0 {
                c.extend_from_slice(&m.stream_id.to_le_bytes());
            }
            if extended {
                c.extend_from_slice(&field.to_be_bytes());
            }
        } else if extended && (!omit_ext || ambiguous(body, candidates)) {
            c.extend_from_slice(&field.to_be_bytes());
        }
        c.extend_from_slice(body);
        chunks.push(c);
        offset = end;
        if offset >= data.len() {
            return chunks;
        }
    }
}

/// Gives each chunk stream fixed-size messages at a fixed spacing, the
/// pattern that makes senders use fmt 2 and fmt 3 (also for new messages).
fn make_regular(msgs: &mut [Msg], slots: usize, step: u32) {
    let mut next_ts: Vec<Option<u32>> = vec![None; slots];
    for m in msgs.iter_mut() {
        let slot = m.slot % slots;
        let ts = next_ts[slot].unwrap_or(m.timestamp);
        next_ts[slot] = Some(ts.wrapping_add(step));
        m.timestamp = ts;
        m.len = [3, 150, 4000][slot % 3];
        m.type_id = 8 + (slot % 2) as u8;
        m.stream_id = 1;
    }
}

/// One chunk stream's chunks in order, and each message with its chunk count.
type Queue = (Vec<Vec<u8>>, Vec<(RawMessage, usize)>);

fn run_round_trip(
    csids: &[u32],
    msgs: &[Msg],
    chunk_size: u32,
    compress: bool,
    omit_ext: bool,
    schedule_seed: u64,
    max_piece: usize,
) -> Result<(), TestCaseError> {
    // Per chunk stream: its chunks in order, and each message with the
    // number of chunks it takes.
    let mut queues: Vec<Queue> = vec![Default::default(); csids.len()];
    let mut prevs = vec![None; csids.len()];
    for m in msgs {
        let slot = m.slot % csids.len();
        let csid = csids[slot];
        let data = payload(m.len, m.seed);
        let chunks = if compress {
            compressed_chunks(
                &mut prevs[slot],
                csid,
                m,
                &data,
                chunk_size as usize,
                omit_ext,
            )
        } else {
            let mut w =
                ChunkWriter::new(csid, m.timestamp, m.type_id, m.stream_id, &data, chunk_size);
            let mut chunks = Vec::new();
            while !w.is_done() {
                let mut c = BytesMut::new();
                w.write_chunk(&mut c);
                chunks.push(c.to_vec());
            }
            chunks
        };
        let q = &mut queues[slot];
        let count = chunks.len();
        q.0.extend(chunks);
        let raw = RawMessage {
            csid,
            timestamp: m.timestamp,
            type_id: m.type_id,
            stream_id: m.stream_id,
            payload: Bytes::from(data),
        };
        q.1.push((raw, count));
    }

    // Expected output: the Set Chunk Size message, then messages in the
    // order their last chunk goes out.
    let mut wire = BytesMut::new();
    encode_message(
        2,
        0,
        TYPE_SET_CHUNK_SIZE,
        0,
        &chunk_size.to_be_bytes(),
        128,
        &mut wire,
    );
    let mut expected = vec![RawMessage {
        csid: 2,
        timestamp: 0,
        type_id: TYPE_SET_CHUNK_SIZE,
        stream_id: 0,
        payload: Bytes::copy_from_slice(&chunk_size.to_be_bytes()),
    }];
    // Per slot: next chunk, current message, chunks of it already sent.
    let mut cursors = vec![(0usize, 0usize, 0usize); csids.len()];
    let mut rng = XorShift(schedule_seed | 1);
    loop {
        let active: Vec<usize> = (0..csids.len())
            .filter(|&s| cursors[s].0 < queues[s].0.len())
            .collect();
        if active.is_empty() {
            break;
        }
        let s = active[(rng.next() % active.len() as u64) as usize];
        let (chunk, msg, in_msg) = cursors[s];
        wire.extend_from_slice(&queues[s].0[chunk]);
        if in_msg + 1 == queues[s].1[msg].1 {
            expected.push(queues[s].1[msg].0.clone());
            cursors[s] = (chunk + 1, msg + 1, 0);
        } else {
            cursors[s] = (chunk + 1, msg, in_msg + 1);
        }
    }

    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let n = ((rng.next() as usize) % max_piece + 1).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(m) = dec
            .decode(&mut buf)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
        {
            got.push(m);
        }
    }
    prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
    prop_assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        prop_assert_eq!(g, e);
    }
    prop_assert_eq!(dec.chunk_size(), chunk_size);
    prop_assert_eq!(
        dec.reassembly_bytes(),
        0,
        "complete messages hold no budget"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn encoder_output_round_trips(
        csids in prop::collection::btree_set(csid_strategy(), 1..5),
        msgs in prop::collection::vec(msg_strategy(), 1..10),
        chunk_size in prop_oneof![1u32..300, 1u32..70_000],
        schedule_seed in any::<u64>(),
        max_piece in prop_oneof![1usize..8, 1usize..5000],
    ) {
        let csids: Vec<u32> = csids.into_iter().collect();
        run_round_trip(&csids, &msgs, chunk_size, false, false, schedule_seed, max_piece)?;
    }

    #[test]
    fn compressed_headers_round_trip(
        csids in prop::collection::btree_set(csid_strategy(), 1..5),
        msgs in prop::collection::vec(msg_strategy(), 1..10),
        chunk_size in prop_oneof![1u32..300, 1u32..70_000],
        omit_ext in any::<bool>(),
        regular in any::<bool>(),
        step in prop_oneof![0u32..100, 0xFF_FFF0u32..0x100_0010],
        schedule_seed in any::<u64>(),
        max_piece in prop_oneof![1usize..8, 1usize..5000],
    ) {
        let csids: Vec<u32> = csids.into_iter().collect();
        let mut msgs = msgs;
        if regular {
            make_regular(&mut msgs, csids.len(), step);
        }
        run_round_trip(&csids, &msgs, chunk_size, true, omit_ext, schedule_seed, max_piece)?;
    }

    #[test]
    fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = dec.decode(&mut buf) {}
    }
}

#[test]
fn timestamp_patterns_compress_to_type3() {
    // Sanity check of the test sender itself: equal spacing gives fmt 3.
    let mut prev = None;
    let mk = |ts| Msg {
        slot: 0,
        timestamp: ts,
        type_id: 8,
        stream_id: 1,
        len: 3,
        seed: 1,
    };
    let data = payload(3, 1);
    let a = compressed_chunks(&mut prev, 4, &mk(0), &data, 128, false);
    let b = compressed_chunks(&mut prev, 4, &mk(20), &data, 128, false);
    let c = compressed_chunks(&mut prev, 4, &mk(40), &data, 128, false);
    assert_eq!((a[0][0] >> 6, b[0][0] >> 6, c[0][0] >> 6), (0, 2, 3));
}
