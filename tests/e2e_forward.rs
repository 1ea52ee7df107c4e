//! Publish forwarding and static pushes end to end: ffmpeg publishes to a
//! cascade node, which publishes the stream on to real servers (nginx-rtmp
//! and cascade) on loopback; players there decode it. Every test is bounded;
//! they run one at a time (two cores).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::edge::NginxOrigin;
use common::ops::{http, OpsServer};
use common::{
    decoded_frames, ffmpeg_play, free_port, publish_ffmpeg, tail, temp_dir, tool,
    wait_playable_with_ffmpeg, ChildGuard, Clip,
};

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const GRACE_MS: u64 = 1000;

fn url(port: u16, name: &str) -> String {
    format!("rtmp://127.0.0.1:{port}/live/{name}")
}

/// A cascade node with `--workers 2`, a control listener and `toml` as its
/// configuration file (written into `dir`).
fn node(dir: &Path, toml: &str) -> OpsServer {
    let path = dir.join("cascade.toml");
    std::fs::write(&path, toml).expect("write config");
    let path = path.to_string_lossy().into_owned();
    OpsServer::start(&["--workers", "2", "--config", &path], &[])
}

fn publish(url: &str) -> ChildGuard {
    publish_ffmpeg(&tool("ffmpeg"), &Clip::H264Aac.path(), url)
}

/// Plays `url` for 4 s with ffmpeg and asserts it decoded a second of
/// video at least (nginx-rtmp starts a player at the next keyframe).
fn assert_decodes(url: &str, what: &str) {
    let out = ffmpeg_play(&tool("ffmpeg"), url, 4.0, "error", Duration::from_secs(30));
    assert!(
        out.success() && decoded_frames(&out) >= 30,
        "{what} ({url}): {} frames={}\n{}",
        out.describe(),
        decoded_frames(&out),
        tail(&out.stderr, 20)
    );
}

/// Polls `cond` until it holds, or panics with `what`.
fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a cascade node's API shows `live/NAME` with a publisher.
fn cascade_publishing(http_port: u16, name: &str) -> bool {
    match http(http_port, "GET", &format!("/api/v1/streams/live/{name}")) {
        Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
            .is_ok_and(|v| v["publishing"] == serde_json::Value::Bool(true)),
        _ => false,
    }
}

/// Publishes to an edge that forwards to the origin on `origin_port`; the
/// origin's players and the edge's own decode it; after the publisher
/// leaves, the forward ends at the origin once the grace passed.
fn forward_case(origin_port: u16, origin_has_publisher: &dyn Fn() -> bool) {
    let dir = temp_dir("cascade-fwd-");
    let edge = node(
        dir.path(),
        &format!(
            "[stream]\npublisher_grace_ms = {GRACE_MS}\n\
             [edge]\norigins = [\"rtmp://127.0.0.1:{origin_port}/live\"]\n\
             forward_publish = true\n"
        ),
    );
    let mut publisher = publish(&edge.server.url("fwd"));
    let at_origin = url(origin_port, "fwd");
    wait_playable_with_ffmpeg(&tool("ffmpeg"), &at_origin, Duration::from_secs(30));
    assert!(publisher.try_status().is_none(), "publisher died");
    assert_decodes(&at_origin, "player at the origin");
    assert_decodes(&edge.server.url("fwd"), "player at the edge");
    assert!(origin_has_publisher(), "the origin shows no publisher");
    let forwarded = edge
        .metric("cascade_forwarded_bytes_total{kind=\"forward\"}")
        .unwrap_or(0.0);
    assert!(forwarded > 100_000.0, "forwarded bytes: {forwarded}");
    assert_eq!(
        edge.metric("cascade_outbound_publishes{kind=\"forward\"}"),
        Some(1.0)
    );
    assert_eq!(
        edge.metric("cascade_outbound_publish_starts_total{kind=\"forward\"}"),
        Some(1.0)
    );
    // The forward is not counted as a viewer at the edge.
    let players = edge.json("/api/v1/streams/live/fwd")["players"].as_u64();
    assert_eq!(players, Some(0), "players at the edge");
    // The publisher leaves: after the grace the forward ends at the origin.
    drop(publisher);
    wait_until(
        "the origin to lose the forwarded publisher",
        Duration::from_secs(GRACE_MS / 1000 + 15),
        || !origin_has_publisher(),
    );
    wait_until(
        "the edge's forward to close",
        Duration::from_secs(10),
        || edge.metric("cascade_outbound_publishes{kind=\"forward\"}") == Some(0.0),
    );
}

#[test]
fn forward_to_nginx_origin() {
    let _s = serial();
    let origin = NginxOrigin::start();
    forward_case(origin.server.port, &|| origin.clients("fwd").1 == 1);
}

#[test]
fn forward_to_cascade_origin() {
    let _s = serial();
    let origin = OpsServer::start(&["--workers", "2"], &[]);
    let http_port = origin.http;
    forward_case(origin.server.port, &|| cascade_publishing(http_port, "fwd"));
}

/// cascade on a fixed port (so it can come back on the same one), without
/// a control listener; killed on drop.
fn cascade_on(port: u16) -> ChildGuard {
    let mut cmd = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_cascade")));
    cmd.args(["--workers", "1", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    if let Ok(driver) = std::env::var("CASCADE_TEST_IO_DRIVER") {
        cmd.arg("--io-driver").arg(driver);
    }
    let mut guard = ChildGuard::spawn("cascade-target", cmd);
    let addr = ([127, 0, 0, 1], port).into();
    wait_until("the push target to listen", Duration::from_secs(15), || {
        assert!(guard.try_status().is_none(), "push target exited");
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    });
    guard
}

#[test]
fn push_to_two_targets_one_restarted() {
    let _s = serial();
    let nginx = NginxOrigin::start();
    let port = free_port();
    let mut target = cascade_on(port);
    let dir = temp_dir("cascade-push-");
    // Short backoff so the restarted target is found again quickly; the
    // second URL names the stream itself.
    let node = node(
        dir.path(),
        &format!(
            "[edge]\nretry_backoff_ms = 200\nretry_backoff_max_ms = 1000\n\
             [[push]]\napp = \"live\"\n\
             urls = [\"rtmp://127.0.0.1:{}/live\", \"rtmp://127.0.0.1:{port}/live/pushed\"]\n\
             [[push]]\napp = \"other\"\nurls = [\"rtmp://127.0.0.1:9/other\"]\n",
            nginx.server.port
        ),
    );
    let mut publisher = publish(&node.server.url("multi"));
    let at_nginx = url(nginx.server.port, "multi");
    let at_cascade = url(port, "pushed");
    let ffmpeg = tool("ffmpeg");
    wait_playable_with_ffmpeg(&ffmpeg, &at_nginx, Duration::from_secs(30));
    wait_playable_with_ffmpeg(&ffmpeg, &at_cascade, Duration::from_secs(30));
    assert_decodes(&at_nginx, "nginx push target");
    assert_decodes(&at_cascade, "cascade push target");
    assert_decodes(&node.server.url("multi"), "player at the pushing node");
    // Only the `live` entry applies: two pushes.
    assert_eq!(
        node.metric("cascade_outbound_publishes{kind=\"push\"}"),
        Some(2.0)
    );

    // One target dies: the other target, the publisher and local players
    // carry on while the push retries.
    target.signal("KILL");
    let _ = target.wait_timeout(Duration::from_secs(5));
    wait_until(
        "the push to notice the dead target",
        Duration::from_secs(15),
        || {
            let page = node.get("/metrics");
            let failed = ["lost", "connect"].iter().any(|r| {
                let s = format!(
                    "cascade_outbound_publish_failures_total{{kind=\"push\",reason=\"{r}\"}}"
                );
                common::ops::metric_value(&page, &s).unwrap_or(0.0) > 0.0
            });
            failed
        },
    );
    assert_decodes(&at_nginx, "nginx push target while the other is down");
    assert_decodes(
        &node.server.url("multi"),
        "local player while a target is down",
    );
    assert!(publisher.try_status().is_none(), "publisher died");
    assert_eq!(nginx.clients("multi").1, 1, "{}", nginx.stat());

    // It comes back on the same port: the push reconnects on its own.
    let _target = cascade_on(port);
    wait_playable_with_ffmpeg(&ffmpeg, &at_cascade, Duration::from_secs(30));
    assert_decodes(&at_cascade, "restarted cascade push target");
    let reconnects = node
        .metric("cascade_outbound_publish_reconnects_total{kind=\"push\"}")
        .unwrap_or(0.0);
    assert!(reconnects >= 1.0, "push reconnects: {reconnects}");
    assert_eq!(
        node.metric("cascade_outbound_publish_starts_total{kind=\"push\"}"),
        Some(2.0),
        "a reconnect is not a new push"
    );
    let pushed = node
        .metric("cascade_forwarded_bytes_total{kind=\"push\"}")
        .unwrap_or(0.0);
    assert!(pushed > 200_000.0, "pushed bytes: {pushed}");
    assert!(publisher.try_status().is_none(), "publisher died");
}

#[test]
fn stream_keys_and_tokens_stay_out_of_the_log() {
    let _s = serial();
    let target = OpsServer::start(&["--workers", "1"], &[]);
    let dead = free_port();
    let dir = temp_dir("cascade-redact-");
    // Debug level, so the connect line with the tcUrl is written too. A
    // forward passes the publisher's query on; one push names its key in
    // the URL, another goes nowhere (its failures are logged).
    let node = node(
        dir.path(),
        &format!(
            "[log]\nlevel = \"cascade=debug\"\n\
             [edge]\norigins = [\"rtmp://127.0.0.1:{tp}/fwd\"]\nforward_publish = true\n\
             pass_query = true\nretry_backoff_ms = 200\nretry_backoff_max_ms = 1000\n\
             [[push]]\napp = \"live\"\nurls = [\"rtmp://127.0.0.1:{tp}/live/SECRET-push-key\", \
             \"rtmp://127.0.0.1:{dead}/live2/SECRET-dead-key?sign=SECRET-sign\"]\n",
            tp = target.server.port
        ),
    );
    let publish_url = format!(
        "rtmp://127.0.0.1:{}/live?key=SECRET-tc/cam?token=SECRET-token",
        node.server.port
    );
    let _publisher = publish(&publish_url);
    wait_until(
        "the forward and the push to go live, and the dead push to fail",
        Duration::from_secs(30),
        || {
            let log = node.server.log();
            log.matches("publishing upstream").count() >= 2
                && log.contains("outbound publish failed")
        },
    );
    let log = node.server.log();
    // What was logged, masked.
    assert!(log.contains("tc_url=rtmp://"), "{}", tail(&log, 40));
    assert!(log.contains("/live2/***?sign=***"), "{}", tail(&log, 40));
    assert!(log.contains("/live/***"), "{}", tail(&log, 40));
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains("SECRET")).collect();
    assert!(
        leaks.is_empty(),
        "secrets in the log:\n{}",
        leaks.join("\n")
    );
}
