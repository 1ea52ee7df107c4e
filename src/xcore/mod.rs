//! The only code that crosses cores: one crossbeam channel per core, built
//! at start-up, and a wake-up that fires once per batch, not per message.
//!
//! A sender pushes any number of messages with [`Mesh::send`] and then
//! calls [`Mesh::wake`] (or [`Mesh::wake_all`]); the receiving core is
//! woken only if it was not already flagged, and drains everything queued
//! in one go with [`Mailbox::recv_batch`]. Nothing polls on a timer and
//! nothing blocks a runtime thread.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use atomic_waker::AtomicWaker;
use crossbeam_channel::{Receiver, Sender};

struct Signal {
    waker: AtomicWaker,
    notified: AtomicBool,
}

/// Senders to every core, cloned into each worker.
pub struct Mesh<T> {
    senders: Vec<Sender<T>>,
    signals: Vec<Arc<Signal>>,
}

impl<T> Clone for Mesh<T> {
    fn clone(&self) -> Self {
        Mesh {
            senders: self.senders.clone(),
            signals: self.signals.clone(),
        }
    }
}

/// One core's inbox.
pub struct Mailbox<T> {
    rx: Receiver<T>,
    signal: Arc<Signal>,
}

/// Builds the channels for `cores` workers: the mesh (to clone into every
/// worker) and one mailbox per core.
pub fn build<T>(cores: usize) -> (Mesh<T>, Vec<Mailbox<T>>) {
    let mut senders = Vec::with_capacity(cores);
    let mut signals = Vec::with_capacity(cores);
    let mut boxes = Vec::with_capacity(cores);
    for _ in 0..cores {
        let (tx, rx) = crossbeam_channel::unbounded();
        let signal = Arc::new(Signal {
            waker: AtomicWaker::new(),
            notified: AtomicBool::new(false),
        });
        senders.push(tx);
        signals.push(signal.clone());
        boxes.push(Mailbox { rx, signal });
    }
    (Mesh { senders, signals }, boxes)
}

impl<T> Mesh<T> {
    pub fn cores(&self) -> usize {
        self.senders.len()
    }

    /// Queues a message for `core` without waking it (see [`Mesh::wake`]).
    /// Returns false if that core's mailbox is gone (worker stopped).
    pub fn send(&self, core: usize, msg: T) -> bool {
        match self.senders.get(core) {
            Some(tx) => tx.send(msg).is_ok(),
            None => false,
        }
    }

    /// Wakes `core` unless it is already flagged: one wake-up per batch.
    pub fn wake(&self, core: usize) {
        if let Some(s) = self.signals.get(core) {
            if !s.notified.swap(true, Ordering::AcqRel) {
                s.waker.wake();
            }
        }
    }
}

impl<T> Mailbox<T> {
    /// Waits until at least one message is queued, then moves every queued
    /// message into `out`.
    pub async fn recv_batch(&self, out: &mut Vec<T>) {
        poll_fn(|cx| {
            // Register first, then clear the flag, then drain: a send that
            // lands after the drain sees the flag clear and wakes us.
            self.signal.waker.register(cx.waker());
            self.signal.notified.store(false, Ordering::Release);
            while let Ok(m) = self.rx.try_recv() {
                out.push(m);
            }
            if out.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// Drains without waiting (shutdown, tests).
    pub fn try_drain(&self, out: &mut Vec<T>) {
        while let Ok(m) = self.rx.try_recv() {
            out.push(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_threads_and_wake_once_per_batch() {
        let (mesh, mut boxes) = build::<u32>(2);
        let inbox = boxes.pop().unwrap();
        let t = std::thread::spawn(move || {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut got = Vec::new();
                while got.len() < 1000 {
                    let mut batch = Vec::new();
                    inbox.recv_batch(&mut batch).await;
                    got.extend(batch);
                }
                got
            })
        });
        for i in 0..1000 {
            assert!(mesh.send(1, i));
            if i % 100 == 99 {
                mesh.wake(1);
            }
        }
        let got = t.join().unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }
}
