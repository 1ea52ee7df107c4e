//! LL-HLS with byte-range addressed parts (`index.m3u8?parts=byterange`),
//! end to end: ffmpeg publishes over RTMP; raw requests check that every
//! part is a byte range of its segment's file holding exactly the part's
//! bytes, that the preload hint's open range streams the rest of the
//! segment part by part, that a blocking reload for the next segment's
//! first part answers, and ffmpeg decodes the same playlist as ordinary
//! HLS.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::hls::{attr, fetch, fetch_chunked, fetch_chunked_slowly, fetch_with, wait_ok};
use common::ops::OpsServer;
use common::{decoded_frames, ffmpeg_play, publish_ffmpeg, tail, tool, Clip};

const T: Duration = Duration::from_secs(30);

/// One `EXT-X-PART` of a byte-range playlist.
#[derive(Debug)]
struct RangePart {
    msn: u64,
    index: u32,
    len: u64,
    offset: u64,
}

/// `segM.m4s?…` → M.
fn segment_msn(uri: &str) -> u64 {
    let file = uri.split('?').next().unwrap();
    let m = file
        .strip_prefix("seg")
        .and_then(|f| f.strip_suffix(".m4s"));
    m.and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("not a segment URI: {uri}"))
}

/// Every part of the playlist, checked to be a range of its segment that
/// starts where the one before it ended; and the hint's (msn, start).
fn range_parts(text: &str) -> (Vec<RangePart>, (u64, u64)) {
    let mut parts: Vec<RangePart> = Vec::new();
    let mut hint = None;
    for line in text.lines() {
        if line.starts_with("#EXT-X-PART:") {
            let msn = segment_msn(attr(line, "URI").unwrap());
            let (len, offset) = attr(line, "BYTERANGE")
                .and_then(|r| r.split_once('@'))
                .unwrap_or_else(|| panic!("part without a byte range: {line}"));
            let (len, offset): (u64, u64) = (len.parse().unwrap(), offset.parse().unwrap());
            let (index, expected) = match parts.last() {
                Some(p) if p.msn == msn => (p.index + 1, p.offset + p.len),
                _ => (0, 0),
            };
            assert_eq!(offset, expected, "parts of {msn} not contiguous: {line}");
            assert!(len > 0, "empty part: {line}");
            parts.push(RangePart {
                msn,
                index,
                len,
                offset,
            });
        } else if line.starts_with("#EXT-X-PRELOAD-HINT:") {
            let msn = segment_msn(attr(line, "URI").unwrap());
            let start = attr(line, "BYTERANGE-START")
                .unwrap_or_else(|| panic!("hint without BYTERANGE-START: {line}"));
            assert!(attr(line, "BYTERANGE-LENGTH").is_none(), "{line}");
            hint = Some((msn, start.parse().unwrap()));
        }
    }
    (parts, hint.expect("no preload hint"))
}

#[test]
fn byte_range_parts_are_slices_of_their_segment_and_the_hint_streams_the_rest() {
    let ops = OpsServer::start(&[], &[]);
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &ops.server.url("br"),
    );
    wait_ok(ops.http, "/live/br/index.m3u8", T);
    std::thread::sleep(Duration::from_secs(3));
    let pl = fetch(ops.http, "/live/br/index.m3u8?parts=byterange");
    assert_eq!(pl.status, 200);
    let text = pl.text();
    assert!(!text.contains("URI=\"part"), "part files listed:\n{text}");
    let (parts, (hint_msn, hint_start)) = range_parts(&text);
    assert!(parts.len() >= 10, "too few parts:\n{text}");
    // The same window without the parameter still names part files.
    assert!(fetch(ops.http, "/live/br/index.m3u8")
        .text()
        .contains("URI=\"part"));

    // Each part of a complete segment: its range of the segment's file is
    // exactly the part's own file.
    let complete: Vec<&RangePart> = parts.iter().filter(|p| p.msn < hint_msn).collect();
    assert!(
        !complete.is_empty(),
        "no complete segment with parts:\n{text}"
    );
    for p in complete.iter().take(12) {
        let (first, last) = (p.offset, p.offset + p.len - 1);
        let got = fetch_with(
            ops.http,
            &format!("/live/br/seg{}.m4s", p.msn),
            &format!("Range: bytes={first}-{last}\r\n"),
        );
        assert_eq!(got.status, 206, "{}", got.head);
        let cr = got.header("Content-Range").expect("no Content-Range");
        assert!(cr.starts_with(&format!("bytes {first}-{last}/")), "{cr}");
        let own = fetch(ops.http, &format!("/live/br/part{}.{}.m4s", p.msn, p.index));
        assert_eq!(own.status, 200);
        assert_eq!(got.body, own.body, "range of part {}.{}", p.msn, p.index);
    }
    // Past the end of a complete segment: 416 with its length.
    let m = complete[0].msn;
    let whole = fetch(ops.http, &format!("/live/br/seg{m}.m4s"));
    let past = fetch_with(
        ops.http,
        &format!("/live/br/seg{m}.m4s"),
        &format!("Range: bytes={}-\r\n", whole.body.len()),
    );
    assert_eq!(past.status, 416);
    assert_eq!(
        past.header("Content-Range"),
        Some(format!("bytes */{}", whole.body.len()))
    );

    // The hint's open range: the rest of the segment being made, part by
    // part as each is made, in one answer.
    let got = fetch_chunked(
        ops.http,
        &format!("/live/br/seg{hint_msn}.m4s"),
        &format!("Range: bytes={hint_start}-\r\n"),
    );
    assert!(got.head.starts_with("HTTP/1.1 206"), "{}", got.head);
    assert!(
        got.head
            .contains(&format!("Content-Range: bytes {hint_start}-")),
        "{}",
        got.head
    );
    let spread = *got.arrivals.last().unwrap() - got.arrivals[0];
    assert!(
        spread >= Duration::from_millis(200),
        "the rest of the segment came at once ({spread:?}), not part by part"
    );
    let whole = fetch(ops.http, &format!("/live/br/seg{hint_msn}.m4s"));
    assert_eq!(whole.status, 200);
    assert_eq!(
        got.body,
        whole.body[hint_start as usize..],
        "the streamed range differs from the complete segment"
    );
    assert_eq!(&got.body[4..8], b"moof", "the range starts on a part");
    // The streamed range ended cleanly: the same connection takes the next
    // request.
    let mut conn = got.conn;
    conn.write_all(b"GET /live/br/index.m3u8?parts=byterange HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("a second request on the streamed connection");
    let mut next = Vec::new();
    let mut buf = [0u8; 4096];
    while !next.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn
            .read(&mut buf)
            .expect("the answer to the second request");
        assert!(n > 0, "closed after the streamed range");
        next.extend_from_slice(&buf[..n]);
    }
    assert!(
        next.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&next)
    );

    // A player that reads nothing for a while from a small buffer: the
    // socket takes part of a part, the writer sends the rest later, and
    // the bytes are still the segment's.
    let (_, (slow_msn, slow_start)) =
        range_parts(&fetch(ops.http, "/live/br/index.m3u8?parts=byterange").text());
    let slow = fetch_chunked_slowly(
        ops.http,
        &format!("/live/br/seg{slow_msn}.m4s"),
        &format!("Range: bytes={slow_start}-\r\n"),
        4096,
        Duration::from_millis(1500),
    );
    // `bytes=0-` (a hint at a new segment's start) is the whole file: 200.
    let status = if slow_start == 0 { "200" } else { "206" };
    assert!(
        slow.head.starts_with(&format!("HTTP/1.1 {status}")),
        "{}",
        slow.head
    );
    let whole = fetch(ops.http, &format!("/live/br/seg{slow_msn}.m4s"));
    assert_eq!(
        slow.body,
        whole.body[slow_start as usize..],
        "a slow reader's range differs from the complete segment"
    );

    // A range to the largest last byte a client can write: the rest of the
    // segment being made, like the open range (and no overflow).
    let (_, (m, _)) = range_parts(&fetch(ops.http, "/live/br/index.m3u8?parts=byterange").text());
    let huge = fetch_chunked(
        ops.http,
        &format!("/live/br/seg{m}.m4s"),
        &format!("Range: bytes=1-{}\r\n", u64::MAX),
    );
    assert!(huge.head.starts_with("HTTP/1.1 206"), "{}", huge.head);
    let whole = fetch(ops.http, &format!("/live/br/seg{m}.m4s"));
    assert_eq!(
        huge.body,
        whole.body[1..],
        "bytes=1-{} of segment {m}",
        u64::MAX
    );

    // One blocking reload per segment: the next segment's first part.
    let next = hint_msn + 1;
    let reload = fetch(
        ops.http,
        &format!("/live/br/index.m3u8?parts=byterange&_HLS_msn={next}&_HLS_part=0"),
    );
    assert_eq!(reload.status, 200, "{}", reload.text());
    let (parts, _) = range_parts(&reload.text());
    assert!(
        parts.iter().any(|p| p.msn == next && p.offset == 0),
        "segment {next}'s first part not listed:\n{}",
        reload.text()
    );
}

#[test]
fn ffmpeg_plays_the_byte_range_playlist_as_ordinary_hls() {
    let ops = OpsServer::start(&[], &[]);
    let _publisher = publish_ffmpeg(
        &tool("ffmpeg"),
        &Clip::H264Aac.path(),
        &ops.server.url("brff"),
    );
    wait_ok(ops.http, "/live/brff/index.m3u8", T);
    let url = format!(
        "http://127.0.0.1:{}/live/brff/index.m3u8?parts=byterange",
        ops.http
    );
    let out = ffmpeg_play(&tool("ffmpeg"), &url, 4.0, "info", T);
    assert!(
        out.success(),
        "ffmpeg on {url} failed: {}\n{}",
        out.describe(),
        tail(&out.stderr, 30)
    );
    let frames = decoded_frames(&out);
    assert!(frames >= 60, "only {frames} frames decoded from {url}");
}
