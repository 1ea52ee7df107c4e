//! HTTP request heads: `parse_head` on arbitrary bytes, under the default
//! `[http]` limits or tiny ones. The server calls it on a buffer that grows
//! one read at a time and acts on the first answer that is not "incomplete",
//! so that answer must not depend on where the reads split the bytes.

use cascade::protocol::http::{parse_head, response_head, HeadError, HeadLimits, RequestHead};

use super::Input;

type Parsed = Result<Option<(RequestHead, usize)>, HeadError>;

/// Flag bit 0: the default limits (8192 bytes, 64 headers); otherwise the
/// config bytes choose them: head size 1 + 8 * byte 0 (1..=2041), header
/// count byte 1 % 16 (0..=15).
pub fn http_head(data: &[u8]) {
    let input = Input::new(data, 2);
    let limits = if input.flags & 1 != 0 {
        HeadLimits {
            max_bytes: 8192,
            max_headers: 64,
        }
    } else {
        HeadLimits {
            max_bytes: 1 + usize::from(input.config[0]) * 8,
            max_headers: usize::from(input.config[1] % 16),
        }
    };
    let payload = input.payload;
    let whole = parse_head(payload, limits);

    // The same bytes arriving in pieces: the first answer that is not
    // "incomplete" is the one the whole buffer gives.
    let mut seen = 0;
    let mut first: Option<Parsed> = None;
    for piece in input.pieces() {
        seen += piece.len();
        let r = parse_head(&payload[..seen], limits);
        if !matches!(r, Ok(None)) {
            first = Some(r);
            break;
        }
    }
    match (&whole, first) {
        (Ok(None), None) => {}
        (Ok(None), Some(r)) => panic!("a prefix gave {r:?}, the whole buffer is incomplete"),
        (_, None) => panic!("every prefix was incomplete, the whole gave {whole:?}"),
        (w, Some(r)) => assert_eq!(w, &r, "splitting changed the answer"),
    }

    if let Err(e) = &whole {
        assert!(matches!(e.status(), 400 | 431), "{e:?} -> {}", e.status());
        if matches!(e, HeadError::TooLarge(_)) {
            assert!(payload.len() >= limits.max_bytes);
        }
    }

    // Pipelined heads, one after the other, as the connection loop takes them.
    let mut rest = payload;
    for _ in 0..64 {
        match parse_head(rest, limits) {
            Ok(Some((head, len))) => {
                check(&head, len, rest, limits);
                rest = &rest[len..];
            }
            Ok(None) => {
                assert!(rest.len() < limits.max_bytes, "incomplete past the limit");
                break;
            }
            Err(_) => break,
        }
    }
}

/// What holds for every complete head of `len` bytes at the front of `buf`.
fn check(head: &RequestHead, len: usize, buf: &[u8], limits: HeadLimits) {
    assert!(
        len > 0 && len <= buf.len(),
        "head of {len} in {}",
        buf.len()
    );
    assert!(len <= limits.max_bytes, "head of {len} over {limits:?}");
    assert_eq!(buf[len - 1], b'\n', "a head ends with a line end");
    // The bytes after the head play no part in it.
    assert_eq!(
        parse_head(&buf[..len], limits),
        Ok(Some((head.clone(), len))),
        "the head alone parsed differently"
    );
    let _ = head.partial_range();
    let out = response_head(200, &[], Some(len), head.close);
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n") && out.ends_with(b"\r\n\r\n"));
}
