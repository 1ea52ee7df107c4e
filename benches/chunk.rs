//! Chunk layer throughput against a memcpy of the same bytes.
//!
//! Decode: a realistic publisher stream (4 KB video messages interleaved with
//! small audio messages) at chunk size 4096 (OBS, ffmpeg) and 128 (the
//! default, many hardware encoders). Encode: the same messages serialized
//! once for fan-out. Each group has a `memcpy` baseline
//! (`Bytes::copy_from_slice` of the same bytes) so the overhead over the
//! unavoidable copy is visible at a glance.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cascade::protocol::chunk::{encode_message, encoded_len, ChunkDecoder, ChunkLimits};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const MESSAGES: usize = 256;
const VIDEO_LEN: usize = 4096;
const AUDIO_LEN: usize = 372;

struct Media {
    csid: u32,
    timestamp: u32,
    type_id: u8,
    payload: Vec<u8>,
}

/// Video every 33 ms, two AAC frames in between.
fn media() -> Vec<Media> {
    let mut out = Vec::new();
    for i in 0..MESSAGES as u32 {
        let t = i * 33;
        out.push(Media {
            csid: 6,
            timestamp: t,
            type_id: 9,
            payload: vec![(i & 0xFF) as u8; VIDEO_LEN],
        });
        for a in 0..2 {
            out.push(Media {
                csid: 4,
                timestamp: t + a * 21,
                type_id: 8,
                payload: vec![0xAF; AUDIO_LEN],
            });
        }
    }
    out
}

fn wire(media: &[Media], chunk_size: u32) -> Bytes {
    let mut out = BytesMut::new();
    for m in media {
        encode_message(
            m.csid,
            m.timestamp,
            m.type_id,
            1,
            &m.payload,
            chunk_size,
            &mut out,
        );
    }
    out.freeze()
}

fn decode(c: &mut Criterion) {
    let media = media();
    let mut group = c.benchmark_group("chunk_decode");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));
    for chunk_size in [4096u32, 128] {
        let bytes = wire(&media, chunk_size);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("decode", chunk_size),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    let mut dec = ChunkDecoder::new(ChunkLimits::default());
                    dec.set_chunk_size(chunk_size).expect("valid chunk size");
                    // The copy into the read buffer stands for the socket read.
                    let mut buf = BytesMut::from(&bytes[..]);
                    let mut n = 0;
                    while let Some(m) = dec.decode(&mut buf).expect("decode") {
                        n += m.payload.len();
                    }
                    black_box(n)
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("memcpy", chunk_size),
            &bytes,
            |b, bytes| b.iter(|| black_box(Bytes::copy_from_slice(bytes))),
        );
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let media = media();
    let mut group = c.benchmark_group("chunk_encode");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));
    for chunk_size in [4096u32, 128] {
        let total: usize = media
            .iter()
            .map(|m| encoded_len(m.payload.len(), m.csid, m.timestamp, chunk_size))
            .sum();
        let flat = wire(&media, chunk_size);
        group.throughput(Throughput::Bytes(total as u64));
        group.bench_function(BenchmarkId::new("encode", chunk_size), |b| {
            b.iter(|| {
                let mut out = BytesMut::with_capacity(total);
                for m in &media {
                    encode_message(
                        m.csid,
                        m.timestamp,
                        m.type_id,
                        1,
                        &m.payload,
                        chunk_size,
                        &mut out,
                    );
                }
                black_box(out.freeze())
            })
        });
        group.bench_function(BenchmarkId::new("memcpy", chunk_size), |b| {
            b.iter(|| black_box(Bytes::copy_from_slice(&flat)))
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
