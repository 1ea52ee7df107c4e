//! The client side of an RTMP connection after the handshake: what an edge
//! pull (player role), an upstream push (publisher role) and the load
//! harness speak to an origin.
//!
//! Same shape as the server session: queue commands with the methods below,
//! then per read from the socket call [`ClientSession::received`] with the
//! byte count, [`ClientSession::handle_input`] with the buffer, drain
//! [`ClientSession::poll_event`], and send what
//! [`ClientSession::take_output`] returns.
//!
//! The order real encoders use (OBS, ffmpeg): `connect`, wait for
//! `Connected`; `prepare_publish` + `create_stream`, wait for
//! `StreamCreated`; `publish`, wait for `PublishStarted`; then media.
//! A player: `connect`, `create_stream`, `play`, wait for `PlayStarted`.
//! [`PublishFlow`] and [`PlayFlow`] walk those orders for the caller.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::protocol::amf::{Amf0Value, AmfLimits};
use crate::protocol::chunk::{encode_message, ChunkLimits, RawMessage};
use crate::protocol::message::{csid, type_id, Command, Message, UserControl};

mod play;
mod publish;

pub use play::{PlayFlow, PlayStage, PlayStep};
pub use publish::{set_data_frame, PublishFlow, PublishStage, PublishStep};

use super::core::{Inbound, SessionCore};
use super::data::first_amf_string;
use super::server::{MediaKind, SessionError};

/// Calls awaiting a `_result`/`_error` we act on; a server that never
/// answers cannot make this list grow past the limit.
const MAX_PENDING_CALLS: usize = 32;

/// How long a player asks the server to buffer (SetBufferLength), in ms.
const PLAY_BUFFER_MS: u32 = 3000;

/// Settings of one client connection; all explicit.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Application as sent in `connect`, possibly with `?query` (tokens).
    pub app: String,
    pub tc_url: String,
    /// e.g. `FMLE/3.0 (compatible; cascade)`; some origins log or check it.
    pub flash_ver: String,
    /// Our outgoing chunk size, announced with Set Chunk Size after `connect`.
    pub chunk_size: u32,
    /// The window we ask the server to acknowledge at (sent in answer to
    /// its Set Peer Bandwidth).
    pub window_ack_size: u32,
    /// Enhanced RTMP codecs we accept; advertised in `connect` when non-empty.
    pub four_cc_list: Vec<String>,
    pub chunk_limits: ChunkLimits,
    pub amf_limits: AmfLimits,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            app: String::new(),
            tc_url: String::new(),
            flash_ver: "FMLE/3.0 (compatible; cascade)".into(),
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            four_cc_list: Vec::new(),
            chunk_limits: ChunkLimits::default(),
            amf_limits: AmfLimits::default(),
        }
    }
}

impl ClientConfig {
    /// Defaults with the given app and tcUrl.
    pub fn new(app: &str, tc_url: &str) -> Self {
        ClientConfig {
            app: app.to_string(),
            tc_url: tc_url.to_string(),
            ..ClientConfig::default()
        }
    }
}

/// What the server told us, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `connect` answered with `_result` (NetConnection.Connect.Success).
    Connected,
    ConnectRejected {
        code: String,
        description: String,
    },
    /// The `_result` of a [`ClientSession::create_stream`].
    StreamCreated {
        stream_id: u32,
    },
    /// `onStatus NetStream.Publish.Start`: media may flow now.
    PublishStarted {
        stream_id: u32,
    },
    /// `onStatus NetStream.Play.Start`.
    PlayStarted {
        stream_id: u32,
    },
    /// Every other `onStatus` (BadName, StreamNotFound, UnpublishNotify,
    /// Play.Stop, …) and `_error` replies to calls other than `connect`
    /// (stream id 0 for NetConnection-level ones).
    Status {
        stream_id: u32,
        level: String,
        code: String,
        description: String,
    },
    /// Audio, video or data as received; aggregates are split and
    /// `@setDataFrame` is stripped so metadata starts with "onMetaData".
    Media {
        stream_id: u32,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
    },
    /// User control StreamEOF.
    StreamEof {
        stream_id: u32,
    },
    /// Enhanced RTMP v2: the server asks us to reconnect (optionally elsewhere).
    ReconnectRequest {
        tc_url: Option<String>,
    },
}

/// Which of our calls a transaction id belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Connect,
    CreateStream,
}

pub struct ClientSession {
    config: ClientConfig,
    /// Chunks, byte accounting, output and events, shared with the server.
    core: SessionCore<ClientEvent>,
    next_txn: u32,
    pending: VecDeque<(f64, Call)>,
    /// Streams we publish on, with the name (for FCUnpublish).
    publishing: Vec<(u32, String)>,
    /// Last Window Ack Size we sent, so Set Peer Bandwidth is answered once per value.
    announced_window: Option<u32>,
}

impl ClientSession {
    pub fn new(config: ClientConfig) -> Self {
        ClientSession {
            // No acknowledgements until the server announces its window.
            core: SessionCore::new(config.chunk_limits.clone(), 0),
            config,
            next_txn: 1,
            pending: VecDeque::new(),
            publishing: Vec::new(),
            announced_window: None,
        }
    }

    /// The chunk size our output currently uses.
    pub fn out_chunk_size(&self) -> u32 {
        self.core.out_chunk_size()
    }

    /// Queues `connect` (transaction 1 on a fresh session) followed by our
    /// Set Chunk Size (unless it is the default 128). Call right after the
    /// handshake completes.
    pub fn connect(&mut self) {
        let c = &self.config;
        let mut props = vec![
            ("app", Amf0Value::String(c.app.clone())),
            ("type", Amf0Value::String("nonprivate".into())),
            ("flashVer", Amf0Value::String(c.flash_ver.clone())),
            ("tcUrl", Amf0Value::String(c.tc_url.clone())),
            ("fpad", Amf0Value::Boolean(false)),
            ("capabilities", Amf0Value::Number(15.0)),
            ("audioCodecs", Amf0Value::Number(4071.0)),
            ("videoCodecs", Amf0Value::Number(252.0)),
            ("videoFunction", Amf0Value::Number(1.0)),
            ("objectEncoding", Amf0Value::Number(0.0)),
        ];
        if !c.four_cc_list.is_empty() {
            let list = c
                .four_cc_list
                .iter()
                .map(|s| Amf0Value::String(s.clone()))
                .collect();
            props.push(("fourCcList", Amf0Value::StrictArray(list)));
        }
        let txn = self.track(Call::Connect);
        let values = [
            Amf0Value::String("connect".into()),
            Amf0Value::Number(txn),
            Amf0Value::object(props),
        ];
        self.core.command(0, &values);
        // Announcing the protocol default would change nothing.
        let size = self.config.chunk_size;
        if size != self.out_chunk_size() {
            self.set_chunk_size(size);
        }
    }

    /// Queues `createStream`; the answer arrives as `StreamCreated`.
    pub fn create_stream(&mut self) {
        let txn = self.track(Call::CreateStream);
        self.send_call(0, "createStream", txn, &[]);
    }

    /// `releaseStream` and `FCPublish`, which encoders send before
    /// `createStream`; old origins want them, nobody waits for the reply.
    pub fn prepare_publish(&mut self, name: &str) {
        let arg = [Amf0Value::String(name.into())];
        let txn = self.untracked_txn();
        self.send_call(0, "releaseStream", txn, &arg);
        let txn = self.untracked_txn();
        self.send_call(0, "FCPublish", txn, &arg);
    }

    /// `publish(name, "live")` on `stream_id`; wait for `PublishStarted`
    /// before sending media.
    pub fn publish(&mut self, stream_id: u32, name: &str) {
        let txn = self.untracked_txn();
        let args = [
            Amf0Value::String(name.into()),
            Amf0Value::String("live".into()),
        ];
        self.send_call(stream_id, "publish", txn, &args);
        match self.publishing.iter_mut().find(|(id, _)| *id == stream_id) {
            Some(entry) => entry.1 = name.to_string(),
            None => self.publishing.push((stream_id, name.to_string())),
        }
    }

    /// `play(name, -2)` (live, fall back to recorded) plus SetBufferLength.
    pub fn play(&mut self, stream_id: u32, name: &str) {
        let txn = self.untracked_txn();
        let args = [Amf0Value::String(name.into()), Amf0Value::Number(-2.0)];
        self.send_call(stream_id, "play", txn, &args);
        let buffer = UserControl::SetBufferLength {
            stream_id,
            millis: PLAY_BUFFER_MS,
        };
        self.core.writer.user_control(buffer, &mut self.core.out);
    }

    /// Serializes one media message. A data payload starting with the AMF
    /// string "onMetaData" goes out as `@setDataFrame("onMetaData", …)`,
    /// which is what origins store and forward to their players.
    pub fn send_media(&mut self, stream_id: u32, kind: MediaKind, timestamp: u32, payload: &[u8]) {
        let (size, out) = (self.core.out_chunk_size(), &mut self.core.out);
        let (cs, t) = match kind {
            MediaKind::Audio => (csid::AUDIO, type_id::AUDIO),
            MediaKind::Video => (csid::VIDEO, type_id::VIDEO),
            MediaKind::Metadata | MediaKind::Data => (csid::DATA, type_id::DATA_AMF0),
        };
        if t == type_id::DATA_AMF0 && matches!(first_amf_string(payload), Some(("onMetaData", _))) {
            let body = set_data_frame(payload);
            encode_message(cs, timestamp, t, stream_id, &body, size, out);
        } else {
            encode_message(cs, timestamp, t, stream_id, payload, size, out);
        }
    }

    /// Ends a stream: `FCUnpublish` when we publish on it, then `deleteStream`.
    pub fn delete_stream(&mut self, stream_id: u32) {
        if let Some(pos) = self.publishing.iter().position(|(id, _)| *id == stream_id) {
            let (_, name) = self.publishing.swap_remove(pos);
            let txn = self.untracked_txn();
            self.send_call(0, "FCUnpublish", txn, &[Amf0Value::String(name)]);
        }
        let txn = self.untracked_txn();
        self.send_call(
            0,
            "deleteStream",
            txn,
            &[Amf0Value::Number(f64::from(stream_id))],
        );
    }

    /// Counts bytes read from the server and acknowledges each full window
    /// it announced. The sequence number is the byte count modulo 2^32.
    pub fn received(&mut self, n: usize) {
        self.core.received(n);
    }

    /// Decodes and applies every complete message in `buf`; an incomplete
    /// tail stays. After a [`SessionError::Message`] (a message that does
    /// not parse) the session is intact and may be called again: the bad
    /// message was consumed.
    pub fn handle_input(&mut self, buf: &mut BytesMut) -> Result<(), SessionError> {
        while let Some(raw) = self.decode(buf)? {
            self.handle_message(raw)?;
        }
        Ok(())
    }

    /// One complete message from `buf` without acting on it, for callers
    /// that look at what the server sent; hand it to
    /// [`ClientSession::handle_message`] next. Chunk-level control (chunk
    /// size, abort) is applied here.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RawMessage>, SessionError> {
        Ok(self.core.decode(buf)?)
    }

    /// Applies one message, from [`ClientSession::decode`] or from a
    /// caller's own chunk reader (which then applies chunk size and abort
    /// itself).
    pub fn handle_message(&mut self, raw: RawMessage) -> Result<(), SessionError> {
        let sid = raw.stream_id;
        match self.core.inbound(&raw, &self.config.amf_limits)? {
            Inbound::Media(pieces) => {
                for p in pieces {
                    self.core.push_event(ClientEvent::Media {
                        stream_id: sid,
                        kind: p.kind,
                        timestamp: p.timestamp,
                        payload: p.payload,
                    });
                }
            }
            Inbound::Command(c) => self.on_command(sid, &c),
            Inbound::Control(Message::SetPeerBandwidth { .. }) => {
                let ours = self.config.window_ack_size;
                if self.announced_window != Some(ours) {
                    self.announced_window = Some(ours);
                    self.core.writer.window_ack_size(ours, &mut self.core.out);
                }
            }
            Inbound::Control(Message::UserControl(UserControl::StreamEof(id))) => {
                self.core
                    .push_event(ClientEvent::StreamEof { stream_id: id });
            }
            Inbound::Control(_) | Inbound::Done => {}
        }
        Ok(())
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.core.poll_event()
    }

    /// Bytes to send to the server, if any.
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.core.take_output()
    }

    /// Sends Set Chunk Size and chunks everything after it at `size`
    /// (clamped to 1..2^31-1).
    pub fn set_chunk_size(&mut self, size: u32) {
        self.core.writer.set_chunk_size(size, &mut self.core.out);
    }

    /// Any command `name(args…)` on `stream_id`, the way Flash's
    /// `NetConnection.call` sends it (`[name, transaction, null, args…]`).
    /// Its reply is not tracked: a `_result` is ignored and an `_error`
    /// arrives as a `Status` event. Returns the transaction id.
    pub fn call(&mut self, stream_id: u32, name: &str, args: &[Amf0Value]) -> f64 {
        let txn = self.untracked_txn();
        self.send_call(stream_id, name, txn, args);
        txn
    }

    fn untracked_txn(&mut self) -> f64 {
        let txn = self.next_txn;
        self.next_txn = self.next_txn.wrapping_add(1).max(1);
        f64::from(txn)
    }

    fn track(&mut self, call: Call) -> f64 {
        let txn = self.untracked_txn();
        if self.pending.len() >= MAX_PENDING_CALLS {
            self.pending.pop_front();
        }
        self.pending.push_back((txn, call));
        txn
    }

    fn send_call(&mut self, stream_id: u32, name: &str, txn: f64, args: &[Amf0Value]) {
        let mut values = Vec::with_capacity(3 + args.len());
        values.push(Amf0Value::String(name.into()));
        values.push(Amf0Value::Number(txn));
        values.push(Amf0Value::Null);
        values.extend_from_slice(args);
        self.core.command(stream_id, &values);
    }

    fn take_pending(&mut self, txn: f64) -> Option<Call> {
        let pos = self.pending.iter().position(|(t, _)| *t == txn)?;
        self.pending.remove(pos).map(|(_, call)| call)
    }

    fn on_command(&mut self, sid: u32, c: &Command) {
        match c.name.as_str() {
            "_result" => match self.take_pending(c.transaction_id) {
                Some(Call::Connect) => self.connect_result(c),
                Some(Call::CreateStream) => self.stream_created(c),
                None => {}
            },
            "_error" => {
                let (level, code, description) = status_fields(c);
                let code = code.unwrap_or_else(|| "NetConnection.Call.Failed".into());
                match self.take_pending(c.transaction_id) {
                    Some(Call::Connect) => {
                        self.core
                            .push_event(ClientEvent::ConnectRejected { code, description });
                    }
                    _ => self.core.push_event(ClientEvent::Status {
                        stream_id: sid,
                        level: level.unwrap_or_else(|| "error".into()),
                        code,
                        description,
                    }),
                }
            }
            "onStatus" => self.on_status(sid, c),
            // onBWDone, onFCPublish, _checkbw and the like need no answer.
            _ => {}
        }
    }

    fn connect_result(&mut self, c: &Command) {
        let (level, code, description) = status_fields(c);
        // A `_result` is success unless it says otherwise: some origins omit
        // the info object entirely.
        let failed = level.as_deref() == Some("error")
            || code
                .as_deref()
                .is_some_and(|code| code != "NetConnection.Connect.Success");
        if failed {
            self.core.push_event(ClientEvent::ConnectRejected {
                code: code.unwrap_or_else(|| "NetConnection.Connect.Rejected".into()),
                description,
            });
        } else {
            self.core.push_event(ClientEvent::Connected);
        }
    }

    fn stream_created(&mut self, c: &Command) {
        let id = c.args.first().and_then(|v| v.as_f64()).unwrap_or(-1.0);
        // Reject 0, negatives, fractions and NaN rather than truncate them.
        if id >= 1.0 && id <= f64::from(u32::MAX) && id.fract() == 0.0 {
            self.core.push_event(ClientEvent::StreamCreated {
                stream_id: id as u32,
            });
        } else {
            self.core.push_event(ClientEvent::Status {
                stream_id: 0,
                level: "error".into(),
                code: "NetConnection.Call.Failed".into(),
                description: format!("createStream returned an unusable stream id {id}"),
            });
        }
    }

    fn on_status(&mut self, sid: u32, c: &Command) {
        let (level, code, description) = status_fields(c);
        let code = code.unwrap_or_default();
        let event = match code.as_str() {
            "NetStream.Publish.Start" => ClientEvent::PublishStarted { stream_id: sid },
            "NetStream.Play.Start" => ClientEvent::PlayStarted { stream_id: sid },
            "NetConnection.Connect.ReconnectRequest" => ClientEvent::ReconnectRequest {
                tc_url: info_object(c)
                    .and_then(|i| i.get("tcUrl"))
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            },
            _ => ClientEvent::Status {
                stream_id: sid,
                level: level.unwrap_or_else(|| "status".into()),
                code,
                description,
            },
        };
        self.core.push_event(event);
    }
}

/// The info object of a reply: normally the first argument after the
/// command object; a few servers put it in the command object's place.
fn info_object(c: &Command) -> Option<&Amf0Value> {
    c.args
        .iter()
        .find(|v| v.properties().is_some())
        .or_else(|| c.object.properties().map(|_| &c.object))
}

/// `level`, `code` and `description` of a reply's info object, if present.
fn status_fields(c: &Command) -> (Option<String>, Option<String>, String) {
    let info = info_object(c);
    let field = |k: &str| {
        info.and_then(|i| i.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    (
        field("level"),
        field("code"),
        field("description").unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests;
