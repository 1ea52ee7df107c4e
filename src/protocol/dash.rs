//! The DASH MPD for a live stream, sans-IO: ISO/IEC 23009-1 with the
//! DASH-IF low-latency profile when segments are sent while they are made.
//!
//! DASH here is a second view of the files the HLS packager already makes:
//! the same `init.mp4` and `seg{msn}.m4s` (the MPD's `$Number$` is the HLS
//! media sequence number), so a stream is packaged once for both. The MPD
//! is one Period, one AdaptationSet and one Representation holding audio and
//! video together, as the fMP4 segments do, with a SegmentTimeline because
//! segments are cut on the publisher's keyframes and vary in length.
//!
//! Like the playlists, it is rendered from plain values: times are passed
//! in, never read, and every value that could come from outside (codecs,
//! the query suffix, the time URL) is escaped for XML.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::protocol::hls::Asset;
use crate::protocol::manifest::{
    date, iso_duration, millis_nearest, millis_up, query_suffix, secs3, xml_attr,
};

const PROFILE_LIVE: &str = "urn:mpeg:dash:profile:isoff-live:2011";
const PROFILE_LOW_LATENCY: &str = "http://www.dashif.org/guidelines/low-latency-live-v5";

/// One complete segment on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineSegment {
    /// `$Number$`: the segment's msn. Numbers are consecutive.
    pub number: u64,
    /// Start, in the timescale, on the stream's timeline (0 is
    /// `availability_start_time`).
    pub start: u64,
    /// Duration, in the timescale.
    pub duration: u64,
}

/// Where a client asks the server's clock (UTCTiming), so its idea of "now"
/// matches the one availability times are computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UtcTiming<'a> {
    /// `urn:mpeg:dash:utc:http-xsdate:2014`: the URL answers an
    /// `xs:dateTime`.
    HttpXsDate(&'a str),
    /// `urn:mpeg:dash:utc:http-iso:2014`: the URL answers an ISO 8601 date.
    HttpIso(&'a str),
}

impl UtcTiming<'_> {
    fn scheme_and_url(&self) -> (&'static str, &str) {
        match self {
            UtcTiming::HttpXsDate(url) => ("urn:mpeg:dash:utc:http-xsdate:2014", url),
            UtcTiming::HttpIso(url) => ("urn:mpeg:dash:utc:http-iso:2014", url),
        }
    }
}

/// A snapshot of one stream, as [`render_mpd`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct Mpd<'a> {
    /// When the stream's timeline started (its time 0).
    pub availability_start_time: SystemTime,
    /// When this version of the MPD was made.
    pub publish_time: SystemTime,
    /// Units per second of the timeline (the video track's, 90000).
    pub timescale: u32,
    /// Complete segments, oldest first.
    pub segments: &'a [TimelineSegment],
    pub max_segment_duration: Duration,
    pub min_buffer_time: Duration,
    pub suggested_presentation_delay: Duration,
    pub minimum_update_period: Duration,
    pub time_shift_buffer_depth: Duration,
    /// How long before its end a segment may be requested (chunked
    /// low-latency delivery: the server sends it as it is made). Set, the
    /// MPD says `availabilityTimeComplete="false"` and takes the DASH-IF
    /// low-latency profile.
    pub availability_time_offset: Option<Duration>,
    /// The latency a low-latency client should aim for (ServiceDescription);
    /// written only with `availability_time_offset`, while live.
    pub target_latency: Option<Duration>,
    /// RFC 6381 codecs of every track, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: &'a str,
    pub width_height: Option<(u16, u16)>,
    pub audio_sample_rate: Option<u32>,
    /// Bits per second.
    pub bandwidth: u64,
    pub utc_timing: UtcTiming<'a>,
    /// The stream is over: the MPD becomes `static`, with its duration.
    pub ended: bool,
    /// Appended to the initialization and media templates: empty, or
    /// starting with `?`.
    pub query: &'a str,
    /// Audio and video as separate adaptation sets (`init-v.mp4`,
    /// `seg$Number$-v.m4s`, and `-a`), which DASH players such as dash.js
    /// require; None serves the muxed segments as one representation.
    pub split: Option<SplitTracks<'a>>,
}

/// The codecs of each track when the MPD lists them apart.
#[derive(Debug, Clone, Copy)]
pub struct SplitTracks<'a> {
    pub video_codecs: &'a str,
    pub audio_codecs: &'a str,
    pub audio_bandwidth: u64,
}

/// The SegmentTimeline's `S` elements: a run of contiguous segments of
/// equal duration collapses into one with `r` repeats; `t` is written on the
/// first and wherever the timeline jumps (a gap after a publisher change).
fn timeline(segments: &[TimelineSegment]) -> String {
    let mut out = String::new();
    let mut i = 0;
    let mut expected_start: Option<u64> = None;
    while i < segments.len() {
        let s = segments[i];
        let mut repeats = 0;
        let mut end = s.start.saturating_add(s.duration);
        while let Some(next) = segments.get(i + 1 + repeats) {
            if next.duration != s.duration || next.start != end {
                break;
            }
            end = end.saturating_add(next.duration);
            repeats += 1;
        }
        out.push_str("<S");
        if expected_start != Some(s.start) {
            write!(out, " t=\"{}\"", s.start).expect("write to String");
        }
        write!(out, " d=\"{}\"", s.duration).expect("write to String");
        if repeats > 0 {
            write!(out, " r=\"{repeats}\"").expect("write to String");
        }
        out.push_str("/>");
        expected_start = Some(end);
        i += 1 + repeats;
    }
    out
}

/// A template URL with the query appended: `$` is the template escape
/// character, so one in the query is doubled.
fn template(name: &str, query: &str) -> String {
    xml_attr(&format!("{name}{}", query.replace('$', "$$"))).into_owned()
}

/// Renders the MPD.
///
/// While live: `type="dynamic"` with the update period, time-shift buffer
/// and presentation delay; with an availability time offset, also the
/// low-latency profile, `availabilityTimeComplete="false"`, a
/// ProducerReferenceTime tying media time 0 to the availability start, and
/// a ServiceDescription with the target latency. Once `ended`:
/// `type="static"` with `mediaPresentationDuration` and none of those.
/// With no complete segment yet the SegmentTimeline is left out; a client
/// then reloads after `minimumUpdatePeriod`.
pub fn render_mpd(m: &Mpd) -> String {
    let q = query_suffix(m.query);
    let timescale = m.timescale.max(1);
    let low_latency = m.availability_time_offset.filter(|_| !m.ended);
    debug_assert!(
        m.segments
            .windows(2)
            .all(|w| w[1].number == w[0].number + 1),
        "segment numbers must be consecutive"
    );

    let mut out = String::with_capacity(1536 + 24 * m.segments.len());
    // Writing to a String cannot fail.
    macro_rules! put {
        ($($arg:tt)*) => {
            let _ = write!(out, $($arg)*);
        };
    }
    put!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let profiles = if low_latency.is_some() {
        format!("{PROFILE_LIVE},{PROFILE_LOW_LATENCY}")
    } else {
        PROFILE_LIVE.to_string()
    };
    put!(
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"{profiles}\" type=\"{}\"",
        if m.ended { "static" } else { "dynamic" }
    );
    put!(
        " availabilityStartTime=\"{}\" publishTime=\"{}\"",
        date(m.availability_start_time),
        date(m.publish_time)
    );
    if m.ended {
        let end = m
            .segments
            .last()
            .map_or(0, |s| s.start.saturating_add(s.duration));
        let ms = u128::from(end) * 1000 / u128::from(timescale);
        put!(" mediaPresentationDuration=\"{}\"", iso_duration(ms));
    } else {
        put!(
            " minimumUpdatePeriod=\"{}\" timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\"",
            iso_duration(millis_nearest(m.minimum_update_period)),
            iso_duration(millis_nearest(m.time_shift_buffer_depth)),
            iso_duration(millis_nearest(m.suggested_presentation_delay)),
        );
    }
    put!(
        " maxSegmentDuration=\"{}\" minBufferTime=\"{}\">\n",
        // A promised maximum: rounded up.
        iso_duration(millis_up(m.max_segment_duration)),
        iso_duration(millis_nearest(m.min_buffer_time)),
    );
    // ServiceDescription precedes Period in the MPD's sequence.
    if let (Some(target), Some(_)) = (m.target_latency, low_latency) {
        put!(
            "  <ServiceDescription id=\"0\"><Latency referenceId=\"0\" target=\"{}\"/></ServiceDescription>\n",
            millis_nearest(target)
        );
    }
    put!("  <Period id=\"0\" start=\"PT0S\">\n");
    let (scheme, url) = m.utc_timing.scheme_and_url();
    if let Some(split) = &m.split {
        let url = xml_attr(url);
        let segment_template = |suffix: &str| -> String {
            let mut t = format!(
                "      <SegmentTemplate timescale=\"{timescale}\" initialization=\"{}\" media=\"{}\"",
                template(&format!("init-{suffix}.mp4"), &q),
                template(&format!("seg$Number$-{suffix}.m4s"), &q),
            );
            if let Some(first) = m.segments.first() {
                let _ = write!(t, " startNumber=\"{}\"", first.number);
            }
            if let Some(offset) = low_latency {
                let _ = write!(
                    t,
                    " availabilityTimeOffset=\"{}\" availabilityTimeComplete=\"false\"",
                    secs3(millis_nearest(offset))
                );
            }
            if m.segments.is_empty() {
                t.push_str("/>\n");
            } else {
                let _ = write!(
                    t,
                    ">\n        <SegmentTimeline>{}</SegmentTimeline>\n      </SegmentTemplate>\n",
                    timeline(m.segments)
                );
            }
            t
        };
        put!("    <AdaptationSet id=\"0\" contentType=\"video\" mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">\n");
        if low_latency.is_some() {
            put!(
                "      <ProducerReferenceTime id=\"0\" type=\"encoder\" wallClockTime=\"{}\" presentationTime=\"0\"><UTCTiming schemeIdUri=\"{scheme}\" value=\"{url}\"/></ProducerReferenceTime>\n",
                date(m.availability_start_time)
            );
        }
        put!("{}", segment_template("v"));
        put!(
            "      <Representation id=\"v\" bandwidth=\"{}\" codecs=\"{}\"",
            m.bandwidth.saturating_sub(split.audio_bandwidth).max(1),
            xml_attr(split.video_codecs)
        );
        if let Some((width, height)) = m.width_height {
            put!(" width=\"{width}\" height=\"{height}\"");
        }
        put!("/>\n    </AdaptationSet>\n");
        put!("    <AdaptationSet id=\"1\" contentType=\"audio\" mimeType=\"audio/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">\n");
        put!("{}", segment_template("a"));
        put!(
            "      <Representation id=\"a\" bandwidth=\"{}\" codecs=\"{}\"",
            split.audio_bandwidth.max(1),
            xml_attr(split.audio_codecs)
        );
        if let Some(rate) = m.audio_sample_rate {
            put!(" audioSamplingRate=\"{rate}\"");
        }
        put!("/>\n    </AdaptationSet>\n  </Period>\n");
        put!("  <UTCTiming schemeIdUri=\"{scheme}\" value=\"{url}\"/>\n</MPD>\n");
        return out;
    }
    put!(
        "    <AdaptationSet id=\"0\" mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">\n"
    );
    let url = xml_attr(url);
    if low_latency.is_some() {
        // Media time 0 was produced at the availability start time; lets a
        // client measure its latency from the media it holds.
        put!(
            "      <ProducerReferenceTime id=\"0\" type=\"encoder\" wallClockTime=\"{}\" presentationTime=\"0\"><UTCTiming schemeIdUri=\"{scheme}\" value=\"{url}\"/></ProducerReferenceTime>\n",
            date(m.availability_start_time)
        );
    }
    // The segments hold both tracks; say which components they carry.
    put!("      <ContentComponent id=\"1\" contentType=\"video\"/>\n");
    if m.audio_sample_rate.is_some() {
        put!("      <ContentComponent id=\"2\" contentType=\"audio\"/>\n");
    }
    put!(
        "      <SegmentTemplate timescale=\"{timescale}\" initialization=\"{}\" media=\"{}\"",
        template(&Asset::Init.to_string(), &q),
        template("seg$Number$.m4s", &q),
    );
    if let Some(first) = m.segments.first() {
        put!(" startNumber=\"{}\"", first.number);
    }
    if let Some(offset) = low_latency {
        put!(
            " availabilityTimeOffset=\"{}\" availabilityTimeComplete=\"false\"",
            secs3(millis_nearest(offset))
        );
    }
    if m.segments.is_empty() {
        put!("/>\n");
    } else {
        put!(
            ">\n        <SegmentTimeline>{}</SegmentTimeline>\n      </SegmentTemplate>\n",
            timeline(m.segments)
        );
    }
    put!(
        "      <Representation id=\"0\" bandwidth=\"{}\" codecs=\"{}\"",
        m.bandwidth,
        xml_attr(m.codecs)
    );
    if let Some((width, height)) = m.width_height {
        put!(" width=\"{width}\" height=\"{height}\"");
    }
    if let Some(rate) = m.audio_sample_rate {
        put!(" audioSamplingRate=\"{rate}\"");
    }
    put!("/>\n    </AdaptationSet>\n  </Period>\n");
    // UTCTiming follows Period in the MPD's sequence.
    put!("  <UTCTiming schemeIdUri=\"{scheme}\" value=\"{url}\"/>\n</MPD>\n");
    out
}

#[cfg(test)]
mod tests;
