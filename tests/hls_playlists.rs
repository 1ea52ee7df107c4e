//! The playlists and the MPD that `protocol::hls` and `protocol::dash`
//! render, read by real players: ffmpeg cuts a clip into fMP4 segments, the
//! test writes cascade's own `master.m3u8`, `index.m3u8` and `index.mpd` for
//! them, serves the folder over HTTP on loopback, and ffprobe (its HLS and
//! DASH demuxers) decodes every frame through them. The server records each
//! request, so the test also sees that every URI carried the query suffix.
//!
//! ffmpeg and ffprobe are required peers, like in the end-to-end tests:
//! a missing one fails the test (scripts/install-test-deps.sh installs them).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use cascade::protocol::dash::{render_mpd, Mpd, TimelineSegment, UtcTiming};
use cascade::protocol::hls::{
    parse_asset, parse_query, render_media, render_multivariant, Asset, MediaPlaylist, Part,
    Segment, Skip, Variant,
};
use common::{run_with_timeout, tool};

const T: Duration = Duration::from_secs(120);
const FPS: u64 = 30;
const SECONDS: u64 = 6;
const TIMESCALE: u32 = 90_000;

/// The query a player's first request carried; `parse_query` turns it into
/// the suffix every URI of the playlists must repeat.
const REQUEST_QUERY: &str = "token=abc&sid=42&_HLS_msn=3";

/// A folder served over HTTP/1.1 on loopback: files by name, `Range`
/// honoured, every request target recorded. Stops when dropped.
struct FileServer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FileServer {
    fn start(dir: &Path) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let dir = dir.to_path_buf();
        let (log, halt) = (requests.clone(), stop.clone());
        let accept = thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (dir, log) = (dir.clone(), log.clone());
                        thread::spawn(move || serve(stream, &dir, &log));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FileServer {
            port,
            requests,
            stop,
            accept: Some(accept),
        }
    }

    fn url(&self, target: &str) -> String {
        format!("http://127.0.0.1:{}/{target}", self.port)
    }

    fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut self.requests.lock().unwrap())
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// One connection: requests in turn until the peer closes or goes quiet.
fn serve(stream: TcpStream, dir: &Path, log: &Mutex<Vec<String>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut range = None;
        let mut close = false;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("range") {
                    range = value.strip_prefix("bytes=").map(str::to_string);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        let target = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        log.lock().unwrap().push(target.clone());
        let path = target.split('?').next().unwrap_or("");
        let name = path.trim_start_matches('/');
        let body = if name.is_empty() || name.contains('/') || name.contains("..") {
            None
        } else {
            fs::read(dir.join(name)).ok()
        };
        let reply = match body {
            None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
            Some(body) => {
                let len = body.len();
                let (status, from, to) = match range.as_deref().and_then(|r| r.split_once('-')) {
                    Some((from, to)) => {
                        let from: usize = from.parse().unwrap_or(0);
                        let to: usize = to.parse().unwrap_or(len.saturating_sub(1));
                        (206, from.min(len), to.min(len.saturating_sub(1)))
                    }
                    None => (200, 0, len.saturating_sub(1)),
                };
                let part = if from <= to && len > 0 {
                    &body[from..=to]
                } else {
                    &[][..]
                };
                let mut head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n",
                    if status == 200 {
                        "OK"
                    } else {
                        "Partial Content"
                    },
                    part.len()
                );
                if status == 206 {
                    head.push_str(&format!("Content-Range: bytes {from}-{to}/{len}\r\n"));
                }
                head.push_str("\r\n");
                let mut reply = head.into_bytes();
                reply.extend_from_slice(part);
                reply
            }
        };
        if writer.write_all(&reply).is_err() || close {
            return;
        }
    }
}

/// The clip, cut by ffmpeg into `init.mp4` and `seg0.m4s`.. in a folder of
/// the test's own, the segment durations ffmpeg's own playlist gives, and
/// what that playlist decodes to.
struct Media {
    dir: tempfile::TempDir,
    durations: Vec<Duration>,
    reference: Vec<Probed>,
}

fn media() -> Media {
    let dir = common::temp_dir("cascade-hls-playlists-");
    let mut cmd = Command::new(tool("ffmpeg"));
    cmd.current_dir(dir.path())
        .args(["-y", "-hide_banner", "-nostdin", "-v", "error"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=320x240:rate={FPS}"))
        .args(["-f", "lavfi", "-i", "sine"])
        .args(["-t", &SECONDS.to_string()])
        .args(["-c:v", "libx264", "-g", &FPS.to_string(), "-c:a", "aac"])
        .args(["-f", "hls", "-hls_segment_type", "fmp4", "-hls_time", "1"])
        .args(["-hls_playlist_type", "vod"])
        .args(["-hls_fmp4_init_filename", "init.mp4"])
        .args(["-hls_segment_filename", "seg%d.m4s", "ffmpeg.m3u8"]);
    let out = run_with_timeout("ffmpeg-hls", cmd, T);
    assert!(out.success(), "ffmpeg: {}\n{}", out.describe(), out.stderr);
    let own = fs::read_to_string(dir.path().join("ffmpeg.m3u8")).expect("ffmpeg's playlist");
    let durations: Vec<Duration> = own
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|v| Duration::from_secs_f64(v.trim_end_matches(',').parse().expect("EXTINF")))
        .collect();
    assert!(
        durations.len() >= 4,
        "ffmpeg made {} segments",
        durations.len()
    );
    for msn in 0..durations.len() as u64 {
        // One part per segment, the whole segment: ffmpeg reads no parts,
        // but every URI the playlist names must exist.
        fs::copy(
            dir.path().join(Asset::Segment(msn).to_string()),
            dir.path().join(Asset::Part(msn, 0).to_string()),
        )
        .expect("copy part");
    }
    let reference = reference(&dir.path().join("ffmpeg.m3u8"));
    Media {
        dir,
        durations,
        reference,
    }
}

fn segments(durations: &[Duration], start: SystemTime) -> Vec<Segment> {
    durations
        .iter()
        .enumerate()
        .map(|(i, &duration)| Segment {
            msn: i as u64,
            duration,
            discontinuity: false,
            program_date_time: (i == 0).then_some(start),
            parts: vec![Part {
                duration,
                independent: true,
                gap: false,
                len: 1000,
            }],
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write manifest");
    path
}

/// One stream as ffprobe read it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Probed {
    codec: String,
    /// Frames decoded (`-count_frames`).
    frames: u64,
    /// Packets the demuxer delivered for it (`-count_packets`).
    packets: u64,
}

/// Every stream of `input`, decoded to the end.
fn probe(input: &str, extra: &[&str]) -> Vec<Probed> {
    let mut cmd = Command::new(tool("ffprobe"));
    cmd.args(["-v", "error"])
        .args(extra)
        .args([
            "-count_frames",
            "-count_packets",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(input);
    let out = run_with_timeout("ffprobe", cmd, T);
    assert!(
        out.success(),
        "ffprobe {input}: {}\n{}",
        out.describe(),
        out.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("ffprobe json");
    let count = |v: &serde_json::Value| v.as_str().and_then(|n| n.parse().ok()).unwrap_or(0);
    let mut streams: Vec<Probed> = json["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| Probed {
            codec: s["codec_name"].as_str().unwrap_or("?").to_string(),
            frames: count(&s["nb_read_frames"]),
            packets: count(&s["nb_read_packets"]),
        })
        .collect();
    streams.sort();
    streams
}

/// What ffmpeg's own playlist decodes to: the frames every rendition of
/// the same segments must give.
fn reference(own: &Path) -> Vec<Probed> {
    let streams = probe(own.to_str().unwrap(), &[]);
    assert_eq!(
        streams.iter().find(|s| s.codec == "h264").map(|s| s.frames),
        Some(FPS * SECONDS),
        "{streams:?}"
    );
    assert!(
        streams.iter().any(|s| s.codec == "aac" && s.frames > 0),
        "{streams:?}"
    );
    // Every packet decodes to one frame: nothing was lost on the way.
    for s in &streams {
        assert_eq!(s.frames, s.packets, "{streams:?}");
    }
    streams
}

/// Asserts every media request carried the suffix, and every segment was
/// fetched.
fn assert_requests(requests: &[String], suffix: &str, count: usize) {
    let mut fetched = BTreeSet::new();
    for target in requests {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let name = path.trim_start_matches('/');
        match parse_asset(name) {
            Some(Asset::Segment(msn)) => {
                fetched.insert(msn);
            }
            Some(Asset::Init | Asset::MediaPlaylist | Asset::Part(..)) => {}
            _ => continue,
        }
        assert_eq!(format!("?{query}"), suffix, "{target} lost the query");
    }
    assert_eq!(
        fetched,
        (0..count as u64).collect::<BTreeSet<_>>(),
        "segments fetched: {requests:?}"
    );
}

#[test]
fn ffprobe_decodes_every_frame_through_the_rendered_hls_playlists() {
    let media = media();
    let expected = &media.reference;
    let dir = media.dir.path();
    let query = parse_query(REQUEST_QUERY).expect("query");
    assert_eq!(query.rest, "?token=abc&sid=42");
    let start = SystemTime::now();
    let segs = segments(&media.durations, start);
    let longest = media.durations.iter().max().copied().unwrap();
    let playlist = MediaPlaylist {
        target_duration: longest,
        part_target: longest,
        media_sequence: 0,
        discontinuity_sequence: 0,
        segments: &segs,
        current: None,
        preload_hint: None,
        skip: Skip::No,
        ended: true,
        query: &query.rest,
        init_generation: None,
        track: None,
        byteranges: false,
    };
    let text = render_media(&playlist);
    assert!(text.contains("#EXT-X-PART:"), "{text}");
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    write(dir, "index.m3u8", &text);
    write(
        dir,
        "master.m3u8",
        &render_multivariant(&Variant {
            bandwidth: 1_000_000,
            average_bandwidth: None,
            codecs: "avc1.64000d,mp4a.40.2",
            resolution: Some((320, 240)),
            frame_rate: Some(FPS as f64),
            uri_query: &query.rest,
            split: None,
        }),
    );

    let server = FileServer::start(dir);
    let got = probe(&server.url(&format!("index.m3u8{}", query.rest)), &[]);
    assert_eq!(&got, expected, "index.m3u8:\n{text}");
    assert_requests(&server.take_requests(), &query.rest, segs.len());

    // Through the multivariant playlist: it must lead to the same media.
    let got = probe(&server.url(&format!("master.m3u8{}", query.rest)), &[]);
    assert_eq!(&got, expected);
    let requests = server.take_requests();
    assert!(
        requests.contains(&format!("/index.m3u8{}", query.rest)),
        "{requests:?}"
    );
    assert_requests(&requests, &query.rest, segs.len());
}

#[test]
fn a_legacy_client_plays_the_live_low_latency_playlist() {
    // The live form, with server control, parts and a preload hint for a
    // part that does not exist yet: ffmpeg's HLS demuxer knows none of the
    // low-latency tags, so it must play the segments from their EXTINF
    // lines alone, as any pre-LL client would.
    let media = media();
    let expected = &media.reference;
    let dir = media.dir.path();
    let segs = segments(&media.durations, SystemTime::now());
    let next = segs.len() as u64;
    let longest = media.durations.iter().max().copied().unwrap();
    let text = render_media(&MediaPlaylist {
        target_duration: longest,
        part_target: longest,
        media_sequence: 0,
        discontinuity_sequence: 0,
        segments: &segs,
        current: None,
        preload_hint: Some((next, 0)),
        skip: Skip::No,
        ended: false,
        query: "?sid=7",
        init_generation: None,
        track: None,
        byteranges: false,
    });
    assert!(text.contains("#EXT-X-PRELOAD-HINT"), "{text}");
    write(dir, "live.m3u8", &text);
    let server = FileServer::start(dir);
    // Start at the first segment and stop once reloads bring nothing new
    // (the playlist never grows here; ffmpeg 5.1 fails at once with a
    // counter of 1, so 2).
    let got = probe(
        &server.url("live.m3u8"),
        &["-live_start_index", "0", "-m3u8_hold_counters", "2"],
    );
    assert_eq!(&got, expected, "live.m3u8:\n{text}");
    let requests = server.take_requests();
    assert!(
        !requests.iter().any(|r| r.contains(&format!("part{next}."))),
        "a legacy client fetched the hinted part: {requests:?}"
    );
    assert_requests(&requests, "?sid=7", segs.len());
}

fn timeline(durations: &[Duration]) -> Vec<TimelineSegment> {
    let mut start = 0;
    durations
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let duration = (d.as_secs_f64() * f64::from(TIMESCALE)).round() as u64;
            let s = TimelineSegment {
                number: i as u64,
                start,
                duration,
            };
            start += duration;
            s
        })
        .collect()
}

fn mpd<'a>(
    durations: &[Duration],
    timeline: &'a [TimelineSegment],
    longest: Duration,
    ended: bool,
    query: &'a str,
) -> Mpd<'a> {
    let now = SystemTime::now();
    let total: Duration = durations.iter().sum();
    Mpd {
        availability_start_time: now - total,
        publish_time: now,
        timescale: TIMESCALE,
        segments: timeline,
        max_segment_duration: longest,
        min_buffer_time: longest,
        suggested_presentation_delay: longest * 3,
        minimum_update_period: longest,
        time_shift_buffer_depth: total,
        availability_time_offset: Some(longest.mul_f64(0.8)),
        target_latency: Some(longest * 3),
        codecs: "avc1.64000d,mp4a.40.2",
        width_height: Some((320, 240)),
        audio_sample_rate: Some(44_100),
        bandwidth: 1_000_000,
        utc_timing: UtcTiming::HttpXsDate("/time"),
        ended,
        query,
        split: None,
    }
}

#[test]
fn ffprobe_decodes_every_frame_through_the_rendered_mpd() {
    let media = media();
    let expected = &media.reference;
    let dir = media.dir.path();
    let longest = media.durations.iter().max().copied().unwrap();
    let timeline = timeline(&media.durations);
    let suffix = "?token=abc&sid=42";

    // The live form must be well-formed XML with the whole timeline.
    let live = render_mpd(&mpd(&media.durations, &timeline, longest, false, suffix));
    let doc = roxmltree::Document::parse(&live).unwrap_or_else(|e| panic!("{e}\n{live}"));
    assert_eq!(doc.root_element().attribute("type"), Some("dynamic"));
    assert!(
        live.contains("availabilityTimeComplete=\"false\""),
        "{live}"
    );

    // ffmpeg's DASH demuxer plays a dynamic MPD from the wall clock, not
    // from its first segment, so it reads the finished (static) form.
    let text = render_mpd(&mpd(&media.durations, &timeline, longest, true, suffix));
    write(dir, "index.mpd", &text);
    let server = FileServer::start(dir);
    let got = probe(&server.url("index.mpd"), &[]);
    // ffmpeg's DASH demuxer (5.1) gives every packet of a representation
    // the index of the representation's first stream, so in our muxed
    // representation the audio packets arrive as stream 0 and only the
    // video decodes. What it must still show: both tracks found, every
    // video frame decoded, and every packet of every segment delivered.
    let codecs = |v: &[Probed]| v.iter().map(|s| s.codec.clone()).collect::<BTreeSet<_>>();
    assert_eq!(codecs(&got), codecs(expected), "index.mpd:\n{text}");
    let video = got.iter().find(|s| s.codec == "h264").unwrap();
    assert_eq!(video.frames, FPS * SECONDS, "index.mpd:\n{text}");
    let packets = |v: &[Probed]| v.iter().map(|s| s.packets).sum::<u64>();
    assert_eq!(packets(&got), packets(expected), "index.mpd:\n{text}");
    let requests = server.take_requests();
    let media_requests: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains(".m4s") || r.contains(".mp4"))
        .collect();
    assert_requests(
        &media_requests.into_iter().cloned().collect::<Vec<_>>(),
        suffix,
        timeline.len(),
    );
    // Nothing was asked for that the MPD does not name.
    for r in &requests {
        let name = r.split('?').next().unwrap().trim_start_matches('/');
        assert!(
            matches!(
                parse_asset(name),
                Some(Asset::Mpd | Asset::Init | Asset::Segment(_))
            ) || name == "time",
            "unexpected request {r}"
        );
    }
}
