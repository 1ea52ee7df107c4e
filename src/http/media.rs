//! A media request on the HTTP service: `GET /APP/NAME.flv` as HTTP-FLV
//! (one long close-delimited response of FLV tags) or, with
//! `Upgrade: websocket`, as WebSocket-FLV (the same tags in binary
//! messages). The rules are an RTMP player's: the `[auth]` decision and
//! hook (action `play`) before the first byte of the answer, an edge pull
//! for an unknown stream, the GOP-cache fast start, the slow-player policy,
//! kicks and drains.
//!
//! Close-delimited rather than chunked: every HTTP/1.x client reads it
//! (ffmpeg, browsers' fetch, curl), and each frame leaves as the node-shared
//! FLV tag as it is, with no per-player chunk framing around it.

use std::time::Instant;

use bytes::BytesMut;
use tracing::{debug, info};

use super::server::{HttpConn, Next};
use super::Reply;
use crate::auth::{Action, Denial};
use crate::context::admission;
use crate::context::link::Link;
use crate::egress::{CloseReason, FlvPlayer, Framing};
use crate::metrics::{ConnRole, Label, ProtocolErrorKind};
use crate::protocol::command::StreamPath;
use crate::protocol::http::{response_head, Method, RequestHead};
use crate::protocol::ws::{self, ClientFrame};
use crate::transport::ReadHalf;

/// Client bytes an HTTP-FLV player may send (and cascade drops) while it
/// plays: a player has nothing to say, so a client that keeps sending is
/// closed rather than read forever.
const MAX_IGNORED_BYTES: usize = 64 * 1024;

/// `/APP/NAME.flv` (APP may have slashes) as a stream path with the query.
fn stream_path(path: &str, query: &str) -> Option<StreamPath> {
    let trimmed = path.strip_prefix('/')?.strip_suffix(".flv")?;
    let (app, name) = trimmed.rsplit_once('/')?;
    if app.is_empty() || name.is_empty() {
        return None;
    }
    let name = if query.is_empty() {
        name.to_string()
    } else {
        format!("{name}?{query}")
    };
    Some(StreamPath::new(app, &name))
}

/// The status a refused play is answered with: 401 when no credential
/// came, 403 when one came and was refused (or the address is not allowed).
fn denial_status(d: Denial) -> u16 {
    match d {
        Denial::Missing => 401,
        // The hook's service is swamped: try again later.
        Denial::HookBusy => 503,
        _ => 403,
    }
}

/// Serves a media request; the connection ends with it.
pub(super) async fn play(
    conn: &HttpConn,
    head: RequestHead,
    rd: &mut ReadHalf,
    buf: &mut BytesMut,
    link: &Link,
) -> Next {
    let worker = &conn.worker;
    let refuse = |status: u16, why: &str| {
        conn.reply(&head, Reply::text(status, why), true);
        Next::Close
    };
    if head.method == Method::Options {
        preflight(conn, &head);
        return if head.close {
            Next::Close
        } else {
            Next::KeepAlive
        };
    }
    if !matches!(head.method, Method::Get | Method::Head) {
        return refuse(405, "method not allowed");
    }
    if head.partial_range() {
        // A live stream has no byte ranges to serve.
        return refuse(416, "range requests are not served for live streams");
    }
    let Some(path) = stream_path(&head.path, &head.query) else {
        return refuse(404, "not a stream path (expected /APP/NAME.flv)");
    };
    if head.websocket && head.ws_version.as_deref() != Some("13") {
        let out = response_head(
            426,
            &[
                ("Sec-WebSocket-Version", "13"),
                ("Content-Type", "text/plain"),
            ],
            Some(0),
            true,
        );
        conn.send(out.freeze());
        return Next::Close;
    }
    let key = path.key();
    if conn.draining() {
        return refuse(503, "this node is draining");
    }
    let tc_url = format!("http://{}/{}", conn.peer, path.app);
    if let Err(d) =
        admission::authorize_with_hook(worker, conn.peer, &tc_url, Action::Play, &path).await
    {
        info!(stream = %key, reason = %d, "http play refused");
        return refuse(denial_status(d), &format!("play of {key} refused: {d}"));
    }
    if !worker.hub.borrow().contains(&key)
        && crate::upstream::enabled(&worker.config, &key)
        && !crate::upstream::await_stream(worker, &path).await
    {
        return refuse(404, &format!("{key} not found"));
    }
    if !worker.hub.borrow().contains(&key) {
        return refuse(404, &format!("{key} not found"));
    }
    let origin = conn.ops.config().http.allow_origin.clone();
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(6);
    headers.extend(super::cors(&origin));
    let framing = if head.websocket {
        let Some(client_key) = head.ws_key.as_deref() else {
            return refuse(400, "Sec-WebSocket-Key missing");
        };
        let accept = ws::accept_key(client_key.as_bytes());
        headers.push(("Upgrade", "websocket"));
        headers.push(("Connection", "Upgrade"));
        headers.push(("Sec-WebSocket-Accept", &accept));
        conn.send(response_head(101, &headers, None, false).freeze());
        Framing::WsFlv
    } else {
        headers.push(("Content-Type", "video/x-flv"));
        headers.push(("Cache-Control", "no-cache, no-store"));
        conn.send(response_head(200, &headers, None, true).freeze());
        if head.method == Method::Head {
            return Next::Close;
        }
        Framing::HttpFlv
    };
    let protocol = framing.protocol();
    let now = Instant::now();
    conn.outbox.start_with(framing, now);
    // Live frames may now go straight to the socket (or the core's batch)
    // once the queued answer is out.
    link.send_direct();
    // A player is a client (the clients API lists it, kicks and drains
    // close it); requests of the control plane are not.
    worker.add_client(conn.id, conn.peer, conn.outbox.clone());
    let player = FlvPlayer::new(conn.outbox.clone(), worker.egress.clone());
    if let Err(e) = worker.hub.borrow_mut().subscribe(&key, conn.id, player) {
        debug!(error = %e, "http play: subscribe failed");
        return Next::Close;
    }
    info!(stream = %key, protocol = protocol.name(), "play");
    worker.set_client_role(conn.id, ConnRole::Player, Some(&key));
    set_protocol(conn, protocol);
    let end = watch(conn, framing, rd, buf).await;
    worker.hub.borrow_mut().unsubscribe(&key, conn.id);
    debug!(stream = %key, why = end, "http play ended");
    Next::Close
}

/// Answers a browser's CORS preflight (a player that sends custom headers).
pub(super) fn preflight(conn: &HttpConn, head: &RequestHead) {
    let origin = conn.ops.config().http.allow_origin.clone();
    let mut headers = vec![
        ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
        ("Access-Control-Allow-Headers", "*"),
        ("Access-Control-Max-Age", "600"),
    ];
    headers.extend(super::cors(&origin));
    conn.send(response_head(204, &headers, None, head.close).freeze());
}

/// Records the player's protocol for the clients API, where the registry
/// knows it.
fn set_protocol(conn: &HttpConn, protocol: crate::metrics::Protocol) {
    conn.worker.set_client_protocol(conn.id, protocol);
}

/// Plays until the stream ends, the player leaves or is closed (slow,
/// kicked, drained), or breaks the WebSocket protocol. Returns why.
async fn watch(
    conn: &HttpConn,
    framing: Framing,
    rd: &mut ReadHalf,
    buf: &mut BytesMut,
) -> &'static str {
    let outbox = &conn.outbox;
    let websocket = framing == Framing::WsFlv;
    let mut ignored = 0usize;
    loop {
        if outbox.closed().is_some() {
            return "closed";
        }
        if outbox.ended() {
            if websocket {
                conn.send(ws::close(1000, "stream ended"));
            }
            return "stream ended";
        }
        if websocket {
            loop {
                match ws::next_client_frame(buf) {
                    Ok(None) => break,
                    Ok(Some(ClientFrame::Ping(p))) => conn.send(ws::pong(&p)),
                    Ok(Some(ClientFrame::Pong)) => {}
                    Ok(Some(ClientFrame::Close(_))) => {
                        conn.send(ws::close(1000, ""));
                        return "client closed";
                    }
                    Ok(Some(ClientFrame::Data)) => {
                        conn.send(ws::close(1008, "players send no data"));
                        return "client sent data";
                    }
                    Err(e) => {
                        debug!(error = %e, "websocket protocol error");
                        conn.worker
                            .stats
                            .protocol_errors
                            .inc(ProtocolErrorKind::WebSocket);
                        conn.send(ws::close(1002, "protocol error"));
                        return "websocket protocol error";
                    }
                }
            }
            if buf.len() > 4096 {
                conn.send(ws::close(1009, "frame too large"));
                return "client frame too large";
            }
        } else {
            ignored += buf.len();
            buf.clear();
            if ignored > MAX_IGNORED_BYTES {
                return "client kept sending";
            }
        }
        if buf.capacity() - buf.len() < 256 {
            buf.reserve(1024);
        }
        let (res, back) = rd.read_until(std::mem::take(buf), outbox.attention()).await;
        *buf = back;
        match res {
            Ok(Some(0)) => return "client left",
            Err(_) => {
                outbox.close(CloseReason::Broken);
                return "read error";
            }
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_paths_split_app_name_and_query() {
        let p = stream_path("/live/cam1.flv", "token=abc").unwrap();
        assert_eq!((p.app.as_str(), p.name.as_str()), ("live", "cam1"));
        assert_eq!(p.query, "token=abc");
        let p = stream_path("/a/b/c.flv", "").unwrap();
        assert_eq!(p.key(), "a/b/c");
        assert!(stream_path("/x.flv", "").is_none());
        assert!(stream_path("/live/.flv", "").is_none());
        assert!(stream_path("/live/x.mp4", "").is_none());
    }

    #[test]
    fn refusals_say_whether_a_credential_is_missing() {
        assert_eq!(denial_status(Denial::Missing), 401);
        assert_eq!(denial_status(Denial::BadToken), 403);
        assert_eq!(denial_status(Denial::Address), 403);
        assert_eq!(denial_status(Denial::HookBusy), 503);
    }
}
