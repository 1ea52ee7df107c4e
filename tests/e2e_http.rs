//! HTTP-FLV and WebSocket-FLV end to end: real encoders publish over RTMP,
//! and ffmpeg, ffprobe, a plain socket and a WebSocket client play over
//! HTTP from the same cores, with the rules an RTMP player gets (auth,
//! edge pull, kicks, drain, the API token).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::edge::NginxOrigin;
use common::http_play::{assert_playable, flv_tags, get};
use common::ops::{http, OpsServer};
use common::{
    decoded_frames, ffmpeg9, ffmpeg_play, publish_ffmpeg, tail, tool, wait_playable_with_ffmpeg,
    Clip,
};
use tungstenite::Message;

const T: Duration = Duration::from_secs(20);

fn flv_url(ops: &OpsServer, name: &str) -> String {
    format!("http://127.0.0.1:{}/live/{name}.flv", ops.http)
}

/// Waits until `GET /live/NAME.flv` answers 200.
fn wait_http_playable(ops: &OpsServer, name: &str) {
    let deadline = Instant::now() + T;
    loop {
        let p = get(ops.http, &format!("/live/{name}.flv"), "");
        if p.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never playable over HTTP ({}); log:\n{}",
            p.status,
            tail(&ops.server.log(), 30)
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn relay_over_http(clip: Clip, ffmpeg: &std::path::Path, name: &str, video: &str, audio: &str) {
    let ops = OpsServer::start(&["--workers", "2"], &[]);
    let _publisher = publish_ffmpeg(ffmpeg, &clip.path(), &ops.server.url(name));
    let url = flv_url(&ops, name);
    wait_playable_with_ffmpeg(ffmpeg, &url, T);
    let out = ffmpeg_play(ffmpeg, &url, 3.0, "info", T);
    assert!(
        out.success(),
        "ffmpeg over HTTP-FLV failed: {}\n{}",
        out.describe(),
        tail(&out.stderr, 30)
    );
    for want in [format!("Video: {video}"), format!("Audio: {audio}")] {
        assert!(
            out.stderr.contains(&want),
            "expected `{want}` in:\n{}",
            tail(&out.stderr, 30)
        );
    }
    let frames = decoded_frames(&out);
    assert!(frames >= 60, "only {frames} frames decoded over HTTP-FLV");
}

#[test]
fn ffmpeg_decodes_h264_and_aac_over_http_flv() {
    relay_over_http(Clip::H264Aac, &tool("ffmpeg"), "h264", "h264", "aac");
}

#[test]
fn ffmpeg9_decodes_hevc_and_opus_over_http_flv() {
    relay_over_http(Clip::HevcOpus, &ffmpeg9(), "hevc", "hevc", "opus");
}

#[test]
fn http_flv_starts_on_a_keyframe_with_headers_and_cors() {
    let ops = OpsServer::start(&[], &[]);
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &ops.server.url("cors"),
    );
    wait_http_playable(&ops, "cors");
    let mut p = get(ops.http, "/live/cors.flv", "Range: bytes=0-\r\n");
    assert_eq!(p.status, 200, "{}", p.head);
    assert_eq!(p.header("Content-Type").as_deref(), Some("video/x-flv"));
    assert_eq!(
        p.header("Access-Control-Allow-Origin").as_deref(),
        Some("*")
    );
    assert!(p.header("Content-Length").is_none(), "{}", p.head);
    let (tags, _) = p.read_tags(Duration::from_secs(3));
    // Metadata, then the sequence headers, then the GOP from its keyframe.
    assert_eq!(tags[0].tag_type, 18, "metadata first");
    assert_playable(&tags, "HTTP-FLV");
    // HEAD answers the head only; a range past the start is refused.
    let head =
        common::http_play::request(ops.http, "HEAD /live/cors.flv HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        get(ops.http, "/live/cors.flv", "Range: bytes=10-\r\n").status,
        416
    );
    let preflight = common::http_play::request(
        ops.http,
        "OPTIONS /live/cors.flv HTTP/1.1\r\nHost: x\r\nOrigin: http://a.example\r\n\r\n",
    );
    assert_eq!(preflight.status, 204, "{}", preflight.head);
    assert_eq!(
        preflight.header("Access-Control-Allow-Origin").as_deref(),
        Some("*")
    );
    assert_eq!(get(ops.http, "/live/none.flv", "").status, 404);
    assert_eq!(get(ops.http, "/nothing", "").status, 404);
}

#[test]
fn websocket_flv_streams_tags_answers_pings_and_closes_on_data() {
    let ops = OpsServer::start(&[], &[]);
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &ops.server.url("ws"),
    );
    wait_http_playable(&ops, "ws");
    let url = format!("ws://127.0.0.1:{}/live/ws.flv", ops.http);
    let (mut ws, answer) = tungstenite::connect(&url).expect("websocket handshake");
    assert_eq!(answer.status().as_u16(), 101);
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let mut bytes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match ws.read().expect("websocket read") {
            Message::Binary(b) => bytes.extend_from_slice(&b),
            other => panic!("unexpected message {other:?}"),
        }
    }
    assert_playable(&flv_tags(&bytes), "WebSocket-FLV");
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    let mut ponged = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !ponged {
        if let Message::Pong(p) = ws.read().expect("read after ping") {
            assert_eq!(&p[..], b"are you there");
            ponged = true;
        }
    }
    assert!(ponged, "no pong");
    // A player has nothing to send: data closes the connection.
    ws.send(Message::Binary(b"hello".to_vec().into())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let code = loop {
        assert!(Instant::now() < deadline, "never closed");
        match ws.read() {
            Ok(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(e) => panic!("closed without a close frame: {e}"),
        }
    };
    assert_eq!(code, Some(1008));
}

#[test]
fn play_auth_refuses_with_401_and_403_before_any_body() {
    let secret = "http-secret";
    let ops = OpsServer::start(
        &[],
        &[
            ("CASCADE_AUTH_PLAY", "token"),
            ("CASCADE_AUTH_SECRET", secret),
        ],
    );
    let _publisher = publish_ffmpeg(&tool("ffmpeg"), &Clip::H264Aac.path(), &ops.server.url("a"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cascade"))
        .args(["sign", "--secret", secret, "--action", "play"])
        .args(["--stream", "live/a", "--ttl", "600"])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap();
    let token = token.lines().next().unwrap().to_string();
    let missing = get(ops.http, "/live/a.flv", "");
    assert_eq!(missing.status, 401, "{}", missing.head);
    let bad = get(ops.http, "/live/a.flv?token=nope", "");
    assert_eq!(bad.status, 403, "{}", bad.head);
    assert!(bad.body.is_empty() || !bad.body.starts_with(b"FLV"));
    let deadline = Instant::now() + T;
    let mut good = loop {
        let p = get(ops.http, &format!("/live/a.flv?token={token}"), "");
        if p.status == 200 || Instant::now() > deadline {
            break p;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(good.status, 200, "{}", good.head);
    let (tags, _) = good.read_tags(Duration::from_secs(2));
    assert_playable(&tags, "authorized HTTP-FLV");
    let page = ops.get("/metrics");
    let rejected = common::ops::metric_value(
        &page,
        "cascade_auth_rejections_total{action=\"play\",reason=\"missing\"}",
    );
    assert!(rejected.unwrap_or(0.0) >= 1.0, "{page}");
}

#[test]
fn an_edge_pulls_on_an_http_play_and_refuses_unknown_streams_with_404() {
    let origin = NginxOrigin::start();
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &origin.server.url("pulled"),
    );
    let deadline = Instant::now() + T;
    while origin.clients("pulled").1 != 1 {
        assert!(Instant::now() < deadline, "publisher never reached nginx");
        thread::sleep(Duration::from_millis(100));
    }
    let origin_url = format!("rtmp://127.0.0.1:{}/live", origin.server.port);
    let edge = OpsServer::start(
        &["--workers", "2", "--origin", &origin_url],
        &[("CASCADE_EDGE_START_TIMEOUT_MS", "3000")],
    );
    let mut p = get(edge.http, "/live/pulled.flv", "");
    assert_eq!(
        p.status,
        200,
        "{}\n{}",
        p.head,
        tail(&edge.server.log(), 20)
    );
    let (tags, _) = p.read_tags(Duration::from_secs(4));
    assert_playable(&tags, "HTTP-FLV through an edge pull");
    assert_eq!(edge.metric("cascade_edge_pull_starts_total"), Some(1.0));
    // nginx never says a stream is missing: the edge gives up after its
    // start timeout and answers 404.
    let started = Instant::now();
    let missing = get(edge.http, "/live/absent.flv", "");
    assert_eq!(missing.status, 404, "{}", missing.head);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn the_api_token_guards_the_api_and_kicks_of_http_players() {
    let token = "s3cret-token";
    let ops = OpsServer::start(&[], &[("CASCADE_HTTP_API_TOKEN", token)]);
    let _publisher = publish_ffmpeg(&tool("ffmpeg"), &Clip::H264Aac.path(), &ops.server.url("k"));
    wait_http_playable(&ops, "k");
    let mut player = get(ops.http, "/live/k.flv", "");
    assert_eq!(player.status, 200);
    let (tags, _) = player.read_tags(Duration::from_secs(1));
    assert!(!tags.is_empty());
    let auth = format!("Authorization: Bearer {token}\r\n");
    let (status, _) = http(ops.http, "GET", "/api/v1/clients").unwrap();
    assert_eq!(status, 401, "the API answered without a token");
    let wrong = get(
        ops.http,
        "/api/v1/clients",
        "Authorization: Bearer nope\r\n",
    );
    assert_eq!(wrong.status, 401);
    // Metrics stay open unless http.metrics_token says otherwise.
    assert_eq!(http(ops.http, "GET", "/metrics").unwrap().0, 200);
    let list = common::http_play::request(
        ops.http,
        &format!("GET /api/v1/clients HTTP/1.0\r\n{auth}\r\n"),
    );
    assert_eq!(list.status, 200, "{}", list.head);
    let body = read_rest(list);
    let clients: serde_json::Value = serde_json::from_str(&body).expect("clients JSON");
    let entry = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "player" && c["stream"] == "live/k")
        .unwrap_or_else(|| panic!("no HTTP player in {clients}"))
        .clone();
    let id = entry["id"].as_u64().unwrap();
    let kick = common::http_play::request(
        ops.http,
        &format!("DELETE /api/v1/clients/{id} HTTP/1.0\r\n{auth}\r\n"),
    );
    assert_eq!(kick.status, 200, "{}", kick.head);
    let (_, closed) = player.read_tags(Duration::from_secs(5));
    assert!(closed, "the kicked HTTP player is still open");
}

#[test]
fn a_drain_refuses_new_http_players_and_closes_the_rest_in_time() {
    let mut ops = OpsServer::start(&[], &[("CASCADE_SERVER_DRAIN_TIMEOUT_MS", "2000")]);
    let _publisher = publish_ffmpeg(&tool("ffmpeg"), &Clip::H264Aac.path(), &ops.server.url("d"));
    wait_http_playable(&ops, "d");
    let mut player = get(ops.http, "/live/d.flv", "");
    assert_eq!(player.status, 200);
    ops.signal("TERM");
    let deadline = Instant::now() + T;
    loop {
        if let Ok((503, _)) = http(ops.http, "GET", "/readyz") {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never said draining");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(ops.http, "/live/d.flv", "").status, 503);
    let started = Instant::now();
    let (tags, closed) = player.read_tags(Duration::from_secs(8));
    assert!(!tags.is_empty(), "the player got nothing during the drain");
    assert!(closed, "the HTTP player outlived the drain");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(ops.wait_exit(Duration::from_secs(10)).is_some());
}

/// Reads an answer's body to its end.
fn read_rest(mut p: common::http_play::HttpPlay) -> String {
    use std::io::Read;
    let mut body = std::mem::take(&mut p.body);
    let _ = p.sock.read_to_end(&mut body);
    String::from_utf8_lossy(&body).to_string()
}
