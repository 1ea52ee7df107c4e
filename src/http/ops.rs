//! The control plane's shared state: readiness, drain, the configuration in
//! force, who may call the API, and the control mesh through which
//! snapshots, kicks, reloads and drains reach the workers.
//!
//! Requests are served on the worker runtimes, so a snapshot or a kick is
//! asked for from a task on one of the very cores that must answer: the
//! `*_async` calls await the replies (the asking core's own control task
//! answers meanwhile) and never block the thread. The blocking calls are
//! for the main thread (the drain's wait). Both give up on a core after
//! [`REPLY_TIMEOUT`]; a scrape then shows that core's last snapshot, so a
//! counter never goes down between two scrapes.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Config;
use crate::context::{ControlMsg, KickTarget, Snapshot};
use crate::xcore::Mesh;

/// How long a request waits for the cores' answers. A core answers between
/// two batches of its own work, so a healthy one takes microseconds to a
/// few milliseconds; one that has not answered in a second is stalled, and
/// waiting longer only holds the request (and, for a scrape, runs into
/// Prometheus' scrape timeout). Its last snapshot stands in for it.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Which credentials a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `/api/v1/...`: `http.api_token` when it is set.
    Api,
    /// `/metrics`: the same token, when `http.metrics_token` is also on.
    Metrics,
}

/// An HMAC-SHA256 tag of a token (see [`Ops::authorized`]).
type Tag = [u8; 32];

/// The configuration in force and what is derived from it once per reload.
struct InForce {
    config: Arc<Config>,
    /// Tag of `http.api_token`; None when the API is open.
    api_tag: Option<Tag>,
}

/// State the control plane shares with the workers and the signal thread.
pub struct Ops {
    workers: usize,
    ready: AtomicUsize,
    draining: AtomicBool,
    in_force: RwLock<InForce>,
    mesh: OnceLock<Mesh<ControlMsg>>,
    /// The node's HLS/DASH windows (for the sessions gauge).
    hls: OnceLock<Arc<crate::hub::HlsStore>>,
    /// The latest snapshot each core sent, by core: stands in for a core
    /// that misses a deadline.
    last: Mutex<Vec<Option<Snapshot>>>,
    /// Key of the token tags, drawn at start-up and never shown.
    token_key: [u8; 32],
}

impl Ops {
    pub fn new(config: Arc<Config>, workers: usize) -> Ops {
        let token_key: [u8; 32] = rand::random();
        Ops {
            workers,
            ready: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            in_force: RwLock::new(in_force(&token_key, config)),
            mesh: OnceLock::new(),
            hls: OnceLock::new(),
            last: Mutex::new((0..workers).map(|_| None).collect()),
            token_key,
        }
    }

    /// Set once by the shard when it built the channels.
    pub fn set_mesh(&self, mesh: Mesh<ControlMsg>) {
        let _ = self.mesh.set(mesh);
    }

    /// The node's HLS/DASH windows, set once at start-up.
    pub fn set_hls(&self, store: Arc<crate::hub::HlsStore>) {
        let _ = self.hls.set(store);
    }

    /// Active HLS and DASH sessions on the node.
    pub fn hls_sessions(&self, now: std::time::Instant) -> [u64; 2] {
        let Some(store) = self.hls.get() else {
            return [0, 0];
        };
        let timeout = std::time::Duration::from_millis(self.config().hls.session_timeout_ms);
        let mut n = [0u64; 2];
        for (_, w) in store.all() {
            let (hls, dash) = w.read().active_sessions(now, timeout);
            n[0] += hls as u64;
            n[1] += dash as u64;
        }
        n
    }

    /// A worker listens and serves its inbox.
    pub fn worker_ready(&self) {
        self.ready.fetch_add(1, Ordering::AcqRel);
    }

    /// Every worker listens and no drain started. Reads atomics only: the
    /// probes never wait for a core.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) >= self.workers && !self.is_draining()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The configuration in force (changes on reload).
    pub fn config(&self) -> Arc<Config> {
        self.in_force
            .read()
            .map(|f| f.config.clone())
            .unwrap_or_default()
    }

    /// Whether a request for `scope` with this `Authorization` header may
    /// proceed. With `http.api_token` empty everything is open; otherwise
    /// the API asks for `Bearer TOKEN`, and `/metrics` too when
    /// `http.metrics_token` is on.
    ///
    /// The presented token is compared by its HMAC under a key drawn at
    /// start-up, with the tag of the configured token computed at load: the
    /// work done per request depends only on what the caller sent, and the
    /// tags are compared in constant time, so the response time tells
    /// nothing of the configured token, its length included.
    pub fn authorized(&self, scope: Scope, authorization: Option<&str>) -> bool {
        let (want, metrics_too) = match self.in_force.read() {
            Ok(f) => (f.api_tag, f.config.http.metrics_token),
            // A writer panicked mid-reload: refuse rather than guess.
            Err(_) => return false,
        };
        let Some(want) = want else {
            return true;
        };
        if scope == Scope::Metrics && !metrics_too {
            return true;
        }
        let Some(token) = authorization.and_then(bearer) else {
            return false;
        };
        token_mac(&self.token_key, token).is_some_and(|mac| mac.verify_slice(&want).is_ok())
    }

    /// Queues `make(reply)` for every core and wakes it; the answers are
    /// awaited through the returned [`Gather`].
    fn ask<T>(&self, mut make: impl FnMut(oneshot::Sender<T>) -> ControlMsg) -> Gather<T> {
        let mut waiting = Vec::new();
        if let Some(mesh) = self.mesh.get() {
            for core in 0..mesh.cores() {
                let (tx, rx) = oneshot::channel();
                if mesh.send(core, make(tx)) {
                    mesh.wake(core);
                    waiting.push((core, rx));
                }
            }
        }
        Gather {
            waiting,
            got: Vec::new(),
        }
    }

    fn broadcast(&self, mut make: impl FnMut() -> ControlMsg) {
        let Some(mesh) = self.mesh.get() else {
            return;
        };
        for core in 0..mesh.cores() {
            if mesh.send(core, make()) {
                mesh.wake(core);
            }
        }
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
        let next = in_force(&self.token_key, config);
        let mut f = self
            .in_force
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *f = next;
        drop(f);
        self.broadcast(|| ControlMsg::Reload(Box::new(live.clone())));
    }

    /// Closes matching connections on every core; how many were closed
    /// (a core that does not answer in time counts as none). For a task
    /// on a worker runtime.
    pub async fn kick_async(&self, target: KickTarget) -> usize {
        let mut gather = self.ask_kick(target);
        gather.wait(REPLY_TIMEOUT).await;
        gather.got.iter().map(|(_, n)| n).sum()
    }

    /// As [`Ops::kick_async`], blocking the calling thread (the main
    /// thread's drain; never a worker).
    pub fn kick(&self, target: KickTarget) -> usize {
        let mut gather = self.ask_kick(target);
        gather.wait_blocking(REPLY_TIMEOUT);
        gather.got.iter().map(|(_, n)| n).sum()
    }

    fn ask_kick(&self, target: KickTarget) -> Gather<usize> {
        self.ask(|reply| ControlMsg::Kick {
            target: target.clone(),
            reply,
        })
    }

    /// One snapshot per core, by core: its answer, or its last snapshot if
    /// it did not answer within [`REPLY_TIMEOUT`] (a core that never
    /// answered is left out). For a task on a worker runtime.
    pub async fn collect_async(&self) -> Vec<Snapshot> {
        let mut gather = self.ask(|reply| ControlMsg::Snapshot { reply });
        gather.wait(REPLY_TIMEOUT).await;
        self.remember(gather.got)
    }

    /// As [`Ops::collect_async`], blocking the calling thread (the main
    /// thread; never a worker).
    pub fn collect(&self) -> Vec<Snapshot> {
        let mut gather = self.ask(|reply| ControlMsg::Snapshot { reply });
        gather.wait_blocking(REPLY_TIMEOUT);
        self.remember(gather.got)
    }

    /// Files fresh answers (a later copy of a core replaces an earlier
    /// one, never the reverse, whichever request finishes first) and
    /// returns the latest copy of every core.
    fn remember(&self, got: Vec<(usize, Snapshot)>) -> Vec<Snapshot> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        for (core, snap) in got {
            if core >= last.len() {
                last.resize_with(core + 1, || None);
            }
            let newer = match &last[core] {
                Some(old) => old.seq < snap.seq,
                None => true,
            };
            if newer {
                last[core] = Some(snap);
            }
        }
        last.iter().flatten().cloned().collect()
    }

    /// Live connections on the node (for a drain's wait).
    pub fn connections(&self) -> u64 {
        self.collect().iter().map(|s| s.clients.len() as u64).sum()
    }
}

fn in_force(key: &[u8; 32], config: Arc<Config>) -> InForce {
    let token = config.http.api_token.as_str();
    let api_tag = if token.is_empty() {
        None
    } else {
        token_mac(key, token).map(|mac| mac.finalize().into_bytes().into())
    };
    InForce { config, api_tag }
}

/// HMAC-SHA256 of `token` under `key`, ready to finalize or verify.
fn token_mac(key: &[u8; 32], token: &str) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(token.as_bytes());
    Some(mac)
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme is
/// case-insensitive, RFC 9110 §11.1).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Answers awaited from the cores: what has come, by core, and the
/// channels still open. Owned by the caller, so what came before a
/// deadline is kept when the wait is cut short.
struct Gather<T> {
    waiting: Vec<(usize, oneshot::Receiver<T>)>,
    got: Vec<(usize, T)>,
}

impl<T> Gather<T> {
    /// Moves what has come into `got`; ready once no channel is open (a
    /// core that dropped the request, shutting down, answers nothing).
    fn poll_all(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let got = &mut self.got;
        self.waiting
            .retain_mut(|(core, rx)| match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(v)) => {
                    got.push((*core, v));
                    false
                }
                Poll::Ready(Err(oneshot::Canceled)) => false,
                Poll::Pending => true,
            });
        if self.waiting.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Awaits every answer, for at most `within`, on a monoio runtime (its
    /// timer must be enabled). The replies wake this task from other
    /// threads, which monoio's `sync` feature allows.
    async fn wait(&mut self, within: Duration) {
        let _ = monoio::time::timeout(within, poll_fn(|cx| self.poll_all(cx))).await;
    }

    /// Waits for every answer, for at most `within`, parking the thread
    /// between replies.
    fn wait_blocking(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        while self.poll_all(&mut cx).is_pending() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // A reply that lands between the poll and the park leaves an
            // unpark token, so the park returns at once.
            std::thread::park_timeout(deadline - now);
        }
    }
}

/// Wakes a thread parked in [`Gather::wait_blocking`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(test)]
#[path = "ops_tests.rs"]
pub(crate) mod tests;
