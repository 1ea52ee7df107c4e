//! Low-Latency HLS and DASH end to end: ffmpeg publishes over RTMP, and
//! ffmpeg/ffprobe read the LL-HLS playlist and the DASH manifest cascade
//! packages in memory; raw requests check the playlist's LL tags, blocking
//! reload timing, delta updates, a publisher reconnect, auth and an edge
//! packaging a stream it pulls from nginx-rtmp.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::edge::NginxOrigin;
use common::hls::{fetch, fetch_chunked, fetch_playlist, parse_playlist, part_numbers, wait_ok};
use common::ops::OpsServer;
use common::{decoded_frames, ffmpeg9, ffmpeg_play, publish_ffmpeg, tail, tool, Clip};

const T: Duration = Duration::from_secs(30);

fn playlist_path(name: &str) -> String {
    format!("/live/{name}/index.m3u8")
}

/// ffmpeg reads `url` for a few seconds and decodes both tracks.
fn assert_decodes(ffmpeg: &std::path::Path, url: &str, video: &str, audio: &str) {
    let out = ffmpeg_play(ffmpeg, url, 4.0, "info", T);
    assert!(
        out.success(),
        "ffmpeg on {url} failed: {}\n{}",
        out.describe(),
        tail(&out.stderr, 30)
    );
    for want in [format!("Video: {video}"), format!("Audio: {audio}")] {
        assert!(
            out.stderr.contains(&want),
            "expected `{want}` from {url} in:\n{}",
            tail(&out.stderr, 30)
        );
    }
    let frames = decoded_frames(&out);
    assert!(frames >= 60, "only {frames} frames decoded from {url}");
    let problems = decode_problems(&out.stderr);
    assert!(
        problems.is_empty(),
        "decode problems reading {url}: {problems:#?}\n{}",
        tail(&out.stderr, 30)
    );
}

/// The lines of ffmpeg's log that say the media it played was damaged.
///
/// Given a multivariant playlist, ffmpeg opens every variant to probe it
/// and then stops reading those it does not play; ffmpeg 9 reports the
/// packet it was cut off in as corrupt, naming the input stream (`[in#0/hls
/// ...] Packet corrupt (stream = 3, ...)`, after the same from the fMP4
/// reader inside). Those reports are left out when the stream they name is
/// not one ffmpeg maps to its output; every other corrupt packet counts.
fn decode_problems(stderr: &str) -> Vec<&str> {
    let mapped: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Stream #0:")?.split_once(" -> "))
        .map(|(input, _)| input)
        .collect();
    let mut problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Non-monotonic"))
        .collect();
    let corrupt = || stderr.lines().filter(|l| l.contains("corrupt"));
    let inner: Vec<&str> = corrupt().filter(|l| l.starts_with("[mov,")).collect();
    let mut abandoned = 0;
    for line in corrupt().filter(|l| !l.starts_with("[mov,")) {
        let stream = line
            .split("Packet corrupt (stream = ")
            .nth(1)
            .and_then(|r| r.split(',').next());
        match stream {
            Some(n) if !mapped.contains(&n) => abandoned += 1,
            _ => problems.push(line),
        }
    }
    // Each abandoned packet was reported once inside too; more inner
    // reports than that are damage in what was played.
    if inner.len() > abandoned {
        problems.extend(inner);
    }
    problems
}

fn packaged(clip: Clip, ffmpeg: &std::path::Path, name: &str, video: &str, audio: &str) {
    let ops = OpsServer::start(&["--workers", "2"], &[]);
    let _publisher = publish_ffmpeg(ffmpeg, &clip.path(), &ops.server.url(name));
    wait_ok(ops.http, &playlist_path(name), T);
    let base = format!("http://127.0.0.1:{}/live/{name}", ops.http);
    assert_decodes(ffmpeg, &format!("{base}/index.m3u8"), video, audio);
    assert_decodes(ffmpeg, &format!("{base}/master.m3u8"), video, audio);
    // Debian's ffmpeg 5.1 DASH reader feeds a muxed representation's audio
    // to the video decoder; ffmpeg 9 reads it right.
    assert_decodes(&ffmpeg9(), &format!("{base}/index.mpd"), video, audio);
}

#[test]
fn ffmpeg_decodes_h264_and_aac_from_ll_hls_and_dash() {
    packaged(Clip::H264Aac, &tool("ffmpeg"), "h264", "h264", "aac");
}

#[test]
fn ffmpeg9_decodes_hevc_and_opus_from_ll_hls_and_dash() {
    packaged(Clip::HevcOpus, &ffmpeg9(), "hevc", "hevc", "opus");
}

#[test]
fn ffmpeg9_decodes_av1_and_opus_from_ll_hls_and_dash() {
    packaged(Clip::Av1Opus, &ffmpeg9(), "av1", "av1", "opus");
}

#[test]
fn the_playlist_is_low_latency_hls_with_parts_hints_and_dates() {
    let ops = OpsServer::start(&[], &[]);
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &ops.server.url("tags"),
    );
    wait_ok(ops.http, &playlist_path("tags"), T);
    // Two segments in: parts of the live edge and a complete segment.
    thread::sleep(Duration::from_secs(5));
    let f = fetch_playlist(ops.http, &playlist_path("tags"));
    assert_eq!(
        f.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    let text = f.text();
    for tag in [
        "#EXTM3U",
        "#EXT-X-TARGETDURATION:",
        "#EXT-X-PART-INF:PART-TARGET=0.2",
        "CAN-BLOCK-RELOAD=YES",
        "PART-HOLD-BACK=",
        "CAN-SKIP-UNTIL=",
        "#EXT-X-MAP:URI=\"init.mp4?",
        "#EXT-X-PROGRAM-DATE-TIME:",
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part",
    ] {
        assert!(text.contains(tag), "no `{tag}` in:\n{text}");
    }
    let p = parse_playlist(&text);
    assert!(!p.segments.is_empty(), "no complete segment:\n{text}");
    assert!(p.parts.len() >= 5, "few parts:\n{text}");
    for (m, i, d, _) in &p.parts {
        assert!(
            *d <= 0.2 + 1e-6,
            "part {m}.{i} lasts {d} s, over the part target"
        );
    }
    // Segments start on keyframes: each segment's first part is independent.
    for (m, i, _, independent) in &p.parts {
        if *i == 0 {
            assert!(
                independent,
                "segment {m} does not start independent:\n{text}"
            );
        }
    }
    // Every URL carries the session id the server gave this player.
    assert!(text.contains("sid="), "no session id in the URLs:\n{text}");
    // The hinted part is the next one.
    let (hm, hi) = part_numbers(p.preload_hint.as_deref().unwrap()).unwrap();
    let (lm, li, ..) = *p.parts.last().unwrap();
    assert!(
        (hm, hi) == (lm, li + 1) || (hm, hi) == (lm + 1, 0),
        "hint {hm}.{hi} after last part {lm}.{li}"
    );
    // The media: init, a part and a segment are fMP4 boxes.
    let init = fetch(ops.http, "/live/tags/init.mp4");
    assert_eq!(init.status, 200);
    assert_eq!(&init.body[4..8], b"ftyp");
    let (m, i, ..) = p.parts[0];
    let part = fetch(ops.http, &format!("/live/tags/part{m}.{i}.m4s"));
    assert_eq!(part.status, 200);
    assert_eq!(&part.body[4..8], b"moof");
    assert!(part
        .header("cache-control")
        .is_some_and(|c| c.contains("max-age")));
    let (sm, _) = p.segments[0];
    let seg = fetch(ops.http, &format!("/live/tags/seg{sm}.m4s"));
    assert_eq!(seg.status, 200);
    assert_eq!(&seg.body[4..8], b"moof");
    // Gone and malformed requests.
    assert_eq!(fetch(ops.http, "/live/tags/seg999999.m4s").status, 404);
    assert_eq!(fetch(ops.http, "/live/nope/index.m3u8").status, 404);
    assert_eq!(
        fetch(ops.http, "/live/tags/index.m3u8?_HLS_part=1").status,
        400
    );
    assert_eq!(
        fetch(ops.http, "/live/tags/index.m3u8?_HLS_msn=99999").status,
        400
    );
    let mv = fetch(ops.http, "/live/tags/master.m3u8").text();
    assert!(
        mv.contains("#EXT-X-STREAM-INF:") && mv.contains("avc1.") && mv.contains("mp4a.40.2"),
        "multivariant:\n{mv}"
    );
    let time = fetch(ops.http, "/time");
    assert_eq!(time.status, 200);
    assert!(time.text().starts_with("20"), "{}", time.text());
    assert_eq!(
        time.header("access-control-allow-origin").as_deref(),
        Some("*"),
        "the DASH clock must be readable from other origins"
    );
    let mpd = fetch(ops.http, "/live/tags/index.mpd").text();
    assert!(
        mpd.contains("type=\"dynamic\"") && mpd.contains("availabilityTimeOffset"),
        "mpd:\n{mpd}"
    );
    // DASH gets audio and video as separate adaptation sets.
    for want in [
        "contentType=\"video\"",
        "contentType=\"audio\"",
        "init-a.mp4",
        "seg$Number$-v.m4s",
    ] {
        assert!(mpd.contains(want), "no `{want}` in the MPD:\n{mpd}");
    }
    for (path, kind) in [
        ("/live/tags/init-v.mp4".to_string(), b"ftyp"),
        ("/live/tags/init-a.mp4".to_string(), b"ftyp"),
        (format!("/live/tags/seg{sm}-v.m4s"), b"moof"),
        (format!("/live/tags/seg{sm}-a.m4s"), b"moof"),
    ] {
        let f = fetch(ops.http, &path);
        assert_eq!(f.status, 200, "{path}");
        assert_eq!(&f.body[4..8], kind, "{path}");
        assert!(f.body.len() < seg.body.len(), "{path} is not one track");
    }
}

#[test]
fn a_blocking_reload_answers_as_soon_as_the_part_exists() {
    let ops = OpsServer::start(&[], &[]);
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &ops.server.url("block"),
    );
    wait_ok(ops.http, &playlist_path("block"), T);
    thread::sleep(Duration::from_secs(1));
    let mut gaps = Vec::new();
    for _ in 0..10 {
        let p = parse_playlist(&fetch(ops.http, &playlist_path("block")).text());
        let hint = p.preload_hint.clone().unwrap();
        let (m, i) = part_numbers(&hint).unwrap();
        let port = ops.http;
        // The hinted part and the playlist that lists it, asked together:
        // both wait for the same part and must come back together.
        let part = thread::spawn(move || fetch(port, &format!("/live/block/part{m}.{i}.m4s")));
        let start = Instant::now();
        let pl = fetch(
            ops.http,
            &format!("/live/block/index.m3u8?_HLS_msn={m}&_HLS_part={i}"),
        );
        let pl_done = start.elapsed();
        let part = part.join().unwrap();
        assert_eq!(pl.status, 200, "{}", pl.text());
        assert_eq!(part.status, 200);
        assert_eq!(&part.body[4..8], b"moof");
        let listed = parse_playlist(&pl.text());
        assert!(
            listed.parts.iter().any(|(pm, pi, ..)| (*pm, *pi) == (m, i))
                || listed.segments.iter().any(|(sm, _)| *sm == m),
            "the answer does not list part {m}.{i}:\n{}",
            pl.text()
        );
        // It waited for the part (up to a part's duration), not a timer.
        assert!(pl_done < Duration::from_millis(1500), "took {pl_done:?}");
        gaps.push(pl.took.abs_diff(part.took));
    }
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        median < Duration::from_millis(30),
        "playlist and part answers {gaps:?} apart"
    );
    let page = ops.get("/metrics");
    assert!(
        common::ops::metric_value(&page, "cascade_hls_blocked_reloads_total").unwrap_or(0.0) >= 5.0,
        "blocked reloads not counted"
    );
}

#[test]
fn delta_updates_skip_old_segments() {
    // Short segments so the window outgrows CAN-SKIP-UNTIL quickly: the
    // clip's GOP is 2 s, so segments are 2 s and skipping starts at 12 s.
    let ops = OpsServer::start(&[], &[("CASCADE_HLS_WINDOW_SEGMENTS", "10")]);
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &ops.server.url("delta"),
    );
    wait_ok(ops.http, &playlist_path("delta"), T);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let full = parse_playlist(&fetch(ops.http, &playlist_path("delta")).text());
        let d = fetch(ops.http, "/live/delta/index.m3u8?_HLS_skip=YES");
        let text = d.text();
        let delta = parse_playlist(&text);
        if let Some(n) = delta.skipped {
            assert!(n >= 1);
            assert!(text.contains("#EXT-X-VERSION:9") || text.contains("#EXT-X-VERSION:1"));
            assert!(
                delta.segments.len() < full.segments.len(),
                "the delta lists as many segments as the full playlist"
            );
            assert_eq!(delta.segments.last(), full.segments.last());
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no EXT-X-SKIP after 40 s:\n{text}"
        );
        thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_publisher_reconnect_is_a_discontinuity_and_players_keep_going() {
    let ops = OpsServer::start(&[], &[("CASCADE_STREAM_PUBLISHER_GRACE_MS", "10000")]);
    let url = ops.server.url("again");
    let first = publish_ffmpeg(&tool("ffmpeg"), &Clip::H264Aac.path(), &url);
    wait_ok(ops.http, &playlist_path("again"), T);
    thread::sleep(Duration::from_secs(3));
    let before = parse_playlist(&fetch(ops.http, &playlist_path("again")).text());
    drop(first);
    thread::sleep(Duration::from_secs(1));
    let _second = publish_ffmpeg(&tool("ffmpeg"), &Clip::H264Aac.path(), &url);
    // A player reading the playlist through the change keeps decoding.
    let player = {
        let url = format!("http://127.0.0.1:{}/live/again/index.m3u8", ops.http);
        thread::spawn(move || ffmpeg_play(&tool("ffmpeg"), &url, 6.0, "info", T))
    };
    let deadline = Instant::now() + T;
    let after = loop {
        let p = parse_playlist(&fetch(ops.http, &playlist_path("again")).text());
        if p.discontinuities > 0 && p.segments.len() > 1 {
            break p;
        }
        assert!(Instant::now() < deadline, "no discontinuity: {p:?}");
        thread::sleep(Duration::from_millis(500));
    };
    assert!(after.media_sequence >= before.media_sequence);
    assert!(
        after.program_date_times >= 2,
        "a date-time after the discontinuity"
    );
    let out = player.join().unwrap();
    assert!(out.success(), "{}", tail(&out.stderr, 30));
    assert!(decoded_frames(&out) >= 120, "{}", tail(&out.stderr, 30));
}

#[test]
fn tokens_guard_the_playlist_and_travel_in_its_urls() {
    let secret = "hls-secret";
    let ops = OpsServer::start(
        &[],
        &[
            ("CASCADE_AUTH_PLAY", "token"),
            ("CASCADE_AUTH_SECRET", secret),
        ],
    );
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &ops.server.url("guarded"),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cascade"))
        .args(["sign", "--secret", secret, "--action", "play"])
        .args(["--stream", "live/guarded", "--ttl", "600"])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap();
    let token = token.lines().next().unwrap().to_string();
    let ok = wait_ok(
        ops.http,
        &format!("/live/guarded/index.m3u8?token={token}"),
        T,
    );
    let text = ok.text();
    assert!(
        text.contains(&format!("token={token}")),
        "the token is not carried into the URLs:\n{text}"
    );
    assert_eq!(fetch(ops.http, "/live/guarded/index.m3u8").status, 401);
    assert_eq!(
        fetch(ops.http, "/live/guarded/index.m3u8?token=forged").status,
        403
    );
    assert_eq!(fetch(ops.http, "/live/guarded/init.mp4").status, 401);
    assert_eq!(
        fetch(ops.http, &format!("/live/guarded/init.mp4?token={token}")).status,
        200
    );
    let url = format!(
        "http://127.0.0.1:{}/live/guarded/index.m3u8?token={token}",
        ops.http
    );
    let out = ffmpeg_play(&tool("ffmpeg"), &url, 3.0, "info", T);
    assert!(
        out.success() && decoded_frames(&out) > 30,
        "{}",
        tail(&out.stderr, 30)
    );
}

#[test]
fn an_edge_packages_a_stream_it_pulls_on_the_first_playlist_request() {
    let origin = NginxOrigin::start();
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &origin.server.url("pulled"),
    );
    let deadline = Instant::now() + T;
    while origin.clients("pulled").1 != 1 {
        assert!(Instant::now() < deadline, "publisher never reached nginx");
        thread::sleep(Duration::from_millis(100));
    }
    let origin_url = format!("rtmp://127.0.0.1:{}/live", origin.server.port);
    let edge = OpsServer::start(
        &["--workers", "2", "--origin", &origin_url],
        &[("CASCADE_EDGE_START_TIMEOUT_MS", "5000")],
    );
    let first = fetch(edge.http, &playlist_path("pulled"));
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.text().contains("#EXT-X-PART:"));
    let url = format!("http://127.0.0.1:{}/live/pulled/index.m3u8", edge.http);
    assert_decodes(&tool("ffmpeg"), &url, "h264", "aac");
    assert_eq!(
        edge.metric("cascade_edge_pull_starts_total"),
        Some(1.0),
        "one pull for every HLS request"
    );
}

#[test]
fn the_segment_being_made_streams_chunked_part_by_part() {
    let ops = OpsServer::start(&[], &[]);
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &ops.server.url("chunked"),
    );
    wait_ok(ops.http, &playlist_path("chunked"), T);
    let p = parse_playlist(&fetch(ops.http, &playlist_path("chunked")).text());
    let (live, _) = part_numbers(p.preload_hint.as_deref().unwrap()).unwrap();
    // Chunks arrive as parts are made; the body ends with the last-chunk.
    let got = fetch_chunked(ops.http, &format!("/live/chunked/seg{live}.m4s"), "");
    assert!(got.head.starts_with("HTTP/1.1 200"), "{}", got.head);
    assert!(got.head.contains("Transfer-Encoding: chunked"));
    let spread = *got.arrivals.last().unwrap() - got.arrivals[0];
    assert!(
        spread >= Duration::from_millis(200),
        "the segment came at once ({spread:?}), not part by part"
    );
    assert!(got.arrivals.len() >= 2);
    // The body is the segment the window now holds, byte for byte.
    let body = got.body;
    let whole = fetch(ops.http, &format!("/live/chunked/seg{live}.m4s"));
    assert_eq!(whole.status, 200);
    assert_eq!(
        body, whole.body,
        "the streamed segment differs from the complete one"
    );
}

#[test]
fn streams_are_packaged_only_while_players_ask() {
    let ops = OpsServer::start(&[], &[("CASCADE_HLS_SESSION_TIMEOUT_MS", "2000")]);
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &ops.server.url("demand"),
    );
    let parts = || {
        ops.metric("cascade_hls_part_latency_seconds_count")
            .unwrap_or(0.0)
    };
    // Published and played over RTMP only: nothing is packaged.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(parts(), 0.0, "an unwatched stream was packaged");
    // The first request starts packaging and waits for a segment.
    let first = wait_ok(ops.http, &playlist_path("demand"), T);
    assert!(!parse_playlist(&first.text()).segments.is_empty());
    let made = parts();
    assert!(made >= 5.0, "{made} parts");
    // Nobody asks any more: packaging stops within the timeout and a GOP.
    thread::sleep(Duration::from_secs(6));
    let idle = parts();
    thread::sleep(Duration::from_secs(3));
    assert_eq!(parts(), idle, "packaging went on with no player");
    // And starts again for the next player.
    wait_ok(ops.http, &playlist_path("demand"), T);
    assert!(parts() > idle);
}
