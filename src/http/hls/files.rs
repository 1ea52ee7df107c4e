//! The media files: init segments, parts and segments, muxed or one track
//! alone, as the window holds them (shared `Bytes`, never copied), queued
//! in pieces as the writer takes them.

use std::time::Duration;

use bytes::Bytes;
use tracing::debug;

use super::playlists::track_index;
use super::{block_limit, keep_or_close, start_limit, wait_until, Answer, HttpConn, Next, Reply};
use crate::hub::hls::{PartLookup, SegmentLookup, Window, WindowState};
use crate::metrics::Protocol;
use crate::protocol::hls;
use crate::protocol::http::{response_head, Method, RequestHead};

/// Bytes of a response queued ahead of the writer at a time: a player
/// that stops reading holds this much, not a whole segment.
const PIECE_BYTES: usize = 256 * 1024;

pub(super) async fn init(conn: &HttpConn, window: &Window, track: Option<hls::Track>) -> Answer {
    if !wait_until(window, |s| s.init.is_some() || s.ended, start_limit(conn)).await {
        return Answer::Status(404, "the stream has no init segment yet");
    }
    let init = {
        let s = window.read();
        match track {
            None => s.init.clone(),
            Some(t) => s.track_inits.as_ref().map(|i| i[track_index(t)].clone()),
        }
    };
    match init {
        Some(b) => Answer::Body {
            content_type: content_type(track),
            cache: "public, max-age=60",
            body: vec![b],
        },
        None => Answer::Status(404, "the stream has no init segment"),
    }
}

/// The media type of a file: audio alone is `audio/mp4`.
fn content_type(track: Option<hls::Track>) -> &'static str {
    match track {
        Some(hls::Track::Audio) => "audio/mp4",
        _ => "video/mp4",
    }
}

/// A part, muxed or one track of it; the next one (the preload hint) is
/// held until it is complete.
pub(super) async fn part(
    conn: &HttpConn,
    window: &Window,
    msn: u64,
    index: u32,
    track: Option<hls::Track>,
) -> Answer {
    let lookup = window.read().part(msn, index);
    let lookup = match lookup {
        PartLookup::Pending => {
            // The preload hint: held until the part is complete.
            let limit = block_limit(conn, window);
            let done = |s: &WindowState| !matches!(s.part(msn, index), PartLookup::Pending);
            wait_until(window, done, limit).await;
            window.read().part(msn, index)
        }
        other => other,
    };
    match lookup {
        PartLookup::Ready(p) => {
            let bytes = match track {
                None => p.bytes,
                Some(t) => match p.split {
                    Some(split) => split[track_index(t)].clone(),
                    None => return Answer::Status(404, "the stream has no separate tracks"),
                },
            };
            if bytes.is_empty() {
                // Listed with GAP=YES in that track's playlist.
                return Answer::Status(404, "the part has nothing of this track");
            }
            Answer::Body {
                content_type: content_type(track),
                cache: "public, max-age=60, immutable",
                body: vec![bytes],
            }
        }
        PartLookup::Pending => Answer::Status(503, "the part did not come in time"),
        PartLookup::Missing => Answer::Status(404, "no such part in the window"),
    }
}

/// A segment: whole when complete; the one being made goes out chunked,
/// part by part as each is made (low-latency DASH).
pub(super) async fn segment(
    conn: &HttpConn,
    head: &RequestHead,
    window: &Window,
    msn: u64,
    track: Option<hls::Track>,
    protocol: Protocol,
) -> Next {
    let lookup = lookup_segment(&window.read(), msn, track);
    match lookup {
        SegmentLookup::Complete(parts) => {
            let cache = "public, max-age=60, immutable";
            send_body(conn, head, content_type(track), cache, parts, protocol).await;
            keep_or_close(head)
        }
        SegmentLookup::Missing => {
            conn.reply(
                head,
                Reply::text(404, "no such segment in the window"),
                head.close,
            );
            keep_or_close(head)
        }
        SegmentLookup::Growing(_) => {
            stream_segment(conn, head, window, msn, track, protocol).await;
            if head.http10 {
                Next::Close
            } else {
                keep_or_close(head)
            }
        }
    }
}

fn lookup_segment(s: &WindowState, msn: u64, track: Option<hls::Track>) -> SegmentLookup {
    match track {
        None => s.segment(msn),
        Some(t) => s.track_segment(msn, track_index(t)),
    }
}

async fn stream_segment(
    conn: &HttpConn,
    head: &RequestHead,
    window: &Window,
    msn: u64,
    track: Option<hls::Track>,
    protocol: Protocol,
) {
    let origin = conn.ops.config().http.allow_origin.clone();
    // HTTP/1.0 has no chunked encoding: the body ends with the connection.
    let chunked = !head.http10;
    let mut headers = vec![
        ("Content-Type", content_type(track)),
        ("Cache-Control", "no-cache"),
    ];
    if chunked {
        headers.push(("Transfer-Encoding", "chunked"));
    }
    headers.extend(crate::http::cors(&origin));
    conn.send(response_head(200, &headers, None, head.close || !chunked).freeze());
    if head.method == Method::Head {
        return;
    }
    let limit = block_limit(conn, window);
    let mut sent = 0usize;
    loop {
        let (parts, complete) = match lookup_segment(&window.read(), msn, track) {
            SegmentLookup::Complete(p) => (p, true),
            SegmentLookup::Growing(p) => (p, false),
            SegmentLookup::Missing => (Vec::new(), true),
        };
        for p in parts.into_iter().skip(sent) {
            sent += 1;
            let len = p.len();
            if len == 0 {
                // A part without this track: nothing to send (an empty
                // chunk would end the body).
                continue;
            }
            if chunked {
                conn.send(Bytes::from(format!("{len:x}\r\n")));
            }
            if !send_piece(conn, p).await {
                return;
            }
            if chunked {
                conn.send(Bytes::from_static(b"\r\n"));
            }
            conn.worker.stats.add_out(protocol, len as u64);
        }
        if complete || conn.outbox.closed().is_some() {
            break;
        }
        let more = |s: &WindowState| match lookup_segment(s, msn, track) {
            SegmentLookup::Growing(p) => p.len() > sent,
            _ => true,
        };
        if !wait_until(window, more, limit).await {
            debug!(msn, "segment stream stalled");
            break;
        }
    }
    if chunked {
        conn.send(Bytes::from_static(b"0\r\n\r\n"));
    }
}

/// Queues `bytes` in slices of at most [`PIECE_BYTES`], each once the
/// writer has taken what was queued before (zero-copy: slices of the
/// shared part). False once the connection is closed.
async fn send_piece(conn: &HttpConn, mut bytes: Bytes) -> bool {
    // Two pieces must fit in what a connection may leave unread
    // (`limits.max_pending_output_bytes`), or the outbox would cut it off.
    let max = conn.worker.live_queue_limits().max_control_bytes;
    let piece = (max / 4).clamp(1024, PIECE_BYTES);
    // A reader that takes nothing for the idle timeout is cut off: it
    // costs one piece of memory and this long, never more.
    let idle = Duration::from_millis(conn.ops.config().http.idle_timeout_ms);
    while !bytes.is_empty() {
        if conn.outbox.closed().is_some() {
            return false;
        }
        // The common case, a reader that keeps up: no timer to arm.
        if conn.outbox.queued_bytes() <= piece {
            let n = bytes.len().min(piece);
            conn.send(bytes.split_to(n));
            continue;
        }
        monoio::select! {
            _ = conn.outbox.drained_to(piece) => {},
            _ = monoio::time::sleep(idle) => {
                debug!("hls reader took nothing for the idle timeout");
                conn.outbox.close(crate::egress::CloseReason::Unread);
            },
        }
        if conn.outbox.closed().is_some() {
            return false;
        }
        let n = bytes.len().min(piece);
        conn.send(bytes.split_to(n));
    }
    true
}

/// A whole answer with its length, queued in pieces as the writer takes them.
pub(super) async fn send_body(
    conn: &HttpConn,
    head: &RequestHead,
    content_type: &'static str,
    cache: &'static str,
    body: Vec<Bytes>,
    protocol: Protocol,
) {
    let origin = conn.ops.config().http.allow_origin.clone();
    let mut headers = vec![("Content-Type", content_type), ("Cache-Control", cache)];
    headers.extend(crate::http::cors(&origin));
    let len: usize = body.iter().map(Bytes::len).sum();
    conn.send(response_head(200, &headers, Some(len), head.close).freeze());
    if head.method == Method::Head {
        return;
    }
    for piece in body {
        if !send_piece(conn, piece).await {
            return;
        }
    }
    conn.worker.stats.add_out(protocol, len as u64);
}
