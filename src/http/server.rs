//! One HTTP/1.1 connection on a worker: request heads read under the
//! `[http]` bounds (size, header count, head and idle timeouts), answered in
//! order (keep-alive, pipelining), until the peer closes, a limit is hit, or
//! the request becomes a media player (HTTP-FLV, WebSocket-FLV), which then
//! owns the connection until it ends.
//!
//! Every byte leaves through the connection's [`Outbox`] and writer task,
//! as an RTMP connection's do, so the slow-reader bounds and the direct and
//! batched sends are the same code.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use tracing::{debug, info, warn, Instrument};

use super::{media, Ops, Reply, Serves};
use crate::context::link::Link;
use crate::context::Worker;
use crate::egress::{CloseReason, Outbox};
use crate::metrics::{Label, LimitKind};
use crate::protocol::http::{
    parse_head, response_head, HeadError, HeadLimits, Method, RequestHead,
};
use crate::transport::{ReadHalf, Stream};

/// A request head starts in a buffer this large (most fit); it grows up to
/// `http.max_header_bytes` only for the requests that need it.
const READ_START: usize = 2 * 1024;

/// What one accepted HTTP connection shares with its requests.
pub(super) struct HttpConn {
    pub(super) id: u64,
    pub(super) worker: Rc<Worker>,
    pub(super) ops: Arc<Ops>,
    pub(super) outbox: Rc<Outbox>,
    pub(super) peer: SocketAddr,
    pub(super) serves: Serves,
    /// The plain TCP socket, for answers sent straight from the request's
    /// task when nothing is queued (`hls::files::send_bufs`); None over
    /// TLS, where bytes must go through the writer's record layer.
    pub(super) direct_fd: Option<std::os::fd::RawFd>,
}

/// How a request left the connection.
pub(super) enum Next {
    /// Read the next request.
    KeepAlive,
    /// Flush what was queued, then close.
    Close,
}

/// Serves one accepted socket of an HTTP listener until it closes; never
/// panics on its input. With `tls`, a TLS handshake comes first.
pub async fn serve(
    worker: Rc<Worker>,
    ops: Arc<Ops>,
    tcp: TcpStream,
    peer: SocketAddr,
    serves: Serves,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let id = worker.next_conn_id();
    let span =
        tracing::info_span!("http", worker = worker.id, conn = id, %peer, tls = tls.is_some());
    async move {
        debug!("accepted");
        let _ = tcp.set_nodelay(worker.config.server.tcp_nodelay);
        crate::conn::socket::set_notsent_lowat(
            tcp.as_raw_fd(),
            worker.config.server.tcp_notsent_lowat,
        );
        crate::conn::socket::set_timeouts(tcp.as_raw_fd(), &worker.config.limits);
        let stream = match tls {
            None => Stream::plain(tcp),
            Some(config) => match crate::conn::accept_tls(&worker, tcp, config).await {
                Ok(s) => s,
                Err(e) => {
                    info!(error = %e, "closed");
                    return;
                }
            },
        };
        run(worker, ops, stream, id, peer, serves).await;
    }
    .instrument(span)
    .await
}

async fn run(
    worker: Rc<Worker>,
    ops: Arc<Ops>,
    stream: Stream,
    id: u64,
    peer: SocketAddr,
    serves: Serves,
) {
    let worker_direct = worker.config.server.direct_writes;
    let (link, mut rd) = Link::open(&worker, stream, id, peer);
    let conn = HttpConn {
        id,
        worker,
        ops,
        outbox: link.outbox.clone(),
        peer,
        serves,
        direct_fd: (!link.tls && worker_direct).then_some(link.fd),
    };
    conn.requests(&mut rd, &link).await;
    if link.outbox.closed() == Some(CloseReason::Unread) {
        let max = conn.worker.live_queue_limits().max_control_bytes;
        conn.limit_hit(LimitKind::MaxPendingOutputBytes, max as u64);
    }
    link.close(rd).await;
}

impl HttpConn {
    /// The node drains: new players are refused. The node's flag as well as
    /// this worker's: the drain reaches each worker as a control message,
    /// and once /readyz says draining no new player may slip in on a worker
    /// that has not read it yet.
    pub(super) fn draining(&self) -> bool {
        self.worker.draining() || self.ops.is_draining()
    }

    fn limits(&self) -> (HeadLimits, Duration, Duration, u64) {
        let http = &self.ops.config().http;
        (
            HeadLimits {
                max_bytes: http.max_header_bytes,
                max_headers: http.max_headers,
            },
            Duration::from_millis(http.header_timeout_ms),
            Duration::from_millis(http.idle_timeout_ms),
            http.max_body_bytes as u64,
        )
    }

    /// Reads and answers requests in order until the connection is done.
    async fn requests(&self, rd: &mut ReadHalf, link: &Link) {
        let (limits, head_timeout, idle_timeout, max_body) = self.limits();
        let mut buf = BytesMut::with_capacity(READ_START);
        // The first request's head must arrive within the head timeout of
        // the accept; later ones within the idle timeout, then their head
        // within the head timeout of its first byte.
        let mut deadline = Instant::now() + head_timeout;
        let mut idle = false;
        loop {
            match parse_head(&buf, limits) {
                Ok(Some((head, len))) => {
                    let _ = buf.split_to(len);
                    if head.content_length > max_body || head.transfer_encoding {
                        let status = if head.transfer_encoding { 501 } else { 413 };
                        self.reply(
                            &head,
                            Reply::text(status, "request body not accepted"),
                            true,
                        );
                        return;
                    }
                    // The API takes no bodies: skip one, bounded above.
                    if !self
                        .skip_body(rd, &mut buf, head.content_length, deadline)
                        .await
                    {
                        return;
                    }
                    match self.request(head, rd, &mut buf, link).await {
                        Next::Close => return,
                        Next::KeepAlive => {}
                    }
                    if self.outbox.closed().is_some() || self.worker.draining() {
                        return;
                    }
                    idle = buf.is_empty();
                    deadline = Instant::now() + if idle { idle_timeout } else { head_timeout };
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    self.refuse_head(&e);
                    return;
                }
            }
            if buf.capacity() - buf.len() < 512 {
                buf.reserve(buf.len().max(READ_START).min(limits.max_bytes));
            }
            // A kept-alive connection waiting for its next request closes
            // when a drain starts, so the drain does not wait for it.
            let worker = &self.worker;
            let stop = async {
                let sleep = monoio::time::sleep_until(deadline.into());
                if idle {
                    monoio::select! {
                        _ = sleep => {},
                        _ = worker.drained() => {},
                    }
                } else {
                    sleep.await
                }
            };
            let (res, back) = rd.read_until(buf, stop).await;
            buf = back;
            if idle && worker.draining() {
                return;
            }
            match res {
                Ok(Some(0)) | Err(_) => return,
                Ok(Some(_)) => {
                    if idle {
                        idle = false;
                        deadline = Instant::now() + head_timeout;
                    }
                }
                Ok(None) => {
                    if !idle {
                        let ms = head_timeout.as_millis() as u64;
                        self.limit_hit(LimitKind::HttpHeaderTimeout, ms);
                    }
                    if !buf.is_empty() {
                        debug!("request head timed out");
                        self.write(
                            Reply::text(408, "request head not received in time"),
                            None,
                            true,
                        );
                    }
                    return;
                }
            }
        }
    }

    /// Reads and drops a request body of `len` bytes.
    async fn skip_body(
        &self,
        rd: &mut ReadHalf,
        buf: &mut BytesMut,
        mut len: u64,
        deadline: Instant,
    ) -> bool {
        loop {
            let here = (buf.len() as u64).min(len);
            let _ = buf.split_to(here as usize);
            len -= here;
            if len == 0 {
                return true;
            }
            let stop = monoio::time::sleep_until(deadline.into());
            let (res, back) = rd.read_until(std::mem::take(buf), stop).await;
            *buf = back;
            if !matches!(res, Ok(Some(n)) if n > 0) {
                return false;
            }
        }
    }

    fn refuse_head(&self, e: &HeadError) {
        debug!(error = %e, "bad request head");
        self.worker
            .stats
            .protocol_errors
            .inc(crate::metrics::ProtocolErrorKind::HttpRequest);
        if let HeadError::TooLarge(max) = e {
            self.limit_hit(LimitKind::HttpHeaderBytes, *max as u64);
        }
        self.write(Reply::text(e.status(), &e.to_string()), None, true);
    }

    /// Counts and logs a connection closed by one of its limits.
    fn limit_hit(&self, kind: LimitKind, value: u64) {
        self.worker.stats.limit_hits.inc(kind);
        warn!(
            limit = kind.name(),
            value, "limit hit: closing the connection"
        );
    }

    /// Answers one request.
    async fn request(
        &self,
        head: RequestHead,
        rd: &mut ReadHalf,
        buf: &mut BytesMut,
        link: &Link,
    ) -> Next {
        let path = head.path.as_str();
        let probes = self.serves != Serves::Api;
        let api_on = self.serves != Serves::Probes;
        let get = matches!(head.method, Method::Get | Method::Head);
        let reply = match path {
            "/healthz" if get => Reply::text(200, "ok"),
            "/readyz" if get && probes => {
                if self.ops.is_ready() {
                    Reply::text(200, "ready")
                } else if self.ops.is_draining() {
                    Reply::text(503, "draining")
                } else {
                    Reply::text(503, "starting")
                }
            }
            "/metrics" if get && probes => {
                if !self
                    .ops
                    .authorized(super::Scope::Metrics, head.authorization.as_deref())
                {
                    unauthorized()
                } else {
                    Reply {
                        status: 200,
                        body: super::api::metrics_text(&self.ops).await,
                        content_type: "text/plain; version=0.0.4; charset=utf-8",
                    }
                }
            }
            p if api_on && p.starts_with("/api/v1/") => {
                if !self
                    .ops
                    .authorized(super::Scope::Api, head.authorization.as_deref())
                {
                    unauthorized()
                } else {
                    super::api::route(head.method, &head.raw_path, &self.ops).await
                }
            }
            "/time" if get && probes => {
                // DASH players' clock (the MPD's UTCTiming), read by pages
                // on other origins: it carries the CORS header media do.
                let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
                let body = now.to_string();
                let origin = self.ops.config().http.allow_origin.clone();
                let mut headers = vec![
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Cache-Control", "no-store"),
                ];
                headers.extend(super::cors(&origin));
                let mut out = response_head(200, &headers, Some(body.len()), head.close);
                if head.method != Method::Head {
                    out.extend_from_slice(body.as_bytes());
                }
                self.send(out.freeze());
                return if head.close {
                    Next::Close
                } else {
                    Next::KeepAlive
                };
            }
            p if probes && self.hls_on() => match super::hls::parse_path(p) {
                Some(req) => return super::hls::serve(self, head, req).await,
                None if p.ends_with(".flv") => {
                    return media::play(self, head, rd, buf, link).await;
                }
                None if !get => Reply::text(405, "method not allowed"),
                None => Reply::text(404, "not found"),
            },
            p if probes && p.ends_with(".flv") => {
                return media::play(self, head, rd, buf, link).await;
            }
            _ if !get => Reply::text(405, "method not allowed"),
            _ => Reply::text(404, "not found"),
        };
        let close = head.close;
        self.reply(&head, reply, close);
        if close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Whether this node packages streams for HLS and DASH.
    fn hls_on(&self) -> bool {
        self.ops.config().hls.enabled
    }

    /// Queues `reply` to `head` (no body for HEAD).
    pub(super) fn reply(&self, head: &RequestHead, reply: Reply, close: bool) {
        let method = Some(head.method);
        self.write(reply, method, close);
    }

    fn write(&self, reply: Reply, method: Option<Method>, close: bool) {
        let mut headers = vec![("Content-Type", reply.content_type)];
        if reply.status == 401 {
            headers.push(("WWW-Authenticate", "Bearer"));
        }
        if reply.status == 405 {
            headers.push(("Allow", "GET, HEAD"));
        }
        let close = close || self.worker.draining();
        let mut out = response_head(reply.status, &headers, Some(reply.body.len()), close);
        if method != Some(Method::Head) {
            out.extend_from_slice(reply.body.as_bytes());
        }
        self.send(out.freeze());
    }

    /// Queues bytes for the writer task.
    pub(super) fn send(&self, bytes: Bytes) {
        self.outbox.push_control(bytes);
    }
}

fn unauthorized() -> Reply {
    Reply::text(
        401,
        "a bearer token is required (Authorization: Bearer ...)",
    )
}
