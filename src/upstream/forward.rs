//! Outbound publishes: a stream published to this node is sent on to an
//! edge origin (`edge.forward_publish`, origins chosen like a pull's) and to
//! every matching `[[push]]` target.
//!
//! Each target is one task on the stream's owning core, started when the
//! publish is accepted. To the hub it is a subscriber like a player (its own
//! outbox fed the same serialized frames, GOP start first); to the target
//! it is a publisher ([`super::outbound`]). It reconnects with backoff for
//! as long as the stream is owned here, and ends once the stream ends
//! (after the publisher grace) or moves to another core. Targets are
//! independent: a dead one costs the others, the publisher and the players
//! nothing but its own task.

use std::rc::Rc;
use std::time::{Duration, Instant};

use tracing::{info, warn, Instrument};

use super::outbound::{self, Outcome};
use super::select::{self, Mode};
use crate::auth::redact;
use crate::config::OriginUrl;
use crate::context::Worker;
use crate::metrics::{OutboundFailure, OutboundKind, OutboundReason};
use crate::protocol::command::StreamPath;

/// One outbound publish of one stream.
#[derive(Debug, Clone)]
pub struct Job {
    pub kind: OutboundKind,
    /// The routing key `app/name` on this node.
    pub key: String,
    /// The local publisher's app and name (name with its query when
    /// `pass_query` is on for a forward).
    pub app: String,
    pub name: String,
    /// Forward: the app's origins; push: the one target.
    pub targets: Vec<OriginUrl>,
    pub mode: Mode,
    /// Failover stickiness of `targets` as a list.
    pub sticky: select::Sticky,
    pub connect_timeout: Duration,
    pub start_timeout: Duration,
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// Client TLS settings when a target is `rtmps://`.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Job {
    /// The app to `connect` to on `target`: an origin's whole path (as for
    /// pulls), a push URL's first segment, else the publisher's app.
    pub fn app_for(&self, target: &OriginUrl) -> String {
        let app = match self.kind {
            OutboundKind::Forward => target.path(),
            OutboundKind::Push => target.app.clone(),
        };
        app.unwrap_or_else(|| self.app.clone())
    }

    /// The name to `publish` on `target`: a push URL's own name if it has
    /// one, else the local stream's.
    pub fn name_for(&self, target: &OriginUrl) -> String {
        match (self.kind, &target.name) {
            (OutboundKind::Push, Some(n)) => n.clone(),
            _ => self.name.clone(),
        }
    }

    fn label(&self) -> &'static str {
        match self.kind {
            OutboundKind::Forward => "forward",
            OutboundKind::Push => "push",
        }
    }
}

/// The outbound publishes a publish of `path` on this node starts.
pub fn jobs_for(worker: &Worker, path: &StreamPath) -> Vec<Job> {
    let config = &worker.config;
    if config.push.is_empty() && !config.edge.forward_publish && config.edge.app.is_empty() {
        return Vec::new();
    }
    let key = path.key();
    let edge = config.edge.for_key(&key);
    let job = |kind, name: String, targets: Vec<OriginUrl>, mode| Job {
        kind,
        sticky: select::Sticky::of(&targets.iter().map(|t| t.url.clone()).collect::<Vec<_>>()),
        key: key.clone(),
        app: path.app.clone(),
        name,
        tls: super::dial::tls_for(&targets, &edge),
        targets,
        mode,
        connect_timeout: Duration::from_millis(edge.connect_timeout_ms),
        start_timeout: Duration::from_millis(edge.start_timeout_ms),
        backoff: Duration::from_millis(edge.retry_backoff_ms.max(1)),
        backoff_max: Duration::from_millis(edge.retry_backoff_max_ms.max(1)),
    };
    let mut jobs = Vec::new();
    if edge.forward_publish {
        let origins: Vec<OriginUrl> = edge
            .origins
            .iter()
            .filter_map(|o| OriginUrl::parse(o).ok())
            .collect();
        if !origins.is_empty() {
            let name = if edge.pass_query && !path.query.is_empty() {
                format!("{}?{}", path.name, path.query)
            } else {
                path.name.clone()
            };
            let mode = Mode::parse(&edge.mode);
            jobs.push(job(OutboundKind::Forward, name, origins, mode));
        }
    }
    for entry in &config.push {
        if !entry.covers(&key) {
            continue;
        }
        for url in &entry.urls {
            if let Ok(target) = OriginUrl::parse(url) {
                let name = path.name.clone();
                jobs.push(job(OutboundKind::Push, name, vec![target], Mode::Failover));
            }
        }
    }
    jobs
}

/// A publish of `path` was accepted on this core: start its forward and
/// pushes, unless the same ones already run here (a publisher that came
/// back within the grace keeps the running ones).
pub fn on_publish(worker: &Rc<Worker>, path: &StreamPath) {
    for job in jobs_for(worker, path) {
        let urls: Vec<&str> = job.targets.iter().map(|t| t.url.as_str()).collect();
        let tag = format!("{}|{}|{}", job.label(), job.key, urls.join(","));
        if !worker.outbound.borrow_mut().insert(tag.clone()) {
            continue;
        }
        // Not a child of the publisher's span: it outlives the connection.
        let span = tracing::info_span!(
            parent: None,
            "outbound",
            worker = worker.id,
            kind = job.label(),
            stream = %job.key
        );
        monoio::spawn(run(worker.clone(), job, tag).instrument(span));
    }
}

/// Whether `job`'s stream is still owned by this core (published, or
/// waiting for its publisher within the grace) and, for a forward, not fed
/// by an edge pull: a pulled copy came from upstream, and sending it back
/// up would close a loop (a forward feeding the origin its own pull reads
/// from, the copies circling as fast as the links carry them).
pub fn alive(worker: &Worker, job: &Job) -> bool {
    let hub = worker.hub.borrow();
    if hub.audience(&job.key).is_none() {
        return false;
    }
    if job.kind != OutboundKind::Forward {
        return true;
    }
    match hub.directory().pull(&job.key) {
        Some(pull) => !hub.is_publisher(&job.key, pull.id),
        None => true,
    }
}

async fn run(worker: Rc<Worker>, job: Job, tag: String) {
    let stats = worker.stats.clone();
    stats.outbound_active.inc(job.kind);
    stats.outbound_starts.inc(job.kind);
    let n = job.targets.len().max(1);
    let urls: Vec<String> = job.targets.iter().map(|t| t.url.clone()).collect();
    let mut backoff = job.backoff;
    let mut fails_in_row = 0usize;
    let mut attempts = 0u64;
    while alive(&worker, &job) {
        // Forward: the origins in pull order, the next one after a failure.
        let order = select::order(job.mode, &urls, &job.key, &job.sticky);
        let Some(&idx) = order.get(fails_in_row % n) else {
            break;
        };
        let Some(target) = job.targets.get(idx) else {
            break;
        };
        if attempts > 0 {
            stats.outbound_reconnects.inc(job.kind);
        }
        attempts += 1;
        match outbound::attempt(&worker, &job, idx).await {
            Outcome::Ended => break,
            Outcome::Failed { reason, live } => {
                stats
                    .outbound_failures
                    .inc(OutboundFailure::of(job.kind, reason));
                warn!(target = %redact::url(&target.url), ?reason, "outbound publish failed; retrying");
                if job.mode == Mode::Hash && reason == OutboundReason::Refused && !live {
                    // The target is up and has the name from another
                    // publisher: in a fleet, the node this stream's
                    // publisher just left, about to let go. Every node
                    // hashes the stream to this target, so knock again
                    // instead of splitting the stream across two.
                    sleep_while_alive(&worker, &job, backoff).await;
                    backoff = (backoff * 2).min(job.backoff_max);
                    continue;
                }
                if live {
                    // It worked until now: start the backoff over.
                    backoff = job.backoff;
                    fails_in_row = 0;
                }
                fails_in_row += 1;
                // Back off after each round over the targets.
                if fails_in_row % n == 0 || live {
                    sleep_while_alive(&worker, &job, backoff).await;
                    backoff = (backoff * 2).min(job.backoff_max);
                }
            }
        }
    }
    worker.outbound.borrow_mut().remove(&tag);
    stats.outbound_active.dec(job.kind);
    info!("outbound publish closed");
}

/// Sleeps `d`, or less if the stream ends meanwhile.
async fn sleep_while_alive(worker: &Worker, job: &Job, d: Duration) {
    let until = Instant::now() + d;
    loop {
        let now = Instant::now();
        if now >= until || !alive(worker, job) {
            return;
        }
        monoio::time::sleep((until - now).min(super::dial::TICK)).await;
    }
}
