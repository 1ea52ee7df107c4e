//! The player driven in memory ([`Rig`]): requests out, answers in, the
//! clock moved by hand.

use super::*;
use crate::fmp4::tests::{fragment, init_segment, video_samples};
use crate::hls_steps::tests::{br, ll};
use crate::ts::tests::segment as ts_segment;

/// A client driven in memory: answers go in through `on_data`, in
/// `step`-sized reads.
struct Rig {
    c: HlsClient,
    state: PlayerState,
    stats: ThreadStats,
    now: Instant,
}

impl Rig {
    fn new(url: &str) -> Rig {
        let url = HttpUrl::parse(url, "http").unwrap();
        let mut r = Rig {
            c: HlsClient::new(&url),
            state: PlayerState::new(Duration::ZERO),
            stats: ThreadStats::default(),
            now: Instant::now(),
        };
        r.c.start(r.now, &mut r.stats);
        r
    }

    /// The request target waiting on `slot` (taken), if any.
    fn request(&mut self, slot: Slot) -> Option<String> {
        self.ranged(slot).map(|r| r.0)
    }

    /// The request waiting on `slot` (taken): its target and the value of
    /// its `Range` header, if it has one.
    fn ranged(&mut self, slot: Slot) -> Option<(String, Option<String>)> {
        let out = self.c.out(slot).split();
        if out.is_empty() {
            return None;
        }
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.ends_with("\r\n\r\n") && text.contains("\r\nHost: h:8080\r\n"));
        let line = text.lines().next().unwrap();
        let range = text
            .lines()
            .find_map(|l| l.strip_prefix("Range: "))
            .map(str::to_string);
        let target = line
            .strip_prefix("GET ")
            .and_then(|l| l.strip_suffix(" HTTP/1.1"))
            .unwrap()
            .to_string();
        Some((target, range))
    }

    /// Raw response bytes, in small reads.
    fn feed(&mut self, slot: Slot, bytes: &[u8]) {
        for part in bytes.chunks(37) {
            self.c
                .on_data(slot, part, self.now, &mut self.state, &mut self.stats);
        }
    }

    fn answer(&mut self, slot: Slot, status: u16, body: &[u8], chunked: bool) {
        let mut bytes = if chunked {
            format!("HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes()
        } else {
            format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes()
        };
        if chunked {
            for c in body.chunks(100) {
                bytes.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                bytes.extend_from_slice(c);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
        } else {
            bytes.extend_from_slice(body);
        }
        for part in bytes.chunks(37) {
            self.c
                .on_data(slot, part, self.now, &mut self.state, &mut self.stats);
        }
    }

    fn wait(&mut self, d: Duration) {
        self.now += d;
        self.c.on_timer(self.now, &mut self.stats);
    }
}

#[test]
fn a_player_waits_for_the_stream_then_follows_the_live_edge() {
    let mut r = Rig::new("http://h:8080/live/x/index.m3u8?token=a");
    let pl = Slot::Playlist;
    let md = Slot::Media;
    assert_eq!(r.request(pl).as_deref(), Some("/live/x/index.m3u8?token=a"));
    assert_eq!(r.request(md), None);

    // Not published yet: 404, retried after a backoff, not counted up.
    r.answer(pl, 404, b"", false);
    assert_eq!(r.request(pl), None);
    assert!(!r.c.is_up());
    assert_eq!(r.stats.request_errors["http:404"], 1);
    assert_eq!(r.stats.request_errors_playing, 0);
    r.wait(BACKOFF_MIN);
    assert_eq!(r.request(pl).as_deref(), Some("/live/x/index.m3u8?token=a"));

    // The playlist: up; a blocking reload for the hinted part, and the
    // init segment, its own query kept.
    r.answer(pl, 200, ll(40, 0.6).as_bytes(), false);
    assert!(r.c.is_up());
    assert_eq!(r.stats.players_up, 1);
    assert_eq!(
        r.request(pl).as_deref(),
        Some("/live/x/index.m3u8?token=a&_HLS_msn=42&_HLS_part=1")
    );
    assert_eq!(
        r.request(md).as_deref(),
        Some("/live/x/init.mp4?token=t1&sid=9")
    );
    r.answer(md, 200, &init_segment(4), false);
    // Start: segment 41 whole (its first part is the independent one
    // behind the hold-back).
    assert_eq!(r.request(md).as_deref(), Some("/live/x/seg41.m4s?sid=9"));
    r.answer(
        md,
        200,
        &fragment(&video_samples(4, 0, 12), &[vec![1; 20]]),
        true,
    );
    assert_eq!(
        (r.stats.video_frames, r.stats.frames, r.stats.lost),
        (12, 12, 0)
    );
    assert_eq!((r.stats.good_starts, r.stats.bad_starts), (1, 0));
    // Then the listed part of 42, then the hinted one.
    assert_eq!(r.request(md).as_deref(), Some("/live/x/part42.0.m4s?sid=9"));
    r.answer(md, 200, &fragment(&video_samples(4, 12, 6), &[]), false);
    assert_eq!(r.request(md).as_deref(), Some("/live/x/part42.1.m4s?sid=9"));
    r.answer(md, 200, &fragment(&video_samples(4, 18, 6), &[]), false);
    // Beyond the hint: nothing until the blocking reload answers.
    assert_eq!(r.request(md), None);
    let newer = ll(40, 0.6).replace(
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part42.1.m4s?sid=9\"",
        "#EXT-X-PART:DURATION=0.2,URI=\"part42.1.m4s?sid=9\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part42.2.m4s?sid=9\"",
    );
    r.answer(pl, 200, newer.as_bytes(), false);
    assert_eq!(
        r.request(pl).as_deref(),
        Some("/live/x/index.m3u8?token=a&_HLS_msn=42&_HLS_part=2")
    );
    assert_eq!(r.request(md).as_deref(), Some("/live/x/part42.2.m4s?sid=9"));
    assert_eq!((r.stats.frames, r.stats.lost, r.stats.stalls), (24, 0, 0));
    assert!(r.stats.request_errors_playing == 0);
}

#[test]
fn expired_media_jumps_to_the_live_edge_as_a_stall() {
    let mut r = Rig::new("http://h:8080/live/x/index.m3u8");
    r.request(Slot::Playlist);
    r.answer(Slot::Playlist, 200, ll(40, 0.6).as_bytes(), false);
    r.request(Slot::Playlist);
    r.request(Slot::Media);
    r.answer(Slot::Media, 200, &init_segment(4), false);
    assert_eq!(
        r.request(Slot::Media).as_deref(),
        Some("/live/x/seg41.m4s?sid=9")
    );
    // The segment request fails; meanwhile the window moved past it
    // (the publisher came back, the sequence jumped by 10).
    r.answer(Slot::Media, 404, b"", false);
    assert_eq!(r.stats.request_errors_playing, 1);
    r.answer(Slot::Playlist, 200, ll(50, 0.6).as_bytes(), false);
    r.wait(BACKOFF_MIN);
    assert_eq!(
        r.request(Slot::Media).as_deref(),
        Some("/live/x/seg51.m4s?sid=9")
    );
    assert_eq!(r.stats.stalls, 1);
}

#[test]
fn no_video_for_a_second_is_a_stall_and_a_silent_server_a_timeout() {
    let mut r = Rig::new("http://h:8080/live/x/index.m3u8");
    r.request(Slot::Playlist);
    r.answer(Slot::Playlist, 200, ll(40, 0.1).as_bytes(), false);
    r.request(Slot::Media);
    r.answer(Slot::Media, 200, &init_segment(4), false);
    assert_eq!(
        r.request(Slot::Media).as_deref(),
        Some("/live/x/part42.0.m4s?sid=9")
    );
    r.answer(
        Slot::Media,
        200,
        &fragment(&video_samples(4, 0, 6), &[]),
        false,
    );
    // The hinted part never comes.
    assert_eq!(
        r.request(Slot::Media).as_deref(),
        Some("/live/x/part42.1.m4s?sid=9")
    );
    r.wait(Duration::from_millis(999));
    assert_eq!(r.stats.stalls, 0);
    r.wait(Duration::from_millis(1));
    assert_eq!(r.stats.stalls, 1);
    // One stall however long it lasts.
    r.wait(Duration::from_secs(2));
    assert_eq!(r.stats.stalls, 1);
    r.wait(REQUEST_TIMEOUT_MIN);
    assert_eq!(r.stats.request_errors["timeout"], 2, "both requests");
    assert!(r.c.take_close(Slot::Media) && r.c.take_close(Slot::Playlist));
    // Retried after the backoff on fresh connections.
    r.wait(BACKOFF_MIN);
    assert_eq!(
        r.request(Slot::Media).as_deref(),
        Some("/live/x/part42.1.m4s?sid=9")
    );
    assert!(r.request(Slot::Playlist).is_some());
}

#[test]
fn a_connection_closed_mid_response_fails_the_request_only() {
    let mut r = Rig::new("http://h:8080/live/x/index.m3u8");
    r.request(Slot::Playlist);
    let (now, state, stats) = (r.now, &mut r.state, &mut r.stats);
    r.c.on_data(
        Slot::Playlist,
        b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n#EXTM3U\n",
        now,
        state,
        stats,
    );
    r.c.on_closed(Slot::Playlist, None, now, state, stats);
    assert_eq!(r.stats.request_errors["closed"], 1);
    assert!(r.c.ended().is_none());
    r.wait(BACKOFF_MIN);
    assert!(r.request(Slot::Playlist).is_some());
    // A close-delimited body is complete at the close.
    let body = format!("HTTP/1.0 200 OK\r\n\r\n{}", ll(40, 0.6));
    let (now, state, stats) = (r.now, &mut r.state, &mut r.stats);
    r.c.on_data(Slot::Playlist, body.as_bytes(), now, state, stats);
    assert!(!r.c.is_up());
    r.c.on_closed(Slot::Playlist, None, now, state, stats);
    assert!(r.c.is_up());
    assert_eq!(r.stats.request_errors.len(), 1);
}

#[test]
fn a_request_lost_to_a_keep_alive_close_is_sent_again_once() {
    let mut r = Rig::new("http://h:8080/live/x/index.m3u8");
    r.request(Slot::Playlist);
    r.answer(Slot::Playlist, 200, ll(40, 0.6).as_bytes(), false);
    let reload = r.request(Slot::Playlist).unwrap();
    // The server closes the connection as the reload goes out.
    let (now, state, stats) = (r.now, &mut r.state, &mut r.stats);
    r.c.on_closed(Slot::Playlist, None, now, state, stats);
    assert_eq!(r.request(Slot::Playlist), Some(reload));
    assert!(r.stats.request_errors.is_empty());
    // On the new connection, a second close is a failure.
    let (now, state, stats) = (r.now, &mut r.state, &mut r.stats);
    r.c.on_closed(Slot::Playlist, None, now, state, stats);
    assert_eq!(r.stats.request_errors["closed"], 1);
    assert_eq!(r.request(Slot::Playlist), None);
}

#[test]
fn a_discontinuity_with_a_new_map_fetches_the_new_init_first() {
    let mut r = Rig::new("http://h:8080/live/x/index.m3u8");
    let head = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:41\n#EXT-X-MAP:URI=\"a/init.mp4\"\n#EXTINF:1,\na/41.m4s\n";
    r.request(Slot::Playlist);
    r.answer(Slot::Playlist, 200, head.as_bytes(), false);
    assert_eq!(
        r.request(Slot::Media).as_deref(),
        Some("/live/x/a/init.mp4")
    );
    r.answer(Slot::Media, 200, &init_segment(4), false);
    assert_eq!(r.request(Slot::Media).as_deref(), Some("/live/x/a/41.m4s"));
    r.answer(
        Slot::Media,
        200,
        &fragment(&video_samples(4, 0, 30), &[]),
        false,
    );
    assert_eq!(r.request(Slot::Media), None);
    // Ordinary HLS: the next poll half a target duration later.
    assert_eq!(r.request(Slot::Playlist), None);
    r.wait(Duration::from_millis(500));
    assert_eq!(
        r.request(Slot::Playlist).as_deref(),
        Some("/live/x/index.m3u8")
    );
    let more = format!(
        "{head}#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"b/init.mp4\"\n#EXTINF:1,\nb/42.m4s\n"
    );
    r.answer(Slot::Playlist, 200, more.as_bytes(), false);
    assert_eq!(
        r.request(Slot::Media).as_deref(),
        Some("/live/x/b/init.mp4")
    );
    r.answer(Slot::Media, 200, &init_segment(2), false);
    assert_eq!(r.request(Slot::Media).as_deref(), Some("/live/x/b/42.m4s"));
    // The new init's NAL length size applies to the new media.
    r.answer(
        Slot::Media,
        200,
        &fragment(&video_samples(2, 30, 30), &[]),
        false,
    );
    assert_eq!((r.stats.frames, r.stats.lost, r.stats.stalls), (60, 0, 0));
}

#[test]
fn mpeg_ts_segments_are_read_as_opaque_media() {
    // nginx-rtmp's ordinary HLS: no map, MPEG-TS segments.
    let mut r = Rig::new("http://h:8080/hls/bench.m3u8");
    r.request(Slot::Playlist);
    let head = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\nbench-7.ts\n#EXTINF:2.000,\nbench-8.ts\n";
    r.answer(Slot::Playlist, 200, head.as_bytes(), false);
    assert!(r.c.is_up() && r.c.ended().is_none());
    // No init segment: the newest whole segment at once.
    assert_eq!(r.request(Slot::Media).as_deref(), Some("/hls/bench-8.ts"));
    r.answer(Slot::Media, 200, &ts_segment(40), false);
    assert_eq!(r.stats.ts_segments, 1);
    // Bytes and segments, but no frames: no latency, no first frame.
    assert_eq!((r.stats.video_frames, r.stats.frames), (0, 0));
    assert!(r.stats.first_frame.is_empty() && r.stats.latency.is_empty());
    assert_eq!(r.request(Slot::Media), None);
    // Polled every half target duration; the next segment, chunked.
    r.wait(Duration::from_millis(1000));
    assert_eq!(
        r.request(Slot::Playlist).as_deref(),
        Some("/hls/bench.m3u8")
    );
    let more = format!("{head}#EXTINF:2.000,\nbench-9.ts\n");
    r.answer(Slot::Playlist, 200, more.as_bytes(), false);
    assert_eq!(r.request(Slot::Media).as_deref(), Some("/hls/bench-9.ts"));
    r.answer(Slot::Media, 200, &ts_segment(3), true);
    assert_eq!(r.stats.ts_segments, 2);
    // Media arrived within the bound (1 s beyond the target duration):
    // no stall, no failed request.
    assert_eq!((r.stats.stalls, r.stats.request_errors_playing), (0, 0));
    // A body that is not TS fails as "ts", and the player goes on.
    r.wait(Duration::from_millis(1000));
    r.request(Slot::Playlist);
    let more = format!("{more}#EXTINF:2.000,\nbench-10.ts\n");
    r.answer(Slot::Playlist, 200, more.as_bytes(), false);
    assert_eq!(r.request(Slot::Media).as_deref(), Some("/hls/bench-10.ts"));
    r.answer(
        Slot::Media,
        200,
        &fragment(&video_samples(4, 0, 3), &[]),
        false,
    );
    assert_eq!(r.stats.request_errors["ts"], 1);
    assert_eq!(r.stats.ts_segments, 2);
    assert!(r.c.ended().is_none());
    // No media for 1 s beyond the target duration is a stall.
    r.wait(Duration::from_millis(999));
    assert_eq!(r.stats.stalls, 0);
    r.wait(Duration::from_millis(1001));
    assert_eq!(r.stats.stalls, 1);
}

#[test]
fn a_multivariant_playlist_leads_to_its_first_variant() {
    let mut r = Rig::new("http://h:8080/live/x/master.m3u8?t=1");
    r.request(Slot::Playlist);
    let mv = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow/index.m3u8?t=1\n";
    r.answer(Slot::Playlist, 200, mv.as_bytes(), false);
    assert_eq!(
        r.request(Slot::Playlist).as_deref(),
        Some("/live/x/low/index.m3u8?t=1")
    );
    assert!(!r.c.is_up());
}

/// Part sizes in the byte-range playlists below: the player takes its
/// start offset from them and otherwise reads what the server sends.
const LENS: [u64; 4] = [1000, 1100, 1000, 900];
const STREAM_HEAD: &[u8] = b"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n";

/// One chunk of a chunked body.
fn chunk(data: &[u8]) -> Vec<u8> {
    let mut c = format!("{:x}\r\n", data.len()).into_bytes();
    c.extend_from_slice(data);
    c.extend_from_slice(b"\r\n");
    c
}

/// A part: six video frames from `seq` on.
fn part(seq: u64) -> Vec<u8> {
    fragment(&video_samples(4, seq, 6), &[])
}

/// A byte-range player up to its first media request: the playlist, the
/// init segment, and the reload waiting for segment 43.
fn byte_range_player() -> Rig {
    let mut r = Rig::new("http://h:8080/live/s/index.m3u8?parts=byterange");
    let (pl, md) = (Slot::Playlist, Slot::Media);
    assert_eq!(
        r.request(pl).as_deref(),
        Some("/live/s/index.m3u8?parts=byterange")
    );
    r.answer(pl, 200, br(40, 0.2, LENS).as_bytes(), false);
    // One reload for the next segment's first part, not for the next part.
    assert_eq!(
        r.request(pl).as_deref(),
        Some("/live/s/index.m3u8?parts=byterange&_HLS_msn=43&_HLS_part=0")
    );
    assert_eq!(r.ranged(md), Some(("/live/s/init.mp4?sid=77".into(), None)));
    r.answer(md, 200, &init_segment(4), false);
    // The start: 42's second part, independent, behind the hold-back, at
    // byte 1000 of the segment; the rest of the segment from there.
    assert_eq!(
        r.ranged(md),
        Some((
            "/live/s/seg42.m4s?sid=77".into(),
            Some("bytes=1000-".into())
        ))
    );
    r
}

#[test]
fn byte_range_parts_stream_in_one_request_per_segment() {
    let mut r = byte_range_player();
    let (pl, md) = (Slot::Playlist, Slot::Media);
    // Parts arrive on the open response as the server makes them, and
    // each is read (and its frames counted) as it arrives.
    r.feed(md, STREAM_HEAD);
    let mut seq = 0;
    for _ in 0..3 {
        r.feed(md, &chunk(&part(seq)));
        seq += 6;
        assert_eq!(r.stats.video_frames, seq);
        assert_eq!(r.request(md), None, "still streaming");
        r.wait(Duration::from_millis(200));
    }
    r.feed(md, b"0\r\n\r\n");
    // Segment 42 is done; 43 is not listed yet: wait for the reload.
    assert_eq!(r.request(md), None);
    assert_eq!(r.stats.requests, 4);
    for msn in 43..48 {
        r.answer(pl, 200, br(msn - 2, 0.2, LENS).as_bytes(), false);
        assert_eq!(
            r.request(pl),
            Some(format!(
                "/live/s/index.m3u8?parts=byterange&_HLS_msn={}&_HLS_part=0",
                msn + 1
            ))
        );
        assert_eq!(
            r.ranged(md),
            Some((
                format!("/live/s/seg{msn}.m4s?sid=77"),
                Some("bytes=0-".into())
            ))
        );
        r.feed(md, STREAM_HEAD);
        for _ in 0..10 {
            r.feed(md, &chunk(&part(seq)));
            seq += 6;
            r.wait(Duration::from_millis(200));
        }
        r.feed(md, b"0\r\n\r\n");
        assert_eq!(r.request(md), None);
        // The playlist and init, then a reload and a segment each.
        assert_eq!(r.stats.requests, 4 + 2 * (msn - 42));
    }
    assert_eq!(r.stats.video_frames, seq);
    assert_eq!((r.stats.frames, r.stats.lost, r.stats.stalls), (seq, 0, 0));
    assert!(r.stats.request_errors.is_empty());
}

#[test]
fn a_byte_range_stream_outlasts_the_request_timeout_and_resumes_at_its_byte() {
    let mut r = byte_range_player();
    let (pl, md) = (Slot::Playlist, Slot::Media);
    r.feed(md, STREAM_HEAD);
    let mut seq = 0;
    let mut got = 0;
    // 12 parts, 0.9 s apart: longer than a request timeout in all, but
    // bytes keep coming, so the request goes on.
    for i in 0..12 {
        let p = part(seq);
        r.feed(md, &chunk(&p));
        got += p.len();
        seq += 6;
        r.wait(Duration::from_millis(900));
        if i == 5 {
            // The reload returns with nothing new (no busy loop: it is
            // sent again a moment later).
            r.answer(pl, 200, br(40, 0.2, LENS).as_bytes(), false);
        }
    }
    assert!(r.now - r.c.slots[1].inflight.as_ref().unwrap().sent > REQUEST_TIMEOUT_MIN);
    assert!(r.stats.request_errors.is_empty());
    // Half a part, then silence: the request times out, mid-fragment.
    let last = part(seq);
    let (first, rest) = last.split_at(last.len() / 2);
    r.feed(md, &chunk(first));
    got += first.len();
    r.wait(REQUEST_TIMEOUT_MIN);
    assert_eq!(r.stats.request_errors["timeout"], 2, "stream and reload");
    assert!(r.c.take_close(md));
    // Resumed at the first byte not read, the same reader going on.
    r.wait(BACKOFF_MIN);
    assert_eq!(
        r.ranged(md),
        Some((
            "/live/s/seg42.m4s?sid=77".into(),
            Some(format!("bytes={}-", 1000 + got))
        ))
    );
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\n\r\n",
        rest.len()
    );
    r.feed(md, head.as_bytes());
    r.feed(md, rest);
    seq += 6;
    // Every frame once: none lost, none read twice.
    assert_eq!(r.stats.video_frames, seq);
    assert_eq!((r.stats.frames, r.stats.lost), (seq, 0));
    assert!(!r.stats.request_errors.contains_key("fmp4"));
}

#[test]
fn a_missing_byte_range_segment_jumps_to_the_live_edge() {
    let mut r = byte_range_player();
    let (pl, md) = (Slot::Playlist, Slot::Media);
    // The server lost the segment (the stream restarted): 404.
    r.answer(md, 404, b"", false);
    assert_eq!(r.stats.request_errors["http:404"], 1);
    assert_eq!(r.stats.stalls, 1);
    // Not retried: the playlist we have ends there, so the start is
    // chosen again from the next one.
    r.wait(BACKOFF_MIN);
    assert_eq!(r.request(md), None);
    r.answer(pl, 200, br(50, 0.2, LENS).as_bytes(), false);
    assert_eq!(
        r.ranged(md),
        Some((
            "/live/s/seg52.m4s?sid=77".into(),
            Some("bytes=1000-".into())
        ))
    );
    assert_eq!(r.stats.stalls, 1);
}

#[test]
fn a_byte_range_answered_whole_skips_to_the_range() {
    let mut r = byte_range_player();
    // A server that ignores the Range: 200 and the whole segment; the
    // first 1000 bytes (part 42.0, not asked for) are dropped.
    let mut body = vec![0xee; 1000];
    body.extend_from_slice(&part(0));
    r.answer(Slot::Media, 200, &body, false);
    assert_eq!((r.stats.video_frames, r.stats.lost), (6, 0));
    assert!(r.stats.request_errors.is_empty());
}
