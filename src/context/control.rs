//! The control plane's messages to a worker (snapshot, reload, drain,
//! kick), kept apart from the hub's stream messages: they travel on their
//! own mesh and are handled here, by the worker, never by the hub.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use futures_channel::oneshot;
use tracing::info;

use super::{LiveSettings, Worker};
use crate::hub::StreamInfo;
use crate::metrics::{KickReason, Protocol, StatsSnapshot};

/// What the control plane asks of a worker. Replies go back on a oneshot
/// channel: the asker may be a task on a worker runtime (an HTTP request
/// served there), which must await the answer rather than block its
/// thread, or the main thread, which polls it with a parking waker.
#[derive(Debug)]
pub enum ControlMsg {
    /// Reply with this core's streams, statistics and clients.
    Snapshot { reply: oneshot::Sender<Snapshot> },
    /// SIGHUP: settings that may change live.
    Reload(Box<LiveSettings>),
    /// SIGTERM: stop accepting, ask publishers to reconnect elsewhere.
    Drain,
    /// Close connections, by id, by stream (its publisher and players), or
    /// all; replies with how many were closed.
    Kick {
        target: KickTarget,
        reply: oneshot::Sender<usize>,
    },
}

/// What a [`ControlMsg::Kick`] closes.
#[derive(Debug, Clone)]
pub enum KickTarget {
    Client(u64),
    Stream(String),
    /// Every connection (end of a drain).
    All,
}

/// One core's view, sent to the control plane. Cloning it shares the
/// parts rather than copying them: the control plane keeps each core's
/// latest snapshot and hands a copy to every request, on the worker that
/// serves it, and a core's histograms alone run to megabytes.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub core: usize,
    /// Counts this core's snapshots: of two copies of one core, the higher
    /// is the later (the control plane keeps the latest it has seen).
    pub seq: u64,
    pub streams: Arc<Vec<StreamInfo>>,
    pub stats: Arc<StatsSnapshot>,
    pub clients: Arc<Vec<ClientInfo>>,
}

/// One connection, for the clients API.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub id: u64,
    pub peer: String,
    pub role: &'static str,
    /// How it plays (or would): RTMP, HTTP-FLV or WebSocket-FLV.
    pub protocol: Protocol,
    pub stream: Option<String>,
    pub connected_ms: u64,
}

impl Worker {
    pub(crate) fn start_drain(&self) {
        if !self.draining.replace(true) {
            info!(worker = self.id, "draining: listener closed");
            let waiting = std::mem::take(&mut *self.drain_wakers.borrow_mut());
            for (_, w) in waiting {
                w.wake();
            }
        }
    }

    /// Resolves once a drain started. Any number of tasks may wait; each
    /// is woken when the drain starts.
    pub async fn drained(&self) {
        /// Takes the wait's waker out when the wait ends, however it ends
        /// (also when a `select!` drops it for another branch).
        struct Registration<'a>(&'a Worker, u64);
        impl Drop for Registration<'_> {
            fn drop(&mut self) {
                self.0.drain_wakers.borrow_mut().remove(&self.1);
            }
        }
        let key = self.next_drain_key.get();
        self.next_drain_key.set(key + 1);
        let _registration = Registration(self, key);
        poll_fn(|cx| {
            if self.draining.get() {
                Poll::Ready(())
            } else {
                self.drain_wakers
                    .borrow_mut()
                    .insert(key, cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Applies one control message.
    pub fn handle_control(&self, msg: ControlMsg) {
        match msg {
            ControlMsg::Reload(live) => {
                self.hub.borrow_mut().set_config(live.hub.clone());
                *self.live.borrow_mut() = *live;
            }
            ControlMsg::Drain => self.start_drain(),
            ControlMsg::Kick { target, reply } => {
                let reason = if matches!(target, KickTarget::All) {
                    KickReason::Drain
                } else {
                    KickReason::Api
                };
                let _ = reply.send(self.kick(&target, reason));
            }
            ControlMsg::Snapshot { reply } => {
                let streams = self.hub.borrow().stream_infos(Instant::now());
                let seq = self.snapshots.get() + 1;
                self.snapshots.set(seq);
                // The asker may have given up (past its deadline): then the
                // answer is dropped here.
                let _ = reply.send(Snapshot {
                    core: self.id,
                    seq,
                    streams: Arc::new(streams),
                    stats: Arc::new(self.stats.snapshot()),
                    clients: Arc::new(self.client_infos()),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::config::Config;
    use crate::context::{live_settings, Worker};
    use crate::hub::{Directory, StreamMsg};
    use crate::xcore;

    #[test]
    fn a_drain_wakes_every_waiting_task_and_abandoned_waits_leave_nothing() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let config = Arc::new(Config::default());
            let (mesh, _boxes) = xcore::build::<StreamMsg>(1);
            let live = live_settings(&config);
            let worker = Rc::new(Worker::new(
                0,
                config,
                live,
                Arc::new(Directory::new(4)),
                mesh,
            ));
            // Waits that end another way (as a kept-alive connection's does
            // when its next request comes) must not stay registered.
            for _ in 0..100 {
                monoio::select! {
                    _ = worker.drained() => unreachable!("no drain yet"),
                    _ = monoio::time::sleep(Duration::ZERO) => {},
                }
            }
            assert!(worker.drain_wakers.borrow().is_empty());
            let woken = Rc::new(Cell::new(0));
            let tasks: Vec<_> = (0..3)
                .map(|_| {
                    let (w, woken) = (worker.clone(), woken.clone());
                    monoio::spawn(async move {
                        w.drained().await;
                        woken.set(woken.get() + 1);
                    })
                })
                .collect();
            monoio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(worker.drain_wakers.borrow().len(), 3);
            worker.start_drain();
            monoio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(woken.get(), 3, "every waiting task hears the drain");
            for t in tasks {
                t.await;
            }
            assert!(worker.drain_wakers.borrow().is_empty());
        });
    }
}
