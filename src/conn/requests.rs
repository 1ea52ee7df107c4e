//! Publish and play requests of a connection: the `[auth]` decision
//! (local checks, then the HTTP hook where the app uses one), the wait for
//! an edge pull, and the hub calls that start publishing or playing.

use std::time::Instant;

use tracing::{debug, info, warn};

use super::{limits, Conn, Deferred, Role};
use crate::auth::{Action, Denial};
use crate::context::admission;
use crate::egress::CloseReason;
use crate::hub::HubError;
use crate::metrics::{ConnRole, LimitKind};
use crate::protocol::command::StreamPath;
use crate::protocol::session::{PlayRejection, PublishRejection};

impl Conn {
    /// On an edge, a play for a stream this node does not have waits for a pull.
    pub(super) fn needs_pull(&self, path: &StreamPath) -> bool {
        crate::upstream::enabled(&self.worker.config, &path.key())
            && matches!(self.role, Role::None)
            && !self.worker.hub.borrow().contains(&path.key())
    }

    /// Decides a deferred publish or play: local checks, then the hook,
    /// then (a play on an edge) the origin pull. A refused play pulls nothing.
    pub(super) async fn resolve(&mut self, deferred: Deferred) {
        match deferred {
            Deferred::Publish {
                stream_id,
                path,
                kind,
            } => {
                let verdict = self.authorize_with_hook(Action::Publish, &path).await;
                self.on_publish(stream_id, path, &kind, Instant::now(), verdict);
            }
            Deferred::Play {
                stream_id,
                path,
                reset,
            } => {
                let verdict = self.authorize_with_hook(Action::Play, &path).await;
                if verdict.is_ok() && self.needs_pull(&path) {
                    let worker = self.worker.clone();
                    crate::upstream::await_stream(&worker, &path).await;
                }
                self.on_play(stream_id, path, reset, Instant::now(), verdict);
            }
        }
    }

    /// A stream this node pulls is being published here: the publisher
    /// moved to this node (a drain, a dead node upstream), or a forward
    /// arrived while players had already made the node pull the stream,
    /// often from the very copy this publish replaces. The local publisher
    /// is the source, so the pull gives the stream up to it the way a
    /// publisher gives it up in its grace, and the players stay on. Only
    /// a pull running on this core can be stopped from here; one on
    /// another core keeps the name and the publish is refused as before.
    fn preempt_pull(&self, key: &str, now: Instant) {
        let directory = self.worker.hub.borrow().directory().clone();
        let Some(pull) = directory.pull(key) else {
            return;
        };
        if pull.core != self.worker.id || !self.worker.hub.borrow().is_publisher(key, pull.id) {
            return;
        }
        info!(stream = %key, "a local publish takes the stream over from its edge pull");
        crate::context::Worker::unpublish(&self.worker, key, pull.id, now);
    }

    pub(super) fn on_publish(
        &mut self,
        stream_id: u32,
        path: StreamPath,
        kind: &str,
        now: Instant,
        verdict: Result<(), Denial>,
    ) {
        if !matches!(self.role, Role::None) {
            self.session.reject_publish(
                stream_id,
                PublishRejection::Rejected,
                "connection already has a stream",
            );
            self.refused();
            return;
        }
        let key = path.key();
        if let Err(d) = verdict {
            self.session.reject_publish(
                stream_id,
                PublishRejection::Denied,
                &format!("publish to {key} denied: {d}"),
            );
            self.refused();
            return;
        }
        self.preempt_pull(&key, now);
        let result = self.worker.hub.borrow_mut().publish(&key, self.id, now);
        match result {
            Ok(()) => {
                info!(stream = %key, %kind, "publish");
                fault_injection(&path.name);
                self.worker
                    .set_client_role(self.id, ConnRole::Publisher, Some(&key));
                self.session.accept_publish(stream_id);
                // The no-media deadline counts from the start of the publish.
                self.last_media = now;
                self.role = Role::Publisher { key, stream_id };
                crate::upstream::forward::on_publish(&self.worker, &path);
            }
            Err(HubError::InUse(_)) => {
                warn!(stream = %key, "publish rejected: name in use");
                self.session.reject_publish(
                    stream_id,
                    PublishRejection::BadName,
                    &format!("{key} is already being published"),
                );
                self.refused();
            }
            Err(HubError::TooManyStreams(max)) => {
                // The node is full: answer, then close this connection (an
                // encoder retries elsewhere or later; holding it open helps no one).
                limits::report_hit(
                    &self.worker,
                    LimitKind::MaxStreams,
                    max as u64,
                    self.peer,
                    &format!("publish of {key} refused: the node carries {max} streams"),
                );
                self.session.reject_publish(
                    stream_id,
                    PublishRejection::Rejected,
                    &format!("stream limit of this node reached ({max})"),
                );
                self.refused();
                self.flush();
                self.outbox.close(CloseReason::Finish);
            }
            Err(e) => {
                warn!(stream = %key, error = %e, "publish rejected");
                self.session
                    .reject_publish(stream_id, PublishRejection::Rejected, &e.to_string());
            }
        }
    }

    pub(super) fn on_play(
        &mut self,
        stream_id: u32,
        path: StreamPath,
        reset: bool,
        now: Instant,
        verdict: Result<(), Denial>,
    ) {
        let key = path.key();
        if let Err(d) = verdict {
            self.session.reject_play(
                stream_id,
                PlayRejection::Denied,
                &format!("play of {key} denied: {d}"),
            );
            self.refused();
            return;
        }
        if !matches!(self.role, Role::None) || !self.worker.hub.borrow().contains(&key) {
            info!(stream = %key, "play: stream not found");
            self.session.reject_play(
                stream_id,
                PlayRejection::StreamNotFound,
                &format!("{key} not found"),
            );
            self.refused();
            return;
        }
        // The play replies must be queued before the cached start frames.
        self.session.accept_play(stream_id, reset, &path.name);
        self.flush();
        self.outbox
            .start_play(stream_id, self.session.out_chunk_size(), now);
        match self
            .worker
            .hub
            .borrow_mut()
            .subscribe(&key, self.id, self.player(&key))
        {
            Ok(()) => {
                info!(stream = %key, "play");
                self.worker
                    .set_client_role(self.id, ConnRole::Player, Some(&key));
                self.role = Role::Player {
                    key,
                    paused_since: None,
                };
            }
            Err(e) => debug!(error = %e, "play: subscribe failed"),
        }
    }

    /// Counts a refused publish or play; past
    /// `limits.max_refusals_per_connection` the connection is closed (a
    /// client retrying a refused key at line rate costs one warning line,
    /// not one per retry).
    fn refused(&mut self) {
        self.refusals += 1;
        let max = self.worker.max_refusals();
        if self.refusals >= max && self.outbox.closed().is_none() {
            limits::report_hit(
                &self.worker,
                LimitKind::MaxRefusals,
                u64::from(max),
                self.peer,
                &format!(
                    "{} publishes or plays refused on one connection",
                    self.refusals
                ),
            );
            self.flush();
            self.outbox.close(CloseReason::Finish);
        }
    }

    /// The `[auth]` decision for one publish or play, without the hook.
    pub(super) fn authorize(&self, action: Action, path: &StreamPath) -> Result<(), Denial> {
        admission::authorize(&self.worker, self.peer, action, path)
    }

    /// [`Conn::authorize`], then the auth hook where the app uses one.
    async fn authorize_with_hook(&self, action: Action, path: &StreamPath) -> Result<(), Denial> {
        admission::authorize_with_hook(&self.worker, self.peer, &self.tc_url, action, path).await
    }
}

/// Test builds only: `CASCADE_TEST_PANIC_ON_PUBLISH=NAME` panics the worker
/// that accepts a publish of NAME, so a test can watch the panic policy
/// from outside. Release builds compile this to nothing.
fn fault_injection(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("CASCADE_TEST_PANIC_ON_PUBLISH").is_ok_and(|n| n == name) {
        panic!("injected fault: publish of {name}");
    }
    let _ = name;
}
