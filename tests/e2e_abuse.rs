//! Abuse of legal-looking protocol features against a release-built
//! cascade, over raw sockets: requests repeated without end, replies never
//! read, caches inflated, clocks walking back, connections held open for
//! free, stalled players, refusals retried, media sent before it is
//! allowed, and a worker that panics.
//!
//! Every attack runs beside `cascade-loadtest run` (a publisher and 50
//! players of `live/healthy` on the same node), and `Node::finish` checks
//! that those players lost no frame and no connection. Where an attack
//! could make the server hoard memory, the node's RSS is sampled while it
//! runs and its peak may grow by at most 16 MiB.
//!
//! Each test has a node and a load of its own, and nodes run one at a
//! time (`Node` holds a lock), since the timings and RSS figures assume
//! nothing else of this suite runs beside them. The first
//! test to need the release build runs `cargo build --release` once (a
//! minute or two after a source change; nothing when it is current).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::abuse::*;
use common::attacks::{assert_closed, connected, T};
use common::hostile::{avc_frame, avc_sequence_header};
use common::rtmp_client::{RtmpClient, TYPE_AUDIO, TYPE_VIDEO};
use common::{run_with_timeout, tail, temp_dir, Server};

/// A publisher of `live/NAME` on `node`, chunking at 4096.
fn publisher(node: &Node, name: &str) -> (RtmpClient, u32) {
    let mut p = connected(&node.server);
    let sid = p.publish(name, T).expect("publish");
    p.set_out_chunk_size(4096, true).expect("set chunk size");
    (p, sid)
}

/// A player of `live/NAME`; returns it with its message stream id.
fn player(node: &Node, name: &str) -> (RtmpClient, u32) {
    let mut p = connected(&node.server);
    let sid = p.create_stream(T).expect("createStream");
    p.play(sid, name).expect("play");
    (p, sid)
}

/// Reads until a coded AVC keyframe; how many audio and video messages
/// (sequence headers included) came before it.
fn wait_keyframe(p: &mut RtmpClient, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut before = 0;
    loop {
        match p.next_message(deadline) {
            Ok(Some(m)) if m.type_id == TYPE_VIDEO && is_avc_keyframe(&m.payload) => return before,
            Ok(Some(m)) if m.type_id == TYPE_VIDEO || m.type_id == TYPE_AUDIO => before += 1,
            Ok(Some(_)) => {}
            Ok(None) => panic!("no keyframe within {within:?} ({before} media messages)"),
            Err(e) => panic!("the player was closed before a keyframe: {e}"),
        }
    }
}

/// Polls `/api/v1/streams` until `key` has `players` players.
fn wait_players(node: &Node, key: &str, players: u64) {
    let deadline = Instant::now() + T;
    loop {
        let now = node.players_of(key);
        if now == Some(players) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never showed {players} player(s) (last: {now:?})"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `count` commands from `make` in batches of 1,000 (one write each)
/// without reading, and checks after every 5,000 that `/api/v1/streams`
/// shows `key` with at most one player, and (if `subscribed`: the attacker
/// never pauses) exactly one while the attacker's connection is still
/// established. Returns the commands sent.
fn flood_commands(
    node: &Node,
    attacker: &RtmpClient,
    key: &str,
    count: u32,
    subscribed: bool,
    make: impl Fn(u32) -> Vec<u8>,
) -> u32 {
    let sock = attacker.sock();
    let local = attacker.local_addr();
    let server: std::net::SocketAddr = ([127, 0, 0, 1], node.server.port).into();
    sock.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut sent = 0;
    while sent < count {
        let batch: Vec<u8> = (sent..(sent + 1000).min(count)).flat_map(&make).collect();
        if let Err(e) = std::io::Write::write_all(&mut &*sock, &batch) {
            // Closed, or the server stopped reading us: bounded either way.
            eprintln!("{key}: writes stopped after {sent} commands: {e}");
            break;
        }
        sent = (sent + 1000).min(count);
        if sent % 5000 == 0 {
            let players = node.players_of(key).unwrap_or(0);
            assert!(
                players <= 1,
                "{key}: {players} players after {sent} commands from one connection"
            );
            if players == 0 && subscribed {
                // Only a closed attacker may be missing; give the close a
                // moment to reach the socket.
                thread::sleep(Duration::from_millis(500));
                let state = socket_state(local, server);
                assert!(
                    state.as_deref() != Some("ESTAB"),
                    "{key}: 0 players after {sent} commands though the player is still connected"
                );
            }
        }
    }
    sent
}

/// The attacker of `flood_commands` either was closed or has at most
/// 16 MiB to read now (kernel buffers included).
fn assert_closed_or_bounded(case: &str, attacker: &RtmpClient) {
    let (bytes, ended) = drain(
        attacker.sock(),
        Duration::from_millis(1500),
        Duration::from_secs(10),
        64 << 20,
    );
    eprintln!("{case}: {bytes} bytes left to read, closed: {ended}");
    assert!(
        ended || bytes <= 16 << 20,
        "{case}: the server kept {bytes} bytes of replies for a connection that never read"
    );
}

#[test]
fn repeated_unpause_keeps_one_subscription_and_bounded_memory() {
    let node = Node::start("", 14.0);
    let (mut publisher, sid) = publisher(&node, "gop");
    publisher
        .send_message(6, TYPE_VIDEO, sid, 0, &avc_sequence_header())
        .unwrap();
    publisher
        .send_message(6, TYPE_VIDEO, sid, 0, &avc_frame(true, 300_000))
        .unwrap();
    for i in 1..30u32 {
        publisher
            .send_message(6, TYPE_VIDEO, sid, i * 33, &avc_frame(false, 4000))
            .unwrap();
    }
    let rss = node.watch_rss();

    // 50,000 unpauses from a player that stopped reading.
    let (mut p1, psid) = player(&node, "gop");
    wait_keyframe(&mut p1, T);
    wait_players(&node, "live/gop", 1);
    let started = Instant::now();
    let sent = flood_commands(&node, &p1, "live/gop", 50_000, true, |i| {
        pause_bytes(psid, false, f64::from(i) + 10.0)
    });
    eprintln!("unpause: {sent} commands in {:?}", started.elapsed());
    assert_closed_or_bounded("unpause", &p1);
    drop(p1);
    wait_players(&node, "live/gop", 0);

    // Alternating pause(true) / pause(false) from another one.
    let (mut p2, psid) = player(&node, "gop");
    wait_keyframe(&mut p2, T);
    wait_players(&node, "live/gop", 1);
    let started = Instant::now();
    // Paused in between, so 0 players is as right as 1 here.
    let sent = flood_commands(&node, &p2, "live/gop", 50_000, false, |i| {
        pause_bytes(psid, i % 2 == 0, f64::from(i) + 10.0)
    });
    eprintln!("pause/unpause: {sent} commands in {:?}", started.elapsed());
    assert_closed_or_bounded("pause/unpause", &p2);
    drop(p2);

    rss.assert_grew_at_most("repeated unpause", RSS_BUDGET_KIB);
    publisher
        .create_stream(T)
        .expect("the publisher of the paused stream was closed");
    node.finish();
}

#[test]
fn a_second_connect_and_a_ping_before_connect_close_the_connection() {
    let node = Node::start("", 8.0);
    let mut c = connected(&node.server);
    let peer = c.local_addr();
    let props = c.connect_props();
    c.command(0, "connect", vec![props]).unwrap();
    assert_closed(&node.server, "second connect", peer, c.wait_closed(T), &[]);

    let mut c = RtmpClient::handshake_only(node.server.port, T).expect("handshake");
    let peer = c.local_addr();
    c.send_raw(&ping_bytes(1)).unwrap();
    assert_closed(
        &node.server,
        "ping before connect",
        peer,
        c.wait_closed(T),
        &[],
    );
    node.finish();
}

#[test]
fn a_ping_flood_that_never_reads_hits_max_pending_output_bytes() {
    let node = Node::start("", 16.0);
    let series = r#"cascade_limit_hits_total{limit="max_pending_output_bytes"}"#;
    let hits_before = node.metric(series);
    let mut c = connected(&node.server);
    let peer = c.local_addr();
    let rss = node.watch_rss();
    // 3,600 pings (18 bytes each) per block: the block wraps at a message
    // boundary, so a partial write just continues where it stopped.
    let block: Vec<u8> = (0..3600).flat_map(ping_bytes).collect();
    let sock = c.sock();
    sock.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let (mut pos, mut sent) = (0usize, 0u64);
    let mut write_error = None;
    while sent < 200 << 20 && started.elapsed() < Duration::from_secs(10) {
        match std::io::Write::write(&mut &*sock, &block[pos..]) {
            Ok(0) => break,
            Ok(n) => {
                sent += n as u64;
                pos = (pos + n) % block.len();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                write_error = Some(e);
                break;
            }
        }
    }
    eprintln!(
        "ping flood: {} MiB in {:?}, write error: {write_error:?}, RSS +{} KiB so far",
        sent >> 20,
        started.elapsed(),
        rss.growth_kib()
    );
    assert_closed(
        &node.server,
        "ping flood",
        peer,
        c.wait_closed(T),
        &["limit hit", "limits.max_pending_output_bytes"],
    );
    let hits_after = node.metric(series);
    assert!(
        hits_after > hits_before,
        "{series} did not rise ({hits_before} -> {hits_after})"
    );
    rss.assert_grew_at_most("ping flood", RSS_BUDGET_KIB);
    node.finish();
}

/// 100,000 messages from `make`, written 5,000 at a time; panics if the
/// server stops taking them for 5 s or closes the publisher.
fn flood_media(p: &RtmpClient, csid: u32, type_id: u8, sid: u32, make: impl Fn(u32) -> Vec<u8>) {
    let sock = p.sock();
    sock.set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for start in (0..100_000u32).step_by(5000) {
        let mut out = bytes::BytesMut::new();
        for i in start..start + 5000 {
            cascade::protocol::chunk::encode_message(
                csid,
                0,
                type_id,
                sid,
                &make(i),
                4096,
                &mut out,
            );
        }
        if let Err(e) = std::io::Write::write_all(&mut &*sock, &out) {
            panic!(
                "the flooding publisher was refused after {start} messages of type {type_id}: {e}"
            );
        }
    }
}

#[test]
fn distinct_fourcc_sequence_starts_do_not_inflate_the_cache() {
    let node = Node::start("", 14.0);
    let (mut p, sid) = publisher(&node, "inflate");
    p.send_message(6, TYPE_VIDEO, sid, 0, &avc_sequence_header())
        .unwrap();
    p.send_message(4, TYPE_AUDIO, sid, 0, &aac_sequence_header())
        .unwrap();
    p.send_message(6, TYPE_VIDEO, sid, 0, &avc_frame(true, 4000))
        .unwrap();
    let rss = node.watch_rss();
    let started = Instant::now();
    flood_media(&p, 6, TYPE_VIDEO, sid, |i| {
        ex_video_sequence_start(fourcc(i))
    });
    flood_media(&p, 4, TYPE_AUDIO, sid, |i| {
        ex_audio_sequence_start(fourcc(i))
    });
    eprintln!("200,000 sequence starts written in {:?}", started.elapsed());
    p.send_message(6, TYPE_VIDEO, sid, 33, &avc_frame(true, 4000))
        .expect("the publisher was closed after the flood");
    // The answer to createStream comes after the server handled everything
    // sent before it: the whole flood is in the cache before anyone plays.
    p.create_stream(Duration::from_secs(20))
        .expect("the publisher got no answer after the flood");
    eprintln!("the flood was handled after {:?}", started.elapsed());

    let (mut viewer, _) = player(&node, "inflate");
    let t = Instant::now();
    for i in 2..8u32 {
        p.send_message(6, TYPE_VIDEO, sid, i * 33, &avc_frame(i % 3 == 0, 4000))
            .expect("the publisher was closed after the flood");
    }
    let headers = wait_keyframe(&mut viewer, Duration::from_secs(10));
    eprintln!(
        "a new player got {headers} media messages before its first keyframe, after {:?}",
        t.elapsed()
    );
    assert!(
        headers <= 8,
        "a new player got {headers} media messages (sequence headers) before its first keyframe"
    );
    rss.assert_grew_at_most("fourcc flood", RSS_BUDGET_KIB);
    node.finish();
}

#[test]
fn a_flood_of_empty_audio_messages_closes_the_publisher() {
    let node = Node::start("", 8.0);
    let errors_before = node.protocol_errors();
    let (mut p, sid) = publisher(&node, "empty");
    let peer = p.local_addr();
    let mut block = bytes::BytesMut::new();
    for i in 0..10_000u32 {
        cascade::protocol::chunk::encode_message(4, i, TYPE_AUDIO, sid, &[], 4096, &mut block);
    }
    p.sock()
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    for _ in 0..5 {
        if std::io::Write::write_all(&mut p.sock(), &block).is_err() {
            break;
        }
    }
    assert_closed(
        &node.server,
        "empty audio flood",
        peer,
        p.wait_closed(T),
        &["error"],
    );
    let errors_after = node.protocol_errors();
    assert!(
        errors_after > errors_before,
        "no protocol error counted for the empty audio flood ({errors_before} -> {errors_after})"
    );
    node.finish();
}

/// The first step of `ts` (wrapping 32-bit time) that goes back, as
/// (index, from, to); None when every step goes forward or stays.
fn first_step_back(ts: &[u32]) -> Option<(usize, u32, u32)> {
    ts.windows(2)
        .position(|w| (w[1].wrapping_sub(w[0]) as i32) < 0)
        .map(|i| (i, ts[i], ts[i + 1]))
}

#[test]
fn timestamps_walking_back_below_the_rebase_threshold_never_reach_players_backwards() {
    let node = Node::start("", 8.0);
    let (mut p, sid) = publisher(&node, "walkback");
    p.send_message(6, TYPE_VIDEO, sid, 100_000, &avc_sequence_header())
        .unwrap();
    p.send_message(4, TYPE_AUDIO, sid, 100_000, &aac_sequence_header())
        .unwrap();
    let (mut viewer, _) = player(&node, "walkback");
    thread::sleep(Duration::from_millis(300));
    // Each step goes back 999 ms: under a 1 s "jump" threshold every time,
    // 99 s back in all.
    for i in 0..100u32 {
        let ts = 100_000 - 999 * i;
        p.send_message(6, TYPE_VIDEO, sid, ts, &avc_frame(i % 10 == 0, 2000))
            .unwrap();
        p.send_message(4, TYPE_AUDIO, sid, ts, &aac_frame(200))
            .unwrap();
        thread::sleep(Duration::from_millis(5));
    }
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(8);
    while (video.len() < 100 || audio.len() < 100) && Instant::now() < deadline {
        match viewer.next_message(Instant::now() + Duration::from_millis(1500)) {
            Ok(Some(m)) if is_sequence_header(m.type_id, &m.payload) => {}
            Ok(Some(m)) if m.type_id == TYPE_VIDEO => video.push(m.timestamp),
            Ok(Some(m)) if m.type_id == TYPE_AUDIO => audio.push(m.timestamp),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("the player was closed: {e}"),
        }
    }
    eprintln!(
        "walkback: {} video, {} audio frames; video {:?}..{:?}",
        video.len(),
        audio.len(),
        video.first(),
        video.last()
    );
    assert!(
        video.len() >= 10,
        "the player got only {} of 100 video frames",
        video.len()
    );
    if let Some((i, a, b)) = first_step_back(&video) {
        panic!("video timestamps went back at frame {i}: {a} -> {b} (all: {video:?})");
    }
    if let Some((i, a, b)) = first_step_back(&audio) {
        panic!("audio timestamps went back at frame {i}: {a} -> {b} (all: {audio:?})");
    }
    node.finish();
}

#[test]
fn connections_held_open_for_free_are_closed() {
    let idle_ms = 2000u64;
    let config = "[limits]\nidle_timeout_ms = 2000\npublisher_timeout_ms = 2000\n\
                  [stream]\npublisher_grace_ms = 0\n";
    let node = Node::start(config, 14.0);
    let server = &node.server;
    thread::scope(|s| {
        // Handshake, then the start of a command one byte at a time.
        let idle = s.spawn(|| {
            let c = RtmpClient::handshake_only(server.port, T).expect("handshake");
            let peer = c.local_addr();
            let since = Instant::now();
            let mut bytes = announce(3, 20, 0, 1000);
            bytes.extend(std::iter::repeat(0x02).take(100));
            let closed = trickle(
                c.sock(),
                &bytes,
                Duration::from_millis(500),
                since,
                Duration::from_secs(8),
            );
            (peer, closed)
        });
        // A publisher that sends one byte of a video message every 500 ms.
        let trickling = s.spawn(|| {
            let mut c = connected(server);
            let sid = c.publish("trickle", T).expect("publish");
            let peer = c.local_addr();
            let since = Instant::now();
            let mut bytes = announce(6, 9, sid, 100_000);
            bytes.extend(std::iter::repeat(0x27).take(100));
            let closed = trickle(
                c.sock(),
                &bytes,
                Duration::from_millis(500),
                since,
                Duration::from_secs(6),
            );
            (peer, closed)
        });
        // A player that stays after its stream ended.
        let ended = s.spawn(|| {
            let (mut p, sid) = {
                let mut c = connected(server);
                let sid = c.publish("ending", T).expect("publish");
                (c, sid)
            };
            p.send_message(6, TYPE_VIDEO, sid, 0, &avc_sequence_header())
                .unwrap();
            p.send_message(6, TYPE_VIDEO, sid, 0, &avc_frame(true, 2000))
                .unwrap();
            let mut viewer = connected(server);
            let vsid = viewer.create_stream(T).expect("createStream");
            viewer.play(vsid, "ending").expect("play");
            wait_keyframe(&mut viewer, T);
            let peer = viewer.local_addr();
            // An idle but open player: its server-side socket has a
            // keepalive timer (no data in flight, so no other timer).
            let deadline = Instant::now() + Duration::from_secs(1);
            let mut timers = server_socket_timers(server.port, peer);
            while !timers.contains("timer:(keepalive") && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(100));
                timers = server_socket_timers(server.port, peer);
            }
            drop(p);
            let since = Instant::now();
            let closed = viewer.wait_closed(Duration::from_millis(idle_ms + 3000));
            (peer, timers, closed.map(|_| since.elapsed()))
        });

        let (peer, closed) = idle.join().expect("idle thread");
        let after = closed.unwrap_or_else(|e| panic!("a trickling idle connection: {e}"));
        eprintln!("idle trickle closed after {after:?}");
        assert!(
            after <= Duration::from_millis(idle_ms + 3000),
            "a trickling idle connection was closed only after {after:?}"
        );
        assert!(
            server.wait_log_line(peer, &["idle_timeout_ms"], T),
            "no idle_timeout_ms line for {peer}"
        );

        let (peer, closed) = trickling.join().expect("publisher thread");
        let after = closed.unwrap_or_else(|e| panic!("a trickling publisher: {e}"));
        eprintln!("trickling publisher closed after {after:?}");
        assert!(
            after <= Duration::from_millis(3000),
            "a publisher trickling one byte every 500 ms was closed only after {after:?}"
        );
        assert!(
            server.wait_log_line(peer, &["publisher_timeout_ms"], T),
            "no publisher_timeout_ms line for {peer}"
        );

        let (peer, timers, closed) = ended.join().expect("player thread");
        eprintln!("idle player's server socket: {}", timers.trim());
        assert!(
            timers.contains("timer:(keepalive"),
            "no TCP keepalive on the server side of {peer}: {timers:?}"
        );
        let after = closed.unwrap_or_else(|e| panic!("a player of an ended stream: {e}"));
        eprintln!("player of an ended stream closed after {after:?}");
        assert!(
            after <= Duration::from_millis(idle_ms + 1500),
            "a player of an ended stream was closed only after {after:?}"
        );
    });
    node.finish();
}

#[test]
fn a_paused_player_is_closed_after_pause_timeout_ms() {
    let node = Node::start("[limits]\npause_timeout_ms = 2000\n", 10.0);
    let (mut p, sid) = publisher(&node, "paused");
    p.send_message(6, TYPE_VIDEO, sid, 0, &avc_sequence_header())
        .unwrap();
    p.send_message(6, TYPE_VIDEO, sid, 0, &avc_frame(true, 2000))
        .unwrap();
    let (mut viewer, vsid) = player(&node, "paused");
    wait_keyframe(&mut viewer, T);
    let peer = viewer.local_addr();
    viewer.send_raw(&pause_bytes(vsid, true, 50.0)).unwrap();
    let after = viewer
        .wait_closed(Duration::from_secs(6))
        .unwrap_or_else(|e| panic!("a paused player: {e}"));
    eprintln!("paused player closed after {after:?}");
    assert!(
        after >= Duration::from_millis(1500) && after <= Duration::from_millis(3500),
        "a paused player was closed after {after:?}, expected about 2 s"
    );
    assert!(
        node.server.wait_log_line(peer, &["pause_timeout_ms"], T),
        "no pause_timeout_ms line for {peer}"
    );
    node.finish();
}

#[test]
fn a_stalled_player_is_cut_off_with_a_reset() {
    let node = Node::start("[player]\nslow_disconnect_ms = 2000\n", 16.0);
    let (p, sid) = publisher(&node, "fast");
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        // ~2.5 Mbit/s: 30 frames of 10,400 bytes a second, 1 s GOP, paced.
        let feeder = s.spawn(|| {
            let mut p = p;
            p.send_message(6, TYPE_VIDEO, sid, 0, &avc_sequence_header())
                .unwrap();
            let started = Instant::now();
            let mut frame = 0u32;
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(25) {
                let ts = frame * 33;
                if p.send_message(6, TYPE_VIDEO, sid, ts, &avc_frame(frame % 30 == 0, 10_400))
                    .is_err()
                {
                    break;
                }
                frame += 1;
                let due = started + Duration::from_millis(u64::from(ts) + 33);
                thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            frame
        });

        let addr: std::net::SocketAddr = ([127, 0, 0, 1], node.server.port).into();
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        sock.connect_timeout(&addr.into(), T).expect("connect");
        let mut viewer = RtmpClient::handshake_on(sock.into(), T)
            .and_then(|c| c.connect_app("live", T))
            .expect("handshake and connect");
        let vsid = viewer.create_stream(T).expect("createStream");
        viewer.play(vsid, "fast").expect("play");
        wait_keyframe(&mut viewer, T);
        let peer = viewer.local_addr();

        // Stop reading: the slow-player policy cuts it off.
        let cut = node
            .server
            .wait_log_line(peer, &["slow player"], Duration::from_secs(20));
        assert!(
            cut,
            "the stalled player was never cut off\n{}",
            tail(&node.server.log(), 20)
        );
        let logged = Instant::now();
        let mut left = server_sockets(node.server.port, peer);
        while !left.is_empty() && logged.elapsed() < Duration::from_secs(1) {
            thread::sleep(Duration::from_millis(50));
            left = server_sockets(node.server.port, peer);
        }
        assert!(
            left.is_empty(),
            "1 s after the slow-player line the server still holds the socket: {left:?}"
        );
        let mut sock = viewer.sock().try_clone().expect("clone socket");
        let (bytes, error) = read_until_error(&mut sock, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("the cut-off player did not get a reset: {e}"));
        eprintln!("the cut-off player read {bytes} more bytes, then: {error}");
        assert!(
            bytes <= 64 * 1024,
            "the cut-off player could still read {bytes} bytes"
        );
        stop.store(true, Ordering::Relaxed);
        let frames = feeder.join().expect("feeder");
        eprintln!("the publisher sent {frames} frames");
    });
    node.finish();
}

/// The child aborts on purpose: no core file (a debug build's is hundreds
/// of MB, written into the test's working directory where core_pattern is
/// a plain name).
fn no_core_dump(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: runs in the forked child before exec; setrlimit(2) is
    // async-signal-safe, allocates nothing and only reads `zero`, a plain
    // value copied into the closure.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_CORE, &zero) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[test]
fn a_worker_panic_aborts_the_process() {
    let bin = Path::new(env!("CARGO_BIN_EXE_cascade"));
    let mut server = Server::start_cascade_configured(bin, &[], |cmd| {
        cmd.env("CASCADE_TEST_PANIC_ON_PUBLISH", "boom");
        no_core_dump(cmd);
    });
    let mut fine = connected(&server);
    fine.publish("fine", T)
        .expect("a publish of another name was refused");
    let mut c = connected(&server);
    let _ = c.publish("boom", T);
    let status = server.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "the process still runs 5 s after a worker panicked\n{}",
            tail(&server.log(), 20)
        )
    });
    eprintln!("the process exited with {status}");
    assert!(!status.success(), "a panic ended the process with success");
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "the process did not abort: {status}"
    );
    assert!(
        server.log().contains("panicked"),
        "no panic message in the log\n{}",
        tail(&server.log(), 20)
    );

    // The hook is for debug builds only: a release build publishes `boom`.
    let node = Node::start_with(
        &release_cascade(),
        "",
        0.0,
        &[("CASCADE_TEST_PANIC_ON_PUBLISH", "boom")],
    );
    let mut c = connected(&node.server);
    c.publish("boom", T)
        .expect("the release build refused live/boom");
    thread::sleep(Duration::from_millis(300));
    node.finish();
}

#[test]
fn a_timeout_too_large_for_the_clock_is_a_config_error() {
    let dir = temp_dir("cascade-abuse-config");
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    // u64::MAX (beyond TOML's integers), i64::MAX (the largest a file can
    // hold, which overflows any Instant), and u64::MAX from the environment.
    let mut cases = Vec::new();
    for value in ["18446744073709551615", "9223372036854775807"] {
        let path = dir.path().join(format!("huge-{value}.toml"));
        std::fs::write(&path, format!("[limits]\nidle_timeout_ms = {value}\n")).unwrap();
        cases.push((format!("file, {value}"), path, None));
    }
    cases.push((
        "environment, 18446744073709551615".to_string(),
        empty.clone(),
        Some(("CASCADE_LIMITS_IDLE_TIMEOUT_MS", "18446744073709551615")),
    ));
    let mut problems = Vec::new();
    for (case, path, env) in &cases {
        let mut cmd = Command::new(release_cascade());
        cmd.arg("check-config").arg(path).envs(env.iter().copied());
        let out = run_with_timeout("check-config", cmd, Duration::from_secs(10));
        let text = format!("{}{}", out.stdout, out.stderr);
        eprintln!("check-config ({case}): {}\n{}", out.describe(), text.trim());
        if out.timed_out || out.success() {
            problems.push(format!(
                "check-config ({case}) accepted it: {}",
                out.describe()
            ));
        } else if !text.contains("limits.idle_timeout_ms") {
            problems.push(format!(
                "check-config ({case}) did not name limits.idle_timeout_ms: {}",
                text.trim()
            ));
        }

        let mut cmd = Command::new(release_cascade());
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", common::free_port()))
            .arg("--config")
            .arg(path)
            .envs(env.iter().copied());
        let out = run_with_timeout("cascade-start", cmd, Duration::from_secs(5));
        if out.timed_out || out.success() {
            problems.push(format!(
                "cascade started ({case}): {}\n{}",
                out.describe(),
                tail(&out.stderr, 5)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn refused_publishes_retried_on_one_connection_are_cut_off() {
    let config =
        "[[auth.app]]\nname = \"locked\"\npublish = \"key\"\npublish_keys = [\"right-key\"]\n";
    let node = Node::start(config, 8.0);
    let mut c = RtmpClient::connect(node.server.port, "locked", T).expect("connect");
    let peer = c.local_addr();
    let sid = c.create_stream(T).expect("createStream");
    // A retry loop without backoff: publish again as soon as the refusal
    // arrives, up to 20 times, until the server closes the connection.
    let mut refusals = 0;
    for _ in 0..20 {
        match c.publish_on(sid, "cam?key=wrong", T) {
            Ok(code)
                if code.starts_with("NetStream.Publish.") && code != "NetStream.Publish.Start" =>
            {
                refusals += 1
            }
            Ok(code) => panic!("a publish with a wrong key was answered {code}"),
            Err(e) => {
                eprintln!("attempt {} ended with: {e}", refusals + 1);
                break;
            }
        }
    }
    let closed = c.wait_closed(T).is_ok();
    eprintln!("{refusals} refusals, closed: {closed}");
    assert!(refusals >= 1, "no publish was refused");
    assert!(
        closed,
        "the connection was still open after {refusals} refusals"
    );
    assert!(
        refusals <= 3,
        "{refusals} refusals on one connection (limits.max_refusals_per_connection is 3)"
    );
    // Give the close its log line, then count the lines for this peer.
    node.server.wait_log_line(peer, &["clos"], T);
    let needle = format!("peer={peer}");
    let lines = node
        .server
        .log()
        .lines()
        .filter(|l| l.contains(&needle))
        .count();
    assert!(
        lines <= 5,
        "{lines} log lines for one connection retrying a refused publish\n{}",
        tail(&node.server.log(), 30)
    );
    node.finish();
}

/// A chunk header announcing 16 MiB - 1 of video on message stream `sid`,
/// then its body in 128-byte chunks, one every 100 ms; how long until the
/// server closed the connection.
fn announce_and_trickle(sock: &std::net::TcpStream, sid: u32) -> Result<Duration, String> {
    let since = Instant::now();
    let mut first = announce(6, 9, sid, 0xFF_FFFF);
    first.extend(std::iter::repeat(0x17).take(128));
    let mut next = vec![0xC6];
    next.extend(std::iter::repeat(0x5A).take(128));
    let pieces = std::iter::once(first).chain(std::iter::repeat(next).take(100));
    drip(
        sock,
        pieces,
        Duration::from_millis(100),
        since,
        Duration::from_secs(6),
    )
}

#[test]
fn media_before_publish_is_refused_and_max_message_size_is_4_mib() {
    let node = Node::start("", 16.0);

    // Right after the handshake, no connect.
    let c = RtmpClient::handshake_only(node.server.port, T).expect("handshake");
    let after = announce_and_trickle(c.sock(), 1)
        .unwrap_or_else(|e| panic!("video announced before connect: {e}"));
    eprintln!("video before connect: closed after {after:?}");
    assert!(
        after <= Duration::from_secs(3),
        "video announced before connect was closed only after {after:?}"
    );

    // After connect, before publish.
    let c = connected(&node.server);
    let after = announce_and_trickle(c.sock(), 1)
        .unwrap_or_else(|e| panic!("video announced before publish: {e}"));
    eprintln!("video before publish: closed after {after:?}");
    assert!(
        after <= Duration::from_secs(3),
        "video announced before publish was closed only after {after:?}"
    );

    // After a publish: 16 MiB - 1 is over the 4 MiB default.
    let (mut p, sid) = publisher(&node, "big");
    let peer = p.local_addr();
    let mut bytes = announce(6, 9, sid, 0xFF_FFFF);
    bytes.extend(std::iter::repeat(0x17).take(4096));
    let _ = p.send_raw(&bytes);
    assert_closed(
        &node.server,
        "16 MiB video after publish",
        peer,
        p.wait_closed(T),
        &["limit=limits.max_message_size", "value=4194304"],
    );
    node.finish();
}
