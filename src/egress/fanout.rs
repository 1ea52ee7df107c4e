//! One live frame to every idle player of a stream on this core, with as
//! few system calls as the platform allows.
//!
//! Players whose writer is idle and whose queue is empty take the frame
//! straight from the fan-out loop (no task wake-up). Where the worker has a
//! [`BatchSend`] (io_uring), those sends go to the kernel together, one
//! submission for the whole pass; otherwise each player's sink sends on its
//! own. The hub never sees a socket: a sink hands out an opaque handle for
//! the batch sender, and the batch sender says what each send did.

use std::cell::RefCell;
use std::ops::Range;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use super::coalesce::Coalescer;
use super::framing::{Framing, Wire};
use super::meter;
use super::outbox::Outbox;
use crate::hub::{Delivery, Frame};
use crate::metrics::CoreStats;

/// Sends one buffer to many sockets at once. `results[i]` is the outcome
/// for `fds[i]`: bytes written (possibly fewer than all, or 0 when the
/// socket would block) or the error.
pub trait BatchSend {
    fn send_all(&mut self, data: &[u8], fds: &[RawFd], results: &mut Vec<std::io::Result<usize>>);

    /// Sends `bufs[range]` to `fd`, for every `(fd, range)` of `sends`, in
    /// one submission; `results[i]` is the outcome of `sends[i]`.
    fn send_each(
        &mut self,
        bufs: &[Bytes],
        sends: &[(RawFd, Range<usize>)],
        results: &mut Vec<std::io::Result<usize>>,
    );
}

/// The fan-out state of one core.
#[derive(Default)]
pub struct Fanout {
    pub coalescer: Rc<Coalescer>,
    sender: RefCell<Option<Box<dyn BatchSend>>>,
    /// Where a batch's egress latency goes (one update per batch).
    stats: RefCell<Option<Rc<CoreStats>>>,
    /// Reused across passes: the players of the pass's batch and their
    /// handles, by the shared wire form they take (RTMP players and FLV
    /// players of one stream each get their own one-buffer batch), and the
    /// results.
    pending: RefCell<[Vec<Rc<Outbox>>; 3]>,
    fds: RefCell<[Vec<RawFd>; 3]>,
    results: RefCell<Vec<std::io::Result<usize>>>,
    /// Reused by window flushes: the outboxes whose window closed, what
    /// they send, and to which socket.
    windows: RefCell<Vec<Rc<Outbox>>>,
    window_bufs: RefCell<Vec<Bytes>>,
    window_sends: RefCell<Vec<(RawFd, Range<usize>)>>,
}

impl Fanout {
    /// The fan-out state of a core that counts into `stats`.
    pub fn new(stats: Rc<CoreStats>) -> Rc<Fanout> {
        let fanout = Fanout::default();
        *fanout.stats.borrow_mut() = Some(stats);
        Rc::new(fanout)
    }

    /// Installs the batch sender (the worker does, where io_uring works).
    pub fn set_sender(&self, sender: Option<Box<dyn BatchSend>>) {
        *self.sender.borrow_mut() = sender;
    }

    /// A player in `framing` accepted `frame`: its bytes and message count.
    pub fn accepted(&self, framing: &Framing, frame: &Frame) {
        if let Some(stats) = self.stats.borrow().as_ref() {
            meter::accepted(stats, framing, frame);
        }
    }

    pub fn batching(&self) -> bool {
        self.sender.borrow().is_some()
    }

    /// Holds `outbox` back for the batch of `wire` (its frame is the pass's).
    pub fn defer(&self, outbox: &Rc<Outbox>, fd: RawFd, wire: Wire) {
        self.pending.borrow_mut()[wire.index()].push(outbox.clone());
        self.fds.borrow_mut()[wire.index()].push(fd);
    }

    /// Sends `frame` to every deferred player, one batch per wire form, and
    /// applies each outcome to its outbox.
    pub fn flush(&self, frame: &Frame) {
        for wire in Wire::ALL {
            self.flush_wire(frame, wire);
        }
    }

    fn flush_wire(&self, frame: &Frame, wire: Wire) {
        let mut pending = self.pending.borrow_mut();
        let pending = &mut pending[wire.index()];
        if pending.is_empty() {
            return;
        }
        let mut fds = self.fds.borrow_mut();
        let fds = &mut fds[wire.index()];
        let mut results = self.results.borrow_mut();
        match self.sender.borrow_mut().as_mut() {
            Some(sender) => sender.send_all(wire.of(frame), fds, &mut results),
            None => results.clear(),
        }
        // Every send of the batch completed within the one submission: one
        // clock read and one histogram update for all of them.
        let now = Instant::now();
        let mut sent = 0u64;
        for (i, outbox) in pending.drain(..).enumerate() {
            let result = results.get_mut(i).map(|r| std::mem::replace(r, Ok(0)));
            if outbox.direct_done(frame, result, now) {
                sent += 1;
            }
        }
        if let Some(stats) = self.stats.borrow().as_ref() {
            meter::sent(stats, meter::wire_protocol(wire), frame.ingest, sent, now);
        }
        fds.clear();
        results.clear();
    }

    /// Closes every coalescing window due by `now`, sending what waits in
    /// them in one batched submission where the core batches (one vectored
    /// send each otherwise). Returns the next deadline.
    pub fn flush_due(&self, now: Instant) -> Option<Instant> {
        let mut due = self.windows.borrow_mut();
        let next = self.coalescer.take_due(now, &mut due);
        if due.is_empty() {
            return next;
        }
        let mut bufs = self.window_bufs.borrow_mut();
        let mut sends = self.window_sends.borrow_mut();
        let batching = self.batching();
        // Outboxes that handed their bytes over stay in `due`, in order.
        due.retain(|outbox| {
            let start = bufs.len();
            match outbox.close_window(batching.then_some(&mut *bufs)) {
                Some(fd) => {
                    sends.push((fd, start..bufs.len()));
                    true
                }
                None => false,
            }
        });
        if !sends.is_empty() {
            let mut results = self.results.borrow_mut();
            if let Some(sender) = self.sender.borrow_mut().as_mut() {
                sender.send_each(&bufs, &sends, &mut results);
            }
            let now = Instant::now();
            for (i, outbox) in due.iter().enumerate() {
                let result = results.get_mut(i).map(|r| std::mem::replace(r, Ok(0)));
                outbox.window_sent(result, now);
            }
            results.clear();
        }
        due.clear();
        bufs.clear();
        sends.clear();
        next
    }

    /// The core's window task: sleeps until the earliest window closes,
    /// flushes, repeats; parks while no window is open.
    pub async fn run_windows(self: Rc<Self>) {
        loop {
            match self.flush_due(Instant::now()) {
                Some(at) => monoio::time::sleep_until(at.into()).await,
                None => self.coalescer.listed().await,
            }
        }
    }
}

impl Delivery for Fanout {
    fn pass_done(&self, frame: &Frame, _offered: usize, dropped: u64, _now: Instant) {
        self.flush(frame);
        if let Some(stats) = self.stats.borrow().as_ref() {
            meter::pass(stats, dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::{CloseReason, DirectSink, QueueLimits};
    use crate::metrics::Label;
    use crate::protocol::session::MediaKind;
    use bytes::Bytes;

    /// A sink that only hands out its handle (the batch does the sending).
    struct Handle(RawFd);
    impl DirectSink for Handle {
        fn send_now(&self, bufs: &[&[u8]]) -> std::io::Result<usize> {
            Ok(bufs.iter().map(|b| b.len()).sum())
        }
        fn batch_handle(&self) -> Option<RawFd> {
            Some(self.0)
        }
    }

    /// What a handle's send does: 1 takes all, 2 takes 10 bytes, 3 would
    /// block, 4 is dead.
    fn scripted(fd: RawFd, len: usize) -> std::io::Result<usize> {
        match fd {
            1 => Ok(len),
            2 => Ok(10),
            3 => Ok(0),
            _ => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Counts submissions and answers by handle (see [`scripted`]).
    struct Scripted(Rc<RefCell<usize>>);
    impl BatchSend for Scripted {
        fn send_each(
            &mut self,
            bufs: &[Bytes],
            sends: &[(RawFd, Range<usize>)],
            results: &mut Vec<std::io::Result<usize>>,
        ) {
            *self.0.borrow_mut() += 1;
            results.clear();
            for (fd, range) in sends {
                let len = bufs[range.clone()].iter().map(|b| b.len()).sum();
                results.push(scripted(*fd, len));
            }
        }

        fn send_all(
            &mut self,
            data: &[u8],
            fds: &[RawFd],
            results: &mut Vec<std::io::Result<usize>>,
        ) {
            *self.0.borrow_mut() += 1;
            results.clear();
            for fd in fds {
                results.push(scripted(*fd, data.len()));
            }
        }
    }

    #[test]
    fn one_batch_per_pass_and_each_outcome_lands_in_its_outbox() {
        let stats = Rc::new(CoreStats::default());
        let calls = Rc::new(RefCell::new(0));
        let fanout = Fanout::new(stats.clone());
        fanout.set_sender(Some(Box::new(Scripted(calls.clone()))));
        let outboxes: Vec<Rc<Outbox>> = (1..=4)
            .map(|fd| {
                let o = Rc::new(Outbox::new(QueueLimits::default()));
                o.set_sink(Some(Box::new(Handle(fd))), Some(stats.clone()));
                o
            })
            .collect();
        let class = crate::hub::frame::Class {
            keyframe: true,
            ..Default::default()
        };
        let now = Instant::now();
        let frame = Frame::new(
            MediaKind::Video,
            0,
            class,
            Bytes::from(vec![7u8; 1000]),
            4096,
            now,
        );
        for o in &outboxes {
            assert!(o.push_live(&frame, now, &fanout));
        }
        // Nothing went out before the pass ends.
        assert_eq!(*calls.borrow(), 0);
        fanout.flush(&frame);
        assert_eq!(*calls.borrow(), 1);
        assert_eq!(outboxes[0].queued_bytes(), 0);
        assert_eq!(outboxes[1].queued_bytes(), frame.chunks.len() - 10);
        assert_eq!(outboxes[2].queued_bytes(), frame.chunks.len());
        assert_eq!(outboxes[3].closed(), Some(CloseReason::Broken));
        // One latency sample for the one fully sent player, under RTMP.
        let rtmp = crate::metrics::Protocol::Rtmp.index();
        assert_eq!(stats.snapshot().ingest_to_egress[rtmp].count(), 1);
        // Every player took the frame, in its framing's length.
        assert_eq!(stats.snapshot().messages_out[rtmp], 4);
        assert_eq!(
            stats.snapshot().bytes_out[rtmp],
            4 * frame.chunks.len() as u64
        );
        // A player with a queue is not batched: the next frame goes behind
        // its queue, which its own sink then drains (this one takes all).
        assert!(outboxes[1].push_live(&frame, now, &fanout));
        fanout.flush(&frame);
        assert_eq!(*calls.borrow(), 1);
        assert_eq!(outboxes[1].queued_bytes(), 0);
    }

    #[test]
    fn windows_that_close_together_leave_in_one_submission() {
        let stats = Rc::new(CoreStats::default());
        let calls = Rc::new(RefCell::new(0));
        let fanout = Fanout::new(stats.clone());
        fanout.set_sender(Some(Box::new(Scripted(calls.clone()))));
        let limits = QueueLimits {
            coalesce: std::time::Duration::from_millis(20),
            ..QueueLimits::default()
        };
        let outboxes: Vec<Rc<Outbox>> = (1..=4)
            .map(|fd| {
                let o = Rc::new(Outbox::new(limits.clone()));
                o.set_sink(Some(Box::new(Handle(fd))), Some(stats.clone()));
                o
            })
            .collect();
        let now = Instant::now();
        let class = crate::hub::frame::Class {
            keyframe: true,
            ..Default::default()
        };
        let frame = Frame::new(
            MediaKind::Video,
            0,
            class,
            Bytes::from(vec![7u8; 100]),
            4096,
            now,
        );
        for o in &outboxes {
            // Two frames wait in each window.
            assert!(o.push_live(&frame, now, &fanout));
            assert!(o.push_live(&frame, now, &fanout));
            let window = o.take_flush_request().expect("a window opened");
            fanout.coalescer.schedule(o, window, now);
        }
        assert_eq!(
            *calls.borrow(),
            0,
            "nothing leaves before the window closes"
        );
        let late = now + std::time::Duration::from_millis(25);
        assert_eq!(fanout.flush_due(late), None);
        assert_eq!(*calls.borrow(), 1, "one submission for every window");
        let both = 2 * frame.chunks.len();
        assert_eq!(outboxes[0].queued_bytes(), 0);
        assert_eq!(outboxes[1].queued_bytes(), both - 10);
        assert_eq!(outboxes[2].queued_bytes(), both);
        assert_eq!(outboxes[3].closed(), Some(CloseReason::Broken));
        // Both frames of the fully sent window count as sent.
        let rtmp = crate::metrics::Protocol::Rtmp.index();
        assert_eq!(stats.snapshot().ingest_to_egress[rtmp].count(), 2);
    }
}
