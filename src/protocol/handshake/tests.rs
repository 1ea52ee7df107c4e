//! In-memory server <-> client runs, split every way the network splits them.

use bytes::BytesMut;
use proptest::prelude::*;

use super::digest::{self, FMS_KEY, FMS_PARTIAL, FP_KEY, FP_PARTIAL, PACKET_LEN};
use super::*;

const TRAILER: &[u8] = b"\x02\x00\x00\x00\x00\x00\x04\x01chunk-bytes";

/// Feeds `data` to `f` in pieces of `step` bytes (0 = all at once) and
/// returns the final status plus whatever `f` left unconsumed.
fn feed_in_pieces(
    data: &[u8],
    step: usize,
    out: &mut BytesMut,
    mut f: impl FnMut(&mut BytesMut, &mut BytesMut) -> Result<HandshakeStatus, HandshakeError>,
) -> Result<(HandshakeStatus, BytesMut), HandshakeError> {
    let step = if step == 0 { data.len().max(1) } else { step };
    let mut input = BytesMut::new();
    let mut status = HandshakeStatus::InProgress;
    for piece in data.chunks(step) {
        input.extend_from_slice(piece);
        status = f(&mut input, out)?;
    }
    Ok((status, input))
}

/// Runs a whole handshake, each direction split into `step`-byte pieces,
/// with chunk bytes following C2 and S2. Returns both sides.
fn run(complex: bool, step: usize) -> (ServerHandshake, ClientHandshake) {
    let mut server = ServerHandshake::new();
    let mut client = ClientHandshake::new(complex);
    let mut c0c1 = BytesMut::new();
    client.start(&mut c0c1);
    assert_eq!(c0c1.len(), 1 + PACKET_LEN);

    let mut s_out = BytesMut::new();
    let (st, left) = feed_in_pieces(&c0c1, step, &mut s_out, |i, o| server.feed(i, o)).unwrap();
    assert_eq!(st, HandshakeStatus::InProgress);
    assert!(left.is_empty());
    assert_eq!(s_out.len(), 1 + 2 * PACKET_LEN);

    let mut s_stream = s_out.to_vec();
    s_stream.extend_from_slice(TRAILER);
    let mut c2 = BytesMut::new();
    let (st, left) = feed_in_pieces(&s_stream, step, &mut c2, |i, o| client.feed(i, o)).unwrap();
    assert_eq!(st, HandshakeStatus::Done);
    assert_eq!(
        &left[..],
        TRAILER,
        "bytes after S2 belong to the chunk stream"
    );
    assert_eq!(c2.len(), PACKET_LEN);

    let mut c_stream = c2.to_vec();
    c_stream.extend_from_slice(TRAILER);
    let mut none = BytesMut::new();
    let (st, left) = feed_in_pieces(&c_stream, step, &mut none, |i, o| server.feed(i, o)).unwrap();
    assert_eq!(st, HandshakeStatus::Done);
    assert_eq!(
        &left[..],
        TRAILER,
        "bytes after C2 belong to the chunk stream"
    );
    assert!(none.is_empty());
    (server, client)
}

#[test]
fn complex_all_at_once_and_byte_by_byte() {
    for step in [0, 1, 7, 1000] {
        let (server, client) = run(true, step);
        assert_eq!(server.kind(), Some(HandshakeKind::Complex { schema: 0 }));
        assert_eq!(client.kind(), Some(HandshakeKind::Complex { schema: 0 }));
        assert_eq!(client.s2_verified(), Some(true));
    }
}

#[test]
fn simple_all_at_once_and_byte_by_byte() {
    for step in [0, 1, 513] {
        let (server, client) = run(false, step);
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        assert_eq!(client.kind(), Some(HandshakeKind::Simple));
        assert_eq!(client.s2_verified(), Some(true));
    }
}

/// C0+C1 built by hand: `complex` = (schema, key) of the digest.
fn c0c1(version: [u8; 4], complex: Option<(u8, &[u8])>) -> (BytesMut, digest::Packet) {
    let (c1, _) = digest::new_challenge(1234, version, complex);
    let mut b = BytesMut::new();
    b.extend_from_slice(&[RTMP_VERSION]);
    b.extend_from_slice(&c1);
    (b, c1)
}

fn s1_of(out: &[u8]) -> digest::Packet {
    let mut p = [0u8; PACKET_LEN];
    p.copy_from_slice(&out[1..1 + PACKET_LEN]);
    p
}

fn s2_of(out: &[u8]) -> digest::Packet {
    let mut p = [0u8; PACKET_LEN];
    p.copy_from_slice(&out[1 + PACKET_LEN..]);
    p
}

#[test]
fn server_answers_in_the_clients_schema() {
    for schema in [0u8, 1] {
        let (mut input, c1) = c0c1([10, 0, 32, 18], Some((schema, &FP_KEY[..FP_PARTIAL])));
        let mut server = ServerHandshake::new();
        let mut out = BytesMut::new();
        assert_eq!(
            server.feed(&mut input, &mut out),
            Ok(HandshakeStatus::InProgress)
        );
        assert_eq!(server.kind(), Some(HandshakeKind::Complex { schema }));
        assert_eq!(out[0], RTMP_VERSION);
        let s1 = s1_of(&out);
        assert_ne!(s1[4..8], [0; 4]);
        let (found, _) = digest::find_digest(&s1, &FMS_KEY[..FMS_PARTIAL]).expect("S1 digest");
        // Random filler may validate in the other schema only by a 2^-256 fluke.
        assert_eq!(found, schema);
        let (_, client_digest) = digest::find_digest(&c1, &FP_KEY[..FP_PARTIAL]).unwrap();
        assert!(digest::check_response(
            &s2_of(&out),
            FMS_KEY,
            &client_digest
        ));
    }
}

#[test]
fn bad_or_missing_digest_gets_a_wholly_simple_answer() {
    // Non-zero version but no digest at all, and a digest made with the wrong key.
    let cases: [Option<(u8, &[u8])>; 2] = [None, Some((1, &FMS_KEY[..FMS_PARTIAL]))];
    for complex in cases {
        let (mut input, c1) = c0c1([9, 0, 124, 2], complex);
        let mut server = ServerHandshake::new();
        let mut out = BytesMut::new();
        server.feed(&mut input, &mut out).unwrap();
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        assert_eq!(
            s1_of(&out)[4..8],
            [0; 4],
            "simple S1 must have zero version"
        );
        assert_eq!(s2_of(&out), c1, "simple S2 echoes C1");
    }
}

#[test]
fn truncated_input_stays_in_progress() {
    let mut server = ServerHandshake::new();
    let mut out = BytesMut::new();
    let (full, _) = c0c1([0; 4], None);
    let mut input = BytesMut::from(&full[..PACKET_LEN]);
    assert_eq!(
        server.feed(&mut input, &mut out),
        Ok(HandshakeStatus::InProgress)
    );
    assert!(out.is_empty());
    assert_eq!(server.kind(), None);
    let mut empty = BytesMut::new();
    assert_eq!(
        server.feed(&mut empty, &mut out),
        Ok(HandshakeStatus::InProgress)
    );
    let mut last = BytesMut::from(&full[PACKET_LEN..]);
    assert_eq!(
        server.feed(&mut last, &mut out),
        Ok(HandshakeStatus::InProgress)
    );
    assert_eq!(out.len(), 1 + 2 * PACKET_LEN);
    let mut part_c2 = BytesMut::from(&[0u8; PACKET_LEN - 1][..]);
    assert_eq!(
        server.feed(&mut part_c2, &mut out),
        Ok(HandshakeStatus::InProgress)
    );
    let mut one = BytesMut::from(&b"\x00X"[..]);
    assert_eq!(server.feed(&mut one, &mut out), Ok(HandshakeStatus::Done));
    assert_eq!(&one[..], b"X");
    // Done is sticky and touches nothing.
    assert_eq!(server.feed(&mut one, &mut out), Ok(HandshakeStatus::Done));
    assert_eq!(&one[..], b"X");
}

#[test]
fn server_rejects_other_versions_at_the_first_byte() {
    for v in [0u8, 6, 8, b'G', 0x16] {
        let mut server = ServerHandshake::new();
        let mut out = BytesMut::new();
        let mut input = BytesMut::from(&[v][..]);
        assert_eq!(
            server.feed(&mut input, &mut out),
            Err(HandshakeError::UnsupportedVersion(v))
        );
        assert!(out.is_empty());
        assert_eq!(
            server.feed(&mut input, &mut out),
            Err(HandshakeError::Failed)
        );
    }
}

#[test]
fn client_rejects_bad_s0() {
    let mut client = ClientHandshake::new(true);
    let mut out = BytesMut::new();
    client.start(&mut out);
    let mut input = BytesMut::from(&[4u8, 0, 0][..]);
    assert_eq!(
        client.feed(&mut input, &mut out),
        Err(HandshakeError::UnsupportedVersion(4))
    );
}

#[test]
fn client_needs_start() {
    let mut client = ClientHandshake::new(false);
    let (mut input, mut out) = (BytesMut::from(&[3u8][..]), BytesMut::new());
    assert_eq!(
        client.feed(&mut input, &mut out),
        Err(HandshakeError::NotStarted)
    );
}

/// Server bytes S0+S1+S2 for tests of the client.
fn server_bytes(s1: &digest::Packet, s2: &digest::Packet) -> BytesMut {
    let mut b = BytesMut::new();
    b.extend_from_slice(&[RTMP_VERSION]);
    b.extend_from_slice(s1);
    b.extend_from_slice(s2);
    b
}

#[test]
fn complex_client_accepts_a_simple_server() {
    let mut client = ClientHandshake::new(true);
    let mut c0c1 = BytesMut::new();
    client.start(&mut c0c1);
    let (s1, _) = digest::new_challenge(0, [0; 4], None);
    // `ffmpeg -listen` style: S2 is not an echo of C1 either.
    let (s2, _) = digest::new_challenge(0, [0; 4], None);
    let mut input = server_bytes(&s1, &s2);
    let mut c2 = BytesMut::new();
    assert_eq!(client.feed(&mut input, &mut c2), Ok(HandshakeStatus::Done));
    assert_eq!(client.kind(), Some(HandshakeKind::Simple));
    assert_eq!(&c2[..], &s1[..], "simple C2 echoes S1");
    assert_eq!(client.s2_verified(), Some(false));
}

#[test]
fn complex_client_validates_either_schema_and_signs_c2() {
    for schema in [0u8, 1] {
        let mut client = ClientHandshake::new(true);
        let mut c0c1 = BytesMut::new();
        client.start(&mut c0c1);
        let (s1, s1_digest) =
            digest::new_challenge(0, [1, 2, 3, 4], Some((schema, &FMS_KEY[..FMS_PARTIAL])));
        let (s2, _) = digest::new_challenge(0, [0; 4], None);
        let mut input = server_bytes(&s1, &s2);
        let mut c2 = BytesMut::new();
        assert_eq!(client.feed(&mut input, &mut c2), Ok(HandshakeStatus::Done));
        assert_eq!(client.kind(), Some(HandshakeKind::Complex { schema }));
        let mut c2p = [0u8; PACKET_LEN];
        c2p.copy_from_slice(&c2);
        assert!(digest::check_response(&c2p, FP_KEY, &s1_digest.unwrap()));
        // A bogus S2 is noted, not fatal.
        assert_eq!(client.s2_verified(), Some(false));
    }
}

#[test]
fn complex_client_rejects_a_forged_s1() {
    let mut client = ClientHandshake::new(true);
    let mut c0c1 = BytesMut::new();
    client.start(&mut c0c1);
    let (s1, _) = digest::new_challenge(0, [1, 2, 3, 4], Some((0, &FP_KEY[..FP_PARTIAL])));
    let mut input = server_bytes(&s1, &[0; PACKET_LEN]);
    let mut c2 = BytesMut::new();
    assert_eq!(
        client.feed(&mut input, &mut c2),
        Err(HandshakeError::InvalidDigest)
    );
    assert!(c2.is_empty());
}

#[test]
fn client_start_is_idempotent() {
    let mut client = ClientHandshake::new(true);
    let mut out = BytesMut::new();
    client.start(&mut out);
    client.start(&mut out);
    assert_eq!(out.len(), 1 + PACKET_LEN);
    assert_ne!(out[5..9], [0; 4]);
    let mut p = [0u8; PACKET_LEN];
    p.copy_from_slice(&out[1..]);
    assert_eq!(
        digest::find_digest(&p, &FP_KEY[..FP_PARTIAL]).map(|(s, _)| s),
        Some(0)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any split of the server's input gives the same outcome and leftover.
    #[test]
    fn server_any_split(complex in any::<bool>(), cuts in proptest::collection::vec(0usize..3100, 0..6)) {
        let mut client = ClientHandshake::new(complex);
        let mut stream = BytesMut::new();
        client.start(&mut stream);
        stream.extend_from_slice(&[0x55; PACKET_LEN]); // C2 content is not checked
        stream.extend_from_slice(TRAILER);
        let mut cuts = cuts;
        cuts.push(0);
        cuts.push(stream.len());
        cuts.sort_unstable();
        cuts.dedup();
        let mut server = ServerHandshake::new();
        let (mut input, mut out) = (BytesMut::new(), BytesMut::new());
        let mut status = HandshakeStatus::InProgress;
        for w in cuts.windows(2) {
            let (a, b) = (w[0].min(stream.len()), w[1].min(stream.len()));
            input.extend_from_slice(&stream[a..b]);
            status = server.feed(&mut input, &mut out).unwrap();
        }
        prop_assert_eq!(status, HandshakeStatus::Done);
        prop_assert_eq!(&input[..], TRAILER);
        prop_assert_eq!(out.len(), 1 + 2 * PACKET_LEN);
        let expected = if complex { HandshakeKind::Complex { schema: 0 } } else { HandshakeKind::Simple };
        prop_assert_eq!(server.kind(), Some(expected));
    }

    /// Garbage never panics either side.
    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..4000)) {
        let mut server = ServerHandshake::new();
        let (mut input, mut out) = (BytesMut::from(&data[..]), BytesMut::new());
        let _ = server.feed(&mut input, &mut out);
        let mut client = ClientHandshake::new(true);
        client.start(&mut out);
        let mut input = BytesMut::from(&data[..]);
        let _ = client.feed(&mut input, &mut out);
    }
}
