//! The Flash Player 9 ("complex") handshake arithmetic.
//!
//! C1 and S1 are 1536 bytes: time (4), version (4), then two 764-byte blocks.
//! One of those blocks hides a 32-byte HMAC-SHA256 digest of the whole packet
//! (the digest bytes themselves left out). The block starts with four bytes
//! whose sum, modulo 728, places the digest inside the block.
//!
//! Naming used throughout this module (same as crtmpserver; SRS numbers them
//! the other way round):
//! - schema 0: digest block first, offset bytes at 8..12, digest at `12 + sum % 728`;
//! - schema 1: digest block second, offset bytes at 772..776, digest at `776 + sum % 728`.
//!
//! C2/S2 answer the peer's digest: 1504 random bytes followed by an HMAC of
//! those bytes, keyed by HMAC(own full key, peer digest).

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Length of C1, S1, C2 and S2.
pub(super) const PACKET_LEN: usize = 1536;
/// Length of an HMAC-SHA256 output.
pub(super) const DIGEST_LEN: usize = 32;
/// Where the C2/S2 signature starts.
const SIGNATURE_AT: usize = PACKET_LEN - DIGEST_LEN;

pub(super) type Packet = [u8; PACKET_LEN];
pub(super) type Digest = [u8; DIGEST_LEN];

/// Flash Player key: the first 30 bytes (the text) sign C1, all 62 key C2.
pub(super) const FP_KEY: &[u8; 62] = b"Genuine Adobe Flash Player 001\
\xf0\xee\xc2\x4a\x80\x68\xbe\xe8\x2e\x00\xd0\xd1\x02\x9e\x7e\x57\
\x6e\xec\x5d\x2d\x29\x80\x6f\xab\x93\xb8\xe6\x36\xcf\xeb\x31\xae";
/// Bytes of [`FP_KEY`] that sign C1.
pub(super) const FP_PARTIAL: usize = 30;

/// Flash Media Server key: the first 36 bytes sign S1, all 68 key S2.
pub(super) const FMS_KEY: &[u8; 68] = b"Genuine Adobe Flash Media Server 001\
\xf0\xee\xc2\x4a\x80\x68\xbe\xe8\x2e\x00\xd0\xd1\x02\x9e\x7e\x57\
\x6e\xec\x5d\x2d\x29\x80\x6f\xab\x93\xb8\xe6\x36\xcf\xeb\x31\xae";
/// Bytes of [`FMS_KEY`] that sign S1.
pub(super) const FMS_PARTIAL: usize = 36;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    HmacSha256::new_from_slice(key).expect("HMAC accepts any key length")
}

/// HMAC-SHA256 of `parts` concatenated.
fn hmac_parts(key: &[u8], parts: &[&[u8]]) -> Digest {
    let mut m = mac(key);
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Position of the digest inside a 1536-byte packet for `schema` (0 or 1).
///
/// Always leaves room for the 32 digest bytes: at most 12 + 727 + 32 = 771
/// for schema 0 and 776 + 727 + 32 = 1535 for schema 1.
pub(super) fn digest_offset(packet: &Packet, schema: u8) -> usize {
    let base = if schema == 0 { 8 } else { 772 };
    let sum: usize = packet[base..base + 4].iter().map(|&b| usize::from(b)).sum();
    base + 4 + sum % 728
}

/// The digest `packet` should carry at `offset`, computed over everything else.
fn compute_digest(packet: &Packet, offset: usize, key: &[u8]) -> Digest {
    hmac_parts(key, &[&packet[..offset], &packet[offset + DIGEST_LEN..]])
}

/// Checks the digest of `packet` in schema 1, then schema 0 (the order ffmpeg
/// and nginx-rtmp use), returning the schema that matched and the digest.
pub(super) fn find_digest(packet: &Packet, key: &[u8]) -> Option<(u8, Digest)> {
    [1u8, 0].into_iter().find_map(|schema| {
        let at = digest_offset(packet, schema);
        let mut m = mac(key);
        m.update(&packet[..at]);
        m.update(&packet[at + DIGEST_LEN..]);
        let claimed = &packet[at..at + DIGEST_LEN];
        // Constant-time comparison: no reason to leak timing on the network.
        m.verify_slice(claimed).ok()?;
        let mut d = [0u8; DIGEST_LEN];
        d.copy_from_slice(claimed);
        Some((schema, d))
    })
}

/// Writes the digest of `packet` into its `schema` position and returns it.
/// Everything except the digest bytes must already be final.
pub(super) fn imprint_digest(packet: &mut Packet, schema: u8, key: &[u8]) -> Digest {
    let at = digest_offset(packet, schema);
    let d = compute_digest(packet, at, key);
    packet[at..at + DIGEST_LEN].copy_from_slice(&d);
    d
}

/// Builds a C2/S2 answering `peer_digest`: random bytes signed with a key
/// derived from our full key and the peer's digest.
pub(super) fn signed_response(full_key: &[u8], peer_digest: &Digest) -> Packet {
    let mut packet = [0u8; PACKET_LEN];
    rand::thread_rng().fill_bytes(&mut packet[..SIGNATURE_AT]);
    let sig = response_signature(&packet, full_key, peer_digest);
    packet[SIGNATURE_AT..].copy_from_slice(&sig);
    packet
}

/// The signature a C2/S2 with these random bytes should end with.
fn response_signature(packet: &Packet, full_key: &[u8], peer_digest: &Digest) -> Digest {
    let key = hmac_parts(full_key, &[peer_digest]);
    hmac_parts(&key, &[&packet[..SIGNATURE_AT]])
}

/// Whether `packet` is a valid answer to `own_digest` from a peer holding `peer_full_key`.
pub(super) fn check_response(packet: &Packet, peer_full_key: &[u8], own_digest: &Digest) -> bool {
    let key = hmac_parts(peer_full_key, &[own_digest]);
    let mut m = mac(&key);
    m.update(&packet[..SIGNATURE_AT]);
    m.verify_slice(&packet[SIGNATURE_AT..]).is_ok()
}

/// A fresh C1/S1: `time`, `version`, random filler, and if `schema` is given a
/// digest keyed by `key`. Returns the packet and the digest (if any).
pub(super) fn new_challenge(
    time: u32,
    version: [u8; 4],
    complex: Option<(u8, &[u8])>,
) -> (Packet, Option<Digest>) {
    let mut packet = [0u8; PACKET_LEN];
    packet[..4].copy_from_slice(&time.to_be_bytes());
    packet[4..8].copy_from_slice(&version);
    rand::thread_rng().fill_bytes(&mut packet[8..]);
    let digest = complex.map(|(schema, key)| imprint_digest(&mut packet, schema, key));
    (packet, digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_documented_shape() {
        assert_eq!(&FP_KEY[..FP_PARTIAL], b"Genuine Adobe Flash Player 001");
        assert_eq!(
            &FMS_KEY[..FMS_PARTIAL],
            b"Genuine Adobe Flash Media Server 001"
        );
        assert_eq!(FP_KEY[FP_PARTIAL..], FMS_KEY[FMS_PARTIAL..]);
        assert_eq!(FP_KEY[FP_PARTIAL], 0xf0);
        assert_eq!(FP_KEY[61], 0xae);
    }

    #[test]
    fn offsets_stay_inside_their_block() {
        let mut p = [0u8; PACKET_LEN];
        assert_eq!(digest_offset(&p, 0), 12);
        assert_eq!(digest_offset(&p, 1), 776);
        p[8..12].fill(0xff);
        p[772..776].fill(0xff);
        // 4 * 255 = 1020; 1020 % 728 = 292.
        assert_eq!(digest_offset(&p, 0), 12 + 292);
        assert_eq!(digest_offset(&p, 1), 776 + 292);
        for sum in 0..=1020usize {
            let off = 12 + sum % 728;
            assert!(off + DIGEST_LEN <= 772);
            assert!(776 + sum % 728 + DIGEST_LEN <= PACKET_LEN);
        }
    }

    #[test]
    fn digest_found_in_the_schema_it_was_written() {
        for schema in [0u8, 1] {
            let (p, d) = new_challenge(7, [1, 2, 3, 4], Some((schema, &FP_KEY[..FP_PARTIAL])));
            let (found, fd) = find_digest(&p, &FP_KEY[..FP_PARTIAL]).expect("digest");
            assert_eq!(found, schema);
            assert_eq!(Some(fd), d);
            // The other key does not validate it.
            assert!(find_digest(&p, &FMS_KEY[..FMS_PARTIAL]).is_none());
        }
    }

    #[test]
    fn tampered_packet_fails() {
        let (mut p, _) = new_challenge(0, [1, 0, 0, 0], Some((0, &FP_KEY[..FP_PARTIAL])));
        p[1000] ^= 1;
        assert!(find_digest(&p, &FP_KEY[..FP_PARTIAL]).is_none());
    }

    #[test]
    fn response_round_trip() {
        let d = [9u8; DIGEST_LEN];
        let mut r = signed_response(FMS_KEY, &d);
        assert!(check_response(&r, FMS_KEY, &d));
        assert!(!check_response(&r, FP_KEY, &d));
        r[3] ^= 0x80;
        assert!(!check_response(&r, FMS_KEY, &d));
    }
}
