//! Expiring tokens: `<expiry unix seconds>.<hex hmac-sha256(secret,
//! "<action>:<app>/<name>:<expiry>")>`. Binding the action and the stream
//! means a play token cannot publish and a token for one stream opens no other.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Action, Denial};

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted: 20 digits, a dot, 64 hex digits.
const MAX_TOKEN_LEN: usize = 20 + 1 + 64;

fn mac(secret: &[u8], action: Action, stream: &str, expiry: u64) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(format!("{}:{stream}:{expiry}", action.as_str()).as_bytes());
    m
}

/// Mints a token for `stream` (`app/name`) valid until `expiry` (unix seconds).
pub fn sign(secret: &[u8], action: Action, stream: &str, expiry: u64) -> String {
    let tag = mac(secret, action, stream, expiry).finalize().into_bytes();
    let mut out = format!("{expiry}.");
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| match p {
            [hi, lo] => Some((digit(*hi)? * 16 + digit(*lo)?) as u8),
            _ => None,
        })
        .collect()
}

/// Checks `token` for `action` on `stream` at `now_unix`; pure, so it is
/// tested with any clock. The tag is compared in constant time.
pub fn verify(
    secret: &[u8],
    action: Action,
    stream: &str,
    token: &str,
    now_unix: u64,
) -> Result<(), Denial> {
    if secret.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(Denial::BadToken);
    }
    let (expiry, tag) = token.split_once('.').ok_or(Denial::BadToken)?;
    if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Denial::BadToken);
    }
    let expiry: u64 = expiry.parse().map_err(|_| Denial::BadToken)?;
    let tag = unhex(tag).ok_or(Denial::BadToken)?;
    mac(secret, action, stream, expiry)
        .verify_slice(&tag)
        .map_err(|_| Denial::BadToken)?;
    // Checked after the tag, so a forged expiry reads as a bad token.
    if now_unix > expiry {
        return Err(Denial::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vector() {
        // printf 'publish:live/cam:1700000000' | openssl dgst -sha256 -hmac secret
        let t = sign(b"secret", Action::Publish, "live/cam", 1_700_000_000);
        assert_eq!(
            t,
            "1700000000.b12b686cfb0fe0819117860b2c536092206be52efb5171db97569dab746c19e6"
        );
        assert_eq!(
            verify(b"secret", Action::Publish, "live/cam", &t, 1_700_000_000),
            Ok(())
        );
    }

    #[test]
    fn rejects_tampering() {
        let t = sign(b"s", Action::Play, "a/b", 50);
        assert_eq!(
            verify(b"s", Action::Play, "a/b", &t, 51),
            Err(Denial::Expired)
        );
        assert_eq!(
            verify(b"x", Action::Play, "a/b", &t, 1),
            Err(Denial::BadToken)
        );
        let later = t.replacen("50.", "99.", 1);
        assert_eq!(
            verify(b"s", Action::Play, "a/b", &later, 1),
            Err(Denial::BadToken)
        );
        for bad in ["", ".", "50", "50.zz", "-1.00", "50.0", &"9".repeat(200)] {
            assert_eq!(
                verify(b"s", Action::Play, "a/b", bad, 1),
                Err(Denial::BadToken),
                "{bad}"
            );
        }
        assert_eq!(
            verify(b"", Action::Play, "a/b", &t, 1),
            Err(Denial::BadToken)
        );
    }

    proptest! {
        #[test]
        fn sign_verify_round_trip(secret in proptest::collection::vec(any::<u8>(), 1..64),
                                  stream in "[a-z]{1,8}/[a-z0-9]{1,8}",
                                  expiry in 0u64..u64::MAX / 2, now in 0u64..u64::MAX / 2) {
            let t = sign(&secret, Action::Publish, &stream, expiry);
            let want = if now > expiry { Err(Denial::Expired) } else { Ok(()) };
            prop_assert_eq!(verify(&secret, Action::Publish, &stream, &t, now), want);
        }

        #[test]
        fn arbitrary_tokens_never_panic(token in ".{0,120}") {
            let _ = verify(b"k", Action::Play, "a/b", &token, 0);
        }
    }
}
