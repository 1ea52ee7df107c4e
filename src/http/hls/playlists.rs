//! The playlists and the manifest, rendered per request from the window:
//! the LL-HLS media playlist (muxed, or one track's), the multivariant
//! playlist, and the DASH MPD.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::{
    block_limit, has_segment, start_limit, target_duration, wait_for_part, wait_until, wall,
    Answer, HttpConn,
};
use crate::hub::hls::{PartData, SegmentData, Window, WindowState};
use crate::protocol::{dash, hls};

/// Segments listed with their parts, counted back from the live edge (the
/// spec asks for parts within three target durations of the end).
const SEGMENTS_WITH_PARTS: usize = 2;

/// The media playlist of the muxed rendition (`track` None) or of one
/// track; the same tags, blocking and delta rules either way, since every
/// form lists the same segments and parts under the same numbers.
pub(super) async fn media_playlist(
    conn: &HttpConn,
    window: &Window,
    q: &hls::HlsQuery,
    uri_query: &str,
    track: Option<hls::Track>,
    byteranges: bool,
) -> Answer {
    // A new stream's first playlist waits for its first complete segment:
    // players that ignore parts (ffmpeg, older HLS clients) need one to
    // start, and low-latency ones lose nothing (they ask again at once).
    if !wait_until(window, has_segment, start_limit(conn)).await {
        return Answer::Status(404, "the stream has no media yet");
    }
    if track.is_some() && window.read().track_inits.is_none() {
        return Answer::Status(404, "the stream has no separate tracks");
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
            if !wait_for_part(window, msn, part, limit).await {
                return Answer::Status(503, "the part asked for did not come in time");
            }
        }
    }
    let template = media_template(conn, &mut window.read(), q.skip, track, byteranges);
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
fn media_template(
    conn: &HttpConn,
    s: &mut WindowState,
    skip: hls::Skip,
    track: Option<hls::Track>,
    byteranges: bool,
) -> Arc<hls::Template> {
    let form = match track {
        None => 0,
        Some(hls::Track::Video) => 1,
        Some(hls::Track::Audio) => 2,
    } + if byteranges { 3 } else { 0 };
    let slot = match skip {
        hls::Skip::No => 0,
        hls::Skip::Yes => 1,
        hls::Skip::V2 => 2,
    };
    if let Some((version, t)) = &s.media_playlists[form][slot] {
        if *version == s.version {
            return t.clone();
        }
    }
    let t = Arc::new(render_media(conn, s, skip, track, byteranges));
    s.media_playlists[form][slot] = Some((s.version, t.clone()));
    t
}

/// A part as one rendition's playlist lists it.
fn listed_part(p: &PartData, track: Option<hls::Track>) -> hls::Part {
    let Some(t) = track else {
        return hls::Part {
            duration: p.duration,
            independent: p.independent,
            gap: false,
            len: p.bytes.len() as u64,
        };
    };
    let bytes = p.split.as_ref().map(|split| &split[track_index(t)]);
    hls::Part {
        duration: p.duration,
        // Every audio frame is a sync sample: any audio part may start
        // playback.
        independent: p.independent || t == hls::Track::Audio,
        gap: bytes.map_or(true, Bytes::is_empty),
        len: bytes.map_or(0, |b| b.len() as u64),
    }
}

/// The index of a track in the window's split form (`PartData::split`,
/// `WindowState::track_inits`).
pub(super) fn track_index(t: hls::Track) -> usize {
    match t {
        hls::Track::Video => 0,
        hls::Track::Audio => 1,
    }
}

fn render_media(
    conn: &HttpConn,
    s: &WindowState,
    skip: hls::Skip,
    track: Option<hls::Track>,
    byteranges: bool,
) -> hls::Template {
    let now = Instant::now();
    let now_wall = SystemTime::now();
    let with_parts_from = s.segments.len().saturating_sub(SEGMENTS_WITH_PARTS);
    let entry = |seg: &SegmentData, parts: bool| hls::Segment {
        msn: seg.msn,
        duration: seg.duration,
        discontinuity: seg.discontinuity,
        program_date_time: Some(wall(seg.start, now, now_wall)),
        parts: if parts {
            seg.parts.iter().map(|p| listed_part(p, track)).collect()
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
        track,
        byteranges,
    };
    hls::render_media_template(&playlist)
}

/// Bits per second of the window's media: the busiest segment's rate, in
/// whichever form (muxed, or both tracks apart) is the larger, so that one
/// figure is a true peak for every form. (`SegmentData::bytes` counts both
/// forms together, which is what the window holds but twice what a player
/// fetches.)
fn bandwidth(s: &WindowState) -> u64 {
    let form_bytes = |g: &SegmentData| {
        let muxed: usize = g.parts.iter().map(|p| p.bytes.len()).sum();
        let split: usize = g
            .parts
            .iter()
            .filter_map(|p| p.split.as_ref())
            .map(|[v, a]| v.len() + a.len())
            .sum();
        muxed.max(split)
    };
    s.segments
        .iter()
        .filter(|g| !g.duration.is_zero())
        .map(|g| (form_bytes(g) as f64 * 8.0 / g.duration.as_secs_f64()) as u64)
        .max()
        .unwrap_or(2_000_000)
}

pub(super) fn multivariant(window: &Window, uri_query: &str) -> Answer {
    let s = window.read();
    let variant = hls::Variant {
        bandwidth: bandwidth(&s),
        average_bandwidth: None,
        codecs: &s.facts.codecs,
        resolution: s.facts.resolution,
        frame_rate: None,
        uri_query,
        // Both tracks, and their own init segments to play apart.
        split: s
            .facts
            .track_codecs
            .as_ref()
            .filter(|_| s.track_inits.is_some())
            .map(|[v, a]| hls::SplitCodecs {
                video: v,
                audio: a,
                channels: s.facts.audio_channels,
            }),
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

pub(super) fn mpd(window: &Window, uri_query: &str) -> Answer {
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
