//! Helpers for the operations tests: cascade with a control listener and a
//! chosen environment, plain HTTP requests, signals, the metrics page, and
//! a real Prometheus server scraping cascade on loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::{free_port, temp_dir, tool, wait_port, ChildGuard, Server, ServerKind};

/// A running cascade with its control listener's port.
pub struct OpsServer {
    pub server: Server,
    pub http: u16,
}

impl OpsServer {
    /// cascade with `--http 127.0.0.1:FREE`, extra flags and environment.
    /// `RUST_LOG` is not set, so `log.level` from the configuration rules.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> OpsServer {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_cascade"));
        let http = free_port();
        let server = Server::start_with_retries(ServerKind::Cascade, |port, _dir| {
            let mut cmd = Command::new(&bin);
            cmd.arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--http")
                .arg(format!("127.0.0.1:{http}"))
                .args(args)
                .env_remove("RUST_LOG")
                .env("NO_COLOR", "1");
            if let Ok(driver) = std::env::var("CASCADE_TEST_IO_DRIVER") {
                cmd.arg("--io-driver").arg(driver);
            }
            for (k, v) in env {
                cmd.env(k, v);
            }
            ChildGuard::spawn("cascade", cmd)
        });
        let ops = OpsServer { server, http };
        ops.wait_ready(Duration::from_secs(10));
        ops
    }

    /// Polls `/readyz` until it answers 200.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = http(self.http, "GET", "/readyz") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz never answered 200; log:\n{}",
                self.server.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: &str) {
        self.server.guard.signal(sig);
    }

    /// The exit status if cascade exited within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.server.guard.wait_timeout(timeout)
    }

    /// `GET path`; panics unless 200.
    pub fn get(&self, path: &str) -> String {
        match http(self.http, "GET", path) {
            Ok((200, body)) => body,
            other => panic!("GET {path}: {other:?}; log:\n{}", self.server.log()),
        }
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let body = self.get(path);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: bad JSON ({e}): {body}"))
    }

    /// The value of an unlabelled (or exactly labelled) series on `/metrics`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.get("/metrics"), series)
    }

    /// Polls `pred` on the JSON at `path` until it holds.
    pub fn wait_json(
        &self,
        path: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.json(path);
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never matched: {v}; log:\n{}",
                self.server.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One HTTP/1.0 request to 127.0.0.1:`port`: status and body.
pub fn http(port: u16, method: &str, path: &str) -> Result<(u16, String), String> {
    http_with(port, method, path, "")
}

/// As [`http`], with extra header lines (each ending in `\r\n`).
pub fn http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
) -> Result<(u16, String), String> {
    let timeout = Duration::from_secs(5);
    let addr = ([127, 0, 0, 1], port).into();
    let mut sock = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("tcp: {e}"))?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    sock.write_all(
        format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{headers}Content-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {text:?}"))?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// The value of `series` (name plus labels exactly as exported) in a
/// Prometheus text page.
pub fn metric_value(page: &str, series: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The sum of every series of family `name` whose labels include all of
/// `labels` (`label="value"` each), e.g. one protocol across workers.
pub fn metric_sum(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (set, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let mine: Vec<&str> = set.split(',').collect();
            if !labels.iter().all(|want| mine.contains(want)) {
                return None;
            }
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// A real Prometheus server scraping `target` every second, with its own
/// configuration and data in a temp dir; killed on drop.
pub struct Prometheus {
    pub port: u16,
    guard: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(target: &str) -> Prometheus {
        let bin = tool("prometheus");
        let dir = temp_dir("cascade-prometheus-");
        let conf = dir.path().join("prometheus.yml");
        std::fs::write(
            &conf,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
                 scrape_configs:\n  - job_name: cascade\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new(&bin);
            cmd.arg(format!("--config.file={}", conf.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--storage.tsdb.retention.time=1h")
                .arg("--log.level=warn");
            let mut guard = ChildGuard::spawn("prometheus", cmd);
            if wait_port(port, &mut guard, Duration::from_secs(30)) {
                return Prometheus {
                    port,
                    guard,
                    _dir: dir,
                };
            }
            last = guard.stderr_text();
        }
        panic!("prometheus never listened; its log:\n{last}");
    }

    /// `/api/v1/query?query=…`: the first sample's value, if any.
    pub fn query(&self, promql: &str) -> Result<Option<f64>, String> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let (status, body) = http(self.port, "GET", &path)?;
        if status != 200 {
            return Err(format!("status {status}: {body}"));
        }
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("bad JSON ({e}): {body}"))?;
        Ok(v["data"]["result"]
            .get(0)
            .and_then(|r| r["value"].get(1))
            .and_then(|s| s.as_str())
            .and_then(|s| s.parse().ok()))
    }

    pub fn log(&self) -> String {
        self.guard.stderr_text()
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
