//! Decoder unit tests on hand-built chunks (each header form, each fmt,
//! both extended-timestamp styles, control messages, limits).

use bytes::BytesMut;

use super::*;

fn basic(fmt: u8, csid: u32) -> Vec<u8> {
    let f = fmt << 6;
    match csid {
        2..=63 => vec![f | csid as u8],
        64..=319 => vec![f, (csid - 64) as u8],
        _ => vec![f | 1, ((csid - 64) & 0xFF) as u8, ((csid - 64) >> 8) as u8],
    }
}

fn ts_field(ts: u32) -> [u8; 3] {
    let t = ts.min(0xFF_FFFF).to_be_bytes();
    [t[1], t[2], t[3]]
}

fn ext(ts: u32) -> Vec<u8> {
    if ts >= 0xFF_FFFF {
        ts.to_be_bytes().to_vec()
    } else {
        Vec::new()
    }
}

fn t0(csid: u32, ts: u32, len: u32, type_id: u8, sid: u32) -> Vec<u8> {
    let mut v = basic(0, csid);
    v.extend_from_slice(&ts_field(ts));
    v.extend_from_slice(&len.to_be_bytes()[1..]);
    v.push(type_id);
    v.extend_from_slice(&sid.to_le_bytes());
    v.extend(ext(ts));
    v
}

fn t1(csid: u32, delta: u32, len: u32, type_id: u8) -> Vec<u8> {
    let mut v = basic(1, csid);
    v.extend_from_slice(&ts_field(delta));
    v.extend_from_slice(&len.to_be_bytes()[1..]);
    v.push(type_id);
    v.extend(ext(delta));
    v
}

fn t2(csid: u32, delta: u32) -> Vec<u8> {
    let mut v = basic(2, csid);
    v.extend_from_slice(&ts_field(delta));
    v.extend(ext(delta));
    v
}

fn cat(parts: &[&[u8]]) -> BytesMut {
    let mut b = BytesMut::new();
    for p in parts {
        b.extend_from_slice(p);
    }
    b
}

fn decoder() -> ChunkDecoder {
    ChunkDecoder::new(ChunkLimits::default())
}

fn drain(dec: &mut ChunkDecoder, buf: &mut BytesMut) -> Vec<RawMessage> {
    let mut out = Vec::new();
    while let Some(m) = dec.decode(buf).expect("decode") {
        out.push(m);
    }
    out
}

fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> RawMessage {
    RawMessage {
        csid,
        timestamp,
        type_id,
        stream_id,
        payload: bytes::Bytes::copy_from_slice(payload),
    }
}

#[test]
fn every_basic_header_form() {
    for csid in [2, 3, 63, 64, 200, 319, 320, 1000, 65_599] {
        let mut buf = cat(&[&t0(csid, 7, 2, 20, 0), b"hi"]);
        let got = drain(&mut decoder(), &mut buf);
        assert_eq!(got, vec![msg(csid, 7, 20, 0, b"hi")], "csid {csid}");
        assert!(buf.is_empty());
    }
    // The 3-byte form may also carry ids of the 2-byte range.
    let mut buf = cat(&[&[0x01, 36, 0], &t0(100, 1, 1, 8, 1)[2..], b"x"]);
    assert_eq!(
        drain(&mut decoder(), &mut buf),
        vec![msg(100, 1, 8, 1, b"x")]
    );
}

#[test]
fn fmt0_fields_and_little_endian_stream_id() {
    let mut buf = cat(&[&t0(4, 0x12_3456, 3, 8, 0x0102_0304), &[1, 2, 3]]);
    let got = drain(&mut decoder(), &mut buf);
    assert_eq!(got, vec![msg(4, 0x12_3456, 8, 0x0102_0304, &[1, 2, 3])]);
}

#[test]
fn fmt1_fmt2_fmt3_accumulate_deltas() {
    let mut buf = cat(&[
        &t0(6, 1000, 3, 9, 1),
        b"abc",
        &t1(6, 20, 2, 8),
        b"de",
        &t2(6, 30),
        b"fg",
        &basic(3, 6),
        b"hi",
    ]);
    let got = drain(&mut decoder(), &mut buf);
    assert_eq!(
        got,
        vec![
            msg(6, 1000, 9, 1, b"abc"),
            msg(6, 1020, 8, 1, b"de"),
            msg(6, 1050, 8, 1, b"fg"),
            msg(6, 1080, 8, 1, b"hi"),
        ]
    );
}

#[test]
fn fmt3_new_message_after_fmt0_reuses_its_timestamp_as_delta() {
    // Spec 5.3.1.2.4 and ffmpeg/SRS: the type-0 timestamp doubles as delta.
    let mut buf = cat(&[&t0(4, 26, 1, 8, 1), b"a", &basic(3, 4), b"b"]);
    let got = drain(&mut decoder(), &mut buf);
    assert_eq!(got[1], msg(4, 52, 8, 1, b"b"));
}

#[test]
fn fmt1_on_fresh_chunk_stream_is_accepted_like_librtmp_sends_it() {
    let mut buf = cat(&[&t1(2, 5, 4, 3), &[0, 0, 1, 0]]);
    assert_eq!(
        drain(&mut decoder(), &mut buf),
        vec![msg(2, 5, 3, 0, &[0, 0, 1, 0])]
    );
}

#[test]
fn fmt2_and_fmt3_without_previous_header_fail() {
    let mut buf = cat(&[&t2(5, 1), b"x"]);
    assert!(matches!(
        decoder().decode(&mut buf),
        Err(ChunkError::NoPreviousHeader { csid: 5 })
    ));
    let mut buf = cat(&[&basic(3, 70), b"x"]);
    assert!(matches!(
        decoder().decode(&mut buf),
        Err(ChunkError::NoPreviousHeader { csid: 70 })
    ));
}

#[test]
fn full_header_inside_a_message_fails() {
    let mut dec = decoder();
    let mut buf = cat(&[&t0(4, 0, 200, 8, 1), &[0; 128], &t0(4, 0, 1, 8, 1), b"x"]);
    assert!(matches!(
        dec.decode(&mut buf),
        Err(ChunkError::HeaderInsideMessage { csid: 4, fmt: 0 })
    ));
}

#[test]
fn multi_chunk_message_at_default_chunk_size() {
    let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let mut buf = cat(&[
        &t0(6, 40, 300, 9, 1),
        &payload[..128],
        &basic(3, 6),
        &payload[128..256],
        &basic(3, 6),
        &payload[256..],
    ]);
    assert_eq!(
        drain(&mut decoder(), &mut buf),
        vec![msg(6, 40, 9, 1, &payload)]
    );
}

#[test]
fn extended_timestamp_repeated_on_continuations() {
    let ts = 0x0123_4567;
    let payload = vec![0xAB; 200];
    let mut buf = cat(&[
        &t0(6, ts, 200, 9, 1),
        &payload[..128],
        &basic(3, 6),
        &ts.to_be_bytes(),
        &payload[128..],
    ]);
    assert_eq!(
        drain(&mut decoder(), &mut buf),
        vec![msg(6, ts, 9, 1, &payload)]
    );
}

#[test]
fn extended_timestamp_omitted_on_continuations() {
    let ts = 0x0123_4567;
    let payload = vec![0xAB; 200];
    let mut buf = cat(&[
        &t0(6, ts, 200, 9, 1),
        &payload[..128],
        &basic(3, 6),
        &payload[128..],
    ]);
    assert_eq!(
        drain(&mut decoder(), &mut buf),
        vec![msg(6, ts, 9, 1, &payload)]
    );
}

#[test]
fn omitted_extended_timestamp_with_short_matching_prefix_waits() {
    let ts = 0x0123_4567;
    let mut dec = decoder();
    // Continuation of 2 bytes that look like the start of the timestamp.
    let mut buf = cat(&[
        &t0(6, ts, 130, 9, 1),
        &[0; 128],
        &basic(3, 6),
        &[0x01, 0x23],
    ]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    // The next chunk arrives and disambiguates (0x01 0x23 then 0x07...).
    buf.extend_from_slice(&t0(6 + 1, 0, 0, 20, 0));
    let got = drain(&mut dec, &mut buf);
    assert_eq!(got[0].payload.len(), 130);
    assert_eq!(&got[0].payload[128..], &[0x01, 0x23]);
    // A short final chunk that does not match decides at once.
    let mut dec = decoder();
    let mut buf = cat(&[&t0(6, ts, 129, 9, 1), &[0; 128], &basic(3, 6), &[0x77]]);
    assert_eq!(dec.decode(&mut buf).unwrap().unwrap().payload.len(), 129);
}

#[test]
fn extended_delta_on_fmt1_and_fmt3_new_message() {
    let delta = 0x0200_0000;
    let mut buf = cat(&[
        &t0(4, 10, 1, 8, 1),
        b"a",
        &t1(4, delta, 1, 8),
        b"b",
        // fmt 3 new message repeating the extended delta
        &basic(3, 4),
        &delta.to_be_bytes(),
        b"c",
        // and one that omits it
        &basic(3, 4),
        b"d",
    ]);
    let got = drain(&mut decoder(), &mut buf);
    let ts: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
    assert_eq!(ts, vec![10, 10 + delta, 10 + 2 * delta, 10 + 3 * delta]);
    assert_eq!(got[3].payload, &b"d"[..]);
}

#[test]
fn set_chunk_size_applies_to_the_very_next_chunk() {
    let payload = vec![5u8; 3000];
    // Set Chunk Size on csid 3 (any csid is honoured), then a 3000-byte
    // single-chunk message, all in one buffer.
    let mut buf = cat(&[
        &t0(3, 0, 4, 1, 0),
        &4096u32.to_be_bytes(),
        &t0(6, 0, 3000, 9, 1),
        &payload,
    ]);
    let mut dec = decoder();
    let got = drain(&mut dec, &mut buf);
    assert_eq!(dec.chunk_size(), 4096);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].type_id, TYPE_SET_CHUNK_SIZE);
    assert_eq!(got[1].payload.len(), 3000);
}

#[test]
fn chunk_size_validation() {
    let mut dec = decoder();
    assert!(matches!(
        dec.set_chunk_size(0),
        Err(ChunkError::InvalidChunkSize(0))
    ));
    assert!(dec.set_chunk_size(0x8000_0000).is_err());
    dec.set_chunk_size(MAX_CHUNK_SIZE).unwrap();
    assert_eq!(dec.chunk_size(), MAX_CHUNK_SIZE);
    let mut buf = cat(&[&t0(2, 0, 4, 1, 0), &[0, 0, 0, 0]]);
    assert!(matches!(
        dec.decode(&mut buf),
        Err(ChunkError::InvalidChunkSize(0))
    ));
    let mut buf = cat(&[&t0(2, 0, 3, 1, 0), &[0, 0, 1]]);
    assert!(matches!(
        decoder().decode(&mut buf),
        Err(ChunkError::InvalidControlMessage { type_id: 1, len: 3 })
    ));
}

#[test]
fn huge_chunk_size_makes_one_chunk() {
    let mut dec = decoder();
    dec.set_chunk_size(MAX_CHUNK_SIZE).unwrap();
    let payload = vec![1u8; 100_000];
    let mut buf = BytesMut::new();
    encode_message(6, 0, 9, 1, &payload, MAX_CHUNK_SIZE, &mut buf);
    assert_eq!(drain(&mut dec, &mut buf), vec![msg(6, 0, 9, 1, &payload)]);
}

#[test]
fn abort_message_drops_the_partial_message() {
    let mut dec = decoder();
    let mut buf = cat(&[
        &t0(4, 0, 300, 8, 1),
        &[9; 128],
        &t0(2, 0, 4, TYPE_ABORT, 0),
        &4u32.to_be_bytes(),
        &t0(4, 5, 2, 8, 1),
        b"ok",
    ]);
    let got = drain(&mut dec, &mut buf);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].type_id, TYPE_ABORT);
    assert_eq!(got[1], msg(4, 5, 8, 1, b"ok"));
}

#[test]
fn abort_method_keeps_header_state() {
    let mut dec = decoder();
    let mut buf = cat(&[&t0(4, 7, 200, 8, 1), &[9; 128]]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    dec.abort(4);
    dec.abort(99); // unknown: no-op
                   // fmt 3 now starts a new 200-byte message with ts 7 + 7.
    let mut buf = cat(&[&basic(3, 4), &[1; 128], &basic(3, 4), &[1; 72]]);
    let got = drain(&mut dec, &mut buf);
    assert_eq!(got, vec![msg(4, 14, 8, 1, &[1; 200])]);
}

#[test]
fn message_too_large_is_refused_at_the_header() {
    let limits = ChunkLimits {
        max_message_size: 1000,
        ..ChunkLimits::default()
    };
    let mut buf = BytesMut::from(&t0(6, 0, 1001, 9, 1)[..]);
    assert!(matches!(
        ChunkDecoder::new(limits).decode(&mut buf),
        Err(ChunkError::MessageTooLarge {
            length: 1001,
            max: 1000,
            ..
        })
    ));
}

#[test]
fn too_many_chunk_streams() {
    let limits = ChunkLimits {
        max_chunk_streams: 3,
        ..ChunkLimits::default()
    };
    let mut dec = ChunkDecoder::new(limits);
    for csid in [3, 4, 5, 3, 4] {
        let mut buf = cat(&[&t0(csid, 0, 0, 20, 0)]);
        assert!(dec.decode(&mut buf).unwrap().is_some());
    }
    let mut buf = cat(&[&t0(65_000, 0, 0, 20, 0)]);
    assert!(matches!(
        dec.decode(&mut buf),
        Err(ChunkError::TooManyChunkStreams {
            csid: 65_000,
            max: 3
        })
    ));
}

#[test]
fn reassembly_buffer_is_not_sized_by_the_announced_length() {
    let mut dec = ChunkDecoder::new(ChunkLimits {
        max_message_size: 16 << 20,
        max_reassembly_bytes: 32 << 20,
        ..ChunkLimits::default()
    });
    let mut buf = cat(&[&t0(6, 0, 0xFF_FFF0, 9, 1), &[0; 128]]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    let cap = dec.partial_capacity(6).unwrap();
    assert!((128..=128 * 1024).contains(&cap), "capacity {cap}");
}

#[test]
fn large_message_ends_in_an_exactly_sized_buffer() {
    let mut dec = decoder();
    dec.set_chunk_size(1000).unwrap();
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut buf = BytesMut::new();
    encode_message(6, 0, 9, 1, &payload, 1000, &mut buf);
    let whole = buf.clone();
    let mut last_cap = 0;
    // Feed one chunk at a time and watch the buffer grow.
    let mut fed = BytesMut::new();
    let mut got = None;
    for piece in whole.chunks(1001) {
        fed.extend_from_slice(piece);
        if let Some(m) = dec.decode(&mut fed).unwrap() {
            got = Some(m);
            break;
        }
        let cap = dec.partial_capacity(6).unwrap_or(0);
        assert!(cap >= last_cap && cap <= payload.len());
        last_cap = cap;
    }
    assert_eq!(last_cap, payload.len(), "final step sized exactly");
    assert_eq!(got.unwrap().payload, payload);
}

#[test]
fn byte_by_byte_feeding_matches_whole_buffer() {
    let mut whole = BytesMut::new();
    encode_message(3, 0, 1, 0, &512u32.to_be_bytes(), 128, &mut whole);
    encode_message(4, 0x0100_0000, 8, 1, &[3; 1500], 512, &mut whole);
    encode_message(320, 33, 9, 1, &[4; 10], 512, &mut whole);
    whole.extend_from_slice(&t1(320, 3, 1, 9));
    whole.extend_from_slice(b"z");
    let expected = drain(&mut decoder(), &mut whole.clone());
    assert_eq!(expected.len(), 4);
    let mut dec = decoder();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in whole.iter() {
        buf.extend_from_slice(&[*b]);
        got.extend(drain(&mut dec, &mut buf));
    }
    assert_eq!(got, expected);
    assert!(buf.is_empty());
}

#[test]
fn interleaved_audio_and_video() {
    let audio = vec![0xA0u8; 300];
    let video = vec![0x70u8; 300];
    let mut buf = cat(&[
        &t0(4, 100, 300, 8, 1),
        &audio[..128],
        &t0(6, 100, 300, 9, 1),
        &video[..128],
        &basic(3, 4),
        &audio[128..256],
        &basic(3, 6),
        &video[128..256],
        &basic(3, 4),
        &audio[256..],
        &basic(3, 6),
        &video[256..],
    ]);
    let got = drain(&mut decoder(), &mut buf);
    assert_eq!(
        got,
        vec![msg(4, 100, 8, 1, &audio), msg(6, 100, 9, 1, &video)]
    );
}

#[test]
fn single_chunk_payload_shares_the_read_buffer() {
    let mut buf = BytesMut::with_capacity(8192);
    encode_message(6, 0, 9, 1, &[7; 100], 128, &mut buf);
    encode_message(6, 40, 9, 1, &[8; 100], 128, &mut buf);
    let base = buf.as_ptr() as usize;
    let mut dec = decoder();
    let first = dec.decode(&mut buf).unwrap().unwrap();
    let second = dec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(first.payload.as_ptr() as usize, base + 12);
    assert_eq!(second.payload.as_ptr() as usize, base + 12 + 100 + 12);
}

#[test]
fn empty_message_and_incomplete_header() {
    let mut dec = decoder();
    let whole = t0(65_599, 0xFF_FFFF, 0, 20, 0);
    let mut buf = BytesMut::from(&whole[..whole.len() - 1]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    assert_eq!(
        buf.len(),
        whole.len() - 1,
        "incomplete chunk must stay in the buffer"
    );
    buf.extend_from_slice(&whole[whole.len() - 1..]);
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(msg(65_599, 0xFF_FFFF, 20, 0, b""))
    );
}
