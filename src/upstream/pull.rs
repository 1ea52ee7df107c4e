//! One edge pull: an RTMP client session to an origin (the sans-IO
//! handshake and client session, dialled out with monoio, over TLS for
//! `rtmps://` origins) whose media goes into the hub as the stream's
//! publisher on this core.
//!
//! Life: dial origins in the selected order until one delivers media
//! within the start timeout; publish; feed media. If the origin is lost or
//! ends the stream, unpublish (players wait under the publisher grace) and
//! retry with backoff within the grace, failing over to the next origin
//! after a loss. Close `edge.linger_ms` after the last player left.

use std::rc::Rc;
use std::time::{Duration, Instant};

use std::sync::Arc;

use tracing::{debug, info, warn};

use super::dial;
use super::select::{self, Mode};
use crate::auth::redact;
use crate::config::{EdgeSection, OriginUrl};
use crate::context::Worker;
use crate::hub::PullState;
use crate::metrics::PullFailure;
use crate::protocol::command::StreamPath;
use crate::protocol::session::PlayStep;

mod attempt;
/// Enhanced RTMP codecs we ask origins for; they pass through untouched.
const FOUR_CC: &[&str] = &[
    "avc1", "hvc1", "av01", "vp09", "vp08", "mp4a", "Opus", "fLaC", "ac-3", "ec-3", ".mp3",
];

/// What is pulled: the node's key and what to ask the origin for.
#[derive(Debug, Clone)]
pub struct Target {
    /// The routing key `app/name` on this node.
    pub key: String,
    /// The player's app, used for origins configured without one.
    pub app: String,
    /// The play name sent to the origin (with the player's query when
    /// `edge.pass_query` is on).
    pub name: String,
}

impl Target {
    pub fn new(path: &StreamPath, pass_query: bool) -> Target {
        let name = if pass_query && !path.query.is_empty() {
            format!("{}?{}", path.name, path.query)
        } else {
            path.name.clone()
        };
        Target {
            key: path.key(),
            app: path.app.clone(),
            name,
        }
    }
}

/// How one attempt on one origin ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Before any media flowed.
    Failed(PullFailure),
    /// The origin ended the stream (UnpublishNotify, Play.Stop, StreamEOF).
    Ended,
    /// The connection broke or stalled mid-stream.
    Lost,
    /// Stop pulling: nobody watched for the linger time, or the stream is
    /// no longer ours (kicked, or a local publisher holds the name).
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Connecting and asking to play: no media yet.
    Connecting,
    /// Media flowed: the pull publishes the stream here.
    Live,
}

struct Pull {
    worker: Rc<Worker>,
    target: Target,
    id: u64,
    origins: Vec<OriginUrl>,
    urls: Vec<String>,
    mode: Mode,
    /// Failover stickiness of this pull's origin list.
    sticky: select::Sticky,
    connect_timeout: Duration,
    start_timeout: Duration,
    backoff: Duration,
    backoff_max: Duration,
    linger: Duration,
    /// Media published in the hub right now.
    published: bool,
    /// The origin that last delivered media.
    last_origin: Option<usize>,
    /// Client TLS settings, when an origin is `rtmps://` (None also when
    /// `edge.tls_ca_file` could not be read: those attempts fail).
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Runs the pull of `target` registered in the directory as `id` until it
/// gives up or lingers out, then forgets it.
pub async fn run(worker: Rc<Worker>, target: Target, id: u64) {
    let stats = worker.stats.clone();
    stats.pulls_active.set(stats.pulls_active.get() + 1);
    stats.pull_starts.set(stats.pull_starts.get() + 1);
    let edge: EdgeSection = worker.config.edge.for_key(&target.key);
    let edge = &edge;
    let origins: Vec<OriginUrl> = edge
        .origins
        .iter()
        .filter_map(|o| OriginUrl::parse(o).ok())
        .collect();
    let tls = dial::tls_for(&origins, edge);
    let urls: Vec<String> = origins.iter().map(|o| o.url.clone()).collect();
    let mut pull = Pull {
        tls,
        sticky: select::Sticky::of(&urls),
        urls,
        origins,
        mode: Mode::parse(&edge.mode),
        connect_timeout: Duration::from_millis(edge.connect_timeout_ms),
        start_timeout: Duration::from_millis(edge.start_timeout_ms),
        backoff: Duration::from_millis(edge.retry_backoff_ms.max(1)),
        backoff_max: Duration::from_millis(edge.retry_backoff_max_ms.max(1)),
        linger: Duration::from_millis(edge.linger_ms),
        published: false,
        last_origin: None,
        worker: worker.clone(),
        target,
        id,
    };
    let span = tracing::info_span!("pull", worker = worker.id, stream = %pull.target.key);
    let lingered = tracing::Instrument::instrument(pull.main(), span).await;
    let now = Instant::now();
    if lingered {
        worker
            .hub
            .borrow_mut()
            .end_now(&pull.target.key, pull.id, now);
    } else {
        pull.unpublish();
    }
    let directory = worker.hub.borrow().directory().clone();
    directory.remove_pull(&pull.target.key, pull.id);
    stats
        .pulls_active
        .set(stats.pulls_active.get().saturating_sub(1));
    info!(stream = %pull.target.key, "edge pull closed");
}

impl Pull {
    /// Rounds over the origins until one delivers, with backoff between
    /// rounds. Returns true if it ends because nobody watches (end the
    /// stream now), false if it gave up (players get the end after the grace).
    async fn main(&mut self) -> bool {
        let mut deadline = Instant::now() + self.start_timeout;
        let mut backoff = self.backoff;
        let mut after_loss = false;
        // Media flowed once: the stream exists upstream, its publisher
        // may be moving (an encoder reconnecting to another origin), so
        // "not found everywhere" is no reason to leave the players before
        // the grace is over.
        let mut was_live = false;
        'rounds: loop {
            let mut order = select::order(self.mode, &self.urls, &self.target.key, &self.sticky);
            if let (true, Some(last)) = (after_loss, self.last_origin) {
                // Lost mid-stream: the others first, the lost one last.
                if order.len() > 1 {
                    order.retain(|i| *i != last);
                    order.push(last);
                }
            }
            let n = order.len();
            // Give up early when no origin can have the stream: each one
            // said not found or is down, and at least one said not found.
            let (mut definitive, mut not_found) = (true, false);
            for (i, idx) in order.into_iter().enumerate() {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                // Share what is left of the deadline among the origins left.
                let budget = (deadline - now) / (n - i) as u32;
                let outcome = self.attempt(idx, budget).await;
                debug!(origin = %redact::url(&self.urls[idx]), ?outcome, "pull attempt over");
                match outcome {
                    Outcome::Failed(reason) => {
                        self.worker.stats.pull_failures.inc(reason);
                        not_found |= reason == PullFailure::NotFound;
                        definitive &=
                            matches!(reason, PullFailure::NotFound | PullFailure::Connect);
                    }
                    Outcome::Done => return true,
                    Outcome::Ended | Outcome::Lost => {
                        // Media flowed: players now wait under the grace
                        // while we reconnect.
                        if outcome == Outcome::Lost {
                            self.worker.stats.pull_failures.inc(PullFailure::Lost);
                            warn!(origin = %redact::url(&self.urls[idx]), "origin lost; reconnecting");
                        } else {
                            info!(origin = %redact::url(&self.urls[idx]), "origin ended the stream");
                        }
                        self.unpublish();
                        let grace = self.worker.hub.borrow().config().publisher_grace;
                        if grace.is_zero() {
                            return false;
                        }
                        deadline = Instant::now() + grace;
                        after_loss = outcome == Outcome::Lost;
                        was_live = true;
                        backoff = self.backoff;
                        continue 'rounds;
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline || (definitive && not_found && !was_live) {
                info!("no origin delivers the stream; giving up");
                return false;
            }
            monoio::time::sleep(backoff.min(deadline - now)).await;
            backoff = (backoff * 2).min(self.backoff_max);
        }
    }

    /// Applies one step of the origin play; `Some` ends the attempt.
    fn on_step(
        &mut self,
        step: PlayStep,
        stage: &mut Stage,
        idx: usize,
        dial: Instant,
        now: Instant,
    ) -> Option<Outcome> {
        let live = *stage == Stage::Live;
        match step {
            PlayStep::Pending | PlayStep::Requested { .. } => {}
            PlayStep::Started { .. } => {
                if !live {
                    self.worker.stats.origin_connect.record(dial.elapsed());
                }
            }
            PlayStep::ConnectRefused { code, description } => {
                let description = redact::name(&description);
                warn!(%code, %description, "origin refused connect");
                return Some(Outcome::Failed(PullFailure::Rejected));
            }
            PlayStep::Refused { code, description } | PlayStep::Ended { code, description } => {
                let description = redact::name(&description);
                debug!(%code, %description, "origin status");
                if code == "NetConnection.Connect.ReconnectRequest" {
                    return Some(broken_or(*stage, PullFailure::Rejected));
                }
                return Some(if live {
                    Outcome::Ended
                } else {
                    Outcome::Failed(PullFailure::NotFound)
                });
            }
            // An edge takes the origin's StreamEOF as the end: players
            // wait under the grace while the pull reconnects.
            PlayStep::Eof { .. } if live => return Some(Outcome::Ended),
            PlayStep::Eof { .. } => {}
            PlayStep::Media {
                kind,
                timestamp,
                payload,
                ..
            } => {
                if !live {
                    if let Some(out) = self.go_live(idx, now) {
                        return Some(out);
                    }
                    *stage = Stage::Live;
                } else if !self
                    .worker
                    .hub
                    .borrow()
                    .is_publisher(&self.target.key, self.id)
                {
                    // A local publisher took the stream over: it is the
                    // source now, and this copy must not be mixed in.
                    info!("a local publisher took the stream over; closing the pull");
                    return Some(Outcome::Done);
                }
                self.worker.hub.borrow_mut().ingest(
                    &self.target.key,
                    kind,
                    timestamp,
                    payload,
                    now,
                );
            }
        }
        None
    }

    /// First media from origin `idx`: claim the stream as its publisher.
    fn go_live(&mut self, idx: usize, now: Instant) -> Option<Outcome> {
        let key = &self.target.key;
        if let Err(e) = self.worker.hub.borrow_mut().publish(key, self.id, now) {
            warn!(error = %e, "cannot publish the pulled stream; stopping");
            return Some(Outcome::Done);
        }
        self.published = true;
        if self.last_origin.is_some_and(|l| l != idx) {
            let f = &self.worker.stats.failovers;
            f.set(f.get() + 1);
        }
        self.last_origin = Some(idx);
        if self.mode == Mode::Failover {
            self.sticky.mark_healthy(idx);
        }
        let directory = self.worker.hub.borrow().directory().clone();
        directory.set_pull_state(key, self.id, PullState::Live);
        info!(origin = %redact::url(&self.urls[idx]), "edge pull live");
        None
    }

    /// Gives the stream up as publisher; players wait under the grace.
    fn unpublish(&mut self) {
        if !std::mem::take(&mut self.published) {
            return;
        }
        let now = Instant::now();
        let key = &self.target.key;
        Worker::unpublish(&self.worker, key, self.id, now);
        let directory = self.worker.hub.borrow().directory().clone();
        directory.set_pull_state(key, self.id, PullState::Retrying);
    }
}

/// A connection problem: a loss once live, else a failed attempt.
fn broken_or(stage: Stage, reason: PullFailure) -> Outcome {
    if stage == Stage::Live {
        Outcome::Lost
    } else {
        Outcome::Failed(reason)
    }
}
