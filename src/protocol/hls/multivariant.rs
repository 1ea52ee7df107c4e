//! The multivariant playlist: one variant, the stream as published, pointing
//! at the media playlist. cascade relays and does not transcode, so there is
//! no ladder to describe; the playlist exists because players (Safari, and
//! hls.js for its codec checks) want BANDWIDTH and CODECS before they start.

use std::fmt::Write;

use super::Asset;
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
}

/// Renders the multivariant playlist.
///
/// It carries EXT-X-INDEPENDENT-SEGMENTS because every segment cascade cuts
/// starts on a keyframe, which lets a player start on any segment. No
/// EXT-X-VERSION: nothing in it needs more than version 1.
pub fn render_multivariant(v: &Variant) -> String {
    let mut inf = format!("#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth);
    if let Some(avg) = v.average_bandwidth {
        write!(inf, ",AVERAGE-BANDWIDTH={avg}").expect("write to String");
    }
    let codecs = hls_quoted(v.codecs);
    if !codecs.is_empty() {
        write!(inf, ",CODECS=\"{codecs}\"").expect("write to String");
    }
    if let Some((w, h)) = v.resolution {
        write!(inf, ",RESOLUTION={w}x{h}").expect("write to String");
    }
    if let Some(fps) = v.frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
        write!(inf, ",FRAME-RATE={fps:.3}").expect("write to String");
    }
    format!(
        "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n{inf}\n{}{}\n",
        Asset::MediaPlaylist,
        query_suffix(v.uri_query)
    )
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
