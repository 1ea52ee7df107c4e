//! One outbound publish connection: dial a target, walk the sans-IO
//! [`PublishFlow`] to NetStream.Publish.Start, then subscribe an outbox to
//! the stream and let a writer task drain it to the socket while this task
//! reads the target's replies (acknowledgements, pings, status).
//!
//! The outbox is set up with the message stream id the target gave in
//! createStream and the chunk size we announced to it (the hub's), so the
//! shared serialized frames go out as they are when the id is 1 (nginx-rtmp,
//! SRS and cascade all answer 1) and are re-serialized once for this target
//! otherwise; metadata is re-framed as `@setDataFrame`.

use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::ops::ControlFlow;

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, warn};

use super::dial::{self, DialError, Dialed, READ_MIN, TICK};
use super::forward::{alive, Job};
use super::select::Mode;
use crate::auth::redact;
use crate::config::OriginUrl;
use crate::context::Worker;
use crate::egress::writer::{self, shutdown};
use crate::egress::{CloseReason, Outbox, UpstreamFeed};
use crate::metrics::{CoreStats, OutboundKind, OutboundReason};
use crate::protocol::session::{
    ClientConfig, ClientEvent, ClientSession, PublishFlow, PublishStep, SessionError,
};
use crate::transport::drive::{drive, Handler};
use crate::transport::WriteHalf;

/// How long a closing publish may take to flush its last messages.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The stream ended (or left this core): stop for good.
    Ended,
    /// Retry later; `live` when media had been flowing.
    Failed { reason: OutboundReason, live: bool },
}

fn failed(reason: OutboundReason) -> Outcome {
    Outcome::Failed {
        reason,
        live: false,
    }
}

/// Publishes `job`'s stream to its target `idx` until the stream ends or
/// the connection fails.
pub async fn attempt(worker: &Rc<Worker>, job: &Job, idx: usize) -> Outcome {
    let Some(target) = job.targets.get(idx) else {
        return failed(OutboundReason::Connect);
    };
    let mut buf = BytesMut::with_capacity(READ_MIN);
    let dialed = dial::connect(target, job.connect_timeout, job.tls.as_ref(), &mut buf).await;
    let Dialed { mut rd, wr, fd } = match dialed {
        Ok(d) => d,
        Err(e) => {
            debug!(target = %redact::url(&target.url), error = %e, "dial failed");
            return failed(match e {
                DialError::Handshake(_) | DialError::HandshakeTimeout => OutboundReason::Handshake,
                _ => OutboundReason::Connect,
            });
        }
    };
    // Frames are cut at the hub's chunk size; announce exactly that.
    let chunk_size = worker.hub.borrow().config().chunk_size;
    let app = job.app_for(target);
    let mut config = ClientConfig::new(&app, &target.tc_url(&app));
    config.chunk_size = chunk_size;
    config.window_ack_size = worker.config.server.window_ack_size;
    config.chunk_limits = worker.live_session_config().chunk_limits;
    config.amf_limits = worker.live_session_config().amf_limits;
    let mut session = ClientSession::new(config);
    session.received(buf.len());
    let name = job.name_for(target);
    let flow = PublishFlow::start(&mut session, &name);
    let mut publish = Publish {
        worker: worker.clone(),
        job,
        idx,
        target,
        name,
        session,
        flow,
        wr: Some(wr),
        fd,
        chunk_size,
        deadline: Instant::now() + job.start_timeout,
        live: None,
    };
    let outcome = drive(&mut publish, &mut rd, buf).await;
    publish.finish(outcome).await;
    drop(rd);
    outcome
}

/// One attempt as the session loop's handler: the publish handshake with
/// the target written straight to the socket, then, once live, an outbox
/// subscribed to the stream with a writer task draining it.
struct Publish<'a> {
    worker: Rc<Worker>,
    job: &'a Job,
    idx: usize,
    target: &'a OriginUrl,
    name: String,
    session: ClientSession,
    flow: PublishFlow,
    /// The write half until live; then the writer task's.
    wr: Option<WriteHalf>,
    fd: RawFd,
    chunk_size: u32,
    /// Live by then, or the attempt failed.
    deadline: Instant,
    live: Option<Live>,
}

/// The live half of an attempt.
struct Live {
    stream_id: u32,
    /// Our subscriber id in the hub.
    id: u64,
    outbox: Rc<Outbox>,
    writer: monoio::task::JoinHandle<()>,
}

impl Publish<'_> {
    fn fail(&self, reason: OutboundReason) -> Outcome {
        Outcome::Failed {
            reason,
            live: self.live.is_some(),
        }
    }

    /// Publish.Start: subscribe an outbox to the stream (its cached start
    /// first, then live frames) and start its writer.
    fn go_live(&mut self, stream_id: u32) -> ControlFlow<Outcome> {
        let (job, worker) = (self.job, &self.worker);
        if job.kind == OutboundKind::Forward && job.mode == Mode::Failover {
            job.sticky.mark_healthy(self.idx);
        }
        // A push URL's own name is the target's stream key; any other name
        // may carry the publisher's query (pass_query).
        let shown = match (job.kind, &self.target.name) {
            (OutboundKind::Push, Some(_)) => redact::MASK.to_string(),
            _ => redact::name(&self.name).to_string(),
        };
        info!(target = %redact::url(&self.target.url), name = %shown, stream_id, "publishing upstream");
        let Some(wr) = self.wr.take() else {
            return ControlFlow::Break(self.fail(OutboundReason::Protocol));
        };
        let outbox = Rc::new(Outbox::new(worker.live_queue_limits()));
        let feed = UpstreamFeed::new(outbox.clone(), stream_id, self.chunk_size);
        let writer = monoio::spawn(write_loop(
            wr,
            outbox.clone(),
            worker.stats.clone(),
            job.kind,
            self.fd,
        ));
        let id = worker.next_conn_id();
        self.live = Some(Live {
            stream_id,
            id,
            outbox,
            writer,
        });
        match worker.hub.borrow_mut().subscribe(&job.key, id, feed) {
            // Metadata, sequence headers and the GOP from its keyframe are
            // queued now; live frames follow.
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(Outcome::Ended),
        }
    }

    /// Leaves the stream; on its end, says goodbye so the origin ends it
    /// at once; lets the writer flush.
    async fn finish(&mut self, outcome: Outcome) {
        let Some(live) = self.live.take() else {
            return;
        };
        self.worker
            .hub
            .borrow_mut()
            .unsubscribe(&self.job.key, live.id);
        if outcome == Outcome::Ended {
            self.session.delete_stream(live.stream_id);
            if let Some(bytes) = self.session.take_output() {
                live.outbox.push_control(bytes);
            }
            live.outbox.close(CloseReason::Finish);
        } else {
            live.outbox.close(CloseReason::Broken);
        }
        if monoio::time::timeout(FLUSH_TIMEOUT, live.writer)
            .await
            .is_err()
        {
            // The target stopped reading: unblock the writer. The read half
            // is still alive, so the descriptor is open.
            shutdown(self.fd);
        }
    }
}

impl Handler for Publish<'_> {
    type Session = ClientSession;
    type Outcome = Outcome;

    fn session(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    async fn on_event(&mut self, ev: ClientEvent) -> ControlFlow<Outcome> {
        let url = redact::url(&self.target.url);
        match self.flow.on_event(&mut self.session, ev) {
            PublishStep::Pending => ControlFlow::Continue(()),
            PublishStep::Live { stream_id } => self.go_live(stream_id),
            PublishStep::ConnectRefused { code, description } => {
                let description = redact::name(&description);
                warn!(target = %url, %code, %description, "connect refused");
                ControlFlow::Break(self.fail(OutboundReason::Rejected))
            }
            PublishStep::Closed { code, description } if self.live.is_some() => {
                let description = redact::name(&description);
                warn!(%code, %description, "target ended our publish");
                ControlFlow::Break(self.fail(OutboundReason::Lost))
            }
            PublishStep::Refused { code, description }
            | PublishStep::Closed { code, description } => {
                let description = redact::name(&description);
                warn!(target = %url, %code, %description, "publish refused");
                ControlFlow::Break(self.fail(OutboundReason::Refused))
            }
        }
    }

    async fn send(&mut self, bytes: Bytes) -> ControlFlow<Outcome> {
        if let Some(live) = &self.live {
            live.outbox.push_control(bytes);
            return ControlFlow::Continue(());
        }
        let Some(wr) = self.wr.as_mut() else {
            return ControlFlow::Continue(());
        };
        match monoio::time::timeout(self.job.connect_timeout, wr.write_all(bytes)).await {
            Ok(Ok(())) => ControlFlow::Continue(()),
            _ => ControlFlow::Break(self.fail(OutboundReason::Connect)),
        }
    }

    fn bad_input(&mut self, _e: SessionError) -> Outcome {
        self.fail(OutboundReason::Protocol)
    }

    fn idle(&mut self, now: Instant) -> ControlFlow<Outcome, Option<Instant>> {
        let Some(live) = &self.live else {
            if now >= self.deadline {
                return ControlFlow::Break(self.fail(OutboundReason::Timeout));
            }
            if !alive(&self.worker, self.job) {
                return ControlFlow::Break(Outcome::Ended);
            }
            return ControlFlow::Continue(Some(now + TICK));
        };
        // Stop when the stream ended or left this core, or the outbox was
        // closed under us (slow target, broken socket).
        if live.outbox.ended() || !alive(&self.worker, self.job) {
            return ControlFlow::Break(Outcome::Ended);
        }
        if let Some(reason) = live.outbox.closed() {
            let reason = match reason {
                CloseReason::SlowPlayer | CloseReason::Unread => OutboundReason::Slow,
                CloseReason::Broken | CloseReason::Finish => OutboundReason::Lost,
            };
            return ControlFlow::Break(self.fail(reason));
        }
        ControlFlow::Continue(Some(now + TICK))
    }

    /// Once live, the stream's end or a closed outbox ends the wait at once.
    fn interrupt(&self) -> impl std::future::Future<Output = ()> {
        let outbox = self.live.as_ref().map(|l| l.outbox.clone());
        async move {
            match outbox {
                Some(o) => o.attention().await,
                None => std::future::pending().await,
            }
        }
    }

    fn reserve(&self, buf: &mut BytesMut) {
        dial::reserve(buf);
    }

    fn closed(&mut self, error: Option<std::io::Error>) -> Outcome {
        match (error, self.live.is_some()) {
            (_, true) => self.fail(OutboundReason::Lost),
            (None, false) => self.fail(OutboundReason::Rejected),
            (Some(_), false) => self.fail(OutboundReason::Connect),
        }
    }
}

/// Drains the outbox to the target with vectored writes, counting the bytes.
async fn write_loop(
    mut wr: WriteHalf,
    outbox: Rc<Outbox>,
    stats: Rc<CoreStats>,
    kind: OutboundKind,
    fd: RawFd,
) {
    let count = |n: usize| stats.outbound_bytes.add(kind, n as u64);
    // Latency and first-frame figures are the players'; not ours.
    let forget = |batch: &mut crate::egress::Batch| {
        batch.ingests.clear();
        batch.first_keyframe_of_play = None;
    };
    writer::drain(&mut wr, &outbox, fd, count, forget).await;
}
