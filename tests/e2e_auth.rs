//! End-to-end `[auth]` and connection limits: ffmpeg publishes and plays
//! against a cascade configured with stream keys, HMAC tokens (minted by
//! `cascade sign`), CIDR lists and a per-IP connection limit.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use cascade::auth::{self, Action};
use common::rtmp_client::{status_code, RtmpClient};
use common::{
    assert_refused, decoded_frames, ffmpeg_play, publish_ffmpeg, publish_once, tail, temp_dir,
    tool, wait_playable, Clip, Server,
};

/// cascade with `config` written to a temporary file.
fn start(config: &str) -> (Server, tempfile::TempDir) {
    let dir = temp_dir("cascade-auth");
    let path = dir.path().join("cascade.toml");
    std::fs::write(&path, config).unwrap();
    let server = Server::start_cascade(&["--config", path.to_str().unwrap()]);
    (server, dir)
}

/// Waits until the server logged a publish of `stream`.
fn wait_published(server: &Server, stream: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let needle = format!("stream={stream}");
    while Instant::now() < deadline {
        let log = server.log();
        if log
            .lines()
            .any(|l| l.contains("publish") && l.contains(&needle))
        {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{stream} never published; log:\n{}",
        tail(&server.log(), 40)
    );
}

/// `cascade sign …`: the token and the `?token=` suffix it prints.
fn cascade_sign(secret: &str, action: &str, stream: &str, ttl: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cascade"))
        .args(["sign", "--secret", secret, "--action", action])
        .args(["--stream", stream, "--ttl", ttl])
        .output()
        .unwrap();
    assert!(out.status.success(), "cascade sign failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let token = lines.next().unwrap().to_string();
    assert_eq!(lines.next(), Some(format!("?token={token}").as_str()));
    token
}

#[test]
fn static_publish_key() {
    let (server, _dir) = start("[auth]\npublish = \"key\"\npublish_keys = [\"abc123\"]\n");
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &server.url("cam?key=abc123"),
    );
    // Playing is open and the key is not part of the routing key.
    wait_playable(&server.url("cam"), Duration::from_secs(15));
    assert_refused(&publish_once(&server.url("cam2?key=wrong999")), "wrong key");
    assert_refused(&publish_once(&server.url("cam3")), "no key");
    let log = server.log();
    assert!(log.contains("auth: denied"), "{}", tail(&log, 30));
    assert!(!log.contains("wrong999"), "a key reached the log");
}

#[test]
fn signed_tokens_in_name_or_tcurl_and_expiry() {
    let secret = "t0ps3cret";
    let (server, _dir) = start(&format!(
        "[auth]\npublish = \"token\"\nsecret = \"{secret}\"\n"
    ));
    let ffmpeg = tool("ffmpeg");
    let clip = Clip::H264Aac.path();
    // OBS style: the token rides in the stream key.
    let t1 = cascade_sign(secret, "publish", "live/obs", "600");
    let _p1 = publish_ffmpeg(&ffmpeg, &clip, &server.url(&format!("obs?token={t1}")));
    wait_playable(&server.url("obs"), Duration::from_secs(15));
    // In the tcUrl: the app carries the query.
    let t2 = cascade_sign(secret, "publish", "live/tc", "600");
    let url = format!("rtmp://127.0.0.1:{}/live?token={t2}/tc", server.port);
    let _p2 = publish_ffmpeg(&ffmpeg, &clip, &url);
    wait_playable(&server.url("tc"), Duration::from_secs(15));
    // A token for another stream, an expired one, a forged one.
    assert_refused(
        &publish_once(&server.url(&format!("other?token={t1}"))),
        "token of another stream",
    );
    let old = auth::sign(
        secret.as_bytes(),
        Action::Publish,
        "live/late",
        auth::now_unix() - 10,
    );
    assert_refused(
        &publish_once(&server.url(&format!("late?token={old}"))),
        "expired",
    );
    let log = server.log();
    assert!(log.contains("reason=expired"), "{}", tail(&log, 30));
    assert!(!log.contains(&t1[11..]), "a token reached the log");
}

#[test]
fn play_key() {
    let (server, _dir) = start("[auth]\nplay = \"key\"\nplay_keys = [\"watch\"]\n");
    let _publisher = publish_ffmpeg(&tool("ffmpeg"), &Clip::H264Aac.path(), &server.url("cam"));
    wait_published(&server, "live/cam");
    let deadline = Instant::now() + Duration::from_secs(10);
    // The first GOP may still be on its way: retry the good key briefly.
    loop {
        let out = ffmpeg_play(
            &tool("ffmpeg"),
            &server.url("cam?key=watch"),
            1.0,
            "error",
            Duration::from_secs(10),
        );
        if out.success() && decoded_frames(&out) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "keyed play never worked:\n{}",
            out.stderr
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert_play_refused(&server, "cam", "play without key worked");
    assert_play_refused(&server, "cam?key=nope", "play with a wrong key worked");
}

#[test]
fn cidr_deny_blocks_play_not_publish() {
    let (server, _dir) = start("[auth]\nplay_deny = [\"127.0.0.0/8\"]\n");
    let _publisher = publish_ffmpeg(&tool("ffmpeg"), &Clip::H264Aac.path(), &server.url("cam"));
    wait_published(&server, "live/cam");
    thread::sleep(Duration::from_millis(500));
    assert_play_refused(&server, "cam", "denied address played");
    assert!(
        server.log().contains("reason=address"),
        "{}",
        tail(&server.log(), 30)
    );
}

/// True if the server closed `s` (EOF or reset) within two seconds.
fn closed_soon(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn per_ip_limit_closes_the_third_connection() {
    let (server, _dir) = start("[limits]\nmax_connections_per_ip = 2\n");
    // Let the start-up probes' connections close.
    thread::sleep(Duration::from_millis(500));
    let addr = format!("127.0.0.1:{}", server.port);
    let mut a = TcpStream::connect(&addr).unwrap();
    let mut b = TcpStream::connect(&addr).unwrap();
    thread::sleep(Duration::from_millis(200));
    let mut c = TcpStream::connect(&addr).unwrap();
    assert!(
        closed_soon(&mut c),
        "third connection from one address stayed open"
    );
    // The first two are alive: they get a handshake answer.
    for s in [&mut a, &mut b] {
        let mut c0c1 = vec![3u8];
        c0c1.extend(std::iter::repeat(0u8).take(1536));
        s.write_all(&c0c1).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut s0 = [0u8; 1];
        s.read_exact(&mut s0).unwrap();
        assert_eq!(s0[0], 3);
    }
    let log = server.log();
    assert!(log.contains("max_connections_per_ip"), "{}", tail(&log, 20));
}

/// A play that must not decode anything: refused, or ended without frames.
fn assert_play_refused(server: &Server, name: &str, what: &str) {
    let out = ffmpeg_play(
        &tool("ffmpeg"),
        &server.url(name),
        1.0,
        "error",
        Duration::from_secs(10),
    );
    assert!(!out.success() || decoded_frames(&out) == 0, "{what}");
}

/// Plays `name` on a fresh connection to `app`; the first Play.Start or
/// Play.Failed status the server answers.
fn play_status(server: &Server, app: &str, name: &str) -> String {
    let t = Duration::from_secs(10);
    let mut player = RtmpClient::connect(server.port, app, t).expect("connect");
    let sid = player.create_stream(t).expect("createStream");
    player.play(sid, name).expect("play");
    let deadline = Instant::now() + t;
    loop {
        let msg = player
            .next_message(deadline)
            .expect("read")
            .expect("no answer to play");
        match status_code(&msg) {
            Some(code) if code == "NetStream.Play.Start" || code == "NetStream.Play.Failed" => {
                return code
            }
            _ => {}
        }
    }
}

#[test]
fn app_rule_follows_the_stream_key_however_it_is_split() {
    // `[auth]` is open; app `live` needs a play key.
    let (server, _dir) =
        start("[[auth.app]]\nname = \"live\"\nplay = \"key\"\nplay_keys = [\"watch\"]\n");
    let t = Duration::from_secs(10);
    let mut publisher = RtmpClient::connect(server.port, "live", t).expect("connect");
    publisher
        .publish("team/cam", t)
        .expect("publish live + team/cam");
    wait_published(&server, "live/team/cam");
    // The same key `live/team/cam` from app `live/team`: still `live`'s rule.
    for (app, name) in [("live/team", "cam"), ("live", "team/cam")] {
        assert_eq!(
            play_status(&server, app, name),
            "NetStream.Play.Failed",
            "{app} + {name} played without a key:\n{}",
            tail(&server.log(), 20)
        );
    }
    assert_eq!(
        play_status(&server, "live/team", "cam?key=watch"),
        "NetStream.Play.Start",
        "{}",
        tail(&server.log(), 20)
    );
    // Another app's streams keep `[auth]`'s open rule.
    let mut other = RtmpClient::connect(server.port, "liveX", t).expect("connect");
    other.publish("cam", t).expect("publish liveX + cam");
    wait_published(&server, "liveX/cam");
    assert_eq!(play_status(&server, "liveX", "cam"), "NetStream.Play.Start");
}
