//! A small blocking RTMP client for tests, built on the crate's own client
//! session (`cascade::protocol::session::ClientSession`): the session
//! decodes what arrives, acknowledges, answers pings and serializes the
//! commands, so the normal path (connect, createStream, publish, play) is
//! the one an edge pull speaks. Every message the server sends is also
//! handed to the test as it arrived, so a test can look at exactly which
//! messages a server sends and when. A few methods write bytes as the test
//! gives them (`send_raw`, `send_message`, an illegal chunk size, a second
//! `connect`): the session would never send those. Every read is bounded by
//! a deadline; nothing here retries or blocks forever.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cascade::protocol::amf::{decode_amf0_all, Amf0Value, AmfLimits};
use cascade::protocol::chunk::{encode_message, RawMessage};
use cascade::protocol::handshake::{ClientHandshake, HandshakeStatus};
use cascade::protocol::message::{csid, MessageWriter};
use cascade::protocol::session::{ClientConfig, ClientEvent, ClientSession, SessionError};

pub const TYPE_SET_CHUNK_SIZE: u8 = 1;
pub const TYPE_ACK: u8 = 3;
pub const TYPE_USER_CONTROL: u8 = 4;
pub const TYPE_WINDOW_ACK_SIZE: u8 = 5;
pub const TYPE_AUDIO: u8 = 8;
pub const TYPE_VIDEO: u8 = 9;
pub const TYPE_DATA_AMF0: u8 = 18;
pub const TYPE_COMMAND_AMF0: u8 = 20;

pub struct RtmpClient {
    sock: TcpStream,
    input: BytesMut,
    /// Made for the app named in `connect_app`; before that it only counts
    /// for the chunk size of raw writes.
    session: ClientSession,
    port: u16,
    app: String,
}

impl RtmpClient {
    /// TCP connect, plain handshake, and `connect` to `app`; waits for the
    /// server's `_result`.
    pub fn connect(port: u16, app: &str, timeout: Duration) -> Result<RtmpClient, String> {
        let client = RtmpClient::handshake_only(port, timeout)?;
        client.connect_app(app, timeout)
    }

    /// `connect` to `app` after the handshake; waits for the `_result`.
    pub fn connect_app(mut self, app: &str, timeout: Duration) -> Result<RtmpClient, String> {
        let deadline = Instant::now() + timeout;
        self.app = app.to_string();
        let tc_url = format!("rtmp://127.0.0.1:{}/{app}", self.port);
        let mut config = ClientConfig::new(app, &tc_url);
        config.flash_ver = FLASH_VER.into();
        // The protocol default, so nothing is announced: tests that write
        // raw chunks next count on the server reading them at 128.
        config.chunk_size = 128;
        self.session = ClientSession::new(config);
        self.session.connect();
        self.flush()?;
        self.wait_event(deadline, "connect", |ev| match ev {
            ClientEvent::Connected => Some(Ok(())),
            ClientEvent::ConnectRejected { code, description } => {
                Some(Err(format!("connect answered {code}: {description}")))
            }
            _ => None,
        })?;
        Ok(self)
    }

    /// The command object of our `connect`, the way ffmpeg fills it.
    pub fn connect_props(&self) -> Amf0Value {
        let app = self.app.as_str();
        let tc_url = format!("rtmp://127.0.0.1:{}/{app}", self.port);
        Amf0Value::object([
            ("app", Amf0Value::from(app)),
            ("flashVer", Amf0Value::from(FLASH_VER)),
            ("tcUrl", Amf0Value::from(tc_url.as_str())),
            ("fpad", Amf0Value::from(false)),
            ("capabilities", Amf0Value::from(15.0)),
            ("audioCodecs", Amf0Value::from(4071.0)),
            ("videoCodecs", Amf0Value::from(252.0)),
            ("videoFunction", Amf0Value::from(1.0)),
        ])
    }

    /// TCP connect and the plain handshake, nothing more: for tests that
    /// send their own (possibly broken) chunks next.
    pub fn handshake_only(port: u16, timeout: Duration) -> Result<RtmpClient, String> {
        let addr = ([127, 0, 0, 1], port).into();
        let sock = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("tcp: {e}"))?;
        RtmpClient::handshake_on(sock, timeout)
    }

    /// The plain handshake over a socket the caller connected (to set socket
    /// options that must come before `connect(2)`, such as SO_RCVBUF).
    pub fn handshake_on(sock: TcpStream, timeout: Duration) -> Result<RtmpClient, String> {
        let deadline = Instant::now() + timeout;
        let port = sock.peer_addr().map_err(|e| e.to_string())?.port();
        sock.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut client = RtmpClient {
            sock,
            input: BytesMut::with_capacity(64 * 1024),
            session: ClientSession::new(ClientConfig::default()),
            port,
            app: String::new(),
        };
        client.handshake(deadline)?;
        Ok(client)
    }

    /// Our end of the connection (the server logs it as `peer=`).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.sock.local_addr().expect("local address")
    }

    /// Writes bytes as they are, no chunking.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.write(bytes)
    }

    /// Sends Set Chunk Size `size` and, if `apply`, chunks what we send
    /// next with it (the session does both). Without `apply` the value goes
    /// out as given, even an illegal one, and nothing changes here.
    pub fn set_out_chunk_size(&mut self, size: u32, apply: bool) -> Result<(), String> {
        if apply {
            self.session.set_chunk_size(size);
            return self.flush();
        }
        self.send_message(
            csid::CONTROL,
            TYPE_SET_CHUNK_SIZE,
            0,
            0,
            &size.to_be_bytes(),
        )
    }

    /// One message as is (`type_id` and payload of the caller's choosing).
    pub fn send_message(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), String> {
        let mut out = BytesMut::new();
        let chunk = self.session.out_chunk_size();
        encode_message(
            csid, timestamp, type_id, stream_id, payload, chunk, &mut out,
        );
        self.write(&out)
    }

    /// createStream then `publish(name, "live")`; waits for
    /// NetStream.Publish.Start and returns the message stream id.
    pub fn publish(&mut self, name: &str, timeout: Duration) -> Result<u32, String> {
        let sid = self.create_stream(timeout)?;
        match self.publish_on(sid, name, timeout)? {
            code if code == "NetStream.Publish.Start" => Ok(sid),
            code => Err(format!("publish answered {code}")),
        }
    }

    /// `publish(name, "live")` on a stream id from `create_stream`; the
    /// onStatus code of the answer.
    pub fn publish_on(
        &mut self,
        sid: u32,
        name: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        self.forget_events();
        self.session.publish(sid, name);
        self.flush()?;
        self.wait_event(deadline, "publish", |ev| match ev {
            ClientEvent::PublishStarted { .. } => Some(Ok("NetStream.Publish.Start".into())),
            ClientEvent::Status { code, .. } => Some(Ok(code)),
            ClientEvent::ReconnectRequest { .. } => {
                Some(Ok("NetConnection.Connect.ReconnectRequest".into()))
            }
            _ => None,
        })
    }

    /// The socket, for tests that read or write around the client.
    pub fn sock(&self) -> &TcpStream {
        &self.sock
    }

    /// Reads and discards until the server closes the connection (EOF or
    /// reset); how long that took, or an error at the deadline.
    pub fn wait_closed(&mut self, within: Duration) -> Result<Duration, String> {
        super::hostile::wait_eof(&mut self.sock, within)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn app(&self) -> &str {
        &self.app
    }

    fn handshake(&mut self, deadline: Instant) -> Result<(), String> {
        let mut hs = ClientHandshake::new(false);
        let mut out = BytesMut::new();
        hs.start(&mut out);
        self.write(&out)?;
        loop {
            self.fill(deadline)?;
            let mut out = BytesMut::new();
            let status = hs
                .feed(&mut self.input, &mut out)
                .map_err(|e| format!("handshake: {e}"))?;
            self.write(&out)?;
            if status == HandshakeStatus::Done {
                return Ok(());
            }
        }
    }

    /// Sends an AMF0 command `[name, txn, null, args...]` on `stream_id`;
    /// returns its transaction id. Its answer is for the test to read.
    /// `connect` goes out as `[connect, txn, args...]` without the session
    /// (which connects once): a second one is a test of the server.
    pub fn command(
        &mut self,
        stream_id: u32,
        name: &str,
        args: Vec<Amf0Value>,
    ) -> Result<f64, String> {
        if name != "connect" {
            let txn = self.session.call(stream_id, name, &args);
            self.flush()?;
            return Ok(txn);
        }
        let txn = 1.0;
        let mut values = vec![Amf0Value::from(name), Amf0Value::from(txn)];
        values.extend(args);
        let mut out = BytesMut::new();
        MessageWriter::with_chunk_size(self.session.out_chunk_size())
            .command(stream_id, &values, &mut out);
        self.write(&out)?;
        Ok(txn)
    }

    /// `createStream`; returns the message stream id the server allotted.
    pub fn create_stream(&mut self, timeout: Duration) -> Result<u32, String> {
        let deadline = Instant::now() + timeout;
        self.forget_events();
        self.session.create_stream();
        self.flush()?;
        self.wait_event(deadline, "createStream", |ev| match ev {
            ClientEvent::StreamCreated { stream_id } => Some(Ok(stream_id)),
            // An `_error`, or a stream id the session refuses (0, fractions).
            ClientEvent::Status {
                stream_id: 0,
                level,
                code,
                description,
            } if level == "error" => {
                Some(Err(format!("createStream answered {code}: {description}")))
            }
            _ => None,
        })
    }

    /// `play(name)` and Set Buffer Length on `stream_id`. Returns the
    /// instant right after they were written.
    pub fn play(&mut self, stream_id: u32, name: &str) -> Result<Instant, String> {
        self.session.play(stream_id, name);
        self.flush()?;
        Ok(Instant::now())
    }

    /// Next message, or None at the deadline. The session sees it first:
    /// acknowledgements and ping answers go out, a Set Chunk Size applies.
    pub fn next_message(&mut self, deadline: Instant) -> Result<Option<RawMessage>, String> {
        let msg = self.next_raw(deadline)?;
        // A test reading messages acts on them itself.
        self.forget_events();
        Ok(msg)
    }

    /// `next_message`, leaving the session's events for `wait_event`.
    fn next_raw(&mut self, deadline: Instant) -> Result<Option<RawMessage>, String> {
        loop {
            let decoded = self
                .session
                .decode(&mut self.input)
                .map_err(|e| format!("chunk decode: {e}"))?;
            if let Some(msg) = decoded {
                match self.session.handle_message(msg.clone()) {
                    // Handed to the test as it is, which may be the point.
                    Ok(()) | Err(SessionError::Message(_)) => {}
                    Err(e) => return Err(format!("session: {e}")),
                }
                self.flush()?;
                return Ok(Some(msg));
            }
            match self.fill(deadline) {
                Ok(()) => {}
                Err(e) if e == TIMED_OUT => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until `pick` makes something of a session event; an error at
    /// the deadline.
    fn wait_event<T>(
        &mut self,
        deadline: Instant,
        what: &str,
        mut pick: impl FnMut(ClientEvent) -> Option<Result<T, String>>,
    ) -> Result<T, String> {
        loop {
            while let Some(ev) = self.session.poll_event() {
                if let Some(done) = pick(ev) {
                    return done;
                }
            }
            if self.next_raw(deadline)?.is_none() {
                return Err(format!("no answer to {what}"));
            }
        }
    }

    /// Drops events nobody waits for; the answer to a command sent next
    /// cannot be among them.
    fn forget_events(&mut self) {
        while self.session.poll_event().is_some() {}
    }

    /// Sends what the session queued.
    fn flush(&mut self) -> Result<(), String> {
        match self.session.take_output() {
            Some(out) => self.write(&out),
            None => Ok(()),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.sock
            .write_all(bytes)
            .map_err(|e| format!("write: {e}"))
    }

    /// One blocking read (bounded by `deadline`) into the input buffer.
    fn fill(&mut self, deadline: Instant) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TIMED_OUT.to_string());
        }
        self.sock
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 16 * 1024];
        match self.sock.read(&mut buf) {
            Ok(0) => Err("server closed the connection".to_string()),
            Ok(n) => {
                self.input.extend_from_slice(&buf[..n]);
                self.session.received(n);
                self.flush()
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(TIMED_OUT.to_string())
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }
}

/// The flashVer ffmpeg sends.
const FLASH_VER: &str = "LNX 9,0,124,2";
const TIMED_OUT: &str = "timed out";

/// Decodes an AMF0 command or data message; empty on malformed input.
pub fn amf0_values(msg: &RawMessage) -> Vec<Amf0Value> {
    decode_amf0_all(&msg.payload, &AmfLimits::default()).unwrap_or_default()
}

/// `onStatus` code of a command message, if it is one.
pub fn status_code(msg: &RawMessage) -> Option<String> {
    if msg.type_id != TYPE_COMMAND_AMF0 {
        return None;
    }
    let values = amf0_values(msg);
    if values.first().and_then(Amf0Value::as_str) != Some("onStatus") {
        return None;
    }
    values
        .get(3)
        .and_then(|info| info.get("code"))
        .and_then(Amf0Value::as_str)
        .map(str::to_string)
}
