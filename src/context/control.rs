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
            if let Some(w) = self.drain_waker.take() {
                w.wake();
            }
        }
    }

    /// Resolves once a drain started.
    pub async fn drained(&self) {
        poll_fn(|cx| {
            if self.draining.get() {
                Poll::Ready(())
            } else {
                self.drain_waker.set(Some(cx.waker().clone()));
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
