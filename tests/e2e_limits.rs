//! Connection limits that close one connection and nothing else: a
//! publisher that goes silent, a connection that never publishes or plays,
//! a publish past the node's stream limit, a chunk size over the limit.

mod common;

use std::time::{Duration, Instant};

use cascade::protocol::amf::Amf0Value;
use common::rtmp_client::{status_code, RtmpClient};
use common::{temp_dir, Server};

fn start(config: &str) -> (Server, tempfile::TempDir) {
    let dir = temp_dir("cascade-limits");
    let path = dir.path().join("cascade.toml");
    std::fs::write(&path, config).unwrap();
    let server = Server::start_cascade(&["--config", path.to_str().unwrap()]);
    (server, dir)
}

/// Reads until the server closes the connection; returns when it did.
fn wait_closed(client: &mut RtmpClient, within: Duration) -> Option<Instant> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match client.next_message(deadline) {
            Ok(Some(_)) => continue,
            Ok(None) => return None,
            Err(_) => return Some(Instant::now()),
        }
    }
    None
}

fn publish(port: u16, name: &str) -> RtmpClient {
    let mut c = RtmpClient::connect(port, "live", Duration::from_secs(5)).expect("connect");
    let sid = c
        .create_stream(Duration::from_secs(5))
        .expect("createStream");
    c.command(
        sid,
        "publish",
        vec![Amf0Value::from(name), Amf0Value::from("live")],
    )
    .expect("publish");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let msg = c
            .next_message(deadline)
            .expect("read")
            .expect("no reply to publish");
        if let Some(code) = status_code(&msg) {
            assert_eq!(code, "NetStream.Publish.Start");
            return c;
        }
    }
}

#[test]
fn silent_publisher_is_closed_and_frees_its_key() {
    let (server, _dir) = start("[limits]\npublisher_timeout_ms = 1000\n");
    let mut silent = publish(server.port, "quiet");
    let started = Instant::now();
    let closed = wait_closed(&mut silent, Duration::from_secs(5))
        .expect("a publisher that sent nothing was not closed");
    let after = closed.duration_since(started);
    assert!(
        after >= Duration::from_millis(800),
        "closed too early: {after:?}"
    );
    assert!(
        server
            .log()
            .contains("publisher sent no media within limits.publisher_timeout_ms"),
        "{}",
        common::tail(&server.log(), 20)
    );
    // The key is free again: a new publisher gets Publish.Start.
    let _again = publish(server.port, "quiet");
}

#[test]
fn idle_connection_is_closed_but_players_are_not() {
    let (server, _dir) = start("[limits]\nidle_timeout_ms = 1000\npublisher_timeout_ms = 60000\n");
    let mut idle =
        RtmpClient::connect(server.port, "live", Duration::from_secs(5)).expect("connect");
    let started = Instant::now();
    let closed =
        wait_closed(&mut idle, Duration::from_secs(5)).expect("an idle connection was not closed");
    assert!(closed.duration_since(started) >= Duration::from_millis(800));

    // A player of a live stream sends nothing after play, and stays.
    let mut publisher = publish(server.port, "cam");
    let mut player =
        RtmpClient::connect(server.port, "live", Duration::from_secs(5)).expect("connect");
    let sid = player
        .create_stream(Duration::from_secs(5))
        .expect("createStream");
    player.play(sid, "cam").expect("play");
    // Keep the publisher alive with a keepalive command while the player idles.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        publisher
            .command(0, "_checkbw", vec![])
            .expect("publisher keepalive");
        std::thread::sleep(Duration::from_millis(200));
        let _ = publisher.next_message(Instant::now() + Duration::from_millis(50));
    }
    assert!(
        wait_closed(&mut player, Duration::from_millis(500)).is_none(),
        "a player was idle-closed"
    );
}

#[test]
fn stream_limit_refuses_the_publish_and_closes_only_that_connection() {
    let (server, _dir) = start("[limits]\nmax_streams = 1\n");
    let mut first = publish(server.port, "one");
    let mut second =
        RtmpClient::connect(server.port, "live", Duration::from_secs(5)).expect("connect");
    let sid = second
        .create_stream(Duration::from_secs(5))
        .expect("createStream");
    second
        .command(
            sid,
            "publish",
            vec![Amf0Value::from("two"), Amf0Value::from("live")],
        )
        .expect("publish");
    let deadline = Instant::now() + Duration::from_secs(5);
    let code = loop {
        let msg = second
            .next_message(deadline)
            .expect("read")
            .expect("no reply to publish");
        if let Some(code) = status_code(&msg) {
            break code;
        }
    };
    assert_eq!(code, "NetStream.Publish.Rejected");
    assert!(
        wait_closed(&mut second, Duration::from_secs(5)).is_some(),
        "the refused publisher was not closed"
    );
    let peer = format!("peer={}", second.local_addr());
    assert!(
        server.wait_log(Duration::from_secs(5), |log| log.lines().any(|l| l
            .contains(&peer)
            && l.contains("limit=limits.max_streams value=1"))),
        "{}",
        common::tail(&server.log(), 20)
    );
    // The stream that fits is untouched.
    first
        .create_stream(Duration::from_secs(5))
        .expect("the first publisher was closed");
}

#[test]
fn chunk_size_above_the_limit_closes_the_connection() {
    let (server, _dir) = start("[limits]\nmax_chunk_size = 65536\n");
    let mut ok = RtmpClient::connect(server.port, "live", Duration::from_secs(5)).expect("connect");
    ok.set_out_chunk_size(65_536, true).unwrap();
    ok.create_stream(Duration::from_secs(5))
        .expect("a chunk size at the limit was refused");
    let mut big =
        RtmpClient::connect(server.port, "live", Duration::from_secs(5)).expect("connect");
    big.set_out_chunk_size(65_537, true).unwrap();
    assert!(
        wait_closed(&mut big, Duration::from_secs(5)).is_some(),
        "a chunk size over the limit was accepted"
    );
    let peer = format!("peer={}", big.local_addr());
    assert!(
        server.wait_log(Duration::from_secs(5), |log| log.lines().any(|l| l
            .contains(&peer)
            && l.contains("limit=limits.max_chunk_size value=65536"))),
        "{}",
        common::tail(&server.log(), 20)
    );
}
