//! Unit tests of the outbox's queue policy and upstream framing.

use super::*;
use std::cell::RefCell;

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

/// Queue bounds without a coalescing window.
fn bounds(max_bytes: usize, max_duration_ms: u32, disconnect_after: Duration) -> QueueLimits {
    QueueLimits {
        max_bytes,
        max_duration_ms,
        disconnect_after,
        coalesce: Duration::ZERO,
        max_control_bytes: 1 << 20,
    }
}

#[test]
fn overflow_skips_video_until_keyframe_and_keeps_audio() {
    let limits = bounds(10_000, 100_000, Duration::from_secs(60));
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
    let limits = bounds(1000, 100_000, Duration::from_millis(10));
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
    let limits = bounds(1 << 20, 1000, Duration::from_secs(60));
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
    use crate::hub::Subscriber;
    use crate::protocol::chunk::{ChunkDecoder, ChunkLimits};
    let q = Rc::new(Outbox::new(QueueLimits::default()));
    let feed = crate::egress::UpstreamFeed::new(q.clone(), 5, 128);
    assert!(!feed.is_viewer());
    let now = Instant::now();
    // Shared frames are cut at 4096 for stream 1: re-cut for this peer.
    let mut meta = bytes::BytesMut::new();
    crate::protocol::amf::encode_amf0(
        &crate::protocol::amf::Amf0Value::String("onMetaData".into()),
        &mut meta,
    );
    let class = crate::hub::frame::Class::default();
    let m = Frame::new(MediaKind::Metadata, 0, class, meta.freeze(), 4096, now);
    feed.start(std::slice::from_ref(&m));
    assert!(feed.offer(&frame(MediaKind::Video, 40, true, 1000), now));
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
    feed.end();
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

/// A socket that takes everything and records each send's message count.
struct RecordingSink(Rc<RefCell<Vec<usize>>>);

impl DirectSink for RecordingSink {
    fn send_now(&self, bufs: &[&[u8]]) -> std::io::Result<usize> {
        self.0.borrow_mut().push(bufs.len());
        Ok(bufs.iter().map(|b| b.len()).sum())
    }
}

fn coalescing_outbox(window_ms: u64) -> (Rc<Outbox>, Rc<RefCell<Vec<usize>>>) {
    let limits = QueueLimits {
        coalesce: Duration::from_millis(window_ms),
        max_control_bytes: 1 << 20,
        ..QueueLimits::default()
    };
    let q = Rc::new(Outbox::new(limits));
    let sends = Rc::new(RefCell::new(Vec::new()));
    q.set_sink(Some(Box::new(RecordingSink(sends.clone()))), None);
    (q, sends)
}

#[test]
fn without_a_window_each_frame_is_sent_at_once() {
    let (q, sends) = coalescing_outbox(0);
    let now = Instant::now();
    assert!(q.push_frame(&frame(MediaKind::Video, 0, true, 1000), now));
    assert!(q.push_frame(&frame(MediaKind::Audio, 10, false, 100), now));
    assert_eq!(*sends.borrow(), vec![1, 1]);
    assert_eq!(q.take_flush_request(), None);
}

#[test]
fn a_window_sends_what_queued_in_one_write() {
    let (q, sends) = coalescing_outbox(50);
    let now = Instant::now();
    assert!(q.push_frame(&frame(MediaKind::Video, 0, true, 1000), now));
    // The first frame opens the window: one flush request, nothing sent.
    assert_eq!(q.take_flush_request(), Some(Duration::from_millis(50)));
    for ts in 1..10 {
        assert!(q.push_frame(&frame(MediaKind::Audio, ts * 5, false, 100), now));
        assert_eq!(q.take_flush_request(), None, "window already open");
    }
    assert!(sends.borrow().is_empty());
    assert!(q.queued_bytes() > 1900, "frames wait in the queue");
    assert_eq!(q.close_window(None), None);
    assert_eq!(*sends.borrow(), vec![10]);
    assert_eq!(q.queued_bytes(), 0);
    // The next frame opens a new window.
    assert!(q.push_frame(&frame(MediaKind::Audio, 60, false, 100), now));
    assert!(q.take_flush_request().is_some());
}

#[test]
fn coalescer_flushes_in_deadline_order() {
    let fanout = crate::egress::Fanout::default();
    let c = &fanout.coalescer;
    let (a, sends_a) = coalescing_outbox(20);
    let (b, sends_b) = coalescing_outbox(20);
    let t0 = Instant::now();
    a.push_frame(&frame(MediaKind::Video, 0, true, 10), t0);
    c.schedule(&a, a.take_flush_request().unwrap(), t0);
    let t1 = t0 + Duration::from_millis(10);
    b.push_frame(&frame(MediaKind::Video, 0, true, 10), t1);
    c.schedule(&b, b.take_flush_request().unwrap(), t1);
    assert_eq!(fanout.flush_due(t0), Some(t0 + Duration::from_millis(20)));
    assert!(sends_a.borrow().is_empty());
    assert_eq!(
        fanout.flush_due(t0 + Duration::from_millis(25)),
        Some(t1 + Duration::from_millis(20))
    );
    assert_eq!(*sends_a.borrow(), vec![1]);
    assert!(sends_b.borrow().is_empty());
    assert_eq!(fanout.flush_due(t1 + Duration::from_millis(20)), None);
    assert_eq!(*sends_b.borrow(), vec![1]);
    assert_eq!(c.pending(), 0);
}

/// A late joiner's cached start spans most of a GOP; the live frames that
/// arrive before its writer drained it are not "behind" (the bug: they were
/// measured from the start's keyframe, so a join late in a 2 s GOP with a
/// 2 s queue bound skipped video at once).
#[test]
fn a_late_joiners_start_does_not_count_as_being_behind() {
    let limits = bounds(8 << 20, 2_000, Duration::from_secs(5));
    let q = Outbox::new(limits);
    let now = Instant::now();
    // A 2 s GOP joined just before its end: keyframe at 10 s, frames to 11.967 s.
    let mut start = vec![frame(MediaKind::Video, 10_000, true, 20_000)];
    for i in 1..60u32 {
        start.push(frame(MediaKind::Video, 10_000 + i * 33, false, 5_000));
        start.push(frame(MediaKind::Audio, 10_000 + i * 33 + 10, false, 300));
    }
    q.push_start(&start);
    // The live frames that follow at once, start still queued.
    assert!(q.push_frame(&frame(MediaKind::Audio, 12_010, false, 300), now));
    assert!(q.push_frame(&frame(MediaKind::Video, 12_000, true, 20_000), now));
    assert!(q.push_frame(&frame(MediaKind::Video, 12_033, false, 5_000), now));
    assert_eq!(q.dropped(), 0);
}

/// The start counts against the byte bound: a GOP larger than what the
/// queue may hold is not queued; the player starts at the next keyframe.
#[test]
fn a_start_larger_than_the_queue_waits_for_the_next_keyframe() {
    let limits = bounds(50_000, 2_000, Duration::from_secs(5));
    let q = Outbox::new(limits);
    let now = Instant::now();
    let start: Vec<Frame> = (0..20u32)
        .map(|i| frame(MediaKind::Video, i * 33, i == 0, 10_000))
        .collect();
    q.push_start(&start);
    assert_eq!(q.queued_bytes(), 0, "nothing of the oversized GOP queued");
    assert!(!q.push_frame(&frame(MediaKind::Video, 700, false, 1_000), now));
    assert!(q.push_frame(&frame(MediaKind::Video, 733, true, 1_000), now));
}

/// Replies a peer leaves unread are bounded: past the bound the outbox is
/// closed as `Unread`, whatever the replies were.
#[test]
fn unread_replies_past_the_bound_close_the_outbox() {
    let limits = QueueLimits {
        max_control_bytes: 1_000,
        ..QueueLimits::default()
    };
    let q = Outbox::new(limits);
    for _ in 0..9 {
        assert!(q.push_control(Bytes::from(vec![0u8; 100])));
    }
    // Draining frees the budget.
    let b = q.try_batch(100, 1 << 20).expect("queued");
    assert_eq!(b.bufs.len(), 9);
    q.write_done();
    for _ in 0..10 {
        assert!(q.push_control(Bytes::from(vec![0u8; 100])));
    }
    assert!(!q.push_control(Bytes::from(vec![0u8; 100])));
    assert_eq!(q.closed(), Some(CloseReason::Unread));
    assert_eq!(q.queued_bytes(), 0);
}
