//! The multivariant playlist: the stream as published, pointing at the media
//! playlist. cascade relays and does not transcode, so there is no ladder to
//! describe; the playlist exists because players (Safari, and hls.js for its
//! codec checks) want BANDWIDTH and CODECS before they start.
//!
//! A stream with both tracks is offered in two forms of the same media:
//! first the muxed variant (`index.m3u8`, what every player has always been
//! given and what one that takes the first variant keeps playing), then a
//! video-only variant (`video.m3u8`) whose audio is a rendition of its own
//! (`audio.m3u8`), for clients that want audio apart.
//!
//! Each variant names its own audio group. The muxed variant's group has
//! one member without a URI, which says "the audio is in the variant's own
//! playlist": without it, a player that honours EXT-X-MEDIA for every
//! variant (hls.js does: a variant with no AUDIO attribute may take any
//! audio rendition) would fetch `audio.m3u8` beside the muxed parts. Both
//! variants state the same BANDWIDTH, CODECS and RESOLUTION because they
//! are the same media; hls.js then keeps the second as a redundant copy of
//! the first (a fallback on errors), not as a rung to switch to.

use std::fmt::Write;

use super::{Asset, Track};
use crate::protocol::manifest::{hls_quoted, query_suffix};

/// What the multivariant playlist says about the stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variant<'a> {
    /// Peak bits per second (REQUIRED by EXT-X-STREAM-INF).
    pub bandwidth: u64,
    pub average_bandwidth: Option<u64>,
    /// RFC 6381 codecs of every track, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: &'a str,
    /// Width and height of the video.
    pub resolution: Option<(u16, u16)>,
    /// Frames per second; rendered with three decimals.
    pub frame_rate: Option<f64>,
    /// Appended to the media playlist's URI: empty, or starting with `?`.
    pub uri_query: &'a str,
    /// The separate-audio form, when the stream has both tracks.
    pub split: Option<SplitCodecs<'a>>,
}

/// Each track's codecs, for the separate-audio form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitCodecs<'a> {
    /// RFC 6381 codecs of the video track, e.g. `avc1.64001f`.
    pub video: &'a str,
    /// RFC 6381 codecs of the audio track, e.g. `mp4a.40.2`.
    pub audio: &'a str,
    /// The audio's channel count, stated on the audio renditions.
    pub channels: Option<u8>,
}

/// GROUP-ID of the separate audio rendition (one member, `audio.m3u8`).
pub const AUDIO_GROUP: &str = "audio";
/// GROUP-ID of the muxed variant's audio (one member, without a URI: the
/// audio is in `index.m3u8`).
pub const MUXED_AUDIO_GROUP: &str = "muxed";

/// Renders the multivariant playlist.
///
/// It carries EXT-X-INDEPENDENT-SEGMENTS because every segment cascade cuts
/// starts on a keyframe, which lets a player start on any segment. No
/// EXT-X-VERSION: nothing in it needs more than version 1.
///
/// With [`Variant::split`], each variant is preceded by its audio group's
/// EXT-X-MEDIA (the muxed one without a URI), each member the group's
/// DEFAULT and AUTOSELECT so a player takes it without being asked, with
/// CHANNELS when known (RFC 8216bis asks for it on audio), and the
/// video-only variant follows the muxed one. Its CODECS lists the video
/// codec and the audio codec both, since a variant's CODECS must cover the
/// renditions it plays with (RFC 8216bis 4.4.6.2).
pub fn render_multivariant(v: &Variant) -> String {
    let query = query_suffix(v.uri_query);
    let mut out = String::from("#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let channels = match v.split.and_then(|s| s.channels) {
        Some(n) => format!(",CHANNELS=\"{n}\""),
        None => String::new(),
    };
    let rendition = |out: &mut String, group: &str, uri: &str| {
        writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{group}\",NAME=\"audio\",\
             DEFAULT=YES,AUTOSELECT=YES{channels}{uri}"
        )
        .expect("write to String");
    };
    if v.split.is_some() {
        rendition(&mut out, MUXED_AUDIO_GROUP, "");
    }
    let muxed_group = v.split.map(|_| MUXED_AUDIO_GROUP);
    stream_inf(&mut out, v, v.codecs, muxed_group);
    writeln!(out, "{}{query}", Asset::MediaPlaylist).expect("write to String");
    if let Some(split) = v.split {
        let uri = format!(",URI=\"{}{query}\"", Asset::TrackPlaylist(Track::Audio));
        rendition(&mut out, AUDIO_GROUP, &uri);
        let codecs = [split.video, split.audio]
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join(",");
        stream_inf(&mut out, v, &codecs, Some(AUDIO_GROUP));
        writeln!(out, "{}{query}", Asset::TrackPlaylist(Track::Video)).expect("write to String");
    }
    out
}

/// One EXT-X-STREAM-INF line of the stream with `codecs`, and the audio
/// group it plays with, if any.
fn stream_inf(out: &mut String, v: &Variant, codecs: &str, audio: Option<&str>) {
    write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth).expect("write to String");
    if let Some(avg) = v.average_bandwidth {
        write!(out, ",AVERAGE-BANDWIDTH={avg}").expect("write to String");
    }
    let codecs = hls_quoted(codecs);
    if !codecs.is_empty() {
        write!(out, ",CODECS=\"{codecs}\"").expect("write to String");
    }
    if let Some((w, h)) = v.resolution {
        write!(out, ",RESOLUTION={w}x{h}").expect("write to String");
    }
    if let Some(fps) = v.frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
        write!(out, ",FRAME-RATE={fps:.3}").expect("write to String");
    }
    if let Some(group) = audio {
        write!(out, ",AUDIO=\"{group}\"").expect("write to String");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant() -> Variant<'static> {
        Variant {
            bandwidth: 2_500_000,
            average_bandwidth: Some(2_000_000),
            codecs: "avc1.64001f,mp4a.40.2",
            resolution: Some((1280, 720)),
            frame_rate: Some(29.97),
            uri_query: "?token=abc&sid=42",
            split: None,
        }
    }

    #[test]
    fn the_variant_points_at_the_media_playlist_with_the_query() {
        assert_eq!(
            render_multivariant(&variant()),
            "#EXTM3U\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2000000,\
             CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=29.970\n\
             index.m3u8?token=abc&sid=42\n"
        );
    }

    #[test]
    fn optional_attributes_are_left_out() {
        let v = Variant {
            average_bandwidth: None,
            codecs: "",
            resolution: None,
            frame_rate: Some(f64::NAN),
            uri_query: "",
            ..variant()
        };
        assert_eq!(
            render_multivariant(&v),
            "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=2500000\nindex.m3u8\n"
        );
    }

    #[test]
    fn a_stream_with_both_tracks_also_offers_separate_audio_after_the_muxed_variant() {
        let v = Variant {
            split: Some(SplitCodecs {
                video: "avc1.64001f",
                audio: "mp4a.40.2",
                channels: Some(2),
            }),
            ..variant()
        };
        assert_eq!(
            render_multivariant(&v),
            "#EXTM3U\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"muxed\",NAME=\"audio\",DEFAULT=YES,\
             AUTOSELECT=YES,CHANNELS=\"2\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2000000,\
             CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=29.970,\
             AUDIO=\"muxed\"\n\
             index.m3u8?token=abc&sid=42\n\
             #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,\
             AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio.m3u8?token=abc&sid=42\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2000000,\
             CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=29.970,\
             AUDIO=\"audio\"\n\
             video.m3u8?token=abc&sid=42\n"
        );
    }

    #[test]
    fn the_split_variant_lists_only_codecs_it_knows_and_its_group_exists() {
        let v = Variant {
            split: Some(SplitCodecs {
                video: "hvc1.1.6.L93.B0",
                audio: "",
                channels: None,
            }),
            uri_query: "",
            ..variant()
        };
        let text = render_multivariant(&v);
        assert!(
            text.contains("CODECS=\"hvc1.1.6.L93.B0\",RESOLUTION"),
            "{text}"
        );
        // Every AUDIO attribute names a group an EXT-X-MEDIA defines.
        for line in text.lines().filter(|l| l.contains("AUDIO=\"")) {
            let group = line
                .split("AUDIO=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            assert!(
                text.contains(&format!("TYPE=AUDIO,GROUP-ID=\"{group}\"")),
                "{text}"
            );
        }
        assert!(text.contains("URI=\"audio.m3u8\"\n"), "{text}");
        // The muxed variant's audio is its own: a rendition without a URI,
        // and no other rendition for that group.
        assert_eq!(text.matches("GROUP-ID=\"muxed\"").count(), 1, "{text}");
        assert!(
            text.contains("GROUP-ID=\"muxed\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES\n"),
            "{text}"
        );
        let first_variant = text
            .lines()
            .position(|l| l.starts_with("#EXT-X-STREAM-INF"))
            .unwrap();
        assert_eq!(text.lines().nth(first_variant + 1).unwrap(), "index.m3u8");
        assert!(text.ends_with("\nvideo.m3u8\n"), "{text}");
    }

    #[test]
    fn a_hostile_codecs_string_cannot_end_the_attribute() {
        let v = Variant {
            codecs: "avc1\",\nhttp://evil/x.m3u8",
            ..variant()
        };
        let text = render_multivariant(&v);
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(
            text.contains("CODECS=\"avc1,http://evil/x.m3u8\""),
            "{text}"
        );
    }
}
