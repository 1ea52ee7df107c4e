//! A small RTMP client: URL parsing, the command exchange a player or a
//! publisher needs (connect, createStream, play/publish), and the monoio
//! glue that drives it. Media messages are handed to the caller untouched.

use std::io;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use cascade::protocol::amf::{Amf0Value, AmfLimits};
use cascade::protocol::chunk::{ChunkDecoder, ChunkError, ChunkLimits, RawMessage};
use cascade::protocol::handshake::{ClientHandshake, HandshakeError, HandshakeStatus};
use cascade::protocol::message::{type_id, Command, Message, MessageWriter, UserControl};

/// Chunk size the publisher announces (what OBS uses).
pub const PUBLISH_CHUNK_SIZE: u32 = 4096;
const TID_CONNECT: f64 = 1.0;
const TID_CREATE_STREAM: f64 = 4.0;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    Connect,
    CreateStream,
    Start,
    Active,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("io: {0}")]
    Io(#[from] io::Error),
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("ended by server: {0}")]
    Ended(String),
    #[error("connection closed by server")]
    Closed,
    #[error("chunk stream: {0}")]
    Skim(#[from] crate::skim::SkimError),
}

impl ClientError {
    /// A short stable label for counting disconnects by reason.
    pub fn reason(&self) -> String {
        match self {
            ClientError::Io(e) => format!("io:{:?}", e.kind()),
            ClientError::Handshake(_) => "handshake".into(),
            ClientError::Chunk(_) | ClientError::Skim(_) => "chunk-stream".into(),
            ClientError::Rejected(c) => format!("rejected:{c}"),
            ClientError::Ended(c) => format!("ended:{c}"),
            ClientError::Closed => "closed".into(),
        }
    }
}

/// The client's protocol state: bytes in, messages and bytes out.
pub struct ClientProto {
    role: Role,
    url: RtmpUrl,
    hs: ClientHandshake,
    phase: Phase,
    dec: ChunkDecoder,
    writer: MessageWriter,
    /// Bytes to send to the server.
    pub out: BytesMut,
    stream_id: u32,
    ack_window: u32,
    received: u32,
    unacked: u32,
    amf: AmfLimits,
}

impl ClientProto {
    pub fn new(url: RtmpUrl, role: Role, complex_handshake: bool) -> ClientProto {
        let mut hs = ClientHandshake::new(complex_handshake);
        let mut out = BytesMut::with_capacity(4096);
        hs.start(&mut out);
        ClientProto {
            role,
            url,
            hs,
            phase: Phase::Handshake,
            dec: ChunkDecoder::new(ChunkLimits::default()),
            writer: MessageWriter::default(),
            out,
            stream_id: 0,
            ack_window: 0,
            received: 0,
            unacked: 0,
            amf: AmfLimits::default(),
        }
    }

    /// Publisher: Publish.Start received. Player: play sent.
    pub fn is_active(&self) -> bool {
        self.phase == Phase::Active
    }

    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    pub fn chunk_size(&self) -> u32 {
        self.writer.chunk_size()
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
        while let Some(raw) = self.dec.decode(rbuf)? {
            if is_media(raw.type_id) {
                on_media(&raw);
            } else {
                self.on_message(&raw)?;
            }
        }
        Ok(())
    }

    /// Runs the handshake on `rbuf`; true once it is done (the connect is
    /// then queued and what follows in `rbuf` is chunk stream).
    pub fn feed_handshake(&mut self, rbuf: &mut BytesMut) -> Result<bool, ClientError> {
        if self.phase == Phase::Handshake {
            if self.hs.feed(rbuf, &mut self.out)? == HandshakeStatus::InProgress {
                return Ok(false);
            }
            self.send_connect();
        }
        Ok(true)
    }

    pub fn handshake_done(&self) -> bool {
        self.phase != Phase::Handshake
    }

    /// Counts received bytes and queues an acknowledgement per window.
    pub fn count_received(&mut self, n: usize) {
        let n = n as u32;
        self.received = self.received.wrapping_add(n);
        self.unacked = self.unacked.saturating_add(n);
        if self.ack_window > 0 && self.unacked >= self.ack_window {
            self.unacked = 0;
            self.writer.acknowledgement(self.received, &mut self.out);
        }
    }

    fn send_connect(&mut self) {
        if self.role == Role::Publish {
            self.writer
                .set_chunk_size(PUBLISH_CHUNK_SIZE, &mut self.out);
        }
        let obj = Amf0Value::object([
            ("app", Amf0Value::String(self.url.app.clone())),
            (
                "flashVer",
                Amf0Value::String("FMLE/3.0 (compatible; cascade-loadtest)".into()),
            ),
            ("tcUrl", Amf0Value::String(self.url.tc_url())),
            ("fpad", Amf0Value::Boolean(false)),
            ("capabilities", Amf0Value::Number(15.0)),
            ("audioCodecs", Amf0Value::Number(4071.0)),
            ("videoCodecs", Amf0Value::Number(252.0)),
            ("videoFunction", Amf0Value::Number(1.0)),
        ]);
        let cmd = [
            Amf0Value::String("connect".into()),
            Amf0Value::Number(TID_CONNECT),
            obj,
        ];
        self.writer.command(0, &cmd, &mut self.out);
        self.phase = Phase::Connect;
    }

    fn send_create_stream(&mut self) {
        let name = Amf0Value::String(self.url.name.clone());
        if self.role == Role::Publish {
            for (cmd, tid) in [("releaseStream", 2.0), ("FCPublish", 3.0)] {
                let v = [
                    Amf0Value::String(cmd.into()),
                    Amf0Value::Number(tid),
                    Amf0Value::Null,
                    name.clone(),
                ];
                self.writer.command(0, &v, &mut self.out);
            }
        }
        let v = [
            Amf0Value::String("createStream".into()),
            Amf0Value::Number(TID_CREATE_STREAM),
            Amf0Value::Null,
        ];
        self.writer.command(0, &v, &mut self.out);
        self.phase = Phase::CreateStream;
    }

    fn send_start(&mut self) {
        let name = Amf0Value::String(self.url.name.clone());
        match self.role {
            Role::Publish => {
                let v = [
                    Amf0Value::String("publish".into()),
                    Amf0Value::Number(5.0),
                    Amf0Value::Null,
                    name,
                    Amf0Value::String("live".into()),
                ];
                self.writer.command(self.stream_id, &v, &mut self.out);
                self.phase = Phase::Start;
            }
            Role::Play => {
                let v = [
                    Amf0Value::String("play".into()),
                    Amf0Value::Number(0.0),
                    Amf0Value::Null,
                    name,
                    Amf0Value::Number(-2000.0),
                ];
                self.writer.command(self.stream_id, &v, &mut self.out);
                let buffer = UserControl::SetBufferLength {
                    stream_id: self.stream_id,
                    millis: 3000,
                };
                self.writer.user_control(buffer, &mut self.out);
                self.phase = Phase::Active;
            }
        }
    }

    /// Handles a control or command message (anything but media and data).
    pub fn on_message(&mut self, raw: &RawMessage) -> Result<(), ClientError> {
        // Unparseable control or command messages are skipped, not fatal:
        // the harness measures servers, it does not police them.
        let Ok(msg) = Message::parse(raw, &self.amf) else {
            return Ok(());
        };
        match msg {
            Message::WindowAckSize(n) => self.ack_window = n,
            Message::UserControl(UserControl::PingRequest(t)) => self
                .writer
                .user_control(UserControl::PingResponse(t), &mut self.out),
            Message::Command(c) => self.on_command(&c)?,
            _ => {}
        }
        Ok(())
    }

    fn on_command(&mut self, c: &Command) -> Result<(), ClientError> {
        match c.name.as_str() {
            "_result" if c.transaction_id == TID_CONNECT && self.phase == Phase::Connect => {
                self.send_create_stream();
            }
            "_result"
                if c.transaction_id == TID_CREATE_STREAM && self.phase == Phase::CreateStream =>
            {
                let id = c.args.first().and_then(|v| v.as_f64()).unwrap_or(1.0);
                self.stream_id = id as u32;
                self.send_start();
            }
            "_error"
                if c.transaction_id == TID_CONNECT || c.transaction_id == TID_CREATE_STREAM =>
            {
                return Err(ClientError::Rejected(
                    status_code(c).unwrap_or("_error").to_string(),
                ));
            }
            "onStatus" => {
                let code = status_code(c).unwrap_or("");
                let level = c
                    .args
                    .first()
                    .and_then(|i| i.get("level"))
                    .and_then(|v| v.as_str());
                if level == Some("error") {
                    return Err(ClientError::Rejected(code.to_string()));
                }
                match code {
                    "NetStream.Publish.Start" => self.phase = Phase::Active,
                    "NetStream.Play.Stop"
                    | "NetStream.Play.Complete"
                    | "NetStream.Play.UnpublishNotify" => {
                        return Err(ClientError::Ended(code.to_string()))
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
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

fn status_code(c: &Command) -> Option<&str> {
    c.args
        .first()
        .and_then(|i| i.get("code"))
        .and_then(|v| v.as_str())
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
