//! Operations against a running cascade: probes, the streams and clients
//! API with kicks, a separate API listener, environment overrides, JSON
//! logs, `check-config`, SIGHUP reload and SIGTERM drain, `/metrics`
//! behind the API token, and players by protocol.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use cascade::protocol::amf::Amf0Value;
use common::http_play;
use common::ops::{http, http_with, metric_sum, OpsServer};
use common::rtmp_client::{status_code, RtmpClient};
use common::{free_port, publish_ffmpeg, run_with_timeout, tool, wait_playable_with_ffmpeg, Clip};

const T: Duration = Duration::from_secs(10);

/// A raw publisher of `live/NAME` that got `NetStream.Publish.Start`.
fn raw_publisher(port: u16, name: &str) -> RtmpClient {
    let mut c = RtmpClient::connect(port, "live", T).expect("connect");
    let sid = c.create_stream(T).expect("createStream");
    c.command(
        sid,
        "publish",
        vec![Amf0Value::from(name), Amf0Value::from("live")],
    )
    .expect("publish");
    wait_status(&mut c, "NetStream.Publish.Start", T);
    c
}

/// Reads until an `onStatus` with `code` arrives; panics at the deadline.
fn wait_status(c: &mut RtmpClient, code: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match c.next_message(deadline) {
            Ok(Some(m)) => {
                if let Some(s) = status_code(&m) {
                    if s == code {
                        return;
                    }
                    seen.push(s);
                }
            }
            Ok(None) => break,
            Err(e) => panic!("waiting for {code}: {e}; statuses seen: {seen:?}"),
        }
    }
    panic!("no {code} within {timeout:?}; statuses seen: {seen:?}");
}

#[test]
fn probes_streams_api_and_kicks() {
    let ops = OpsServer::start(&["--workers", "2"], &[]);
    assert_eq!(ops.get("/healthz").trim(), "ok");
    assert_eq!(ops.get("/readyz").trim(), "ready");
    let ffmpeg = tool("ffmpeg");
    let url = ops.server.url("opsapi");
    let mut publisher = publish_ffmpeg(&ffmpeg, &Clip::H264Aac.path(), &url);
    wait_playable_with_ffmpeg(&ffmpeg, &url, Duration::from_secs(20));

    let doc = ops.wait_json("/api/v1/streams", T, |v| {
        v["streams"][0]["bitrate_bps"].as_u64().unwrap_or(0) > 0
    });
    let s = &doc["streams"][0];
    assert_eq!(s["key"], "live/opsapi");
    assert_eq!(s["app"], "live");
    assert_eq!(s["name"], "opsapi");
    assert_eq!(s["publishing"], true);
    assert!(
        s["publisher"]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{s}"
    );
    assert!(
        s["video_codec"].is_string() && s["audio_codec"].is_string(),
        "{s}"
    );
    assert!(s["uptime_ms"].as_u64().unwrap_or(0) > 0, "{s}");
    assert!(s["players_per_core"].is_object(), "{s}");
    let one = ops.json("/api/v1/streams/live/opsapi");
    assert_eq!(one["key"], "live/opsapi");
    assert_eq!(
        http(ops.http, "GET", "/api/v1/streams/live/nosuch")
            .unwrap()
            .0,
        404
    );

    // A connection that only connected: listed, then kicked by id.
    let mut idle = RtmpClient::connect(ops.server.port, "live", T).expect("connect");
    let clients = ops.wait_json("/api/v1/clients", T, |v| {
        v["clients"].as_array().is_some_and(|c| c.len() >= 2)
    });
    let list = clients["clients"].as_array().unwrap();
    assert!(
        list.iter()
            .any(|c| c["role"] == "publisher" && c["stream"] == "live/opsapi"),
        "{clients}"
    );
    let idle_entry = list
        .iter()
        .find(|c| c["role"] == "idle")
        .unwrap_or_else(|| panic!("no idle client in {clients}"));
    let id = idle_entry["id"].as_u64().unwrap();
    let (status, body) = http(ops.http, "DELETE", &format!("/api/v1/clients/{id}")).unwrap();
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + T;
    loop {
        match idle.next_message(deadline) {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("kicked client still open at the deadline"),
            Err(_) => break,
        }
    }
    assert_eq!(
        http(ops.http, "DELETE", "/api/v1/clients/12345").unwrap().0,
        404
    );

    // Kick the stream: its publisher is closed.
    let (status, body) = http(ops.http, "DELETE", "/api/v1/streams/live/opsapi").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        publisher.wait_timeout(T).is_some(),
        "ffmpeg kept publishing after the kick"
    );
    assert!(
        ops.metric("cascade_kicks_total{reason=\"api\"}")
            .unwrap_or(0.0)
            >= 2.0
    );
    assert!(
        ops.get("/metrics")
            .contains("cascade_handshake_duration_seconds_count"),
        "metrics page lacks the handshake histogram"
    );
}

#[test]
fn api_listener_env_overrides_and_json_logs() {
    let api = free_port();
    let api_addr = format!("127.0.0.1:{api}");
    let ops = OpsServer::start(
        &[],
        &[
            ("CASCADE_HTTP_API_LISTEN", &api_addr),
            ("CASCADE_LOG_FORMAT", "json"),
            ("CASCADE_METRICS_PER_STREAM", "true"),
        ],
    );
    // The API moved to its own listener; probes and metrics stayed.
    assert_eq!(http(ops.http, "GET", "/api/v1/streams").unwrap().0, 404);
    assert_eq!(http(ops.http, "GET", "/readyz").unwrap().0, 200);
    assert_eq!(http(api, "GET", "/metrics").unwrap().0, 404);
    let (status, body) = http(api, "GET", "/api/v1/streams").unwrap();
    assert_eq!(status, 200, "{body}");

    let _p = raw_publisher(ops.server.port, "jsonlog");
    let ok = ops.server.wait_log(T, |log| log.contains("\"publish\""));
    let log = ops.server.log();
    assert!(ok, "no JSON publish line:\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("\"publish\""))
        .expect("publish line");
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["fields"]["stream"], "live/jsonlog", "{v}");
    assert!(v["span"]["peer"].is_string(), "no conn span in {v}");
    // Per-stream series are on through the environment too.
    let page = ops.get("/metrics");
    assert!(
        page.contains("cascade_stream_uptime_seconds{stream=\"live/jsonlog\"}"),
        "{page}"
    );
}

#[test]
fn check_config_reports_every_error() {
    let dir = common::temp_dir("cascade-check-config-");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten_adr = \"x\"\nchunk_size = \"big\"\n[nosuch]\nkey = 1\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_cascade");
    let mut cmd = Command::new(bin);
    cmd.arg("check-config").arg(&bad);
    let out = run_with_timeout("check-config", cmd, T);
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(2),
        "{}",
        out.describe()
    );
    for key in ["server.listen_adr", "server.chunk_size", "nosuch"] {
        assert!(
            out.stderr.contains(key),
            "{key} not reported:\n{}",
            out.stderr
        );
    }
    let values = dir.path().join("values.toml");
    std::fs::write(
        &values,
        "[limits]\nmax_chunk_streams = 0\n[log]\nformat = \"xml\"\n[http]\nlisten = \"nowhere\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("check-config").arg(&values);
    let out = run_with_timeout("check-config", cmd, T);
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(2),
        "{}",
        out.describe()
    );
    for key in ["limits.max_chunk_streams", "log.format", "http.listen"] {
        assert!(
            out.stderr.contains(key),
            "{key} not reported:\n{}",
            out.stderr
        );
    }
    // Durations so long that timer arithmetic would overflow.
    let huge = dir.path().join("huge.toml");
    std::fs::write(
        &huge,
        "[limits]\nidle_timeout_ms = 9223372036854775807\n[edge]\nlinger_ms = 604800001\n",
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("check-config").arg(&huge);
    let out = run_with_timeout("check-config", cmd, T);
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(2),
        "{}",
        out.describe()
    );
    for key in ["limits.idle_timeout_ms", "edge.linger_ms"] {
        assert!(
            out.stderr.contains(key),
            "{key} not reported:\n{}",
            out.stderr
        );
    }
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/config/cascade.toml");
    let mut cmd = Command::new(bin);
    cmd.arg("check-config").arg(good);
    let out = run_with_timeout("check-config", cmd, T);
    assert!(out.success(), "{}", out.describe());
}

#[test]
fn sighup_reloads_live_settings_without_dropping() {
    let dir = common::temp_dir("cascade-reload-");
    let file = dir.path().join("cascade.toml");
    std::fs::write(&file, "[log]\nlevel = \"info\"\n").unwrap();
    let path = file.to_string_lossy().to_string();
    let ops = OpsServer::start(&["--config", &path], &[]);
    let mut publisher = raw_publisher(ops.server.port, "reload");
    std::fs::write(
        &file,
        "[log]\nlevel = \"debug\"\n[player]\nqueue_max_ms = 1500\n[server]\ntcp_nodelay = false\n",
    )
    .unwrap();
    ops.signal("HUP");
    assert!(
        ops.server
            .wait_log(T, |l| l.contains("configuration reloaded")),
        "no reload line:\n{}",
        ops.server.log()
    );
    let log = ops.server.log();
    let reload = log
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap();
    assert!(
        reload.contains("log.level") && reload.contains("player.queue_max_ms"),
        "{reload}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("cannot change live") && l.contains("server.tcp_nodelay")),
        "restart-only key not reported:\n{log}"
    );
    // The new level is in force: a new connection logs at debug.
    let _probe = TcpStream::connect(("127.0.0.1", ops.server.port)).unwrap();
    assert!(
        ops.server
            .wait_log(T, |l| l.contains("cascade::conn: accepted")),
        "debug level not applied:\n{}",
        ops.server.log()
    );
    // A broken file changes nothing and is reported.
    std::fs::write(&file, "[player]\nqueue_max_ms = \"soon\"\n").unwrap();
    ops.signal("HUP");
    assert!(
        ops.server.wait_log(T, |l| l.contains("nothing changed")),
        "{}",
        ops.server.log()
    );
    // The publisher survived both reloads.
    let streams = ops.json("/api/v1/streams");
    assert_eq!(streams["streams"][0]["publishing"], true, "{streams}");
    assert!(!ops.server.log().contains("unpublish"));
    publisher
        .command(0, "_checkbw", vec![])
        .expect("publisher still connected");
}

#[test]
fn sigterm_drains_then_exits() {
    let mut ops = OpsServer::start(&[], &[("CASCADE_SERVER_DRAIN_TIMEOUT_MS", "3000")]);
    let port = ops.server.port;
    let mut publisher = raw_publisher(port, "drain");
    let started = Instant::now();
    ops.signal("TERM");
    // Not ready while draining; health stays ok.
    let deadline = Instant::now() + T;
    loop {
        let (status, body) = http(ops.http, "GET", "/readyz").expect("readyz");
        if status == 503 {
            assert_eq!(body.trim(), "draining");
            break;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {status}");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ops.metric("cascade_draining"), Some(1.0));
    // Publishers are asked to reconnect elsewhere (on their next input).
    publisher.command(0, "_checkbw", vec![]).expect("send");
    wait_status(&mut publisher, "NetConnection.Connect.ReconnectRequest", T);
    // The listener is closed.
    thread::sleep(Duration::from_millis(200));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting while draining"
    );
    // This publisher ignores the request: the drain timeout closes it and
    // the process exits cleanly.
    let status = ops.wait_exit(Duration::from_secs(15));
    let took = started.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}; log:\n{}",
        ops.server.log()
    );
    assert!(took >= Duration::from_millis(2500), "exited after {took:?}");
    let log = ops.server.log();
    assert!(log.contains("drain timeout: closing connections"), "{log}");
}

#[test]
fn second_sigterm_exits_at_once() {
    let mut ops = OpsServer::start(&[], &[("CASCADE_SERVER_DRAIN_TIMEOUT_MS", "60000")]);
    let _publisher = raw_publisher(ops.server.port, "drain2");
    ops.signal("TERM");
    assert!(
        ops.server.wait_log(T, |l| l.contains("SIGTERM: draining")),
        "{}",
        ops.server.log()
    );
    let t = Instant::now();
    ops.signal("TERM");
    let status = ops.wait_exit(Duration::from_secs(5));
    assert!(status.is_some(), "second SIGTERM did not exit");
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn metrics_behind_the_token_and_players_by_protocol() {
    let token = "ops-token";
    let ops = OpsServer::start(
        &["--workers", "2"],
        &[
            ("CASCADE_HTTP_API_TOKEN", token),
            ("CASCADE_HTTP_METRICS_TOKEN", "true"),
        ],
    );
    let auth = format!("Authorization: Bearer {token}\r\n");
    let get = |path: &str| http_with(ops.http, "GET", path, &auth).expect(path);
    assert_eq!(http(ops.http, "GET", "/metrics").unwrap().0, 401);
    let wrong = http_with(
        ops.http,
        "GET",
        "/metrics",
        "Authorization: Bearer nope\r\n",
    );
    assert_eq!(wrong.unwrap().0, 401);
    // The probes never ask for it.
    assert_eq!(http(ops.http, "GET", "/readyz").unwrap().0, 200);
    assert_eq!(get("/metrics").0, 200);

    let ffmpeg = tool("ffmpeg");
    let url = ops.server.url("byproto");
    let _publisher = publish_ffmpeg(&ffmpeg, &Clip::H264Aac.path(), &url);
    wait_playable_with_ffmpeg(&ffmpeg, &url, Duration::from_secs(20));
    let mut player = http_play::get(ops.http, "/live/byproto.flv", "");
    assert_eq!(player.status, 200, "{}", player.head);
    let (tags, _) = player.read_tags(Duration::from_secs(1));
    assert!(!tags.is_empty(), "no FLV tags");

    let http_flv = ["protocol=\"http-flv\""];
    let deadline = Instant::now() + T;
    let page = loop {
        let (status, page) = get("/metrics");
        assert_eq!(status, 200);
        if metric_sum(&page, "cascade_players", &http_flv) == 1.0 {
            break page;
        }
        assert!(Instant::now() < deadline, "no HTTP-FLV player:\n{page}");
        thread::sleep(Duration::from_millis(100));
    };
    assert!(metric_sum(&page, "cascade_bytes_out_total", &http_flv) > 0.0);
    assert!(metric_sum(&page, "cascade_messages_out_total", &http_flv) > 0.0);
    assert!(metric_sum(&page, "cascade_connections", &["role=\"publisher\""]) >= 1.0);

    let (status, body) = get("/api/v1/clients");
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).expect("clients JSON");
    let list = doc["clients"].as_array().expect("clients");
    let find = |role: &str| list.iter().find(|c| c["role"] == role);
    let viewer = find("player").unwrap_or_else(|| panic!("no player in {doc}"));
    assert_eq!(viewer["protocol"], "http-flv", "{doc}");
    let publisher = find("publisher").unwrap_or_else(|| panic!("no publisher in {doc}"));
    assert_eq!(publisher["protocol"], "rtmp", "{doc}");
}
