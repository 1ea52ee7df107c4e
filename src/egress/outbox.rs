//! A subscriber's outgoing queue: control bytes from its session and media
//! frames from the streams it plays (or publishes upstream), drained by one
//! writer task or written directly (see `direct`).
//!
//! Bounded in bytes and media duration. On overflow, video is skipped until
//! the next keyframe that fits (audio goes on while it fits); a player that
//! stays behind past `disconnect_after` is closed. Pushing never waits, so
//! the publisher and the other players never wait for this one.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::framing::Framing;
use crate::hub::Frame;
use crate::metrics::CoreStats;
use crate::protocol::session::MediaKind;

#[derive(Debug, Clone)]
pub struct QueueLimits {
    pub max_bytes: usize,
    pub max_duration_ms: u32,
    pub disconnect_after: Duration,
    /// Write-coalescing window: live frames wait up to this long and go out
    /// together (see `hub::coalesce`). Zero sends each frame at once.
    pub coalesce: Duration,
    /// Session replies (acks, pings, command results) the peer may leave
    /// unread; past it the connection is closed, whatever the message kind.
    pub max_control_bytes: usize,
}

impl QueueLimits {
    /// A player's queue bounds from the configuration.
    pub fn from_config(config: &crate::config::Config) -> QueueLimits {
        QueueLimits {
            max_bytes: config.player.queue_max_bytes,
            max_duration_ms: config.player.queue_max_ms,
            disconnect_after: Duration::from_millis(config.player.slow_disconnect_ms),
            coalesce: Duration::from_millis(config.player.write_coalesce_ms),
            max_control_bytes: config.limits.max_pending_output_bytes,
        }
    }
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_bytes: 8 << 20,
            max_duration_ms: 5000,
            disconnect_after: Duration::from_secs(10),
            coalesce: Duration::ZERO,
            max_control_bytes: 1 << 20,
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
    /// The peer left more replies unread than `max_control_bytes`; queued
    /// data is discarded.
    Unread,
}

impl CloseReason {
    /// The peer is cut off for its own conduct: its socket is reset so the
    /// kernel frees what it still holds for it.
    pub fn is_abort(&self) -> bool {
        matches!(self, CloseReason::SlowPlayer | CloseReason::Unread)
    }
}

struct Entry {
    bytes: Bytes,
    /// Session output rather than media: counted in `control_bytes`.
    control: bool,
    ingest: Option<Instant>,
    timestamp: Option<u32>,
    keyframe: bool,
}

struct Inner {
    items: VecDeque<Entry>,
    bytes: usize,
    /// The part of `bytes` that is session output.
    control_bytes: usize,
    skipping_video: bool,
    behind_since: Option<Instant>,
    closed: Option<CloseReason>,
    /// How frames are put on the wire for this subscriber.
    framing: Framing,
    dropped: u64,
    /// Set when a play starts; cleared when its first keyframe is written.
    play_started: Option<Instant>,
    /// Coalescing: this outbox is listed in the core's flush queue.
    flush_scheduled: bool,
    /// The stream this upstream carries (or this player plays) has ended.
    ended: bool,
}

/// What the writer gets per wake-up: several messages for one vectored
/// write. Reused across wake-ups so the hot path does not allocate.
#[derive(Default)]
pub struct Batch {
    pub bufs: Vec<Bytes>,
    /// Ingest instants of the media messages in this batch.
    pub ingests: Vec<Instant>,
    /// Set on the batch that carries a play's first keyframe: when play began.
    pub first_keyframe_of_play: Option<Instant>,
}

/// A socket that can take bytes right now without waiting. The connection
/// layer provides it; the hub never touches a socket itself.
pub trait DirectSink {
    /// Writes as much of `bufs` as the socket accepts without blocking:
    /// Ok(bytes written), Ok(0) when it would block, Err when it is dead.
    fn send_now(&self, bufs: &[&[u8]]) -> std::io::Result<usize>;

    /// The handle a core's batch sender writes to (see `hub::fanout`);
    /// None for sinks that cannot be batched.
    fn batch_handle(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

/// Messages one direct write may carry (a coalescing window of a few
/// hundred milliseconds holds a few dozen).
const DIRECT_MAX_ITEMS: usize = 64;

pub struct Outbox {
    inner: RefCell<Inner>,
    /// When set and the writer task is idle, live frames are written
    /// straight to the socket from the fan-out loop: one send per player per
    /// message and no task wake-up. The writer task takes over whenever the
    /// socket pushes back.
    sink: RefCell<Option<Box<dyn DirectSink>>>,
    stats: RefCell<Option<Rc<CoreStats>>>,
    /// The writer task holds a batch (its write is in flight).
    writing: Cell<bool>,
    waker: Cell<Option<Waker>>,
    /// Coalescing: the window of this outbox just opened; whoever pushed the
    /// frame lists it in the core's flush queue (see [`Outbox::take_flush_request`]).
    flush_request: Cell<bool>,
    /// Woken when the outbox is closed for a slow player, so a writer stuck
    /// in a write to a peer that stopped reading can give up.
    slow_waker: Cell<Option<Waker>>,
    /// The connection's task, waiting in [`Outbox::attention`].
    attention_waker: Cell<Option<Waker>>,
    /// A task waiting in [`Outbox::drained_to`] for the writer to take
    /// queued output (an HTTP response written in pieces).
    room_waker: Cell<Option<Waker>>,
    limits: QueueLimits,
}

impl Outbox {
    pub fn new(limits: QueueLimits) -> Outbox {
        Outbox {
            inner: RefCell::new(Inner {
                items: VecDeque::new(),
                bytes: 0,
                control_bytes: 0,
                skipping_video: false,
                behind_since: None,
                closed: None,
                framing: Framing::default(),
                dropped: 0,
                play_started: None,
                flush_scheduled: false,
                ended: false,
            }),
            waker: Cell::new(None),
            flush_request: Cell::new(false),
            slow_waker: Cell::new(None),
            attention_waker: Cell::new(None),
            room_waker: Cell::new(None),
            sink: RefCell::new(None),
            stats: RefCell::new(None),
            writing: Cell::new(false),
            limits,
        }
    }

    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        let i = self.inner.borrow();
        let abort = i.closed.as_ref().is_some_and(CloseReason::is_abort);
        let attention = i.closed.is_some() || i.ended;
        drop(i);
        if abort {
            if let Some(w) = self.slow_waker.take() {
                w.wake();
            }
        }
        if attention {
            if let Some(w) = self.room_waker.take() {
                w.wake();
            }
        }
        if attention {
            if let Some(w) = self.attention_waker.take() {
                w.wake();
            }
        }
    }

    /// Enables (or, with None, disables) direct writes. The sink must stay
    /// valid while set: the connection clears it before closing its socket.
    pub fn set_sink(&self, sink: Option<Box<dyn DirectSink>>, stats: Option<Rc<CoreStats>>) {
        *self.sink.borrow_mut() = sink;
        *self.stats.borrow_mut() = stats;
    }

    /// The writer finished its batch.
    pub fn write_done(&self) {
        self.writing.set(false);
    }

    /// Resolves once the peer has been cut off (slow player, unread
    /// replies), so a writer stuck on a peer that stopped reading gives up.
    pub async fn slow_closed(&self) {
        let cut_off = |i: &Inner| i.closed.as_ref().is_some_and(CloseReason::is_abort);
        self.until(&self.slow_waker, cut_off).await
    }

    /// Session output (replies, status): queued, never dropped; a peer
    /// that leaves more than `max_control_bytes` of it unread is cut off
    /// ([`CloseReason::Unread`]) and false is returned.
    pub fn push_control(&self, bytes: Bytes) -> bool {
        let mut i = self.inner.borrow_mut();
        if i.closed.is_some() {
            return i.closed != Some(CloseReason::Unread);
        }
        if i.control_bytes + bytes.len() > self.limits.max_control_bytes {
            i.abort(CloseReason::Unread);
            drop(i);
            self.wake();
            return false;
        }
        i.bytes += bytes.len();
        i.control_bytes += bytes.len();
        i.items.push_back(Entry {
            bytes,
            control: true,
            ingest: None,
            timestamp: None,
            keyframe: false,
        });
        drop(i);
        self.wake();
        true
    }

    /// Resolves once at most `bytes` of session output wait for the
    /// writer, or the outbox closed: a long response goes out in pieces,
    /// each queued when the previous ones have been taken, so a reader
    /// that stops costs one piece, not the whole body.
    pub async fn drained_to(&self, bytes: usize) {
        self.until(&self.room_waker, |i| {
            i.control_bytes <= bytes || i.closed.is_some()
        })
        .await
    }

    /// Resolves once the outbox is closed.
    pub async fn closed_signal(&self) {
        self.until(&self.attention_waker, |i| i.closed.is_some())
            .await
    }

    /// Resolves once the connection must look at its outbox: it closed,
    /// or the stream it plays ended.
    pub async fn attention(&self) {
        self.until(&self.attention_waker, |i| i.closed.is_some() || i.ended)
            .await
    }

    /// Resolves once `ready` holds; `waker` is the slot [`Outbox::wake`]
    /// wakes for it (one per waiting task).
    async fn until(&self, waker: &Cell<Option<Waker>>, ready: impl Fn(&Inner) -> bool) {
        poll_fn(|cx| {
            if ready(&self.inner.borrow()) {
                Poll::Ready(())
            } else {
                waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Marks the start of a play: which stream id and chunk size frames need.
    pub fn start_play(&self, stream_id: u32, chunk_size: u32, now: Instant) {
        self.start_with(
            Framing::RtmpPlay {
                stream_id,
                chunk_size,
            },
            now,
        );
    }

    /// Marks the start of a play in `framing` (an HTTP player's FLV tags).
    pub fn start_with(&self, framing: Framing, now: Instant) {
        let mut i = self.inner.borrow_mut();
        i.ended = false;
        i.framing = framing;
        i.play_started = Some(now);
        i.skipping_video = false;
        i.behind_since = None;
    }

    /// Makes this outbox an upstream publish on `stream_id` (the id the
    /// origin gave in createStream) with the chunk size we announced to it.
    pub fn start_publish(&self, stream_id: u32, chunk_size: u32) {
        let mut i = self.inner.borrow_mut();
        i.framing = Framing::RtmpPublish {
            stream_id,
            chunk_size,
        };
        i.ended = false;
    }

    /// The stream is over: flagged for the connection's task (which
    /// `attention` wakes).
    pub fn mark_ended(&self) {
        self.inner.borrow_mut().ended = true;
        self.wake();
    }

    /// The framing frames are queued in.
    pub fn framing(&self) -> Framing {
        self.inner.borrow().framing
    }

    /// Whether [`Outbox::mark_ended`] was called since the play started.
    pub fn ended(&self) -> bool {
        self.inner.borrow().ended
    }

    /// Queues the cached start of a stream (metadata, headers, then the GOP
    /// from its keyframe). It counts against the queue's byte bound: a GOP
    /// that does not fit what is left is not sent, and the player starts at
    /// the next keyframe instead. Its age does not count against the
    /// duration bound (a late joiner is not behind, it is catching up).
    pub fn push_start(&self, frames: &[Frame]) {
        let mut i = self.inner.borrow_mut();
        if i.closed.is_some() || frames.is_empty() {
            return;
        }
        let framing = i.framing;
        let total: usize = frames.iter().map(|f| framing.len(f)).sum();
        let fits = i.bytes + total <= self.limits.max_bytes;
        for f in frames {
            let gop = f.kind != MediaKind::Metadata && f.header.is_none();
            if gop && !fits {
                // Wait for the next keyframe: video is skipped until then.
                i.skipping_video = true;
                i.dropped += 1;
                continue;
            }
            Self::enqueue(&mut i, f, false);
        }
        drop(i);
        self.wake();
    }

    fn enqueue(i: &mut Inner, frame: &Frame, live: bool) {
        let bytes = i.framing.bytes(frame);
        i.bytes += bytes.len();
        i.items.push_back(Entry {
            bytes,
            control: false,
            ingest: live.then_some(frame.ingest),
            // Only audio and video measure the queue's media duration:
            // metadata goes out at timestamp 0 and would look ancient.
            timestamp: matches!(frame.kind, MediaKind::Audio | MediaKind::Video)
                .then_some(frame.timestamp),
            keyframe: frame.keyframe,
        });
    }

    /// Media time between the oldest live frame queued and `newest`. A
    /// play's cached start is not counted: it is old by design.
    fn queued_duration(i: &Inner, newest: u32) -> u32 {
        let oldest = i
            .items
            .iter()
            .find_map(|e| e.timestamp.filter(|_| e.ingest.is_some()));
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
        if i.items.is_empty() {
            // Nothing queued: nothing to be behind on, except a skip in
            // progress that only a keyframe ends.
            if frame.is_video() && i.skipping_video {
                if !frame.keyframe {
                    i.dropped += 1;
                    return false;
                }
                i.skipping_video = false;
                i.behind_since = None;
            }
            if self.coalescing() {
                Self::enqueue(&mut i, frame, true);
                self.open_window(&mut i);
                return true;
            }
            if self.send_direct(&mut i, frame) {
                return true;
            }
            drop(i);
            self.wake_if_pending();
            return self.inner.borrow().closed.is_none();
        }
        let size = i.framing.len(frame);
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
            if self.coalescing() {
                self.open_window(&mut i);
                // The frame waits for the window (or a busy writer).
                return true;
            }
            self.try_direct(&mut i);
        } else {
            i.dropped += 1;
            if let Some(since) = i.behind_since {
                if now.duration_since(since) > self.limits.disconnect_after {
                    i.abort(CloseReason::SlowPlayer);
                }
            }
        }
        drop(i);
        self.wake_if_pending();
        keep
    }

    /// Ends the queue. `Finish` lets the writer flush first.
    pub fn close(&self, reason: CloseReason) {
        let mut i = self.inner.borrow_mut();
        if i.closed.is_none() {
            if reason == CloseReason::Finish {
                i.closed = Some(reason);
            } else {
                i.abort(reason);
            }
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

    /// Open, nothing queued and no write in flight: bytes sent to the
    /// socket now go out after everything queued before them.
    pub fn is_idle(&self) -> bool {
        let i = self.inner.borrow();
        !self.writing.get() && i.items.is_empty() && i.closed.is_none()
    }

    /// Moves up to `max_items` messages / about `max_bytes` into `batch`
    /// (which should be empty); false if nothing is queued.
    pub fn fill_batch(&self, batch: &mut Batch, max_items: usize, max_bytes: usize) -> bool {
        let mut i = self.inner.borrow_mut();
        if i.items.is_empty() {
            return false;
        }
        let mut taken = 0usize;
        let mut n = 0usize;
        while n < max_items && taken < max_bytes {
            let Some(e) = i.items.pop_front() else { break };
            taken += e.bytes.len();
            if e.control {
                i.control_bytes -= e.bytes.len();
            }
            n += 1;
            if let Some(t) = e.ingest {
                batch.ingests.push(t);
            }
            if e.keyframe && batch.first_keyframe_of_play.is_none() {
                batch.first_keyframe_of_play = i.play_started.take();
            }
            batch.bufs.push(e.bytes);
        }
        i.bytes -= taken;
        self.writing.set(true);
        drop(i);
        if let Some(w) = self.room_waker.take() {
            w.wake();
        }
        true
    }

    /// Takes a batch if any is queued, without waiting (allocates; for
    /// tests and benches).
    pub fn try_batch(&self, max_items: usize, max_bytes: usize) -> Option<Batch> {
        let mut b = Batch::default();
        self.fill_batch(&mut b, max_items, max_bytes).then_some(b)
    }

    /// Waits for data and fills `batch` (see [`Outbox::fill_batch`]);
    /// false once closed and flushed.
    pub async fn next_batch(&self, batch: &mut Batch, max_items: usize, max_bytes: usize) -> bool {
        poll_fn(|cx| {
            if self.fill_batch(batch, max_items, max_bytes) {
                return Poll::Ready(true);
            }
            if self.inner.borrow().closed.is_some() {
                return Poll::Ready(false);
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}

mod direct;

#[cfg(test)]
mod tests;
