//! Server role: C0+C1 in, S0+S1+S2 out, C2 in.

use bytes::{Buf, BufMut, BytesMut};

use super::digest::{self, Packet, FMS_KEY, FMS_PARTIAL, FP_KEY, FP_PARTIAL, PACKET_LEN};
use super::{
    split_version, Collector, HandshakeError, HandshakeKind, HandshakeStatus, RTMP_VERSION,
};

/// Version bytes of a complex S1. Any non-zero value tells clients to check
/// the digest; this one matches what FMS-era servers announce.
const SERVER_VERSION: [u8; 4] = [0x0d, 0x0e, 0x0a, 0x0d];

enum State {
    /// Collecting C0 and C1 (boxed: the struct stays small once C1 is gone).
    ReadC0C1(Box<Collector<{ 1 + PACKET_LEN }>>),
    /// S0..S2 written; skipping this many bytes of C2.
    ReadC2 {
        remaining: usize,
    },
    Done,
    Failed,
}

/// Server half of the handshake. See the module docs for what it answers.
pub struct ServerHandshake {
    state: State,
    kind: Option<HandshakeKind>,
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::ReadC0C1(_) => "ReadC0C1",
            State::ReadC2 { .. } => "ReadC2",
            State::Done => "Done",
            State::Failed => "Failed",
        };
        f.debug_struct("ServerHandshake")
            .field("state", &state)
            .field("kind", &self.kind)
            .finish()
    }
}

impl ServerHandshake {
    pub fn new() -> Self {
        Self {
            state: State::ReadC0C1(Box::new(Collector::new())),
            kind: None,
        }
    }

    /// Consumes what it can from `input` (bytes it does not need stay in
    /// `input`: they belong to the chunk stream) and appends bytes to send to
    /// `out`. Call again with more input until `Done`.
    pub fn feed(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<HandshakeStatus, HandshakeError> {
        loop {
            match &mut self.state {
                State::ReadC0C1(c) => {
                    let complete = c.fill(input);
                    // Refuse at the first byte: an HTTP request or TLS hello
                    // should not wait for 1536 more bytes to be turned away.
                    if let Some(&v) = c.filled().first() {
                        if v != RTMP_VERSION {
                            self.state = State::Failed;
                            return Err(HandshakeError::UnsupportedVersion(v));
                        }
                    }
                    if !complete {
                        return Ok(HandshakeStatus::InProgress);
                    }
                    let (_, c1) = split_version(&c.buf);
                    self.kind = Some(respond(&c1, out));
                    self.state = State::ReadC2 {
                        remaining: PACKET_LEN,
                    };
                }
                State::ReadC2 { remaining } => {
                    // C2 is not checked: many clients send whatever they like.
                    let take = (*remaining).min(input.len());
                    input.advance(take);
                    *remaining -= take;
                    if *remaining > 0 {
                        return Ok(HandshakeStatus::InProgress);
                    }
                    self.state = State::Done;
                }
                State::Done => return Ok(HandshakeStatus::Done),
                State::Failed => return Err(HandshakeError::Failed),
            }
        }
    }

    /// The handshake chosen, known once C1 arrived.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }
}

/// Writes S0+S1+S2 for `c1`: complex in the client's schema if its digest
/// validates, otherwise entirely simple.
fn respond(c1: &Packet, out: &mut BytesMut) -> HandshakeKind {
    let client_digest = if c1[4..8] != [0; 4] {
        digest::find_digest(c1, &FP_KEY[..FP_PARTIAL])
    } else {
        None
    };
    out.reserve(1 + 2 * PACKET_LEN);
    out.put_u8(RTMP_VERSION);
    match client_digest {
        Some((schema, d)) => {
            let (s1, _) =
                digest::new_challenge(0, SERVER_VERSION, Some((schema, &FMS_KEY[..FMS_PARTIAL])));
            out.extend_from_slice(&s1);
            out.extend_from_slice(&digest::signed_response(FMS_KEY, &d));
            HandshakeKind::Complex { schema }
        }
        None => {
            // Zero version bytes: clients then skip every digest check.
            let (s1, _) = digest::new_challenge(0, [0; 4], None);
            out.extend_from_slice(&s1);
            out.extend_from_slice(c1);
            HandshakeKind::Simple
        }
    }
}
