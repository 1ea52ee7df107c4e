//! What an HLS player fetches next, decided from the newest media
//! playlist alone (no I/O, no clock): where a joining player starts, the
//! media request at each position for each kind of delivery (whole
//! segments, separate parts, byte-range addressed parts), and what a
//! blocking playlist reload waits for. [`crate::hls`] keeps the state and
//! sends the requests.

use crate::m3u8::{MediaPlaylist, Part, Pos};

/// What the media connection should do next at position `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaStep {
    /// Fetch `uri`; the position after it is `then`.
    Fetch {
        uri: String,
        kind: MediaKind,
        then: Pos,
    },
    /// Not listed yet: wait for a newer playlist.
    Wait,
    /// No longer listed (expired from the window), or the media sequence
    /// restarted below it: go to the live edge.
    Jump,
    /// The playlist ended (`EXT-X-ENDLIST`) and all of it was fetched.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Part,
    /// The preload-hinted part: the server answers when it is complete.
    Hint,
    Segment,
    /// Bytes `start..` of segment `uri` (`Range: bytes=start-`): the rest
    /// of a complete segment, or of the segment being made, which the
    /// server sends part by part as they are made and ends with the
    /// segment.
    Range {
        start: u64,
    },
}

/// How a playlist's media is to be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Whole complete segments: ordinary HLS, or parts the server does not
    /// let us wait for (no `CAN-BLOCK-RELOAD`).
    Segments,
    /// Low-latency, each part a resource of its own.
    Parts,
    /// Low-latency with byte-range addressed parts: each part is a range
    /// of its segment's resource, and the segment is streamed as it is
    /// made by one open-ended range request.
    ByteRanges,
}

/// Which [`Delivery`] the playlist calls for. A low-latency playlist whose
/// parts (or preload hint) carry byte ranges is played by ranges; a mix of
/// the two kinds is not something a server writes, and is treated as
/// byte ranges so that no part is fetched as a whole segment by mistake.
pub fn delivery(pl: &MediaPlaylist) -> Delivery {
    if !pl.is_low_latency() {
        return Delivery::Segments;
    }
    let ranged = pl
        .segments
        .iter()
        .flat_map(|s| &s.parts)
        .chain(&pl.trailing_parts)
        .any(|p| p.byterange.is_some())
        || pl
            .preload_hint
            .as_ref()
            .is_some_and(|h| h.part && h.byterange_start.is_some());
    if ranged {
        Delivery::ByteRanges
    } else {
        Delivery::Parts
    }
}

/// What the next blocking reload waits for. With separate parts: the first
/// part the playlist does not list, so each reload returns as a part is
/// made. With byte ranges the media connection learns of new parts from
/// its streaming response, so the playlist is only needed to learn the
/// next segment's URI: the reload waits for the first part of the segment
/// after the one being made, about one reload per segment.
pub fn reload_directive(pl: &MediaPlaylist) -> Pos {
    match delivery(pl) {
        Delivery::ByteRanges => Pos::new(pl.next_msn() + 1, 0),
        _ => pl.next_unlisted(),
    }
}

/// Chooses what to fetch at `next`, given the newest playlist.
pub fn next_media(pl: &MediaPlaylist, mut next: Pos) -> MediaStep {
    let parts = match delivery(pl) {
        Delivery::ByteRanges => return next_range(pl, next),
        Delivery::Parts => true,
        Delivery::Segments => false,
    };
    if next.msn < pl.first_listed_msn() || next.msn > pl.next_msn() {
        return MediaStep::Jump;
    }
    if let Some(seg) = pl.segment(next.msn) {
        // A complete segment: whole when we are at its start, by parts
        // when we stopped inside it.
        if next.part > 0 && next.part >= seg.parts.len() as u64 {
            if seg.parts.is_empty() {
                // Its parts were dropped from the playlist while we were
                // inside it: the rest of it cannot be fetched alone.
                return MediaStep::Jump;
            }
            // We fetched its last part before the playlist said it was
            // the last.
            next = Pos::new(next.msn + 1, 0);
            return next_media(pl, next);
        }
        if next.part == 0 {
            return MediaStep::Fetch {
                uri: seg.uri.clone(),
                kind: MediaKind::Segment,
                then: Pos::new(next.msn + 1, 0),
            };
        }
        let i = next.part as usize;
        let then = if i + 1 == seg.parts.len() {
            Pos::new(next.msn + 1, 0)
        } else {
            Pos::new(next.msn, next.part + 1)
        };
        return MediaStep::Fetch {
            uri: seg.parts[i].uri.clone(),
            kind: MediaKind::Part,
            then,
        };
    }
    // The segment being made.
    if pl.endlist {
        return MediaStep::End;
    }
    if !parts {
        return MediaStep::Wait;
    }
    let then = Pos::new(next.msn, next.part + 1);
    if let Some(p) = pl.trailing_parts.get(next.part as usize) {
        return MediaStep::Fetch {
            uri: p.uri.clone(),
            kind: MediaKind::Part,
            then,
        };
    }
    match &pl.preload_hint {
        Some(h) if h.part && h.byterange_start.is_none() && next == pl.next_unlisted() => {
            MediaStep::Fetch {
                uri: h.uri.clone(),
                kind: MediaKind::Hint,
                then,
            }
        }
        _ => MediaStep::Wait,
    }
}

/// [`next_media`] for byte-range addressed parts. `next.part` is a part
/// index only where the player joins (see [`start_position`]); after that
/// it walks segments from byte 0, `(msn, 0)`, `(msn + 1, 0)`, ... Every
/// fetch is a range to the end of the segment, complete or not, so a
/// failed one can be resumed from the byte where it broke off
/// ([`resume_media`]).
fn next_range(pl: &MediaPlaylist, next: Pos) -> MediaStep {
    // The stream of a segment ends when the segment is complete, which can
    // be before a playlist saying so arrives: the start of the segment
    // after the one being made is to be waited for, not a restart.
    if next == Pos::new(pl.next_msn() + 1, 0) && !pl.endlist {
        return MediaStep::Wait;
    }
    if next.msn < pl.first_listed_msn() || next.msn > pl.next_msn() {
        return MediaStep::Jump;
    }
    let then = Pos::new(next.msn + 1, 0);
    let i = next.part as usize;
    let fetch = |uri: &str, start: u64| MediaStep::Fetch {
        uri: uri.to_string(),
        kind: MediaKind::Range { start },
        then,
    };
    if let Some(seg) = pl.segment(next.msn) {
        if i == 0 {
            return fetch(&seg.uri, 0);
        }
        return match seg.parts.get(i) {
            Some(p) => fetch(&seg.uri, part_start(p)),
            // Its parts aged out of the playlist before we started inside
            // it: where the part began is no longer known.
            None if seg.parts.is_empty() => MediaStep::Jump,
            // Started at what was then the hint, which turned out to be
            // past the segment's last part.
            None => next_range(pl, then),
        };
    }
    if pl.endlist {
        return MediaStep::End;
    }
    if let Some(p) = pl.trailing_parts.get(i) {
        return fetch(&p.uri, part_start(p));
    }
    match &pl.preload_hint {
        Some(h) if h.part && next == pl.next_unlisted() => match h.byterange_start {
            Some(start) => fetch(&h.uri, start),
            None => MediaStep::Wait,
        },
        _ => MediaStep::Wait,
    }
}

/// Where a part begins in its segment. A part without a range in a
/// byte-range playlist is taken as the segment's start: frames may then be
/// fetched twice, but none is skipped.
fn part_start(p: &Part) -> u64 {
    p.byterange.map_or(0, |r| r.offset)
}

/// How far a byte-range fetch got before it failed: the segment it was
/// in, that segment's URI as the playlist gave it, and the first byte not
/// yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    pub msn: u64,
    pub uri: String,
    pub offset: u64,
}

/// What to fetch to go on from a byte-range fetch that failed after
/// reading up to `at.offset`: the rest of the same segment, from that
/// byte, while the playlist still lists the segment (complete, or being
/// made). Resuming at the byte rather than at a part boundary keeps every
/// frame counted once, as the same fragment reader goes on reading.
pub fn resume_media(pl: &MediaPlaylist, at: &ResumePoint) -> MediaStep {
    if at.msn < pl.first_listed_msn() || at.msn > pl.next_msn() {
        return MediaStep::Jump;
    }
    MediaStep::Fetch {
        uri: at.uri.clone(),
        kind: MediaKind::Range { start: at.offset },
        then: Pos::new(at.msn + 1, 0),
    }
}

/// Where a player joining now starts. With parts: the last independent
/// part at least `PART-HOLD-BACK` (three part targets when not given) from
/// the end of the playlist, as an LL-HLS player joins; the oldest listed
/// independent part when none is that old; the start of the newest
/// segment when no part is marked independent. Without parts: the newest
/// complete segment, the least latency ordinary HLS allows.
pub fn start_position(pl: &MediaPlaylist) -> Pos {
    let newest_segment = match pl.segments.last() {
        Some(s) => Pos::new(s.msn, 0),
        None => Pos::new(pl.next_msn(), 0),
    };
    if delivery(pl) == Delivery::Segments {
        return newest_segment;
    }
    // Every listed part with its start time from the first listed segment.
    let mut t = 0.0;
    let mut independent = Vec::new();
    for s in &pl.segments {
        let mut pt = t;
        for (i, p) in s.parts.iter().enumerate() {
            if p.independent {
                independent.push((Pos::new(s.msn, i as u64), pt));
            }
            pt += p.duration;
        }
        t += s.duration;
    }
    for (i, p) in pl.trailing_parts.iter().enumerate() {
        if p.independent {
            independent.push((Pos::new(pl.next_msn(), i as u64), t));
        }
        t += p.duration;
    }
    let hold_back = pl
        .server_control
        .part_hold_back
        .unwrap_or(3.0 * pl.part_target.unwrap_or(0.0));
    let latest_start = t - hold_back;
    independent
        .iter()
        .rev()
        .find(|(_, start)| *start <= latest_start + 1e-6)
        .or(independent.first())
        .map(|(pos, _)| *pos)
        .unwrap_or(newest_segment)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::m3u8::{self, Playlist};

    /// An LL-HLS playlist: segment 40 without its parts (aged out), 41 with
    /// two, one part of 42 so far and the hint for the next.
    pub fn ll(media_sequence: u64, hold_back: f64) -> String {
        let m = media_sequence;
        format!(
            "#EXTM3U
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={hold_back},CAN-SKIP-UNTIL=12
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:{m}
#EXT-X-MAP:URI=\"init.mp4?token=t1&sid=9\"
#EXTINF:2.0,
seg{m}.m4s?sid=9
#EXT-X-PART:DURATION=0.2,URI=\"part{m1}.0.m4s?sid=9\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.2,URI=\"part{m1}.1.m4s?sid=9\"
#EXTINF:0.4,
seg{m1}.m4s?sid=9
#EXT-X-PART:DURATION=0.2,URI=\"part{m2}.0.m4s?sid=9\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{m2}.1.m4s?sid=9\"
",
            m1 = m + 1,
            m2 = m + 2
        )
    }

    pub fn media(text: &str) -> MediaPlaylist {
        match m3u8::parse(text) {
            Ok(Playlist::Media(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    fn fetch(uri: &str, kind: MediaKind, then: (u64, u64)) -> MediaStep {
        MediaStep::Fetch {
            uri: uri.into(),
            kind,
            then: Pos::new(then.0, then.1),
        }
    }

    #[test]
    fn next_media_walks_segments_parts_and_the_hint() {
        let pl = media(&ll(40, 0.6));
        let at = |msn, part| next_media(&pl, Pos::new(msn, part));
        // A complete segment from its start is fetched whole.
        assert_eq!(
            at(41, 0),
            fetch("seg41.m4s?sid=9", MediaKind::Segment, (42, 0))
        );
        // Inside it, by parts; its last part leads to the next segment.
        assert_eq!(
            at(41, 1),
            fetch("part41.1.m4s?sid=9", MediaKind::Part, (42, 0))
        );
        // Past its last part (fetched as a hint before it was known to be
        // the last): the next segment.
        assert_eq!(
            at(41, 2),
            fetch("part42.0.m4s?sid=9", MediaKind::Part, (42, 1))
        );
        // The segment being made: listed parts, then the hinted one.
        assert_eq!(
            at(42, 0),
            fetch("part42.0.m4s?sid=9", MediaKind::Part, (42, 1))
        );
        assert_eq!(
            at(42, 1),
            fetch("part42.1.m4s?sid=9", MediaKind::Hint, (42, 2))
        );
        // Beyond the hint: wait for the next playlist.
        assert_eq!(at(42, 2), MediaStep::Wait);
        // Expired from the window, or inside a segment whose parts are gone.
        assert_eq!(at(39, 0), MediaStep::Jump);
        assert_eq!(at(40, 1), MediaStep::Jump);
        // Beyond the segment being made: the sequence restarted lower.
        assert_eq!(at(43, 0), MediaStep::Jump);
    }

    #[test]
    fn ordinary_hls_waits_for_whole_segments() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:1.0,\nindex3.m4s\n#EXTINF:1.0,\nindex4.m4s\n";
        let pl = media(text);
        assert_eq!(start_position(&pl), Pos::new(4, 0));
        assert_eq!(
            next_media(&pl, Pos::new(4, 0)),
            fetch("index4.m4s", MediaKind::Segment, (5, 0))
        );
        assert_eq!(next_media(&pl, Pos::new(5, 0)), MediaStep::Wait);
        let ended = media(&format!("{text}#EXT-X-ENDLIST\n"));
        assert_eq!(next_media(&ended, Pos::new(5, 0)), MediaStep::End);
        // Parts without blocking reloads are not low-latency: segments.
        let pl = media(&ll(40, 0.6).replace("CAN-BLOCK-RELOAD=YES,", ""));
        assert_eq!(next_media(&pl, Pos::new(42, 0)), MediaStep::Wait);
        assert_eq!(start_position(&pl), Pos::new(41, 0));
    }

    #[test]
    fn start_is_the_last_independent_part_behind_the_hold_back() {
        // Parts start at 2.0 (41.0, independent), 2.2, 2.4 (42.0,
        // independent); the playlist ends at 2.6.
        assert_eq!(start_position(&media(&ll(40, 0.6))), Pos::new(41, 0));
        assert_eq!(start_position(&media(&ll(40, 0.1))), Pos::new(42, 0));
        // None old enough: the oldest independent part still listed.
        assert_eq!(start_position(&media(&ll(40, 5.0))), Pos::new(41, 0));
        // None marked: the newest segment.
        let plain = ll(40, 0.6).replace(",INDEPENDENT=YES", "");
        assert_eq!(start_position(&media(&plain)), Pos::new(41, 0));
    }

    /// A byte-range LL-HLS playlist: segment `m` without its parts, `m+1`
    /// complete with two parts, two parts of `m+2` (both independent) so
    /// far and the hint for its next range. `lens` are the four parts'
    /// sizes in bytes. Parts start at 0.4, 0.6, 0.8 and 1.0 s; it ends at
    /// 1.2 s.
    pub fn br(m: u64, hold_back: f64, lens: [u64; 4]) -> String {
        let (m1, m2) = (m + 1, m + 2);
        let [a, b, c, d] = lens;
        let part = |msn: u64, len: u64, at: u64, ind: bool| {
            format!(
                "#EXT-X-PART:DURATION=0.2,URI=\"seg{msn}.m4s?sid=77\",BYTERANGE=\"{len}@{at}\"{}\n",
                if ind { ",INDEPENDENT=YES" } else { "" }
            )
        };
        format!(
            "#EXTM3U
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={hold_back}
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:{m}
#EXT-X-MAP:URI=\"init.mp4?sid=77\"
#EXTINF:0.4,
seg{m}.m4s?sid=77
{}{}#EXTINF:0.4,
seg{m1}.m4s?sid=77
{}{}#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg{m2}.m4s?sid=77\",BYTERANGE-START={}
",
            part(m1, a, 0, true),
            part(m1, b, a, false),
            part(m2, c, 0, true),
            part(m2, d, c, true),
            c + d
        )
    }

    fn range(uri: &str, start: u64, then: u64) -> MediaStep {
        fetch(uri, MediaKind::Range { start }, (then, 0))
    }

    #[test]
    fn byte_range_parts_are_fetched_as_ranges_to_the_segment_end() {
        let pl = media(&br(40, 0.6, [100, 120, 90, 80]));
        assert_eq!(delivery(&pl), Delivery::ByteRanges);
        assert_eq!(delivery(&media(&ll(40, 0.6))), Delivery::Parts);
        let at = |msn, part| next_media(&pl, Pos::new(msn, part));
        // A complete segment: from byte 0, or from the part we start at.
        assert_eq!(at(41, 0), range("seg41.m4s?sid=77", 0, 42));
        assert_eq!(at(41, 1), range("seg41.m4s?sid=77", 100, 42));
        // Past its last part: the next segment, from its start.
        assert_eq!(at(41, 2), range("seg42.m4s?sid=77", 0, 43));
        // The segment being made: from a listed part, or from the hint's
        // start; either way the rest of the segment, then the next one.
        assert_eq!(at(42, 0), range("seg42.m4s?sid=77", 0, 43));
        assert_eq!(at(42, 1), range("seg42.m4s?sid=77", 90, 43));
        assert_eq!(at(42, 2), range("seg42.m4s?sid=77", 170, 43));
        // The segment after the one being made (its stream ended before
        // the playlist caught up): wait; further on the sequence restarted.
        assert_eq!(at(43, 0), MediaStep::Wait);
        assert_eq!(at(43, 1), MediaStep::Jump);
        assert_eq!(at(44, 0), MediaStep::Jump);
        // Expired, or inside a segment whose parts aged out.
        assert_eq!(at(39, 0), MediaStep::Jump);
        assert_eq!(at(40, 1), MediaStep::Jump);
        // The hint naming the next segment at byte 0 is fetched too.
        let hinted = media(&br(40, 0.6, [100, 120, 90, 80]).replace(
            "URI=\"seg42.m4s?sid=77\",BYTERANGE-START=170",
            "URI=\"seg43.m4s?sid=77\",BYTERANGE-START=0",
        ));
        let text = br(40, 0.6, [100, 120, 90, 80]);
        let complete42 = text.replace(
            "#EXT-X-PRELOAD-HINT",
            "#EXTINF:0.4,\nseg42.m4s?sid=77\n#EXT-X-PRELOAD-HINT",
        );
        let complete42 = media(&complete42.replace(
            "URI=\"seg42.m4s?sid=77\",BYTERANGE-START=170",
            "URI=\"seg43.m4s?sid=77\",BYTERANGE-START=0",
        ));
        assert_eq!(
            next_media(&complete42, Pos::new(43, 0)),
            range("seg43.m4s?sid=77", 0, 44)
        );
        // A hint for another position is not ours to fetch.
        assert_eq!(next_media(&hinted, Pos::new(42, 3)), MediaStep::Wait);
        let ended = media(&format!("{text}#EXT-X-ENDLIST\n"));
        assert_eq!(next_media(&ended, Pos::new(42, 2)), MediaStep::End);
    }

    #[test]
    fn byte_range_reloads_wait_for_the_next_segment() {
        let pl = media(&br(40, 0.6, [100, 120, 90, 80]));
        // Byte ranges: the first part of the segment after the one being
        // made; separate parts: the next unlisted part, as before.
        assert_eq!(reload_directive(&pl), Pos::new(43, 0));
        assert_eq!(reload_directive(&media(&ll(40, 0.6))), Pos::new(42, 1));
    }

    #[test]
    fn byte_range_start_and_resume() {
        // Hold-back 0.2 s: the last independent part starting by 1.0 s is
        // 42's second, at byte 90 of its segment.
        let lens = [100, 120, 90, 80];
        let pl = media(&br(40, 0.2, lens));
        assert_eq!(start_position(&pl), Pos::new(42, 1));
        assert_eq!(
            next_media(&pl, start_position(&pl)),
            range("seg42.m4s?sid=77", 90, 43)
        );
        assert_eq!(start_position(&media(&br(40, 0.6, lens))), Pos::new(41, 0));
        // A fetch that broke off goes on from its byte while the segment
        // is listed, complete or being made; jumps once it expired.
        let at = |msn: u64, offset| ResumePoint {
            msn,
            uri: format!("seg{msn}.m4s?sid=77"),
            offset,
        };
        assert_eq!(
            resume_media(&pl, &at(42, 133)),
            range("seg42.m4s?sid=77", 133, 43)
        );
        assert_eq!(
            resume_media(&pl, &at(41, 7)),
            range("seg41.m4s?sid=77", 7, 42)
        );
        assert_eq!(resume_media(&pl, &at(39, 7)), MediaStep::Jump);
        assert_eq!(resume_media(&pl, &at(43, 7)), MediaStep::Jump);
    }
}
