//! The outbox's fast paths: a live frame written straight from the fan-out
//! loop to an idle player's socket (alone, or in the core's batch), the
//! queue drained the same way while the writer is idle, and the flush of a
//! write-coalescing window.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{CloseReason, Entry, Inner, Outbox, DIRECT_MAX_ITEMS};
use crate::hub::fanout::Fanout;
use crate::hub::frame::Frame;
use crate::metrics::CoreStats;
use crate::protocol::session::MediaKind;

impl Outbox {
    /// Writes queued entries straight to the socket if the writer is idle.
    pub(super) fn try_direct(&self, i: &mut Inner) {
        if self.writing.get() || i.closed.is_some() || i.items.is_empty() {
            return;
        }
        let sink = self.sink.borrow();
        let Some(sink) = sink.as_ref() else { return };
        let result = {
            let mut slices: [&[u8]; DIRECT_MAX_ITEMS] = [&[]; DIRECT_MAX_ITEMS];
            let mut n = 0;
            for e in i.items.iter().take(DIRECT_MAX_ITEMS) {
                slices[n] = &e.bytes;
                n += 1;
            }
            sink.send_now(&slices[..n])
        };
        let mut written = match result {
            Ok(n) => n,
            Err(_) => {
                i.closed = Some(CloseReason::Broken);
                i.items.clear();
                i.bytes = 0;
                i.control_bytes = 0;
                return;
            }
        };
        let stats = self.stats.borrow();
        let now = Instant::now();
        while written > 0 {
            let Some(front) = i.items.front_mut() else {
                break;
            };
            let len = front.bytes.len();
            if written < len {
                bytes::Buf::advance(&mut front.bytes, written);
                if front.control {
                    i.control_bytes -= written;
                }
                i.bytes -= written;
                break;
            }
            written -= len;
            i.bytes -= len;
            let Some(e) = i.items.pop_front() else { break };
            if e.control {
                i.control_bytes -= len;
            }
            if let Some(stats) = stats.as_ref() {
                if let Some(t) = e.ingest {
                    stats.record_egress(now.duration_since(t));
                }
                if e.keyframe {
                    if let Some(t) = i.play_started.take() {
                        stats.record_first_frame(now.duration_since(t));
                    }
                }
            }
        }
    }

    /// Whether a live frame may go straight to the socket now: the writer
    /// is idle and the shared bytes fit this player as they are.
    pub(super) fn direct_ok(&self, i: &Inner, frame: &Frame) -> bool {
        !self.writing.get()
            && !i.upstream
            && i.stream_id == crate::hub::frame::PLAY_STREAM_ID
            && i.chunk_size == frame.chunk_size
    }

    /// The fast path of a live frame to an idle player: written straight
    /// from the shared frame, not queued. Returns true when it is fully
    /// sent; otherwise what is left (or the whole frame) is queued for the
    /// writer task, or the outbox is closed if the socket is dead.
    pub(super) fn send_direct(&self, i: &mut Inner, frame: &Frame) -> bool {
        let sink = self.sink.borrow();
        let Some(sink) = sink.as_ref().filter(|_| self.direct_ok(i, frame)) else {
            drop(sink);
            Self::enqueue(i, frame, true);
            return false;
        };
        let result = sink.send_now(&[&frame.chunks[..]]);
        self.apply_send(i, frame, result)
    }

    /// What a direct send of the whole `frame` did: true when all of it
    /// went out; the rest is queued, or the outbox closed on an error.
    pub(super) fn apply_send(
        &self,
        i: &mut Inner,
        frame: &Frame,
        result: std::io::Result<usize>,
    ) -> bool {
        let sent = self.settle(i, frame, result);
        if sent {
            if let Some(stats) = self.stats.borrow().as_ref() {
                let now = Instant::now();
                stats.record_egress(now.duration_since(frame.ingest));
                self.note_first_frame(i, frame, stats, now);
            }
        }
        sent
    }

    /// A play's first keyframe went out at `now`.
    pub(super) fn note_first_frame(
        &self,
        i: &mut Inner,
        frame: &Frame,
        stats: &CoreStats,
        now: Instant,
    ) {
        if frame.keyframe {
            if let Some(t) = i.play_started.take() {
                stats.record_first_frame(now.duration_since(t));
            }
        }
    }

    /// The queue side of a direct send's result: true when all went out.
    pub(super) fn settle(
        &self,
        i: &mut Inner,
        frame: &Frame,
        result: std::io::Result<usize>,
    ) -> bool {
        match result {
            Ok(n) if n == frame.chunks.len() => true,
            Ok(n) => {
                // Part of it (or none) went out: the rest waits for the writer.
                let rest = frame.chunks.slice(n.min(frame.chunks.len())..);
                i.bytes += rest.len();
                i.items.push_back(Entry {
                    bytes: rest,
                    control: false,
                    ingest: Some(frame.ingest),
                    timestamp: matches!(frame.kind, MediaKind::Audio | MediaKind::Video)
                        .then_some(frame.timestamp),
                    keyframe: frame.keyframe,
                });
                false
            }
            Err(_) => {
                i.closed = Some(CloseReason::Broken);
                false
            }
        }
    }

    /// As [`Outbox::push_frame`], except that an idle player's send may be
    /// deferred to the fan-out's batch (see [`Fanout`]); the batch reports
    /// back through [`Outbox::direct_done`] before anything else can touch
    /// this outbox.
    pub fn push_live(self: &Rc<Self>, frame: &Frame, now: Instant, fanout: &Fanout) -> bool {
        if fanout.batching() {
            if let Some(handle) = self.batch_handle(frame) {
                fanout.defer(self, handle);
                return true;
            }
        }
        self.push_frame(frame, now)
    }

    /// The sink's batch handle if this frame would be sent directly.
    pub(super) fn batch_handle(&self, frame: &Frame) -> Option<std::os::fd::RawFd> {
        let i = self.inner.borrow();
        let idle = i.closed.is_none()
            && i.items.is_empty()
            && !(frame.is_video() && i.skipping_video)
            && !self.coalescing()
            && self.direct_ok(&i, frame);
        if !idle {
            return None;
        }
        self.sink.borrow().as_ref()?.batch_handle()
    }

    /// The outcome of a batched send of `frame` that completed by `now`
    /// (None: the batch could not send it, so it is queued for the
    /// writer). True when all of it went out: the caller records the
    /// egress latency of the whole batch at once.
    pub fn direct_done(
        &self,
        frame: &Frame,
        result: Option<std::io::Result<usize>>,
        now: Instant,
    ) -> bool {
        let mut i = self.inner.borrow_mut();
        if self.settle(&mut i, frame, result.unwrap_or(Ok(0))) {
            if let Some(stats) = self.stats.borrow().as_ref() {
                self.note_first_frame(&mut i, frame, stats, now);
            }
            return true;
        }
        drop(i);
        self.wake();
        false
    }

    pub(super) fn coalescing(&self) -> bool {
        !self.limits.coalesce.is_zero()
    }

    /// Coalescing: asks for a flush a window from now unless one is due.
    pub(super) fn open_window(&self, i: &mut Inner) {
        if !i.flush_scheduled {
            i.flush_scheduled = true;
            self.flush_request.set(true);
        }
    }

    /// The window to list this outbox under if a frame just opened one.
    pub fn take_flush_request(&self) -> Option<Duration> {
        self.flush_request.take().then_some(self.limits.coalesce)
    }

    /// Coalescing: the window closed; send what waits in one vectored write
    /// (the writer task takes over what the socket does not accept).
    pub fn flush_coalesced(&self) {
        let mut i = self.inner.borrow_mut();
        i.flush_scheduled = false;
        if self.writing.get() || i.items.is_empty() {
            return;
        }
        self.try_direct(&mut i);
        let pending = !i.items.is_empty() || i.closed.is_some();
        drop(i);
        if pending {
            self.wake();
        }
    }
}
