//! The HTTP service under abuse, over raw sockets, against a release build
//! of cascade (`common::abuse::Node`: one node at a time, its RSS sampled).
//!
//! Slow request heads and an endless header must not slow `/healthz`, add
//! threads or hoard memory; pipelined requests are answered in order, and
//! a client that never reads its answers is cut off; malformed heads get
//! their 4xx/5xx and lose only their own connection; players that stop
//! reading (HTTP-FLV and WebSocket-FLV) are cut off by the slow-player
//! policy; WebSocket protocol errors close only the connection that made
//! them. Wherever a stream is involved, ffmpeg publishes the test clip over
//! RTMP and an HTTP-FLV player of it must keep receiving throughout.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::abuse::{Node, RSS_BUDGET_KIB};
use common::engine::{stat_u64, stats};
use common::http_attacks::*;
use common::{publish_ffmpeg, tail, tool, ChildGuard, Clip};

/// The stream every test with media plays.
const STREAM: &str = "/live/abuse.flv";

/// Longest gap between two video tags the watcher may see (the clip has
/// 30 frames a second).
const MAX_GAP: Duration = Duration::from_millis(1500);

/// A node with `config`, ffmpeg publishing the clip to `live/abuse`, and an
/// HTTP-FLV player of it that already has its first second of video.
fn node_with_stream(config: &str) -> (Node, ChildGuard, FlvWatch) {
    let node = Node::start(config, 0.0);
    let publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &node.server.url("abuse"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut sock = connect(node.http, None);
        let req = format!("GET {STREAM} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        sock.write_all(req.as_bytes()).expect("send play");
        if matches!(read_head(&mut sock), Ok((200, _, _))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{STREAM} never answered 200\n{}",
            tail(&node.server.log(), 30)
        );
        thread::sleep(Duration::from_millis(200));
    }
    let watch = FlvWatch::start(node.http, STREAM);
    let r = watch.wait_video(30, Duration::from_secs(10));
    assert!(r.video_tags >= 30, "the watcher got no video: {r:?}");
    (node, publisher, watch)
}

/// Checks the watcher kept receiving (a third of the clip's 30 fps over
/// the attack at least, no long stall, and more after it), the publisher
/// is still up, and the node neither died nor panicked.
fn finish(case: &str, node: Node, mut publisher: ChildGuard, watch: FlvWatch, since: Instant) {
    // A second of video more after the attack: still flowing.
    let now = watch.report().video_tags;
    watch.wait_video(now + 30, Duration::from_secs(5));
    let r = watch.stop();
    let min = (10.0 * since.elapsed().as_secs_f64()) as u64;
    assert_kept_flowing(case, &r, min, MAX_GAP);
    assert!(
        publisher.try_status().is_none(),
        "{case}: the ffmpeg publisher exited\n{}",
        tail(&publisher.stderr_text(), 20)
    );
    time_healthz(node.http).expect("healthz after the attack");
    node.finish();
}

// ---------------------------------------------------------------------------
// 1. Slowloris, an endless header and silent connections.

const SLOW_CLIENTS: usize = 400;
const SILENT_CLIENTS: usize = 8;
const HEADER_TIMEOUT: Duration = Duration::from_millis(2000);

const HEAD_TIMEOUTS: &str = r#"cascade_limit_hits_total{limit="http_header_timeout_ms"}"#;
const HEADS_TOO_LARGE: &str = r#"cascade_limit_hits_total{limit="http_max_header_bytes"}"#;

const SLOWLORIS_CONFIG: &str = "
[limits]
# Every attacker comes from 127.0.0.1 and is replaced as soon as it is
# closed; the per-address limit (shared with RTMP) must not be what
# stops them.
max_connections_per_ip = 4000
[http]
header_timeout_ms = 2000
";

#[test]
fn slowloris_and_an_endless_header_leave_healthz_fast_and_threads_and_memory_bounded() {
    let node = Node::start(SLOWLORIS_CONFIG, 0.0);
    for _ in 0..5 {
        time_healthz(node.http).expect("healthz before the attack");
    }
    let pid = node.pid();
    let threads_before = thread_count(pid);
    let active_before = stat_u64(&stats(node.http), &["total", "connections_active"]);
    let timeouts_before = node.metric(HEAD_TIMEOUTS);
    let too_large_before = node.metric(HEADS_TOO_LARGE);
    let rss = node.watch_rss();
    let stop = AtomicBool::new(false);
    let started = Instant::now();

    let (probes, threads_seen, (closed, still_open), endless) = thread::scope(|s| {
        let holder = s.spawn(|| hold(node.http, SLOW_CLIENTS, SILENT_CLIENTS, &stop));
        let endless = s.spawn(|| {
            let mut rounds = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                rounds.push(endless_header(node.http));
                thread::sleep(Duration::from_millis(100));
            }
            rounds
        });
        // The first slow clients reach their head timeout at about 2 s:
        // the probes span that and the next two generations.
        thread::sleep(Duration::from_millis(1500));
        let mut probes = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..20 {
            probes.push(time_healthz(node.http));
            threads.push(thread_count(pid));
            thread::sleep(Duration::from_millis(250));
        }
        stop.store(true, Ordering::Relaxed);
        (
            probes,
            threads,
            holder.join().unwrap(),
            endless.join().unwrap(),
        )
    });
    let attack = started.elapsed();

    // /healthz on a fresh connection, every 250 ms of the attack.
    let probes: Vec<Duration> = probes
        .into_iter()
        .map(|p| p.expect("a healthz probe failed during the attack"))
        .collect();
    let slowest = probes.iter().max().copied().unwrap_or_default();
    eprintln!("healthz during the attack: {probes:?} (slowest {slowest:?})");
    assert!(
        slowest < Duration::from_millis(100),
        "healthz took {slowest:?} during the attack"
    );

    // Thread per core: connections add no threads.
    eprintln!("threads: {threads_before} before, {threads_seen:?} during");
    assert!(
        threads_seen.iter().all(|&t| t == threads_before),
        "the thread count moved from {threads_before}: {threads_seen:?}"
    );

    // Measured on the 2-core box (io_uring and epoll alike): the peak grew
    // by 6.6-7.3 MiB over an 8 MiB baseline, with 408 clients held at any
    // time, 1,224 closed over the run, and 25-70 MiB written by the
    // endless headers. The shared 16 MiB budget leaves about twice that;
    // keeping what an endless header sends, or 10 KiB per closed client,
    // would go past it.
    rss.assert_grew_at_most("slowloris", RSS_BUDGET_KIB);

    // Every slow client was closed by the head timeout, with a 408.
    let slow: Vec<&Closed> = closed.iter().filter(|c| !c.silent).collect();
    let silent: Vec<&Closed> = closed.iter().filter(|c| c.silent).collect();
    let lives = |v: &[&Closed]| {
        let min = v.iter().map(|c| c.lived).min().unwrap_or_default();
        let max = v.iter().map(|c| c.lived).max().unwrap_or_default();
        (min, max)
    };
    eprintln!(
        "in {attack:?}: {} slow and {} silent clients closed (lifetimes {:?} and {:?}), \
         {} still open",
        slow.len(),
        silent.len(),
        lives(&slow),
        lives(&silent),
        still_open.len()
    );
    assert!(
        slow.len() >= 2 * SLOW_CLIENTS && silent.len() >= 2 * SILENT_CLIENTS,
        "too few clients were closed: {} slow, {} silent",
        slow.len(),
        silent.len()
    );
    let in_time = |c: &&Closed| {
        c.lived + Duration::from_millis(50) >= HEADER_TIMEOUT
            && c.lived <= HEADER_TIMEOUT + Duration::from_millis(1500)
    };
    for c in &slow {
        let text = String::from_utf8_lossy(&c.got);
        assert!(
            in_time(c) && text.starts_with("HTTP/1.1 408 "),
            "a slow client ({} bytes sent) was closed after {:?} with {text:?}",
            c.sent,
            c.lived
        );
    }
    for c in &silent {
        assert!(
            in_time(c) && c.got.is_empty(),
            "a silent client was closed after {:?} with {:?}",
            c.lived,
            String::from_utf8_lossy(&c.got)
        );
    }
    let oldest = still_open.iter().max().copied().unwrap_or_default();
    assert!(
        oldest <= HEADER_TIMEOUT + Duration::from_millis(1500),
        "a client was still open {oldest:?} after it connected"
    );

    // Each endless header got a 431 once it passed max_header_bytes.
    let written: u64 = endless.iter().map(|(_, sent)| sent).sum();
    eprintln!(
        "endless header: {} rounds, {} KiB written in all",
        endless.len(),
        written >> 10
    );
    assert!(!endless.is_empty(), "no endless-header round ran");
    for (end, sent) in &endless {
        assert!(
            end.closed && end.status() == Some(431) && *sent >= 8192,
            "an endless header ({sent} bytes written) ended {end:?}"
        );
    }

    // Counted where an operator looks.
    let timeouts = node.metric(HEAD_TIMEOUTS) - timeouts_before;
    let too_large = node.metric(HEADS_TOO_LARGE) - too_large_before;
    assert!(
        timeouts >= closed.len() as f64 && too_large >= endless.len() as f64,
        "{} head timeouts counted {timeouts}, {} endless heads counted {too_large}",
        closed.len(),
        endless.len()
    );

    // Nothing held stays behind on the server.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let active = stat_u64(&stats(node.http), &["total", "connections_active"]);
        if active <= active_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{active} connections still active after the attack ({active_before} before)"
        );
        thread::sleep(Duration::from_millis(100));
    }
    node.finish();
}

// ---------------------------------------------------------------------------
// 2. Pipelining, unread answers and malformed heads, beside a live stream.

const PIPELINE_CONFIG: &str = "
[limits]
# Answers a client may leave unread: small, so the cut comes quickly.
max_pending_output_bytes = 65536
[http]
max_body_bytes = 1024
";

/// Requests pipelined in one write.
const PIPELINED: usize = 250;

#[test]
fn pipelined_requests_are_answered_in_order_and_a_client_that_never_reads_is_cut_off() {
    let (node, publisher, watch) = node_with_stream(PIPELINE_CONFIG);
    let since = Instant::now();

    let want: Vec<Expect> = (0..PIPELINED)
        .map(|i| pipelined_request(i, i + 1 == PIPELINED))
        .collect();
    let wire: String = want.iter().map(|w| w.request.as_str()).collect();
    let mut sock = connect(node.http, None);
    sock.write_all(wire.as_bytes()).expect("one write");
    let end = read_to_end(&mut sock, IO);
    assert!(
        end.closed && !end.reset,
        "the pipelined connection ended {end:?}"
    );
    check_answers(&end.bytes, &want);
    eprintln!(
        "{PIPELINED} pipelined requests answered in order in {:?}",
        end.after
    );

    // A client that pipelines without reading, its receive buffer 4 KB.
    let unread = r#"cascade_limit_hits_total{limit="max_pending_output_bytes"}"#;
    let hits_before = node.metric(unread);
    let rss = node.watch_rss();
    let mut sock = connect(node.http, Some(4096));
    let peer = sock.local_addr().unwrap();
    sock.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let batch = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(500);
    let (mut pos, mut sent) = (0usize, 0u64);
    let mut refused = None;
    let flood = Instant::now();
    while sent < 64 << 20 && flood.elapsed() < Duration::from_secs(10) {
        match sock.write(&batch[pos..]) {
            Ok(n) => {
                sent += n as u64;
                pos = (pos + n) % batch.len();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let end = read_to_end(&mut sock, IO);
    eprintln!(
        "unread pipelining: {} KiB of requests in {:?} until {refused:?}; {} KiB of answers \
         left to read, reset: {}",
        sent >> 10,
        flood.elapsed(),
        end.bytes.len() >> 10,
        end.reset
    );
    assert!(
        refused.is_some() && end.closed,
        "a client that never read its answers was not cut off ({} KiB sent)",
        sent >> 10
    );
    assert!(
        end.bytes.len() < 4 << 20,
        "{} KiB of answers were kept for a client that never read",
        end.bytes.len() >> 10
    );
    rss.assert_grew_at_most("unread pipelining", RSS_BUDGET_KIB);
    assert!(
        node.metric(unread) > hits_before,
        "the cut-off was not counted in {unread}"
    );
    assert!(
        node.server
            .wait_log_line(peer, &["limit hit", "max_pending_output_bytes"], IO),
        "no limit-hit line for {peer}\n{}",
        tail(&node.server.log(), 20)
    );
    finish("pipelining", node, publisher, watch, since);
}

#[test]
fn malformed_heads_get_400_431_413_or_501_and_lose_only_their_own_connection() {
    let (node, publisher, watch) = node_with_stream(PIPELINE_CONFIG);
    let since = Instant::now();
    let errors_before = node.metric(r#"cascade_protocol_errors_total{kind="http_request"}"#);
    let many_headers: String = (0..65).map(|i| format!("X-H{i}: v\r\n")).collect();
    let long_header = format!(
        "GET /healthz HTTP/1.1\r\nX-Long: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a TLS hello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(),
            400,
        ),
        ("no version", b"GET /healthz\r\n\r\n".to_vec(), 400),
        ("HTTP/9.9", b"GET /healthz HTTP/9.9\r\n\r\n".to_vec(), 400),
        (
            "a header without a colon",
            b"GET /healthz HTTP/1.1\r\nno colon\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a control byte in the target",
            b"GET /a\x01b HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a path that is not UTF-8",
            b"GET /live/%ff%fe.flv HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a negative Content-Length",
            b"POST /healthz HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(),
            400,
        ),
        (
            "two Content-Lengths",
            b"POST /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
            400,
        ),
        (
            "65 headers",
            format!("GET /healthz HTTP/1.1\r\n{many_headers}\r\n").into_bytes(),
            431,
        ),
        ("a 9 KB head", long_header.into_bytes(), 431),
        (
            "a body over max_body_bytes",
            b"POST /api/v1/streams HTTP/1.1\r\nContent-Length: 1025\r\n\r\n".to_vec(),
            413,
        ),
        (
            "a chunked body",
            b"POST /api/v1/streams HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            501,
        ),
        (
            "Transfer-Encoding on a player",
            format!("GET {STREAM} HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").into_bytes(),
            501,
        ),
    ];
    for (case, bytes, status) in &cases {
        let mut sock = connect(node.http, None);
        sock.write_all(bytes).expect("send the head");
        let end = read_to_end(&mut sock, IO);
        let text = String::from_utf8_lossy(&end.bytes);
        assert!(
            end.status() == Some(*status) && end.closed && text.contains("Connection: close"),
            "{case}: expected {status} and a close, got {end:?}"
        );
    }
    let head_errors = cases.iter().filter(|c| c.2 == 400 || c.2 == 431).count();
    let errors = node.metric(r#"cascade_protocol_errors_total{kind="http_request"}"#);
    assert!(
        errors - errors_before >= head_errors as f64,
        "{head_errors} bad heads, protocol errors {errors_before} -> {errors}"
    );
    finish("malformed heads", node, publisher, watch, since);
}

// ---------------------------------------------------------------------------
// 3. Players that stop reading.

const SLOW_PLAYER_CONFIG: &str = "
[player]
# Behind for 2 s after the queue overflowed: cut off (5 s by default).
slow_disconnect_ms = 2000
";

const SLOW_SERIES: &str = "cascade_slow_player_disconnects_total";

#[test]
fn http_flv_and_websocket_players_that_stop_reading_are_cut_off_while_others_keep_up() {
    let (node, publisher, watch) = node_with_stream(SLOW_PLAYER_CONFIG);
    let since = Instant::now();
    let slow_before = node.metric(SLOW_SERIES);

    // Both read their answer head, then never read again, with a 4 KB
    // receive buffer.
    let mut http = connect(node.http, Some(4096));
    let req = format!("GET {STREAM} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    http.write_all(req.as_bytes()).expect("send play");
    let (status, head, _) = read_head(&mut http).expect("answer to the slow player");
    assert_eq!(status, 200, "the slow HTTP-FLV player was refused: {head}");
    let (mut ws, _) = ws_upgrade(node.http, STREAM, Some(4096));
    let peers = [http.local_addr().unwrap(), ws.local_addr().unwrap()];

    let deadline = Instant::now() + Duration::from_secs(20);
    while node.metric(SLOW_SERIES) < slow_before + 2.0 {
        assert!(
            Instant::now() < deadline,
            "the stalled players were not both cut off in 20 s ({SLOW_SERIES}: {} -> {})\n{}",
            slow_before,
            node.metric(SLOW_SERIES),
            tail(&node.server.log(), 20)
        );
        thread::sleep(Duration::from_millis(200));
    }
    let cut_after = since.elapsed();
    for (what, sock, peer) in [
        ("HTTP-FLV", &mut http, peers[0]),
        ("WS-FLV", &mut ws, peers[1]),
    ] {
        // What the kernel still held for it, then the reset.
        let end = read_to_end(sock, IO);
        eprintln!(
            "{what} slow player: cut off within {cut_after:?}, {} KiB left to read, reset: {}",
            end.bytes.len() >> 10,
            end.reset
        );
        assert!(end.closed, "{what}: the stalled player is still connected");
        assert!(
            end.bytes.len() < 1 << 20,
            "{what}: {} KiB were kept for a player that stopped reading",
            end.bytes.len() >> 10
        );
        assert!(
            node.server
                .wait_log_line(peer, &["slow player disconnected"], IO),
            "{what}: no slow-player line for {peer}"
        );
    }
    finish("slow players", node, publisher, watch, since);
}

// ---------------------------------------------------------------------------
// 4. WebSocket protocol errors.

#[test]
fn websocket_protocol_errors_close_only_that_connection_with_1002_or_1008() {
    let (node, publisher, watch) = node_with_stream("");
    let since = Instant::now();
    let ws_errors = r#"cascade_protocol_errors_total{kind="websocket"}"#;
    let errors_before = node.metric(ws_errors);
    let cases: [(&str, Vec<u8>, u16); 6] = [
        ("an unmasked ping", vec![0x89, 0x02, b'h', b'i'], 1002),
        ("an unmasked binary frame", vec![0x82, 0x03, 1, 2, 3], 1002),
        // A ping announcing 200 bytes (control frames carry at most 125).
        (
            "an oversized ping",
            vec![0x89, 0x80 | 126, 0, 200, 1, 2, 3, 4],
            1002,
        ),
        ("a fragmented ping", masked(0x09, b"part"), 1002),
        ("reserved bits", masked(0xc9, b""), 1002),
        ("a text frame", masked(0x81, b"play"), 1008),
    ];
    for (case, bytes, code) in &cases {
        let (mut sock, first) = ws_upgrade(node.http, STREAM, None);
        sock.write_all(bytes).expect("send the frame");
        let mut pong = false;
        let got = read_close(&mut sock, first, &mut pong);
        assert_eq!(got, Ok(*code), "{case}: wrong close");
        let end = read_to_end(&mut sock, IO);
        assert!(
            end.closed,
            "{case}: the connection stayed open after the close frame"
        );
    }
    // A well-behaved WebSocket player meanwhile: its ping is answered and
    // it plays on until it closes.
    let (mut sock, first) = ws_upgrade(node.http, STREAM, None);
    sock.write_all(&masked(0x89, b"still there?")).unwrap();
    sock.write_all(&masked(0x88, &1000u16.to_be_bytes()))
        .unwrap();
    let mut pong = false;
    let got = read_close(&mut sock, first, &mut pong);
    assert!(
        pong && got == Ok(1000),
        "a good player: pong {pong}, close {got:?}"
    );

    let errors = node.metric(ws_errors) - errors_before;
    let want = cases.iter().filter(|c| c.2 == 1002).count() as f64;
    assert!(
        errors >= want,
        "{want} protocol errors, {ws_errors} rose by {errors}"
    );
    finish("websocket errors", node, publisher, watch, since);
}
