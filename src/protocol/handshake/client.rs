//! Client role (upstream pulls and pushes): C0+C1 out, S0+S1 in, C2 out, S2 in.

use bytes::{BufMut, BytesMut};

use super::digest::{self, Digest, Packet, FMS_KEY, FMS_PARTIAL, FP_KEY, FP_PARTIAL, PACKET_LEN};
use super::{
    split_version, Collector, HandshakeError, HandshakeKind, HandshakeStatus, RTMP_VERSION,
};

/// Version bytes of a complex C1: Flash Player 9.0.124.2, the first release
/// that required the digest handshake.
const CLIENT_VERSION: [u8; 4] = [9, 0, 124, 2];

/// Schema of our own C1 digest; ffmpeg and librtmp also use schema 0.
const CLIENT_SCHEMA: u8 = 0;

/// What a correct S2 looks like, for [`ClientHandshake::s2_verified`].
enum S2Expect {
    /// Simple answer: an echo of our C1.
    Echo(Box<Packet>),
    /// Complex answer: signed with a key derived from our C1 digest.
    Signed(Digest),
}

enum State {
    Idle,
    ReadS0S1 {
        c1: Box<Packet>,
        c1_digest: Option<Digest>,
        collector: Box<Collector<{ 1 + PACKET_LEN }>>,
    },
    ReadS2 {
        expect: S2Expect,
        collector: Box<Collector<PACKET_LEN>>,
    },
    Done,
    Failed,
}

/// Client half of the handshake.
pub struct ClientHandshake {
    complex: bool,
    state: State,
    kind: Option<HandshakeKind>,
    s2_verified: Option<bool>,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Idle => "Idle",
            State::ReadS0S1 { .. } => "ReadS0S1",
            State::ReadS2 { .. } => "ReadS2",
            State::Done => "Done",
            State::Failed => "Failed",
        };
        f.debug_struct("ClientHandshake")
            .field("complex", &self.complex)
            .field("state", &state)
            .field("kind", &self.kind)
            .finish()
    }
}

impl ClientHandshake {
    /// `complex`: send a Flash Player 9 C1 with a digest (what ffmpeg and
    /// librtmp send); otherwise a plain RTMP 1.0 C1.
    pub fn new(complex: bool) -> Self {
        Self {
            complex,
            state: State::Idle,
            kind: None,
            s2_verified: None,
        }
    }

    /// Writes C0+C1. Calling it again restarts nothing and writes nothing.
    pub fn start(&mut self, out: &mut BytesMut) {
        if !matches!(self.state, State::Idle) {
            return;
        }
        let (c1, c1_digest) = if self.complex {
            digest::new_challenge(
                0,
                CLIENT_VERSION,
                Some((CLIENT_SCHEMA, &FP_KEY[..FP_PARTIAL])),
            )
        } else {
            digest::new_challenge(0, [0; 4], None)
        };
        out.reserve(1 + PACKET_LEN);
        out.put_u8(RTMP_VERSION);
        out.extend_from_slice(&c1);
        self.state = State::ReadS0S1 {
            c1: Box::new(c1),
            c1_digest,
            collector: Box::new(Collector::new()),
        };
    }

    /// Consumes S0, S1 and S2 from `input` (bytes after S2 stay there) and
    /// writes C2 to `out` once S1 is complete.
    pub fn feed(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<HandshakeStatus, HandshakeError> {
        loop {
            match &mut self.state {
                State::Idle => return Err(HandshakeError::NotStarted),
                State::ReadS0S1 {
                    c1,
                    c1_digest,
                    collector,
                } => {
                    let complete = collector.fill(input);
                    if let Some(&v) = collector.filled().first() {
                        if v != RTMP_VERSION {
                            self.state = State::Failed;
                            return Err(HandshakeError::UnsupportedVersion(v));
                        }
                    }
                    if !complete {
                        return Ok(HandshakeStatus::InProgress);
                    }
                    let (_, s1) = split_version(&collector.buf);
                    let answer = answer_s1(&s1, *c1_digest);
                    let Some((kind, c2)) = answer else {
                        self.state = State::Failed;
                        return Err(HandshakeError::InvalidDigest);
                    };
                    out.extend_from_slice(&c2);
                    let expect = match (kind, *c1_digest) {
                        (HandshakeKind::Complex { .. }, Some(d)) => S2Expect::Signed(d),
                        _ => S2Expect::Echo(std::mem::replace(c1, Box::new([0; PACKET_LEN]))),
                    };
                    self.kind = Some(kind);
                    self.state = State::ReadS2 {
                        expect,
                        collector: Box::new(Collector::new()),
                    };
                }
                State::ReadS2 { expect, collector } => {
                    if !collector.fill(input) {
                        return Ok(HandshakeStatus::InProgress);
                    }
                    // Recorded, not enforced: servers answer S2 in many odd ways.
                    let ok = match expect {
                        S2Expect::Echo(c1) => collector.buf[..] == c1[..],
                        S2Expect::Signed(d) => digest::check_response(&collector.buf, FMS_KEY, d),
                    };
                    self.s2_verified = Some(ok);
                    self.state = State::Done;
                }
                State::Done => return Ok(HandshakeStatus::Done),
                State::Failed => return Err(HandshakeError::Failed),
            }
        }
    }

    /// The handshake the server answered with, known once S1 arrived.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    /// Whether S2 was what a well-behaved server sends (an echo of C1, or a
    /// valid signature of our digest); `None` until S2 arrived. Informational:
    /// a mismatch does not fail the handshake.
    pub fn s2_verified(&self) -> Option<bool> {
        self.s2_verified
    }
}

/// Decides how to answer S1. `None` means S1 claimed a complex handshake
/// (non-zero version) in answer to our complex C1 but its digest is invalid.
fn answer_s1(s1: &Packet, c1_digest: Option<Digest>) -> Option<(HandshakeKind, Packet)> {
    let server_complex = s1[4..8] != [0; 4];
    if c1_digest.is_none() || !server_complex {
        // Plain server (e.g. `ffmpeg -listen`) or plain client: echo S1.
        return Some((HandshakeKind::Simple, *s1));
    }
    let (schema, server_digest) = digest::find_digest(s1, &FMS_KEY[..FMS_PARTIAL])?;
    let c2 = digest::signed_response(FP_KEY, &server_digest);
    Some((HandshakeKind::Complex { schema }, c2))
}
