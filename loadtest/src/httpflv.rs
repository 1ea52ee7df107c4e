//! The HTTP-FLV player's protocol, without I/O: the URL, the GET request,
//! the response head (parsed with `httparse`), the body's framing
//! (close-delimited, Content-Length or chunked) and the FLV tags inside it.
//! Socket bytes go in, tags come out to the caller, request bytes wait in
//! [`HttpFlvClient::out`]. The WebSocket player (`wsflv`) shares the URL,
//! the head reader and the errors.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use httparse::Status;

use cascade::protocol::flv::FlvError;

use crate::flvstream::FlvStream;

/// A response head bigger than this is not a streaming server's.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// Longest chunk-size line or trailer section carried across reads.
const MAX_CHUNK_LINE: usize = 8 * 1024;

/// `http://host[:port]/path` or `ws://host[:port]/path` (no TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// From the first `/`, query included: sent as the request target.
    pub path: String,
}

impl HttpUrl {
    /// Parses a URL of the given scheme (`"http"` or `"ws"`); port 80 when
    /// none is given.
    pub fn parse(s: &str, scheme: &str) -> Result<HttpUrl, String> {
        let rest = s
            .strip_prefix(scheme)
            .and_then(|r| r.strip_prefix("://"))
            .ok_or_else(|| format!("{s}: not a {scheme}:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => return Err(format!("{s}: no path (e.g. /live/NAME.flv)")),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|e| format!("{s}: port: {e}"))?),
            None => (authority, 80),
        };
        if host.is_empty() || path.len() < 2 {
            return Err(format!("{s}: empty host or path"));
        }
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The Host header's value.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn socket_addr(&self) -> io::Result<SocketAddr> {
        use std::net::ToSocketAddrs;
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host has no address"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("response head: {0}")]
    Head(#[from] httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("status {0}")]
    Status(u16),
    #[error("bad chunked framing")]
    Chunked,
    #[error("FLV stream: {0}")]
    Flv(#[from] FlvError),
    #[error("response body ended")]
    BodyEnded,
    #[error("websocket handshake: {0}")]
    WsHandshake(&'static str),
    #[error("websocket frame: {0}")]
    WsFrame(String),
    #[error("websocket closed by server (code {0:?})")]
    WsClosed(Option<u16>),
}

impl HttpError {
    /// A short stable label for counting failures by reason (see
    /// [`ClientError::reason`](crate::rtmp::ClientError::reason)).
    pub fn reason(&self) -> String {
        match self {
            HttpError::Head(_) | HttpError::HeadTooLarge => "http-head".into(),
            HttpError::Status(code) => format!("http:{code}"),
            HttpError::Chunked => "http-chunked".into(),
            HttpError::Flv(_) => "flv".into(),
            HttpError::BodyEnded => "ended:http-body".into(),
            HttpError::WsHandshake(_) => "ws-handshake".into(),
            HttpError::WsFrame(_) => "ws-frame".into(),
            HttpError::WsClosed(_) => "ended:ws-close".into(),
        }
    }
}

/// How the body's end is marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The body runs until the server closes the connection.
    Close,
    Length(u64),
    Chunked,
}

/// What a player needs of a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// `Upgrade: websocket`.
    pub upgrade_websocket: bool,
    /// `Connection` lists `upgrade`.
    pub connection_upgrade: bool,
    pub ws_accept: Option<String>,
    /// The server closes the connection after this response
    /// (`Connection: close`, or HTTP/1.0 without keep-alive).
    pub close: bool,
}

impl Head {
    fn from_response(resp: &httparse::Response<'_, '_>) -> Head {
        let mut head = Head {
            status: resp.code.unwrap_or(0),
            framing: Framing::Close,
            upgrade_websocket: false,
            connection_upgrade: false,
            ws_accept: None,
            close: false,
        };
        let mut keep_alive = false;
        let mut chunked = false;
        let mut length = None;
        for h in resp.headers.iter() {
            let value = String::from_utf8_lossy(h.value);
            let value = value.trim();
            let name = h.name;
            if name.eq_ignore_ascii_case("transfer-encoding") {
                // Chunked counts only as the last coding applied.
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<u64>().ok();
            } else if name.eq_ignore_ascii_case("upgrade") {
                head.upgrade_websocket = value.eq_ignore_ascii_case("websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                let has = |token: &str| {
                    value
                        .split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case(token))
                };
                head.connection_upgrade = has("upgrade");
                head.close = has("close");
                keep_alive = has("keep-alive");
            } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
                head.ws_accept = Some(value.to_string());
            }
        }
        if resp.version == Some(0) && !keep_alive {
            head.close = true;
        }
        // Chunked wins over a Content-Length, as HTTP/1.1 says.
        head.framing = match (chunked, length) {
            (true, _) => Framing::Chunked,
            (false, Some(n)) => Framing::Length(n),
            (false, None) => Framing::Close,
        };
        head
    }
}

/// Collects the response head across reads.
#[derive(Default)]
pub struct HeadReader {
    buf: Vec<u8>,
}

impl HeadReader {
    /// Adds `data`; once the head is complete returns it and how many bytes
    /// of `data` it took (the rest is body or frames).
    pub fn push(&mut self, data: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
        let old = self.buf.len();
        self.buf.extend_from_slice(data);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&self.buf)? {
            Status::Partial if self.buf.len() > MAX_HEAD => Err(HttpError::HeadTooLarge),
            Status::Partial => Ok(None),
            Status::Complete(len) => {
                let head = Head::from_response(&resp);
                // The previous push did not complete the head, so it ends
                // within the bytes just added.
                Ok(Some((head, len - old)))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line.
    Size,
    /// Bytes of chunk data still to come.
    Data(u64),
    /// The CRLF after chunk data: 2 bytes to go, then 1.
    DataEnd(u8),
    /// After the last (zero) chunk: the trailer section.
    Trailer,
    Done,
}

/// Strips `Transfer-Encoding: chunked` framing as the bytes arrive.
///
/// Written here rather than taken from a crate because it has to work on
/// whatever slice a non-blocking read returns, hand chunk data out without
/// copying it, and keep no buffer beyond a partial size line; the size
/// lines and trailer themselves are parsed by `httparse`.
pub struct Dechunker {
    state: ChunkState,
    /// A size line or trailer split across reads.
    line: Vec<u8>,
}

impl Default for Dechunker {
    fn default() -> Self {
        Dechunker {
            state: ChunkState::Size,
            line: Vec::new(),
        }
    }
}

impl Dechunker {
    /// Passes each piece of chunk data in `data` to `out`; true once the
    /// last chunk and its trailer have arrived (bytes after that are
    /// ignored).
    pub fn push(
        &mut self,
        mut data: &[u8],
        out: &mut impl FnMut(&[u8]),
    ) -> Result<bool, HttpError> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(true),
                _ if data.is_empty() => return Ok(false),
                ChunkState::Data(left) => {
                    let n = left.min(data.len() as u64) as usize;
                    out(&data[..n]);
                    data = &data[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd(2)
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd(k) => {
                    let want = if k == 2 { b'\r' } else { b'\n' };
                    if data[0] != want {
                        return Err(HttpError::Chunked);
                    }
                    data = &data[1..];
                    self.state = if k == 2 {
                        ChunkState::DataEnd(1)
                    } else {
                        ChunkState::Size
                    };
                }
                ChunkState::Size | ChunkState::Trailer => {
                    let used = self.line_item(data)?;
                    data = &data[used..];
                }
            }
        }
    }

    /// Parses a size line or the trailer from `data` (after what an earlier
    /// read left in `line`); returns how much of `data` it used.
    fn line_item(&mut self, data: &[u8]) -> Result<usize, HttpError> {
        let old = self.line.len();
        if old == 0 {
            // The common case: the whole line is in this read.
            if let Some((n, next)) = self.parse_line(data)? {
                self.state = next;
                return Ok(n);
            }
            if data.len() > MAX_CHUNK_LINE {
                return Err(HttpError::Chunked);
            }
            self.line.extend_from_slice(data);
            return Ok(data.len());
        }
        let add = data.len().min(MAX_CHUNK_LINE + 1 - old);
        self.line.extend_from_slice(&data[..add]);
        match self.parse_line(&self.line)? {
            Some((n, next)) => {
                self.state = next;
                self.line.clear();
                // The carried bytes did not hold a whole line, so it ends
                // within the ones just added.
                Ok(n - old)
            }
            None if self.line.len() > MAX_CHUNK_LINE => Err(HttpError::Chunked),
            None => Ok(add),
        }
    }

    /// One size line or the trailer section at the start of `b`: its length
    /// and the state after it, or None when `b` ends first.
    fn parse_line(&self, b: &[u8]) -> Result<Option<(usize, ChunkState)>, HttpError> {
        if self.state == ChunkState::Trailer {
            let mut fields = [httparse::EMPTY_HEADER; 16];
            return match httparse::parse_headers(b, &mut fields)? {
                Status::Complete((n, _)) => Ok(Some((n, ChunkState::Done))),
                Status::Partial => Ok(None),
            };
        }
        match httparse::parse_chunk_size(b).map_err(|_| HttpError::Chunked)? {
            Status::Complete((n, 0)) => Ok(Some((n, ChunkState::Trailer))),
            Status::Complete((n, size)) => Ok(Some((n, ChunkState::Data(size)))),
            Status::Partial => Ok(None),
        }
    }
}

enum Body {
    Close,
    Length(u64),
    Chunked(Dechunker),
}

enum Phase {
    Head(HeadReader),
    Body(Body),
}

/// One HTTP-FLV player's protocol state.
pub struct HttpFlvClient {
    /// Bytes to send: the request.
    pub out: BytesMut,
    phase: Phase,
    flv: FlvStream,
}

impl HttpFlvClient {
    /// Queues the GET. No `Connection` header: HTTP/1.1 keeps the
    /// connection by default, as the browser players (flv.js, mpegts.js,
    /// which fetch the stream) do, so a server answers as it would them.
    pub fn new(url: &HttpUrl) -> HttpFlvClient {
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cascade-loadtest\r\nAccept: */*\r\n\r\n",
            url.path,
            url.authority()
        );
        HttpFlvClient {
            out: BytesMut::from(req.as_bytes()),
            phase: Phase::Head(HeadReader::default()),
            flv: FlvStream::default(),
        }
    }

    /// A 200 head has arrived: the player is playing.
    pub fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Body(_))
    }

    /// Consumes bytes just read; each complete tag goes to `on` as (RTMP
    /// type id, timestamp, body). A status other than 200 is an error, and
    /// so is the end of a chunked or sized body (a live stream has none).
    pub fn push(
        &mut self,
        mut data: &[u8],
        on: &mut impl FnMut(u8, u32, &[u8]),
    ) -> Result<(), HttpError> {
        if let Phase::Head(h) = &mut self.phase {
            let Some((head, used)) = h.push(data)? else {
                return Ok(());
            };
            if head.status != 200 {
                return Err(HttpError::Status(head.status));
            }
            self.phase = Phase::Body(match head.framing {
                Framing::Close => Body::Close,
                Framing::Length(n) => Body::Length(n),
                Framing::Chunked => Body::Chunked(Dechunker::default()),
            });
            data = &data[used..];
        }
        let flv = &mut self.flv;
        let ended = match &mut self.phase {
            Phase::Head(_) => false,
            Phase::Body(Body::Close) => {
                flv.extend(data);
                false
            }
            Phase::Body(Body::Length(left)) => {
                let n = (*left).min(data.len() as u64) as usize;
                flv.extend(&data[..n]);
                *left -= n as u64;
                *left == 0
            }
            Phase::Body(Body::Chunked(d)) => d.push(data, &mut |part| flv.extend(part))?,
        };
        self.flv.drain(on)?;
        if ended {
            return Err(HttpError::BodyEnded);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "httpflv_tests.rs"]
mod tests;
