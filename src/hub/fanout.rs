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

use super::coalesce::Coalescer;
use super::frame::Frame;
use super::outbox::Outbox;

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
    /// Reused across passes: the players of the pass's batch, their
    /// handles, and the results.
    pending: RefCell<Vec<Rc<Outbox>>>,
    fds: RefCell<Vec<RawFd>>,
    results: RefCell<Vec<std::io::Result<usize>>>,
}

impl Fanout {
    /// Installs the batch sender (the worker does, where io_uring works).
    pub fn set_sender(&self, sender: Option<Box<dyn BatchSend>>) {
        *self.sender.borrow_mut() = sender;
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
        for (i, outbox) in pending.drain(..).enumerate() {
            let result = results.get_mut(i).map(|r| std::mem::replace(r, Ok(0)));
            outbox.direct_done(frame, result);
        }
        fds.clear();
        results.clear();
    }
}
