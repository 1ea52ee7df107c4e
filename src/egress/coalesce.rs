//! Write coalescing: with `player.write_coalesce_ms` above zero, live
//! frames wait in each player's outbox until the oldest has waited the
//! window, and then everything queued goes out in one vectored send.
//! Fewer, larger sends cost the kernel less per byte; the window is the
//! only delay added (TCP_NODELAY stays on).
//!
//! One timer queue per core: every outbox with frames waiting is listed
//! once, in the order its window opened. The window is the same for every
//! outbox of a core, so that order is also deadline order and a FIFO is a
//! complete timer. The flush itself is the core's [`super::Fanout`]'s: the
//! windows that close together leave in one batched submission.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::outbox::Outbox;

#[derive(Default)]
pub struct Coalescer {
    due: RefCell<VecDeque<(Instant, Rc<Outbox>)>>,
    waker: Cell<Option<Waker>>,
}

impl Coalescer {
    /// Lists `outbox` to be flushed `window` after `now`.
    pub fn schedule(&self, outbox: &Rc<Outbox>, window: Duration, now: Instant) {
        let mut due = self.due.borrow_mut();
        let was_empty = due.is_empty();
        due.push_back((now + window, outbox.clone()));
        drop(due);
        if was_empty {
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    /// Outboxes waiting for their window to close.
    pub fn pending(&self) -> usize {
        self.due.borrow().len()
    }

    /// Moves every outbox whose window closed by `now` to `out`; returns
    /// the earliest deadline still open.
    pub fn take_due(&self, now: Instant, out: &mut Vec<Rc<Outbox>>) -> Option<Instant> {
        let mut due = self.due.borrow_mut();
        loop {
            match due.front() {
                // A reload may shorten the window, so a later entry can be
                // due before an earlier one: it waits for the front, at
                // most one old window.
                Some((at, _)) if *at <= now => {
                    if let Some((_, outbox)) = due.pop_front() {
                        out.push(outbox);
                    }
                }
                Some((at, _)) => return Some(*at),
                None => return None,
            }
        }
    }

    /// Parks until some outbox is listed.
    pub async fn listed(&self) {
        poll_fn(|cx| {
            if self.due.borrow().is_empty() {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }
}
