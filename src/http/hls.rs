//! HLS and DASH requests on the HTTP service: `/APP/NAME/FILE` where FILE
//! is a playlist (`index.m3u8`, `master.m3u8`), the DASH manifest
//! (`index.mpd`), the init segment, a part or a segment. Everything comes
//! from the stream's node-shared window (`hub::hls`), whichever core made
//! it and whichever core the request lands on.
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

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tracing::{debug, info};

use super::server::{HttpConn, Next};
use super::Reply;
use crate::auth::{Action, Denial};
use crate::context::admission;
use crate::context::Worker;
use crate::hub::hls::{PartLookup, SegmentLookup, Window, WindowState};
use crate::metrics::{HlsRequest, Protocol};
use crate::protocol::command::StreamPath;
use crate::protocol::http::{response_head, Method, RequestHead};
use crate::protocol::{dash, hls};

/// Bytes of a response queued ahead of the writer at a time: a player
/// that stops reading holds this much, not a whole segment.
const PIECE_BYTES: usize = 256 * 1024;

/// Segments listed with their parts, counted back from the live edge (the
/// spec asks for parts within three target durations of the end).
const SEGMENTS_WITH_PARTS: usize = 2;

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
}

fn split_carried(rest: &str) -> Carried {
    let mut own = form_urlencoded::Serializer::new(String::new());
    let mut sid = None;
    let mut dash = false;
    let rest = rest.strip_prefix('?').unwrap_or(rest);
    for (k, v) in form_urlencoded::parse(rest.as_bytes()) {
        match &*k {
            "sid" => sid = v.parse().ok(),
            "dash" => dash = true,
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
    }
}

fn protocol_of(asset: &hls::Asset, carried: &Carried) -> Protocol {
    match asset {
        hls::Asset::Mpd | hls::Asset::TrackInit(_) | hls::Asset::TrackSegment(..) => Protocol::Dash,
        _ if carried.dash => Protocol::Dash,
        _ => Protocol::Hls,
    }
}

fn request_kind(asset: &hls::Asset, protocol: Protocol) -> HlsRequest {
    let dash = protocol == Protocol::Dash;
    match asset {
        hls::Asset::MediaPlaylist => HlsRequest::HlsPlaylist,
        hls::Asset::Multivariant => HlsRequest::HlsMultivariant,
        hls::Asset::Mpd => HlsRequest::DashManifest,
        hls::Asset::Init if dash => HlsRequest::DashInit,
        hls::Asset::Init => HlsRequest::HlsInit,
        hls::Asset::TrackInit(_) => HlsRequest::DashInit,
        hls::Asset::TrackSegment(..) => HlsRequest::DashSegment,
        hls::Asset::Part(..) => HlsRequest::HlsPart,
        hls::Asset::Segment(_) if dash => HlsRequest::DashSegment,
        hls::Asset::Segment(_) => HlsRequest::HlsSegment,
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
        hls::Asset::MediaPlaylist | hls::Asset::Multivariant | hls::Asset::Mpd
    );
    if (worker.draining() || conn.ops.is_draining()) && manifest {
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
        hls::Asset::MediaPlaylist => media_playlist(conn, &window, &query, &uri_query).await,
        hls::Asset::Multivariant | hls::Asset::Mpd
            if !wait_until(&window, has_segment, start_limit(conn)).await =>
        {
            Answer::Status(404, "the stream has no media yet")
        }
        hls::Asset::Multivariant => multivariant(&window, &uri_query),
        hls::Asset::Mpd => mpd(&window, &uri_query),
        hls::Asset::Init => init(conn, &window, None).await,
        hls::Asset::TrackInit(t) => init(conn, &window, Some(track_index(t))).await,
        hls::Asset::TrackSegment(msn, t) => {
            return segment(conn, &head, &window, msn, Some(track_index(t)), protocol).await;
        }
        hls::Asset::Part(msn, i) => part(conn, &window, msn, i).await,
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
    monoio::select! {
        _ = window.wait_for(&ready) => true,
        _ = monoio::time::sleep(timeout) => ready(&window.read()),
    }
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

async fn media_playlist(
    conn: &HttpConn,
    window: &Window,
    q: &hls::HlsQuery,
    uri_query: &str,
) -> Answer {
    // A new stream's first playlist waits for its first complete segment:
    // players that ignore parts (ffmpeg, older HLS clients) need one to
    // start, and low-latency ones lose nothing (they ask again at once).
    if !wait_until(window, has_segment, start_limit(conn)).await {
        return Answer::Status(404, "the stream has no media yet");
    }
    let mut blocked = false;
    if let Some(msn) = q.msn {
        let live = window.read().live_msn();
        if msn > live + 2 {
            return Answer::Status(400, "_HLS_msn is more than two segments ahead");
        }
        let part = q.part;
        if !window.read().has(msn, part) {
            blocked = true;
            conn.worker
                .stats
                .hls_blocked_reloads
                .set(conn.worker.stats.hls_blocked_reloads.get() + 1);
            let limit = block_limit(conn, window);
            if !wait_until(window, |s| s.has(msn, part), limit).await {
                return Answer::Status(503, "the part asked for did not come in time");
            }
        }
    }
    let template = media_template(conn, &mut window.read(), q.skip);
    let text = template.fill(uri_query);
    Answer::Body {
        content_type: "application/vnd.apple.mpegurl",
        cache: if blocked || q.msn.is_some() {
            "public, max-age=6"
        } else {
            "public, max-age=1"
        },
        body: vec![Bytes::from(text)],
    }
}

/// The window's media playlist for this kind of request: rendered once per
/// change of the window, by whichever request asks first.
fn media_template(conn: &HttpConn, s: &mut WindowState, skip: hls::Skip) -> Arc<hls::Template> {
    let slot = match skip {
        hls::Skip::No => 0,
        hls::Skip::Yes => 1,
        hls::Skip::V2 => 2,
    };
    if let Some((version, t)) = &s.media_playlists[slot] {
        if *version == s.version {
            return t.clone();
        }
    }
    let t = Arc::new(render_media(conn, s, skip));
    s.media_playlists[slot] = Some((s.version, t.clone()));
    t
}

fn render_media(conn: &HttpConn, s: &WindowState, skip: hls::Skip) -> hls::Template {
    let now = Instant::now();
    let now_wall = SystemTime::now();
    let with_parts_from = s.segments.len().saturating_sub(SEGMENTS_WITH_PARTS);
    let entry = |seg: &crate::hub::hls::SegmentData, parts: bool| hls::Segment {
        msn: seg.msn,
        duration: seg.duration,
        discontinuity: seg.discontinuity,
        program_date_time: Some(wall(seg.start, now, now_wall)),
        parts: if parts {
            seg.parts
                .iter()
                .map(|p| hls::Part {
                    duration: p.duration,
                    independent: p.independent,
                })
                .collect()
        } else {
            Vec::new()
        },
    };
    let segments: Vec<hls::Segment> = s
        .segments
        .iter()
        .enumerate()
        .map(|(i, seg)| entry(seg, i >= with_parts_from))
        .collect();
    let current = s.current.as_ref().map(|c| entry(c, true));
    let preload_hint = if s.ended {
        None
    } else {
        Some((s.live_msn(), s.live_parts() as u32))
    };
    let playlist = hls::MediaPlaylist {
        target_duration: target_duration(conn, s),
        part_target: Duration::from_millis(conn.ops.config().hls.part_ms.into()),
        media_sequence: s.segments.front().map_or(s.live_msn(), |f| f.msn),
        discontinuity_sequence: s.discontinuity_sequence,
        segments: &segments,
        current: current.as_ref(),
        preload_hint,
        skip,
        ended: s.ended,
        query: "",
        init_generation: Some(s.init_generation),
    };
    hls::render_media_template(&playlist)
}

/// Bits per second of the window's media: the busiest segment's rate.
fn bandwidth(s: &WindowState) -> u64 {
    s.segments
        .iter()
        .filter(|g| !g.duration.is_zero())
        .map(|g| (g.bytes as f64 * 8.0 / g.duration.as_secs_f64()) as u64)
        .max()
        .unwrap_or(2_000_000)
}

fn multivariant(window: &Window, uri_query: &str) -> Answer {
    let s = window.read();
    let variant = hls::Variant {
        bandwidth: bandwidth(&s),
        average_bandwidth: None,
        codecs: &s.facts.codecs,
        resolution: s.facts.resolution,
        frame_rate: None,
        uri_query,
    };
    Answer::Body {
        content_type: "application/vnd.apple.mpegurl",
        cache: "public, max-age=1",
        body: vec![Bytes::from(hls::render_multivariant(&variant))],
    }
}

/// A segment's expected length before any is complete.
fn target_duration_of(s: &WindowState) -> Duration {
    s.max_segment.max(Duration::from_secs(2))
}

fn mpd(window: &Window, uri_query: &str) -> Answer {
    let s = window.read();
    let Some((origin, origin_time)) = s.origin else {
        return Answer::Status(404, "the stream has no media yet");
    };
    let now = Instant::now();
    let now_wall = SystemTime::now();
    let timescale = s.facts.timescale.max(1);
    let to_ticks =
        |d: Duration| (d.as_micros() as u64).saturating_mul(timescale.into()) / 1_000_000;
    let start = wall(origin, now, now_wall)
        .checked_sub(Duration::from_micros(
            origin_time * 1_000_000 / u64::from(timescale),
        ))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut segments: Vec<dash::TimelineSegment> = s
        .segments
        .iter()
        .map(|g| dash::TimelineSegment {
            number: g.msn,
            start: g.start_time,
            duration: to_ticks(g.duration),
        })
        .collect();
    // The segment being made is listed too, with the duration the last one
    // had (segments follow the GOP): a low-latency DASH player asks for it
    // at once and gets its parts chunked as they are made
    // (availabilityTimeOffset); the next MPD states its real duration.
    if let Some(c) = s.current.as_ref().filter(|c| !c.parts.is_empty()) {
        let expected = s
            .segments
            .back()
            .map_or(target_duration_of(&s), |g| g.duration)
            .max(c.duration);
        segments.push(dash::TimelineSegment {
            number: c.msn,
            start: c.start_time,
            duration: to_ticks(expected),
        });
    }
    let longest = s.max_segment.max(Duration::from_secs(1));
    let part = s
        .current
        .as_ref()
        .and_then(|c| c.parts.first())
        .map_or(Duration::from_millis(200), |p| p.duration);
    let m = dash::Mpd {
        availability_start_time: start,
        publish_time: now_wall,
        timescale,
        segments: &segments,
        max_segment_duration: longest,
        min_buffer_time: longest,
        suggested_presentation_delay: longest,
        minimum_update_period: part.max(Duration::from_millis(500)),
        time_shift_buffer_depth: s.segments.iter().map(|g| g.duration).sum(),
        availability_time_offset: Some(longest.saturating_sub(part)),
        target_latency: Some(longest),
        codecs: &s.facts.codecs,
        width_height: s.facts.resolution,
        audio_sample_rate: s.facts.audio_rate,
        bandwidth: bandwidth(&s),
        query: uri_query,
        utc_timing: dash::UtcTiming::HttpXsDate("/time"),
        ended: s.ended,
        split: s
            .facts
            .track_codecs
            .as_ref()
            .map(|[v, a]| dash::SplitTracks {
                video_codecs: v,
                audio_codecs: a,
                audio_bandwidth: 128_000,
            }),
    };
    let text = dash::render_mpd(&m);
    Answer::Body {
        content_type: "application/dash+xml",
        cache: "public, max-age=1",
        body: vec![Bytes::from(text)],
    }
}

/// The index of a track in the window's split form.
fn track_index(t: hls::Track) -> usize {
    match t {
        hls::Track::Video => 0,
        hls::Track::Audio => 1,
    }
}

async fn init(conn: &HttpConn, window: &Window, track: Option<usize>) -> Answer {
    if !wait_until(window, |s| s.init.is_some() || s.ended, start_limit(conn)).await {
        return Answer::Status(404, "the stream has no init segment yet");
    }
    let init = {
        let s = window.read();
        match track {
            None => s.init.clone(),
            Some(t) => s.track_inits.as_ref().map(|i| i[t & 1].clone()),
        }
    };
    match init {
        Some(b) => Answer::Body {
            content_type: "video/mp4",
            cache: "public, max-age=60",
            body: vec![b],
        },
        None => Answer::Status(404, "the stream has no init segment"),
    }
}

async fn part(conn: &HttpConn, window: &Window, msn: u64, index: u32) -> Answer {
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
        PartLookup::Ready(p) => Answer::Body {
            content_type: "video/mp4",
            cache: "public, max-age=60, immutable",
            body: vec![p.bytes],
        },
        PartLookup::Pending => Answer::Status(503, "the part did not come in time"),
        PartLookup::Missing => Answer::Status(404, "no such part in the window"),
    }
}

/// A segment: whole when complete; the one being made goes out chunked,
/// part by part as each is made (low-latency DASH).
async fn segment(
    conn: &HttpConn,
    head: &RequestHead,
    window: &Window,
    msn: u64,
    track: Option<usize>,
    protocol: Protocol,
) -> Next {
    let lookup = lookup_segment(&window.read(), msn, track);
    match lookup {
        SegmentLookup::Complete(parts) => {
            let cache = "public, max-age=60, immutable";
            send_body(conn, head, "video/mp4", cache, parts, protocol).await;
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

fn lookup_segment(s: &WindowState, msn: u64, track: Option<usize>) -> SegmentLookup {
    match track {
        None => s.segment(msn),
        Some(t) => s.track_segment(msn, t),
    }
}

async fn stream_segment(
    conn: &HttpConn,
    head: &RequestHead,
    window: &Window,
    msn: u64,
    track: Option<usize>,
    protocol: Protocol,
) {
    let origin = conn.ops.config().http.allow_origin.clone();
    // HTTP/1.0 has no chunked encoding: the body ends with the connection.
    let chunked = !head.http10;
    let mut headers = vec![("Content-Type", "video/mp4"), ("Cache-Control", "no-cache")];
    if chunked {
        headers.push(("Transfer-Encoding", "chunked"));
    }
    if !origin.is_empty() {
        headers.push(("Access-Control-Allow-Origin", origin.as_str()));
    }
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
async fn send_body(
    conn: &HttpConn,
    head: &RequestHead,
    content_type: &'static str,
    cache: &'static str,
    body: Vec<Bytes>,
    protocol: Protocol,
) {
    let origin = conn.ops.config().http.allow_origin.clone();
    let mut headers = vec![("Content-Type", content_type), ("Cache-Control", cache)];
    if !origin.is_empty() {
        headers.push(("Access-Control-Allow-Origin", origin.as_str()));
    }
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
        assert_eq!((c.sid, c.dash), (Some(9), false));
        assert_eq!(
            uri_query(&c.rest, Some(7), Protocol::Hls),
            "?token=a+b&sid=7"
        );
        assert_eq!(uri_query("", None, Protocol::Hls), "");
        assert_eq!(uri_query("", Some(1), Protocol::Dash), "?sid=1&dash=1");
        assert!(split_carried("dash=1").dash);
    }
}
