//! The publisher role of a client session, as a small state machine: what
//! an upstream forward or push walks through before media may flow.
//!
//! `connect` → (Connected) `releaseStream` + `FCPublish` + `createStream`
//! → (StreamCreated) `publish(name, "live")` → (NetStream.Publish.Start)
//! live. The same order ffmpeg and OBS use, so origins that expect it
//! (nginx-rtmp, SRS, Wowza, cascade) accept it. Sans-IO: it queues commands
//! on the [`ClientSession`] and reads its events; the caller moves bytes.

use bytes::{Bytes, BytesMut};

use super::{ClientEvent, ClientSession};
use crate::protocol::amf::{encode_amf0, Amf0Value};

/// Where the publish handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishStage {
    Connecting,
    CreatingStream,
    /// `publish` sent on this stream; waiting for Publish.Start.
    Publishing(u32),
    /// Media may flow on this message stream id.
    Live(u32),
}

/// What an event meant for the publish.
#[derive(Debug, Clone, PartialEq)]
pub enum PublishStep {
    /// Nothing to do yet (or chatter after going live).
    Pending,
    /// Publish.Start arrived: send media on `stream_id`.
    Live { stream_id: u32 },
    /// `connect` was refused.
    ConnectRefused { code: String, description: String },
    /// The publish was refused (BadName, Denied, …) or a call failed
    /// before it went live.
    Refused { code: String, description: String },
    /// After going live, the server ended our publish (an error status,
    /// StreamEOF, or a reconnect request).
    Closed { code: String, description: String },
}

/// Drives one [`ClientSession`] to a live publish of `name`.
#[derive(Debug)]
pub struct PublishFlow {
    name: String,
    stage: PublishStage,
}

impl PublishFlow {
    /// Queues `connect` on a fresh session (call right after the handshake).
    pub fn start(session: &mut ClientSession, name: &str) -> PublishFlow {
        session.connect();
        PublishFlow {
            name: name.to_string(),
            stage: PublishStage::Connecting,
        }
    }

    pub fn stage(&self) -> PublishStage {
        self.stage
    }

    /// The message stream id media goes on, once live.
    pub fn stream_id(&self) -> Option<u32> {
        match self.stage {
            PublishStage::Live(id) => Some(id),
            _ => None,
        }
    }

    /// Applies one session event, queueing the next command if it is due.
    pub fn on_event(&mut self, session: &mut ClientSession, ev: ClientEvent) -> PublishStep {
        let live = matches!(self.stage, PublishStage::Live(_));
        match (self.stage, ev) {
            (PublishStage::Connecting, ClientEvent::Connected) => {
                session.prepare_publish(&self.name);
                session.create_stream();
                self.stage = PublishStage::CreatingStream;
                PublishStep::Pending
            }
            (_, ClientEvent::ConnectRejected { code, description }) => {
                PublishStep::ConnectRefused { code, description }
            }
            (PublishStage::CreatingStream, ClientEvent::StreamCreated { stream_id }) => {
                session.publish(stream_id, &self.name);
                self.stage = PublishStage::Publishing(stream_id);
                PublishStep::Pending
            }
            (PublishStage::Publishing(sid), ClientEvent::PublishStarted { stream_id })
                if sid == stream_id =>
            {
                self.stage = PublishStage::Live(stream_id);
                PublishStep::Live { stream_id }
            }
            (
                _,
                ClientEvent::Status {
                    level,
                    code,
                    description,
                    ..
                },
            ) if level == "error" || is_publish_end(&code) => {
                if live {
                    PublishStep::Closed { code, description }
                } else {
                    PublishStep::Refused { code, description }
                }
            }
            (PublishStage::Live(sid), ClientEvent::StreamEof { stream_id }) if sid == stream_id => {
                PublishStep::Closed {
                    code: "StreamEOF".into(),
                    description: String::new(),
                }
            }
            (_, ClientEvent::ReconnectRequest { .. }) => {
                let step = |code: &str| (code.to_string(), "server asked to reconnect".into());
                let (code, description) = step("NetConnection.Connect.ReconnectRequest");
                if live {
                    PublishStep::Closed { code, description }
                } else {
                    PublishStep::Refused { code, description }
                }
            }
            _ => PublishStep::Pending,
        }
    }
}

/// Status codes that end a publish although some servers send them at
/// level "status".
fn is_publish_end(code: &str) -> bool {
    matches!(
        code,
        "NetStream.Publish.BadName"
            | "NetStream.Publish.Denied"
            | "NetStream.Publish.Rejected"
            | "NetStream.Publish.Failed"
            | "NetStream.Unpublish.Success"
            | "NetConnection.Connect.Closed"
    )
}

/// A metadata body (`onMetaData …`) as a publisher sends it:
/// `@setDataFrame("onMetaData", …)`, which origins store and replay.
pub fn set_data_frame(payload: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(payload.len() + 16);
    encode_amf0(&Amf0Value::String("@setDataFrame".into()), &mut body);
    body.extend_from_slice(payload);
    body.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::session::{
        ClientConfig, MediaKind, PublishRejection, ServerConfig, ServerEvent, ServerSession,
    };

    /// A client publishing to the real server session in memory. The
    /// server accepts unless `refuse` is set.
    struct Pair {
        client: ClientSession,
        server: ServerSession,
        flow: PublishFlow,
        refuse: bool,
        server_events: Vec<ServerEvent>,
    }

    impl Pair {
        fn new(chunk_size: u32, refuse: bool) -> Pair {
            let mut config = ClientConfig::new("live", "rtmp://origin/live");
            config.chunk_size = chunk_size;
            let mut client = ClientSession::new(config);
            let flow = PublishFlow::start(&mut client, "cam");
            Pair {
                client,
                server: ServerSession::new(ServerConfig::default()),
                flow,
                refuse,
                server_events: Vec::new(),
            }
        }

        /// Moves bytes both ways until both sides are quiet; the steps the
        /// flow reported.
        fn pump(&mut self) -> Vec<PublishStep> {
            let mut steps = Vec::new();
            for _ in 0..16 {
                let Some(out) = self.client.take_output() else {
                    break;
                };
                let mut buf = BytesMut::from(&out[..]);
                self.server.handle_input(&mut buf).unwrap();
                assert!(buf.is_empty());
                while let Some(ev) = self.server.poll_event() {
                    if let ServerEvent::PublishRequested { stream_id, .. } = &ev {
                        if self.refuse {
                            let bad = PublishRejection::BadName;
                            self.server.reject_publish(*stream_id, bad, "in use");
                        } else {
                            self.server.accept_publish(*stream_id);
                        }
                    }
                    self.server_events.push(ev);
                }
                if let Some(back) = self.server.take_output() {
                    let mut buf = BytesMut::from(&back[..]);
                    self.client.received(buf.len());
                    self.client.handle_input(&mut buf).unwrap();
                }
                while let Some(ev) = self.client.poll_event() {
                    let step = self.flow.on_event(&mut self.client, ev);
                    if step != PublishStep::Pending {
                        steps.push(step);
                    }
                }
            }
            steps
        }
    }

    #[test]
    fn walks_to_live_and_media_reaches_the_server() {
        let mut p = Pair::new(4096, false);
        let steps = p.pump();
        let Some(PublishStep::Live { stream_id }) = steps.first().cloned() else {
            panic!("not live: {steps:?}");
        };
        assert!(stream_id >= 1);
        assert_eq!(p.flow.stream_id(), Some(stream_id));
        let path = p.server_events.iter().find_map(|e| match e {
            ServerEvent::PublishRequested { path, kind, .. } => Some((path.key(), kind.clone())),
            _ => None,
        });
        assert_eq!(path, Some(("live/cam".to_string(), "live".to_string())));
        // Metadata goes out wrapped and arrives as metadata; a video
        // message larger than the chunk size survives our chunking.
        let mut meta = BytesMut::new();
        encode_amf0(&Amf0Value::String("onMetaData".into()), &mut meta);
        encode_amf0(&Amf0Value::Number(1.0), &mut meta);
        p.client
            .send_media(stream_id, MediaKind::Metadata, 0, &meta);
        let video = vec![0x17u8; 10_000];
        p.client.send_media(stream_id, MediaKind::Video, 40, &video);
        p.pump();
        let media: Vec<(MediaKind, u32, usize)> = p
            .server_events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Media {
                    kind,
                    timestamp,
                    payload,
                    ..
                } => Some((*kind, *timestamp, payload.len())),
                _ => None,
            })
            .collect();
        assert_eq!(
            media,
            vec![
                (MediaKind::Metadata, 0, meta.len()),
                (MediaKind::Video, 40, 10_000)
            ]
        );
    }

    #[test]
    fn a_refused_publish_is_reported_before_live() {
        let mut p = Pair::new(128, true);
        let steps = p.pump();
        match steps.first() {
            Some(PublishStep::Refused { code, .. }) => {
                assert_eq!(code, "NetStream.Publish.BadName")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.flow.stream_id(), None);
    }

    #[test]
    fn a_live_publish_ends_on_stream_eof_or_error() {
        let mut client = ClientSession::new(ClientConfig::new("live", "rtmp://o/live"));
        let mut flow = PublishFlow::start(&mut client, "cam");
        assert_eq!(
            flow.on_event(&mut client, ClientEvent::Connected),
            PublishStep::Pending
        );
        let created = ClientEvent::StreamCreated { stream_id: 7 };
        assert_eq!(flow.on_event(&mut client, created), PublishStep::Pending);
        assert_eq!(flow.stage(), PublishStage::Publishing(7));
        // A Publish.Start for another stream does not count.
        let other = ClientEvent::PublishStarted { stream_id: 3 };
        assert_eq!(flow.on_event(&mut client, other), PublishStep::Pending);
        let started = ClientEvent::PublishStarted { stream_id: 7 };
        assert_eq!(
            flow.on_event(&mut client, started),
            PublishStep::Live { stream_id: 7 }
        );
        let eof = ClientEvent::StreamEof { stream_id: 7 };
        assert!(matches!(
            flow.on_event(&mut client, eof),
            PublishStep::Closed { .. }
        ));
        let status = ClientEvent::Status {
            stream_id: 7,
            level: "status".into(),
            code: "NetStream.Publish.Rejected".into(),
            description: String::new(),
        };
        assert!(matches!(
            flow.on_event(&mut client, status),
            PublishStep::Closed { .. }
        ));
        let ok = ClientEvent::Status {
            stream_id: 7,
            level: "status".into(),
            code: "NetStream.Publish.Idle".into(),
            description: String::new(),
        };
        assert_eq!(flow.on_event(&mut client, ok), PublishStep::Pending);
    }

    #[test]
    fn set_data_frame_prefixes_the_marker() {
        let body = set_data_frame(b"\x02\x00\x0aonMetaData");
        assert_eq!(&body[..16], b"\x02\x00\x0d@setDataFrame");
        assert_eq!(&body[16..], b"\x02\x00\x0aonMetaData");
    }
}
