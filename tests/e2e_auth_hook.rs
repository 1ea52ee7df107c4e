//! The HTTP auth hook, per-app rules and `[auth]` reload, end to end:
//! ffmpeg publishes and ffprobe plays against cascade, and a real HTTP
//! server (Python's http.server) is the hook.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::ops::OpsServer;
use common::rtmp_client::RtmpClient;
use common::{
    assert_refused, ffprobe, publish_ffmpeg, publish_once, tail, temp_dir, tool, wait_playable,
    ChildGuard, Clip,
};

/// The hook: allows a stream whose name starts with "ok" unless the query
/// says deny; "err*" gets a 500, "slow*" answers after 3 s. Every request
/// body is appended to the log file as one JSON line.
const HOOK: &str = r#"
import http.server, json, sys, time
port_file, log_file = sys.argv[1], sys.argv[2]
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', '0')))
        req = json.loads(body)
        with open(log_file, 'a') as f:
            f.write(json.dumps(req) + "\n")
        name = req.get('stream', '')
        if name.startswith('slow'):
            time.sleep(3)
            code = 200
        elif name.startswith('err'):
            code = 500
        elif name.startswith('ok') and 'deny' not in req.get('query', ''):
            code = 200
        else:
            code = 403
        self.send_response(code)
        self.send_header('Content-Length', '0')
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Hook)
with open(port_file + '.tmp', 'w') as f:
    f.write(str(server.server_address[1]))
import os
os.rename(port_file + '.tmp', port_file)
server.serve_forever()
"#;

struct HookServer {
    _guard: ChildGuard,
    port: u16,
    log: PathBuf,
}

impl HookServer {
    fn start(dir: &Path) -> HookServer {
        let script = dir.join("hook.py");
        fs::write(&script, HOOK).unwrap();
        let port_file = dir.join("hook.port");
        let log = dir.join("hook.log");
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(&port_file).arg(&log);
        let guard = ChildGuard::spawn("auth-hook", cmd);
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Some(p) = fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                break p;
            }
            assert!(Instant::now() < deadline, "hook server did not start");
            thread::sleep(Duration::from_millis(50));
        };
        HookServer {
            _guard: guard,
            port,
            log,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/auth", self.port)
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn start(dir: &Path, config: &str) -> OpsServer {
    let path = dir.join("cascade.toml");
    fs::write(&path, config).unwrap();
    OpsServer::start(&["--config", path.to_str().unwrap()], &[])
}

fn url(ops: &OpsServer, app: &str, name: &str) -> String {
    format!("rtmp://127.0.0.1:{}/{app}/{name}", ops.server.port)
}

fn assert_play_refused(url: &str, what: &str) {
    let (out, streams) = ffprobe(url, Duration::from_secs(10));
    assert!(
        !out.success() || streams.is_empty(),
        "{what}: play of {url} was not refused: {streams:?}"
    );
}

fn wait_log(ops: &OpsServer, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if ops.server.log().contains(needle) {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "log never said {needle:?}:\n{}",
        tail(&ops.server.log(), 40)
    );
}

#[test]
fn hook_decides_publish_and_play_before_answering() {
    let dir = temp_dir("auth-hook");
    let hook = HookServer::start(dir.path());
    let ops = start(
        dir.path(),
        &format!(
            "[auth]\npublish = \"hook\"\nplay = \"hook\"\nhook_url = \"{}\"\nhook_timeout_ms = 1000\n",
            hook.url()
        ),
    );

    // Allowed: the hook saw every field, and the stream plays.
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &url(&ops, "live", "ok1?key=abc"),
    );
    wait_playable(&url(&ops, "live", "ok1"), Duration::from_secs(20));
    let reqs = hook.requests();
    let publish = reqs
        .iter()
        .find(|r| r["action"] == "publish")
        .expect("hook asked about the publish");
    assert_eq!(publish["app"], "live");
    assert_eq!(publish["stream"], "ok1");
    assert_eq!(publish["key"], "live/ok1");
    assert_eq!(publish["query"], "key=abc");
    assert_eq!(publish["client_ip"], "127.0.0.1");
    assert!(publish["client_port"].as_u64().unwrap_or(0) > 0);
    assert!(reqs
        .iter()
        .any(|r| r["action"] == "play" && r["stream"] == "ok1"));

    // Refused by the hook: the publish never starts, the play is refused.
    assert_refused(&publish_once(&url(&ops, "live", "nope")), "hook 403");
    assert_play_refused(&url(&ops, "live", "ok1?deny=1"), "hook 403 on play");
    // Hook failures under hook_on_error = "deny": a 500 and a timeout.
    assert_refused(&publish_once(&url(&ops, "live", "err1")), "hook 500");
    let started = Instant::now();
    assert_refused(&publish_once(&url(&ops, "live", "slow1")), "hook timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a slow hook held the publish for {:?}",
        started.elapsed()
    );
    wait_log(&ops, "reason=hook_error");
    let page = ops.get("/metrics");
    let rejected = |reason: &str| {
        common::ops::metric_value(
            &page,
            &format!("cascade_auth_rejections_total{{action=\"publish\",reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(rejected("hook") >= 1.0, "{page}");
    assert!(rejected("hook_error") >= 2.0, "{page}");
    // The first stream played on throughout.
    wait_playable(&url(&ops, "live", "ok1"), Duration::from_secs(20));
}

#[test]
fn hook_on_error_allow_lets_streams_in_while_the_hook_is_down() {
    let dir = temp_dir("auth-hook-down");
    // Nothing listens on this port.
    let port = common::free_port();
    let ops = start(
        dir.path(),
        &format!(
            "[auth]\npublish = \"hook\"\nhook_url = \"http://127.0.0.1:{port}/auth\"\nhook_on_error = \"allow\"\nhook_timeout_ms = 500\n"
        ),
    );
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &url(&ops, "live", "cam"),
    );
    wait_playable(&url(&ops, "live", "cam"), Duration::from_secs(20));
    wait_log(&ops, "auth hook failed");
}

#[test]
fn per_app_rules_and_reload_on_sighup() {
    let dir = temp_dir("auth-reload");
    let config = |keys: &str| {
        format!(
            "[auth]\npublish = \"key\"\npublish_keys = [{keys}]\n\n[[auth.app]]\nname = \"open\"\npublish = \"open\"\n"
        )
    };
    let ops = start(dir.path(), &config("\"k1\""));
    // Per app: "open" needs no key, "live" does.
    let _open = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &url(&ops, "open", "cam"),
    );
    wait_playable(&url(&ops, "open", "cam"), Duration::from_secs(20));
    assert_refused(&publish_once(&url(&ops, "live", "cam")), "no key");
    assert_refused(&publish_once(&url(&ops, "live", "cam?key=k2")), "old keys");

    // New keys on SIGHUP: k2 works, k1 no longer does; nothing is dropped.
    fs::write(dir.path().join("cascade.toml"), config("\"k2\"")).unwrap();
    ops.signal("HUP");
    wait_log(&ops, "configuration reloaded");
    let _live = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &url(&ops, "live", "cam?key=k2"),
    );
    wait_playable(&url(&ops, "live", "cam"), Duration::from_secs(20));
    assert_refused(
        &publish_once(&url(&ops, "live", "other?key=k1")),
        "revoked key",
    );
    wait_playable(&url(&ops, "open", "cam"), Duration::from_secs(20));
}

#[test]
fn a_full_hook_queue_refuses_even_under_hook_on_error_allow() {
    let dir = temp_dir("auth-hook-busy");
    let hook = HookServer::start(dir.path());
    // One request thread, one waiting slot: with the hook taking 3 s per
    // "slow" request, a burst of four publishes overflows the queue.
    let ops = start(
        dir.path(),
        &format!(
            "[auth]\npublish = \"hook\"\nhook_url = \"{}\"\nhook_on_error = \"allow\"\n\
             hook_timeout_ms = 5000\nhook_threads = 1\nhook_max_pending = 1\n",
            hook.url()
        ),
    );
    let port = ops.server.port;
    let burst: Vec<_> = (0..4)
        .map(|i| {
            thread::spawn(move || {
                let t = Duration::from_secs(15);
                let mut c = RtmpClient::connect(port, "live", t)?;
                c.publish(&format!("slow{i}"), t).map(|_| c)
            })
        })
        .collect();
    let results: Vec<_> = burst.into_iter().map(|h| h.join().unwrap()).collect();
    let denied = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.contains("NetStream.Publish.Denied")))
        .count();
    assert!(
        denied >= 1,
        "no publish was refused: {:?}\n{}",
        results.iter().map(|r| r.as_ref().err()).collect::<Vec<_>>(),
        tail(&ops.server.log(), 30)
    );
    wait_log(&ops, "reason=hook_busy");
    let busy = ops
        .metric("cascade_auth_rejections_total{action=\"publish\",reason=\"hook_busy\"}")
        .unwrap_or(0.0);
    assert!(busy >= 1.0, "hook_busy rejections: {busy}");
}

#[test]
fn the_hook_decides_http_plays_before_the_first_byte() {
    let dir = temp_dir("auth-hook-http");
    let hook = HookServer::start(dir.path());
    let ops = start(
        dir.path(),
        &format!(
            "[auth]\nplay = \"hook\"\nhook_url = \"{}\"\nhook_timeout_ms = 1000\n",
            hook.url()
        ),
    );
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &url(&ops, "live", "okhttp"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut allowed = loop {
        let p = common::http_play::get(ops.http, "/live/okhttp.flv?sid=7", "");
        if p.status == 200 || Instant::now() > deadline {
            break p;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(allowed.status, 200, "{}", allowed.head);
    let (tags, _) = allowed.read_tags(Duration::from_secs(2));
    common::http_play::assert_playable(&tags, "hook-allowed HTTP-FLV");
    let play = hook
        .requests()
        .into_iter()
        .find(|r| r["action"] == "play" && r["stream"] == "okhttp")
        .expect("the hook was asked about the HTTP play");
    assert_eq!(play["query"], "sid=7");
    assert_eq!(play["client_ip"], "127.0.0.1");
    // Refused by the hook (403), and a hook failure under the default
    // hook_on_error = "deny": both before any media byte.
    let denied = common::http_play::get(ops.http, "/live/okhttp.flv?deny=1", "");
    assert_eq!(denied.status, 403, "{}", denied.head);
    assert!(!denied.body.starts_with(b"FLV"));
    let failed = common::http_play::get(ops.http, "/live/errhttp.flv", "");
    assert_eq!(failed.status, 403, "{}", failed.head);
}
