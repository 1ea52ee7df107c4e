//! HLS and DASH helpers for the end-to-end tests: one-shot HTTP/1.0 fetches
//! that keep the body as bytes, and readers of the playlist lines the
//! tests check.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// One answer, whole.
pub struct Fetched {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
    /// From sending the request to the answer's last byte.
    pub took: Duration,
}

impl Fetched {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// `GET path` over HTTP/1.0 (the server closes after the answer).
pub fn fetch(port: u16, path: &str) -> Fetched {
    fetch_with(port, path, "")
}

/// `GET path` over HTTP/1.0 with `extra` header lines (each ending in
/// CRLF).
pub fn fetch_with(port: u16, path: &str, extra: &str) -> Fetched {
    let start = Instant::now();
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    sock.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{extra}\r\n").as_bytes())
        .expect("send request");
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).expect("read answer");
    let took = start.elapsed();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)))
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    Fetched {
        status,
        head,
        body: raw[end..].to_vec(),
        took,
    }
}

/// A chunked answer read over HTTP/1.1 as it arrives: its head, its body
/// with the chunking taken off, and when each read returned (from the
/// request), and the connection, open for another request.
pub struct Streamed {
    pub head: String,
    pub body: Vec<u8>,
    pub arrivals: Vec<Duration>,
    pub conn: TcpStream,
}

/// `GET path` over HTTP/1.1 with `extra` header lines, for an answer sent
/// chunked; reads until the last chunk.
pub fn fetch_chunked(port: u16, path: &str, extra: &str) -> Streamed {
    let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    fetch_chunked_on(sock, path, extra, Duration::ZERO)
}

/// As [`fetch_chunked`], by a player with a receive buffer of about
/// `rcvbuf` bytes that reads nothing for `pause` after asking: the
/// server's socket fills and the rest of the answer waits in the server.
pub fn fetch_chunked_slowly(
    port: u16,
    path: &str,
    extra: &str,
    rcvbuf: usize,
    pause: Duration,
) -> Streamed {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    sock.connect(&addr.into()).expect("connect");
    fetch_chunked_on(sock.into(), path, extra, pause)
}

fn fetch_chunked_on(mut sock: TcpStream, path: &str, extra: &str, pause: Duration) -> Streamed {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    sock.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n").as_bytes())
        .expect("send request");
    thread::sleep(pause);
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let mut arrivals = Vec::new();
    while !raw.ends_with(b"0\r\n\r\n") {
        let n = sock.read(&mut buf).expect("read the chunked answer");
        assert!(n > 0, "closed before the last chunk");
        raw.extend_from_slice(&buf[..n]);
        arrivals.push(start.elapsed());
    }
    let body_start = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut body = Vec::new();
    let mut rest = &raw[body_start..];
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let len = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
        if len == 0 {
            break;
        }
        body.extend_from_slice(&rest[eol + 2..eol + 2 + len]);
        rest = &rest[eol + 2 + len + 2..];
    }
    Streamed {
        head: String::from_utf8_lossy(&raw[..body_start]).to_string(),
        body,
        arrivals,
        conn: sock,
    }
}

/// A media playlist that must answer 200 as an HLS playlist: its answer.
pub fn fetch_playlist(port: u16, path: &str) -> Fetched {
    let f = fetch(port, path);
    assert_eq!(f.status, 200, "{path}: {}", f.text());
    assert_eq!(
        f.header("content-type").as_deref(),
        Some("application/vnd.apple.mpegurl"),
        "{path}"
    );
    f
}

/// Polls `path` until it answers 200 (a new stream's first part), then
/// returns that answer.
pub fn wait_ok(port: u16, path: &str, timeout: Duration) -> Fetched {
    let deadline = Instant::now() + timeout;
    loop {
        let f = fetch(port, path);
        if f.status == 200 {
            return f;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered 200 (last {}: {})",
            f.status,
            f.text()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// A media playlist's facts the tests check.
#[derive(Debug, Default)]
pub struct Playlist {
    pub media_sequence: u64,
    /// Complete segments: (msn, seconds).
    pub segments: Vec<(u64, f64)>,
    /// Parts: (msn, index, seconds, independent).
    pub parts: Vec<(u64, u32, f64, bool)>,
    pub preload_hint: Option<String>,
    pub skipped: Option<u64>,
    pub discontinuities: usize,
    pub program_date_times: usize,
}

/// The value of `name` in a tag line's attributes, quotes removed.
pub fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        let k = k.rsplit(':').next().unwrap_or(k);
        (k == name).then(|| v.trim_matches('"'))
    })
}

/// `partM.I.m4s` (or one track's `partM.I-a.m4s`, `partM.I-v.m4s`) →
/// (M, I).
pub fn part_numbers(uri: &str) -> Option<(u64, u32)> {
    let file = uri.split('?').next()?;
    let stem = file.strip_prefix("part")?.strip_suffix(".m4s")?;
    let stem = ["-a", "-v"]
        .iter()
        .find_map(|t| stem.strip_suffix(t))
        .unwrap_or(stem);
    let (m, i) = stem.split_once('.')?;
    Some((m.parse().ok()?, i.parse().ok()?))
}

pub fn parse_playlist(text: &str) -> Playlist {
    let mut p = Playlist::default();
    let mut msn = None;
    let mut part_index = 0;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            p.media_sequence = v.trim().parse().unwrap();
            msn = Some(p.media_sequence);
        } else if let Some(v) = line.strip_prefix("#EXT-X-SKIP:") {
            let n: u64 = attr(v, "SKIPPED-SEGMENTS").unwrap().parse().unwrap();
            p.skipped = Some(n);
            msn = msn.map(|m| m + n);
        } else if line.starts_with("#EXT-X-PART:") {
            let uri = attr(line, "URI").unwrap();
            let (m, i) = part_numbers(uri).unwrap();
            assert_eq!(Some(m), msn, "part {uri} listed under segment {msn:?}");
            assert_eq!(i, part_index, "parts of {m} out of order");
            part_index += 1;
            let d: f64 = attr(line, "DURATION").unwrap().parse().unwrap();
            p.parts
                .push((m, i, d, attr(line, "INDEPENDENT") == Some("YES")));
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let d: f64 = v.trim_end_matches(',').parse().unwrap();
            p.segments.push((msn.unwrap(), d));
        } else if line.starts_with("seg") {
            msn = msn.map(|m| m + 1);
            part_index = 0;
        } else if line.starts_with("#EXT-X-PRELOAD-HINT:") {
            p.preload_hint = attr(line, "URI").map(str::to_string);
        } else if line.starts_with("#EXT-X-DISCONTINUITY") && !line.contains("SEQUENCE") {
            p.discontinuities += 1;
        } else if line.starts_with("#EXT-X-PROGRAM-DATE-TIME:") {
            p.program_date_times += 1;
        }
    }
    p
}
