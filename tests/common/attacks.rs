//! The slower hostile peers of `tests/e2e_malformed.rs` (timestamps that
//! jump and wrap, a flooding publisher, players that never read, slowloris
//! handshakes) and the assertions every attack shares.

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use super::hostile::{avc_frame, avc_sequence_header};
use super::rtmp_client::{RtmpClient, TYPE_VIDEO};
use super::{tail, Server};

/// Bound of every single wait in an attack.
pub const T: Duration = Duration::from_secs(5);

/// Asserts the connection at `peer` was closed and the log says why.
pub fn assert_closed(
    server: &Server,
    case: &str,
    peer: std::net::SocketAddr,
    closed: Result<Duration, String>,
    words: &[&str],
) {
    let after = closed.unwrap_or_else(|e| {
        panic!(
            "{case}: the offending connection was not closed: {e}\n{}",
            tail(&server.log(), 30)
        )
    });
    assert!(
        server.wait_log_line(peer, words, T),
        "{case}: no log line with peer={peer} and {words:?}\n{}",
        tail(&server.log(), 30)
    );
    eprintln!("{case}: closed after {after:?}");
}

pub fn raw(server: &Server) -> TcpStream {
    let addr = ([127, 0, 0, 1], server.port).into();
    let s = TcpStream::connect_timeout(&addr, T).expect("tcp connect");
    s.set_nodelay(true).unwrap();
    s
}

pub fn connected(server: &Server) -> RtmpClient {
    RtmpClient::connect(server.port, "live", T).expect("connect")
}

/// Timestamps that jump back 15 s, then back again to just before the
/// 2^32 wrap and across it. The publisher must stay; its player must get
/// every frame on a clock that never runs backwards: each jump is rebased
/// to one frame (33 ms) after the last, and the wrap is an ordinary step.
pub fn timestamps(server: &Server) {
    let mut publisher = connected(server);
    let sid = publisher.publish("tsjump", T).expect("publish");
    let send = |p: &mut RtmpClient, ts: u32, key: bool| {
        p.send_message(6, TYPE_VIDEO, sid, ts, &avc_frame(key, 800))
            .expect("publisher write")
    };
    publisher
        .send_message(6, TYPE_VIDEO, sid, 0, &avc_sequence_header())
        .unwrap();
    send(&mut publisher, 20_000, true);
    let mut player = connected(server);
    let psid = player.create_stream(T).expect("createStream");
    player.play(psid, "tsjump").expect("play");
    thread::sleep(Duration::from_millis(300));

    let mut sent = Vec::new();
    for (start, n) in [(20_033u32, 30u32), (5_000, 30), (u32::MAX - 500, 30)] {
        for i in 0..n {
            let ts = start.wrapping_add(i * 33);
            send(&mut publisher, ts, i % 15 == 0);
            sent.push(ts);
            thread::sleep(Duration::from_millis(5));
        }
    }
    let deadline = Instant::now() + T;
    let mut got = Vec::new();
    while got.len() < sent.len() + 2 && Instant::now() < deadline {
        match player.next_message(Instant::now() + Duration::from_millis(500)) {
            Ok(Some(m)) if m.type_id == TYPE_VIDEO && m.payload.get(1) == Some(&1) => {
                got.push(m.timestamp)
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                if got.ends_with(&sent[sent.len() - 1..]) {
                    break;
                }
            }
            Err(e) => panic!("timestamps: the player was closed: {e}"),
        }
    }
    // The player may also get the cached keyframe at 20,000 first.
    let tail_got: Vec<u32> = got.iter().copied().skip_while(|t| *t == 20_000).collect();
    let want: Vec<u32> = (0..sent.len() as u32).map(|i| 20_033 + i * 33).collect();
    assert_eq!(
        tail_got, want,
        "timestamps: the player did not get every frame on a steady clock (sent {sent:?})"
    );
    let wrap_at = sent.iter().position(|t| *t < 1000).expect("wrapped");
    assert_eq!(sent[wrap_at].wrapping_sub(sent[wrap_at - 1]), 33);
    // The publisher is still there: it gets an answer to createStream.
    publisher
        .create_stream(T)
        .expect("timestamps: the publisher was closed");
    let peer = publisher.local_addr();
    assert!(
        !server
            .log()
            .lines()
            .any(|l| l.contains(&format!("peer={peer}"))
                && (l.contains("closed") || l.contains("limit hit"))),
        "timestamps: the publisher's connection was closed"
    );
    eprintln!(
        "timestamps: {} frames, backward jump and wrap passed through",
        sent.len()
    );
}

/// A publisher at 10x real time with a player that never reads, and a
/// never-reading player of the healthy stream: both players are cut by the
/// slow-player policy; the flooding publisher itself is legal and stays.
pub fn flood_and_stalled_players(server: &Server) {
    let mut publisher = connected(server);
    let sid = publisher.publish("flood", T).expect("publish");
    publisher.set_out_chunk_size(4096, true).unwrap();
    publisher
        .send_message(6, TYPE_VIDEO, sid, 0, &avc_sequence_header())
        .unwrap();
    publisher
        .send_message(6, TYPE_VIDEO, sid, 0, &avc_frame(true, 4000))
        .unwrap();
    let mut stalled = Vec::new();
    for name in ["flood", "healthy"] {
        let mut p = connected(server);
        let psid = p.create_stream(T).expect("createStream");
        p.play(psid, name).expect("play");
        stalled.push((name, p));
    }
    let started = Instant::now();
    let mut ts = 0u32;
    let mut frames = 0u64;
    // 300 frames/s of 30 fps timestamps (10x real time), ~1.2 MB/s.
    while started.elapsed() < Duration::from_secs(8) {
        for _ in 0..30 {
            ts = ts.wrapping_add(33);
            frames += 1;
            publisher
                .send_message(6, TYPE_VIDEO, sid, ts, &avc_frame(frames % 60 == 0, 4000))
                .expect("the flooding publisher was closed");
        }
        thread::sleep(Duration::from_millis(100));
    }
    for (name, p) in &mut stalled {
        let peer = p.local_addr();
        let cut =
            server.wait_log_line(peer, &["slow player disconnected"], Duration::from_secs(12));
        assert!(
            cut,
            "never-reading player of {name} was not cut off\n{}",
            tail(&server.log(), 30)
        );
        assert_closed(
            server,
            &format!("never-reading player of {name}"),
            peer,
            p.wait_closed(T),
            &["slow player disconnected"],
        );
    }
    publisher
        .create_stream(T)
        .expect("the flooding publisher was closed");
    eprintln!("flood: {frames} frames in {:?}", started.elapsed());
}

/// 300 connections sending their handshake one byte a second: each is
/// closed at the handshake timeout (2 s), and a healthy player connects and
/// plays meanwhile.
pub fn slowloris(server: &Server) {
    let mut socks: Vec<(TcpStream, Option<Duration>)> = (0..300)
        .map(|_| {
            let s = raw(server);
            s.set_nonblocking(true).unwrap();
            (s, None)
        })
        .collect();
    let peers: Vec<_> = socks.iter().map(|(s, _)| s.local_addr().unwrap()).collect();
    let started = Instant::now();
    let mut healthy_checked = false;
    let mut byte = 3u8;
    while started.elapsed() < Duration::from_secs(8) && socks.iter().any(|(_, c)| c.is_none()) {
        for (s, closed) in socks.iter_mut().filter(|(_, c)| c.is_none()) {
            let _ = std::io::Write::write(s, &[byte]);
            let mut buf = [0u8; 4096];
            match std::io::Read::read(s, &mut buf) {
                Ok(0) => *closed = Some(started.elapsed()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(_) => {}
                Err(_) => *closed = Some(started.elapsed()),
            }
        }
        byte = 7;
        if !healthy_checked && started.elapsed() > Duration::from_millis(500) {
            let t = Instant::now();
            let mut p = connected(server);
            let sid = p.create_stream(T).expect("createStream");
            p.play(sid, "healthy").expect("play");
            let deadline = Instant::now() + T;
            loop {
                match p.next_message(deadline) {
                    Ok(Some(m)) if m.type_id == TYPE_VIDEO => break,
                    Ok(Some(_)) => {}
                    other => panic!("slowloris: a new player got no video: {other:?}"),
                }
            }
            eprintln!("slowloris: a new player got video after {:?}", t.elapsed());
            healthy_checked = true;
        }
        thread::sleep(Duration::from_millis(1000));
    }
    let open = socks.iter().filter(|(_, c)| c.is_none()).count();
    assert_eq!(
        open, 0,
        "slowloris: {open} of 300 connections still open after 8 s"
    );
    let last = socks.iter().filter_map(|(_, c)| *c).max().unwrap();
    let log = server.log();
    let named = peers
        .iter()
        .filter(|p| {
            let peer = format!("peer={p}");
            log.lines()
                .any(|l| l.contains(&peer) && l.contains("limit=limits.handshake_timeout_ms"))
        })
        .count();
    assert_eq!(named, 300, "slowloris: {named} of 300 timeouts logged");
    eprintln!("slowloris: 300 connections closed, the last after {last:?}");
}
