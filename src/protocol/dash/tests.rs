use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_772_366_400) // 2026-03-01T12:00:00Z
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Segments of `secs` seconds at 90 kHz from `number`, contiguous.
fn run(number: u64, start: u64, durations: &[u64]) -> Vec<TimelineSegment> {
    let mut t = start;
    durations
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let s = TimelineSegment {
                number: number + i as u64,
                start: t,
                duration: d,
            };
            t += d;
            s
        })
        .collect()
}

fn mpd(segments: &[TimelineSegment]) -> Mpd<'_> {
    Mpd {
        availability_start_time: t0(),
        publish_time: t0() + Duration::from_secs(30),
        timescale: 90_000,
        segments,
        max_segment_duration: Duration::from_micros(2_000_400),
        min_buffer_time: ms(1000),
        suggested_presentation_delay: ms(3000),
        minimum_update_period: ms(2000),
        time_shift_buffer_depth: ms(30_000),
        availability_time_offset: Some(ms(1800)),
        target_latency: Some(ms(3500)),
        codecs: "avc1.64001f,mp4a.40.2",
        width_height: Some((1280, 720)),
        audio_sample_rate: Some(48_000),
        bandwidth: 2_500_000,
        utc_timing: UtcTiming::HttpXsDate("/time"),
        ended: false,
        query: "?token=abc&sid=42",
        split: None,
    }
}

fn parse(text: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("not well-formed: {e}\n{text}"))
}

fn element<'a, 'i>(doc: &'a roxmltree::Document<'i>, name: &str) -> roxmltree::Node<'a, 'i> {
    doc.descendants()
        .find(|n| n.has_tag_name(name))
        .unwrap_or_else(|| panic!("no <{name}>"))
}

/// The segments a client reads back from the timeline: (number, start, d).
fn read_timeline(doc: &roxmltree::Document) -> Vec<(u64, u64, u64)> {
    let template = element(doc, "SegmentTemplate");
    let mut number: u64 = template.attribute("startNumber").unwrap().parse().unwrap();
    let mut t = 0;
    let mut out = Vec::new();
    for s in doc.descendants().filter(|n| n.has_tag_name("S")) {
        if let Some(start) = s.attribute("t") {
            t = start.parse().unwrap();
        }
        let d: u64 = s.attribute("d").unwrap().parse().unwrap();
        let r: u64 = s.attribute("r").map_or(0, |r| r.parse().unwrap());
        for _ in 0..=r {
            out.push((number, t, d));
            number += 1;
            t += d;
        }
    }
    out
}

#[test]
fn a_low_latency_live_mpd_is_complete_and_in_schema_order() {
    let segs = run(100, 900_000, &[180_000, 180_000, 180_000, 171_000]);
    let text = render_mpd(&mpd(&segs));
    assert_eq!(
        text,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
         profiles=\"urn:mpeg:dash:profile:isoff-live:2011,http://www.dashif.org/guidelines/low-latency-live-v5\" \
         type=\"dynamic\" availabilityStartTime=\"2026-03-01T12:00:00.000Z\" \
         publishTime=\"2026-03-01T12:00:30.000Z\" minimumUpdatePeriod=\"PT2.000S\" \
         timeShiftBufferDepth=\"PT30.000S\" suggestedPresentationDelay=\"PT3.000S\" \
         maxSegmentDuration=\"PT2.001S\" minBufferTime=\"PT1.000S\">\n  \
         <ServiceDescription id=\"0\"><Latency referenceId=\"0\" target=\"3500\"/></ServiceDescription>\n  \
         <Period id=\"0\" start=\"PT0S\">\n    \
         <AdaptationSet id=\"0\" mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">\n      \
         <ProducerReferenceTime id=\"0\" type=\"encoder\" wallClockTime=\"2026-03-01T12:00:00.000Z\" presentationTime=\"0\">\
         <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-xsdate:2014\" value=\"/time\"/></ProducerReferenceTime>\n      \
         <ContentComponent id=\"1\" contentType=\"video\"/>\n      \
         <ContentComponent id=\"2\" contentType=\"audio\"/>\n      \
         <SegmentTemplate timescale=\"90000\" initialization=\"init.mp4?token=abc&amp;sid=42\" \
         media=\"seg$Number$.m4s?token=abc&amp;sid=42\" startNumber=\"100\" \
         availabilityTimeOffset=\"1.800\" availabilityTimeComplete=\"false\">\n        \
         <SegmentTimeline><S t=\"900000\" d=\"180000\" r=\"2\"/><S d=\"171000\"/></SegmentTimeline>\n      \
         </SegmentTemplate>\n      \
         <Representation id=\"0\" bandwidth=\"2500000\" codecs=\"avc1.64001f,mp4a.40.2\" \
         width=\"1280\" height=\"720\" audioSamplingRate=\"48000\"/>\n    \
         </AdaptationSet>\n  </Period>\n  \
         <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-xsdate:2014\" value=\"/time\"/>\n</MPD>\n"
    );
    let doc = parse(&text);
    assert_eq!(
        read_timeline(&doc),
        segs.iter()
            .map(|s| (s.number, s.start, s.duration))
            .collect::<Vec<_>>()
    );
}

#[test]
fn the_timeline_restates_t_only_where_it_jumps() {
    // A gap (publisher change) after 101, then unequal durations.
    let mut segs = run(100, 0, &[90_000, 90_000]);
    segs.extend(run(102, 450_000, &[90_000, 90_000, 45_000, 45_000]));
    assert_eq!(
        timeline(&segs),
        "<S t=\"0\" d=\"90000\" r=\"1\"/><S t=\"450000\" d=\"90000\" r=\"1\"/><S d=\"45000\" r=\"1\"/>"
    );
    assert_eq!(timeline(&run(7, 5, &[3])), "<S t=\"5\" d=\"3\"/>");
    assert_eq!(timeline(&[]), "");
}

#[test]
fn a_finished_stream_is_a_static_mpd_with_its_duration() {
    let segs = run(0, 0, &[180_000, 180_000, 135_000]);
    let m = Mpd {
        ended: true,
        ..mpd(&segs)
    };
    let text = render_mpd(&m);
    let doc = parse(&text);
    let root = doc.root_element();
    assert_eq!(root.attribute("type"), Some("static"));
    assert_eq!(
        root.attribute("mediaPresentationDuration"),
        Some("PT5.500S")
    );
    for gone in [
        "minimumUpdatePeriod",
        "timeShiftBufferDepth",
        "suggestedPresentationDelay",
    ] {
        assert_eq!(root.attribute(gone), None, "{gone}");
    }
    assert_eq!(
        root.attribute("profiles"),
        Some("urn:mpeg:dash:profile:isoff-live:2011")
    );
    assert!(!text.contains("availabilityTimeOffset"));
    assert!(!text.contains("ServiceDescription"));
    assert!(!text.contains("ProducerReferenceTime"));
    assert_eq!(read_timeline(&doc).len(), 3);
}

#[test]
fn without_an_availability_offset_the_mpd_is_plain_live() {
    let segs = run(0, 0, &[180_000]);
    let m = Mpd {
        availability_time_offset: None,
        utc_timing: UtcTiming::HttpIso("https://example.com/time?iso"),
        ..mpd(&segs)
    };
    let text = render_mpd(&m);
    let doc = parse(&text);
    assert_eq!(doc.root_element().attribute("type"), Some("dynamic"));
    assert_eq!(
        doc.root_element().attribute("profiles"),
        Some("urn:mpeg:dash:profile:isoff-live:2011")
    );
    assert!(!text.contains("availabilityTimeComplete"));
    assert!(!text.contains("ServiceDescription"));
    let utc = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("UTCTiming"))
        .unwrap();
    assert_eq!(
        utc.attribute("schemeIdUri"),
        Some("urn:mpeg:dash:utc:http-iso:2014")
    );
    assert_eq!(utc.attribute("value"), Some("https://example.com/time?iso"));
}

#[test]
fn hostile_values_stay_inside_their_attributes() {
    let segs = run(0, 0, &[180_000]);
    let m = Mpd {
        codecs: "avc1\"/><Evil a=\"&",
        utc_timing: UtcTiming::HttpXsDate("/time?a=1&b=<2>"),
        query: "?t=a$Number$'\"",
        audio_sample_rate: None,
        ..mpd(&segs)
    };
    let text = render_mpd(&m);
    let doc = parse(&text);
    assert!(doc.descendants().all(|n| !n.has_tag_name("Evil")));
    let rep = element(&doc, "Representation");
    assert_eq!(rep.attribute("codecs"), Some("avc1\"/><Evil a=\"&"));
    let template = element(&doc, "SegmentTemplate");
    // The query's `$` is escaped for the template, its quotes for the URI.
    assert_eq!(
        template.attribute("media"),
        Some("seg$Number$.m4s?t=a$$Number$$%27%22")
    );
    assert_eq!(
        template.attribute("initialization"),
        Some("init.mp4?t=a$$Number$$%27%22")
    );
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("ContentComponent"))
            .count(),
        1
    );
}

#[test]
fn with_no_segment_yet_the_timeline_is_left_out() {
    let text = render_mpd(&mpd(&[]));
    let doc = parse(&text);
    let template = element(&doc, "SegmentTemplate");
    assert_eq!(template.attribute("startNumber"), None);
    assert!(doc
        .descendants()
        .all(|n| !n.has_tag_name("SegmentTimeline")));
}

#[test]
fn the_query_rides_on_both_templates_or_on_neither() {
    let segs = run(3, 0, &[90_000]);
    let bare = render_mpd(&Mpd {
        query: "",
        ..mpd(&segs)
    });
    let doc = parse(&bare);
    let template = element(&doc, "SegmentTemplate");
    assert_eq!(template.attribute("initialization"), Some("init.mp4"));
    assert_eq!(template.attribute("media"), Some("seg$Number$.m4s"));
    assert_eq!(template.attribute("startNumber"), Some("3"));
}

proptest! {
    #[test]
    fn the_timeline_reads_back_as_the_segments(
        first in 0u64..1_000_000,
        start in 0u64..1_000_000_000,
        pieces in proptest::collection::vec((1u64..400_000, 0u64..3, 0u64..200_000), 0..60),
        ended in any::<bool>(),
    ) {
        // Durations drawn from a few values so runs collapse; gaps now and then.
        let mut segs = Vec::new();
        let mut t = start;
        for (i, (d, pick, gap)) in pieces.into_iter().enumerate() {
            let d = [d, 180_000, 90_000][pick as usize];
            if i % 7 == 3 {
                t += gap;
            }
            segs.push(TimelineSegment { number: first + i as u64, start: t, duration: d });
            t += d;
        }
        let m = Mpd { ended, ..mpd(&segs) };
        let text = render_mpd(&m);
        let doc = parse(&text);
        if segs.is_empty() {
            prop_assert!(doc.descendants().all(|n| !n.has_tag_name("S")));
        } else {
            let back = read_timeline(&doc);
            let want: Vec<(u64, u64, u64)> =
                segs.iter().map(|s| (s.number, s.start, s.duration)).collect();
            prop_assert_eq!(back, want);
        }
    }
}
