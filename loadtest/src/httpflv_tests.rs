//! Unit tests of `httpflv`.

use super::*;
use crate::flvstream::tests::{clip, expected, flv_bytes, Tags};

/// Feeds `bytes` in `step`-sized reads; returns the tags and the error
/// that ended it, if any.
fn play(bytes: &[u8], step: usize) -> (Tags, Option<HttpError>) {
    let url = HttpUrl::parse("http://127.0.0.1:8080/live/x.flv", "http").unwrap();
    let mut c = HttpFlvClient::new(&url);
    let mut got = Vec::new();
    for part in bytes.chunks(step.max(1)) {
        if let Err(e) = c.push(part, &mut |t, ts, b| got.push((t, ts, b.to_vec()))) {
            return (got, Some(e));
        }
    }
    (got, None)
}

fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        i += 1;
        // Upper-case hex and an extension on some lines: both legal.
        let ext = if i % 3 == 0 { ";x=1" } else { "" };
        out.extend_from_slice(format!("{n:X}{ext}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out
}

#[test]
fn url_forms() {
    let u = HttpUrl::parse("http://127.0.0.1:8080/live/x.flv?k=v", "http").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.path.as_str()),
        ("127.0.0.1", 8080, "/live/x.flv?k=v")
    );
    assert_eq!(u.authority(), "127.0.0.1:8080");
    let u = HttpUrl::parse("ws://example.org/live/x.flv", "ws").unwrap();
    assert_eq!(u.port, 80);
    assert!(HttpUrl::parse("ws://example.org/live/x.flv", "http").is_err());
    assert!(HttpUrl::parse("http://example.org", "http").is_err());
    assert!(HttpUrl::parse("http://:80/a", "http").is_err());
}

#[test]
fn request_is_a_plain_get() {
    let url = HttpUrl::parse("http://h:1/live/x.flv", "http").unwrap();
    let c = HttpFlvClient::new(&url);
    let req = std::str::from_utf8(&c.out).unwrap();
    assert!(req.starts_with("GET /live/x.flv HTTP/1.1\r\nHost: h:1\r\n"));
    assert!(req.ends_with("\r\n\r\n"));
}

#[test]
fn head_parsing() {
    let mut r = HeadReader::default();
    assert!(r
        .push(b"HTTP/1.1 200 OK\r\nTransfer-Enc")
        .unwrap()
        .is_none());
    let (h, used) = r
        .push(b"oding: gzip, Chunked\r\nContent-Length: 5\r\n\r\nBODY")
        .unwrap()
        .unwrap();
    assert_eq!((h.status, h.framing), (200, Framing::Chunked));
    assert_eq!(
        used,
        b"oding: gzip, Chunked\r\nContent-Length: 5\r\n\r\n".len()
    );

    let mut r = HeadReader::default();
    let (h, _) = r
        .push(b"HTTP/1.0 200 OK\r\ncontent-length: 12\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.framing, Framing::Length(12));
    assert!(h.close, "HTTP/1.0 without keep-alive closes");

    let mut r = HeadReader::default();
    let (h, _) = r
        .push(b"HTTP/1.1 200 OK\r\nConnection: Close\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(h.close);
    let mut r = HeadReader::default();
    let (h, _) = r.push(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
    assert!(!h.close);

    let mut r = HeadReader::default();
    let (h, _) = r
            .push(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: abc=\r\n\r\n")
            .unwrap()
            .unwrap();
    assert_eq!(h.status, 101);
    assert!(h.upgrade_websocket && h.connection_upgrade);
    assert_eq!(h.ws_accept.as_deref(), Some("abc="));

    assert!(HeadReader::default()
        .push(b"HTTP/1.1 2x0 OK\r\n\r\n")
        .is_err());
    let mut r = HeadReader::default();
    let big = vec![b'a'; MAX_HEAD + 1];
    assert!(r.push(b"HTTP/1.1 200 OK\r\nX: ").unwrap().is_none());
    assert!(matches!(r.push(&big), Err(HttpError::HeadTooLarge)));
}

#[test]
fn close_delimited_body() {
    let msgs = clip(40, false);
    let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\n".to_vec();
    bytes.extend_from_slice(&flv_bytes(&msgs));
    for step in [1, 5, 100, 4096, bytes.len()] {
        let (got, err) = play(&bytes, step);
        assert!(err.is_none(), "step {step}: {err:?}");
        assert_eq!(got, expected(&msgs), "step {step}");
    }
}

#[test]
fn chunked_body() {
    let msgs = clip(40, false);
    let body = flv_bytes(&msgs);
    let mut bytes =
        b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    bytes.extend_from_slice(&chunked(&body, &[1, 9, 13, 4096, 70_000]));
    for step in [1, 2, 3, 17, 4096, bytes.len()] {
        let (got, err) = play(&bytes, step);
        assert!(err.is_none(), "step {step}: {err:?}");
        assert_eq!(got, expected(&msgs), "step {step}");
    }
    // The last chunk ends the stream: a disconnect, after every tag.
    bytes.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
    for step in [1, 3, bytes.len()] {
        let (got, err) = play(&bytes, step);
        assert!(matches!(err, Some(HttpError::BodyEnded)), "{err:?}");
        assert_eq!(got, expected(&msgs));
    }
}

#[test]
fn bad_chunk_framing_is_an_error() {
    let mut d = Dechunker::default();
    assert!(d.push(b"zz\r\n", &mut |_| {}).is_err());
    let mut d = Dechunker::default();
    assert!(d.push(b"3\r\nabcXY", &mut |_| {}).is_err());
    let mut d = Dechunker::default();
    let long = vec![b'1'; MAX_CHUNK_LINE + 2];
    assert!(d.push(&long, &mut |_| {}).is_err());
}

#[test]
fn sized_body_ends_the_stream() {
    let msgs = clip(5, false);
    let body = flv_bytes(&msgs);
    let mut bytes =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    bytes.extend_from_slice(&body);
    let (got, err) = play(&bytes, 7);
    assert!(matches!(err, Some(HttpError::BodyEnded)), "{err:?}");
    assert_eq!(got, expected(&msgs));
}

#[test]
fn status_other_than_200_fails() {
    let (got, err) = play(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 3);
    assert!(got.is_empty());
    let err = err.expect("404 is an error");
    assert_eq!(err.reason(), "http:404");
}
