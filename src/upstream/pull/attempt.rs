//! One connection of an edge pull to one origin, driven by the shared
//! session loop (`transport::drive`): dial, connect, play, then feed the
//! origin's media into the hub until the origin fails, ends the stream, or
//! nobody watches any more.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, warn};

use super::{broken_or, Outcome, Pull, Stage, FOUR_CC};
use crate::auth::redact;
use crate::config::OriginUrl;
use crate::metrics::PullFailure;
use crate::protocol::session::{ClientConfig, ClientEvent, ClientSession, PlayFlow, SessionError};
use crate::transport::drive::{drive, Handler};
use crate::transport::WriteHalf;
use crate::upstream::dial::{self, DialError, READ_MIN, TICK};

/// The state of one attempt, as the session loop's handler.
struct Attempt<'a> {
    pull: &'a mut Pull,
    session: ClientSession,
    flow: PlayFlow,
    wr: WriteHalf,
    origin: OriginUrl,
    stage: Stage,
    idx: usize,
    /// When the dial started, and the attempt's deadline before media.
    dial: Instant,
    until: Instant,
    last_byte: Instant,
    next_check: Instant,
    idle_since: Option<Instant>,
    /// No byte from a live origin for this long is a loss.
    stall: Duration,
    /// An event ended the attempt: the goodbye gets one tick to go out.
    ending: bool,
}

impl Pull {
    /// One connection to origin `idx`, until it fails, ends, or we stop.
    pub(super) async fn attempt(&mut self, idx: usize, budget: Duration) -> Outcome {
        let Some(origin) = self.origins.get(idx).cloned() else {
            return Outcome::Failed(PullFailure::Connect);
        };
        let dial = Instant::now();
        let limit = self.connect_timeout.min(budget);
        let mut buf = BytesMut::with_capacity(READ_MIN);
        let (mut rd, wr) = match dial::connect(&origin, limit, self.tls.as_ref(), &mut buf).await {
            Ok(d) => (d.rd, d.wr),
            Err(e) => {
                match &e {
                    DialError::Tls(_) => {
                        warn!(origin = %redact::url(&origin.url), error = %e, "origin TLS failed")
                    }
                    _ => {
                        debug!(origin = %redact::url(&origin.url), error = %e, "origin dial failed")
                    }
                }
                return Outcome::Failed(match e {
                    DialError::Handshake(_) | DialError::HandshakeTimeout => PullFailure::Handshake,
                    DialError::Tls(_) => PullFailure::Tls,
                    _ => PullFailure::Connect,
                });
            }
        };
        // The whole path of an origin URL is its app (`rtmp://o/app/inst`).
        let app = origin.path().unwrap_or_else(|| self.target.app.clone());
        let mut config = ClientConfig::new(&app, &origin.tc_url(&app));
        let live = self.worker.live_session_config();
        config.chunk_limits = live.chunk_limits;
        config.amf_limits = live.amf_limits;
        config.four_cc_list = FOUR_CC.iter().map(|s| s.to_string()).collect();
        let mut session = ClientSession::new(config);
        session.received(buf.len());
        let flow = PlayFlow::start(&mut session, &self.target.name);
        let now = Instant::now();
        let stall = self.start_timeout.max(Duration::from_secs(2));
        let mut attempt = Attempt {
            pull: self,
            session,
            flow,
            wr,
            origin,
            stage: Stage::Connecting,
            idx,
            dial,
            until: dial + budget,
            last_byte: now,
            next_check: now,
            idle_since: None,
            stall,
            ending: false,
        };
        drive(&mut attempt, &mut rd, buf).await
    }
}

impl Handler for Attempt<'_> {
    type Session = ClientSession;
    type Outcome = Outcome;

    fn session(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    async fn on_event(&mut self, ev: ClientEvent) -> ControlFlow<Outcome> {
        let now = Instant::now();
        let step = self.flow.on_event(&mut self.session, ev);
        let (stage, idx, dial) = (&mut self.stage, self.idx, self.dial);
        match self.pull.on_step(step, stage, idx, dial, now) {
            Some(out) => {
                self.ending = true;
                ControlFlow::Break(out)
            }
            None => ControlFlow::Continue(()),
        }
    }

    async fn send(&mut self, bytes: Bytes) -> ControlFlow<Outcome> {
        let limit = if self.ending {
            TICK
        } else {
            self.pull.connect_timeout
        };
        match monoio::time::timeout(limit, self.wr.write_all(bytes)).await {
            Ok(Ok(())) => ControlFlow::Continue(()),
            _ => ControlFlow::Break(broken_or(self.stage, PullFailure::Connect)),
        }
    }

    fn bad_input(&mut self, e: SessionError) -> Outcome {
        warn!(origin = %redact::url(&self.origin.url), error = %e, "origin sent bad data");
        broken_or(self.stage, PullFailure::Protocol)
    }

    fn idle(&mut self, now: Instant) -> ControlFlow<Outcome, Option<Instant>> {
        if self.stage != Stage::Live {
            if now >= self.until {
                return ControlFlow::Break(Outcome::Failed(PullFailure::Timeout));
            }
            return ControlFlow::Continue(Some(now + TICK));
        }
        // One wake-up per other core for everything this read produced.
        self.pull.worker.hub.borrow_mut().flush_wakes();
        if now >= self.next_check {
            self.next_check = now + TICK;
            if now.duration_since(self.last_byte) >= self.stall {
                return ControlFlow::Break(Outcome::Lost);
            }
            match self
                .pull
                .worker
                .hub
                .borrow()
                .audience(&self.pull.target.key)
            {
                None => return ControlFlow::Break(Outcome::Done),
                Some(0)
                    if !self.pull.worker.hub.borrow().hls_watched(
                        &self.pull.target.key,
                        now,
                        self.pull.linger,
                    ) =>
                {
                    let since = *self.idle_since.get_or_insert(now);
                    if now.duration_since(since) >= self.pull.linger {
                        info!("no players for the linger time; closing the pull");
                        return ControlFlow::Break(Outcome::Done);
                    }
                }
                Some(_) => self.idle_since = None,
            }
        }
        ControlFlow::Continue(Some(now + TICK))
    }

    fn reserve(&self, buf: &mut BytesMut) {
        dial::reserve(buf);
    }

    fn on_read(&mut self, n: usize) {
        self.pull.worker.stats.add_in(n as u64);
        self.last_byte = Instant::now();
    }

    fn closed(&mut self, error: Option<std::io::Error>) -> Outcome {
        match error {
            None => broken_or(self.stage, PullFailure::Rejected),
            Some(e) => {
                debug!(origin = %redact::url(&self.origin.url), error = %e, "origin read failed");
                broken_or(self.stage, PullFailure::Connect)
            }
        }
    }
}
