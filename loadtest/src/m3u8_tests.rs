//! Unit tests of `m3u8`.

use super::*;

const LL: &str = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,CAN-SKIP-UNTIL=12.0
#EXT-X-PART-INF:PART-TARGET=0.200
#EXT-X-MEDIA-SEQUENCE:40
#EXT-X-MAP:URI=\"init.mp4?token=t1&sid=9\"
#EXTINF:2.000,
seg40.m4s?token=t1&sid=9
#EXT-X-PART:DURATION=0.200,URI=\"part41.0.m4s?token=t1&sid=9\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.200,URI=\"part41.1.m4s?token=t1&sid=9\"
#EXTINF:0.400,
seg41.m4s?token=t1&sid=9
#EXT-X-PART:DURATION=0.200,URI=\"part42.0.m4s?token=t1&sid=9\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part42.1.m4s?token=t1&sid=9\"
";

fn media(text: &str) -> MediaPlaylist {
    match parse(text) {
        Ok(Playlist::Media(m)) => m,
        other => panic!("{other:?}"),
    }
}

#[test]
fn low_latency_playlist() {
    let pl = media(LL);
    assert_eq!(pl.target_duration, 2.0);
    assert_eq!(pl.media_sequence, 40);
    assert_eq!(pl.part_target, Some(0.2));
    assert_eq!(
        pl.server_control,
        ServerControl {
            can_block_reload: true,
            part_hold_back: Some(0.6),
            hold_back: None,
            can_skip_until: Some(12.0),
        }
    );
    assert!(pl.is_low_latency());
    assert_eq!(pl.segments.len(), 2);
    assert_eq!(pl.segments[0].msn, 40);
    assert!(pl.segments[0].parts.is_empty());
    assert_eq!(pl.segments[1].msn, 41);
    assert_eq!(pl.segments[1].uri, "seg41.m4s?token=t1&sid=9");
    assert_eq!(pl.segments[1].parts.len(), 2);
    assert!(pl.segments[1].parts[0].independent);
    assert!(!pl.segments[1].parts[1].independent);
    assert_eq!(
        pl.segments[1].map.as_deref(),
        Some("init.mp4?token=t1&sid=9")
    );
    assert_eq!(pl.trailing_parts.len(), 1);
    assert_eq!(pl.trailing_parts[0].uri, "part42.0.m4s?token=t1&sid=9");
    assert_eq!(pl.next_msn(), 42);
    assert_eq!(pl.next_unlisted(), Pos::new(42, 1));
    assert_eq!(
        pl.preload_hint,
        Some(PreloadHint {
            part: true,
            uri: "part42.1.m4s?token=t1&sid=9".into(),
            byterange_start: None
        })
    );
    assert_eq!(pl.map_at(42), Some("init.mp4?token=t1&sid=9"));
    assert!(!pl.endlist);
}

#[test]
fn byte_range_parts_keep_their_offsets() {
    let text = "#EXTM3U
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6
#EXT-X-PART-INF:PART-TARGET=0.200
#EXT-X-MEDIA-SEQUENCE:12
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PART:DURATION=0.200,URI=\"seg12.m4s?sid=77\",BYTERANGE=\"73012@0\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.200,URI=\"seg12.m4s?sid=77\",BYTERANGE=\"70321@73012\"
#EXT-X-PART:DURATION=0.200,URI=\"seg12.m4s?sid=77\",BYTERANGE=\"500\"
#EXTINF:0.600,
seg12.m4s?sid=77
#EXT-X-PART:DURATION=0.200,URI=\"seg13.m4s?sid=77\",BYTERANGE=\"71000@0\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg13.m4s?sid=77\",BYTERANGE-START=71000
";
    let pl = media(text);
    let p = &pl.segments[0].parts;
    assert_eq!(p[0].uri, "seg12.m4s?sid=77");
    assert_eq!(
        p[0].byterange,
        Some(ByteRange {
            length: 73012,
            offset: 0
        })
    );
    assert_eq!(
        p[1].byterange,
        Some(ByteRange {
            length: 70321,
            offset: 73012
        })
    );
    // No offset: right after the previous range of the same resource.
    assert_eq!(
        p[2].byterange,
        Some(ByteRange {
            length: 500,
            offset: 143333
        })
    );
    assert_eq!(p[2].byterange.map(|r| r.end()), Some(143833));
    assert_eq!(
        pl.trailing_parts[0].byterange,
        Some(ByteRange {
            length: 71000,
            offset: 0
        })
    );
    let hint = pl.preload_hint.as_ref().unwrap();
    assert_eq!(hint.uri, "seg13.m4s?sid=77");
    assert_eq!(hint.byterange_start, Some(71000));
    // A range with no offset and nothing before it to follow is bad.
    assert!(parse(&text.replace("\"73012@0\"", "\"73012\"")).is_err());
    assert!(parse(&text.replace("\"73012@0\"", "\"x@0\"")).is_err());
    assert!(parse(&text.replace("BYTERANGE-START=71000", "BYTERANGE-START=-1")).is_err());
}

#[test]
fn skip_tag_shifts_the_listed_segments() {
    let text = "#EXTM3U
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12
#EXT-X-MEDIA-SEQUENCE:100
#EXT-X-SKIP:SKIPPED-SEGMENTS=6
#EXTINF:2,
seg106.m4s
#EXTINF:2,
seg107.m4s
";
    let pl = media(text);
    assert_eq!(pl.skipped, 6);
    assert_eq!(pl.first_listed_msn(), 106);
    assert_eq!(pl.segments[1].msn, 107);
    assert_eq!(pl.segment(107).map(|s| s.uri.as_str()), Some("seg107.m4s"));
    assert!(pl.segment(105).is_none());
    assert_eq!(pl.next_unlisted(), Pos::new(108, 0));
    // A skip after segments is malformed.
    assert!(parse(&text.replace(
        "#EXT-X-SKIP:SKIPPED-SEGMENTS=6\n#EXTINF:2,\nseg106.m4s\n",
        "#EXTINF:2,\nseg106.m4s\n#EXT-X-SKIP:SKIPPED-SEGMENTS=6\n"
    ))
    .is_err());
}

#[test]
fn discontinuity_and_a_new_map() {
    let text = "#EXTM3U
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-DISCONTINUITY-SEQUENCE:3
#EXT-X-MAP:URI=\"init-a.mp4\"
#EXTINF:2.0,
a7.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI=\"init-b.mp4\"
#EXTINF:1.5,
b8.m4s
#EXT-X-ENDLIST
";
    let pl = media(text);
    assert_eq!(pl.discontinuity_sequence, 3);
    assert!(!pl.segments[0].discontinuity);
    assert!(pl.segments[1].discontinuity);
    assert_eq!(pl.map_at(7), Some("init-a.mp4"));
    assert_eq!(pl.map_at(8), Some("init-b.mp4"));
    assert!(pl.endlist);
    assert!(!pl.is_low_latency());
}

#[test]
fn multivariant_lists_its_variants() {
    let text = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=2800000,CODECS=\"avc1.64001f,mp4a.40.2\"\nlow/index.m3u8?t=1\n#EXT-X-STREAM-INF:BANDWIDTH=5000000\nhigh/index.m3u8\n";
    assert_eq!(
        parse(text),
        Ok(Playlist::Multivariant(vec![
            "low/index.m3u8?t=1".into(),
            "high/index.m3u8".into()
        ]))
    );
}

#[test]
fn malformed_playlists_are_errors() {
    assert_eq!(parse("<html>"), Err(PlaylistError::NotM3u8));
    assert!(parse("#EXTM3U\nseg.m4s\n").is_err());
    assert!(parse("#EXTM3U\n#EXTINF:abc,\nseg.m4s\n").is_err());
    assert!(parse("#EXTM3U\n#EXT-X-PART:DURATION=0.2,URI=unquoted\n").is_err());
    assert!(parse("#EXTM3U\n#EXT-X-PART:DURATION=0.2,URI=\"x\n").is_err());
    assert!(parse("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:-1\n").is_err());
    assert!(parse(&"#EXTM3U\n".repeat(MAX_PLAYLIST)).is_err());
}

#[test]
fn attributes_keep_quoted_commas() {
    let a = Attrs::parse("A=1, B=\"x,y=z\",C=YES").unwrap();
    assert_eq!(a.get("A"), Some("1"));
    assert_eq!(a.string("B"), Ok("x,y=z"));
    assert_eq!(a.get("C"), Some("YES"));
    assert!(a.string("A").is_err());
}

#[test]
fn relative_uris_resolve_with_their_own_query() {
    let base = "/live/cam/index.m3u8?token=abc";
    let auth = "127.0.0.1:8080";
    let r = |u: &str| resolve(base, u, auth);
    assert_eq!(
        r("part3.1.m4s?token=abc&sid=7"),
        Ok("/live/cam/part3.1.m4s?token=abc&sid=7".into())
    );
    // The base's query is not carried over to a path reference.
    assert_eq!(r("init.mp4"), Ok("/live/cam/init.mp4".into()));
    assert_eq!(r("../other/x.m4s"), Ok("/live/other/x.m4s".into()));
    assert_eq!(r("./a/./b/../c.m4s"), Ok("/live/cam/a/c.m4s".into()));
    assert_eq!(r("/abs/seg.m4s?q=1"), Ok("/abs/seg.m4s?q=1".into()));
    assert_eq!(
        r("?only=query"),
        Ok("/live/cam/index.m3u8?only=query".into())
    );
    assert_eq!(
        r("http://127.0.0.1:8080/live/cam/s.m4s?x"),
        Ok("/live/cam/s.m4s?x".into())
    );
    assert!(r("http://elsewhere/live/s.m4s").is_err());
    assert!(r("https://127.0.0.1:8080/s.m4s").is_err());
    assert!(r("//elsewhere/s.m4s").is_err());
    assert_eq!(resolve("/index.m3u8", "s1.m4s", auth), Ok("/s1.m4s".into()));
    assert_eq!(
        resolve("/a/index.m3u8", "http://h/a/s.m4s", "h:80"),
        Ok("/a/s.m4s".into())
    );
}

#[test]
fn blocking_reload_appends_to_the_query() {
    assert_eq!(
        blocking_reload("/live/x/index.m3u8", Pos::new(5, 2)),
        "/live/x/index.m3u8?_HLS_msn=5&_HLS_part=2"
    );
    assert_eq!(
        blocking_reload("/live/x/index.m3u8?token=a", Pos::new(5, 0)),
        "/live/x/index.m3u8?token=a&_HLS_msn=5&_HLS_part=0"
    );
}
