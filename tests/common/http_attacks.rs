//! Raw-socket tools for `tests/e2e_http_abuse.rs`: HTTP answers read off a
//! plain socket, timed probes, sockets with a tiny receive buffer, an
//! HTTP-FLV player on a thread of its own that records every stall,
//! WebSocket frames built and read by hand (so they can be wrong on
//! purpose), hundreds of slow or silent clients on one thread, an endless
//! header line, and pipelined requests with the answers they must get.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cascade::protocol::flv::FlvTagReader;

/// Bound of one connect, read or write.
pub const IO: Duration = Duration::from_secs(5);

/// A connection to the HTTP port; with `rcvbuf`, its receive buffer is set
/// that small before the connect, so the window it offers stays small.
pub fn connect(port: u16, rcvbuf: Option<usize>) -> TcpStream {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n).expect("SO_RCVBUF");
    }
    sock.connect_timeout(&addr.into(), IO).expect("connect");
    let sock: TcpStream = sock.into();
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(IO)).unwrap();
    sock.set_write_timeout(Some(IO)).unwrap();
    sock
}

/// Reads one answer head (up to the blank line) off `sock`; returns the
/// status, the head, and the bytes read past it.
pub fn read_head(sock: &mut TcpStream) -> Result<(u16, String, Vec<u8>), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).to_string();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad status line in {head:?}"))?;
            return Ok((status, head, buf[i + 4..].to_vec()));
        }
        match sock.read(&mut chunk) {
            Ok(0) => return Err(format!("EOF after {:?}", String::from_utf8_lossy(&buf))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{e} after {:?}", String::from_utf8_lossy(&buf))),
        }
    }
}

/// How a connection the server was expected to close went.
#[derive(Debug)]
pub struct Ending {
    /// Everything read before the end.
    pub bytes: Vec<u8>,
    /// It ended (EOF or reset) rather than staying open past the bound.
    pub closed: bool,
    /// By a reset rather than a FIN.
    pub reset: bool,
    pub after: Duration,
}

impl Ending {
    /// The status of the first answer, if one came.
    pub fn status(&self) -> Option<u16> {
        let text = String::from_utf8_lossy(&self.bytes);
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }
}

/// Reads until the server ends the connection or `within` passes.
pub fn read_to_end(sock: &mut TcpStream, within: Duration) -> Ending {
    let started = Instant::now();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let (closed, reset) = loop {
        match sock.read(&mut chunk) {
            Ok(0) => break (true, false),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break (true, true),
        }
        if started.elapsed() >= within {
            break (false, false);
        }
    };
    Ending {
        bytes,
        closed,
        reset,
        after: started.elapsed(),
    }
}

/// `GET /healthz` on a fresh connection: how long until the whole answer
/// (200 "ok") was read and the server closed.
pub fn time_healthz(port: u16) -> Result<Duration, String> {
    let started = Instant::now();
    let mut sock = connect(port, None);
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let end = read_to_end(&mut sock, IO);
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&end.bytes);
    if end.status() != Some(200) || !text.ends_with("\r\n\r\nok\n") || !end.closed {
        return Err(format!(
            "healthz answered {text:?} (closed: {})",
            end.closed
        ));
    }
    Ok(took)
}

/// `Threads:` of /proc/PID/status.
pub fn thread_count(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads: in /proc status")
}

/// What an [`FlvWatch`] saw.
#[derive(Debug, Clone, Default)]
pub struct WatchReport {
    pub video_tags: u64,
    pub audio_tags: u64,
    /// Longest time between two video tags (after the first).
    pub max_gap: Duration,
    /// The server ended the play (EOF, reset or an FLV error).
    pub ended: Option<String>,
}

/// An HTTP-FLV player that reads as fast as data comes, on its own thread.
pub struct FlvWatch {
    report: Arc<Mutex<WatchReport>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FlvWatch {
    /// Plays `path` (which must answer 200) until stopped.
    pub fn start(port: u16, path: &str) -> FlvWatch {
        let mut sock = connect(port, None);
        sock.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .expect("send play request");
        let (status, head, body) = read_head(&mut sock).expect("answer to the watcher");
        assert_eq!(status, 200, "the watcher's play was refused: {head}");
        let report = Arc::new(Mutex::new(WatchReport::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (report, stop) = (report.clone(), stop.clone());
            thread::spawn(move || watch(sock, body, &report, &stop))
        };
        FlvWatch {
            report,
            stop,
            thread: Some(thread),
        }
    }

    pub fn report(&self) -> WatchReport {
        self.report.lock().unwrap().clone()
    }

    /// Waits until the player has `n` video tags.
    pub fn wait_video(&self, n: u64, within: Duration) -> WatchReport {
        let deadline = Instant::now() + within;
        loop {
            let r = self.report();
            if r.video_tags >= n || r.ended.is_some() || Instant::now() >= deadline {
                return r;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(mut self) -> WatchReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.report()
    }
}

impl Drop for FlvWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn watch(mut sock: TcpStream, first: Vec<u8>, report: &Mutex<WatchReport>, stop: &AtomicBool) {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut reader = FlvTagReader::new();
    let mut buf = BytesMut::from(&first[..]);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut last_video: Option<Instant> = None;
    let end = |why: String| report.lock().unwrap().ended = Some(why);
    while !stop.load(Ordering::Relaxed) {
        loop {
            match reader.next_tag(&mut buf) {
                Ok(Some(tag)) => {
                    let now = Instant::now();
                    let mut r = report.lock().unwrap();
                    if tag.tag_type == 9 {
                        r.video_tags += 1;
                        if let Some(prev) = last_video {
                            r.max_gap = r.max_gap.max(now - prev);
                        }
                        last_video = Some(now);
                    } else if tag.tag_type == 8 {
                        r.audio_tags += 1;
                    }
                }
                Ok(None) => break,
                Err(e) => return end(format!("FLV error: {e}")),
            }
        }
        match sock.read(&mut chunk) {
            Ok(0) => return end("EOF".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return end(e.to_string()),
        }
    }
}

/// Asserts `r` shows a player that kept receiving through the attack: at
/// least `min_video` video tags, no stall longer than `max_gap`, still
/// playing.
pub fn assert_kept_flowing(case: &str, r: &WatchReport, min_video: u64, max_gap: Duration) {
    eprintln!(
        "{case}: the watcher got {} video and {} audio tags, longest video gap {:?}",
        r.video_tags, r.audio_tags, r.max_gap
    );
    assert!(r.ended.is_none(), "{case}: the watcher's play ended: {r:?}");
    assert!(
        r.video_tags >= min_video,
        "{case}: the watcher got only {} video tags (wanted {min_video})",
        r.video_tags
    );
    assert!(
        r.max_gap <= max_gap,
        "{case}: the watcher stalled for {:?} (bound {max_gap:?})",
        r.max_gap
    );
}

/// A WebSocket-FLV upgrade of `path`; the socket after the 101 head, with
/// whatever came behind it.
pub fn ws_upgrade(port: u16, path: &str, rcvbuf: Option<usize>) -> (TcpStream, Vec<u8>) {
    let mut sock = connect(port, rcvbuf);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    sock.write_all(req.as_bytes()).expect("send upgrade");
    let (status, head, rest) = read_head(&mut sock).expect("answer to the upgrade");
    assert_eq!(status, 101, "the upgrade was refused: {head}");
    (sock, rest)
}

/// One client frame: `first` is FIN, RSV and opcode; masked with a fixed key.
pub fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut v = vec![first, 0x80 | payload.len() as u8];
    v.extend_from_slice(&key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    v
}

/// Reads server frames (skipping media) until a close frame; returns its
/// status code, or what went wrong. `pong` is set when a pong came first.
pub fn read_close(sock: &mut TcpStream, first: Vec<u8>, pong: &mut bool) -> Result<u16, String> {
    let deadline = Instant::now() + IO;
    let mut buf = first;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some((opcode, at, len)) = frame_at(&buf) {
            if buf.len() < at + len {
                break;
            }
            let payload = buf[at..at + len].to_vec();
            buf.drain(..at + len);
            match opcode {
                0x8 if payload.len() >= 2 => {
                    return Ok(u16::from_be_bytes([payload[0], payload[1]]))
                }
                0x8 => return Err("a close frame without a code".into()),
                0xA => *pong = true,
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            return Err("no close frame in time".into());
        }
        match sock.read(&mut chunk) {
            Ok(0) => return Err("EOF before a close frame".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{e} before a close frame")),
        }
    }
}

/// The opcode, payload offset and payload length of the unmasked server
/// frame at the front of `buf`, once its header is complete.
fn frame_at(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    assert_eq!(b1 & 0x80, 0, "the server masked a frame");
    let (len, at) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    Some((b0 & 0x0f, at, len))
}

// Slow and endless request heads.

/// The request a slow client trickles, one byte a second: never whole
/// before the head timeout.
pub const TRICKLED: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// One held connection of [`hold`].
struct Held {
    sock: TcpStream,
    opened: Instant,
    next_byte: Instant,
    sent: usize,
    got: Vec<u8>,
    silent: bool,
}

impl Held {
    fn open(port: u16, silent: bool) -> Held {
        let sock = connect(port, None);
        sock.set_nonblocking(true).unwrap();
        let now = Instant::now();
        Held {
            sock,
            opened: now,
            next_byte: now,
            sent: 0,
            got: Vec::new(),
            silent,
        }
    }
}

/// How a held connection ended.
pub struct Closed {
    pub silent: bool,
    pub lived: Duration,
    pub got: Vec<u8>,
    pub sent: usize,
}

/// Keeps `slow` connections trickling `TRICKLED` (a byte a second each)
/// and `silent` ones that send nothing open until `stop`, opening a new
/// one whenever the server closes one. Returns those that were closed and
/// the ages of those still open.
pub fn hold(
    port: u16,
    slow: usize,
    silent: usize,
    stop: &AtomicBool,
) -> (Vec<Closed>, Vec<Duration>) {
    let mut held: Vec<Held> = (0..slow + silent)
        .map(|i| Held::open(port, i >= slow))
        .collect();
    let mut closed = Vec::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for h in held.iter_mut().filter(|h| !h.silent && h.next_byte <= now) {
            let byte = TRICKLED[h.sent % TRICKLED.len()];
            if (&h.sock).write(&[byte]).is_ok() {
                h.sent += 1;
            }
            h.next_byte = now + Duration::from_secs(1);
        }
        let mut fds: Vec<libc::pollfd> = held
            .iter()
            .map(|h| libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&h.sock),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a live array of initialised pollfds of open sockets.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        for (i, fd) in fds.iter().enumerate().rev() {
            if fd.revents == 0 {
                continue;
            }
            let h = &mut held[i];
            let ended = loop {
                match (&h.sock).read(&mut buf) {
                    Ok(0) => break true,
                    Ok(n) => h.got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            if ended {
                let fresh = Held::open(port, h.silent);
                let h = std::mem::replace(&mut held[i], fresh);
                closed.push(Closed {
                    silent: h.silent,
                    lived: h.opened.elapsed(),
                    got: h.got,
                    sent: h.sent,
                });
            }
        }
    }
    let ages = held.iter().map(|h| h.opened.elapsed()).collect();
    (closed, ages)
}

/// One connection writing a header line that never ends, as fast as the
/// server takes it; returns how it ended and the bytes it wrote.
pub fn endless_header(port: u16) -> (Ending, u64) {
    let mut sock = connect(port, None);
    let mut writer = sock.try_clone().unwrap();
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let feeder = {
        let done = done.clone();
        thread::spawn(move || {
            writer
                .set_write_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut sent = 0u64;
            if writer
                .write_all(b"GET /healthz HTTP/1.1\r\nX-Endless: ")
                .is_err()
            {
                return sent;
            }
            let line = [b'a'; 4096];
            while !done.load(Ordering::Relaxed) {
                match writer.write(&line) {
                    Ok(n) => sent += n as u64,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            sent
        })
    };
    let end = read_to_end(&mut sock, Duration::from_secs(5));
    done.store(true, Ordering::Relaxed);
    (end, feeder.join().unwrap())
}

// Pipelining.

/// One pipelined request and the answer it must get.
pub struct Expect {
    pub request: String,
    pub status: u16,
    /// None for HEAD: the answer has a Content-Length but no body.
    pub body: Option<&'static str>,
}

pub fn pipelined_request(i: usize, last: bool) -> Expect {
    let conn = if last { "Connection: close\r\n" } else { "" };
    let (request, status, body) = match i % 5 {
        0 => (
            format!("GET /healthz HTTP/1.1\r\n{conn}\r\n"),
            200,
            Some("ok\n"),
        ),
        1 => (
            format!("GET /readyz HTTP/1.1\r\n{conn}\r\n"),
            200,
            Some("ready\n"),
        ),
        2 => (
            format!("GET /nothing/{i} HTTP/1.1\r\n{conn}\r\n"),
            404,
            Some("not found\n"),
        ),
        3 => (format!("HEAD /healthz HTTP/1.1\r\n{conn}\r\n"), 200, None),
        _ => (
            format!("POST /healthz HTTP/1.1\r\nContent-Length: 5\r\n{conn}\r\nhello"),
            405,
            Some("method not allowed\n"),
        ),
    };
    Expect {
        request,
        status,
        body,
    }
}

/// Splits `bytes` into answers as `want` says they come; panics on the
/// first that differs.
pub fn check_answers(bytes: &[u8], want: &[Expect]) {
    let mut at = 0;
    for (i, w) in want.iter().enumerate() {
        let rest = &bytes[at..];
        let end = rest
            .windows(4)
            .position(|x| x == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("answer {i} of {}: no head in what is left", want.len()));
        let head = String::from_utf8_lossy(&rest[..end]).to_string();
        let status: u16 = head[9..12].parse().expect("status");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("answer {i}: no Content-Length in {head:?}"));
        let body_len = if w.body.is_some() { length } else { 0 };
        let body = String::from_utf8_lossy(&rest[end + 4..end + 4 + body_len]);
        assert_eq!(
            (status, w.body.unwrap_or("")),
            (w.status, &*body),
            "answer {i} ({:?}) is out of order or wrong: {head}",
            w.request
        );
        at += end + 4 + body_len;
    }
    assert_eq!(at, bytes.len(), "bytes after the last answer");
}
