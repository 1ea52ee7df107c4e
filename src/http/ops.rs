//! The control plane's shared state: readiness, drain, the configuration in
//! force, and the control mesh through which snapshots, kicks, reloads and
//! drains reach the workers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use crate::config::Config;
use crate::context::{ControlMsg, KickTarget, Snapshot};
use crate::xcore::Mesh;

/// How long a request waits for a busy core before answering without it.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);

/// State the control plane shares with the workers and the signal thread.
pub struct Ops {
    workers: usize,
    ready: AtomicUsize,
    draining: AtomicBool,
    config: RwLock<Arc<Config>>,
    mesh: OnceLock<Mesh<ControlMsg>>,
}

impl Ops {
    pub fn new(config: Arc<Config>, workers: usize) -> Ops {
        Ops {
            workers,
            ready: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            config: RwLock::new(config),
            mesh: OnceLock::new(),
        }
    }

    /// Set once by the shard when it built the channels.
    pub fn set_mesh(&self, mesh: Mesh<ControlMsg>) {
        let _ = self.mesh.set(mesh);
    }

    /// A worker listens and serves its inbox.
    pub fn worker_ready(&self) {
        self.ready.fetch_add(1, Ordering::AcqRel);
    }

    /// Every worker listens and no drain started.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) >= self.workers && !self.is_draining()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The configuration in force (changes on reload).
    pub fn config(&self) -> Arc<Config> {
        self.config.read().map(|c| c.clone()).unwrap_or_default()
    }

    fn broadcast(&self, mut make: impl FnMut() -> ControlMsg) -> usize {
        let Some(mesh) = self.mesh.get() else {
            return 0;
        };
        let mut sent = 0;
        for core in 0..mesh.cores() {
            if mesh.send(core, make()) {
                mesh.wake(core);
                sent += 1;
            }
        }
        sent
    }

    /// Starts a drain: not ready from now on, listeners close, publishers
    /// are asked to reconnect elsewhere. Returns false if one was running.
    pub fn start_drain(&self) -> bool {
        if self.draining.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.broadcast(|| ControlMsg::Drain);
        true
    }

    /// Applies what can change live; the caller has validated `config` and
    /// logged what cannot change.
    pub fn reload(&self, config: Arc<Config>) {
        let live = crate::context::live_settings(&config);
        if let Ok(mut c) = self.config.write() {
            *c = config;
        }
        self.broadcast(|| ControlMsg::Reload(Box::new(live.clone())));
    }

    /// Closes matching connections on every core; how many were closed.
    pub fn kick(&self, target: KickTarget) -> usize {
        let (tx, rx) = crossbeam_channel::unbounded();
        let sent = self.broadcast(|| ControlMsg::Kick {
            target: target.clone(),
            reply: tx.clone(),
        });
        drop(tx);
        let deadline = std::time::Instant::now() + SNAPSHOT_TIMEOUT;
        (0..sent)
            .map_while(|_| rx.recv_deadline(deadline).ok())
            .sum()
    }

    /// One snapshot per core that answered in time, by core.
    pub fn collect(&self) -> Vec<Snapshot> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let sent = self.broadcast(|| ControlMsg::Snapshot { reply: tx.clone() });
        drop(tx);
        let deadline = std::time::Instant::now() + SNAPSHOT_TIMEOUT;
        let mut out: Vec<Snapshot> = (0..sent)
            .map_while(|_| rx.recv_deadline(deadline).ok())
            .collect();
        out.sort_by_key(|s| s.core);
        out
    }

    /// Live connections on the node (for a drain's wait).
    pub fn connections(&self) -> u64 {
        self.collect().iter().map(|s| s.clients.len() as u64).sum()
    }
}
