//! HTTP/1.1 request heads and response heads, sans-IO. Parsing is
//! `httparse`'s; this module bounds it (head size, header count), keeps the
//! few headers a media server acts on, and writes response heads.
//!
//! Bytes after a complete head are not touched: they are the request's body
//! or the next pipelined request, for the caller.

use bytes::{BufMut, BytesMut};

/// Bounds on one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// The head (request line, headers, blank line), in bytes.
    pub max_bytes: usize,
    pub max_headers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Other,
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// What a request asked, with the headers cascade acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The target's path, percent-decoded.
    pub path: String,
    /// The target's path as sent (still percent-encoded).
    pub raw_path: String,
    /// The target's query, as sent (without the `?`).
    pub query: String,
    /// HTTP/1.0 (no keep-alive unless asked, no chunked encoding).
    pub http10: bool,
    /// The connection closes after this request.
    pub close: bool,
    /// `Upgrade: websocket` with `Connection: upgrade`.
    pub websocket: bool,
    pub ws_key: Option<String>,
    pub ws_version: Option<String>,
    pub authorization: Option<String>,
    /// The `Range` header, if one was sent.
    pub range: Option<String>,
    pub content_length: u64,
    /// `Transfer-Encoding` was sent (cascade takes no chunked bodies).
    pub transfer_encoding: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    #[error("more than {0} header lines")]
    TooManyHeaders(usize),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("bad Content-Length")]
    BadContentLength,
}

impl HeadError {
    /// The status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge(_) | HeadError::TooManyHeaders(_) => 431,
            HeadError::Malformed(_) | HeadError::BadContentLength => 400,
        }
    }
}

/// Header slots kept on the stack by [`parse_head`].
const STACK_HEADERS: usize = 128;

/// Parses the head at the front of `buf`: `Ok(None)` while incomplete (and
/// still within bounds), else the head and its length in bytes.
pub fn parse_head(
    buf: &[u8],
    limits: HeadLimits,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let window = &buf[..buf.len().min(limits.max_bytes)];
    // On the stack up to a size that covers any sane limit: this runs for
    // every request, and a heap block this size costs more than parsing.
    let mut on_stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut on_heap = Vec::new();
    let headers: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK_HEADERS {
        &mut on_stack[..limits.max_headers]
    } else {
        on_heap.resize(limits.max_headers, httparse::EMPTY_HEADER);
        &mut on_heap
    };
    let mut req = httparse::Request::new(headers);
    let len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_bytes => {
            return Err(HeadError::TooLarge(limits.max_bytes))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooManyHeaders(limits.max_headers))
        }
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    let target = req.path.unwrap_or("/");
    let (raw_path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|_| HeadError::Malformed("path is not UTF-8".into()))?
        .into_owned();
    let http10 = req.version == Some(0);
    let mut head = RequestHead {
        method: Method::parse(req.method.unwrap_or("")),
        path,
        raw_path: raw_path.to_string(),
        query: query.to_string(),
        http10,
        close: http10,
        websocket: false,
        ws_key: None,
        ws_version: None,
        authorization: None,
        range: None,
        content_length: 0,
        transfer_encoding: false,
    };
    let mut upgrade = false;
    let mut connection_upgrade = false;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    head.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    head.close = false;
                } else if token.eq_ignore_ascii_case("upgrade") {
                    connection_upgrade = true;
                }
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"));
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            head.ws_key = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            head.ws_version = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("range") {
            head.range = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.parse().map_err(|_| HeadError::BadContentLength)?;
            if head.content_length != 0 && head.content_length != n {
                return Err(HeadError::BadContentLength);
            }
            head.content_length = n;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.transfer_encoding = true;
        }
    }
    head.websocket = upgrade && connection_upgrade;
    Ok(Some((head, len)))
}

/// The one byte range a request asks for: from `start`, through `end`
/// (inclusive) when it gives one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

impl RequestHead {
    /// The `Range` header as one range from a known first byte
    /// (`bytes=S-` or `bytes=S-E`). A suffix range (`bytes=-N`), several
    /// ranges, or a header that does not parse give None: the whole body
    /// is served, which a server may always do (RFC 9110 14.2).
    pub fn byte_range(&self) -> Option<ByteRange> {
        use http_range_header::{EndPosition, StartPosition};
        let parsed = http_range_header::parse_range_header(self.range.as_deref()?.trim()).ok()?;
        let [range] = parsed.ranges.as_slice() else {
            return None;
        };
        let StartPosition::Index(start) = range.start else {
            return None;
        };
        let end = match range.end {
            // A last byte before the first is invalid: the header is ignored.
            EndPosition::Index(e) if e < start => return None,
            EndPosition::Index(e) => Some(e),
            EndPosition::LastByte => None,
        };
        Some(ByteRange { start, end })
    }

    /// A `Range` asking for something other than the whole body from its
    /// start (`bytes=0-`, which ffmpeg sends on every request, is the
    /// whole body and is served as if absent).
    pub fn partial_range(&self) -> bool {
        self.range
            .as_deref()
            .is_some_and(|r| r.replace(' ', "") != "bytes=0-")
    }
}

/// The reason phrase cascade writes for `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A response head: status line, `headers`, then `Content-Length` when the
/// body's length is known, and `Connection: close` when `close`.
pub fn response_head(
    status: u16,
    headers: &[(&str, &str)],
    content_length: Option<usize>,
    close: bool,
) -> BytesMut {
    let mut out = BytesMut::with_capacity(256);
    out.put_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    for (name, value) in headers {
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    if let Some(n) = content_length {
        out.put_slice(format!("Content-Length: {n}\r\n").as_bytes());
    }
    if close {
        out.put_slice(b"Connection: close\r\n");
    }
    out.put_slice(b"\r\n");
    out
}

/// Room for the longest chunk-size line: 16 hex digits and CRLF.
pub const CHUNK_LINE_MAX: usize = 18;

/// A chunk's size line (`{n:x}\r\n`) written into `buf`: written by hand
/// so that a streamed segment's chunks are framed on the stack and sent
/// with their part in one call, with no allocation per chunk.
pub fn chunk_size_line(buf: &mut [u8; CHUNK_LINE_MAX], n: usize) -> &[u8] {
    use std::io::Write;
    let mut w = &mut buf[..];
    // 16 hex digits and CRLF fit: cannot fail.
    let _ = write!(w, "{n:x}\r\n");
    let left = w.len();
    &buf[..CHUNK_LINE_MAX - left]
}

/// One query parameter's decoded value.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_are_hex_with_crlf() {
        let mut buf = [0u8; CHUNK_LINE_MAX];
        assert_eq!(chunk_size_line(&mut buf, 0x1a2b), b"1a2b\r\n");
        assert_eq!(
            chunk_size_line(&mut buf, usize::MAX),
            b"ffffffffffffffff\r\n"
        );
    }

    const LIMITS: HeadLimits = HeadLimits {
        max_bytes: 1024,
        max_headers: 8,
    };

    #[test]
    fn a_get_with_query_and_keep_alive_parses() {
        let req = b"GET /live/a%20b.flv?token=x%3Dy HTTP/1.1\r\nHost: h\r\n\r\nGET /next";
        let (head, len) = parse_head(req, LIMITS).unwrap().unwrap();
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.path, "/live/a b.flv");
        assert_eq!(head.query, "token=x%3Dy");
        assert_eq!(query_param(&head.query, "token").as_deref(), Some("x=y"));
        assert!(!head.close && !head.websocket);
        assert_eq!(&req[len..], b"GET /next");
    }

    #[test]
    fn a_websocket_upgrade_is_recognised() {
        let req = b"GET /live/x.flv HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let (head, _) = parse_head(req, LIMITS).unwrap().unwrap();
        assert!(head.websocket);
        assert_eq!(head.ws_key.as_deref(), Some("abc"));
    }

    #[test]
    fn heads_past_the_limits_are_refused() {
        let endless = vec![b'a'; 2000];
        let mut req = b"GET / HTTP/1.1\r\nX: ".to_vec();
        req.extend_from_slice(&endless);
        assert_eq!(parse_head(&req, LIMITS), Err(HeadError::TooLarge(1024)));
        assert_eq!(parse_head(&req[..100], LIMITS), Ok(None));
        let many: String = (0..9).map(|i| format!("H{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse_head(req.as_bytes(), LIMITS),
            Err(HeadError::TooManyHeaders(8))
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", LIMITS),
            Err(HeadError::BadContentLength)
        );
        assert!(matches!(
            parse_head(b"\x01\x02 / HTTP/1.1\r\n\r\n", LIMITS),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn http10_closes_unless_kept_alive() {
        let (head, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n", LIMITS)
            .unwrap()
            .unwrap();
        assert!(head.close && head.http10);
        let (head, _) = parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", LIMITS)
            .unwrap()
            .unwrap();
        assert!(!head.close);
    }

    #[test]
    fn one_range_from_a_known_byte_is_understood_and_the_rest_ignored() {
        let head = |r: &str| {
            let text = format!("GET /a/b/seg1.m4s HTTP/1.1\r\nRange: {r}\r\n\r\n");
            parse_head(text.as_bytes(), LIMITS).unwrap().unwrap().0
        };
        let r = |start, end| Some(ByteRange { start, end });
        assert_eq!(head("bytes=100-").byte_range(), r(100, None));
        assert_eq!(head("bytes=5-9").byte_range(), r(5, Some(9)));
        assert_eq!(head("bytes=0-").byte_range(), r(0, None));
        assert_eq!(head("bytes=-500").byte_range(), None);
        assert_eq!(head("bytes=0-1,5-9").byte_range(), None);
        assert_eq!(head("bytes=9-5").byte_range(), None);
        assert_eq!(head("lines=1-2").byte_range(), None);
        assert_eq!(head("bytes=x-").byte_range(), None);
        let (bare, _) = parse_head(b"GET / HTTP/1.1\r\n\r\n", LIMITS)
            .unwrap()
            .unwrap();
        assert_eq!(bare.byte_range(), None);
    }

    #[test]
    fn response_heads_are_well_formed() {
        let head = response_head(404, &[("Content-Type", "text/plain")], Some(3), true);
        assert_eq!(
            &head[..],
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
        );
    }
}
