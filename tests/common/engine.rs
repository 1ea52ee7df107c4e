//! Helpers for the engine tests: which worker a connection landed on (from
//! the server log), the stats API over a plain HTTP/1.0 GET, and the
//! server's resident memory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cascade::protocol::handshake::{ClientHandshake, HandshakeStatus};
use cascade::protocol::session::{ClientConfig, ClientEvent, ClientSession};
use socket2::{Domain, Protocol, Socket, Type};

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
/// `conn{worker=W conn=C peer=P}: cascade::conn: EVENT stream=KEY[ ...]`.
pub fn conn_events(log: &str, event: &str, stream: &str) -> Vec<ConnLine> {
    let needle = format!("cascade::conn: {event} stream={stream}");
    log.lines()
        .filter_map(|line| {
            let at = line.find(&needle)?;
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

/// A player whose socket looks like a viewer's on a real network: a small
/// MSS and a small fixed receive buffer. On loopback the MSS is 64 KiB, so
/// the kernel autotunes the server's send buffer to `tcp_wmem` max (4 MiB,
/// ~30 s of a 1 Mbit/s stream) and a stalled player stays invisible to the
/// server's queue for that long; with a WAN-like MSS it holds ~100 KiB.
pub struct WanPlayer {
    sock: TcpStream,
    input: BytesMut,
    session: ClientSession,
}

impl WanPlayer {
    /// Connects with `mss` and `rcvbuf` set before the SYN, handshakes,
    /// and plays `live/NAME`; returns once `NetStream.Play.Start` arrived.
    pub fn play(
        port: u16,
        name: &str,
        mss: u32,
        rcvbuf: usize,
        timeout: Duration,
    ) -> Result<WanPlayer, String> {
        let deadline = Instant::now() + timeout;
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| format!("socket: {e}"))?;
        sock.set_mss(mss).map_err(|e| format!("TCP_MAXSEG: {e}"))?;
        sock.set_recv_buffer_size(rcvbuf)
            .map_err(|e| format!("SO_RCVBUF: {e}"))?;
        sock.set_nodelay(true).map_err(|e| e.to_string())?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        sock.connect_timeout(&addr.into(), timeout)
            .map_err(|e| format!("tcp: {e}"))?;
        let tc_url = format!("rtmp://127.0.0.1:{port}/live");
        let mut p = WanPlayer {
            sock: sock.into(),
            input: BytesMut::with_capacity(64 * 1024),
            session: ClientSession::new(ClientConfig::new("live", &tc_url)),
        };
        let mut hs = ClientHandshake::new(false);
        let mut out = BytesMut::new();
        hs.start(&mut out);
        p.write(&out)?;
        loop {
            p.fill(deadline)?;
            let mut out = BytesMut::new();
            let status = hs
                .feed(&mut p.input, &mut out)
                .map_err(|e| format!("handshake: {e}"))?;
            p.write(&out)?;
            if status == HandshakeStatus::Done {
                break;
            }
        }
        p.session.connect();
        p.session.create_stream();
        p.flush()?;
        loop {
            match p.next_event(deadline)? {
                Some(ClientEvent::StreamCreated { stream_id }) => {
                    p.session.play(stream_id, name);
                    p.flush()?;
                }
                Some(ClientEvent::PlayStarted { .. }) => return Ok(p),
                Some(ClientEvent::ConnectRejected { code, .. }) => {
                    return Err(format!("connect rejected: {code}"))
                }
                Some(ClientEvent::Status { code, .. })
                    if code.contains("Failed") || code.contains("NotFound") =>
                {
                    return Err(format!("play refused: {code}"))
                }
                Some(_) => {}
                None => return Err("no NetStream.Play.Start before the deadline".into()),
            }
        }
    }

    /// Our end's port, to find the connection in the server's log or `ss`.
    pub fn local_port(&self) -> u16 {
        self.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Next event, or None at the deadline; an error once the server closed
    /// the connection (EOF or reset).
    pub fn next_event(&mut self, deadline: Instant) -> Result<Option<ClientEvent>, String> {
        loop {
            if let Some(ev) = self.session.poll_event() {
                return Ok(Some(ev));
            }
            match self.fill(deadline) {
                Ok(()) => {}
                Err(e) if e == TIMED_OUT => return Ok(None),
                Err(e) => return Err(e),
            }
            self.session
                .handle_input(&mut self.input)
                .map_err(|e| format!("session: {e}"))?;
            self.flush()?;
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        match self.session.take_output() {
            Some(out) => self.write(&out),
            None => Ok(()),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.sock
            .write_all(bytes)
            .map_err(|e| format!("write: {e}"))
    }

    fn fill(&mut self, deadline: Instant) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TIMED_OUT.into());
        }
        self.sock
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 16 * 1024];
        match self.sock.read(&mut buf) {
            Ok(0) => Err("server closed the connection".into()),
            Ok(n) => {
                self.input.extend_from_slice(&buf[..n]);
                self.session.received(n);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(TIMED_OUT.into())
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }
}

const TIMED_OUT: &str = "timed out";
