//! The control plane: health, readiness, Prometheus metrics and the
//! operations API over HTTP, on their own threads, off the RTMP cores' hot
//! path. It reaches the cores only through the mesh: a snapshot request,
//! a kick, a reload or a drain is one message per core.
//!
//! `http.listen` serves `/metrics`, `/healthz` and `/readyz` (and the API
//! unless `http.api_listen` is set, in which case the API is served only
//! there, e.g. on loopback).

mod api;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use tracing::{info, warn};

use crate::config::Config;
use crate::context::{ControlMsg, KickTarget, Snapshot};
use crate::xcore::Mesh;

pub use api::{metrics_text, stats_document, streams_document};

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

/// Which endpoints a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Serves {
    /// /metrics, /healthz, /readyz and the API.
    All,
    /// /metrics, /healthz, /readyz.
    Probes,
    /// The API (and /healthz).
    Api,
}

/// Starts the listeners the configuration asks for.
pub fn start(config: &Config, ops: Arc<Ops>) -> std::io::Result<()> {
    let api = config.http.api_listen.trim();
    let main = config.http.listen.trim();
    if !main.is_empty() {
        let serves = if api.is_empty() {
            Serves::All
        } else {
            Serves::Probes
        };
        spawn(main, serves, ops.clone())?;
    }
    if !api.is_empty() {
        spawn(api, Serves::Api, ops)?;
    }
    Ok(())
}

fn spawn(addr: &str, serves: Serves, ops: Arc<Ops>) -> std::io::Result<()> {
    let server = tiny_http::Server::http(addr).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("http listener {addr}: {e}"),
        )
    })?;
    info!(%addr, ?serves, "http control listener");
    std::thread::Builder::new()
        .name("cascade-http".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let reply = route(req.method(), req.url(), serves, &ops);
                let header = tiny_http::Header::from_bytes("Content-Type", reply.content_type)
                    .expect("static header");
                let resp = tiny_http::Response::from_string(reply.body)
                    .with_status_code(reply.status)
                    .with_header(header);
                if let Err(e) = req.respond(resp) {
                    warn!(error = %e, "http respond failed");
                }
            }
        })?;
    Ok(())
}

/// A response before it is written.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
}

impl Reply {
    fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: format!("{body}\n"),
            content_type: "text/plain; charset=utf-8",
        }
    }
    fn json(status: u16, v: serde_json::Value) -> Reply {
        Reply {
            status,
            body: v.to_string(),
            content_type: "application/json",
        }
    }
}

fn route(method: &tiny_http::Method, url: &str, serves: Serves, ops: &Ops) -> Reply {
    use tiny_http::Method::{Delete, Get};
    let path = url.split('?').next().unwrap_or(url);
    let probes = serves != Serves::Api;
    let api_on = serves != Serves::Probes;
    match (method, path) {
        (Get, "/healthz") => Reply::text(200, "ok"),
        (Get, "/readyz") if probes => {
            if ops.is_ready() {
                Reply::text(200, "ready")
            } else if ops.is_draining() {
                Reply::text(503, "draining")
            } else {
                Reply::text(503, "starting")
            }
        }
        (Get, "/metrics") if probes => Reply {
            status: 200,
            body: metrics_text(ops),
            content_type: "text/plain; version=0.0.4; charset=utf-8",
        },
        _ if api_on && path.starts_with("/api/v1/") => api::route(method, path, ops),
        (Get | Delete, _) => Reply::text(404, "not found"),
        _ => Reply::text(405, "method not allowed"),
    }
}
