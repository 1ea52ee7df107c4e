use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;
use crate::protocol::hls::Part;

mod tracks;

const Q: &str = "?token=abc&sid=42";

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_772_366_400) // 2026-03-01T12:00:00Z
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A segment of `parts` parts of `part_ms` each, the first independent.
fn seg(msn: u64, parts: usize, part_ms: u64) -> Segment {
    Segment {
        msn,
        duration: ms(part_ms * parts as u64),
        discontinuity: false,
        program_date_time: None,
        parts: (0..parts)
            .map(|i| Part {
                duration: ms(part_ms),
                independent: i == 0,
                gap: false,
                len: 1000,
            })
            .collect(),
    }
}

/// `n` segments of 2 s (ten 200 ms parts) from msn 100, the first dated.
fn window(n: usize) -> Vec<Segment> {
    let mut segs: Vec<Segment> = (0..n).map(|i| seg(100 + i as u64, 10, 200)).collect();
    if let Some(first) = segs.first_mut() {
        first.program_date_time = Some(t0());
    }
    segs
}

fn playlist<'a>(segments: &'a [Segment], current: Option<&'a Segment>) -> MediaPlaylist<'a> {
    MediaPlaylist {
        target_duration: Duration::from_secs(2),
        part_target: ms(200),
        media_sequence: segments.first().or(current).map_or(0, |s| s.msn),
        discontinuity_sequence: 0,
        segments,
        current,
        preload_hint: current.map(|c| (c.msn, c.parts.len() as u32)),
        skip: Skip::No,
        ended: false,
        query: Q,
        init_generation: None,
        track: None,
        byteranges: false,
    }
}

/// The value of `name` in a tag's attribute list (quotes kept).
fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let list = line.split_once(':')?.1;
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')? + 2;
            (&after[..end], after[end..].trim_start_matches(','))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], after[end..].trim_start_matches(','))
        };
        if key == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

fn tag<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

fn secs(value: &str) -> f64 {
    value
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {value}"))
}

/// Every URI the playlist names: URI lines and URI="..." attributes.
fn uris(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if !line.starts_with('#') && !line.is_empty() {
            out.push(line.to_string());
        } else if let Some(v) = attr(line, "URI") {
            out.push(v.trim_matches('"').to_string());
        }
    }
    out
}

#[test]
fn a_live_playlist_carries_every_low_latency_tag_in_order() {
    let mut segs = window(2);
    segs[1].program_date_time = Some(t0() + Duration::from_secs(2));
    let current = seg(102, 3, 200);
    let text = render_media(&playlist(&segs, Some(&current)));
    let mut expected = String::from(
        "#EXTM3U\n\
         #EXT-X-VERSION:6\n\
         #EXT-X-TARGETDURATION:2\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.000,HOLD-BACK=6.000,PART-HOLD-BACK=0.600\n\
         #EXT-X-PART-INF:PART-TARGET=0.200\n\
         #EXT-X-MEDIA-SEQUENCE:100\n\
         #EXT-X-DISCONTINUITY-SEQUENCE:0\n\
         #EXT-X-MAP:URI=\"init.mp4?token=abc&sid=42\"\n\
         #EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:00.000Z\n",
    );
    for msn in [100, 101] {
        if msn == 101 {
            expected.push_str("#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:02.000Z\n");
        }
        for i in 0..10 {
            let ind = if i == 0 { ",INDEPENDENT=YES" } else { "" };
            expected.push_str(&format!(
                "#EXT-X-PART:DURATION=0.200,URI=\"part{msn}.{i}.m4s{Q}\"{ind}\n"
            ));
        }
        expected.push_str(&format!("#EXTINF:2.000,\nseg{msn}.m4s{Q}\n"));
    }
    for i in 0..3 {
        let ind = if i == 0 { ",INDEPENDENT=YES" } else { "" };
        expected.push_str(&format!(
            "#EXT-X-PART:DURATION=0.200,URI=\"part102.{i}.m4s{Q}\"{ind}\n"
        ));
    }
    expected.push_str(&format!(
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part102.3.m4s{Q}\"\n"
    ));
    assert_eq!(text, expected);
}

#[test]
fn the_version_is_what_the_tags_in_use_need() {
    let segs = window(20);
    let mut p = playlist(&segs, None);
    assert_eq!(
        tag(&render_media(&p), "#EXT-X-VERSION"),
        Some("#EXT-X-VERSION:6")
    );
    p.skip = Skip::Yes;
    assert_eq!(
        tag(&render_media(&p), "#EXT-X-VERSION"),
        Some("#EXT-X-VERSION:9")
    );
    p.skip = Skip::V2;
    let text = render_media(&p);
    assert_eq!(tag(&text, "#EXT-X-VERSION"), Some("#EXT-X-VERSION:10"));
    assert_eq!(
        attr(
            tag(&text, "#EXT-X-SKIP").unwrap(),
            "RECENTLY-REMOVED-DATERANGES"
        ),
        Some("\"\"")
    );
    // A skip request with nothing old enough to skip is a full playlist.
    let short = window(3);
    let mut p = playlist(&short, None);
    p.skip = Skip::Yes;
    let text = render_media(&p);
    assert_eq!(tag(&text, "#EXT-X-VERSION"), Some("#EXT-X-VERSION:6"));
    assert_eq!(tag(&text, "#EXT-X-SKIP"), None);
}

#[test]
fn hold_backs_and_the_skip_boundary_keep_their_minimums() {
    for (target, part_target) in [
        (ms(2000), ms(200)),
        (ms(1500), ms(333)),
        (ms(4001), Duration::from_micros(200_400)),
        (ms(6000), ms(1000)),
    ] {
        let segs = window(2);
        let p = MediaPlaylist {
            target_duration: target,
            part_target,
            ..playlist(&segs, None)
        };
        let text = render_media(&p);
        let td: u64 = tag(&text, "#EXT-X-TARGETDURATION:").unwrap()[22..]
            .parse()
            .unwrap();
        assert_eq!(td, target.as_secs_f64().ceil() as u64, "{text}");
        let control = tag(&text, "#EXT-X-SERVER-CONTROL:").unwrap();
        let pt = secs(attr(tag(&text, "#EXT-X-PART-INF:").unwrap(), "PART-TARGET").unwrap());
        assert_eq!(attr(control, "CAN-BLOCK-RELOAD"), Some("YES"));
        assert!(pt >= part_target.as_secs_f64(), "{text}");
        assert!(
            secs(attr(control, "HOLD-BACK").unwrap()) >= 3.0 * td as f64,
            "{text}"
        );
        assert!(
            secs(attr(control, "CAN-SKIP-UNTIL").unwrap()) >= 6.0 * td as f64,
            "{text}"
        );
        let phb = secs(attr(control, "PART-HOLD-BACK").unwrap());
        assert!(phb >= 3.0 * pt - 1e-9, "{phb} < 3 × {pt}\n{text}");
    }
}

#[test]
fn the_target_duration_is_whole_seconds_rounded_up_and_at_least_one() {
    let segs = window(1);
    for (target, expected) in [(ms(0), 1), (ms(999), 1), (ms(1000), 1), (ms(1001), 2)] {
        let p = MediaPlaylist {
            target_duration: target,
            ..playlist(&segs, None)
        };
        let text = render_media(&p);
        assert_eq!(
            tag(&text, "#EXT-X-TARGETDURATION:"),
            Some(format!("#EXT-X-TARGETDURATION:{expected}").as_str())
        );
    }
}

#[test]
fn a_delta_update_skips_segments_past_the_boundary_only() {
    // Twenty 2 s segments, target 2 s: the boundary is 12 s. Segment i ends
    // (19 - i) × 2 s before the last one ends; those ending more than 12 s
    // before are skipped: i = 0..=12. Segment 13 ends exactly 12 s before
    // and stays.
    let segs = window(20);
    let current = seg(120, 2, 200);
    let mut p = playlist(&segs, Some(&current));
    p.skip = Skip::Yes;
    p.discontinuity_sequence = 4;
    let text = render_media(&p);
    assert_eq!(
        tag(&text, "#EXT-X-SKIP"),
        Some("#EXT-X-SKIP:SKIPPED-SEGMENTS=13")
    );
    assert_eq!(
        tag(&text, "#EXT-X-MEDIA-SEQUENCE"),
        Some("#EXT-X-MEDIA-SEQUENCE:100")
    );
    assert_eq!(
        tag(&text, "#EXT-X-DISCONTINUITY-SEQUENCE"),
        Some("#EXT-X-DISCONTINUITY-SEQUENCE:4")
    );
    assert_eq!(text.matches("#EXTINF").count(), 7);
    assert!(!text.contains("seg112.m4s"));
    // The first listed segment still has its map and its date (carried
    // forward from segment 100: 13 × 2 s later), before anything else of it.
    let lines: Vec<&str> = text.lines().collect();
    let skip_at = lines
        .iter()
        .position(|l| l.starts_with("#EXT-X-SKIP"))
        .unwrap();
    assert_eq!(
        lines[skip_at + 1],
        format!("#EXT-X-MAP:URI=\"init.mp4{Q}\"")
    );
    assert_eq!(
        lines[skip_at + 2],
        "#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:26.000Z"
    );
    assert!(
        lines[skip_at + 3].starts_with("#EXT-X-PART:") || lines[skip_at + 3] == "#EXTINF:2.000,"
    );
    assert_eq!(
        lines.iter().find(|l| l.starts_with("seg")),
        Some(&format!("seg113.m4s{Q}").as_str())
    );
    assert_eq!(text.matches("#EXT-X-MAP").count(), 1);
}

#[test]
fn a_finished_playlist_is_never_a_delta_update() {
    let segs = window(20);
    let mut p = playlist(&segs, None);
    p.skip = Skip::V2;
    p.ended = true;
    let text = render_media(&p);
    assert_eq!(tag(&text, "#EXT-X-SKIP"), None);
    assert_eq!(text.matches("#EXTINF").count(), 20);
    assert_eq!(tag(&text, "#EXT-X-VERSION"), Some("#EXT-X-VERSION:6"));
}

#[test]
fn parts_are_listed_only_near_the_live_edge() {
    // Ten 2 s segments and 0.4 s of the next: the end of segment i is
    // 0.4 + (9 - i) × 2 s from the end, within 3 × 2 s for i >= 7.
    let segs = window(10);
    let current = seg(110, 2, 200);
    let text = render_media(&playlist(&segs, Some(&current)));
    for msn in 100..=110u64 {
        let listed = text.contains(&format!("URI=\"part{msn}.0.m4s"));
        assert_eq!(listed, msn >= 107, "parts of {msn}\n{text}");
    }
    // Every complete segment keeps its EXTINF and URI, listed parts or not.
    assert_eq!(text.matches("#EXTINF:2.000,").count(), 10);
}

#[test]
fn the_preload_hint_and_the_endlist_exclude_each_other() {
    let segs = window(3);
    let current = seg(103, 1, 200);
    let mut p = playlist(&segs, Some(&current));
    let live = render_media(&p);
    assert_eq!(
        tag(&live, "#EXT-X-PRELOAD-HINT"),
        Some(format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part103.1.m4s{Q}\"").as_str())
    );
    assert!(!live.contains("#EXT-X-ENDLIST"));
    assert!(live.ends_with(&format!("URI=\"part103.1.m4s{Q}\"\n")));
    p.current = None;
    p.ended = true;
    let done = render_media(&p);
    assert!(!done.contains("#EXT-X-PRELOAD-HINT"), "{done}");
    assert!(done.ends_with("#EXT-X-ENDLIST\n"), "{done}");
    assert_eq!(done.matches("#EXT-X-ENDLIST").count(), 1);
}

#[test]
fn discontinuities_restate_the_map_and_the_date_before_their_parts() {
    let mut segs = window(4);
    // Publisher change at 102: its date is carried back from 103's.
    segs[2].discontinuity = true;
    segs[3].program_date_time = Some(t0() + Duration::from_secs(60));
    // And another in the segment in progress, with its own date.
    let mut current = seg(104, 2, 200);
    current.discontinuity = true;
    current.program_date_time = Some(t0() + Duration::from_secs(90));
    let mut p = playlist(&segs, Some(&current));
    p.discontinuity_sequence = 7;
    let text = render_media(&p);
    let lines: Vec<&str> = text.lines().collect();
    let discs: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == "#EXT-X-DISCONTINUITY")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(discs.len(), 2, "{text}");
    let map = format!("#EXT-X-MAP:URI=\"init.mp4{Q}\"");
    assert_eq!(lines[discs[0] + 1], map);
    assert_eq!(
        lines[discs[0] + 2],
        "#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:58.000Z"
    );
    assert!(lines[discs[0] + 3].contains("part102.0.m4s"), "{text}");
    assert_eq!(lines[discs[1] + 1], map);
    assert_eq!(
        lines[discs[1] + 2],
        "#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:01:30.000Z"
    );
    assert!(lines[discs[1] + 3].contains("part104.0.m4s"), "{text}");
    // 101 has no date of its own and is neither first nor a discontinuity:
    // players extrapolate it, so no tag is written for it.
    assert_eq!(text.matches("#EXT-X-PROGRAM-DATE-TIME").count(), 4);
    // The first segment's date and map come first of all.
    let first_seg = lines
        .iter()
        .position(|l| l.starts_with("#EXT-X-PART:") || l.starts_with("#EXTINF"))
        .unwrap();
    assert_eq!(lines[first_seg - 2], map);
    assert_eq!(
        lines[first_seg - 1],
        "#EXT-X-PROGRAM-DATE-TIME:2026-03-01T12:00:00.000Z"
    );
}

#[test]
fn a_date_is_never_carried_across_a_discontinuity() {
    let mut segs = window(3);
    segs[1].discontinuity = true;
    let text = render_media(&playlist(&segs, None));
    // 100 is dated; 101 starts a new timeline and nothing in it is dated.
    assert_eq!(
        text.matches("#EXT-X-PROGRAM-DATE-TIME").count(),
        1,
        "{text}"
    );
}

#[test]
fn every_uri_carries_the_query() {
    let segs = window(4);
    let current = seg(104, 2, 200);
    let text = render_media(&playlist(&segs, Some(&current)));
    let all = uris(&text);
    // init, 4 segments, the parts of the last three (100 ends 6.4 s from
    // the end) and of the segment in progress, the hint.
    assert_eq!(all.len(), 1 + 4 + 32 + 1, "{text}");
    for uri in &all {
        assert!(uri.ends_with(Q), "{uri}");
    }
    let bare = render_media(&MediaPlaylist {
        query: "",
        ..playlist(&segs, Some(&current))
    });
    assert!(!bare.contains('?'), "{bare}");
    assert_eq!(uris(&bare).len(), all.len());
}

#[test]
fn a_hostile_query_cannot_break_a_line_or_an_attribute() {
    let segs = window(2);
    let p = MediaPlaylist {
        query: "?t=a\"b\nc",
        ..playlist(&segs, None)
    };
    let text = render_media(&p);
    let normal = render_media(&playlist(&segs, None));
    assert_eq!(text.lines().count(), normal.lines().count());
    for uri in uris(&text) {
        assert!(uri.ends_with("?t=a%22b%0Ac"), "{uri}");
    }
}

#[test]
fn a_legacy_client_sees_an_ordinary_playlist() {
    let segs = window(5);
    let current = seg(105, 4, 200);
    let text = render_media(&playlist(&segs, Some(&current)));
    let legacy: Vec<&str> = text
        .lines()
        .filter(|l| {
            ![
                "#EXT-X-PART",
                "#EXT-X-PRELOAD-HINT",
                "#EXT-X-SERVER-CONTROL",
            ]
            .iter()
            .any(|t| l.starts_with(t))
        })
        .collect();
    let mut media = Vec::new();
    for (i, l) in legacy.iter().enumerate() {
        if !l.starts_with('#') {
            assert!(legacy[i - 1].starts_with("#EXTINF:"), "{l} has no EXTINF");
            media.push(*l);
        }
    }
    let expected: Vec<String> = (100..105).map(|m| format!("seg{m}.m4s{Q}")).collect();
    assert_eq!(media, expected);
    assert!(legacy.iter().any(|l| l.starts_with("#EXT-X-MAP:")));
}

#[test]
fn durations_have_three_decimals_as_given() {
    let mut segs = window(1);
    segs[0].duration = Duration::from_micros(2_002_400);
    segs[0].parts[9].duration = Duration::from_micros(202_600);
    let text = render_media(&playlist(&segs, None));
    assert!(text.contains("#EXTINF:2.002,\n"), "{text}");
    assert!(
        text.contains("#EXT-X-PART:DURATION=0.203,URI=\"part100.9.m4s"),
        "{text}"
    );
}

#[test]
fn a_window_with_only_a_segment_in_progress_lists_its_parts() {
    let mut current = seg(0, 2, 200);
    current.program_date_time = Some(t0());
    let text = render_media(&playlist(&[], Some(&current)));
    assert!(!text.contains("#EXTINF"));
    let lines: Vec<&str> = text.lines().collect();
    let map = lines
        .iter()
        .position(|l| l.starts_with("#EXT-X-MAP"))
        .unwrap();
    assert!(lines[map + 1].starts_with("#EXT-X-PROGRAM-DATE-TIME:"));
    assert!(lines[map + 2].starts_with("#EXT-X-PART:DURATION=0.200,URI=\"part0.0.m4s"));
    assert_eq!(
        tag(&text, "#EXT-X-PRELOAD-HINT"),
        Some(format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part0.2.m4s{Q}\"").as_str())
    );
}

fn any_window() -> impl Strategy<Value = (Vec<Segment>, Option<Segment>, u8, bool)> {
    let seg = (
        1u64..3000,
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec((1u64..400, any::<bool>()), 0..12),
    );
    (
        proptest::collection::vec(seg.clone(), 0..40),
        proptest::option::of(seg),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(|(segs, current, skip, ended)| {
            let build =
                |msn: u64, (dur, disc, dated, parts): (u64, bool, bool, Vec<(u64, bool)>)| {
                    Segment {
                        msn,
                        duration: ms(dur),
                        discontinuity: disc,
                        program_date_time: dated.then(|| t0() + ms(msn * 1000)),
                        parts: parts
                            .into_iter()
                            .map(|(d, independent)| Part {
                                duration: ms(d),
                                independent,
                                gap: false,
                                len: 1000,
                            })
                            .collect(),
                    }
                };
            let n = segs.len() as u64;
            let segs: Vec<Segment> = segs
                .into_iter()
                .enumerate()
                .map(|(i, s)| build(50 + i as u64, s))
                .collect();
            (segs, current.map(|c| build(50 + n, c)), skip, ended)
        })
}

proptest! {
    #[test]
    fn every_window_renders_a_consistent_playlist((segs, current, skip, ended) in any_window()) {
        let skip = [Skip::No, Skip::Yes, Skip::V2][skip as usize];
        let p = MediaPlaylist {
            skip,
            ended,
            media_sequence: 50,
            preload_hint: Some((99, 0)),
            ..playlist(&segs, current.as_ref())
        };
        let text = render_media(&p);
        let skipped: usize = tag(&text, "#EXT-X-SKIP:")
            .map(|l| attr(l, "SKIPPED-SEGMENTS").unwrap().parse().unwrap())
            .unwrap_or(0);
        // Every complete segment is either listed or counted as skipped.
        prop_assert_eq!(text.matches("#EXTINF:").count() + skipped, segs.len());
        prop_assert!(skipped == 0 || (!ended && skip != Skip::No));
        let version: u32 = tag(&text, "#EXT-X-VERSION:").unwrap()[15..].parse().unwrap();
        prop_assert_eq!(version >= 9, skipped > 0);
        prop_assert_eq!(text.contains("#EXT-X-PRELOAD-HINT"), !ended);
        prop_assert_eq!(text.contains("#EXT-X-ENDLIST"), ended);
        for uri in uris(&text) {
            prop_assert!(uri.ends_with(Q), "{}", uri);
        }
        // The map comes before any media of the first listed segment.
        let lines: Vec<&str> = text.lines().collect();
        let first_media = lines
            .iter()
            .position(|l| l.starts_with("#EXT-X-PART:") || l.starts_with("#EXTINF"));
        if let Some(at) = first_media {
            let map = lines.iter().position(|l| l.starts_with("#EXT-X-MAP:"));
            prop_assert!(map.is_some_and(|m| m < at), "{}", text);
        }
        // Once a complete segment's parts are listed, every later complete
        // segment that has parts has them listed too.
        let mut seen_parts = false;
        for s in &segs[skipped..] {
            let listed = text.contains(&format!("URI=\"part{}.0.m4s", s.msn));
            if seen_parts && !s.parts.is_empty() {
                prop_assert!(listed, "parts of {} dropped after later ones\n{}", s.msn, text);
            }
            seen_parts |= listed;
        }
    }
}

#[test]
fn the_init_uri_carries_its_generation_after_the_query() {
    let segs = window(1);
    let p = MediaPlaylist {
        init_generation: Some(2),
        ..playlist(&segs, None)
    };
    let text = render_media(&p);
    assert!(
        text.contains(&format!("#EXT-X-MAP:URI=\"init.mp4{Q}&g=2\"\n")),
        "{text}"
    );
    let bare = render_media(&MediaPlaylist { query: "", ..p });
    assert!(bare.contains("#EXT-X-MAP:URI=\"init.mp4?g=2\"\n"), "{bare}");
}

#[test]
fn one_template_serves_every_query() {
    let segs = window(3);
    let current = segs[2].clone();
    let p = playlist(&segs[..2], Some(&current));
    let template = render_media_template(&p);
    for q in ["", "?sid=1", "?token=a%20b&sid=99", "?t=a\"b\nc"] {
        assert_eq!(
            template.fill(q),
            render_media(&MediaPlaylist { query: q, ..p })
        );
    }
}

#[test]
fn byte_range_parts_address_their_segment_and_the_hint_is_the_rest_of_it() {
    let segs = window(2);
    let mut current = seg(102, 3, 200);
    current.parts[1].len = 700;
    let p = MediaPlaylist {
        byteranges: true,
        ..playlist(&segs, Some(&current))
    };
    let text = render_media(&p);
    let parts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:") && l.contains("seg102"))
        .collect();
    assert_eq!(parts.len(), 3, "{text}");
    assert_eq!(
        attr(parts[0], "URI"),
        Some("\"seg102.m4s?token=abc&sid=42\"")
    );
    assert_eq!(attr(parts[0], "BYTERANGE"), Some("\"1000@0\""));
    assert_eq!(attr(parts[1], "BYTERANGE"), Some("\"700@1000\""));
    assert_eq!(attr(parts[2], "BYTERANGE"), Some("\"1000@1700\""));
    assert!(!text.contains("part10"), "no part files: {text}");
    let hint = tag(&text, "#EXT-X-PRELOAD-HINT:").unwrap();
    assert_eq!(attr(hint, "URI"), Some("\"seg102.m4s?token=abc&sid=42\""));
    assert_eq!(attr(hint, "BYTERANGE-START"), Some("2700"));
    assert_eq!(attr(hint, "BYTERANGE-LENGTH"), None);
    // A hint for a segment not begun yet starts at its first byte.
    let p = MediaPlaylist {
        byteranges: true,
        preload_hint: Some((103, 0)),
        ..playlist(&segs, Some(&current))
    };
    let text = render_media(&p);
    let hint = tag(&text, "#EXT-X-PRELOAD-HINT:").unwrap();
    assert_eq!(attr(hint, "URI"), Some("\"seg103.m4s?token=abc&sid=42\""));
    assert_eq!(attr(hint, "BYTERANGE-START"), Some("0"));
    // Complete segments keep their whole-file line for legacy players.
    assert!(text.contains("#EXTINF:2.000,\nseg101.m4s?token=abc&sid=42\n"));
}
