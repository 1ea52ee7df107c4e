//! The outbox's fast paths: a live frame written straight from the fan-out
//! pass to an idle player's socket (alone, or in the core's batch), the
//! queue drained the same way while the writer is idle, and the close of a
//! write-coalescing window (alone, or batched with the other windows that
//! closed at the same moment).

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{CloseReason, Entry, Inner, Outbox, DIRECT_MAX_ITEMS};
use crate::egress::fanout::Fanout;
use crate::egress::framing::Wire;
use crate::egress::meter;
use crate::hub::Frame;
use crate::protocol::session::MediaKind;

impl Inner {
    /// Forgets everything queued (the peer is gone or cut off).
    pub(super) fn discard(&mut self) {
        self.items.clear();
        self.bytes = 0;
        self.control_bytes = 0;
    }

    /// Closes for `reason` and forgets what is queued.
    pub(super) fn abort(&mut self, reason: CloseReason) {
        self.closed = Some(reason);
        self.discard();
    }
}

impl Outbox {
    /// Whether the queue can be written from here: the writer is idle and
    /// something is queued on an open outbox.
    fn drainable(&self, i: &Inner) -> bool {
        !self.writing.get() && i.closed.is_none() && !i.items.is_empty()
    }

    /// Writes queued entries straight to the socket if the writer is idle.
    pub(super) fn try_direct(&self, i: &mut Inner) {
        if !self.drainable(i) {
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
        self.written(i, result, Instant::now());
    }

    /// What a write of the queue's head did: the bytes that went out leave
    /// the queue (and are metered), or the socket died.
    fn written(&self, i: &mut Inner, result: std::io::Result<usize>, now: Instant) {
        let mut written = match result {
            Ok(n) => n,
            Err(_) => return i.abort(CloseReason::Broken),
        };
        let stats = self.stats.borrow();
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
                let protocol = i.framing.protocol();
                if let Some(t) = e.ingest {
                    meter::sent(stats, protocol, t, 1, now);
                }
                if e.keyframe {
                    meter::first_frame(stats, protocol, i.play_started.take(), now);
                }
            }
        }
    }

    /// Whether a live frame may go straight to the socket now: the writer
    /// is idle and the shared bytes fit this subscriber as they are.
    pub(super) fn direct_ok(&self, i: &Inner, frame: &Frame) -> bool {
        !self.writing.get() && i.framing.shared(frame).is_some()
    }

    /// The fast path of a live frame to an idle player: written straight
    /// from the shared frame, not queued. Returns true when it is fully
    /// sent; otherwise what is left (or the whole frame) is queued for the
    /// writer task, or the outbox is closed if the socket is dead.
    pub(super) fn send_direct(&self, i: &mut Inner, frame: &Frame) -> bool {
        let sink = self.sink.borrow();
        let ready = sink
            .as_ref()
            .zip(i.framing.shared(frame))
            .filter(|_| !self.writing.get());
        let Some((sink, wire)) = ready else {
            drop(sink);
            Self::enqueue(i, frame, true);
            return false;
        };
        let result = sink.send_now(&[&wire.of(frame)[..]]);
        let now = Instant::now();
        let sent = self.settle(i, frame, result, now);
        if sent {
            if let Some(stats) = self.stats.borrow().as_ref() {
                meter::sent(stats, i.framing.protocol(), frame.ingest, 1, now);
            }
        }
        sent
    }

    /// The queue side of a send of the whole shared `frame`: true when all
    /// of it went out (a play's first keyframe is metered); the rest is
    /// queued for the writer, or the outbox closes on an error.
    fn settle(
        &self,
        i: &mut Inner,
        frame: &Frame,
        result: std::io::Result<usize>,
        now: Instant,
    ) -> bool {
        let bytes = match i.framing.shared(frame) {
            Some(wire) => wire.of(frame).clone(),
            None => i.framing.bytes(frame),
        };
        match result {
            Ok(n) if n == bytes.len() => {
                if frame.keyframe {
                    if let Some(stats) = self.stats.borrow().as_ref() {
                        let protocol = i.framing.protocol();
                        meter::first_frame(stats, protocol, i.play_started.take(), now);
                    }
                }
                true
            }
            Ok(n) => {
                // Part of it (or none) went out: the rest waits for the writer.
                let rest = bytes.slice(n.min(bytes.len())..);
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
    /// this outbox. A player's frames go through here (an upstream publish
    /// calls `push_frame`), so this is where a player's bytes and messages
    /// out are counted, in its framing and under its protocol.
    pub fn push_live(self: &Rc<Self>, frame: &Frame, now: Instant, fanout: &Fanout) -> bool {
        let deferred = fanout.batching()
            && match self.batch_handle(frame) {
                Some((handle, wire)) => {
                    fanout.defer(self, handle, wire);
                    true
                }
                None => false,
            };
        let kept = deferred || self.push_frame(frame, now);
        if kept {
            fanout.accepted(&self.framing(), frame);
        }
        kept
    }

    /// The sink's batch handle if this frame would be sent directly.
    pub(super) fn batch_handle(&self, frame: &Frame) -> Option<(std::os::fd::RawFd, Wire)> {
        let i = self.inner.borrow();
        let idle = i.closed.is_none()
            && i.items.is_empty()
            && !(frame.is_video() && i.skipping_video)
            && !self.coalescing()
            && self.direct_ok(&i, frame);
        if !idle {
            return None;
        }
        let wire = i.framing.shared(frame)?;
        Some((self.sink.borrow().as_ref()?.batch_handle()?, wire))
    }

    /// The outcome of a batched send of `frame` that completed by `now`
    /// (None: the batch could not send it, so it is queued for the
    /// writer). True when all of it went out: the caller meters the
    /// egress latency of the whole batch at once.
    pub fn direct_done(
        &self,
        frame: &Frame,
        result: Option<std::io::Result<usize>>,
        now: Instant,
    ) -> bool {
        let mut i = self.inner.borrow_mut();
        if self.settle(&mut i, frame, result.unwrap_or(Ok(0)), now) {
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

    /// Coalescing: the window closed. With `bufs` (the core batches),
    /// returns the socket handle after adding (by reference) what waits to
    /// `bufs`, for [`Outbox::window_sent`]; otherwise sends it here in one
    /// vectored write and returns None (the writer takes over what is left).
    pub fn close_window(&self, bufs: Option<&mut Vec<Bytes>>) -> Option<std::os::fd::RawFd> {
        let mut i = self.inner.borrow_mut();
        i.flush_scheduled = false;
        if !self.drainable(&i) {
            return None;
        }
        let handle = self.sink.borrow().as_ref().and_then(|s| s.batch_handle());
        if let (Some(fd), Some(bufs)) = (handle, bufs) {
            bufs.extend(
                i.items
                    .iter()
                    .take(DIRECT_MAX_ITEMS)
                    .map(|e| e.bytes.clone()),
            );
            return Some(fd);
        }
        self.try_direct(&mut i);
        drop(i);
        self.wake_if_pending();
        None
    }

    /// The outcome of a batched window flush (None: not sent).
    pub fn window_sent(&self, result: Option<std::io::Result<usize>>, now: Instant) {
        let mut i = self.inner.borrow_mut();
        self.written(&mut i, result.unwrap_or(Ok(0)), now);
        drop(i);
        self.wake_if_pending();
    }

    /// Wakes the writer if something is left for it (or the outbox closed).
    pub(super) fn wake_if_pending(&self) {
        let i = self.inner.borrow();
        let pending = !i.items.is_empty() || i.closed.is_some();
        drop(i);
        if pending {
            self.wake();
        }
    }
}
