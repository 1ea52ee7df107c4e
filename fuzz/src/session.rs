//! Server session after the handshake: arbitrary client bytes in arbitrary
//! splits, every publish/play answered (accept or reject chosen by input
//! bits), and everything the server writes decoded by a fresh chunk
//! decoder and parsed as RTMP messages.

use bytes::BytesMut;
use cascade::protocol::amf::AmfLimits;
use cascade::protocol::chunk::{ChunkDecoder, ChunkLimits};
use cascade::protocol::message::Message;
use cascade::protocol::session::{
    PlayRejection, PublishRejection, ServerConfig, ServerEvent, ServerSession,
};

use super::{bit, Input};

/// Decisions per batch of input before the harness calls it a hang.
const MAX_ROUNDS: usize = 100_000;

/// Config bytes: two bytes of decision bits, cycled.
pub fn server_session(data: &[u8]) {
    let input = Input::new(data, 2);
    let mut harness = Harness {
        session: ServerSession::new(ServerConfig::default()),
        bits: input.config.clone(),
        decision: 0,
        peer: ChunkDecoder::new(ChunkLimits::default()),
        peer_buf: BytesMut::new(),
    };
    let mut buf = BytesMut::new();
    for piece in input.pieces() {
        harness.session.received(piece.len());
        buf.extend_from_slice(piece);
        let ok = harness.run(&mut buf);
        harness.check_output();
        if !ok {
            break;
        }
    }
}

struct Harness {
    session: ServerSession,
    bits: Vec<u8>,
    decision: usize,
    /// The client's view of the server's output.
    peer: ChunkDecoder,
    peer_buf: BytesMut,
}

impl Harness {
    fn next_bit(&mut self) -> bool {
        let b = bit(&self.bits, self.decision);
        self.decision += 1;
        b
    }

    /// Feeds `buf` until the session needs more input or fails; answers
    /// every request on the way. Returns false after a session error.
    fn run(&mut self, buf: &mut BytesMut) -> bool {
        for _ in 0..MAX_ROUNDS {
            let result = self.session.handle_input(buf);
            let answered = self.drain_events();
            if result.is_err() {
                return false;
            }
            if !answered {
                assert!(
                    !self.session.awaiting_decision(),
                    "decision pending without an event"
                );
                return true;
            }
        }
        panic!("session made no progress in {MAX_ROUNDS} rounds");
    }

    /// Handles all queued events; true if a publish or play was answered.
    fn drain_events(&mut self) -> bool {
        let mut answered = false;
        while let Some(event) = self.session.poll_event() {
            match event {
                ServerEvent::PublishRequested {
                    stream_id, path, ..
                } => {
                    answered = true;
                    if self.next_bit() {
                        self.session.accept_publish(stream_id);
                    } else {
                        let why = match (self.next_bit(), self.next_bit()) {
                            (false, false) => PublishRejection::BadName,
                            (false, true) => PublishRejection::Denied,
                            _ => PublishRejection::Rejected,
                        };
                        self.session.reject_publish(stream_id, why, &path.name);
                    }
                    assert!(!self.session.awaiting_decision());
                }
                ServerEvent::PlayRequested {
                    stream_id,
                    path,
                    reset,
                    ..
                } => {
                    answered = true;
                    if self.next_bit() {
                        self.session.accept_play(stream_id, reset, &path.name);
                        if self.next_bit() {
                            self.session.notify_unpublished(stream_id, &path.name);
                        }
                    } else {
                        let why = if self.next_bit() {
                            PlayRejection::StreamNotFound
                        } else {
                            PlayRejection::Denied
                        };
                        self.session.reject_play(stream_id, why, &path.name);
                    }
                    assert!(!self.session.awaiting_decision());
                }
                // As the relay does for the players of a stream that ended.
                ServerEvent::PublishFinished { stream_id } if self.next_bit() => {
                    self.session.notify_unpublished(stream_id, "gone");
                }
                _ => {}
            }
        }
        answered
    }

    /// Everything the server wrote must decode as whole, parseable messages.
    fn check_output(&mut self) {
        let Some(out) = self.session.take_output() else {
            return;
        };
        self.peer_buf.extend_from_slice(&out);
        let limits = AmfLimits::default();
        loop {
            match self.peer.decode(&mut self.peer_buf) {
                Ok(Some(raw)) => {
                    if let Err(e) = Message::parse(&raw, &limits) {
                        panic!("server sent an unparseable message {raw:?}: {e}");
                    }
                }
                Ok(None) => break,
                Err(e) => panic!("server output does not decode: {e}"),
            }
        }
        assert!(
            self.peer_buf.is_empty(),
            "server output ends inside a chunk: {} bytes left",
            self.peer_buf.len()
        );
    }
}
