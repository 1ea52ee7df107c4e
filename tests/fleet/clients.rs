//! Publishers and players, all on the clients' host: the load tester
//! (synthetic H.264 stamped with the publisher's clock, RTMP and HTTP-FLV
//! players that measure latency, loss, gaps and timestamps) and ffmpeg.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::ChildGuard;

/// The synthetic stream: small, so 8 nodes and 1,000 players fit in two
/// cores beside everything else. 10 fps with a keyframe a second.
const SOURCE: &[&str] = &[
    "--generate",
    "--bitrate",
    "48k",
    "--fps",
    "10",
    "--gop",
    "10",
    "--audio-bitrate",
    "0",
];

pub struct Clients {
    pub ns: String,
    pub loadtest: PathBuf,
    pub dir: PathBuf,
}

/// One load-tester publisher process and the streams it publishes.
pub struct Publisher {
    pub streams: Vec<String>,
    pub proc: ChildGuard,
}

impl Publisher {
    /// The moves it made (`publish live/x: ...; moving to rtmp://...`).
    pub fn moves(&self) -> Vec<String> {
        self.proc
            .stderr_text()
            .lines()
            .filter(|l| l.contains("moving to"))
            .map(str::to_string)
            .collect()
    }

    pub fn assert_alive(&mut self) {
        if let Some(st) = self.proc.try_status() {
            panic!(
                "publisher of {:?} exited ({st}):\n{}",
                self.streams,
                crate::common::tail(&self.proc.stderr_text(), 20)
            );
        }
    }
}

/// A group of players on one edge, running for a fixed time.
pub struct Players {
    pub label: String,
    report: PathBuf,
    proc: ChildGuard,
}

/// What a group of players saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub label: String,
    pub connected: u64,
    pub up_at_end: u64,
    pub frames: u64,
    pub lost: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub max_gap_ms: f64,
    pub backwards: u64,
    pub connect_failures: Value,
    pub disconnects: Value,
    pub bad_starts: u64,
}

impl Clients {
    fn command(&self) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]);
        cmd
    }

    /// Publishes `streams` (names) to `url_of(name)`; on a reconnect request
    /// or a drop each stream moves to the next of `move_to` (`host:port`).
    pub fn publish(&self, urls: &[String], move_to: &[String]) -> Publisher {
        let mut cmd = self.command();
        cmd.arg(&self.loadtest).arg("publish").args(SOURCE);
        for u in urls {
            cmd.args(["--url", u]);
        }
        for m in move_to {
            cmd.args(["--move-to", m]);
        }
        Publisher {
            streams: urls.to_vec(),
            proc: ChildGuard::spawn("publisher", cmd),
        }
    }

    /// ffmpeg encoding a small test pattern (x264, 1 s GOP) in real time.
    pub fn ffmpeg(&self, url: &str) -> ChildGuard {
        let mut cmd = self.command();
        cmd.arg(crate::common::tool("ffmpeg")).args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "warning",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=10",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "10",
            "-b:v",
            "48k",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "flv",
            url,
        ]);
        ChildGuard::spawn("ffmpeg", cmd)
    }

    /// `players` players spread over `urls` in turn, for `secs`.
    pub fn play(&self, label: &str, urls: &[String], players: u64, secs: f64) -> Players {
        let report = self.dir.join(format!("{label}.json"));
        let _ = std::fs::remove_file(&report);
        let mut cmd = self.command();
        cmd.arg(&self.loadtest)
            .args(["play", "--quiet", "--no-gate", "--warmup-ms", "1000"])
            .args(["--url", &urls[0]]);
        for u in &urls[1..] {
            cmd.args(["--also-url", u]);
        }
        cmd.args(["--players", &players.to_string()])
            .args(["--ramp", "500", "--duration", &secs.to_string()])
            .arg("--report")
            .arg(&report);
        Players {
            label: label.to_string(),
            report,
            proc: ChildGuard::spawn(label, cmd),
        }
    }
}

impl Players {
    /// Waits for the run to end and reads its report.
    pub fn finish(mut self) -> Seen {
        let st = self.proc.wait_timeout(Duration::from_secs(60));
        assert!(
            st.is_some_and(|s| s.success()),
            "players {} did not finish ({st:?}):\n{}",
            self.label,
            crate::common::tail(&self.proc.stderr_text(), 20)
        );
        let text = std::fs::read_to_string(&self.report).expect("player report");
        let r: Value = serde_json::from_str(&text).expect("player report JSON");
        let lat = |k: &str| r["latency_ms"][k].as_f64().unwrap_or(f64::NAN);
        Seen {
            label: self.label.clone(),
            connected: r["players_connected"].as_u64().unwrap_or(0),
            up_at_end: r["players_up_at_end"].as_u64().unwrap_or(0),
            frames: r["video_frames"].as_u64().unwrap_or(0),
            lost: r["lost_frames"].as_u64().unwrap_or(0),
            p50_ms: lat("p50"),
            p99_ms: lat("p99"),
            max_ms: lat("max"),
            max_gap_ms: r["max_gap_ms"].as_f64().unwrap_or(f64::NAN),
            backwards: r["timestamps_backwards"].as_u64().unwrap_or(0),
            connect_failures: r["connect_failures"].clone(),
            disconnects: r["disconnects"].clone(),
            bad_starts: r["bad_starts"].as_u64().unwrap_or(0),
        }
    }
}

impl Seen {
    pub fn line(&self) -> String {
        format!(
            "{:<22} players {:>4} (up at end {:>4})  frames {:>6}  lost {:>3}  latency p50 {:>6.1} ms p99 {:>6.1} ms max {:>6.1} ms  longest gap {:>6.0} ms  ts backwards {}",
            self.label,
            self.connected,
            self.up_at_end,
            self.frames,
            self.lost,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.max_gap_ms,
            self.backwards
        )
    }

    /// Every player connected, stayed and started well; time never ran
    /// backwards.
    pub fn assert_clean(&self, players: u64) {
        assert_eq!(
            self.connected,
            players,
            "{}: players connected",
            self.line()
        );
        assert_eq!(
            self.up_at_end,
            players,
            "{}: players up at the end ({})",
            self.line(),
            self.disconnects
        );
        assert_eq!(self.backwards, 0, "{}", self.line());
        assert_eq!(self.bad_starts, 0, "{}", self.line());
        assert!(self.frames > 0, "{}", self.line());
    }
}
