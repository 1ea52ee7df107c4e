//! HLS's separate-audio form end to end: ffmpeg publishes H.264/AAC over
//! RTMP, and the one-track playlists cascade makes from the same parts
//! (`audio.m3u8`, `video.m3u8`) are read by ffprobe and ffmpeg, which must
//! find only their own track; their parts are one-track fMP4 (checked box
//! by box and by ffprobe); a blocking reload works on `audio.m3u8`; and the
//! multivariant playlist offers the form after the muxed variant, which
//! ffmpeg still plays.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::hls::{fetch, fetch_playlist, parse_playlist, part_numbers, wait_ok};
use common::ops::{metric_sum, OpsServer};
use common::{ffmpeg_play, ffprobe, publish_ffmpeg, tail, temp_dir, tool, Clip, RunOutput};

const T: Duration = Duration::from_secs(30);

/// A stream published from the H.264/AAC clip, with two segments made.
fn live(name: &str) -> (OpsServer, common::ChildGuard) {
    let ops = OpsServer::start(&["--workers", "2"], &[]);
    let publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &ops.server.url(name),
    );
    wait_ok(ops.http, &format!("/live/{name}/index.m3u8"), T);
    (ops, publisher)
}

/// The boxes of one level of an MP4 file: (type, payload).
fn boxes(mut data: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 8 {
        let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        assert!(size >= 8 && size <= data.len(), "bad box size {size}");
        out.push((data[4..8].try_into().unwrap(), &data[8..size]));
        data = &data[size..];
    }
    assert!(data.is_empty(), "trailing bytes after the boxes");
    out
}

/// Payloads of every box at `path` (box types, outermost first).
fn find<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> Vec<&'a [u8]> {
    let Some((first, rest)) = path.split_first() else {
        return vec![data];
    };
    boxes(data)
        .into_iter()
        .filter(|(t, _)| t == *first)
        .flat_map(|(_, payload)| find(payload, rest))
        .collect()
}

/// The handler type (`vide`, `soun`) of every track of an init segment.
fn handlers(init: &[u8]) -> Vec<String> {
    find(init, &[b"moov", b"trak", b"mdia", b"hdlr"])
        .into_iter()
        // version and flags, pre_defined, then handler_type.
        .map(|h| String::from_utf8_lossy(&h[8..12]).to_string())
        .collect()
}

/// The track ids a fragment has runs of.
fn fragment_tracks(fragment: &[u8]) -> Vec<u32> {
    find(fragment, &[b"moof", b"traf", b"tfhd"])
        .into_iter()
        .map(|t| u32::from_be_bytes(t[4..8].try_into().unwrap()))
        .collect()
}

/// The track id of an init segment's only track.
fn init_track(init: &[u8]) -> u32 {
    let tkhd = find(init, &[b"moov", b"trak", b"tkhd"]);
    assert_eq!(tkhd.len(), 1, "more than one track");
    // Version 0: flags, creation and modification times, then the id.
    let at = if tkhd[0][0] == 1 { 20 } else { 12 };
    u32::from_be_bytes(tkhd[0][at..at + 4].try_into().unwrap())
}

/// Seconds of media ffmpeg's `-progress` output says it got through.
fn out_seconds(out: &RunOutput) -> f64 {
    out.stdout
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix("out_time_us="))
        .find_map(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1e6
}

/// ffmpeg plays `url` for four seconds and finds only `want` (`Video:
/// h264`, `Audio: aac`) among the streams it opened.
fn plays_only(url: &str, want: &str, other: &str) -> RunOutput {
    let out = ffmpeg_play(&tool("ffmpeg"), url, 4.0, "info", T);
    assert!(
        out.success(),
        "ffmpeg on {url} failed: {}\n{}",
        out.describe(),
        tail(&out.stderr, 30)
    );
    assert!(
        out.stderr.contains(want),
        "no `{want}` from {url}:\n{}",
        tail(&out.stderr, 30)
    );
    assert!(
        !out.stderr.contains(other),
        "`{other}` in {url}, which should have one track:\n{}",
        tail(&out.stderr, 30)
    );
    assert!(
        out_seconds(&out) >= 3.0,
        "only {} s of {url} played",
        out_seconds(&out)
    );
    out
}

#[test]
fn the_audio_and_the_video_playlist_each_decode_alone() {
    let (ops, _publisher) = live("apart");
    let base = format!("http://127.0.0.1:{}/live/apart", ops.http);
    for (file, kind, codec) in [
        ("audio.m3u8", "audio", "aac"),
        ("video.m3u8", "video", "h264"),
    ] {
        let (out, mut streams) = ffprobe(&format!("{base}/{file}"), T);
        assert!(
            out.success(),
            "ffprobe {file}: {}\n{}",
            out.describe(),
            out.stderr
        );
        // ffprobe lists the HLS program's streams, then the streams.
        streams.dedup();
        assert_eq!(
            streams,
            vec![(kind.to_string(), codec.to_string())],
            "ffprobe's streams of {file}"
        );
    }
    plays_only(&format!("{base}/audio.m3u8"), "Audio: aac", "Video:");
    let video = plays_only(&format!("{base}/video.m3u8"), "Video: h264", "Audio:");
    let frames = common::decoded_frames(&video);
    assert!(frames >= 60, "only {frames} video frames from video.m3u8");
}

#[test]
fn a_track_playlist_is_low_latency_hls_of_that_tracks_parts_only() {
    let (ops, _publisher) = live("tracks");
    thread::sleep(Duration::from_secs(3));
    let dir = temp_dir("cascade-split");
    for (file, suffix, other) in [("audio.m3u8", "a", "v"), ("video.m3u8", "v", "a")] {
        let f = fetch_playlist(ops.http, &format!("/live/tracks/{file}"));
        let text = f.text();
        for tag in [
            "#EXT-X-PART-INF:PART-TARGET=0.2",
            "CAN-BLOCK-RELOAD=YES",
            "CAN-SKIP-UNTIL=",
            "PART-HOLD-BACK=",
            "#EXT-X-PROGRAM-DATE-TIME:",
            &format!("#EXT-X-MAP:URI=\"init-{suffix}.mp4?"),
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part",
            "sid=",
        ] {
            assert!(text.contains(tag), "no `{tag}` in {file}:\n{text}");
        }
        // Every file it names is this track's.
        for uri in text.lines().filter_map(|l| {
            l.split("URI=\"")
                .nth(1)
                .or(Some(l).filter(|l| !l.starts_with('#')))
        }) {
            let name = uri.split(['?', '"']).next().unwrap();
            assert!(
                name.ends_with(&format!("-{suffix}.m4s")) || name == format!("init-{suffix}.mp4"),
                "{file} names {name}"
            );
            assert!(!name.contains(&format!("-{other}.")), "{file} names {name}");
        }
        let p = parse_playlist(&text);
        assert!(!p.segments.is_empty() && p.parts.len() >= 5, "{text}");
        // Every URL of the playlist carries this query (the session id).
        let query = text
            .split(&format!("init-{suffix}.mp4"))
            .nth(1)
            .and_then(|r| r.split('&').next())
            .unwrap()
            .to_string();
        assert!(query.starts_with("?sid="), "{text}");
        let init = &fetch(ops.http, &format!("/live/tracks/init-{suffix}.mp4{query}")).body;
        let handler = if suffix == "a" { "soun" } else { "vide" };
        assert_eq!(handlers(init), [handler]);
        // A part and a segment: one fragment (or a run of them) with one
        // track, the init segment's, that ffprobe reads as that track alone.
        let (m, i, ..) = *p.parts.last().unwrap();
        let part = fetch(
            ops.http,
            &format!("/live/tracks/part{m}.{i}-{suffix}.m4s{query}"),
        );
        assert_eq!(part.status, 200, "part {m}.{i}-{suffix}");
        let kind = if suffix == "a" { "audio" } else { "video" };
        assert_eq!(
            part.header("content-type").as_deref(),
            Some(format!("{kind}/mp4").as_str())
        );
        assert_eq!(fragment_tracks(&part.body), [init_track(init)]);
        let (sm, _) = *p.segments.last().unwrap();
        let seg = fetch(
            ops.http,
            &format!("/live/tracks/seg{sm}-{suffix}.m4s{query}"),
        );
        assert_eq!(seg.status, 200);
        let tracks = fragment_tracks(&seg.body);
        assert!(!tracks.is_empty() && tracks.iter().all(|t| *t == init_track(init)));
        let mut file_bytes = init.to_vec();
        file_bytes.extend_from_slice(&seg.body);
        let path = dir.path().join(format!("seg-{suffix}.mp4"));
        std::fs::write(&path, &file_bytes).unwrap();
        let (out, streams) = ffprobe(path.to_str().unwrap(), T);
        assert!(out.success(), "{}", out.stderr);
        assert_eq!(streams.len(), 1, "{streams:?}");
        assert_eq!(streams[0].0, kind);
    }
    // No such track, no such stream.
    assert_eq!(fetch(ops.http, "/live/tracks/part1.0-x.m4s").status, 404);
    assert_eq!(fetch(ops.http, "/live/nope/audio.m3u8").status, 404);
    // Only HLS requests were made: none counts as DASH.
    let page = ops.get("/metrics");
    let dash = metric_sum(&page, "cascade_hls_requests_total", &["protocol=\"dash\""]);
    assert_eq!(dash, 0.0, "HLS track requests counted as DASH:\n{page}");
    let playlists = metric_sum(
        &page,
        "cascade_hls_requests_total",
        &["protocol=\"hls\"", "kind=\"playlist\""],
    );
    assert!(
        playlists >= 2.0,
        "track playlists not counted as HLS playlists"
    );
}

#[test]
fn a_blocking_reload_of_the_audio_playlist_answers_when_the_part_exists() {
    let (ops, _publisher) = live("blockaudio");
    thread::sleep(Duration::from_secs(1));
    let mut waited = 0;
    for _ in 0..6 {
        let p = parse_playlist(&fetch(ops.http, "/live/blockaudio/audio.m3u8").text());
        let hint = p.preload_hint.clone().unwrap();
        assert!(hint.contains("-a.m4s"), "{hint}");
        let (m, i) = part_numbers(&hint).unwrap();
        let port = ops.http;
        // The hinted part is held until it is made, like the playlist.
        let part =
            thread::spawn(move || fetch(port, &format!("/live/blockaudio/part{m}.{i}-a.m4s")));
        let start = Instant::now();
        let pl = fetch(
            ops.http,
            &format!("/live/blockaudio/audio.m3u8?_HLS_msn={m}&_HLS_part={i}"),
        );
        let took = start.elapsed();
        assert_eq!(pl.status, 200, "{}", pl.text());
        let listed = parse_playlist(&pl.text());
        assert!(
            listed.parts.iter().any(|(pm, pi, ..)| (*pm, *pi) == (m, i))
                || listed.segments.iter().any(|(sm, _)| *sm == m),
            "the answer does not list part {m}.{i}:\n{}",
            pl.text()
        );
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        if took > Duration::from_millis(20) {
            waited += 1;
        }
        let part = part.join().unwrap();
        assert_eq!(part.status, 200, "{}", part.text());
        assert_eq!(&part.body[4..8], b"moof");
        assert_eq!(fragment_tracks(&part.body).len(), 1);
    }
    assert!(waited >= 3, "the reloads did not wait for their parts");
    assert_eq!(
        fetch(ops.http, "/live/blockaudio/audio.m3u8?_HLS_part=1").status,
        400
    );
}

#[test]
fn the_multivariant_playlist_offers_separate_audio_and_ffmpeg_keeps_the_muxed_variant() {
    let (ops, _publisher) = live("offer");
    let text = fetch(ops.http, "/live/offer/master.m3u8").text();
    let lines: Vec<&str> = text.lines().collect();
    let infs: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    assert_eq!(infs.len(), 2, "{text}");
    // The muxed variant first, the video-only one after it.
    assert!(lines[infs[0] + 1].starts_with("index.m3u8?sid="), "{text}");
    assert!(lines[infs[1] + 1].starts_with("video.m3u8?sid="), "{text}");
    let video_inf = lines[infs[1]];
    assert!(video_inf.contains("AUDIO=\"audio\""), "{text}");
    assert!(
        video_inf.contains("avc1.") && video_inf.contains("mp4a.40.2"),
        "the split variant's CODECS must list the audio too:\n{text}"
    );
    let audio = lines
        .iter()
        .find(|l| l.starts_with("#EXT-X-MEDIA:") && l.contains("GROUP-ID=\"audio\""))
        .unwrap_or_else(|| panic!("no audio rendition:\n{text}"));
    assert!(audio.contains("TYPE=AUDIO") && audio.contains("URI=\"audio.m3u8?sid="));
    // The clip's audio is mono.
    assert!(audio.contains("CHANNELS=\"1\""), "{text}");
    // Both variants play with the same session's URLs.
    let sid = |l: &str| {
        l.split("sid=")
            .nth(1)
            .unwrap()
            .split(['&', '"'])
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(sid(lines[infs[0] + 1]), sid(audio));
    assert_eq!(sid(lines[infs[1] + 1]), sid(audio));
    // The rendition's URL serves.
    let uri = audio.split("URI=\"").nth(1).unwrap().trim_end_matches('"');
    assert_eq!(fetch(ops.http, &format!("/live/offer/{uri}")).status, 200);

    // ffmpeg, given the multivariant playlist, opens both variants (a
    // program each) and still maps the muxed one's streams to its output.
    let url = format!("http://127.0.0.1:{}/live/offer/master.m3u8", ops.http);
    let out = ffmpeg_play(&tool("ffmpeg"), &url, 4.0, "info", T);
    assert!(
        out.success(),
        "ffmpeg on master.m3u8: {}\n{}",
        out.describe(),
        tail(&out.stderr, 40)
    );
    let programs = out.stderr.split("  Program ").collect::<Vec<_>>();
    assert_eq!(programs.len(), 3, "{}", tail(&out.stderr, 60));
    assert!(
        programs[1].contains("Stream #0:0: Video: h264")
            && programs[1].contains("Stream #0:1: Audio: aac"),
        "the first program is not the muxed variant:\n{}",
        out.stderr
    );
    let mapping: Vec<&str> = out
        .stderr
        .lines()
        .skip_while(|l| !l.starts_with("Stream mapping:"))
        .skip(1)
        .take_while(|l| l.starts_with("  Stream #"))
        .collect();
    assert_eq!(mapping.len(), 2, "{}", tail(&out.stderr, 40));
    assert!(
        mapping[0].contains("Stream #0:0 -> #0:0 (h264")
            && mapping[1].contains("Stream #0:1 -> #0:1 (aac"),
        "ffmpeg did not take the muxed variant:\n{}",
        tail(&out.stderr, 60)
    );
    assert!(common::decoded_frames(&out) >= 60);
}
