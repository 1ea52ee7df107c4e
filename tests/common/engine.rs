//! Helpers for the engine tests: which worker a connection landed on (from
//! the server log), the stats API over a plain HTTP/1.0 GET, and the
//! server's resident memory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use super::Server;

impl Server {
    /// Process id of the server (for /proc readings).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Polls the log until `pred` holds, for up to `timeout`.
    pub fn wait_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.log()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One `conn` log line of cascade: the worker and peer of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLine {
    pub worker: usize,
    pub peer: String,
}

/// Connections the log shows doing `event` (`publish` or `play`) on
/// `stream` (`live/NAME`), in log order. Matches
/// `conn{worker=W conn=C peer=P}: cascade::conn[::MODULE]: EVENT stream=KEY[ ...]`.
pub fn conn_events(log: &str, event: &str, stream: &str) -> Vec<ConnLine> {
    let needle = format!(": {event} stream={stream}");
    log.lines()
        .filter_map(|line| {
            let at = line.find(&needle)?;
            // The event's target is the connection module or one of its own.
            let target = line[..at].rsplit(' ').next()?;
            if !target.starts_with("cascade::conn") {
                return None;
            }
            let rest = &line[at + needle.len()..];
            if !(rest.is_empty() || rest.starts_with(' ')) {
                return None;
            }
            Some(ConnLine {
                worker: span_field(line, "worker")?.parse().ok()?,
                peer: span_field(line, "peer")?.to_string(),
            })
        })
        .collect()
}

/// Value of `name=` inside the `conn{...}` span of a log line.
fn span_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find("conn{")? + "conn{".len();
    let end = start + line[start..].find('}')?;
    line[start..end].split(' ').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// `GET path` over HTTP/1.0; the body of a 200 answer.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Result<String, String> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut sock = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("tcp: {e}"))?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    sock.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {text:?}"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.split(' ').nth(1).is_some_and(|c| c == "200") {
        return Err(format!("status line {status:?}"));
    }
    Ok(body.to_string())
}

/// `/api/v1/stats` as JSON, retried for a few seconds (the control
/// listener may start a moment after the RTMP port).
pub fn stats(http_port: u16) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let last = match http_get(http_port, "/api/v1/stats", Duration::from_secs(3)) {
            Ok(body) => match serde_json::from_str(&body) {
                Ok(v) => return v,
                Err(e) => format!("bad JSON ({e}): {body}"),
            },
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("GET /api/v1/stats on port {http_port} failed: {last}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A number under `path` (e.g. `["total", "frames_dropped"]`) of a stats
/// document; panics naming the path if it is missing.
pub fn stat_u64(doc: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = doc;
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("stats document has no number at {path:?}: {doc}"))
}

/// Resident set size of a process, in KiB (VmRSS of /proc/PID/status).
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}
