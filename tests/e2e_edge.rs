//! Edge mode end to end: cascade pulls streams it does not have from real
//! origins (nginx-rtmp and cascade) on loopback, once per node, and fans
//! them out. Every test is bounded; they run one at a time (two cores).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use cascade::upstream::select::{order, Mode, Sticky};
use common::edge::{loadtest_play, loadtest_report, NginxOrigin};
use common::ops::OpsServer;
use common::rtmp_client::{status_code, RtmpClient, TYPE_VIDEO};
use common::{
    decoded_frames, ffmpeg_play, publish_ffmpeg, tail, temp_dir, tool, wait_playable_with_ffmpeg,
    ChildGuard, Clip, Server,
};

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn origin_url(port: u16) -> String {
    format!("rtmp://127.0.0.1:{port}/live")
}

/// An edge with `--workers 2`, the given origins, extra environment.
fn edge(origins: &[String], env: &[(&str, &str)]) -> OpsServer {
    let mut args = vec!["--workers", "2"];
    for o in origins {
        args.push("--origin");
        args.push(o);
    }
    OpsServer::start(&args, env)
}

fn publish(url: &str) -> ChildGuard {
    publish_ffmpeg(&tool("ffmpeg"), &Clip::H264Aac.path(), url)
}

/// Plays `name` on `port` with a bare RTMP client until a video message
/// arrives; the client stays connected (and playing) while it lives.
fn play_until_video(port: u16, name: &str, timeout: Duration) -> RtmpClient {
    let deadline = Instant::now() + timeout;
    let mut c = RtmpClient::connect(port, "live", timeout).expect("connect");
    let sid = c.create_stream(timeout).expect("createStream");
    c.play(sid, name).expect("play");
    loop {
        match c.next_message(deadline) {
            Ok(Some(m)) if m.type_id == TYPE_VIDEO => return c,
            Ok(Some(m)) => {
                if let Some(code) = status_code(&m) {
                    assert!(!code.contains("NotFound"), "{name}: {code}");
                }
            }
            Ok(None) => panic!("{name}: no video within {timeout:?}"),
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

/// Plays `name` and returns the status code that ends the attempt and when.
fn play_status(port: u16, name: &str, timeout: Duration) -> (String, Duration) {
    let deadline = Instant::now() + timeout;
    let mut c = RtmpClient::connect(port, "live", timeout).expect("connect");
    let sid = c.create_stream(timeout).expect("createStream");
    let sent = c.play(sid, name).expect("play");
    loop {
        match c.next_message(deadline) {
            Ok(Some(m)) => {
                if let Some(code) = status_code(&m) {
                    if code != "NetStream.Play.Reset" {
                        return (code, sent.elapsed());
                    }
                }
            }
            Ok(None) => panic!("{name}: no status within {timeout:?}"),
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

#[test]
fn nginx_origin_one_pull_for_many_players() {
    let _s = serial();
    let origin = NginxOrigin::start();
    let mut publisher = publish(&origin.server.url("test"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while origin.clients("test").1 != 1 {
        assert!(Instant::now() < deadline, "publisher never reached nginx");
        assert!(publisher.try_status().is_none(), "publisher died");
        thread::sleep(Duration::from_millis(100));
    }
    let edge = edge(&[origin_url(origin.server.port)], &[]);
    let url = edge.server.url("test");
    let dir = temp_dir("cascade-edge-lt-");
    let report = dir.path().join("report.json");
    let mut lt = loadtest_play(&url, 100, 8.0, &report);
    let out = ffmpeg_play(&tool("ffmpeg"), &url, 3.0, "error", Duration::from_secs(25));
    assert!(
        out.success() && decoded_frames(&out) >= 30,
        "ffmpeg player via the edge: {} frames={}\n{}",
        out.describe(),
        decoded_frames(&out),
        tail(&out.stderr, 20)
    );
    // 100 loadtest players and an ffmpeg player on two cores: one pull.
    let (players, publishers) = origin.clients("test");
    assert_eq!(
        (players, publishers),
        (1, 1),
        "nginx should see the edge's one pull and the publisher:\n{}",
        origin.stat()
    );
    let rep = loadtest_report(&mut lt, &report, Duration::from_secs(40));
    assert_eq!(rep["players_connected"], 100, "{rep}");
    assert_eq!(rep["players_up_at_end"], 100, "{rep}");
    assert_eq!(rep["good_starts"], 100, "{rep}");
    // ~1.1 Mbit/s for several seconds each.
    let bytes = rep["bytes_received"].as_u64().unwrap_or(0);
    assert!(bytes > 100 * 300_000, "{rep}");
    assert_eq!(edge.metric("cascade_edge_pull_starts_total"), Some(1.0));
    assert!(
        edge.metric("cascade_origin_connect_seconds_count")
            .unwrap_or(0.0)
            >= 1.0
    );
}

#[test]
fn unknown_stream_is_not_found() {
    let _s = serial();
    // nginx never says StreamNotFound (it waits for a publisher): the edge
    // answers when its start timeout passes.
    let nginx = NginxOrigin::start();
    let e1 = edge(
        &[origin_url(nginx.server.port)],
        &[("CASCADE_EDGE_START_TIMEOUT_MS", "1500")],
    );
    let (code, took) = play_status(e1.server.port, "nothere", Duration::from_secs(8));
    assert_eq!(code, "NetStream.Play.StreamNotFound");
    assert!(
        took >= Duration::from_millis(1200) && took <= Duration::from_millis(4000),
        "{took:?}"
    );
    // A cascade origin says so at once; a dead origin in front is skipped.
    let cascade = Server::start_cascade(&[]);
    let dead = common::free_port();
    let e2 = edge(
        &[origin_url(dead), origin_url(cascade.port)],
        &[("CASCADE_EDGE_START_TIMEOUT_MS", "3000")],
    );
    let (code, took) = play_status(e2.server.port, "nothere", Duration::from_secs(8));
    assert_eq!(code, "NetStream.Play.StreamNotFound");
    assert!(took <= Duration::from_millis(2000), "{took:?}");
    assert!(e2.metric("cascade_edge_pulls").is_some_and(|v| v == 0.0));
}

#[test]
fn pull_closes_after_linger() {
    let _s = serial();
    let origin = NginxOrigin::start();
    let _publisher = publish(&origin.server.url("test"));
    let edge = edge(
        &[origin_url(origin.server.port)],
        &[("CASCADE_EDGE_LINGER_MS", "1000")],
    );
    let player = play_until_video(edge.server.port, "test", Duration::from_secs(15));
    origin.wait_players("test", 1, Duration::from_secs(5));
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        origin.clients("test").0,
        1,
        "pull closed while a player plays"
    );
    drop(player);
    let left = Instant::now();
    origin.wait_players("test", 0, Duration::from_secs(5));
    assert!(
        left.elapsed() >= Duration::from_millis(800),
        "linger ignored"
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while edge.metric("cascade_edge_pulls") != Some(0.0) {
        assert!(Instant::now() < deadline, "pull gauge never went to 0");
        thread::sleep(Duration::from_millis(100));
    }
    // A new player starts a new pull.
    let _again = play_until_video(edge.server.port, "test", Duration::from_secs(15));
    assert_eq!(edge.metric("cascade_edge_pull_starts_total"), Some(2.0));
}

#[test]
fn three_tier_chain() {
    let _s = serial();
    let origin = Server::start_cascade(&[]);
    let mid_origin = origin_url(origin.port);
    let mid = Server::start_cascade(&["--workers", "2", "--origin", &mid_origin]);
    let edge_origin = origin_url(mid.port);
    let edge = Server::start_cascade(&["--workers", "2", "--origin", &edge_origin]);
    let _publisher = publish(&origin.url("chain"));
    let ffmpeg = tool("ffmpeg");
    wait_playable_with_ffmpeg(&ffmpeg, &edge.url("chain"), Duration::from_secs(30));
    let out = ffmpeg_play(
        &ffmpeg,
        &edge.url("chain"),
        3.0,
        "error",
        Duration::from_secs(20),
    );
    assert!(
        out.success() && decoded_frames(&out) >= 60,
        "{} frames={}\n{}",
        out.describe(),
        decoded_frames(&out),
        tail(&out.stderr, 20)
    );
}

#[test]
fn failover_to_second_origin_keeps_players() {
    let _s = serial();
    let mut a = Server::start_cascade(&[]);
    let b = Server::start_cascade(&[]);
    let _pa = publish(&a.url("fo"));
    let _pb = publish(&b.url("fo"));
    let ffmpeg = tool("ffmpeg");
    wait_playable_with_ffmpeg(&ffmpeg, &a.url("fo"), Duration::from_secs(20));
    wait_playable_with_ffmpeg(&ffmpeg, &b.url("fo"), Duration::from_secs(20));
    let edge = edge(&[origin_url(a.port), origin_url(b.port)], &[]);
    let dir = temp_dir("cascade-edge-fo-");
    let report = dir.path().join("report.json");
    let mut lt = loadtest_play(&edge.server.url("fo"), 10, 12.0, &report);
    // One more player records video timestamps across the failover.
    let port = edge.server.port;
    let watcher = thread::spawn(move || {
        let mut c = play_until_video(port, "fo", Duration::from_secs(15));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut ts = Vec::new();
        while let Ok(Some(m)) = c.next_message(deadline) {
            if m.type_id == TYPE_VIDEO {
                ts.push(m.timestamp);
            }
        }
        ts
    });
    thread::sleep(Duration::from_secs(5));
    a.kill();
    let rep = loadtest_report(&mut lt, &report, Duration::from_secs(40));
    let ts = watcher.join().expect("watcher");
    assert!(ts.len() > 150, "watcher got {} video messages", ts.len());
    for w in ts.windows(2) {
        assert!(
            w[1].wrapping_sub(w[0]) as i32 >= 0,
            "video timestamp went back {} -> {}",
            w[0],
            w[1]
        );
    }
    assert_eq!(rep["players_connected"], 10, "{rep}");
    assert_eq!(rep["players_up_at_end"], 10, "{rep}");
    // Longest run of whole seconds without data once data flowed.
    let timeline = rep["timeline"].as_array().cloned().unwrap_or_default();
    let (mut run, mut worst, mut flowing) = (0, 0, false);
    for p in &timeline {
        let mbit = p["mbit_s"].as_f64().unwrap_or(0.0);
        if mbit > 0.0 {
            flowing = true;
            run = 0;
        } else if flowing {
            run += 1;
            worst = worst.max(run);
        }
    }
    // The last point may be a partial second after the players stopped.
    assert!(worst <= 3, "players starved {worst} s: {timeline:?}");
    assert!(edge.metric("cascade_edge_failovers_total").unwrap_or(0.0) >= 1.0);
}

#[test]
fn hash_mode_spreads_streams_the_same_way_on_every_edge() {
    let _s = serial();
    let origins = [OpsServer::start(&[], &[]), OpsServer::start(&[], &[])];
    let urls: Vec<String> = origins.iter().map(|o| origin_url(o.server.port)).collect();
    // Two streams that hash to each origin.
    let mut names: Vec<(String, usize)> = Vec::new();
    for want in 0..2 {
        let found = (0..100)
            .map(|i| format!("h{i}"))
            .filter(|n| {
                order(Mode::Hash, &urls, &format!("live/{n}"), &Sticky::default())[0] == want
            })
            .take(2);
        names.extend(found.map(|n| (n, want)));
    }
    let mut publishers = Vec::new();
    for (name, _) in &names {
        for o in &origins {
            publishers.push(publish(&o.server.url(name)));
        }
    }
    let edges = [
        edge(&urls, &[("CASCADE_EDGE_MODE", "hash")]),
        edge(&urls, &[("CASCADE_EDGE_MODE", "hash")]),
    ];
    let ffmpeg = tool("ffmpeg");
    for (name, _) in &names {
        wait_playable_with_ffmpeg(
            &ffmpeg,
            &origins[0].server.url(name),
            Duration::from_secs(20),
        );
        wait_playable_with_ffmpeg(
            &ffmpeg,
            &origins[1].server.url(name),
            Duration::from_secs(20),
        );
    }
    let mut players = Vec::new();
    for (name, _) in &names {
        for e in &edges {
            players.push(play_until_video(
                e.server.port,
                name,
                Duration::from_secs(15),
            ));
        }
    }
    for (name, want) in &names {
        let key = format!("live/{name}");
        for (i, o) in origins.iter().enumerate() {
            let doc = o.json("/api/v1/streams");
            let n = doc["streams"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["key"] == key.as_str()))
                .and_then(|s| s["players"].as_u64())
                .unwrap_or(0);
            let expect = if i == *want { 2 } else { 0 };
            assert_eq!(n, expect, "{key} at origin {i}: {doc}");
        }
    }
}

/// Video arrival times of a player of `name` on `port` for `secs`, and
/// the status codes it got (an end of stream shows there).
fn watch_video(
    port: u16,
    name: &'static str,
    secs: u64,
) -> thread::JoinHandle<(Vec<Instant>, Vec<String>)> {
    thread::spawn(move || {
        let mut c = play_until_video(port, name, Duration::from_secs(15));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let (mut video, mut codes) = (Vec::new(), Vec::new());
        while let Ok(Some(m)) = c.next_message(deadline) {
            if m.type_id == TYPE_VIDEO {
                video.push(Instant::now());
            } else if let Some(code) = status_code(&m) {
                codes.push(code);
            }
        }
        (video, codes)
    })
}

#[test]
fn a_pull_keeps_looking_for_a_publisher_moving_between_origins_until_the_grace_ends() {
    // The encoder's origin dies and the encoder comes back at the other
    // one a second later. Right after the loss every origin says "not
    // found" or refuses the connection; the pull must keep trying within
    // the publisher grace instead of leaving its players to the end.
    let _s = serial();
    let mut a = Server::start_cascade(&[]);
    let b = Server::start_cascade(&[]);
    let _pa = publish(&a.url("mv"));
    wait_playable_with_ffmpeg(&tool("ffmpeg"), &a.url("mv"), Duration::from_secs(20));
    let env = [
        ("CASCADE_EDGE_RETRY_BACKOFF_MS", "100"),
        ("CASCADE_EDGE_RETRY_BACKOFF_MAX_MS", "400"),
    ];
    let edge = edge(&[origin_url(a.port), origin_url(b.port)], &env);
    let watcher = watch_video(edge.server.port, "mv", 10);
    thread::sleep(Duration::from_secs(3));
    a.kill();
    let killed = Instant::now();
    thread::sleep(Duration::from_secs(1));
    let _pb = publish(&b.url("mv"));
    let (video, codes) = watcher.join().expect("watcher");
    let after = video
        .iter()
        .filter(|t| **t > killed + Duration::from_secs(1))
        .count();
    assert!(
        after > 60,
        "{after} video messages after the publisher moved; statuses {codes:?}"
    );
    assert!(
        !codes
            .iter()
            .any(|c| c.contains("UnpublishNotify") || c.contains("Stop")),
        "the player was told the stream ended: {codes:?}"
    );
}

#[test]
fn a_local_publish_takes_a_pulled_stream_over_and_its_players_stay() {
    // A publisher arriving at an edge that pulls the same stream (it moved
    // here, or a forward arrived after players made the node pull) becomes
    // the source: no BadName, the pull closes, and its players keep
    // playing. Before, the publish was refused while the pull lived.
    let _s = serial();
    let a = Server::start_cascade(&[]);
    let _pa = publish(&a.url("to"));
    wait_playable_with_ffmpeg(&tool("ffmpeg"), &a.url("to"), Duration::from_secs(20));
    // One worker: the takeover is done by the core that runs the pull
    // (with several, a publish landing on another core is refused).
    let origin = origin_url(a.port);
    let edge = OpsServer::start(&["--workers", "1", "--origin", &origin], &[]);
    let watcher = watch_video(edge.server.port, "to", 10);
    thread::sleep(Duration::from_secs(3));
    assert!(
        !edge.json("/api/v1/streams/live/to")["upstream"].is_null(),
        "the edge should be pulling live/to"
    );
    let mut local = publish(&edge.server.url("to"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let taken = Instant::now();
    loop {
        let s = edge.json("/api/v1/streams/live/to");
        if s["upstream"].is_null() && s["publisher"]["address"].is_string() {
            break;
        }
        assert!(
            local.try_status().is_none(),
            "the local publish was refused:\n{}",
            tail(&local.stderr_text(), 10)
        );
        assert!(
            Instant::now() < deadline,
            "the publish never took over: {s}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let (video, codes) = watcher.join().expect("watcher");
    let after = video
        .iter()
        .filter(|t| **t > taken + Duration::from_secs(1))
        .count();
    assert!(
        after > 60,
        "{after} video messages after the takeover; statuses {codes:?}"
    );
    assert!(local.try_status().is_none(), "the local publisher stopped");
    assert_eq!(
        edge.metric("cascade_edge_pulls"),
        Some(0.0),
        "the pull should have closed"
    );
}
