//! HLS under abuse, over raw sockets, against a release build of cascade
//! (`common::abuse::Node`, its RSS sampled): hundreds of requests parked
//! on parts that do not exist yet, readers that ask for segments and never
//! read them, and a flood of made-up session ids. `/healthz` must stay
//! fast, memory bounded, the parked requests answered or refused in
//! bounded time, the non-readers cut off, and a real LL-HLS player of the
//! same stream must keep getting every part.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::abuse::{Node, RSS_BUDGET_KIB};
use common::hls::{fetch, parse_playlist, part_numbers, wait_ok};
use common::http_attacks::{connect, read_head, read_to_end, time_healthz};
use common::{publish_ffmpeg, tail, tool, Clip};

const PLAYLIST: &str = "/live/abuse/index.m3u8";

const CONFIG: &str = "
[limits]
# Every attacker comes from 127.0.0.1.
max_connections_per_ip = 4000
[http]
idle_timeout_ms = 3000
";

/// An LL-HLS player in a thread: blocking reloads and hinted parts, as
/// hls.js does; counts parts and the longest wait between two.
struct Watcher {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<(u64, Duration, u64)>,
}

impl Watcher {
    fn start(port: u16) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut parts = 0u64;
            let mut errors = 0u64;
            let mut worst = Duration::ZERO;
            let mut last = Instant::now();
            let mut next = None;
            while !flag.load(Ordering::Relaxed) {
                let path = match next {
                    Some((m, i)) => format!("{PLAYLIST}?_HLS_msn={m}&_HLS_part={i}"),
                    None => PLAYLIST.to_string(),
                };
                let pl = fetch(port, &path);
                if pl.status != 200 {
                    errors += 1;
                    next = None;
                    continue;
                }
                let p = parse_playlist(&pl.text());
                let Some((m, i)) = p.preload_hint.as_deref().and_then(part_numbers) else {
                    errors += 1;
                    continue;
                };
                if let Some((lm, li, ..)) = p.parts.last() {
                    let part = fetch(port, &format!("/live/abuse/part{lm}.{li}.m4s"));
                    if part.status == 200 && part.body.get(4..8) == Some(b"moof") {
                        parts += 1;
                        worst = worst.max(last.elapsed());
                        last = Instant::now();
                    } else {
                        errors += 1;
                    }
                }
                next = Some((m, i));
            }
            (parts, worst, errors)
        });
        Watcher { stop, handle }
    }

    fn finish(self) -> (u64, Duration, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("watcher")
    }
}

#[test]
fn parked_requests_non_readers_and_session_floods_leave_the_node_bounded() {
    let node = Node::start(CONFIG, 0.0);
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &node.server.url("abuse"),
    );
    let first = wait_ok(node.http, PLAYLIST, Duration::from_secs(30));
    let p = parse_playlist(&first.text());
    let (seg, _) = *p.segments.first().expect("a complete segment");
    let watcher = Watcher::start(node.http);
    thread::sleep(Duration::from_secs(2));
    let rss = node.watch_rss();
    let since = Instant::now();

    // 1. 300 requests parked on the part two segments ahead: held up to
    //    three target durations, then answered (the part came) or 503.
    let live = parse_playlist(&fetch(node.http, PLAYLIST).text());
    let (hm, _) = part_numbers(live.preload_hint.as_deref().unwrap()).unwrap();
    let mut parked = Vec::new();
    for _ in 0..300 {
        let mut s = connect(node.http, None);
        let req = format!(
            "GET {PLAYLIST}?_HLS_msn={}&_HLS_part=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            hm + 2
        );
        s.write_all(req.as_bytes()).expect("send parked request");
        parked.push(s);
    }
    // 2. 50 readers of a whole segment that never read (4 KB buffers).
    let mut stuck = Vec::new();
    for _ in 0..50 {
        let mut s = connect(node.http, Some(4096));
        let req = format!("GET /live/abuse/seg{seg}.m4s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        s.write_all(req.as_bytes()).expect("send segment request");
        stuck.push(s);
    }
    // 3. 3,000 playlist requests, each with a made-up session id, on
    //    kept-alive connections.
    for c in 0..30 {
        let mut s = connect(node.http, None);
        let mut reqs = String::new();
        for i in 0..100 {
            reqs.push_str(&format!(
                "GET {PLAYLIST}?sid={} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                c * 1000 + i
            ));
        }
        s.write_all(reqs.as_bytes()).expect("send flood");
        let end = read_to_end(&mut s, Duration::from_millis(200));
        drop(end);
    }

    // /healthz stays fast throughout.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = time_healthz(node.http).expect("healthz during the attack");
        slowest = slowest.max(t);
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        slowest < Duration::from_millis(100),
        "healthz took {slowest:?} under the attack"
    );

    // The parked requests were all answered within three target durations
    // (6 s) and a margin: with the part (200) or without it (503).
    let mut answered = 0;
    for s in &mut parked {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        match read_head(s) {
            Ok((200 | 503, _, _)) => answered += 1,
            other => panic!("a parked request got {other:?}"),
        }
    }
    assert_eq!(answered, parked.len());
    assert!(since.elapsed() < Duration::from_secs(20));

    // The non-readers were cut off after the idle timeout (3 s), with at
    // most about two pieces of the segment held for each.
    thread::sleep(Duration::from_secs(4));
    for s in &mut stuck {
        let end = read_to_end(s, Duration::from_secs(5));
        assert!(end.closed, "a reader that never read is still connected");
        assert!(
            end.bytes.len() < 1 << 20,
            "{} KiB were kept for a reader that never read",
            end.bytes.len() >> 10
        );
    }
    rss.assert_grew_at_most("hls abuse", RSS_BUDGET_KIB);

    // Sessions were counted, and the real player never stalled.
    let sessions = node.metric("cascade_hls_sessions{protocol=\"hls\"}");
    assert!(sessions >= 3000.0, "sessions gauge: {sessions}");
    let (parts, worst, errors) = watcher.finish();
    let secs = since.elapsed().as_secs_f64();
    assert!(
        parts as f64 >= secs * 3.0,
        "the player got {parts} parts in {secs:.1} s\n{}",
        tail(&node.server.log(), 30)
    );
    assert!(
        worst < Duration::from_millis(1500),
        "a {worst:?} gap between parts"
    );
    assert_eq!(errors, 0, "the player's requests failed");
    node.finish();
}
