//! A connection's outgoing queue: control bytes from its session and media
//! frames from the streams it plays, drained by one writer task.
//!
//! Bounded in bytes and media duration. On overflow, video is skipped until
//! the next keyframe that fits (audio goes on while it fits); a player that
//! stays behind past `disconnect_after` is closed. Pushing never waits, so
//! the publisher and the other players never wait for this one.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::frame::Frame;
use crate::protocol::session::MediaKind;

#[derive(Debug, Clone)]
pub struct QueueLimits {
    pub max_bytes: usize,
    pub max_duration_ms: u32,
    pub disconnect_after: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_bytes: 8 << 20,
            max_duration_ms: 5000,
            disconnect_after: Duration::from_secs(10),
        }
    }
}

/// Why an outbox was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Flush what is queued, then close (end of session).
    Finish,
    /// The player stayed behind too long; queued data is discarded.
    SlowPlayer,
    /// The socket failed; queued data is discarded.
    Broken,
}

struct Entry {
    bytes: Bytes,
    ingest: Option<Instant>,
    timestamp: Option<u32>,
    keyframe: bool,
}

struct Inner {
    items: VecDeque<Entry>,
    bytes: usize,
    skipping_video: bool,
    behind_since: Option<Instant>,
    closed: Option<CloseReason>,
    /// The play stream id and chunk size, for frames not serialized for stream 1.
    stream_id: u32,
    chunk_size: u32,
    dropped: u64,
    /// Set when a play starts; cleared when its first keyframe is written.
    play_started: Option<Instant>,
}

/// What the writer gets per wake-up: several messages for one vectored write.
pub struct Batch {
    pub bufs: Vec<Bytes>,
    /// Ingest instants of the media messages in this batch.
    pub ingests: Vec<Instant>,
    /// Set on the batch that carries a play's first keyframe: when play began.
    pub first_keyframe_of_play: Option<Instant>,
}

pub struct Outbox {
    inner: RefCell<Inner>,
    waker: Cell<Option<Waker>>,
    /// Woken when the outbox is closed for a slow player, so a writer stuck
    /// in a write to a peer that stopped reading can give up.
    slow_waker: Cell<Option<Waker>>,
    limits: QueueLimits,
}

impl Outbox {
    pub fn new(limits: QueueLimits) -> Outbox {
        Outbox {
            inner: RefCell::new(Inner {
                items: VecDeque::new(),
                bytes: 0,
                skipping_video: false,
                behind_since: None,
                closed: None,
                stream_id: super::frame::PLAY_STREAM_ID,
                chunk_size: 4096,
                dropped: 0,
                play_started: None,
            }),
            waker: Cell::new(None),
            slow_waker: Cell::new(None),
            limits,
        }
    }

    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        if self.inner.borrow().closed == Some(CloseReason::SlowPlayer) {
            if let Some(w) = self.slow_waker.take() {
                w.wake();
            }
        }
    }

    /// Resolves once the player has been cut off for being too slow.
    pub async fn slow_closed(&self) {
        poll_fn(|cx| {
            if self.inner.borrow().closed == Some(CloseReason::SlowPlayer) {
                Poll::Ready(())
            } else {
                self.slow_waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Session output (replies, status): always queued, never dropped.
    pub fn push_control(&self, bytes: Bytes) {
        let mut i = self.inner.borrow_mut();
        if i.closed.is_some() {
            return;
        }
        i.bytes += bytes.len();
        i.items.push_back(Entry {
            bytes,
            ingest: None,
            timestamp: None,
            keyframe: false,
        });
        drop(i);
        self.wake();
    }

    /// Marks the start of a play: which stream id and chunk size frames need.
    pub fn start_play(&self, stream_id: u32, chunk_size: u32, now: Instant) {
        let mut i = self.inner.borrow_mut();
        i.stream_id = stream_id;
        i.chunk_size = chunk_size;
        i.play_started = Some(now);
        i.skipping_video = false;
        i.behind_since = None;
    }

    /// Queues the cached start of a stream (metadata, headers, GOP) without
    /// the overflow policy: it is bounded by the GOP cache limits.
    pub fn push_start(&self, frame: &Frame) {
        let mut i = self.inner.borrow_mut();
        if i.closed.is_none() {
            // Cached frames are old by design: not a latency sample.
            Self::enqueue(&mut i, frame, false);
        }
        drop(i);
        self.wake();
    }

    fn enqueue(i: &mut Inner, frame: &Frame, live: bool) {
        let bytes = frame.chunks_for(i.stream_id, i.chunk_size);
        i.bytes += bytes.len();
        i.items.push_back(Entry {
            bytes,
            ingest: live.then_some(frame.ingest),
            // Only audio and video measure the queue's media duration:
            // metadata goes out at timestamp 0 and would look ancient.
            timestamp: matches!(frame.kind, MediaKind::Audio | MediaKind::Video)
                .then_some(frame.timestamp),
            keyframe: frame.keyframe,
        });
    }

    fn queued_duration(i: &Inner, newest: u32) -> u32 {
        let oldest = i.items.iter().find_map(|e| e.timestamp);
        match oldest {
            Some(o) => (newest.wrapping_sub(o) as i32).max(0) as u32,
            None => 0,
        }
    }

    /// Queues a live frame under the slow-player policy. Returns false when
    /// the frame was dropped.
    pub fn push_frame(&self, frame: &Frame, now: Instant) -> bool {
        let mut i = self.inner.borrow_mut();
        if i.closed.is_some() {
            return false;
        }
        let size = frame.chunks.len();
        let over_bytes = i.bytes + size > self.limits.max_bytes;
        let over =
            over_bytes || Self::queued_duration(&i, frame.timestamp) > self.limits.max_duration_ms;
        let keep = if frame.is_video() {
            if i.skipping_video {
                if frame.keyframe && !over {
                    i.skipping_video = false;
                    i.behind_since = None;
                    true
                } else {
                    false
                }
            } else if over {
                i.skipping_video = true;
                i.behind_since.get_or_insert(now);
                false
            } else {
                true
            }
        } else {
            !over_bytes
        };
        if keep {
            Self::enqueue(&mut i, frame, true);
        } else {
            i.dropped += 1;
            if let Some(since) = i.behind_since {
                if now.duration_since(since) > self.limits.disconnect_after {
                    i.closed = Some(CloseReason::SlowPlayer);
                    i.items.clear();
                    i.bytes = 0;
                }
            }
        }
        drop(i);
        self.wake();
        keep
    }

    /// Ends the queue. `Finish` lets the writer flush first.
    pub fn close(&self, reason: CloseReason) {
        let mut i = self.inner.borrow_mut();
        if i.closed.is_none() {
            if reason != CloseReason::Finish {
                i.items.clear();
                i.bytes = 0;
            }
            i.closed = Some(reason);
        }
        drop(i);
        self.wake();
    }

    pub fn closed(&self) -> Option<CloseReason> {
        self.inner.borrow().closed.clone()
    }

    pub fn dropped(&self) -> u64 {
        self.inner.borrow().dropped
    }

    pub fn queued_bytes(&self) -> usize {
        self.inner.borrow().bytes
    }

    /// Takes up to `max_items` messages / about `max_bytes` if any are
    /// queued, without waiting.
    pub fn try_batch(&self, max_items: usize, max_bytes: usize) -> Option<Batch> {
        let mut i = self.inner.borrow_mut();
        if i.items.is_empty() {
            return None;
        }
        let mut batch = Batch {
            bufs: Vec::with_capacity(i.items.len().min(max_items)),
            ingests: Vec::new(),
            first_keyframe_of_play: None,
        };
        let mut taken = 0usize;
        while batch.bufs.len() < max_items && taken < max_bytes {
            let Some(e) = i.items.pop_front() else { break };
            taken += e.bytes.len();
            if let Some(t) = e.ingest {
                batch.ingests.push(t);
            }
            if e.keyframe && batch.first_keyframe_of_play.is_none() {
                batch.first_keyframe_of_play = i.play_started.take();
            }
            batch.bufs.push(e.bytes);
        }
        i.bytes -= taken;
        Some(batch)
    }

    /// Waits for data; returns a batch (see [`Outbox::try_batch`]), or None
    /// once closed and flushed.
    pub async fn next_batch(&self, max_items: usize, max_bytes: usize) -> Option<Batch> {
        poll_fn(|cx| {
            if let Some(b) = self.try_batch(max_items, max_bytes) {
                return Poll::Ready(Some(b));
            }
            if self.inner.borrow().closed.is_some() {
                return Poll::Ready(None);
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
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
        let b = futures_lite_block_on(q.next_batch(100, 1 << 20)).unwrap();
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
}
