//! The player role of a client session, as a small state machine: what an
//! edge pull, the load harness's players and the test client walk through
//! before media arrives, and how they learn that it ended.
//!
//! `connect` → (Connected) `createStream` → (StreamCreated) `play(name)`
//! plus SetBufferLength → (NetStream.Play.Start, or the first media) playing
//! → media until UnpublishNotify, Play.Stop, Play.Complete or an error.
//! Sans-IO like the publish flow: it queues commands on the
//! [`ClientSession`] and reads its events; the caller moves bytes.

use bytes::Bytes;

use super::{ClientEvent, ClientSession};
use crate::protocol::session::MediaKind;

/// Where the play is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayStage {
    Connecting,
    CreatingStream,
    /// `play` sent on this stream; nothing played yet.
    Requested(u32),
    /// Play.Start or media arrived on this stream.
    Playing(u32),
}

/// What an event meant for the play.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayStep {
    /// Nothing to act on (chatter, or a status that changes nothing).
    Pending,
    /// `play` is queued on `stream_id`: a player's time to first frame
    /// counts from when these bytes leave.
    Requested { stream_id: u32 },
    /// `NetStream.Play.Start`.
    Started { stream_id: u32 },
    /// Audio, video, metadata or other data of the stream.
    Media {
        stream_id: u32,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
    },
    /// User control StreamEOF on our stream. Servers follow it with
    /// UnpublishNotify when the stream is gone for good, and some resume
    /// the same stream after it (a republish), so it ends nothing alone.
    Eof { stream_id: u32 },
    /// `connect` was refused.
    ConnectRefused { code: String, description: String },
    /// Nothing played: StreamNotFound, Play.Failed, an error status, a
    /// failed createStream or a reconnect request.
    Refused { code: String, description: String },
    /// It played and the server ended it: UnpublishNotify, Play.Stop,
    /// Play.Complete, an error status or a reconnect request.
    Ended { code: String, description: String },
}

/// Drives one [`ClientSession`] to a play of `name`.
#[derive(Debug)]
pub struct PlayFlow {
    name: String,
    stage: PlayStage,
}

impl PlayFlow {
    /// Queues `connect` on a fresh session (call right after the handshake).
    pub fn start(session: &mut ClientSession, name: &str) -> PlayFlow {
        session.connect();
        PlayFlow {
            name: name.to_string(),
            stage: PlayStage::Connecting,
        }
    }

    pub fn stage(&self) -> PlayStage {
        self.stage
    }

    /// The message stream id once `play` was sent.
    pub fn stream_id(&self) -> Option<u32> {
        match self.stage {
            PlayStage::Requested(id) | PlayStage::Playing(id) => Some(id),
            _ => None,
        }
    }

    fn playing(&self) -> bool {
        matches!(self.stage, PlayStage::Playing(_))
    }

    /// Applies one session event, queueing the next command if it is due.
    pub fn on_event(&mut self, session: &mut ClientSession, ev: ClientEvent) -> PlayStep {
        match (self.stage, ev) {
            (PlayStage::Connecting, ClientEvent::Connected) => {
                session.create_stream();
                self.stage = PlayStage::CreatingStream;
                PlayStep::Pending
            }
            (_, ClientEvent::ConnectRejected { code, description }) => {
                PlayStep::ConnectRefused { code, description }
            }
            (PlayStage::CreatingStream, ClientEvent::StreamCreated { stream_id }) => {
                session.play(stream_id, &self.name);
                self.stage = PlayStage::Requested(stream_id);
                PlayStep::Requested { stream_id }
            }
            (PlayStage::Requested(sid), ClientEvent::PlayStarted { stream_id })
                if sid == stream_id =>
            {
                self.stage = PlayStage::Playing(stream_id);
                PlayStep::Started { stream_id }
            }
            (
                PlayStage::Requested(sid) | PlayStage::Playing(sid),
                ClientEvent::Media {
                    stream_id,
                    kind,
                    timestamp,
                    payload,
                },
            ) => {
                // Some servers start sending without a Play.Start.
                self.stage = PlayStage::Playing(sid);
                PlayStep::Media {
                    stream_id,
                    kind,
                    timestamp,
                    payload,
                }
            }
            (
                _,
                ClientEvent::Status {
                    level,
                    code,
                    description,
                    ..
                },
            ) if level == "error" || is_play_end(&code) => self.end(code, description),
            (
                PlayStage::Requested(sid) | PlayStage::Playing(sid),
                ClientEvent::StreamEof { stream_id },
            ) if sid == stream_id => PlayStep::Eof { stream_id },
            (_, ClientEvent::ReconnectRequest { .. }) => self.end(
                "NetConnection.Connect.ReconnectRequest".into(),
                "server asked to reconnect".into(),
            ),
            _ => PlayStep::Pending,
        }
    }

    /// The server ended or refused the play, depending on whether it played.
    fn end(&self, code: String, description: String) -> PlayStep {
        if self.playing() {
            PlayStep::Ended { code, description }
        } else {
            PlayStep::Refused { code, description }
        }
    }
}

/// Status codes that end a play although servers send most of them at
/// level "status".
fn is_play_end(code: &str) -> bool {
    matches!(
        code,
        "NetStream.Play.UnpublishNotify"
            | "NetStream.Play.Stop"
            | "NetStream.Play.Complete"
            | "NetStream.Play.StreamNotFound"
            | "NetStream.Play.Failed"
            | "NetConnection.Connect.Closed"
    )
}
