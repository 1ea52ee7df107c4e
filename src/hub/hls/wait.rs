//! Requests waiting on a stream's window: a blocking playlist reload, a
//! preload-hinted part, a segment streamed as it is made. Each parks its
//! waker in the window's [`Waiters`] under the window's lock, and the
//! packager's change wakes the ones it concerns, on whatever core they
//! wait, with no timer polling.

use std::collections::HashMap;
use std::task::{Poll, Waker};

use super::window::{Window, WindowState};

/// A part a request waits for: segment msn, and the part's index (None for
/// the whole segment), as [`WindowState::has`] takes them.
type PartKey = (u64, Option<u32>);

/// The requests waiting on one window, by id (so a request polled again
/// finds its entry without a scan of every waiter), each with the part it
/// waits for when it waits for one.
#[derive(Debug, Default)]
pub struct Waiters {
    queued: HashMap<u64, (Waker, Option<PartKey>)>,
    next_id: u64,
}

impl Waiters {
    /// Wakes and forgets every waiter, except those waiting for a part
    /// that `has` says has still not come.
    pub(super) fn wake_due(&mut self, has: impl Fn(u64, Option<u32>) -> bool) {
        self.queued.retain(|_, (waker, until)| {
            let due = until.map_or(true, |(msn, part)| has(msn, part));
            if due {
                waker.wake_by_ref();
            }
            !due
        });
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }
}

impl Window {
    /// Resolves once `ready` holds on the state (checked now, then after
    /// every change the packager makes).
    pub fn wait_for<F: Fn(&WindowState) -> bool>(&self, ready: F) -> WaitFor<'_, F> {
        WaitFor {
            window: self,
            ready,
            until: None,
            id: None,
        }
    }

    /// Resolves once the window has part `part` of segment `msn` (see
    /// [`WindowState::has`]), the wait of a blocking playlist reload. Only
    /// the change that brings that part (or ends the stream) wakes it, not
    /// every part before it.
    pub fn wait_for_part(
        &self,
        msn: u64,
        part: Option<u32>,
    ) -> WaitFor<'_, impl Fn(&WindowState) -> bool> {
        WaitFor {
            window: self,
            ready: move |s: &WindowState| s.has(msn, part),
            until: Some((msn, part)),
            id: None,
        }
    }
}

/// A request waiting on a window: see [`Window::wait_for`]. It is queued on
/// the window once however often it is polled (a lookup by its id, not a
/// scan of every waiter), and leaves the queue when dropped.
pub struct WaitFor<'a, F> {
    window: &'a Window,
    ready: F,
    /// Woken only once the window has this part (see `wait_for_part`).
    until: Option<PartKey>,
    /// Its entry in the window's waiters, once queued.
    id: Option<u64>,
}

// Nothing in it is pinned: the closure is only ever called by reference.
impl<F> Unpin for WaitFor<'_, F> {}

impl<F: Fn(&WindowState) -> bool> std::future::Future for WaitFor<'_, F> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut s = this.window.read();
        if (this.ready)(&s) {
            if let Some(id) = this.id.take() {
                s.waiters.queued.remove(&id);
            }
            return Poll::Ready(());
        }
        match this.id.and_then(|id| s.waiters.queued.get_mut(&id)) {
            Some((waker, _)) => {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
            }
            None => {
                let id = s.waiters.next_id;
                s.waiters.next_id += 1;
                s.waiters
                    .queued
                    .insert(id, (cx.waker().clone(), this.until));
                this.id = Some(id);
            }
        }
        Poll::Pending
    }
}

impl<F> Drop for WaitFor<'_, F> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.window.read().waiters.queued.remove(&id);
        }
    }
}
