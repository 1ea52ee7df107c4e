//! Unit tests of the outbox's queue policy and upstream framing.

use super::*;

fn frame(kind: MediaKind, ts: u32, key: bool, size: usize) -> Frame {
    let class = crate::hub::frame::Class {
        keyframe: key,
        ..Default::default()
    };
    Frame::new(
        kind,
        ts,
        class,
        Bytes::from(vec![0u8; size]),
        4096,
        Instant::now(),
    )
}

#[test]
fn overflow_skips_video_until_keyframe_and_keeps_audio() {
    let limits = QueueLimits {
        max_bytes: 10_000,
        max_duration_ms: 100_000,
        disconnect_after: Duration::from_secs(60),
    };
    let q = Outbox::new(limits);
    let now = Instant::now();
    assert!(q.push_frame(&frame(MediaKind::Video, 0, true, 6000), now));
    assert!(!q.push_frame(&frame(MediaKind::Video, 40, false, 6000), now));
    assert!(q.push_frame(&frame(MediaKind::Audio, 40, false, 100), now));
    // Still skipping: an inter frame that fits is dropped too.
    assert!(!q.push_frame(&frame(MediaKind::Video, 80, false, 10), now));
    assert_eq!(q.dropped(), 2);
    // Drain, then the next keyframe resumes video.
    let mut b = Batch::default();
    assert!(futures_lite_block_on(q.next_batch(&mut b, 100, 1 << 20)));
    assert_eq!(b.bufs.len(), 2);
    assert!(q.push_frame(&frame(MediaKind::Video, 120, true, 6000), now));
}

#[test]
fn stays_behind_then_disconnected() {
    let limits = QueueLimits {
        max_bytes: 1000,
        max_duration_ms: 100_000,
        disconnect_after: Duration::from_millis(10),
    };
    let q = Outbox::new(limits);
    let t0 = Instant::now();
    q.push_frame(&frame(MediaKind::Video, 0, true, 900), t0);
    q.push_frame(&frame(MediaKind::Video, 40, false, 900), t0);
    q.push_frame(
        &frame(MediaKind::Video, 80, false, 900),
        t0 + Duration::from_millis(50),
    );
    assert_eq!(q.closed(), Some(CloseReason::SlowPlayer));
    assert_eq!(q.queued_bytes(), 0);
}

#[test]
fn duration_bound_applies() {
    let limits = QueueLimits {
        max_bytes: 1 << 20,
        max_duration_ms: 1000,
        disconnect_after: Duration::from_secs(60),
    };
    let q = Outbox::new(limits);
    let now = Instant::now();
    assert!(q.push_frame(&frame(MediaKind::Video, 0, true, 10), now));
    assert!(q.push_frame(&frame(MediaKind::Video, 900, false, 10), now));
    assert!(!q.push_frame(&frame(MediaKind::Video, 1500, false, 10), now));
}

#[test]
fn metadata_at_zero_does_not_count_as_queued_duration() {
    let q = Outbox::new(QueueLimits::default());
    let now = Instant::now();
    assert!(q.push_frame(&frame(MediaKind::Metadata, 0, false, 100), now));
    assert!(q.push_frame(&frame(MediaKind::Video, 5000, true, 1000), now));
    assert_eq!(q.dropped(), 0);
}

#[test]
fn upstream_publish_uses_its_stream_id_chunk_size_and_set_data_frame() {
    use crate::protocol::chunk::{ChunkDecoder, ChunkLimits};
    let q = Outbox::new(QueueLimits::default());
    q.start_publish(5, 128);
    let now = Instant::now();
    // Shared frames are cut at 4096 for stream 1: re-cut for this peer.
    let mut meta = bytes::BytesMut::new();
    crate::protocol::amf::encode_amf0(
        &crate::protocol::amf::Amf0Value::String("onMetaData".into()),
        &mut meta,
    );
    let class = crate::hub::frame::Class::default();
    let m = Frame::new(MediaKind::Metadata, 0, class, meta.freeze(), 4096, now);
    q.push_start(&m);
    assert!(q.push_frame(&frame(MediaKind::Video, 40, true, 1000), now));
    let b = q.try_batch(16, 1 << 20).expect("queued");
    let mut wire = bytes::BytesMut::new();
    for part in &b.bufs {
        wire.extend_from_slice(part);
    }
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    dec.set_chunk_size(128).unwrap();
    let m1 = dec.decode(&mut wire).unwrap().expect("metadata");
    let m2 = dec.decode(&mut wire).unwrap().expect("video");
    assert!(wire.is_empty());
    assert_eq!((m1.stream_id, m2.stream_id), (5, 5));
    assert!(m1
        .payload
        .starts_with(b"\x02\x00\x0d@setDataFrame\x02\x00\x0aonMetaData"));
    assert_eq!(m2.payload.len(), 1000);
    // The end of the stream is a flag for the task, not a player notice.
    q.stream_ended(Bytes::from_static(b"notice"));
    assert!(q.ended());
    assert!(q.try_batch(16, 1 << 20).is_none());
}

/// Minimal executor for a future that is ready at once.
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    let waker = Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("not ready"),
    }
}
