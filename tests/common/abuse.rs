//! Harness of `tests/e2e_abuse.rs`: a release build of cascade with 50
//! healthy loadtest players beside every attack, the server's resident
//! memory sampled while the attack runs, and the small wire builders the
//! attacks need (pause commands, pings, Enhanced RTMP sequence starts,
//! trickled bytes).
//!
//! Memory is measured on the release binary because a debug build's
//! allocation pattern (and its speed) says little about what an operator
//! runs; the build happens once per test process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cascade::protocol::amf::{encode_amf0, Amf0Value};
use cascade::protocol::chunk::encode_message;

use super::edge::loadtest_report;
use super::engine::{conn_events, http_get, stats};
use super::rtmp_client::{TYPE_COMMAND_AMF0, TYPE_USER_CONTROL};
use super::{run_with_timeout, tail, temp_dir, ChildGuard, Server};

/// Healthy players beside every attack.
pub const HEALTHY: u64 = 50;

/// Directory holding the release builds of `cascade` and
/// `cascade-loadtest`, built on first use (one cargo run per test process).
fn release_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // target/debug/cascade -> target: the same target directory as
        // this test build, whatever CARGO_TARGET_DIR said.
        let debug_bin = Path::new(env!("CARGO_BIN_EXE_cascade"));
        let target = debug_bin
            .parent()
            .and_then(Path::parent)
            .expect("target dir of the cascade binary");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--release", "--workspace"])
            .args(["--bin", "cascade", "--bin", "cascade-loadtest"])
            .arg("--target-dir")
            .arg(target);
        let out = run_with_timeout("cargo-build-release", cmd, Duration::from_secs(900));
        let dir = target.join("release");
        assert!(
            out.success() && dir.join("cascade").is_file(),
            "release build failed: {}\n{}",
            out.describe(),
            tail(&out.stderr, 30)
        );
        dir
    })
}

/// The release build of cascade.
pub fn release_cascade() -> PathBuf {
    release_dir().join("cascade")
}

pub fn release_loadtest() -> PathBuf {
    release_dir().join("cascade-loadtest")
}

/// A release cascade with `--http`, its config in a temp file, and (when
/// asked) `cascade-loadtest run` with a publisher and `HEALTHY` players of
/// `live/healthy`, which `finish` checks lost nothing.
pub struct Node {
    pub server: Server,
    pub http: u16,
    load: Option<Load>,
    _dir: tempfile::TempDir,
    /// One node at a time: each attack's timings and RSS figures assume
    /// nothing else of this suite runs beside it, whatever
    /// RUST_TEST_THREADS says.
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// Taken by every [`Node`] for its lifetime.
static ONE_NODE: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Load {
    guard: ChildGuard,
    report: PathBuf,
    ends: Instant,
}

impl Node {
    /// Starts the node with `config` (TOML) and, if `load_secs > 0`, the
    /// healthy load for that long; returns once every healthy player plays.
    pub fn start(config: &str, load_secs: f64) -> Node {
        Node::start_with(&release_cascade(), config, load_secs, &[])
    }

    /// As `start`, with another binary and extra environment variables.
    pub fn start_with(bin: &Path, config: &str, load_secs: f64, envs: &[(&str, &str)]) -> Node {
        // A test that failed while holding the lock poisons it; the next
        // one may still run.
        let serial = ONE_NODE.lock().unwrap_or_else(|p| p.into_inner());
        let dir = temp_dir("cascade-abuse");
        let path = dir.path().join("cascade.toml");
        std::fs::write(&path, config).expect("write config");
        let http = super::free_port();
        let server = Server::start_cascade_with(
            bin,
            &[
                "--config",
                path.to_str().expect("utf-8 temp path"),
                "--http",
                &format!("127.0.0.1:{http}"),
            ],
            envs,
        );
        let mut node = Node {
            server,
            http,
            load: None,
            _dir: dir,
            _serial: serial,
        };
        if load_secs > 0.0 {
            node.start_load(load_secs);
        }
        node
    }

    fn start_load(&mut self, secs: f64) {
        let report = self._dir.path().join("load.json");
        let mut cmd = Command::new(release_loadtest());
        cmd.args(["run", "--url", &self.server.url("healthy"), "--quiet"])
            .args(["--generate", "--bitrate", "1000k", "--audio-bitrate", "64k"])
            .args(["--players", &HEALTHY.to_string(), "--ramp", "100"])
            .args(["--duration", &secs.to_string()])
            .arg("--report")
            .arg(&report);
        let guard = ChildGuard::spawn("loadtest", cmd);
        let ends = Instant::now() + Duration::from_secs_f64(secs);
        let all_in = self.server.wait_log(Duration::from_secs(20), |log| {
            conn_events(log, "play", "live/healthy").len() >= HEALTHY as usize
        });
        assert!(
            all_in,
            "the healthy players did not all start playing\n{}",
            tail(&self.server.log(), 30)
        );
        // Let the healthy stream settle (first GOP, queues) before anyone
        // reads a memory baseline.
        thread::sleep(Duration::from_millis(1500));
        self.load = Some(Load {
            guard,
            report,
            ends,
        });
    }

    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Samples the node's RSS from now until `RssWatch::finish`.
    pub fn watch_rss(&self) -> RssWatch {
        RssWatch::start(self.pid())
    }

    /// Value of one series on `/metrics` (0 when the series is absent).
    pub fn metric(&self, series: &str) -> f64 {
        let page = http_get(self.http, "/metrics", Duration::from_secs(5)).expect("GET /metrics");
        metric_value(&page, series)
    }

    /// Sum of `total.protocol_errors` of `/api/v1/stats`.
    pub fn protocol_errors(&self) -> u64 {
        let doc = stats(self.http);
        doc["total"]["protocol_errors"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0)
    }

    /// Players of stream `key` (`live/NAME`) per `/api/v1/streams`; None if
    /// the stream is not listed.
    pub fn players_of(&self, key: &str) -> Option<u64> {
        let body =
            http_get(self.http, "/api/v1/streams", Duration::from_secs(5)).expect("GET streams");
        let doc: serde_json::Value = serde_json::from_str(&body).expect("streams JSON");
        doc["streams"]
            .as_array()?
            .iter()
            .find(|s| s["key"] == key)
            .and_then(|s| s["players"].as_u64())
    }

    /// Waits for the healthy load to end and checks that none of its
    /// players lost a frame or its connection, and that the node neither
    /// died nor panicked.
    pub fn finish(mut self) {
        if let Some(mut load) = self.load.take() {
            let spare = load.ends.saturating_duration_since(Instant::now());
            if spare.is_zero() {
                eprintln!("warning: the attack outlasted the healthy load; raise its duration");
            } else {
                eprintln!("the healthy load runs {spare:?} past the attack");
            }
            let left = load.ends.saturating_duration_since(Instant::now());
            let rep = loadtest_report(
                &mut load.guard,
                &load.report,
                left + Duration::from_secs(30),
            );
            eprintln!(
                "healthy players: frames {}, lost {}, up at end {}, disconnects {}, p99 {} ms",
                rep["frames"],
                rep["lost_frames"],
                rep["players_up_at_end"],
                rep["disconnects"],
                rep["latency_ms"]["p99"]
            );
            assert_eq!(
                rep["players_up_at_end"], HEALTHY,
                "healthy players were lost beside the attack"
            );
            assert_eq!(
                rep["lost_frames"], 0,
                "healthy players lost frames beside the attack"
            );
            assert_eq!(
                rep["disconnects"],
                serde_json::json!({}),
                "healthy players were disconnected beside the attack"
            );
        }
        self.server.assert_alive();
        let log = self.server.log();
        assert!(
            !log.contains("panicked"),
            "the node panicked:\n{}",
            tail(&log, 40)
        );
    }
}

/// `NAME{LABELS} VALUE` on a Prometheus page; 0 when absent.
pub fn metric_value(page: &str, series: &str) -> f64 {
    page.lines()
        .filter_map(|l| l.strip_prefix(series))
        .filter_map(|rest| rest.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// VmRSS of a process in KiB, None once it is gone.
pub fn try_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak resident memory of a process while an attack runs, sampled every
/// 20 ms on a thread of its own (a peak that is freed again before the
/// attack ends still counts).
pub struct RssWatch {
    pub before_kib: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: Option<thread::JoinHandle<()>>,
}

impl RssWatch {
    pub fn start(pid: u32) -> RssWatch {
        let before_kib = try_rss_kib(pid).expect("server process for RSS");
        let peak = Arc::new(AtomicU64::new(before_kib));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop) = (peak.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match try_rss_kib(pid) {
                        Some(kib) => {
                            peak.fetch_max(kib, Ordering::Relaxed);
                        }
                        None => return,
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            })
        };
        RssWatch {
            before_kib,
            peak,
            stop,
            sampler: Some(sampler),
        }
    }

    /// Growth of the peak over the baseline so far, in KiB.
    pub fn growth_kib(&self) -> u64 {
        self.peak
            .load(Ordering::Relaxed)
            .saturating_sub(self.before_kib)
    }

    /// Stops sampling and asserts the peak grew by at most `max_kib`.
    pub fn assert_grew_at_most(mut self, case: &str, max_kib: u64) {
        self.stop_sampling();
        let peak = self.peak.load(Ordering::Relaxed);
        let growth = peak.saturating_sub(self.before_kib);
        eprintln!(
            "{case}: RSS {} KiB before, peak {peak} KiB (+{growth} KiB)",
            self.before_kib
        );
        assert!(
            growth <= max_kib,
            "{case}: the node's RSS grew by {growth} KiB (from {} to {peak} KiB), over {max_kib} KiB",
            self.before_kib
        );
    }

    fn stop_sampling(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sampler.take() {
            let _ = h.join();
        }
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop_sampling();
    }
}

/// 16 MiB: what any one attack may add to the node's resident memory.
pub const RSS_BUDGET_KIB: u64 = 16 * 1024;

/// One AMF0 command `[name, txn, null, args...]` as chunks of 128 bytes
/// (the size a client uses until it announces another).
pub fn command_bytes(csid: u32, sid: u32, name: &str, txn: f64, args: &[Amf0Value]) -> Vec<u8> {
    let mut body = BytesMut::new();
    encode_amf0(&Amf0Value::from(name), &mut body);
    encode_amf0(&Amf0Value::from(txn), &mut body);
    encode_amf0(&Amf0Value::Null, &mut body);
    for a in args {
        encode_amf0(a, &mut body);
    }
    let mut out = BytesMut::new();
    encode_message(csid, 0, TYPE_COMMAND_AMF0, sid, &body, 128, &mut out);
    out.to_vec()
}

/// `pause(pause, 0)` on message stream `sid`.
pub fn pause_bytes(sid: u32, pause: bool, txn: f64) -> Vec<u8> {
    command_bytes(
        8,
        sid,
        "pause",
        txn,
        &[Amf0Value::from(pause), Amf0Value::from(0.0)],
    )
}

/// A User Control PingRequest (event 6) carrying `stamp`.
pub fn ping_bytes(stamp: u32) -> Vec<u8> {
    let mut ev = vec![0, 6];
    ev.extend_from_slice(&stamp.to_be_bytes());
    let mut out = BytesMut::new();
    encode_message(2, 0, TYPE_USER_CONTROL, 0, &ev, 128, &mut out);
    out.to_vec()
}

/// Four upper-case letters and digits, distinct for every `i` below 36^4,
/// and never one of the FourCCs a real codec uses (those have lower case).
pub fn fourcc(i: u32) -> [u8; 4] {
    const DIGITS: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut out = [0u8; 4];
    let mut n = i;
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    out
}

/// Enhanced RTMP video SequenceStart (IsExHeader, keyframe, packet type 0)
/// for `fourcc`, with a small made-up configuration record.
pub fn ex_video_sequence_start(fourcc: [u8; 4]) -> Vec<u8> {
    let mut v = vec![0x80 | (1 << 4)];
    v.extend_from_slice(&fourcc);
    v.extend_from_slice(&[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f]);
    v
}

/// Enhanced RTMP audio SequenceStart (sound format 9, packet type 0) for
/// `fourcc`, with a small made-up configuration record.
pub fn ex_audio_sequence_start(fourcc: [u8; 4]) -> Vec<u8> {
    let mut v = vec![0x90];
    v.extend_from_slice(&fourcc);
    v.extend_from_slice(&[0x12, 0x10, 0x56, 0xe5, 0x00]);
    v
}

/// AAC sequence header (AudioSpecificConfig: LC, 44.1 kHz, stereo).
pub fn aac_sequence_header() -> Vec<u8> {
    vec![0xAF, 0x00, 0x12, 0x10]
}

/// One AAC raw frame of `size` bytes.
pub fn aac_frame(size: usize) -> Vec<u8> {
    let mut v = vec![0xAF, 0x01];
    v.extend(std::iter::repeat(0x21).take(size));
    v
}

/// A legacy AVC coded keyframe (not a sequence header).
pub fn is_avc_keyframe(payload: &[u8]) -> bool {
    payload.first() == Some(&0x17) && payload.get(1) == Some(&1)
}

/// A video or audio sequence header, legacy or Enhanced RTMP.
pub fn is_sequence_header(type_id: u8, payload: &[u8]) -> bool {
    let (Some(&b0), b1) = (payload.first(), payload.get(1)) else {
        return false;
    };
    match type_id {
        9 if b0 & 0x80 != 0 => b0 & 0x0F == 0,
        9 => b1 == Some(&0),
        8 if b0 >> 4 == 9 => b0 & 0x0F == 0,
        8 => b0 >> 4 == 10 && b1 == Some(&0),
        _ => false,
    }
}

/// True once the server closed `sock` (EOF, reset), checked without
/// waiting; data the server sent is read and dropped.
pub fn closed_now(sock: &TcpStream) -> bool {
    if sock.set_nonblocking(true).is_err() {
        return true;
    }
    let mut buf = [0u8; 64 * 1024];
    let closed = loop {
        match (&*sock).read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    let _ = sock.set_nonblocking(false);
    closed
}

/// Sends `bytes` one byte every `every` (see `drip`).
pub fn trickle(
    sock: &TcpStream,
    bytes: &[u8],
    every: Duration,
    since: Instant,
    cap: Duration,
) -> Result<Duration, String> {
    drip(sock, bytes.iter().map(|b| vec![*b]), every, since, cap)
}

/// Sends one piece every `every`, starting at once, and reports how long
/// after `since` the server closed the socket; an error if it was still
/// open after `cap` (or the pieces ran out first).
pub fn drip(
    sock: &TcpStream,
    pieces: impl IntoIterator<Item = Vec<u8>>,
    every: Duration,
    since: Instant,
    cap: Duration,
) -> Result<Duration, String> {
    let mut sent = 0usize;
    for piece in pieces {
        if closed_now(sock) || (&*sock).write_all(&piece).is_err() {
            return Ok(since.elapsed());
        }
        sent += piece.len();
        let next = Instant::now() + every;
        while Instant::now() < next {
            if closed_now(sock) {
                return Ok(since.elapsed());
            }
            thread::sleep(Duration::from_millis(20));
        }
        if since.elapsed() > cap {
            return Err(format!(
                "still open after {:?} ({sent} bytes sent)",
                since.elapsed()
            ));
        }
    }
    Err(format!(
        "still open after {:?} (all {sent} bytes sent)",
        since.elapsed()
    ))
}

/// A chunk header (format 0) announcing a message of `len` bytes of
/// `type_id` on chunk stream `csid`, with no body.
pub fn announce(csid: u8, type_id: u8, sid: u32, len: u32) -> Vec<u8> {
    let mut h = vec![csid & 0x3F, 0, 0, 0];
    h.extend_from_slice(&len.to_be_bytes()[1..]);
    h.push(type_id);
    h.extend_from_slice(&sid.to_le_bytes());
    h
}

/// The server side of `peer`'s connection to `port` as `ss -tan` shows it
/// (state and addresses), one line per socket; empty once it is gone.
pub fn server_sockets(port: u16, peer: SocketAddr) -> Vec<String> {
    let mut cmd = Command::new(super::tool("ss"));
    cmd.args(["-tanH"]);
    let out = run_with_timeout("ss", cmd, Duration::from_secs(5));
    assert!(out.success(), "ss -tan failed: {}", out.describe());
    let local = format!("127.0.0.1:{port}");
    let remote = peer.to_string();
    out.stdout
        .lines()
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() >= 5 && cols[3] == local && cols[4] == remote
        })
        .map(str::to_string)
        .collect()
}

/// `ss -tnoH` of the server side of `peer`'s established connection to
/// `port` (timers included).
pub fn server_socket_timers(port: u16, peer: SocketAddr) -> String {
    let mut cmd = Command::new(super::tool("ss"));
    cmd.args(["-tnoH", "state", "established"])
        .arg(format!("( sport = :{port} and dport = :{} )", peer.port()));
    let out = run_with_timeout("ss", cmd, Duration::from_secs(5));
    assert!(out.success(), "ss -tno failed: {}", out.describe());
    out.stdout
}

/// Reads until the connection ends. `Ok((bytes, error))` when it ended
/// with a read error (a reset), `Err` when it ended with a clean EOF or was
/// still open at the deadline.
pub fn read_until_error(sock: &mut TcpStream, within: Duration) -> Result<(u64, String), String> {
    let started = Instant::now();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return Err(format!("clean EOF (FIN, no reset) after {total} bytes")),
            Ok(n) => total += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Ok((total, e.to_string())),
        }
        if started.elapsed() >= within {
            return Err(format!("still open after {within:?} ({total} bytes read)"));
        }
    }
}

/// Reads until EOF, an error, `quiet` without data or `within`; returns
/// the bytes read and whether the connection ended.
pub fn drain(sock: &TcpStream, quiet: Duration, within: Duration, max: u64) -> (u64, bool) {
    let started = Instant::now();
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 64 * 1024];
    let mut total = 0u64;
    let mut last = Instant::now();
    loop {
        match (&*sock).read(&mut buf) {
            Ok(0) => return (total, true),
            Ok(n) => {
                total += n as u64;
                last = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (total, true),
        }
        if last.elapsed() >= quiet || started.elapsed() >= within || total > max {
            return (total, false);
        }
    }
}

/// State column of `ss -tan` for the socket from `local` to `remote`
/// (e.g. `ESTAB`, `CLOSE-WAIT`); None when there is none.
pub fn socket_state(local: SocketAddr, remote: SocketAddr) -> Option<String> {
    let mut cmd = Command::new(super::tool("ss"));
    cmd.args(["-tanH"]);
    let out = run_with_timeout("ss", cmd, Duration::from_secs(5));
    assert!(out.success(), "ss -tan failed: {}", out.describe());
    let (local, remote) = (local.to_string(), remote.to_string());
    out.stdout.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.len() >= 5 && cols[3] == local && cols[4] == remote).then(|| cols[0].to_string())
    })
}

impl Server {
    /// Waits up to `timeout` for the server process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.guard.wait_timeout(timeout)
    }
}
