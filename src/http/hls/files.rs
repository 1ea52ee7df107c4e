//! The media files: init segments, parts and segments, muxed or one track
//! alone, as the window holds them (shared `Bytes`, never copied), queued
//! in pieces as the writer takes them.

use std::time::Duration;

use bytes::Bytes;
use tracing::debug;

use super::playlists::track_index;
use super::{block_limit, keep_or_close, start_limit, wait_until, Answer, HttpConn, Next, Reply};
use crate::egress::writer::FdSink;
use crate::egress::DirectSink;
use crate::hub::hls::{PartLookup, SegmentLookup, Window, WindowState};
use crate::metrics::Protocol;
use crate::protocol::hls;
use crate::protocol::http::{
    chunk_size_line, response_head, ByteRange, Method, RequestHead, CHUNK_LINE_MAX,
};

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
/// part by part as each is made (low-latency DASH, and LL-HLS players
/// that take byte-range parts: the preload hint's open range, `bytes=S-`,
/// is the rest of the segment as it is made). A `Range` from a known byte
/// gets 206 with those bytes; `bytes=0-` (ffmpeg sends it on every
/// request) is the whole file and gets 200, as without a `Range`.
pub(super) async fn segment(
    conn: &HttpConn,
    head: &RequestHead,
    window: &Window,
    msn: u64,
    track: Option<hls::Track>,
    protocol: Protocol,
) -> Next {
    let range = head.byte_range().filter(|r| r.start > 0 || r.end.is_some());
    let lookup = lookup_segment(&window.read(), msn, track);
    match lookup {
        SegmentLookup::Complete(parts) => {
            let cache = "public, max-age=60, immutable";
            let ctype = content_type(track);
            match range {
                None => send_body(conn, head, ctype, cache, parts, protocol).await,
                Some(r) => send_range(conn, head, ctype, cache, &parts, r, protocol).await,
            }
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
            let wanted = range.unwrap_or(ByteRange {
                start: 0,
                end: None,
            });
            stream_segment(
                conn,
                head,
                window,
                (msn, track),
                wanted,
                range.is_some(),
                protocol,
            )
            .await;
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

/// The last byte an open range on a segment still being made is answered
/// with: its length is not known yet, so the answer names a very large
/// last byte and an unknown length (`bytes S-2^53-1/*`, as RFC 8673 has a
/// live resource answer) and its body ends with the segment.
const OPEN_RANGE_END: u64 = (1 << 53) - 1;

/// The bytes `from..to` of a file made of `parts`, as slices of the parts
/// (never copied).
fn slice_parts(parts: &[Bytes], from: u64, to: u64) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0u64;
    for p in parts {
        let len = p.len() as u64;
        let (s, e) = (from.max(at), to.min(at + len));
        if s < e {
            out.push(p.slice((s - at) as usize..(e - at) as usize));
        }
        at += len;
        if at >= to {
            break;
        }
    }
    out
}

/// Part of a complete segment: 206 with its bytes, or 416 when the range
/// starts past the end.
async fn send_range(
    conn: &HttpConn,
    head: &RequestHead,
    content_type: &'static str,
    cache: &'static str,
    parts: &[Bytes],
    r: ByteRange,
    protocol: Protocol,
) {
    let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let origin = conn.ops.config().http.allow_origin.clone();
    if r.start >= total {
        let unsatisfied = format!("bytes */{total}");
        let mut headers = vec![("Content-Range", unsatisfied.as_str())];
        headers.extend(crate::http::cors(&origin));
        conn.send(response_head(416, &headers, Some(0), head.close).freeze());
        return;
    }
    let last = r.end.map_or(total - 1, |e| e.min(total - 1));
    let content_range = format!("bytes {}-{last}/{total}", r.start);
    let body = slice_parts(parts, r.start, last + 1);
    let mut headers = vec![
        ("Content-Type", content_type),
        ("Cache-Control", cache),
        ("Content-Range", content_range.as_str()),
    ];
    headers.extend(crate::http::cors(&origin));
    send_answer(conn, head, 206, &headers, body, protocol).await;
}

/// The segment being made, from byte `wanted.start` through `wanted.end`
/// (or its end), each part as it is made. `partial` answers 206 (a range
/// was asked for), otherwise 200 with the whole file.
async fn stream_segment(
    conn: &HttpConn,
    head: &RequestHead,
    window: &Window,
    (msn, track): (u64, Option<hls::Track>),
    wanted: ByteRange,
    partial: bool,
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
    let last = wanted.end.unwrap_or(OPEN_RANGE_END);
    let content_range = format!("bytes {}-{last}/*", wanted.start);
    if partial {
        headers.push(("Content-Range", content_range.as_str()));
    }
    headers.extend(crate::http::cors(&origin));
    let status = if partial { 206 } else { 200 };
    let response = response_head(status, &headers, None, head.close || !chunked).freeze();
    if !send_bufs(conn, &[response]).await || head.method == Method::Head {
        return;
    }
    let limit = block_limit(conn, window);
    let track = track.map(track_index);
    // Parts looked at so far, and the segment's bytes before the next one.
    let mut seen = 0usize;
    let mut at = 0u64;
    loop {
        let tail = window.read().segment_tail(msn, track, seen);
        for p in tail.parts {
            seen += 1;
            let len = p.len() as u64;
            // `last` may be any u64 a client sent.
            let (from, to) = (wanted.start.max(at), last.saturating_add(1).min(at + len));
            at += len;
            if from >= to {
                // Before the range, past it, or a part without this track:
                // nothing to send (an empty chunk would end the body).
                continue;
            }
            let piece = p.slice((from - (at - len)) as usize..(to - (at - len)) as usize);
            let n = piece.len();
            let done = if chunked {
                send_chunk(conn, piece).await
            } else {
                send_bufs(conn, &[piece]).await
            };
            if !done {
                return;
            }
            conn.worker.stats.add_out(protocol, n as u64);
        }
        if tail.complete || at > last || conn.outbox.closed().is_some() {
            break;
        }
        let more = |s: &WindowState| s.growing_parts(msn).map_or(true, |n| n > seen);
        if !wait_until(window, more, limit).await {
            debug!(msn, "segment stream stalled");
            break;
        }
    }
    if chunked {
        conn.send(Bytes::from_static(b"0\r\n\r\n"));
    }
}

/// Most buffers one direct send carries.
const DIRECT_BUFS: usize = 8;

/// Sends `bufs` in order. When nothing is queued ahead of them on a plain
/// TCP connection they go straight to the socket in one non-blocking send
/// from this task: a player that keeps up costs no writer wake-up and no
/// io_uring round trip per answer (the fan-out's direct path for FLV does
/// the same). Whatever the socket does not take, and everything when
/// something is queued, goes through the outbox in pieces as the writer
/// takes them. False once the connection is closed.
pub(super) async fn send_bufs(conn: &HttpConn, bufs: &[Bytes]) -> bool {
    let mut slices: [&[u8]; DIRECT_BUFS] = [&[]; DIRECT_BUFS];
    let n = bufs.len().min(DIRECT_BUFS);
    for (slot, b) in slices.iter_mut().zip(bufs) {
        *slot = b;
    }
    let sent = send_direct(conn, &slices[..n]);
    queue_rest(conn, bufs, sent).await
}

/// Sends `slices` straight to an idle plain TCP socket, without waiting;
/// the bytes it took (0 when something is queued ahead, over TLS, or on an
/// error, which the writer meets on what is queued next).
fn send_direct(conn: &HttpConn, slices: &[&[u8]]) -> usize {
    let Some(fd) = conn.direct_fd.filter(|_| conn.outbox.is_idle()) else {
        return 0;
    };
    FdSink(fd).send_now(slices).unwrap_or_else(|e| {
        debug!(error = %e, "direct send failed");
        0
    })
}

/// Queues `bufs` after their first `sent` bytes (see [`send_piece`]).
async fn queue_rest(conn: &HttpConn, bufs: &[Bytes], mut sent: usize) -> bool {
    for b in bufs {
        if sent >= b.len() {
            sent -= b.len();
            continue;
        }
        let rest = b.slice(sent..);
        sent = 0;
        if !send_piece(conn, rest).await {
            return false;
        }
    }
    true
}

/// One chunk of a streamed body: its size line, the piece and CRLF, in one
/// direct send when the socket is idle (the size line from the stack);
/// what the socket does not take goes through the outbox. False once the
/// connection is closed.
async fn send_chunk(conn: &HttpConn, piece: Bytes) -> bool {
    let mut line = [0u8; CHUNK_LINE_MAX];
    let line = chunk_size_line(&mut line, piece.len());
    let sent = send_direct(conn, &[line, &piece, b"\r\n"]);
    if sent == line.len() + piece.len() + 2 {
        return true;
    }
    let bufs = [
        Bytes::copy_from_slice(line),
        piece,
        Bytes::from_static(b"\r\n"),
    ];
    queue_rest(conn, &bufs, sent).await
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
    send_answer(conn, head, 200, &headers, body, protocol).await;
}

/// `status` with `headers` and `body`, its length known: the head alone
/// for HEAD, else head and body in one send where the socket takes them.
async fn send_answer(
    conn: &HttpConn,
    head: &RequestHead,
    status: u16,
    headers: &[(&str, &str)],
    body: Vec<Bytes>,
    protocol: Protocol,
) {
    let len: usize = body.iter().map(Bytes::len).sum();
    let response = response_head(status, headers, Some(len), head.close).freeze();
    if head.method == Method::Head {
        conn.send(response);
        return;
    }
    let mut all = Vec::with_capacity(body.len() + 1);
    all.push(response);
    all.extend(body);
    if send_bufs(conn, &all).await {
        conn.worker.stats.add_out(protocol, len as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_of_a_segment_is_slices_of_its_parts() {
        let parts = [
            Bytes::from_static(b"abcd"),
            Bytes::new(),
            Bytes::from_static(b"efg"),
            Bytes::from_static(b"hij"),
        ];
        let cat = |v: Vec<Bytes>| v.concat();
        assert_eq!(cat(slice_parts(&parts, 0, 10)), b"abcdefghij");
        assert_eq!(cat(slice_parts(&parts, 2, 6)), b"cdef");
        assert_eq!(cat(slice_parts(&parts, 4, 7)), b"efg");
        assert_eq!(slice_parts(&parts, 4, 7).len(), 1, "one whole part");
        assert_eq!(cat(slice_parts(&parts, 9, 100)), b"j");
        assert!(slice_parts(&parts, 10, 20).is_empty());
    }
}
