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

use bytes::BytesMut;
use tracing::{debug, info, warn};

use super::dial::{self, read_tick, reserve, DialError, Dialed, READ_MIN, TICK};
use super::forward::{alive, Job};
use super::select::Mode;
use crate::auth::redact;
use crate::context::Worker;
use crate::egress::writer::{self, shutdown};
use crate::egress::{CloseReason, Outbox, UpstreamFeed};
use crate::metrics::{CoreStats, OutboundKind, OutboundReason};
use crate::protocol::session::{ClientConfig, ClientSession, PublishFlow, PublishStep};
use crate::transport::{ReadHalf, WriteHalf};

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
    let Dialed { mut rd, mut wr, fd } = match dialed {
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
    let mut flow = PublishFlow::start(&mut session, &name);
    let deadline = Instant::now() + job.start_timeout;
    let stream_id = loop {
        if session.handle_input(&mut buf).is_err() {
            return failed(OutboundReason::Protocol);
        }
        let mut live = None;
        while let Some(ev) = session.poll_event() {
            match flow.on_event(&mut session, ev) {
                PublishStep::Pending => {}
                PublishStep::Live { stream_id } => live = Some(stream_id),
                PublishStep::ConnectRefused { code, description } => {
                    let description = redact::name(&description);
                    warn!(target = %redact::url(&target.url), %code, %description, "connect refused");
                    return failed(OutboundReason::Rejected);
                }
                PublishStep::Refused { code, description }
                | PublishStep::Closed { code, description } => {
                    let description = redact::name(&description);
                    warn!(target = %redact::url(&target.url), %code, %description, "publish refused");
                    return failed(OutboundReason::Refused);
                }
            }
        }
        if let Some(bytes) = session.take_output() {
            let write = wr.write_all(bytes);
            match monoio::time::timeout(job.connect_timeout, write).await {
                Ok(Ok(())) => {}
                _ => return failed(OutboundReason::Connect),
            }
        }
        if let Some(id) = live {
            break id;
        }
        if Instant::now() >= deadline {
            return failed(OutboundReason::Timeout);
        }
        if !alive(worker, &job.key) {
            return Outcome::Ended;
        }
        let (res, back) = read_tick(&mut rd, buf).await;
        buf = back;
        match res {
            Ok(None) => {}
            Ok(Some(0)) => return failed(OutboundReason::Rejected),
            Ok(Some(n)) => session.received(n),
            Err(_) => return failed(OutboundReason::Connect),
        }
    };
    if job.kind == OutboundKind::Forward && job.mode == Mode::Failover {
        job.sticky.mark_healthy(idx);
    }
    // A push URL's own name is the target's stream key; any other name may
    // carry the publisher's query (pass_query).
    let shown = match (job.kind, &target.name) {
        (OutboundKind::Push, Some(_)) => redact::MASK.to_string(),
        _ => redact::name(&name).to_string(),
    };
    info!(target = %redact::url(&target.url), name = %shown, stream_id, "publishing upstream");
    let live = Live {
        worker: worker.clone(),
        job,
        id: worker.next_conn_id(),
        outbox: Rc::new(Outbox::new(worker.live_queue_limits())),
        fd,
    };
    live.run(rd, wr, session, flow, buf, stream_id, chunk_size)
        .await
}

/// The live half of an attempt.
struct Live<'a> {
    worker: Rc<Worker>,
    job: &'a Job,
    /// Our subscriber id in the hub.
    id: u64,
    outbox: Rc<Outbox>,
    fd: RawFd,
}

impl Live<'_> {
    #[allow(clippy::too_many_arguments)] // one call site, all named there
    async fn run(
        &self,
        mut rd: ReadHalf,
        wr: WriteHalf,
        mut session: ClientSession,
        flow: PublishFlow,
        buf: BytesMut,
        stream_id: u32,
        chunk_size: u32,
    ) -> Outcome {
        let outbox = &self.outbox;
        let feed = UpstreamFeed::new(outbox.clone(), stream_id, chunk_size);
        if let Some(bytes) = session.take_output() {
            outbox.push_control(bytes);
        }
        let writer = monoio::spawn(write_loop(
            wr,
            outbox.clone(),
            self.worker.stats.clone(),
            self.job.kind,
            self.fd,
        ));
        let subscribed = self
            .worker
            .hub
            .borrow_mut()
            .subscribe(&self.job.key, self.id, feed);
        let outcome = match subscribed {
            // Metadata, sequence headers and the GOP from its keyframe are
            // queued now; live frames follow.
            Ok(()) => self.read_loop(&mut rd, &mut session, flow, buf).await,
            Err(_) => Outcome::Ended,
        };
        self.worker
            .hub
            .borrow_mut()
            .unsubscribe(&self.job.key, self.id);
        if outcome == Outcome::Ended {
            // Say goodbye so the origin ends the stream at once.
            session.delete_stream(stream_id);
            if let Some(bytes) = session.take_output() {
                outbox.push_control(bytes);
            }
            outbox.close(CloseReason::Finish);
        } else {
            outbox.close(CloseReason::Broken);
        }
        if monoio::time::timeout(FLUSH_TIMEOUT, writer).await.is_err() {
            // The target stopped reading: unblock the writer. `rd` is still
            // alive here, so the descriptor is open.
            shutdown(self.fd);
        }
        drop(rd);
        outcome
    }

    /// Reads the target's replies until the stream ends or the connection
    /// fails, checking on the outbox and the stream every tick.
    async fn read_loop(
        &self,
        rd: &mut ReadHalf,
        session: &mut ClientSession,
        mut flow: PublishFlow,
        mut buf: BytesMut,
    ) -> Outcome {
        let lost = |reason| Outcome::Failed { reason, live: true };
        loop {
            if let Some(out) = self.check() {
                return out;
            }
            reserve(&mut buf);
            let read = rd.read(buf);
            let mut read = std::pin::pin!(read);
            // The read stays in flight across ticks (polled again, never
            // dropped) so no byte is lost; it is dropped only on the way out.
            let (res, back) = loop {
                monoio::select! {
                    r = &mut read => break r,
                    _ = monoio::time::sleep(TICK) => {
                        if let Some(out) = self.check() {
                            return out;
                        }
                    }
                }
            };
            buf = back;
            match res {
                Ok(0) | Err(_) => return lost(OutboundReason::Lost),
                Ok(n) => session.received(n),
            }
            if session.handle_input(&mut buf).is_err() {
                return lost(OutboundReason::Protocol);
            }
            while let Some(ev) = session.poll_event() {
                if let PublishStep::Closed { code, description } = flow.on_event(session, ev) {
                    let description = redact::name(&description);
                    warn!(%code, %description, "target ended our publish");
                    return lost(OutboundReason::Lost);
                }
            }
            if let Some(bytes) = session.take_output() {
                self.outbox.push_control(bytes);
            }
        }
    }

    /// Whether to stop: the stream ended or left this core, or the outbox
    /// was closed under us (slow target, broken socket).
    fn check(&self) -> Option<Outcome> {
        if self.outbox.ended() || !alive(&self.worker, &self.job.key) {
            return Some(Outcome::Ended);
        }
        let reason = match self.outbox.closed()? {
            CloseReason::SlowPlayer | CloseReason::Unread => OutboundReason::Slow,
            CloseReason::Broken | CloseReason::Finish => OutboundReason::Lost,
        };
        Some(Outcome::Failed { reason, live: true })
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
