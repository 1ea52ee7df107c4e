//! A real browser plays cascade: headless Debian Chromium runs mpegts.js
//! against cascade's HTTP-FLV and WebSocket-FLV, and hls.js in low-latency
//! mode against its LL-HLS (the media playlist, and each variant of the
//! multivariant playlist: muxed, and video with separate audio), and
//! dash.js in low-latency mode against its
//! DASH (all players from the npm registry, pinned in
//! tests/browser/package-lock.json), fed by `cascade-loadtest publish` with
//! a 720p H.264 + AAC clip whose frames carry the publisher's wall clock in
//! SEI stamps. tests/browser/play.mjs does the browser side and prints one
//! JSON line; this file owns the setup (cascade, the clip, the publisher,
//! node_modules) and the assertions on that line: currentTime advances
//! without a stall, a decoded frame is not blank, latency stays under the
//! bound (a second for FLV, two for LL-HLS, three for DASH).
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

/// How long a check watches and what it tolerates.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    /// Seconds of playback the check samples.
    watch_seconds: u64,
    /// Latency behind the publisher, from the SEI stamps of what is shown.
    max_latency_ms: f64,
    /// Longest currentTime may stand still inside the window (at 30 fps it
    /// moves every sample, 100 ms apart, when all is well).
    max_stall_ms: f64,
    /// Length of the looped clip.
    clip_seconds: u64,
}

/// HTTP-FLV and WebSocket-FLV: a viewer on the same machine stays under a
/// second behind.
const FLV: Bounds = Bounds {
    watch_seconds: 5,
    max_latency_ms: 1000.0,
    max_stall_ms: 750.0,
    clip_seconds: 10,
};

/// LL-HLS with hls.js in low-latency mode: ten seconds without a stall
/// (currentTime still for over a second, or any stall hls.js reports), at
/// most two seconds behind the publisher (PART-HOLD-BACK is 0.6 s; hls.js
/// settles about a second behind).
///
/// The clip is 30 s so the window never reaches the loop point:
/// `cascade-loadtest publish` loops a file with one offset for both tracks,
/// which leaves the audio 58 ms short of the next pass (this clip's audio
/// starts 46 ms after its video). cascade keeps a gap of more than two AAC
/// frames as a gap, so the fMP4 audio timeline has a hole there; Chrome
/// stops at a hole in the buffered ranges and hls.js reports a
/// BUFFER_STALLED_ERROR once currentTime has stood still 1.25 s, then seeks
/// over it (BUFFER_SEEK_OVER_HOLE): a 1.4 s stall when seen. mpegts.js
/// fills such gaps itself, so the FLV checks keep the 10 s clip.
const HLS: Bounds = Bounds {
    watch_seconds: 10,
    max_latency_ms: 2000.0,
    max_stall_ms: 1000.0,
    clip_seconds: 30,
};

/// DASH with dash.js in low-latency mode (chunked segments, target live
/// delay 2 s, live catch-up on): ten seconds without a stall (currentTime
/// still for over a second, or any stall dash.js reports), at most three
/// seconds behind. dash.js does not parse SEI, so latency here is the wall
/// clock minus the frame's time on cascade's timeline (currentTime after
/// availabilityStartTime: cascade's clock when the frame arrived, a few ms
/// after the publisher sent it). The 30 s clip, for the reason `HLS` gives.
const DASH: Bounds = Bounds {
    watch_seconds: 10,
    max_latency_ms: 3000.0,
    max_stall_ms: 1000.0,
    clip_seconds: 30,
};

/// The clip's frame rate. Stamps number frames from 0 when publishing
/// starts, so the first loop point is stamp `clip_seconds * CLIP_FPS`.
const CLIP_FPS: u64 = 30;

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
            && d.join("node_modules/hls.js/dist/hls.js").is_file()
            && d.join("node_modules/dashjs/dist/modern/umd/dash.mediaplayer.min.js")
                .is_file()
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
/// clip, `seconds` long; cached beside the other test clips
/// (target/test-clips).
fn clip_720p(seconds: u64) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-clips");
    // Bump the suffix when the encoding arguments change.
    let path = dir.join(format!("h264-aac-720p-{seconds}s-v1.flv"));
    if path.is_file() {
        return path;
    }
    fs::create_dir_all(&dir).expect("create clip dir");
    let part = dir.join(format!(
        ".h264-aac-720p-{seconds}s.{}.tmp.flv",
        std::process::id()
    ));
    let mut cmd = Command::new(tool("ffmpeg"));
    cmd.args(["-y", "-hide_banner", "-nostdin", "-v", "error"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "veryfast"])
        .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
        .args(["-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "5000k"])
        .args(["-c:a", "aac", "-b:a", "128k", "-f", "flv"])
        .arg(&part);
    let out = run_with_timeout(
        "clip-encoder-720p",
        cmd,
        Duration::from_secs(60 + 6 * seconds),
    );
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
    bounds: Bounds,
}

impl Live {
    fn start(name: &'static str, bounds: Bounds) -> Live {
        let clip = clip_720p(bounds.clip_seconds);
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
            bounds,
        }
    }

    /// The LL-HLS media playlist.
    fn hls_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/live/{}/index.m3u8",
            self.cascade.http, self.name
        )
    }

    /// The LL-HLS multivariant playlist.
    fn master_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/live/{}/master.m3u8",
            self.cascade.http, self.name
        )
    }

    /// The DASH MPD.
    fn dash_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/live/{}/index.mpd",
            self.cascade.http, self.name
        )
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
        let b = self.bounds;
        let mut cmd = Command::new(tool("node"));
        cmd.arg(browser_dir().join("play.mjs"))
            .args(["--url", url, "--type", kind])
            .args(["--seconds", &b.watch_seconds.to_string()])
            .args(["--max-latency-ms", &b.max_latency_ms.to_string()])
            .args(["--max-stall-ms", &b.max_stall_ms.to_string()])
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
        // The window reaching the clip's loop point explains a stall of
        // hls.js there (see `HLS`): say so rather than leave it to be
        // rediscovered. (mpegts.js plays through it.)
        let pass = b.clip_seconds * CLIP_FPS;
        let looped = match result["tap"]["lastStampSeq"].as_u64() {
            Some(seq) if kind == "hls" && seq >= pass => format!(
                "\nNOTE: the window reached the clip's loop point (stamp {pass}; last seen \
                 {seq}): the publisher's loop leaves an audio gap there"
            ),
            _ => String::new(),
        };
        assert!(
            out.success() && result["ok"] == true,
            "the browser's {kind} playback failed: {}{looped}\n{:#}\nstderr:\n{}\ncascade:\n{}",
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
fn assert_watchable(r: &serde_json::Value, b: Bounds) {
    let num = |k: &str| {
        r[k].as_f64()
            .unwrap_or_else(|| panic!("{k} missing: {r:#}"))
    };
    let advance = num("advance");
    let wall = num("wallSeconds");
    assert!(
        advance >= 0.8 * wall && wall >= b.watch_seconds as f64 * 0.95,
        "currentTime moved {advance} s in {wall} s of wall time: {r:#}"
    );
    assert!(
        num("maxStallMs") <= b.max_stall_ms,
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
        max < b.max_latency_ms && p50 <= max,
        "latency p50 {p50} ms, max {max} ms: {r:#}"
    );
}

#[test]
fn chromium_plays_http_flv_with_mpegts_js_moving_colourful_and_under_a_second_behind() {
    if !browser_available() {
        return;
    }
    let _s = serial();
    ensure_node_modules();
    let mut live = Live::start("browser-http", FLV);
    let url = live.url("http");
    let r = live.play(&url, "flv");
    assert_eq!(r["tap"]["transport"], "http", "{r:#}");
    assert_watchable(&r, FLV);
    // Every stamped frame the browser received was in sequence.
    assert_eq!(r["tap"]["stampGaps"].as_u64(), Some(0), "{r:#}");
}

#[test]
fn chromium_plays_websocket_flv_with_mpegts_js_moving_colourful_and_under_a_second_behind() {
    if !browser_available() {
        return;
    }
    let _s = serial();
    ensure_node_modules();
    let mut live = Live::start("browser-ws", FLV);
    let url = live.url("ws");
    let r = live.play(&url, "ws");
    assert_eq!(r["tap"]["transport"], "ws", "{r:#}");
    assert_watchable(&r, FLV);
    assert_eq!(r["tap"]["stampGaps"].as_u64(), Some(0), "{r:#}");
}

#[test]
fn chromium_plays_ll_hls_with_hls_js_in_low_latency_mode() {
    if !browser_available() {
        return;
    }
    let _s = serial();
    ensure_node_modules();
    let mut live = Live::start("browser-hls", HLS);
    let url = live.hls_url();
    let r = live.play(&url, "hls");
    assert_watchable(&r, HLS);
    let tap = &r["tap"];
    let hls = &r["hls"];
    // Low-latency playback, not plain HLS: hls.js read cascade's LL tags,
    // loaded parts and held its playlist requests open.
    assert_eq!(tap["transport"], "hls", "{r:#}");
    assert_eq!(tap["lowLatencyMode"], true, "{r:#}");
    assert_eq!(tap["playlist"]["partTarget"].as_f64(), Some(0.2), "{r:#}");
    assert_eq!(tap["playlist"]["canBlockReload"], true, "{r:#}");
    assert!(tap["parts"].as_u64() > Some(0), "no parts loaded: {r:#}");
    assert!(
        tap["blockingReloads"].as_u64() > Some(0),
        "no blocking playlist reload: {r:#}"
    );
    // No stall hls.js saw, and no stamped frame missing, in the window.
    assert_eq!(hls["stallEventsInWindow"].as_u64(), Some(0), "{r:#}");
    assert_eq!(hls["stampGapsInWindow"].as_u64(), Some(0), "{r:#}");
}

#[test]
fn chromium_plays_ll_hls_with_byte_range_parts_with_hls_js() {
    if !browser_available() {
        return;
    }
    let _s = serial();
    ensure_node_modules();
    let mut live = Live::start("browser-hls-ranges", HLS);
    let url = format!("{}?parts=byterange", live.hls_url());
    let r = live.play(&url, "hls");
    assert_watchable(&r, HLS);
    let tap = &r["tap"];
    assert_eq!(tap["lowLatencyMode"], true, "{r:#}");
    assert_eq!(tap["playlist"]["partTarget"].as_f64(), Some(0.2), "{r:#}");
    // hls.js loads each byte-range part as a range of its segment.
    assert!(tap["parts"].as_u64() > Some(0), "no parts loaded: {r:#}");
    assert!(
        tap["blockingReloads"].as_u64() > Some(0),
        "no blocking playlist reload: {r:#}"
    );
    assert_eq!(r["hls"]["stallEventsInWindow"].as_u64(), Some(0), "{r:#}");
    assert_eq!(r["hls"]["stampGapsInWindow"].as_u64(), Some(0), "{r:#}");
}

#[test]
fn chromium_plays_the_muxed_variant_of_the_multivariant_playlist_with_hls_js() {
    if !browser_available() {
        return;
    }
    let _s = serial();
    ensure_node_modules();
    let mut live = Live::start("browser-hls-master", HLS);
    let url = live.master_url();
    let r = live.play(&url, "hls");
    assert_watchable(&r, HLS);
    let tap = &r["tap"];
    // The separate-audio variant and its rendition are offered, but the
    // muxed variant, which comes first, is what hls.js plays: nothing of
    // one track's is fetched.
    assert!(tap["muxedRequests"].as_u64() > Some(0), "{r:#}");
    assert_eq!(tap["trackRequests"].as_u64(), Some(0), "{r:#}");
    assert_eq!(tap["audioFragments"].as_u64(), Some(0), "{r:#}");
    assert_eq!(r["hls"]["stallEventsInWindow"].as_u64(), Some(0), "{r:#}");
}

#[test]
fn chromium_plays_the_separate_audio_variant_with_hls_js() {
    if !browser_available() {
        return;
    }
    let _s = serial();
    ensure_node_modules();
    let mut live = Live::start("browser-hls-split", HLS);
    // hlsplayer.js keeps only the multivariant playlist's second variant
    // (video.m3u8) and its audio rendition (audio.m3u8).
    let url = format!("{}#split", live.master_url());
    let r = live.play(&url, "hls");
    assert_watchable(&r, HLS);
    let tap = &r["tap"];
    assert_eq!(tap["form"], "split", "{r:#}");
    assert_eq!(tap["lowLatencyMode"], true, "{r:#}");
    assert!(tap["parts"].as_u64() > Some(0), "no parts loaded: {r:#}");
    assert!(
        tap["blockingReloads"].as_u64() > Some(0),
        "no blocking playlist reload: {r:#}"
    );
    // Audio came through the rendition's own loader, and nothing muxed was
    // fetched.
    assert!(tap["audioFragments"].as_u64() > Some(0), "{r:#}");
    assert!(tap["trackRequests"].as_u64() > Some(0), "{r:#}");
    assert_eq!(tap["muxedRequests"].as_u64(), Some(0), "{r:#}");
    assert_eq!(r["hls"]["stallEventsInWindow"].as_u64(), Some(0), "{r:#}");
    assert_eq!(r["hls"]["stampGapsInWindow"].as_u64(), Some(0), "{r:#}");
}

#[test]
fn chromium_plays_dash_with_dash_js() {
    if !browser_available() {
        return;
    }
    let _s = serial();
    ensure_node_modules();
    let mut live = Live::start("browser-dash", DASH);
    let url = live.dash_url();
    let r = live.play(&url, "dash");
    assert_watchable(&r, DASH);
    let tap = &r["tap"];
    let dash = &r["dash"];
    // Low-latency playback of both adaptation sets: dash.js read the MPD's
    // availabilityTimeComplete="false" and loaded video and audio segments.
    assert_eq!(tap["transport"], "dash", "{r:#}");
    assert_eq!(tap["lowLatencyMode"], true, "{r:#}");
    assert!(
        tap["mediaSegments"]["video"].as_u64() > Some(0)
            && tap["mediaSegments"]["audio"].as_u64() > Some(0),
        "media segments of both tracks: {r:#}"
    );
    assert_eq!(tap["errors"].as_u64(), Some(0), "dash.js errors: {r:#}");
    // No stall dash.js saw in the window.
    assert_eq!(dash["stallEventsInWindow"].as_u64(), Some(0), "{r:#}");
}
