//! Checks the handshake's digests against an independent implementation:
//! Python's `hmac`/`hashlib`, driven through `python3 -c`. The Python side
//! recomputes the FP9 layout from its description (offset bytes summed,
//! modulo 728, plus 12 or 776), so a shared misunderstanding in our Rust
//! helpers cannot hide a wrong digest.

use std::process::Command;

use bytes::BytesMut;
use cascade::protocol::handshake::{
    ClientHandshake, HandshakeKind, HandshakeStatus, ServerHandshake, HANDSHAKE_PACKET_LEN,
    RTMP_VERSION,
};

const PY: &str = r#"
import hashlib, hmac, os, sys
TAIL = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
FP = b"Genuine Adobe Flash Player 001" + TAIL
FMS = b"Genuine Adobe Flash Media Server 001" + TAIL
def mac(k, m): return hmac.new(k, m, hashlib.sha256).digest()
def off(p, schema):
    base = 8 if schema == 0 else 772
    return base + 4 + sum(p[base:base + 4]) % 728
def digest_ok(p, schema, key):
    o = off(p, schema)
    return hmac.compare_digest(mac(key, p[:o] + p[o + 32:]), p[o:o + 32])
def make(schema, key, version):
    p = bytearray(os.urandom(1536)); p[0:4] = b"\0\0\0\0"; p[4:8] = version
    o = off(p, schema); p[o:o + 32] = mac(key, bytes(p[:o] + p[o + 32:]))
    return bytes(p)
def fail(msg): print("FAIL " + msg); sys.exit(1)
mode, args = sys.argv[1], sys.argv[2:]
if mode == "make-c1":
    print(make(int(args[0]), FP[:30], bytes([9, 0, 124, 2])).hex())
elif mode == "make-s1":
    print(make(int(args[0]), FMS[:36], bytes([4, 5, 0, 1])).hex())
elif mode == "check-server-complex":
    schema, c1, out = int(args[0]), bytes.fromhex(args[1]), bytes.fromhex(args[2])
    if len(out) != 3073 or out[0] != 3: fail("length or S0")
    s1, s2 = out[1:1537], out[1537:]
    if s1[4:8] == b"\0\0\0\0": fail("complex S1 with zero version")
    if not digest_ok(s1, schema, FMS[:36]): fail("S1 digest in schema %d" % schema)
    o = off(c1, schema); cd = c1[o:o + 32]
    if not hmac.compare_digest(mac(mac(FMS, cd), s2[:1504]), s2[1504:]): fail("S2 signature")
    print("ok")
elif mode == "check-server-simple":
    c1, out = bytes.fromhex(args[0]), bytes.fromhex(args[1])
    if len(out) != 3073 or out[0] != 3: fail("length or S0")
    if out[5:9] != b"\0\0\0\0": fail("simple S1 with non-zero version")
    if out[1537:] != c1: fail("S2 is not an echo of C1")
    print("ok")
elif mode == "check-client":
    schema, c0c1, s1, c2 = int(args[0]), bytes.fromhex(args[1]), bytes.fromhex(args[2]), bytes.fromhex(args[3])
    if len(c0c1) != 1537 or c0c1[0] != 3: fail("length or C0")
    c1 = c0c1[1:]
    if c1[4:8] == b"\0\0\0\0": fail("complex C1 with zero version")
    if not (digest_ok(c1, 0, FP[:30]) or digest_ok(c1, 1, FP[:30])): fail("C1 digest")
    o = off(s1, schema); sd = s1[o:o + 32]
    if not hmac.compare_digest(mac(mac(FP, sd), c2[:1504]), c2[1504:]): fail("C2 signature")
    print("ok")
else:
    fail("unknown mode " + mode)
"#;

/// Runs the Python checker; `None` if python3 is not installed.
fn py(args: &[&str]) -> Option<String> {
    let out = match Command::new("python3")
        .arg("-c")
        .arg(PY)
        .args(args)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("python3 not found: skipping independent digest check");
            return None;
        }
        Err(e) => panic!("running python3: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "python3 {} failed: {stdout} {}",
        args.first().copied().unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex from python"))
        .collect()
}

/// Feeds C0 + `c1` to a fresh server; returns it and its S0+S1+S2.
fn serve(c1: &[u8]) -> (ServerHandshake, BytesMut) {
    let mut server = ServerHandshake::new();
    let mut input = BytesMut::new();
    input.extend_from_slice(&[RTMP_VERSION]);
    input.extend_from_slice(c1);
    let mut out = BytesMut::new();
    let status = server.feed(&mut input, &mut out).expect("server feed");
    assert_eq!(status, HandshakeStatus::InProgress);
    assert!(input.is_empty());
    (server, out)
}

#[test]
fn server_complex_digests_match_python_in_both_schemas() {
    for schema in [0u8, 1] {
        // A few rounds: offsets and random filler change every time.
        for _ in 0..4 {
            let Some(c1_hex) = py(&["make-c1", &schema.to_string()]) else {
                return;
            };
            let c1 = unhex(&c1_hex);
            assert_eq!(c1.len(), HANDSHAKE_PACKET_LEN);
            let (server, out) = serve(&c1);
            assert_eq!(server.kind(), Some(HandshakeKind::Complex { schema }));
            let verdict = py(&[
                "check-server-complex",
                &schema.to_string(),
                &c1_hex,
                &hex(&out),
            ]);
            assert_eq!(verdict.as_deref(), Some("ok"));
        }
    }
}

#[test]
fn server_simple_answer_matches_python() {
    // A C1 with zero version bytes, and one with a version but no digest.
    for version in [[0u8; 4], [9, 0, 124, 2]] {
        let mut c1 = vec![0x5a; HANDSHAKE_PACKET_LEN];
        c1[4..8].copy_from_slice(&version);
        let (server, out) = serve(&c1);
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        let Some(verdict) = py(&["check-server-simple", &hex(&c1), &hex(&out)]) else {
            return;
        };
        assert_eq!(verdict, "ok");
    }
}

#[test]
fn client_digests_match_python_in_both_schemas() {
    for schema in [0u8, 1] {
        let mut client = ClientHandshake::new(true);
        let mut c0c1 = BytesMut::new();
        client.start(&mut c0c1);
        let Some(s1_hex) = py(&["make-s1", &schema.to_string()]) else {
            return;
        };
        let s1 = unhex(&s1_hex);
        let mut input = BytesMut::new();
        input.extend_from_slice(&[RTMP_VERSION]);
        input.extend_from_slice(&s1);
        let mut c2 = BytesMut::new();
        assert_eq!(
            client.feed(&mut input, &mut c2),
            Ok(HandshakeStatus::InProgress)
        );
        assert_eq!(client.kind(), Some(HandshakeKind::Complex { schema }));
        assert_eq!(c2.len(), HANDSHAKE_PACKET_LEN);
        let verdict = py(&[
            "check-client",
            &schema.to_string(),
            &hex(&c0c1),
            &s1_hex,
            &hex(&c2),
        ]);
        assert_eq!(verdict.as_deref(), Some("ok"));
    }
}
