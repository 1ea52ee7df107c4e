//! The harness's RTMP client: URL parsing, the handshake, cascade's own
//! client session (`cascade::protocol::session`) walked by its play or
//! publish flow, and the monoio glue that drives a publisher. Media
//! messages are handed to the caller untouched.

use std::io;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use cascade::protocol::chunk::RawMessage;
use cascade::protocol::handshake::{ClientHandshake, HandshakeError, HandshakeStatus};
use cascade::protocol::message::type_id;
use cascade::protocol::session::{
    ClientConfig, ClientEvent, ClientSession, MediaKind, PlayFlow, PlayStep, PublishFlow,
    PublishStep, SessionError,
};

/// Chunk size the publisher announces (what OBS uses).
pub const PUBLISH_CHUNK_SIZE: u32 = 4096;

/// `rtmp://host[:port]/app[/more]/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    pub host: String,
    pub port: u16,
    pub app: String,
    pub name: String,
}

impl RtmpUrl {
    pub fn parse(s: &str) -> Result<RtmpUrl, String> {
        let rest = s
            .strip_prefix("rtmp://")
            .ok_or_else(|| format!("{s}: not an rtmp:// URL"))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{s}: no app/name path"))?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|e| format!("{s}: port: {e}"))?),
            None => (authority, 1935),
        };
        let (app, name) = path
            .rsplit_once('/')
            .ok_or_else(|| format!("{s}: need /app/name"))?;
        if host.is_empty() || app.is_empty() || name.is_empty() {
            return Err(format!("{s}: empty host, app or stream name"));
        }
        Ok(RtmpUrl {
            host: host.to_string(),
            port,
            app: app.to_string(),
            name: name.to_string(),
        })
    }

    /// The same app and name on another server (`host:port`).
    pub fn with_authority(&self, authority: &str) -> Result<RtmpUrl, String> {
        RtmpUrl::parse(&format!("rtmp://{authority}/{}/{}", self.app, self.name))
    }

    pub fn tc_url(&self) -> String {
        format!("rtmp://{}:{}/{}", self.host, self.port, self.app)
    }

    pub fn socket_addr(&self) -> io::Result<SocketAddr> {
        use std::net::ToSocketAddrs;
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host has no address"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Play,
    Publish,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("io: {0}")]
    Io(#[from] io::Error),
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("session: {0}")]
    Session(#[from] SessionError),
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("ended by server: {0}")]
    Ended(String),
    #[error("connection closed by server")]
    Closed,
    #[error("chunk stream: {0}")]
    Skim(#[from] crate::skim::SkimError),
    /// HTTP-FLV and WebSocket-FLV players' failures.
    #[error("{0}")]
    Http(#[from] crate::httpflv::HttpError),
}

impl ClientError {
    /// A short stable label for counting disconnects by reason.
    pub fn reason(&self) -> String {
        match self {
            ClientError::Io(e) => format!("io:{:?}", e.kind()),
            ClientError::Handshake(_) => "handshake".into(),
            ClientError::Session(_) | ClientError::Skim(_) => "chunk-stream".into(),
            ClientError::Rejected(c) => format!("rejected:{c}"),
            ClientError::Ended(c) => format!("ended:{c}"),
            ClientError::Closed => "closed".into(),
            ClientError::Http(e) => e.reason(),
        }
    }
}

/// Which of the protocol's flows walks the session.
enum Flow {
    /// Until the handshake is done (the flow's start queues `connect`).
    Handshaking(ClientHandshake),
    Play(PlayFlow),
    Publish(PublishFlow),
}

/// One connection's protocol state: the handshake, then cascade's own
/// client session walked by its play or publish flow. Bytes in, media to
/// the caller, bytes out in [`ClientProto::out`].
pub struct ClientProto {
    role: Role,
    name: String,
    flow: Flow,
    session: ClientSession,
    /// Bytes to send to the server: the handshake's, then the session's.
    pub out: BytesMut,
    /// Publisher: Publish.Start received. Player: play sent.
    active: bool,
    stream_id: u32,
}

impl ClientProto {
    pub fn new(url: RtmpUrl, role: Role, complex_handshake: bool) -> ClientProto {
        let mut hs = ClientHandshake::new(complex_handshake);
        let mut out = BytesMut::with_capacity(4096);
        hs.start(&mut out);
        let mut config = ClientConfig::new(&url.app, &url.tc_url());
        config.flash_ver = "FMLE/3.0 (compatible; cascade-loadtest)".into();
        // A player sends nothing worth a larger chunk; a publisher uses
        // what OBS uses.
        config.chunk_size = match role {
            Role::Play => 128,
            Role::Publish => PUBLISH_CHUNK_SIZE,
        };
        ClientProto {
            role,
            name: url.name,
            flow: Flow::Handshaking(hs),
            session: ClientSession::new(config),
            out,
            active: false,
            stream_id: 0,
        }
    }

    /// Publisher: Publish.Start received. Player: play sent.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Consumes what it can of `rbuf` (`new_bytes` of it just arrived, for
    /// acknowledgements). Media and data messages go to `on_media`.
    pub fn feed(
        &mut self,
        rbuf: &mut BytesMut,
        new_bytes: usize,
        on_media: &mut impl FnMut(&RawMessage),
    ) -> Result<(), ClientError> {
        self.count_received(new_bytes);
        if !self.feed_handshake(rbuf)? {
            return Ok(());
        }
        while let Some(raw) = self.session.decode(rbuf)? {
            if is_media(raw.type_id) {
                on_media(&raw);
            } else {
                self.on_message(raw)?;
            }
        }
        Ok(())
    }

    /// Runs the handshake on `rbuf`; true once it is done (the connect is
    /// then queued and what follows in `rbuf` is chunk stream).
    pub fn feed_handshake(&mut self, rbuf: &mut BytesMut) -> Result<bool, ClientError> {
        if let Flow::Handshaking(hs) = &mut self.flow {
            if hs.feed(rbuf, &mut self.out)? == HandshakeStatus::InProgress {
                return Ok(false);
            }
            self.flow = match self.role {
                Role::Play => Flow::Play(PlayFlow::start(&mut self.session, &self.name)),
                Role::Publish => Flow::Publish(PublishFlow::start(&mut self.session, &self.name)),
            };
            self.take_session_output();
        }
        Ok(true)
    }

    pub fn handshake_done(&self) -> bool {
        !matches!(self.flow, Flow::Handshaking(_))
    }

    /// Counts received bytes; the session acknowledges each window.
    pub fn count_received(&mut self, n: usize) {
        self.session.received(n);
        self.take_session_output();
    }

    /// Serializes one media message for the server on our stream.
    pub fn send_media(&mut self, kind: MediaKind, timestamp: u32, payload: &[u8]) {
        let sid = self.stream_id;
        self.session.send_media(sid, kind, timestamp, payload);
        self.take_session_output();
    }

    /// Handles a control or command message (anything but media and data).
    pub fn on_message(&mut self, raw: RawMessage) -> Result<(), ClientError> {
        // A message that does not parse is skipped, not fatal: the harness
        // measures servers, it does not police them.
        match self.session.handle_message(raw) {
            Ok(()) | Err(SessionError::Message(_)) => {}
            Err(e) => return Err(e.into()),
        }
        while let Some(ev) = self.session.poll_event() {
            self.on_event(ev)?;
        }
        self.take_session_output();
        Ok(())
    }

    /// Walks the flow one event on; an error when the server refused or
    /// ended what we asked for.
    fn on_event(&mut self, ev: ClientEvent) -> Result<(), ClientError> {
        let active = match &mut self.flow {
            Flow::Handshaking(_) => None,
            Flow::Play(flow) => match flow.on_event(&mut self.session, ev) {
                PlayStep::Requested { stream_id } => Some(stream_id),
                PlayStep::ConnectRefused { code, .. } | PlayStep::Refused { code, .. } => {
                    return Err(ClientError::Rejected(code))
                }
                PlayStep::Ended { code, .. } => return Err(ClientError::Ended(code)),
                _ => None,
            },
            Flow::Publish(flow) => match flow.on_event(&mut self.session, ev) {
                PublishStep::Live { stream_id } => Some(stream_id),
                PublishStep::ConnectRefused { code, .. } | PublishStep::Refused { code, .. } => {
                    return Err(ClientError::Rejected(code))
                }
                PublishStep::Closed { code, .. } => return Err(ClientError::Ended(code)),
                PublishStep::Pending => None,
            },
        };
        if let Some(stream_id) = active {
            self.stream_id = stream_id;
            self.active = true;
        }
        Ok(())
    }

    fn take_session_output(&mut self) {
        if let Some(b) = self.session.take_output() {
            self.out.extend_from_slice(&b);
        }
    }
}

/// Message types handed to the caller rather than handled here.
pub fn is_media(t: u8) -> bool {
    matches!(
        t,
        type_id::VIDEO
            | type_id::AUDIO
            | type_id::DATA_AMF0
            | type_id::DATA_AMF3
            | type_id::AGGREGATE
    )
}

/// Reads once into the spare capacity of `buf` (a plain read of a BytesMut
/// would overwrite its unread front).
pub async fn read_some<R: AsyncReadRent>(
    rd: &mut R,
    mut buf: BytesMut,
    chunk: usize,
) -> (io::Result<usize>, BytesMut) {
    if buf.capacity() - buf.len() < chunk / 4 {
        buf.reserve(chunk);
    }
    let len = buf.len();
    let (res, slice) = rd.read(buf.slice_mut(len..)).await;
    (res, slice.into_inner())
}

/// Sends whatever the protocol queued.
pub async fn flush(stream: &mut TcpStream, proto: &mut ClientProto) -> io::Result<()> {
    if proto.out.is_empty() {
        return Ok(());
    }
    let bytes: Bytes = proto.out.split().freeze();
    let (res, _) = stream.write_all(bytes).await;
    res.map(|_| ())
}

/// Connects and runs the exchange until the protocol is active; returns the
/// socket and any bytes already read past that point.
pub async fn establish(
    url: &RtmpUrl,
    role: Role,
    complex: bool,
    read_chunk: usize,
    on_media: &mut impl FnMut(&RawMessage),
) -> Result<(TcpStream, ClientProto, BytesMut), ClientError> {
    let addr = url.socket_addr()?;
    let mut stream = TcpStream::connect_addr(addr).await?;
    let _ = stream.set_nodelay(true);
    let mut proto = ClientProto::new(url.clone(), role, complex);
    let mut rbuf = BytesMut::with_capacity(read_chunk);
    flush(&mut stream, &mut proto).await?;
    while !proto.is_active() {
        let (res, b) = read_some(&mut stream, rbuf, read_chunk).await;
        rbuf = b;
        let n = res?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        proto.feed(&mut rbuf, n, on_media)?;
        flush(&mut stream, &mut proto).await?;
    }
    Ok((stream, proto, rbuf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        let u = RtmpUrl::parse("rtmp://127.0.0.1:1936/live/test").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.app.as_str(), u.name.as_str()),
            ("127.0.0.1", 1936, "live", "test")
        );
        assert_eq!(u.tc_url(), "rtmp://127.0.0.1:1936/live");
        let u = RtmpUrl::parse("rtmp://example.org/app/inst/key?sign=x").unwrap();
        assert_eq!(
            (u.port, u.app.as_str(), u.name.as_str()),
            (1935, "app/inst", "key?sign=x")
        );
        assert!(RtmpUrl::parse("http://x/a/b").is_err());
        assert!(RtmpUrl::parse("rtmp://x/a").is_err());
    }
}
