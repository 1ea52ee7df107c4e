//! HLS and DASH requests on the HTTP service: `/APP/NAME/FILE` where FILE
//! is a playlist (`index.m3u8`, `master.m3u8`, and one track's `video.m3u8`
//! or `audio.m3u8`), the DASH manifest (`index.mpd`), an init segment, a
//! part or a segment (muxed, or one track's). Everything comes from the
//! stream's node-shared window (`hub::hls`), whichever core made it and
//! whichever core the request lands on.
//!
//! This file routes, authorizes and counts; `playlists` renders the
//! playlists and the manifest, `files` answers the media (init segments,
//! parts, segments).
//!
//! Requests that ask for what does not exist yet wait for it without a
//! timer poll: a blocking playlist reload (`_HLS_msn`/`_HLS_part`) and the
//! preload-hinted part are answered the moment the packager adds the part
//! (the window wakes its waiters), or after three target durations with
//! 503. A DASH player's request for the segment being made is answered
//! chunked, part by part, as the parts are made.
//!
//! The rules are a player's: `[auth]` (the token in the query, which the
//! playlists carry into every URL; the hook on playlist and manifest
//! requests, not on each part), an edge pull for an unknown stream on a
//! playlist request, drain. A session id (`sid`) is added to the URLs of a
//! playlist that came without one, so a player's requests can be counted
//! as one session on any core.

mod files;
mod playlists;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tracing::info;

use super::server::{HttpConn, Next};
use super::Reply;
use crate::auth::{Action, Denial};
use crate::context::admission;
use crate::context::Worker;
use crate::hub::hls::{Window, WindowState};
use crate::metrics::{HlsRequest, Protocol};
use crate::protocol::command::StreamPath;
use crate::protocol::hls;
use crate::protocol::http::{Method, RequestHead};
use files::{init, part, segment, send_body};
use playlists::{media_playlist, mpd, multivariant};

/// A request path under a stream: the stream and the file asked for.
pub(super) struct HlsPath {
    pub app: String,
    pub name: String,
    pub asset: hls::Asset,
}

/// `/APP/NAME/FILE` with a FILE cascade serves; None otherwise.
pub(super) fn parse_path(path: &str) -> Option<HlsPath> {
    let (stream, file) = path.strip_prefix('/')?.rsplit_once('/')?;
    let asset = hls::parse_asset(file)?;
    let (app, name) = stream.rsplit_once('/')?;
    if app.is_empty() || name.is_empty() {
        return None;
    }
    Some(HlsPath {
        app: app.to_string(),
        name: name.to_string(),
        asset,
    })
}

/// What cascade itself put in a player's URLs, split from the player's own
/// parameters (its token, which auth reads and the URLs carry on).
struct Carried {
    rest: String,
    sid: Option<u64>,
    dash: bool,
    /// `parts=byterange`: the player wants the playlist's parts as byte
    /// ranges of their segments. Only the playlist request carries it (the
    /// player's reloads repeat its URL); media URLs need not.
    byteranges: bool,
}

fn split_carried(rest: &str) -> Carried {
    let mut own = form_urlencoded::Serializer::new(String::new());
    let mut sid = None;
    let mut dash = false;
    let mut byteranges = false;
    let rest = rest.strip_prefix('?').unwrap_or(rest);
    for (k, v) in form_urlencoded::parse(rest.as_bytes()) {
        match &*k {
            "sid" => sid = v.parse().ok(),
            "dash" => dash = true,
            "parts" => byteranges = v == "byterange",
            // The init segment's generation: only there to change its URL.
            "g" => {}
            _ => {
                own.append_pair(&k, &v);
            }
        }
    }
    Carried {
        rest: own.finish(),
        sid,
        dash,
        byteranges,
    }
}

/// Which player a request is from. The manifest is DASH's and the track
/// playlists and track parts are HLS's alone; the files both share (init
/// segments and segments, muxed or of one track) are DASH's when their URL
/// carries the manifest's `dash=1`. A track file with neither that nor a
/// session id counts as DASH, as it did before HLS served tracks: every
/// HLS playlist gives its URLs a `sid`.
fn protocol_of(asset: &hls::Asset, carried: &Carried) -> Protocol {
    match asset {
        hls::Asset::Mpd => Protocol::Dash,
        hls::Asset::TrackPlaylist(_) | hls::Asset::TrackPart(..) => Protocol::Hls,
        _ if carried.dash => Protocol::Dash,
        hls::Asset::TrackInit(_) | hls::Asset::TrackSegment(..) if carried.sid.is_none() => {
            Protocol::Dash
        }
        _ => Protocol::Hls,
    }
}

fn request_kind(asset: &hls::Asset, protocol: Protocol) -> HlsRequest {
    let dash = protocol == Protocol::Dash;
    match asset {
        hls::Asset::MediaPlaylist | hls::Asset::TrackPlaylist(_) => HlsRequest::HlsPlaylist,
        hls::Asset::Multivariant => HlsRequest::HlsMultivariant,
        hls::Asset::Mpd => HlsRequest::DashManifest,
        hls::Asset::Init | hls::Asset::TrackInit(_) if dash => HlsRequest::DashInit,
        hls::Asset::Init | hls::Asset::TrackInit(_) => HlsRequest::HlsInit,
        hls::Asset::Part(..) | hls::Asset::TrackPart(..) => HlsRequest::HlsPart,
        hls::Asset::Segment(_) | hls::Asset::TrackSegment(..) if dash => HlsRequest::DashSegment,
        hls::Asset::Segment(_) | hls::Asset::TrackSegment(..) => HlsRequest::HlsSegment,
    }
}

/// The session id of a player whose playlist request had none: from its
/// address and the stream, so a player that reloads the playlist by the
/// URL it was given (without `sid`) stays one session, not one per reload.
/// Players behind one address count once unless they came through the
/// multivariant playlist, whose variant URL gives each its own id.
fn address_session_id(peer: std::net::SocketAddr, key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    peer.ip().hash(&mut h);
    key.hash(&mut h);
    // 52 bits: exact in JavaScript players that parse URLs into numbers.
    h.finish() >> 12
}

/// A fresh session id, for the variant URL of a multivariant playlist.
fn new_session_id() -> u64 {
    rand::random::<u64>() >> 12
}

/// The wall-clock time of `t` (an ingest instant), for program date-times.
fn wall(t: Instant, now: Instant, now_wall: SystemTime) -> SystemTime {
    match now.checked_duration_since(t) {
        Some(ago) => now_wall - ago,
        None => now_wall + t.duration_since(now),
    }
}

/// Serves one HLS or DASH request; the connection stays open unless the
/// request said otherwise.
pub(super) async fn serve(conn: &HttpConn, head: RequestHead, req: HlsPath) -> Next {
    let worker = &conn.worker;
    let keep = if head.close {
        Next::Close
    } else {
        Next::KeepAlive
    };
    let refuse = |status: u16, why: &str| {
        conn.reply(&head, Reply::text(status, why), head.close);
        keep_or_close(&head)
    };
    if head.method == Method::Options {
        super::media::preflight(conn, &head);
        return keep;
    }
    if !matches!(head.method, Method::Get | Method::Head) {
        return refuse(405, "method not allowed");
    }
    let query = match hls::parse_query(&head.query) {
        Ok(q) => q,
        Err(e) => return refuse(400, &e.to_string()),
    };
    let carried = split_carried(&query.rest);
    let protocol = protocol_of(&req.asset, &carried);
    let name = if carried.rest.is_empty() {
        req.name.clone()
    } else {
        format!("{}?{}", req.name, carried.rest)
    };
    let path = StreamPath::new(&req.app, &name);
    let key = path.key();
    let manifest = matches!(
        req.asset,
        hls::Asset::MediaPlaylist
            | hls::Asset::TrackPlaylist(_)
            | hls::Asset::Multivariant
            | hls::Asset::Mpd
    );
    if conn.draining() && manifest {
        return refuse(503, "this node is draining");
    }
    let decision = if manifest {
        let tc_url = format!("http://{}/{}", conn.peer, path.app);
        admission::authorize_with_hook(worker, conn.peer, &tc_url, Action::Play, &path).await
    } else {
        admission::authorize(worker, conn.peer, Action::Play, &path)
    };
    if let Err(d) = decision {
        info!(stream = %key, reason = %d, "hls request refused");
        return refuse(denial_status(d), &format!("play of {key} refused: {d}"));
    }
    let Some(window) = find_window(worker, &path, manifest).await else {
        return refuse(404, &format!("{key} not found"));
    };
    let now = Instant::now();
    let timeout = Duration::from_millis(conn.ops.config().hls.session_timeout_ms);
    let mut sid = carried.sid;
    if sid.is_none() && manifest {
        sid = Some(if req.asset == hls::Asset::Multivariant {
            new_session_id()
        } else {
            address_session_id(conn.peer, &key)
        });
    }
    window
        .read()
        .touch(sid, protocol == Protocol::Dash, now, timeout);
    window.want();
    worker
        .stats
        .hls_requests
        .inc(request_kind(&req.asset, protocol));
    let uri_query = uri_query(&carried.rest, sid, protocol);
    let answer = match req.asset {
        hls::Asset::MediaPlaylist => {
            media_playlist(conn, &window, &query, &uri_query, None, carried.byteranges).await
        }
        hls::Asset::TrackPlaylist(t) => {
            let byteranges = carried.byteranges;
            media_playlist(conn, &window, &query, &uri_query, Some(t), byteranges).await
        }
        hls::Asset::Multivariant | hls::Asset::Mpd
            if !wait_until(&window, has_segment, start_limit(conn)).await =>
        {
            Answer::Status(404, "the stream has no media yet")
        }
        hls::Asset::Multivariant => multivariant(&window, &uri_query),
        hls::Asset::Mpd => mpd(&window, &uri_query),
        hls::Asset::Init => init(conn, &window, None).await,
        hls::Asset::TrackInit(t) => init(conn, &window, Some(t)).await,
        hls::Asset::TrackSegment(msn, t) => {
            return segment(conn, &head, &window, msn, Some(t), protocol).await;
        }
        hls::Asset::Part(msn, i) => part(conn, &window, msn, i, None).await,
        hls::Asset::TrackPart(msn, i, t) => part(conn, &window, msn, i, Some(t)).await,
        hls::Asset::Segment(msn) => {
            return segment(conn, &head, &window, msn, None, protocol).await;
        }
    };
    // What the request waited for counts as its time: a player parked on a
    // part is as alive as one that just asked.
    window.read().last_request = Some(Instant::now());
    match answer {
        Answer::Body {
            content_type,
            cache,
            body,
        } => {
            send_body(conn, &head, content_type, cache, body, protocol).await;
            keep_or_close(&head)
        }
        Answer::Status(status, why) => refuse(status, why),
    }
}

fn keep_or_close(head: &RequestHead) -> Next {
    if head.close {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

fn denial_status(d: Denial) -> u16 {
    match d {
        Denial::Missing => 401,
        Denial::HookBusy => 503,
        _ => 403,
    }
}

/// The query every URL of a playlist carries: the player's own parameters
/// (its token), its session, and a DASH marker on the manifest's URLs.
fn uri_query(own: &str, sid: Option<u64>, protocol: Protocol) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(own.as_bytes()) {
        out.append_pair(&k, &v);
    }
    if let Some(sid) = sid {
        out.append_pair("sid", &sid.to_string());
    }
    if protocol == Protocol::Dash {
        out.append_pair("dash", "1");
    }
    let s = out.finish();
    if s.is_empty() {
        s
    } else {
        format!("?{s}")
    }
}

/// The stream's window; on an edge a manifest request for an unknown
/// stream starts the pull (like a play) and waits for it.
async fn find_window(
    worker: &Rc<Worker>,
    path: &StreamPath,
    manifest: bool,
) -> Option<Arc<Window>> {
    let key = path.key();
    let store = worker.hub.borrow().hls_store()?.clone();
    if let Some(w) = store.get(&key) {
        return Some(w);
    }
    if !manifest || worker.hub.borrow().contains(&key) {
        return None;
    }
    if !crate::upstream::enabled(&worker.config, &key)
        || !crate::upstream::await_stream(worker, path).await
    {
        return None;
    }
    store.get(&key)
}

enum Answer {
    Body {
        content_type: &'static str,
        cache: &'static str,
        body: Vec<Bytes>,
    },
    Status(u16, &'static str),
}

/// Waits until `ready` holds on the window, at most `timeout`; whether it
/// holds.
async fn wait_until(
    window: &Window,
    ready: impl Fn(&WindowState) -> bool,
    timeout: Duration,
) -> bool {
    if ready(&window.read()) {
        return true;
    }
    // The wait (and its place in the window's queue) is gone before the
    // last look takes the lock.
    monoio::time::timeout(timeout, window.wait_for(&ready))
        .await
        .is_ok()
        || ready(&window.read())
}

/// Waits until the window has part `part` of segment `msn`, at most
/// `timeout`; whether it has (woken by that part alone, see
/// `Window::wait_for_part`).
async fn wait_for_part(window: &Window, msn: u64, part: Option<u32>, timeout: Duration) -> bool {
    if window.read().has(msn, part) {
        return true;
    }
    monoio::time::timeout(timeout, window.wait_for_part(msn, part))
        .await
        .is_ok()
        || window.read().has(msn, part)
}

/// The playlist's target duration: the configured segment length, or the
/// longest segment made if one ran longer (a longer GOP).
fn target_duration(conn: &HttpConn, s: &WindowState) -> Duration {
    let configured = Duration::from_millis(conn.ops.config().hls.segment_ms.into());
    configured.max(s.max_segment)
}

/// How long a request may wait for a part: three target durations.
fn block_limit(conn: &HttpConn, window: &Window) -> Duration {
    3 * target_duration(conn, &window.read())
}

/// How long a first request waits for a stream's first segment: packaging
/// starts at the next keyframe and the segment ends at the one after, each
/// at most `hls.max_segment_ms` away.
fn start_limit(conn: &HttpConn) -> Duration {
    2 * Duration::from_millis(conn.ops.config().hls.max_segment_ms.into())
}

fn has_segment(s: &WindowState) -> bool {
    s.ended || !s.segments.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_files_split_into_app_name_and_asset() {
        let p = parse_path("/live/cam1/index.m3u8").unwrap();
        assert_eq!((p.app.as_str(), p.name.as_str()), ("live", "cam1"));
        assert!(matches!(p.asset, hls::Asset::MediaPlaylist));
        let p = parse_path("/a/b/c/part3.1.m4s").unwrap();
        assert_eq!((p.app.as_str(), p.name.as_str()), ("a/b", "c"));
        assert!(matches!(p.asset, hls::Asset::Part(3, 1)));
        assert!(parse_path("/cam1/index.m3u8").is_none());
        assert!(parse_path("/live/cam1/other.txt").is_none());
        assert!(parse_path("/live/cam1.flv").is_none());
    }

    #[test]
    fn uri_queries_keep_the_token_and_add_the_session() {
        let q = hls::parse_query("token=a%20b&_HLS_msn=3&sid=9&g=2").unwrap();
        let c = split_carried(&q.rest);
        assert_eq!((c.sid, c.dash, c.byteranges), (Some(9), false, false));
        assert_eq!(
            uri_query(&c.rest, Some(7), Protocol::Hls),
            "?token=a+b&sid=7"
        );
        assert_eq!(uri_query("", None, Protocol::Hls), "");
        assert_eq!(uri_query("", Some(1), Protocol::Dash), "?sid=1&dash=1");
        assert!(split_carried("dash=1").dash);
        // The addressing of parts is the playlist's alone: not carried.
        let c = split_carried("parts=byterange&token=t");
        assert!(c.byteranges);
        assert_eq!(uri_query(&c.rest, Some(3), Protocol::Hls), "?token=t&sid=3");
    }

    #[test]
    fn track_files_count_as_hls_unless_a_dash_manifest_gave_them() {
        use hls::{Asset, Track};
        let hls_player = split_carried("sid=5");
        let dash_player = split_carried("sid=5&dash=1");
        let bare = split_carried("");
        let kind = |a: Asset, c: &Carried| {
            let p = protocol_of(&a, c);
            (p, request_kind(&a, p))
        };
        let hls = Protocol::Hls;
        let dash = Protocol::Dash;
        for (asset, carried, want) in [
            (
                Asset::TrackPlaylist(Track::Audio),
                &bare,
                (hls, HlsRequest::HlsPlaylist),
            ),
            (
                Asset::TrackPlaylist(Track::Video),
                &hls_player,
                (hls, HlsRequest::HlsPlaylist),
            ),
            (
                Asset::TrackPart(3, 1, Track::Audio),
                &hls_player,
                (hls, HlsRequest::HlsPart),
            ),
            (
                Asset::TrackPart(3, 1, Track::Audio),
                &bare,
                (hls, HlsRequest::HlsPart),
            ),
            (
                Asset::TrackInit(Track::Audio),
                &hls_player,
                (hls, HlsRequest::HlsInit),
            ),
            (
                Asset::TrackSegment(3, Track::Video),
                &hls_player,
                (hls, HlsRequest::HlsSegment),
            ),
            (
                Asset::TrackInit(Track::Audio),
                &dash_player,
                (dash, HlsRequest::DashInit),
            ),
            (
                Asset::TrackSegment(3, Track::Audio),
                &dash_player,
                (dash, HlsRequest::DashSegment),
            ),
            (
                Asset::TrackSegment(3, Track::Audio),
                &bare,
                (dash, HlsRequest::DashSegment),
            ),
            (
                Asset::Segment(3),
                &dash_player,
                (dash, HlsRequest::DashSegment),
            ),
            (
                Asset::Segment(3),
                &hls_player,
                (hls, HlsRequest::HlsSegment),
            ),
            (Asset::Mpd, &bare, (dash, HlsRequest::DashManifest)),
        ] {
            assert_eq!(kind(asset, carried), want, "{asset}");
        }
    }

    #[test]
    fn track_playlists_parse_as_stream_files() {
        let p = parse_path("/live/cam1/audio.m3u8").unwrap();
        assert_eq!(p.asset, hls::Asset::TrackPlaylist(hls::Track::Audio));
        let p = parse_path("/live/cam1/part4.2-a.m4s").unwrap();
        assert_eq!(p.asset, hls::Asset::TrackPart(4, 2, hls::Track::Audio));
    }
}
