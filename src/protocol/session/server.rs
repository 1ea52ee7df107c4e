//! The server side of an RTMP connection after the handshake.
//!
//! Call order, per read from the socket:
//! 1. [`ServerSession::received`] with the number of bytes read (acknowledgements),
//! 2. [`ServerSession::handle_input`] with the read buffer,
//! 3. drain [`ServerSession::poll_event`] and act on each event; a
//!    `PublishRequested` or `PlayRequested` must be answered with
//!    `accept_*`/`reject_*` before `handle_input` makes further progress,
//! 4. send what [`ServerSession::take_output`] returns.

use bytes::{Bytes, BytesMut};

use crate::protocol::amf::{Amf0Value, AmfLimits};
use crate::protocol::chunk::{Admission, ChunkError, ChunkLimits, RawMessage};
use crate::protocol::command::{ClientCommand, StreamPath};
use crate::protocol::message::{type_id, MessageError};

use super::core::{Inbound, SessionCore};
use super::data::check_metadata;
use super::status::{connect_result, on_status, status_info};

/// Settings the server session needs; all explicit, no globals.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Outgoing chunk size, announced right after `connect`.
    pub chunk_size: u32,
    pub window_ack_size: u32,
    pub peer_bandwidth: u32,
    /// Message streams one connection may create.
    pub max_streams: usize,
    pub chunk_limits: ChunkLimits,
    pub amf_limits: AmfLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            max_streams: 8,
            chunk_limits: ChunkLimits::default(),
            amf_limits: AmfLimits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("command {0:?} before connect")]
    NotConnected(String),
    #[error("too many message streams (limit {0})")]
    TooManyStreams(usize),
    #[error("second connect on one connection")]
    AlreadyConnected,
    #[error("{0} empty media messages in a row")]
    EmptyMediaFlood(u32),
}

/// Empty audio or video messages carry nothing a player can use; a few
/// happen (some encoders flush with one), a stream of them is an attack on
/// the per-message costs downstream.
pub const MAX_EMPTY_MEDIA_IN_A_ROW: u32 = 64;

/// What kind of media a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
    /// `onMetaData` (from `@setDataFrame` or sent directly), AMF0 body starting with "onMetaData".
    Metadata,
    /// Any other data message (cue points, text), forwarded as is.
    Data,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    Connected {
        app: String,
        tc_url: String,
        four_cc_list: Vec<String>,
    },
    /// Answer with [`ServerSession::accept_publish`] or [`ServerSession::reject_publish`].
    PublishRequested {
        stream_id: u32,
        path: StreamPath,
        kind: String,
    },
    /// Answer with [`ServerSession::accept_play`] or [`ServerSession::reject_play`].
    PlayRequested {
        stream_id: u32,
        path: StreamPath,
        start: f64,
        duration: f64,
        reset: bool,
    },
    Media {
        stream_id: u32,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
    },
    PublishFinished {
        stream_id: u32,
    },
    PlayFinished {
        stream_id: u32,
    },
    Paused {
        stream_id: u32,
        paused: bool,
    },
    ReceiveAudio {
        stream_id: u32,
        enabled: bool,
    },
    ReceiveVideo {
        stream_id: u32,
        enabled: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishRejection {
    /// The name is already being published.
    BadName,
    Denied,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayRejection {
    StreamNotFound,
    Denied,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum StreamState {
    Idle,
    PublishPending,
    Publishing,
    PlayPending,
    Playing,
}

pub struct ServerSession {
    config: ServerConfig,
    /// Chunks, byte accounting, output and events, shared with the client.
    pub(super) core: SessionCore<ServerEvent>,
    connected: bool,
    object_encoding: f64,
    streams: Vec<(u32, StreamState)>,
    next_stream_id: u32,
    /// A publish or play waiting for the application's decision.
    pending: Option<u32>,
    /// The app from `connect`, with any query still on it.
    app: String,
    /// Consecutive empty audio/video messages.
    empty_media: u32,
}

impl ServerSession {
    pub fn new(config: ServerConfig) -> Self {
        // Until the client announces its window, acknowledge at ours.
        let mut core = SessionCore::new(config.chunk_limits.clone(), config.window_ack_size);
        core.decoder.set_admission(Admission::PreConnect);
        ServerSession {
            core,
            config,
            connected: false,
            object_encoding: 0.0,
            streams: Vec::new(),
            next_stream_id: 1,
            pending: None,
            app: String::new(),
            empty_media: 0,
        }
    }

    /// Whether `connect` was received.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// The chunk size this session announced; media sent to this peer must use it.
    pub fn out_chunk_size(&self) -> u32 {
        self.core.out_chunk_size()
    }

    /// Counts bytes read from the peer and acknowledges each full window.
    /// The sequence number is the byte count modulo 2^32.
    pub fn received(&mut self, n: usize) {
        self.core.received(n);
    }

    /// True while a publish or play awaits the application's decision.
    pub fn awaiting_decision(&self) -> bool {
        self.pending.is_some()
    }

    /// Decodes as many messages from `buf` as possible. Stops early (leaving
    /// bytes in `buf`) while a decision is pending.
    pub fn handle_input(&mut self, buf: &mut BytesMut) -> Result<(), SessionError> {
        while self.pending.is_none() {
            let Some(raw) = self.core.decode(buf)? else {
                break;
            };
            self.handle_raw(raw)?;
        }
        Ok(())
    }

    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.core.poll_event()
    }

    /// Bytes to send to the peer, if any.
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.core.take_output()
    }

    fn handle_raw(&mut self, raw: RawMessage) -> Result<(), SessionError> {
        let sid = raw.stream_id;
        match self.core.inbound(&raw, &self.config.amf_limits)? {
            Inbound::Media(pieces) => {
                for p in pieces {
                    self.media(sid, p.kind, p.timestamp, p.payload)?;
                }
            }
            Inbound::Command(c) => {
                let cmd = ClientCommand::from_command(&c);
                self.command(sid, c.transaction_id, cmd)?;
            }
            // A client's Set Peer Bandwidth and user control events
            // (buffer length) change nothing here.
            Inbound::Control(_) | Inbound::Done => {}
        }
        Ok(())
    }

    fn state(&self, sid: u32) -> Option<&StreamState> {
        self.streams
            .iter()
            .find(|(id, _)| *id == sid)
            .map(|(_, s)| s)
    }

    pub(super) fn set_state(&mut self, sid: u32, state: StreamState) {
        match self.streams.iter_mut().find(|(id, _)| *id == sid) {
            Some(entry) => entry.1 = state,
            None => self.streams.push((sid, state)),
        }
    }

    fn media(
        &mut self,
        stream_id: u32,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
    ) -> Result<(), SessionError> {
        if payload.is_empty() && matches!(kind, MediaKind::Audio | MediaKind::Video) {
            self.empty_media += 1;
            if self.empty_media > MAX_EMPTY_MEDIA_IN_A_ROW {
                return Err(SessionError::EmptyMediaFlood(self.empty_media));
            }
            return Ok(());
        }
        self.empty_media = 0;
        if kind == MediaKind::Metadata {
            // Cached and replayed to every player: refuse a nesting or
            // item bomb here rather than hand it to their parsers.
            check_metadata(&payload, &self.config.amf_limits).map_err(|source| {
                MessageError::Amf {
                    type_id: type_id::DATA_AMF0,
                    source,
                }
            })?;
        }
        if self.state(stream_id) == Some(&StreamState::Publishing) {
            self.core.push_event(ServerEvent::Media {
                stream_id,
                kind,
                timestamp,
                payload,
            });
        }
        Ok(())
    }

    fn command(&mut self, sid: u32, txn: f64, cmd: ClientCommand) -> Result<(), SessionError> {
        if !self.connected && !matches!(cmd, ClientCommand::Connect(_)) {
            return Err(SessionError::NotConnected(format!("{cmd:?}")));
        }
        match cmd {
            ClientCommand::Connect(p) => {
                // Answering again would amplify: a connect reply is ~13x
                // the request.
                if self.connected {
                    return Err(SessionError::AlreadyConnected);
                }
                self.connected = true;
                self.core.decoder.set_admission(Admission::Connected);
                self.app = p.app.clone();
                self.object_encoding = p.object_encoding;
                let (w, out) = (&mut self.core.writer, &mut self.core.out);
                w.window_ack_size(self.config.window_ack_size, out);
                w.set_peer_bandwidth(self.config.peer_bandwidth, 2, out);
                w.set_chunk_size(self.config.chunk_size, out);
                self.core
                    .command(0, &connect_result(txn, p.object_encoding));
                self.core.push_event(ServerEvent::Connected {
                    app: p.app,
                    tc_url: p.tc_url,
                    four_cc_list: p.four_cc_list,
                });
            }
            ClientCommand::ReleaseStream { .. } => self.result(txn, Amf0Value::Undefined),
            ClientCommand::FcPublish { name } => {
                self.result(txn, Amf0Value::Undefined);
                let info = status_info("status", "NetStream.Publish.Start", &name);
                self.call(0, "onFCPublish", info);
            }
            ClientCommand::FcUnpublish { name } => {
                self.result(txn, Amf0Value::Undefined);
                let info = status_info("status", "NetStream.Unpublish.Success", &name);
                self.call(0, "onFCUnpublish", info);
                // The publishing stream ends here or at deleteStream, whichever comes first.
                if let Some(id) = self.publishing_stream() {
                    self.finish_stream(id);
                }
            }
            ClientCommand::CreateStream => {
                if self.streams.len() >= self.config.max_streams {
                    return Err(SessionError::TooManyStreams(self.config.max_streams));
                }
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.wrapping_add(1).max(1);
                self.set_state(id, StreamState::Idle);
                self.result(txn, Amf0Value::Number(f64::from(id)));
            }
            ClientCommand::DeleteStream { stream_id } => {
                self.finish_stream(stream_id);
                self.streams.retain(|(id, _)| *id != stream_id);
            }
            ClientCommand::CloseStream => self.finish_stream(sid),
            ClientCommand::Publish { name, kind } => {
                self.ensure_stream(sid)?;
                let app = self.app_for_path();
                self.set_state(sid, StreamState::PublishPending);
                self.pending = Some(sid);
                self.core.push_event(ServerEvent::PublishRequested {
                    stream_id: sid,
                    path: StreamPath::new(&app, &name),
                    kind,
                });
            }
            ClientCommand::Play {
                name,
                start,
                duration,
                reset,
            } => {
                self.ensure_stream(sid)?;
                let app = self.app_for_path();
                self.set_state(sid, StreamState::PlayPending);
                self.pending = Some(sid);
                self.core.push_event(ServerEvent::PlayRequested {
                    stream_id: sid,
                    path: StreamPath::new(&app, &name),
                    start,
                    duration,
                    reset,
                });
            }
            ClientCommand::Pause { pause, .. } => {
                let code = if pause {
                    "NetStream.Pause.Notify"
                } else {
                    "NetStream.Unpause.Notify"
                };
                self.status(
                    sid,
                    "status",
                    code,
                    if pause { "Paused" } else { "Unpaused" },
                );
                self.core.push_event(ServerEvent::Paused {
                    stream_id: sid,
                    paused: pause,
                });
            }
            ClientCommand::ReceiveAudio(enabled) => {
                self.core.push_event(ServerEvent::ReceiveAudio {
                    stream_id: sid,
                    enabled,
                })
            }
            ClientCommand::ReceiveVideo(enabled) => {
                self.core.push_event(ServerEvent::ReceiveVideo {
                    stream_id: sid,
                    enabled,
                })
            }
            ClientCommand::GetStreamLength { .. } => self.result(txn, Amf0Value::Number(0.0)),
            ClientCommand::CheckBandwidth => self.result(txn, Amf0Value::Undefined),
            ClientCommand::Result | ClientCommand::Error | ClientCommand::OnStatus { .. } => {}
            ClientCommand::Unknown { name } => {
                if txn != 0.0 {
                    let info = status_info(
                        "error",
                        "NetConnection.Call.Failed",
                        &format!("unknown command {name}"),
                    );
                    let values = [
                        Amf0Value::String("_error".into()),
                        Amf0Value::Number(txn),
                        Amf0Value::Null,
                        info,
                    ];
                    self.core.command(0, &values);
                }
            }
        }
        Ok(())
    }

    /// The app as the client gave it in `connect`; kept for routing.
    fn app_for_path(&self) -> String {
        self.app.clone()
    }

    fn ensure_stream(&mut self, sid: u32) -> Result<(), SessionError> {
        if self.state(sid).is_none() {
            // Lenient: some clients publish/play on a stream they never created.
            if self.streams.len() >= self.config.max_streams {
                return Err(SessionError::TooManyStreams(self.config.max_streams));
            }
            self.set_state(sid, StreamState::Idle);
        }
        Ok(())
    }

    fn publishing_stream(&self) -> Option<u32> {
        self.streams
            .iter()
            .find(|(_, s)| *s == StreamState::Publishing)
            .map(|(id, _)| *id)
    }

    fn finish_stream(&mut self, sid: u32) {
        match self.state(sid) {
            Some(StreamState::Publishing) => {
                self.core
                    .push_event(ServerEvent::PublishFinished { stream_id: sid });
            }
            Some(StreamState::Playing) => {
                self.core
                    .push_event(ServerEvent::PlayFinished { stream_id: sid });
            }
            _ => return,
        }
        self.set_state(sid, StreamState::Idle);
    }

    fn result(&mut self, txn: f64, value: Amf0Value) {
        let values = [
            Amf0Value::String("_result".into()),
            Amf0Value::Number(txn),
            Amf0Value::Null,
            value,
        ];
        self.core.command(0, &values);
    }

    pub(super) fn call(&mut self, sid: u32, name: &str, info: Amf0Value) {
        let values = [
            Amf0Value::String(name.into()),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            info,
        ];
        self.core.command(sid, &values);
    }

    pub(super) fn status(&mut self, sid: u32, level: &str, code: &str, description: &str) {
        self.core.command(sid, &on_status(level, code, description));
    }

    pub(super) fn clear_pending(&mut self, sid: u32) {
        if self.pending == Some(sid) {
            self.pending = None;
        }
    }
}
