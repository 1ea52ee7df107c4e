//! HTTP-FLV and WebSocket-FLV players for the end-to-end tests: a plain
//! socket that sends one request and reads the answer's head and body as
//! they arrive, and a WebSocket client (tungstenite) that collects the FLV
//! bytes of binary messages; both parse the FLV tags they got.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cascade::protocol::flv::{FlvTag, FlvTagReader};

/// An HTTP answer's head, and the socket left open on its body.
pub struct HttpPlay {
    pub status: u16,
    pub head: String,
    pub sock: TcpStream,
    /// Body bytes that came with the head.
    pub body: Vec<u8>,
}

/// Sends `GET path` (HTTP/1.1, extra header lines in `extra`) and reads the
/// answer's head.
pub fn get(port: u16, path: &str, extra: &str) -> HttpPlay {
    request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n"),
    )
}

/// Sends raw request bytes and reads the answer's head.
pub fn request(port: u16, raw: &str) -> HttpPlay {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.write_all(raw.as_bytes()).expect("send request");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut chunk).expect("read answer head");
        assert!(
            n > 0,
            "closed before an answer head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    HttpPlay {
        status,
        head,
        sock,
        body: buf[end..].to_vec(),
    }
}

impl HttpPlay {
    /// Whether the head carries `name: value` (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// Reads the body for `how_long` (or until it closes): the FLV tags of
    /// the whole body so far, and whether the server closed.
    pub fn read_tags(&mut self, how_long: Duration) -> (Vec<FlvTag>, bool) {
        let deadline = Instant::now() + how_long;
        let mut bytes = std::mem::take(&mut self.body);
        let mut chunk = [0u8; 64 * 1024];
        let mut closed = false;
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(10))))
                .unwrap();
            match self.sock.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let tags = flv_tags(&bytes);
        self.body = bytes;
        (tags, closed)
    }
}

/// The FLV tags in a byte stream that starts with the FLV file header.
pub fn flv_tags(bytes: &[u8]) -> Vec<FlvTag> {
    assert!(
        bytes.starts_with(b"FLV"),
        "the body does not start with an FLV header: {:?}",
        &bytes[..bytes.len().min(16)]
    );
    let mut reader = FlvTagReader::new();
    let mut buf = BytesMut::from(bytes);
    let mut tags = Vec::new();
    while let Ok(Some(tag)) = reader.next_tag(&mut buf) {
        tags.push(tag);
    }
    tags
}

/// Whether the first video tag is a keyframe and video timestamps never go
/// backwards: what a player needs to start and keep going.
pub fn assert_playable(tags: &[FlvTag], what: &str) {
    let video: Vec<&FlvTag> = tags.iter().filter(|t| t.tag_type == 9).collect();
    let audio = tags.iter().filter(|t| t.tag_type == 8).count();
    assert!(
        video.len() >= 10 && audio >= 10,
        "{what}: {} video, {audio} audio tags",
        video.len()
    );
    let first = video[0].data[0];
    assert_eq!(
        first >> 4 & 0x7,
        1,
        "{what}: the first video tag is not a keyframe"
    );
    for w in video.windows(2) {
        assert!(
            w[1].timestamp >= w[0].timestamp,
            "{what}: video went back from {} to {}",
            w[0].timestamp,
            w[1].timestamp
        );
    }
}
