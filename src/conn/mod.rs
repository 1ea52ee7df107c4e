//! A connection's life on one worker: handshake, then a server session
//! whose events become hub calls (publish, play, media).

mod handler;
mod limits;
mod requests;
pub(crate) mod socket;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::net::TcpStream;
use tracing::{debug, info, Instrument};

use crate::auth::Action;
use crate::context::link::Link;
use crate::context::Worker;
use crate::egress::{Outbox, RtmpPlayer};
use crate::metrics::{ConnRole, HandshakeFailure, LimitKind, ProtocolErrorKind, TlsHandshake};
use crate::protocol::command::StreamPath;
use crate::protocol::handshake::{HandshakeError, HandshakeStatus, ServerHandshake};
use crate::protocol::session::{ServerEvent, ServerSession, SessionError};
use crate::transport::drive::drive;
use crate::transport::{ReadHalf, Stream};
use socket::{read_more, set_notsent_lowat, set_timeouts};

/// Read buffer sizes. Players send almost nothing, so they keep a small
/// buffer (memory per player matters at thousands of players); a publisher's
/// buffer grows toward the large size as its reads fill the buffer.
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("handshake not finished within limits.handshake_timeout_ms ({ms} ms)")]
    HandshakeTimeout { ms: u64 },
    #[error("tls handshake: {0}")]
    Tls(std::io::Error),
    #[error("tls handshake timed out")]
    TlsTimeout,
    #[error("{what} ({ms} ms)")]
    Timeout {
        limit: LimitKind,
        ms: u64,
        what: &'static str,
    },
    #[error("session: {0}")]
    Session(#[from] SessionError),
    #[error("peer left more than limits.max_pending_output_bytes ({max}) of replies unread")]
    Unread { max: usize },
}

enum Role {
    None,
    Publisher {
        key: String,
        stream_id: u32,
    },
    Player {
        key: String,
        /// When the player paused; None while it plays.
        paused_since: Option<Instant>,
    },
}

/// A publish or play whose answer waits: for the auth hook, or (plays on
/// an edge) for an origin pull.
enum Deferred {
    Publish {
        stream_id: u32,
        path: StreamPath,
        kind: String,
    },
    Play {
        stream_id: u32,
        path: StreamPath,
        reset: bool,
    },
}

struct Conn {
    id: u64,
    worker: Rc<Worker>,
    outbox: Rc<Outbox>,
    session: ServerSession,
    role: Role,
    /// The peer's address, for the `[auth]` address lists.
    peer: SocketAddr,
    /// The tcUrl of `connect`, echoed in a drain's reconnect request.
    tc_url: String,
    /// A drain's reconnect request went out already.
    reconnect_sent: bool,
    /// When this connection last had no stream (after its handshake, or
    /// after its stream ended): the idle timeout counts from here, not
    /// from the last read, so trickled bytes do not keep it open.
    idle_since: Instant,
    /// A publisher's last media message: its progress.
    last_media: Instant,
    /// Publishes and plays refused so far.
    refusals: u32,
    /// A publish or play was answered since the last decode.
    answered: bool,
}

/// Serves one accepted socket until it closes; never panics on its input.
/// With `tls`, a TLS handshake comes first (the RTMPS listener).
pub async fn serve(
    worker: Rc<Worker>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let id = worker.next_conn_id();
    let span =
        tracing::info_span!("conn", worker = worker.id, conn = id, %peer, tls = tls.is_some());
    async move {
        debug!("accepted");
        let _ = tcp.set_nodelay(worker.config.server.tcp_nodelay);
        set_notsent_lowat(tcp.as_raw_fd(), worker.config.server.tcp_notsent_lowat);
        set_timeouts(tcp.as_raw_fd(), &worker.config.limits);
        let stream = match tls {
            None => Stream::plain(tcp),
            Some(config) => match accept_tls(&worker, tcp, config).await {
                Ok(s) => s,
                Err(e) => {
                    info!(error = %e, "closed");
                    return;
                }
            },
        };
        // An error was logged where it happened, before the socket closed.
        if run(worker, stream, id, peer).await.is_ok() {
            debug!("closed");
        }
    }
    .instrument(span)
    .await
}

/// The TLS handshake of an RTMPS connection, bounded by the handshake
/// timeout and counted by result.
pub(crate) async fn accept_tls(
    worker: &Worker,
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> Result<Stream, ConnError> {
    let stats = &worker.stats.tls_handshakes;
    let limit = worker.handshake_timeout();
    match monoio::time::timeout(limit, Stream::accept_tls(tcp, config)).await {
        Ok(Ok(s)) => {
            stats.inc(TlsHandshake::Ok);
            Ok(s)
        }
        Ok(Err(e)) => {
            stats.inc(TlsHandshake::Failed);
            Err(ConnError::Tls(e))
        }
        Err(_) => {
            stats.inc(TlsHandshake::Timeout);
            Err(ConnError::TlsTimeout)
        }
    }
}

async fn run(
    worker: Rc<Worker>,
    stream: Stream,
    id: u64,
    peer: SocketAddr,
) -> Result<(), ConnError> {
    let (link, mut rd) = Link::open(&worker, stream, id, peer);
    worker.add_client(id, peer, link.outbox.clone());
    let mut conn = Conn {
        id,
        session: ServerSession::new(worker.live_session_config()),
        worker,
        outbox: link.outbox.clone(),
        role: Role::None,
        peer,
        tc_url: String::new(),
        reconnect_sent: false,
        idle_since: Instant::now(),
        last_media: Instant::now(),
        refusals: 0,
        answered: false,
    };
    link.send_direct();
    let result = conn.read_loop(&mut rd).await;
    // Logged before the socket closes, so a peer that sees the close can
    // already find the reason in the log.
    if let Err(e) = &result {
        count_error(&conn.worker.stats, e);
        if !limits::report(&conn.worker, e, peer) {
            info!(error = %e, "closed");
        }
    }
    conn.leave();
    link.close(rd).await;
    result
}

impl Conn {
    async fn read_loop(&mut self, rd: &mut ReadHalf) -> Result<(), ConnError> {
        let mut buf = BytesMut::with_capacity(READ_MIN);
        let timeout = self.worker.handshake_timeout();
        let started = Instant::now();
        let done = match monoio::time::timeout(timeout, self.handshake(rd, &mut buf)).await {
            Ok(r) => r,
            Err(_) => Err(ConnError::HandshakeTimeout {
                ms: timeout.as_millis() as u64,
            }),
        };
        if let Err(e) = done {
            self.worker
                .stats
                .handshake_failures
                .inc(handshake_failure(&e));
            return Err(e);
        }
        self.worker.stats.handshake.record(started.elapsed());
        self.worker.set_client_role(self.id, ConnRole::Idle, None);
        self.session.received(buf.len());
        self.idle_since = Instant::now();
        drive(self, rd, buf).await
    }

    /// This connection as a player of `key`, for the hub.
    fn player(&self, key: &str) -> Rc<RtmpPlayer> {
        RtmpPlayer::new(self.outbox.clone(), self.worker.egress.clone(), key)
    }

    /// A player whose stream ended goes back to having no stream: the idle
    /// timeout applies from now.
    fn on_stream_end(&mut self) {
        if matches!(self.role, Role::Player { .. }) && self.outbox.ended() {
            debug!("stream ended; idle from now");
            self.leave();
            self.idle_since = Instant::now();
        }
    }

    async fn handshake(&mut self, rd: &mut ReadHalf, buf: &mut BytesMut) -> Result<(), ConnError> {
        let mut hs = ServerHandshake::new();
        let mut out = BytesMut::with_capacity(3073);
        loop {
            let status = hs.feed(buf, &mut out)?;
            if !out.is_empty() {
                self.outbox.push_control(out.split().freeze());
            }
            if status == HandshakeStatus::Done {
                debug!(kind = ?hs.kind(), "handshake done");
                return Ok(());
            }
            let taken = std::mem::take(buf);
            let (n, back) = read_more(rd, taken).await?;
            *buf = back;
            if n == 0 {
                return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// When the connection must have made progress, by role: a publisher
    /// must keep sending media, a connection with no stream must start one,
    /// a paused player must resume. A playing player only receives, so it
    /// has no deadline (the slow-player policy and TCP timeouts bound it).
    /// Returns ((deadline, configured limit), limit key, reason).
    #[allow(clippy::type_complexity)]
    fn read_deadline(&self) -> Option<((Instant, Duration), LimitKind, &'static str)> {
        let (publisher, idle, pause) = self.worker.read_timeouts();
        match &self.role {
            Role::Publisher { .. } => Some((
                (self.last_media + publisher, publisher),
                LimitKind::PublisherTimeout,
                "publisher sent no media within limits.publisher_timeout_ms",
            )),
            Role::None => Some((
                (self.idle_since + idle, idle),
                LimitKind::IdleTimeout,
                "no publish or play within limits.idle_timeout_ms",
            )),
            Role::Player {
                paused_since: Some(t),
                ..
            } => Some((
                (*t + pause, pause),
                LimitKind::PauseTimeout,
                "paused longer than limits.pause_timeout_ms",
            )),
            Role::Player { .. } => None,
        }
    }

    /// Queues the session's replies; a peer that leaves too many unread
    /// is cut off (the read loop sees the closed outbox).
    fn flush(&mut self) {
        if let Some(bytes) = self.session.take_output() {
            self.outbox.push_control(bytes);
        }
    }

    /// Applies one session event; a publish or play that must wait (auth
    /// hook, edge pull) comes back to the (async) caller instead.
    fn apply_event(&mut self, ev: ServerEvent, now: Instant) -> Option<Deferred> {
        match ev {
            ServerEvent::Connected { app, tc_url, .. } => {
                debug!(
                    app = %crate::auth::redact::name(&app),
                    tc_url = %crate::auth::redact::tc_url(&tc_url),
                    "connect"
                );
                self.tc_url = tc_url;
            }
            ServerEvent::PublishRequested {
                stream_id,
                path,
                kind,
            } => {
                if self
                    .worker
                    .auth()
                    .hook_for(Action::Publish, &path.key())
                    .is_some()
                {
                    return Some(Deferred::Publish {
                        stream_id,
                        path,
                        kind,
                    });
                }
                let verdict = self.authorize(Action::Publish, &path);
                self.on_publish(stream_id, path, &kind, now, verdict)
            }
            ServerEvent::PlayRequested {
                stream_id,
                path,
                reset,
                ..
            } => {
                if self
                    .worker
                    .auth()
                    .hook_for(Action::Play, &path.key())
                    .is_some()
                    || self.needs_pull(&path)
                {
                    return Some(Deferred::Play {
                        stream_id,
                        path,
                        reset,
                    });
                }
                let verdict = self.authorize(Action::Play, &path);
                self.on_play(stream_id, path, reset, now, verdict)
            }
            ServerEvent::Media {
                stream_id,
                kind,
                timestamp,
                payload,
            } => {
                if let Role::Publisher {
                    key,
                    stream_id: sid,
                } = &self.role
                {
                    if *sid == stream_id {
                        self.last_media = now;
                        self.worker
                            .hub
                            .borrow_mut()
                            .ingest(key, kind, timestamp, payload, now);
                    }
                }
            }
            ServerEvent::PublishFinished { .. } | ServerEvent::PlayFinished { .. } => self.leave(),
            ServerEvent::Paused { paused, .. } => {
                // Idempotent: only a change of state touches the hub, so a
                // flood of unpauses cannot subscribe (and queue the cached
                // start) more than once.
                if let Role::Player { key, paused_since } = &mut self.role {
                    let mut hub = self.worker.hub.borrow_mut();
                    match (paused, paused_since.is_some()) {
                        (true, false) => {
                            hub.unsubscribe(key, self.id);
                            *paused_since = Some(now);
                        }
                        (false, true) => {
                            *paused_since = None;
                            let player = RtmpPlayer::new(
                                self.outbox.clone(),
                                self.worker.egress.clone(),
                                key,
                            );
                            if hub.subscribe(key, self.id, player).is_err() {
                                debug!("unpause: stream gone");
                            }
                        }
                        _ => {}
                    }
                }
            }
            ServerEvent::ReceiveAudio { .. } | ServerEvent::ReceiveVideo { .. } => {}
        }
        None
    }

    /// A drain started: ask a publisher to move to another node (Enhanced
    /// RTMP v2 reconnect request); encoders that support it reconnect,
    /// the others keep publishing until the drain timeout closes them.
    fn on_drain(&mut self) {
        if let Role::Publisher { key, .. } = &self.role {
            info!(stream = %key, "drain: reconnect request sent");
            let tc_url = self.tc_url.clone();
            self.session
                .request_reconnect(&tc_url, "server is draining; reconnect");
            self.flush();
            self.reconnect_sent = true;
        }
    }

    /// Leaves whatever stream this connection publishes or plays.
    fn leave(&mut self) {
        if !matches!(self.role, Role::None) {
            self.worker.set_client_role(self.id, ConnRole::Idle, None);
        }
        match std::mem::replace(&mut self.role, Role::None) {
            Role::None => {}
            Role::Publisher { key, .. } if self.reconnect_sent => {
                // We asked it to move to another node; it cannot come back
                // here (the listener is closed), so the stream ends now,
                // not after the grace: its forward unpublishes upstream at
                // once and the publisher's new node can take the name.
                info!(stream = %key, "unpublish after a reconnect request; ending the stream");
                self.worker
                    .hub
                    .borrow_mut()
                    .end_now(&key, self.id, Instant::now());
            }
            Role::Publisher { key, .. } => {
                info!(stream = %key, "unpublish");
                Worker::unpublish(&self.worker, &key, self.id, Instant::now());
            }
            Role::Player { key, .. } => {
                self.worker.hub.borrow_mut().unsubscribe(&key, self.id);
            }
        }
        self.idle_since = Instant::now();
    }
}

fn handshake_failure(e: &ConnError) -> HandshakeFailure {
    match e {
        ConnError::HandshakeTimeout { .. } => HandshakeFailure::Timeout,
        ConnError::Handshake(HandshakeError::UnsupportedVersion(_)) => HandshakeFailure::Version,
        ConnError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            HandshakeFailure::Eof
        }
        ConnError::Io(_) => HandshakeFailure::Io,
        _ => HandshakeFailure::Invalid,
    }
}

/// Counts protocol errors after the handshake, by layer.
fn count_error(stats: &crate::metrics::CoreStats, e: &ConnError) {
    use crate::protocol::session::SessionError as S;
    match e {
        ConnError::Session(S::Chunk(crate::protocol::chunk::ChunkError::NotAdmitted {
            ..
        })) => stats.protocol_errors.inc(ProtocolErrorKind::NotAdmitted),
        ConnError::Session(S::Chunk(_)) => stats.protocol_errors.inc(ProtocolErrorKind::Chunk),
        ConnError::Session(S::Message(_)) => stats.protocol_errors.inc(ProtocolErrorKind::Message),
        ConnError::Session(S::NotConnected(_)) => {
            stats.protocol_errors.inc(ProtocolErrorKind::NotConnected)
        }
        ConnError::Session(S::TooManyStreams(_)) => {
            stats.protocol_errors.inc(ProtocolErrorKind::TooManyStreams)
        }
        ConnError::Session(S::AlreadyConnected) => {
            stats.protocol_errors.inc(ProtocolErrorKind::SecondConnect)
        }
        ConnError::Session(S::EmptyMediaFlood(_)) => {
            stats.protocol_errors.inc(ProtocolErrorKind::EmptyMedia)
        }
        // Handshake failures are counted where they happen; socket errors are not the peer's protocol.
        _ => {}
    }
}
