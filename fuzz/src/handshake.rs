//! Handshake, both roles: arbitrary peer bytes in arbitrary splits, and a
//! real client against a real server with the same splits.

use bytes::BytesMut;
use cascade::protocol::handshake::{
    ClientHandshake, HandshakeError, HandshakeKind, HandshakeStatus, ServerHandshake,
    HANDSHAKE_PACKET_LEN, RTMP_VERSION,
};

use super::Input;

/// C0+C1 (or S0+S1).
const FIRST: usize = 1 + HANDSHAKE_PACKET_LEN;
/// Everything one side reads: C0+C1+C2 (or S0+S1+S2).
const TOTAL: usize = 1 + 2 * HANDSHAKE_PACKET_LEN;

/// Flags: bits 0-1 pick the mode (server fed bytes, client fed bytes, a
/// client/server pair), bit 2 asks the client for a complex handshake.
pub fn handshake(data: &[u8]) {
    let input = Input::new(data, 0);
    let complex = input.flags & 4 != 0;
    match input.flags & 3 {
        1 => client_fed(&input, complex),
        2 => pair(&input, complex),
        _ => server_fed(&input),
    }
}

fn server_fed(input: &Input<'_>) {
    let payload = input.payload;
    let mut hs = ServerHandshake::new();
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    let mut fed = 0;
    for piece in input.pieces() {
        buf.extend_from_slice(piece);
        fed += piece.len();
        match hs.feed(&mut buf, &mut out) {
            Ok(HandshakeStatus::InProgress) => {
                assert!(buf.is_empty(), "in progress with input left over");
                let expected = if fed >= FIRST { TOTAL } else { 0 };
                assert_eq!(out.len(), expected, "S0+S1+S2 length after {fed} bytes");
            }
            Ok(HandshakeStatus::Done) => {
                assert_eq!(fed - buf.len(), TOTAL, "consumed more or less than C0..C2");
                assert_eq!(
                    &buf[..],
                    &payload[TOTAL..fed],
                    "leftover is not the chunk stream"
                );
                assert_eq!(out.len(), TOTAL);
                assert_eq!(out[0], RTMP_VERSION);
                match hs.kind() {
                    Some(HandshakeKind::Simple) => {
                        assert_eq!(&out[5..9], &[0; 4], "simple S1 must have zero version");
                        assert_eq!(&out[FIRST..], &payload[1..FIRST], "S2 must echo C1");
                    }
                    Some(HandshakeKind::Complex { .. }) => {
                        assert_ne!(&out[5..9], &[0; 4], "complex S1 needs a version");
                    }
                    None => panic!("done without a kind"),
                }
                let before = buf.len();
                assert_eq!(hs.feed(&mut buf, &mut out), Ok(HandshakeStatus::Done));
                assert_eq!(buf.len(), before, "feed after done consumed bytes");
                return;
            }
            Err(e) => {
                assert_eq!(e, HandshakeError::UnsupportedVersion(payload[0]));
                assert_ne!(payload[0], RTMP_VERSION);
                assert_eq!(hs.feed(&mut buf, &mut out), Err(HandshakeError::Failed));
                return;
            }
        }
    }
}

fn client_fed(input: &Input<'_>, complex: bool) {
    let payload = input.payload;
    let mut out = BytesMut::new();
    let mut idle = ClientHandshake::new(complex);
    assert_eq!(
        idle.feed(&mut BytesMut::from(payload), &mut out),
        Err(HandshakeError::NotStarted)
    );
    let mut hs = ClientHandshake::new(complex);
    hs.start(&mut out);
    assert_eq!(out.len(), FIRST);
    assert_eq!(out[0], RTMP_VERSION);
    hs.start(&mut out);
    assert_eq!(out.len(), FIRST, "a second start wrote bytes");
    out.clear();

    let mut buf = BytesMut::new();
    let mut fed = 0;
    for piece in input.pieces() {
        buf.extend_from_slice(piece);
        fed += piece.len();
        match hs.feed(&mut buf, &mut out) {
            Ok(HandshakeStatus::InProgress) => {
                assert!(buf.is_empty(), "in progress with input left over");
                let expected = if fed >= FIRST {
                    HANDSHAKE_PACKET_LEN
                } else {
                    0
                };
                assert_eq!(out.len(), expected, "C2 length after {fed} bytes");
            }
            Ok(HandshakeStatus::Done) => {
                assert_eq!(fed - buf.len(), TOTAL);
                assert_eq!(&buf[..], &payload[TOTAL..fed]);
                assert_eq!(out.len(), HANDSHAKE_PACKET_LEN);
                assert!(hs.kind().is_some());
                assert!(hs.s2_verified().is_some());
                if hs.kind() == Some(HandshakeKind::Simple) {
                    assert_eq!(&out[..], &payload[1..FIRST], "simple C2 must echo S1");
                }
                return;
            }
            Err(HandshakeError::UnsupportedVersion(v)) => {
                assert_eq!(v, payload[0]);
                assert_ne!(v, RTMP_VERSION);
                return;
            }
            Err(HandshakeError::InvalidDigest) => {
                assert!(complex, "plain client rejected a digest");
                assert!(fed >= FIRST);
                assert_ne!(&payload[5..9], &[0; 4], "zero-version S1 must be accepted");
                assert_eq!(hs.feed(&mut buf, &mut out), Err(HandshakeError::Failed));
                return;
            }
            Err(e) => panic!("unexpected client error {e:?}"),
        }
    }
}

/// Our client against our server, every transfer cut with the input's
/// split sizes; the payload follows C2 as the first chunk-stream bytes.
fn pair(input: &Input<'_>, complex: bool) {
    let mut client = ClientHandshake::new(complex);
    let mut server = ServerHandshake::new();
    let mut to_server = BytesMut::new();
    client.start(&mut to_server);

    let mut at_server = BytesMut::new();
    let mut to_client = BytesMut::new();
    for piece in input.split(&to_server) {
        at_server.extend_from_slice(piece);
        let status = server.feed(&mut at_server, &mut to_client);
        assert_eq!(status, Ok(HandshakeStatus::InProgress));
    }
    assert_eq!(to_client.len(), TOTAL);

    let mut at_client = BytesMut::new();
    let mut c2 = BytesMut::new();
    let mut status = Ok(HandshakeStatus::InProgress);
    for piece in input.split(&to_client) {
        assert_eq!(status, Ok(HandshakeStatus::InProgress));
        at_client.extend_from_slice(piece);
        status = client.feed(&mut at_client, &mut c2);
    }
    assert_eq!(status, Ok(HandshakeStatus::Done));
    assert!(at_client.is_empty());
    assert_eq!(
        client.s2_verified(),
        Some(true),
        "server's S2 did not verify"
    );
    assert_eq!(client.kind(), server.kind());
    let expected = if complex {
        HandshakeKind::Complex { schema: 0 }
    } else {
        HandshakeKind::Simple
    };
    assert_eq!(client.kind(), Some(expected));

    let mut stream = c2.to_vec();
    stream.extend_from_slice(input.payload);
    let mut out = BytesMut::new();
    let mut status = Ok(HandshakeStatus::InProgress);
    let mut fed = 0;
    for piece in input.split(&stream) {
        at_server.extend_from_slice(piece);
        fed += piece.len();
        if status == Ok(HandshakeStatus::InProgress) {
            status = server.feed(&mut at_server, &mut out);
        }
    }
    assert_eq!(status, Ok(HandshakeStatus::Done));
    assert!(out.is_empty(), "server wrote after S2");
    assert_eq!(fed, stream.len());
    assert_eq!(&at_server[..], input.payload, "chunk-stream bytes lost");
}
