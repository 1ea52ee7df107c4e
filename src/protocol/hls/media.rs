//! The Low-Latency HLS media playlist (RFC 8216bis).
//!
//! One playlist serves both kinds of client: a legacy player ignores the
//! tags it does not know (SERVER-CONTROL, PART-INF, PART, PRELOAD-HINT) and
//! plays the complete segments it finds, each with its EXTINF and URI; a
//! low-latency player follows the parts and the hint. That is why complete
//! segments always keep their EXTINF line even when their parts are listed,
//! and why the version is only what the tags in use require.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use super::{Asset, MediaPlaylist, Segment, Skip, Template};
use crate::protocol::manifest::{date, millis_nearest, millis_up, secs3};

/// EXT-X-MAP outside an I-frame playlist needs version 6; fractional EXTINF
/// needs 3, so 6 covers every playlist that skips nothing.
const VERSION_BASE: u32 = 6;
/// EXT-X-SKIP needs version 9.
const VERSION_SKIP: u32 = 9;
/// An EXT-X-SKIP answering `_HLS_skip=v2` (date ranges skipped) needs 10.
const VERSION_SKIP_DATERANGES: u32 = 10;

/// How many target durations of the live edge keep their parts listed
/// (RFC 8216bis 6.2.2: parts SHOULD go once further than three).
const PART_WINDOW_TARGETS: u64 = 3;
/// HOLD-BACK is at least three target durations (4.4.3.8).
const HOLD_BACK_TARGETS: u64 = 3;
/// PART-HOLD-BACK: at least twice the part target, three times recommended.
const PART_HOLD_BACK_PARTS: u128 = 3;
/// The skip boundary is at least six target durations (4.4.3.8).
const SKIP_BOUNDARY_TARGETS: u64 = 6;

/// EXT-X-TARGETDURATION: whole seconds, rounded up, at least 1.
fn target_secs(target: Duration) -> u64 {
    (target.as_secs() + u64::from(target.subsec_nanos() > 0)).max(1)
}

/// How many of the oldest segments a delta update replaces: those that end
/// further than `boundary` before the end of the last complete segment
/// (6.2.5.1). A segment straddling the boundary is kept whole, and the last
/// segment is never skipped.
fn skippable(segments: &[Segment], boundary: Duration) -> usize {
    let mut after = Duration::ZERO;
    let mut kept = 0;
    for seg in segments.iter().rev() {
        if after > boundary {
            break;
        }
        kept += 1;
        after = after.saturating_add(seg.duration);
    }
    segments.len() - kept
}

/// Index of the first complete segment whose parts are listed: the oldest
/// one that ends within `window` of the end of the playlist (which is the
/// end of the last part of the segment in progress, when there is one).
fn first_with_parts(segments: &[Segment], current: Option<&Segment>, window: Duration) -> usize {
    let mut after: Duration = current
        .map(|c| c.parts.iter().map(|p| p.duration).sum())
        .unwrap_or_default();
    let mut first = segments.len();
    for (i, seg) in segments.iter().enumerate().rev() {
        if after > window {
            break;
        }
        first = i;
        after = after.saturating_add(seg.duration);
    }
    first
}

/// The date of every entry (complete segments, then the one in progress):
/// its own, or carried forward from an earlier dated segment, or back from a
/// later one, never across a discontinuity, where the timeline restarts.
/// This lets the first listed segment of a delta update, and every
/// discontinuity, carry a date even when only some segments were stamped.
fn dates(entries: &[&Segment]) -> Vec<Option<SystemTime>> {
    let mut forward = Vec::with_capacity(entries.len());
    let mut clock: Option<SystemTime> = None;
    for seg in entries {
        if seg.discontinuity {
            clock = None;
        }
        if seg.program_date_time.is_some() {
            clock = seg.program_date_time;
        }
        forward.push(clock);
        clock = clock.and_then(|t| t.checked_add(seg.duration));
    }
    let mut out = vec![None; entries.len()];
    let mut later: Option<SystemTime> = None;
    for (i, seg) in entries.iter().enumerate().rev() {
        let back = seg
            .program_date_time
            .or_else(|| later.and_then(|t| t.checked_sub(seg.duration)));
        out[i] = forward[i].or(back);
        later = if seg.discontinuity { None } else { back };
    }
    out
}

/// Renders the media playlist for one request.
///
/// Tags, in order: the header (version, target duration, server control,
/// part info, media and discontinuity sequences), EXT-X-SKIP for a delta
/// update, then per listed segment: EXT-X-DISCONTINUITY, EXT-X-MAP (on the
/// first listed segment and after each discontinuity), EXT-X-PROGRAM-DATE-TIME
/// (whenever known, and always on those two), the recent segments' EXT-X-PART
/// lines, and for complete segments EXTINF and the URI; then the preload
/// hint, and EXT-X-ENDLIST when the stream is over. With
/// [`MediaPlaylist::byteranges`] each part is a `BYTERANGE` of its
/// segment's file and the hint is the rest of the segment being made.
pub fn render_media(p: &MediaPlaylist) -> String {
    render_media_template(p).fill(p.query)
}

/// The media playlist with the places of the URIs' query marked (and
/// `p.query` unused): one rendering serves every player of a window state.
pub fn render_media_template(p: &MediaPlaylist) -> Template {
    let td = target_secs(p.target_duration);
    let part_target_ms = millis_up(p.part_target).max(1);
    let skip_until = Duration::from_secs(SKIP_BOUNDARY_TARGETS * td);
    // A finished playlist is always sent whole (6.2.5.1).
    let skipped = match p.skip {
        Skip::No => 0,
        _ if p.ended => 0,
        Skip::Yes | Skip::V2 => skippable(p.segments, skip_until),
    };
    let version = match p.skip {
        _ if skipped == 0 => VERSION_BASE,
        Skip::V2 => VERSION_SKIP_DATERANGES,
        _ => VERSION_SKIP,
    };
    debug_assert!(
        p.segments
            .iter()
            .chain(p.current)
            .enumerate()
            .all(|(i, s)| s.msn == p.media_sequence + i as u64),
        "segments must be consecutive from media_sequence"
    );

    let mut out = Template::with_capacity(320 + 160 * (p.segments.len() - skipped));
    // Writing to a Template cannot fail.
    macro_rules! put {
        ($($arg:tt)*) => {
            let _ = writeln!(out, $($arg)*);
        };
    }
    // A line that ends in a URI's closing text: the query goes before it.
    macro_rules! put_uri {
        ($before:expr, $after:expr) => {
            let _ = write!(out, "{}", $before);
            out.query();
            let _ = writeln!(out, "{}", $after);
        };
    }
    put!("#EXTM3U");
    put!("#EXT-X-VERSION:{version}");
    put!("#EXT-X-TARGETDURATION:{td}");
    put!(
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={},HOLD-BACK={},PART-HOLD-BACK={}",
        secs3(u128::from(SKIP_BOUNDARY_TARGETS * td) * 1000),
        secs3(u128::from(HOLD_BACK_TARGETS * td) * 1000),
        // From the rendered part target, so the promise holds for the value
        // the client reads.
        secs3(PART_HOLD_BACK_PARTS * part_target_ms),
    );
    put!("#EXT-X-PART-INF:PART-TARGET={}", secs3(part_target_ms));
    put!("#EXT-X-MEDIA-SEQUENCE:{}", p.media_sequence);
    put!("#EXT-X-DISCONTINUITY-SEQUENCE:{}", p.discontinuity_sequence);
    if skipped > 0 {
        let dateranges = if p.skip == Skip::V2 {
            ",RECENTLY-REMOVED-DATERANGES=\"\""
        } else {
            ""
        };
        put!("#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}{dateranges}");
    }

    let entries: Vec<&Segment> = p.segments.iter().chain(p.current).collect();
    let dates = dates(&entries);
    let window = Duration::from_secs(PART_WINDOW_TARGETS * td);
    let parts_from = first_with_parts(p.segments, p.current, window);
    for (i, seg) in entries.iter().enumerate().skip(skipped) {
        let first = i == skipped;
        let complete = i < p.segments.len();
        // These tags apply to the segment's first part too, so they come
        // before its first EXT-X-PART (4.4.4.9).
        if seg.discontinuity {
            put!("#EXT-X-DISCONTINUITY");
        }
        if first || seg.discontinuity {
            // Repeated after a discontinuity: a new publisher may bring new
            // codec parameters, and a client resets its parser there.
            let _ = write!(out, "#EXT-X-MAP:URI=\"{}", Asset::init_of(p.track));
            out.query();
            if let Some(g) = p.init_generation {
                out.joiner();
                let _ = write!(out, "g={g}");
            }
            let _ = writeln!(out, "\"");
        }
        let stamp = match seg.program_date_time {
            Some(t) => Some(t),
            None if first || seg.discontinuity => dates[i],
            None => None,
        };
        if let Some(t) = stamp {
            put!("#EXT-X-PROGRAM-DATE-TIME:{}", date(t));
        }
        if !complete || i >= parts_from {
            let mut offset = 0;
            for (index, part) in seg.parts.iter().enumerate() {
                let independent = if part.independent {
                    ",INDEPENDENT=YES"
                } else {
                    ""
                };
                let gap = if part.gap { ",GAP=YES" } else { "" };
                if p.byteranges {
                    put_uri!(
                        format_args!(
                            "#EXT-X-PART:DURATION={},URI=\"{}",
                            secs3(millis_nearest(part.duration)),
                            Asset::segment_of(seg.msn, p.track),
                        ),
                        format_args!("\",BYTERANGE=\"{}@{offset}\"{independent}{gap}", part.len)
                    );
                    offset += part.len;
                    continue;
                }
                put_uri!(
                    format_args!(
                        "#EXT-X-PART:DURATION={},URI=\"{}",
                        secs3(millis_nearest(part.duration)),
                        Asset::part_of(seg.msn, index as u32, p.track),
                    ),
                    format_args!("\"{independent}{gap}")
                );
            }
        }
        if complete {
            put!("#EXTINF:{},", secs3(millis_nearest(seg.duration)));
            put_uri!(Asset::segment_of(seg.msn, p.track), "");
        }
    }
    // A finished playlist hints nothing (4.4.5.3).
    if let (Some((msn, index)), false) = (p.preload_hint, p.ended) {
        if p.byteranges {
            // The rest of the segment from the hinted part on: its start is
            // the end of the parts before it (none, for a new segment).
            let start: u64 = entries.iter().find(|s| s.msn == msn).map_or(0, |s| {
                s.parts.iter().take(index as usize).map(|p| p.len).sum()
            });
            put_uri!(
                format_args!(
                    "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}",
                    Asset::segment_of(msn, p.track)
                ),
                format_args!("\",BYTERANGE-START={start}")
            );
        } else {
            put_uri!(
                format_args!(
                    "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}",
                    Asset::part_of(msn, index, p.track)
                ),
                "\""
            );
        }
    }
    if p.ended {
        put!("#EXT-X-ENDLIST");
    }
    out
}

#[cfg(test)]
mod tests;
