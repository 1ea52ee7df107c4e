//! Shared harness for the end-to-end tests: free ports, child processes that
//! can never outlive a test, a server under test (cascade, or nginx-rtmp as a
//! reference), cached test clips, and real publishers and players, every one
//! of them bounded by a deadline.
//!
//! `CASCADE_TEST_SERVER=nginx` runs the same tests against nginx-rtmp, which
//! is how the harness itself is checked.
#![allow(dead_code)]

pub mod abuse;
pub mod attacks;
pub mod edge;
pub mod engine;
pub mod hls;
pub mod hostile;
pub mod http_attacks;
pub mod http_play;
pub mod ops;
pub mod process;
pub mod rtmp_client;

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub use process::{run_with_timeout, ChildGuard, RunOutput};

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Absolute path of a required program; a missing one fails the test loudly
/// (scripts/install-test-deps.sh is what guarantees presence).
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("required program `{name}` is not on PATH: run scripts/install-test-deps.sh");
}

/// ffmpeg 9 (static build from the imageio-ffmpeg wheel), which speaks
/// Enhanced RTMP. `CASCADE_FFMPEG9` overrides the lookup.
pub fn ffmpeg9() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("CASCADE_FFMPEG9") {
            return PathBuf::from(p);
        }
        let out = Command::new(tool("python3"))
            .args([
                "-c",
                "import imageio_ffmpeg as i; print(i.get_ffmpeg_exe())",
            ])
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "imageio-ffmpeg (ffmpeg 9) is not installed: run scripts/install-test-deps.sh\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(path.is_file(), "ffmpeg 9 not found at {}", path.display());
        path
    })
    .clone()
}

/// A scratch directory that lives as long as the returned guard.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir")
}

/// Which server a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Cascade,
    Nginx,
}

/// A running RTMP server on a free loopback port, killed on drop.
pub struct Server {
    pub kind: ServerKind,
    pub port: u16,
    guard: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Server {
    /// The server selected by `CASCADE_TEST_SERVER` (`cascade`, the default,
    /// or `nginx`).
    pub fn start() -> Server {
        match std::env::var("CASCADE_TEST_SERVER").as_deref() {
            Ok("nginx") => Server::start_nginx(),
            Ok("cascade") | Err(_) => Server::start_cascade(&[]),
            Ok(other) => panic!("CASCADE_TEST_SERVER={other}: expected cascade or nginx"),
        }
    }

    /// cascade on a free port, with extra command-line arguments.
    pub fn start_cascade(args: &[&str]) -> Server {
        Self::start_cascade_bin(Path::new(env!("CARGO_BIN_EXE_cascade")), args)
    }

    /// A cascade binary of the caller's choosing (e.g. a release build) on a
    /// free port, with extra command-line arguments.
    pub fn start_cascade_bin(bin: &Path, args: &[&str]) -> Server {
        Self::start_cascade_with(bin, args, &[])
    }

    /// As `start_cascade_bin`, with extra environment variables.
    pub fn start_cascade_with(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        Self::start_cascade_configured(bin, args, |cmd| {
            cmd.envs(envs.iter().copied());
        })
    }

    /// As `start_cascade_bin`, with `configure` applied to the command
    /// before it is spawned (environment, limits of the child).
    pub fn start_cascade_configured(
        bin: &Path,
        args: &[&str],
        configure: impl Fn(&mut Command),
    ) -> Server {
        Self::start_with_retries(ServerKind::Cascade, |port, _dir| {
            let mut cmd = Command::new(bin);
            cmd.arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .args(args);
            configure(&mut cmd);
            // The whole suite runs once per IO driver (scripts/test.sh).
            if let Ok(driver) = std::env::var("CASCADE_TEST_IO_DRIVER") {
                if !args.contains(&"--io-driver") {
                    cmd.arg("--io-driver").arg(driver);
                }
            }
            if std::env::var_os("RUST_LOG").is_none() {
                cmd.env("RUST_LOG", "info");
            }
            if std::env::var_os("NO_COLOR").is_none() {
                cmd.env("NO_COLOR", "1");
            }
            ChildGuard::spawn("cascade", cmd)
        })
    }

    /// nginx-rtmp on a free port, with its own prefix in a temp dir.
    pub fn start_nginx() -> Server {
        let module = Path::new("/usr/lib/nginx/modules/ngx_rtmp_module.so");
        assert!(
            module.is_file(),
            "libnginx-mod-rtmp is not installed: run scripts/install-test-deps.sh"
        );
        let nginx = tool_in_sbin("nginx");
        Self::start_with_retries(ServerKind::Nginx, |port, dir| {
            let conf = dir.join("nginx.conf");
            let d = dir.display();
            fs::write(
                &conf,
                format!(
                    "load_module {module};\n\
                     daemon off;\n\
                     master_process on;\n\
                     worker_processes 1;\n\
                     error_log {d}/error.log info;\n\
                     pid {d}/nginx.pid;\n\
                     events {{ worker_connections 256; }}\n\
                     rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
                       application live {{ live on; }} }} }}\n",
                    module = module.display()
                ),
            )
            .expect("write nginx.conf");
            let mut cmd = Command::new(&nginx);
            cmd.arg("-p").arg(dir).arg("-c").arg(&conf);
            cmd.arg("-e").arg(dir.join("error.log"));
            ChildGuard::spawn("nginx", cmd)
        })
    }

    fn start_with_retries(kind: ServerKind, spawn: impl Fn(u16, &Path) -> ChildGuard) -> Server {
        let mut last_log = String::new();
        // Another test may grab the port between our probe and the server's
        // bind; the server then exits at once and we try another port.
        for _ in 0..3 {
            let dir = temp_dir("cascade-e2e-server-");
            let port = free_port();
            let mut guard = spawn(port, dir.path());
            if wait_port(port, &mut guard, Duration::from_secs(15)) {
                return Server {
                    kind,
                    port,
                    guard,
                    _dir: dir,
                };
            }
            last_log = guard.stderr_text();
            if let Ok(log) = fs::read_to_string(dir.path().join("error.log")) {
                last_log.push_str(&log);
            }
        }
        panic!("{kind:?} never accepted TCP connections; its log:\n{last_log}");
    }

    /// `rtmp://127.0.0.1:PORT/live/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{name}", self.port)
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        let mut log = self.guard.stderr_text();
        if let Ok(extra) = fs::read_to_string(self._dir.path().join("error.log")) {
            log.push_str(&extra);
        }
        log
    }

    /// Panics (with the log) if the server died.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.guard.try_status() {
            panic!("server exited with {status}; log:\n{}", self.log());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "---- {:?} server log (tail) ----\n{}",
                self.kind,
                tail(&self.log(), 60)
            );
        }
    }
}

fn tool_in_sbin(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/local/sbin", "/sbin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    tool(name)
}

/// Polls until `port` accepts a TCP connection; false if the child exited or
/// the deadline passed.
fn wait_port(port: u16, guard: &mut ChildGuard, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if guard.try_status().is_some() {
            return false;
        }
        let addr = ([127, 0, 0, 1], port).into();
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Test clips, generated once and cached under `target/test-clips/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clip {
    /// H.264 + AAC, legacy FLV (ffmpeg 5.1).
    H264Aac,
    /// HEVC + Opus, Enhanced FLV (ffmpeg 9).
    HevcOpus,
    /// AV1 + Opus, Enhanced FLV (ffmpeg 9).
    Av1Opus,
}

impl Clip {
    fn file_name(self) -> &'static str {
        // Bump the suffix when the encoding arguments change.
        match self {
            Clip::H264Aac => "h264-aac-360p-10s-v1.flv",
            Clip::HevcOpus => "hevc-opus-360p-10s-v1.flv",
            Clip::Av1Opus => "av1-opus-360p-10s-v1.flv",
        }
    }

    fn encoder(self) -> PathBuf {
        match self {
            Clip::H264Aac => tool("ffmpeg"),
            Clip::HevcOpus | Clip::Av1Opus => ffmpeg9(),
        }
    }

    fn codec_args(self) -> &'static [&'static str] {
        match self {
            Clip::H264Aac => &[
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-g",
                "60",
                "-keyint_min",
                "60",
                "-sc_threshold",
                "0",
                "-b:v",
                "1000k",
                "-c:a",
                "aac",
                "-b:a",
                "128k",
            ],
            Clip::HevcOpus => &[
                "-c:v",
                "libx265",
                "-preset",
                "veryfast",
                "-g",
                "60",
                "-keyint_min",
                "60",
                "-sc_threshold",
                "0",
                "-x265-params",
                "log-level=error",
                "-b:v",
                "1000k",
                "-c:a",
                "libopus",
                "-b:a",
                "128k",
            ],
            Clip::Av1Opus => &[
                "-c:v",
                "libsvtav1",
                "-preset",
                "10",
                "-g",
                "60",
                "-b:v",
                "1000k",
                "-c:a",
                "libopus",
                "-b:a",
                "128k",
            ],
        }
    }

    /// Path of the clip, encoding it first if no earlier run did.
    pub fn path(self) -> PathBuf {
        static LOCK: Mutex<()> = Mutex::new(());
        let dir = clip_dir();
        let path = dir.join(self.file_name());
        let _held = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if path.is_file() {
            return path;
        }
        fs::create_dir_all(&dir).expect("create clip dir");
        // Encode to a private name, then rename: another test binary doing the
        // same at the same time just wins or loses the rename, both complete.
        let tmp = dir.join(format!(
            ".{}.{}.tmp.flv",
            self.file_name(),
            std::process::id()
        ));
        let mut cmd = Command::new(self.encoder());
        cmd.args(["-y", "-hide_banner", "-nostdin", "-v", "error"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", "10"])
            .args(self.codec_args())
            .args(["-f", "flv"])
            .arg(&tmp);
        let out = run_with_timeout("clip-encoder", cmd, Duration::from_secs(120));
        assert!(
            out.success() && tmp.is_file(),
            "encoding clip {self:?} failed: {}\n{}",
            out.describe(),
            out.stderr
        );
        fs::rename(&tmp, &path).expect("rename clip into place");
        path
    }
}

fn clip_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp; clips live beside it.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-clips")
}

/// `ffmpeg -re -stream_loop -1 -i clip -c copy -f flv URL`, running until
/// dropped.
pub fn publish_ffmpeg(ffmpeg: &Path, clip: &Path, url: &str) -> ChildGuard {
    let mut cmd = Command::new(ffmpeg);
    cmd.args([
        "-hide_banner",
        "-nostdin",
        "-v",
        "info",
        "-re",
        "-stream_loop",
        "-1",
        "-i",
    ])
    .arg(clip)
    .args(["-c", "copy", "-f", "flv", url]);
    ChildGuard::spawn("ffmpeg-publisher", cmd)
}

/// Streams found by ffprobe: `(codec_type, codec_name)` pairs.
pub type Streams = Vec<(String, String)>;

/// One bounded ffprobe run on `input` (URL or file).
pub fn ffprobe(input: &str, timeout: Duration) -> (RunOutput, Streams) {
    let mut cmd = Command::new(tool("ffprobe"));
    cmd.args(["-hide_banner", "-v", "error"]);
    if input.starts_with("rtmp://") {
        cmd.args(["-rw_timeout", "5000000"]);
    }
    cmd.args([
        "-show_entries",
        "stream=codec_type,codec_name",
        "-of",
        "csv=p=0",
        input,
    ]);
    let out = run_with_timeout("ffprobe", cmd, timeout);
    let streams = out
        .stdout
        .lines()
        .filter_map(|l| {
            let mut parts = l.trim().split(',');
            let name = parts.next()?.to_string();
            let kind = parts.next()?.to_string();
            Some((kind, name))
        })
        .collect();
    (out, streams)
}

/// Retries ffprobe until it sees a video and an audio stream, or panics at
/// the deadline with the last attempt's stderr.
pub fn wait_playable(url: &str, timeout: Duration) -> Streams {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let (out, streams) = ffprobe(url, left.min(Duration::from_secs(8)));
        let has = |k: &str| streams.iter().any(|(kind, _)| kind == k);
        if out.success() && has("video") && has("audio") {
            return streams;
        }
        last = format!("{} streams={streams:?}\n{}", out.describe(), out.stderr);
        thread::sleep(Duration::from_millis(200));
    }
    panic!("{url} never became playable; last ffprobe: {last}");
}

/// Retries a short ffmpeg play of `url` until it decodes video, or gives up at
/// the deadline. For ffmpeg builds that come without ffprobe.
pub fn wait_playable_with_ffmpeg(ffmpeg: &Path, url: &str, timeout: Duration) -> RunOutput {
    let deadline = Instant::now() + timeout;
    loop {
        let out = ffmpeg_play(ffmpeg, url, 1.0, "info", Duration::from_secs(8));
        if out.success() && decoded_frames(&out) > 0 {
            return out;
        }
        if Instant::now() >= deadline {
            panic!(
                "{url} never became playable; last ffmpeg: {}\n{}",
                out.describe(),
                tail(&out.stderr, 40)
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// `ffmpeg -i URL -t SECS -f null -` with progress on stdout, bounded.
pub fn ffmpeg_play(
    ffmpeg: &Path,
    url: &str,
    secs: f64,
    loglevel: &str,
    timeout: Duration,
) -> RunOutput {
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-hide_banner", "-nostdin", "-nostats", "-v", loglevel])
        .args(["-rw_timeout", "5000000", "-i", url])
        .args(["-t", &secs.to_string()])
        .args(["-progress", "pipe:1", "-f", "null", "-"]);
    run_with_timeout("ffmpeg-player", cmd, timeout)
}

/// Frames decoded per ffmpeg's `-progress` output (its last `frame=` line).
pub fn decoded_frames(out: &RunOutput) -> u64 {
    out.stdout
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix("frame="))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads a whole file as lossy UTF-8 (empty if missing).
pub fn read_lossy(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A one-shot publish of the test clip (no loop): a refused one ends
/// quickly with an error.
pub fn publish_once(url: &str) -> RunOutput {
    let mut cmd = Command::new(tool("ffmpeg"));
    cmd.args(["-hide_banner", "-nostdin", "-v", "info", "-re", "-i"])
        .arg(Clip::H264Aac.path())
        .args(["-c", "copy", "-f", "flv", url]);
    run_with_timeout("ffmpeg-publish-once", cmd, Duration::from_secs(15))
}

/// `out` is ffmpeg giving up on a refused publish (not a timeout).
pub fn assert_refused(out: &RunOutput, what: &str) {
    assert!(
        !out.timed_out && !out.success(),
        "{what}: expected a refusal, got {}:\n{}",
        out.describe(),
        tail(&out.stderr, 20)
    );
}
