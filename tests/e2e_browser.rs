//! A real browser plays cascade: headless Debian Chromium runs mpegts.js
//! (from the npm registry, pinned in tests/browser/package-lock.json) against
//! cascade's HTTP-FLV and WebSocket-FLV, fed by `cascade-loadtest publish`
//! with a 720p H.264 + AAC clip whose frames carry the publisher's wall
//! clock in SEI stamps. tests/browser/play.mjs does the browser side and
//! prints one JSON line; this file owns the setup (cascade, the clip, the
//! publisher, node_modules) and the assertions on that line: currentTime
//! advances, a decoded frame is not blank, latency stays under a second.
//!
//! Skips, loudly, only when /usr/bin/chromium is missing and
//! `CASCADE_REQUIRE_BROWSER` is unset; scripts/install-test-deps.sh installs
//! Chromium, so CI always runs it.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::edge::loadtest_bin;
use common::ops::OpsServer;
use common::{run_with_timeout, tail, tool, ChildGuard};

/// Seconds of playback each check samples.
const WATCH_SECONDS: u64 = 5;
/// Latency bound: a viewer on the same machine stays under a second behind.
const MAX_LATENCY_MS: f64 = 1000.0;
/// Longest currentTime may stand still inside the window (at 30 fps it
/// moves every sample, 100 ms apart, when all is well).
const MAX_STALL_MS: f64 = 750.0;

/// One browser at a time: two Chromiums decoding 720p on a two-core machine
/// beside two cascades and two publishers would measure the machine, not
/// cascade.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// False (after saying so on stderr) when there is no Chromium and nobody
/// asked for the browser tests to be mandatory.
fn browser_available() -> bool {
    if chromium().is_file() {
        return true;
    }
    assert!(
        std::env::var_os("CASCADE_REQUIRE_BROWSER").is_none(),
        "CASCADE_REQUIRE_BROWSER is set but there is no Chromium at {}: \
         run scripts/install-test-deps.sh",
        chromium().display()
    );
    // Straight to the stderr handle: libtest captures `eprintln!` of a
    // passing test, and a skip nobody sees is a silent pass.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!! SKIPPED: no Chromium at {} -- the browser playback test did NOT run. \
         scripts/install-test-deps.sh installs it; set CASCADE_REQUIRE_BROWSER=1 to make \
         this a failure. !!!!!\n",
        chromium().display()
    );
    false
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The player and the browser driver, installed from the lock file when the
/// install script has not done it (a developer running `cargo test` alone).
fn ensure_node_modules() {
    static ONCE: Mutex<bool> = Mutex::new(false);
    let mut done = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = browser_dir();
    let ready = |d: &Path| {
        d.join("node_modules/mpegts.js/dist/mpegts.js").is_file()
            && d.join("node_modules/playwright-core/package.json")
                .is_file()
    };
    if *done || ready(&dir) {
        *done = true;
        return;
    }
    let mut cmd = Command::new(tool("npm"));
    cmd.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir);
    let out = run_with_timeout("npm-ci", cmd, Duration::from_secs(180));
    assert!(
        out.success() && ready(&dir),
        "npm ci in tests/browser failed: {}\n{}",
        out.describe(),
        tail(&out.stderr, 30)
    );
    *done = true;
}

/// testsrc2 720p30 + a 440 Hz tone, 2 s GOP, as DESIGN.md's H.264 + AAC
/// clip; cached beside the other test clips (target/test-clips).
fn clip_720p() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-clips");
    // Bump the suffix when the encoding arguments change.
    let path = dir.join("h264-aac-720p-10s-v1.flv");
    if path.is_file() {
        return path;
    }
    fs::create_dir_all(&dir).expect("create clip dir");
    let part = dir.join(format!(".h264-aac-720p.{}.tmp.flv", std::process::id()));
    let mut cmd = Command::new(tool("ffmpeg"));
    cmd.args(["-y", "-hide_banner", "-nostdin", "-v", "error"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "10", "-c:v", "libx264", "-preset", "veryfast"])
        .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
        .args(["-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "5000k"])
        .args(["-c:a", "aac", "-b:a", "128k", "-f", "flv"])
        .arg(&part);
    let out = run_with_timeout("clip-encoder-720p", cmd, Duration::from_secs(120));
    assert!(
        out.success() && part.is_file(),
        "encoding the 720p clip failed: {}\n{}",
        out.describe(),
        out.stderr
    );
    // Another test binary encoding at the same time just wins or loses the
    // rename; both leave a complete clip.
    fs::rename(&part, &path).expect("rename clip into place");
    path
}

/// cascade with its HTTP listener, and the load tester publishing the
/// stamped clip to it in real time.
struct Live {
    cascade: OpsServer,
    _publisher: ChildGuard,
    name: &'static str,
}

impl Live {
    fn start(name: &'static str) -> Live {
        let clip = clip_720p();
        let cascade = OpsServer::start(&[], &[]);
        let mut cmd = Command::new(loadtest_bin());
        cmd.args(["publish", "--url", &cascade.server.url(name), "--file"])
            .arg(&clip)
            // Outlives the test; the guard ends it.
            .args(["--duration", "120"]);
        let mut publisher = ChildGuard::spawn("loadtest-publish", cmd);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !publisher.stderr_text().contains("publishing") {
            if let Some(st) = publisher.try_status() {
                panic!(
                    "the publisher exited ({st}) before publishing:\n{}",
                    publisher.stderr_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the publisher never started publishing:\n{}\ncascade:\n{}",
                publisher.stderr_text(),
                tail(&cascade.server.log(), 40)
            );
            thread::sleep(Duration::from_millis(50));
        }
        Live {
            cascade,
            _publisher: publisher,
            name,
        }
    }

    fn url(&self, scheme: &str) -> String {
        format!(
            "{scheme}://127.0.0.1:{}/live/{}.flv",
            self.cascade.http, self.name
        )
    }

    /// Runs play.mjs against `url` and returns its JSON line, failing the
    /// test with everything it printed (and cascade's log) if it failed.
    fn play(&mut self, url: &str, kind: &str) -> serde_json::Value {
        let mut cmd = Command::new(tool("node"));
        cmd.arg(browser_dir().join("play.mjs"))
            .args(["--url", url, "--type", kind])
            .args(["--seconds", &WATCH_SECONDS.to_string()])
            .args(["--max-latency-ms", &MAX_LATENCY_MS.to_string()])
            .args(["--max-stall-ms", &MAX_STALL_MS.to_string()])
            .args(["--timeout", "40"])
            .arg("--chromium")
            .arg(chromium());
        // play.mjs bounds itself at 40 s; this is the backstop.
        let out = run_with_timeout("play.mjs", cmd, Duration::from_secs(50));
        self.cascade.server.assert_alive();
        let line = out.stdout.lines().last().unwrap_or("").to_string();
        let result: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "play.mjs printed no JSON ({e}): {}\nstdout:\n{}\nstderr:\n{}\ncascade:\n{}",
                out.describe(),
                out.stdout,
                tail(&out.stderr, 40),
                tail(&self.cascade.server.log(), 40)
            )
        });
        eprintln!("{kind} {url}: {line}");
        assert!(
            out.success() && result["ok"] == true,
            "the browser's {kind} playback failed: {}\n{:#}\nstderr:\n{}\ncascade:\n{}",
            out.describe(),
            result,
            tail(&out.stderr, 40),
            tail(&self.cascade.server.log(), 40)
        );
        result
    }
}

/// The three things a viewer notices, read off play.mjs's report (which
/// checks them too: these are the test's own statement of the bounds).
fn assert_watchable(r: &serde_json::Value) {
    let num = |k: &str| {
        r[k].as_f64()
            .unwrap_or_else(|| panic!("{k} missing: {r:#}"))
    };
    let advance = num("advance");
    let wall = num("wallSeconds");
    assert!(
        advance >= 0.8 * wall && wall >= WATCH_SECONDS as f64 * 0.95,
        "currentTime moved {advance} s in {wall} s of wall time: {r:#}"
    );
    assert!(
        num("maxStallMs") <= MAX_STALL_MS,
        "playback stood still: {r:#}"
    );
    assert_eq!(r["blank"], false, "blank frame: {r:#}");
    let px = &r["pixelStats"]["end"];
    assert_eq!(
        (px["width"].as_u64(), px["height"].as_u64()),
        (Some(1280), Some(720)),
        "{r:#}"
    );
    let p50 = num("latencyMsP50");
    let max = num("latencyMsMax");
    assert!(
        max < MAX_LATENCY_MS && p50 <= max,
        "latency p50 {p50} ms, max {max} ms: {r:#}"
    );
    // Every stamped frame the browser received was in sequence.
    assert_eq!(r["tap"]["stampGaps"].as_u64(), Some(0), "{r:#}");
}

#[test]
fn chromium_plays_http_flv_with_mpegts_js_moving_colourful_and_under_a_second_behind() {
    if !browser_available() {
        return;
    }
    let _s = serial();
    ensure_node_modules();
    let mut live = Live::start("browser-http");
    let url = live.url("http");
    let r = live.play(&url, "flv");
    assert_eq!(r["tap"]["transport"], "http", "{r:#}");
    assert_watchable(&r);
}

#[test]
fn chromium_plays_websocket_flv_with_mpegts_js_moving_colourful_and_under_a_second_behind() {
    if !browser_available() {
        return;
    }
    let _s = serial();
    ensure_node_modules();
    let mut live = Live::start("browser-ws");
    let url = live.url("ws");
    let r = live.play(&url, "ws");
    assert_eq!(r["tap"]["transport"], "ws", "{r:#}");
    assert_watchable(&r);
}
