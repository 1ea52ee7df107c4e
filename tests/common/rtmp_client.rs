//! A small blocking RTMP player built from the crate's own sans-IO pieces
//! (handshake, chunk codec, AMF0, FLV classification), so a test can look at
//! exactly which messages a server sends and when. Every read is bounded by
//! a deadline; nothing here retries or blocks forever.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cascade::protocol::amf::{decode_amf0_all, encode_amf0, Amf0Value, AmfLimits};
use cascade::protocol::chunk::{encode_message, ChunkDecoder, ChunkLimits, RawMessage};
use cascade::protocol::handshake::{ClientHandshake, HandshakeStatus};

pub const TYPE_SET_CHUNK_SIZE: u8 = 1;
pub const TYPE_ACK: u8 = 3;
pub const TYPE_USER_CONTROL: u8 = 4;
pub const TYPE_WINDOW_ACK_SIZE: u8 = 5;
pub const TYPE_AUDIO: u8 = 8;
pub const TYPE_VIDEO: u8 = 9;
pub const TYPE_DATA_AMF0: u8 = 18;
pub const TYPE_COMMAND_AMF0: u8 = 20;

/// Chunk streams used for what we send, the way ffmpeg picks them.
const CSID_CONTROL: u32 = 2;
const CSID_COMMAND: u32 = 3;
const CSID_PLAY: u32 = 8;

/// Our outgoing chunk size until `set_out_chunk_size`: the protocol default.
const OUT_CHUNK_SIZE: u32 = 128;

pub struct RtmpClient {
    sock: TcpStream,
    input: BytesMut,
    decoder: ChunkDecoder,
    port: u16,
    app: String,
    next_txn: f64,
    /// Bytes received, for Acknowledgement messages (wraps like the protocol).
    received: u32,
    last_ack: u32,
    ack_window: u32,
    /// Chunk size of what we send (128 until `set_out_chunk_size`).
    out_chunk: u32,
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
        let props = self.connect_props();
        let txn = self.command(0, "connect", vec![props])?;
        let reply = self.wait_result(txn, deadline)?;
        let code = reply
            .get(3)
            .and_then(|info| info.get("code"))
            .and_then(Amf0Value::as_str)
            .unwrap_or_default()
            .to_string();
        if code != "NetConnection.Connect.Success" {
            return Err(format!("connect answered {reply:?}"));
        }
        Ok(self)
    }

    /// The command object of our `connect`, the way ffmpeg fills it.
    pub fn connect_props(&self) -> Amf0Value {
        let app = self.app.as_str();
        let tc_url = format!("rtmp://127.0.0.1:{}/{app}", self.port);
        Amf0Value::object([
            ("app", Amf0Value::from(app)),
            ("flashVer", Amf0Value::from("LNX 9,0,124,2")),
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
            decoder: ChunkDecoder::new(ChunkLimits::default()),
            port,
            app: String::new(),
            next_txn: 1.0,
            received: 0,
            last_ack: 0,
            ack_window: 0,
            out_chunk: OUT_CHUNK_SIZE,
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

    /// Sends Set Chunk Size `size` (any value, even illegal ones) and, if
    /// `apply`, chunks what we send next with it.
    pub fn set_out_chunk_size(&mut self, size: u32, apply: bool) -> Result<(), String> {
        let mut out = BytesMut::new();
        encode_message(
            CSID_CONTROL,
            0,
            TYPE_SET_CHUNK_SIZE,
            0,
            &size.to_be_bytes(),
            self.out_chunk,
            &mut out,
        );
        self.write(&out)?;
        if apply {
            self.out_chunk = size;
        }
        Ok(())
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
        encode_message(
            csid,
            timestamp,
            type_id,
            stream_id,
            payload,
            self.out_chunk,
            &mut out,
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
        self.command(
            sid,
            "publish",
            vec![Amf0Value::from(name), Amf0Value::from("live")],
        )?;
        loop {
            let msg = self
                .next_message(deadline)?
                .ok_or_else(|| "no answer to publish".to_string())?;
            if let Some(code) = status_code(&msg) {
                return Ok(code);
            }
        }
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
    /// returns its transaction id.
    pub fn command(
        &mut self,
        stream_id: u32,
        name: &str,
        args: Vec<Amf0Value>,
    ) -> Result<f64, String> {
        let txn = self.next_txn;
        self.next_txn += 1.0;
        let mut values = vec![Amf0Value::from(name), Amf0Value::from(txn)];
        if name != "connect" {
            values.push(Amf0Value::Null);
        }
        values.extend(args);
        let csid = if stream_id == 0 {
            CSID_COMMAND
        } else {
            CSID_PLAY
        };
        self.send_amf0(csid, stream_id, &values)?;
        Ok(txn)
    }

    fn send_amf0(&mut self, csid: u32, stream_id: u32, values: &[Amf0Value]) -> Result<(), String> {
        let mut body = BytesMut::new();
        for v in values {
            encode_amf0(v, &mut body);
        }
        let mut out = BytesMut::new();
        encode_message(
            csid,
            0,
            TYPE_COMMAND_AMF0,
            stream_id,
            &body,
            self.out_chunk,
            &mut out,
        );
        self.write(&out)
    }

    /// `createStream`; returns the message stream id the server allotted.
    pub fn create_stream(&mut self, timeout: Duration) -> Result<u32, String> {
        let deadline = Instant::now() + timeout;
        let txn = self.command(0, "createStream", vec![])?;
        let reply = self.wait_result(txn, deadline)?;
        let id = reply
            .get(3)
            .and_then(Amf0Value::as_f64)
            .ok_or_else(|| format!("createStream answered {reply:?}"))?;
        if !(1.0..=f64::from(u32::MAX)).contains(&id) || id.fract() != 0.0 {
            return Err(format!("createStream returned stream id {id}"));
        }
        Ok(id as u32)
    }

    /// Set Buffer Length then `play(name, -2000)` on `stream_id`. Returns the
    /// instant right after `play` was written.
    pub fn play(&mut self, stream_id: u32, name: &str) -> Result<Instant, String> {
        let mut ev = Vec::with_capacity(10);
        ev.extend_from_slice(&3u16.to_be_bytes());
        ev.extend_from_slice(&stream_id.to_be_bytes());
        ev.extend_from_slice(&3000u32.to_be_bytes());
        let mut out = BytesMut::new();
        encode_message(
            CSID_CONTROL,
            0,
            TYPE_USER_CONTROL,
            0,
            &ev,
            self.out_chunk,
            &mut out,
        );
        self.write(&out)?;
        self.command(
            stream_id,
            "play",
            vec![Amf0Value::from(name), Amf0Value::from(-2000.0)],
        )?;
        Ok(Instant::now())
    }

    /// Next message, or None at the deadline. Window acknowledgement size is
    /// honoured (acks are sent) so servers never stall us.
    pub fn next_message(&mut self, deadline: Instant) -> Result<Option<RawMessage>, String> {
        loop {
            if let Some(msg) = self
                .decoder
                .decode(&mut self.input)
                .map_err(|e| format!("chunk decode: {e}"))?
            {
                if msg.type_id == TYPE_WINDOW_ACK_SIZE {
                    if let Some(b) = msg.payload.get(..4) {
                        self.ack_window = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    }
                }
                return Ok(Some(msg));
            }
            match self.fill(deadline) {
                Ok(()) => {}
                Err(e) if e == TIMED_OUT => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until the `_result` (or `_error`) for `txn`; returns its values.
    fn wait_result(&mut self, txn: f64, deadline: Instant) -> Result<Vec<Amf0Value>, String> {
        loop {
            let msg = self
                .next_message(deadline)?
                .ok_or_else(|| format!("no reply to transaction {txn}"))?;
            if msg.type_id != TYPE_COMMAND_AMF0 {
                continue;
            }
            let values = decode_amf0_all(&msg.payload, &AmfLimits::default())
                .map_err(|e| format!("bad AMF0 command: {e}"))?;
            let name = values
                .first()
                .and_then(Amf0Value::as_str)
                .unwrap_or_default();
            let id = values.get(1).and_then(Amf0Value::as_f64);
            if id == Some(txn) {
                if name == "_result" {
                    return Ok(values);
                }
                return Err(format!("transaction {txn} answered {values:?}"));
            }
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
                self.count_received(n)
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

    fn count_received(&mut self, n: usize) -> Result<(), String> {
        self.received = self.received.wrapping_add(n as u32);
        if self.ack_window > 0 && self.received.wrapping_sub(self.last_ack) >= self.ack_window {
            self.last_ack = self.received;
            let mut out = BytesMut::new();
            let seq = self.received.to_be_bytes();
            encode_message(CSID_CONTROL, 0, TYPE_ACK, 0, &seq, self.out_chunk, &mut out);
            self.write(&out)?;
        }
        Ok(())
    }
}

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
