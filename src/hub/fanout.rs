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
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;

use super::coalesce::Coalescer;
use super::frame::Frame;
use super::outbox::Outbox;
use crate::metrics::CoreStats;

/// Sends one buffer to many sockets at once. `results[i]` is the outcome
/// for `fds[i]`: bytes written (possibly fewer than all, or 0 when the
/// socket would block) or the error.
pub trait BatchSend {
    fn send_all(&mut self, data: &[u8], fds: &[RawFd], results: &mut Vec<std::io::Result<usize>>);
}

/// The fan-out state of one core.
#[derive(Default)]
pub struct Fanout {
    pub coalescer: Rc<Coalescer>,
    sender: RefCell<Option<Box<dyn BatchSend>>>,
    /// Where a batch's egress latency goes (one update per batch).
    stats: RefCell<Option<Rc<CoreStats>>>,
    /// Reused across passes: the players of the pass's batch, their
    /// handles, and the results.
    pending: RefCell<Vec<Rc<Outbox>>>,
    fds: RefCell<Vec<RawFd>>,
    results: RefCell<Vec<std::io::Result<usize>>>,
}

impl Fanout {
    /// Installs the batch sender (the worker does, where io_uring works).
    pub fn set_sender(&self, sender: Option<Box<dyn BatchSend>>, stats: Option<Rc<CoreStats>>) {
        *self.sender.borrow_mut() = sender;
        *self.stats.borrow_mut() = stats;
    }

    pub fn batching(&self) -> bool {
        self.sender.borrow().is_some()
    }

    /// Holds `outbox` back for the batch (its frame is `frame`).
    pub fn defer(&self, outbox: &Rc<Outbox>, fd: RawFd) {
        self.pending.borrow_mut().push(outbox.clone());
        self.fds.borrow_mut().push(fd);
    }

    /// Sends `frame` to every deferred player in one batch and applies
    /// each outcome to its outbox.
    pub fn flush(&self, frame: &Frame) {
        let mut pending = self.pending.borrow_mut();
        if pending.is_empty() {
            return;
        }
        let mut fds = self.fds.borrow_mut();
        let mut results = self.results.borrow_mut();
        match self.sender.borrow_mut().as_mut() {
            Some(sender) => sender.send_all(&frame.chunks, &fds, &mut results),
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
            stats.record_egress_n(now.duration_since(frame.ingest), sent);
        }
        fds.clear();
        results.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::outbox::{DirectSink, QueueLimits};
    use crate::hub::CloseReason;
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

    /// Answers by handle: 1 takes all, 2 takes 10 bytes, 3 would block, 4 is dead.
    struct Scripted(Rc<RefCell<usize>>);
    impl BatchSend for Scripted {
        fn send_all(
            &mut self,
            data: &[u8],
            fds: &[RawFd],
            results: &mut Vec<std::io::Result<usize>>,
        ) {
            *self.0.borrow_mut() += 1;
            results.clear();
            for fd in fds {
                results.push(match fd {
                    1 => Ok(data.len()),
                    2 => Ok(10),
                    3 => Ok(0),
                    _ => Err(std::io::ErrorKind::BrokenPipe.into()),
                });
            }
        }
    }

    #[test]
    fn one_batch_per_pass_and_each_outcome_lands_in_its_outbox() {
        let stats = Rc::new(CoreStats::default());
        let calls = Rc::new(RefCell::new(0));
        let fanout = Fanout::default();
        fanout.set_sender(Some(Box::new(Scripted(calls.clone()))), Some(stats.clone()));
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
        // One latency sample for the one fully sent player.
        assert_eq!(stats.snapshot().ingest_to_egress.count(), 1);
        // A player with a queue is not batched: the next frame goes behind
        // its queue, which its own sink then drains (this one takes all).
        assert!(outboxes[1].push_live(&frame, now, &fanout));
        fanout.flush(&frame);
        assert_eq!(*calls.borrow(), 1);
        assert_eq!(outboxes[1].queued_bytes(), 0);
    }
}
