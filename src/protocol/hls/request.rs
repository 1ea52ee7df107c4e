//! What an HLS or DASH request names: the file ([`Asset`]) and, for a media
//! playlist, the delivery directives in its query ([`HlsQuery`]).
//!
//! Both parsers take text straight off the wire, so they are strict: one
//! spelling per file (no leading zeros, no signs, nothing that overflows),
//! so a cache never holds the same object under two names, and directives
//! that are malformed are errors the server answers with 400 rather than
//! guesses.

use std::fmt;

use super::Skip;

/// A file of a stream, as its last path component names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Asset {
    /// `index.m3u8`
    MediaPlaylist,
    /// `master.m3u8`
    Multivariant,
    /// `init.mp4`: the fMP4 initialization segment, shared by HLS and DASH.
    Init,
    /// `seg{msn}.m4s`: a whole segment, shared by HLS and DASH (`$Number$`
    /// is the msn).
    Segment(u64),
    /// `part{msn}.{index}.m4s`: part `index` (from 0) of segment `msn`.
    Part(u64, u32),
    /// `index.mpd`
    Mpd,
    /// `init-v.mp4`, `init-a.mp4`: one track's initialization segment (DASH
    /// players want audio and video in separate adaptation sets).
    TrackInit(Track),
    /// `seg{msn}-v.m4s`, `seg{msn}-a.m4s`: one track of a segment.
    TrackSegment(u64, Track),
    /// `video.m3u8`, `audio.m3u8`: the media playlist of one track, for
    /// HLS players that take audio as a separate rendition.
    TrackPlaylist(Track),
    /// `part{msn}.{index}-v.m4s`, `part{msn}.{index}-a.m4s`: one track of a
    /// part.
    TrackPart(u64, u32, Track),
}

/// One track of a stream, as DASH (and HLS's separate-audio form) serves it
/// alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    Video,
    Audio,
}

impl Track {
    /// The suffix of its file names.
    pub fn suffix(self) -> &'static str {
        match self {
            Track::Video => "v",
            Track::Audio => "a",
        }
    }

    /// The name of its media playlist's file, without `.m3u8`.
    pub fn playlist_stem(self) -> &'static str {
        match self {
            Track::Video => "video",
            Track::Audio => "audio",
        }
    }

    fn from_suffix(s: &str) -> Option<Track> {
        match s {
            "v" => Some(Track::Video),
            "a" => Some(Track::Audio),
            _ => None,
        }
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Asset::MediaPlaylist => f.write_str("index.m3u8"),
            Asset::Multivariant => f.write_str("master.m3u8"),
            Asset::Init => f.write_str("init.mp4"),
            Asset::Segment(msn) => write!(f, "seg{msn}.m4s"),
            Asset::Part(msn, index) => write!(f, "part{msn}.{index}.m4s"),
            Asset::Mpd => f.write_str("index.mpd"),
            Asset::TrackInit(t) => write!(f, "init-{}.mp4", t.suffix()),
            Asset::TrackSegment(msn, t) => write!(f, "seg{msn}-{}.m4s", t.suffix()),
            Asset::TrackPlaylist(t) => write!(f, "{}.m3u8", t.playlist_stem()),
            Asset::TrackPart(msn, index, t) => write!(f, "part{msn}.{index}-{}.m4s", t.suffix()),
        }
    }
}

impl Asset {
    /// The init segment of the muxed rendition (`None`) or of one track.
    pub fn init_of(track: Option<Track>) -> Asset {
        track.map_or(Asset::Init, Asset::TrackInit)
    }

    /// Segment `msn` of the muxed rendition or of one track.
    pub fn segment_of(msn: u64, track: Option<Track>) -> Asset {
        track.map_or(Asset::Segment(msn), |t| Asset::TrackSegment(msn, t))
    }

    /// Part `index` of segment `msn`, muxed or of one track.
    pub fn part_of(msn: u64, index: u32, track: Option<Track>) -> Asset {
        track.map_or(Asset::Part(msn, index), |t| Asset::TrackPart(msn, index, t))
    }

    /// The media playlist of the muxed rendition or of one track.
    pub fn playlist_of(track: Option<Track>) -> Asset {
        track.map_or(Asset::MediaPlaylist, Asset::TrackPlaylist)
    }
}

/// A decimal number as the names spell it: ASCII digits only, no leading
/// zero (except `0` itself), no overflow.
fn canonical<T: std::str::FromStr>(digits: &str) -> Option<T> {
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if ok {
        digits.parse().ok()
    } else {
        None
    }
}

/// The asset a file name names, or None for anything else.
pub fn parse_asset(file: &str) -> Option<Asset> {
    match file {
        "index.m3u8" => return Some(Asset::MediaPlaylist),
        "master.m3u8" => return Some(Asset::Multivariant),
        "init.mp4" => return Some(Asset::Init),
        "index.mpd" => return Some(Asset::Mpd),
        "init-v.mp4" => return Some(Asset::TrackInit(Track::Video)),
        "init-a.mp4" => return Some(Asset::TrackInit(Track::Audio)),
        "video.m3u8" => return Some(Asset::TrackPlaylist(Track::Video)),
        "audio.m3u8" => return Some(Asset::TrackPlaylist(Track::Audio)),
        _ => {}
    }
    let stem = file.strip_suffix(".m4s")?;
    if let Some(msn) = stem.strip_prefix("seg") {
        if let Some((msn, track)) = msn.split_once('-') {
            return Some(Asset::TrackSegment(
                canonical(msn)?,
                Track::from_suffix(track)?,
            ));
        }
        return canonical(msn).map(Asset::Segment);
    }
    let (msn, index) = stem.strip_prefix("part")?.split_once('.')?;
    if let Some((index, track)) = index.split_once('-') {
        return Some(Asset::TrackPart(
            canonical(msn)?,
            canonical(index)?,
            Track::from_suffix(track)?,
        ));
    }
    Some(Asset::Part(canonical(msn)?, canonical(index)?))
}

/// A media playlist request's query, split into the delivery directives and
/// everything else.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HlsQuery {
    /// `_HLS_msn`: block until this segment exists.
    pub msn: Option<u64>,
    /// `_HLS_part`: ... and this part of it.
    pub part: Option<u32>,
    /// `_HLS_skip`.
    pub skip: Skip,
    /// The other parameters (a token, a session id), re-encoded, as the
    /// suffix to carry into every URI the playlist writes: empty, or `?`
    /// and the parameters in the order they came. Re-encoding means nothing
    /// from the request reaches the playlist unescaped. Every `_HLS_`
    /// parameter (those names are reserved by the spec) is left out, so a
    /// client's directives never leak into segment URIs.
    pub rest: String,
}

/// Why a query's directives were refused; each is a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HlsQueryError {
    #[error("_HLS_part without _HLS_msn")]
    PartWithoutMsn,
    #[error("{name} is not a decimal integer: {value:?}")]
    BadNumber { name: &'static str, value: String },
    #[error("_HLS_skip must be YES or v2, not {0:?}")]
    BadSkip(String),
    #[error("{0} given more than once")]
    Repeated(&'static str),
}

impl HlsQueryError {
    /// The status the request is answered with (RFC 8216bis 6.2.5.2 names
    /// 400 for a part without an msn; the rest are malformed the same way).
    pub fn status(&self) -> u16 {
        400
    }
}

fn set_once<T>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), HlsQueryError> {
    if slot.replace(value).is_some() {
        return Err(HlsQueryError::Repeated(name));
    }
    Ok(())
}

fn number<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, HlsQueryError> {
    // Decimal-integer per 4.2, which allows leading zeros; signs, spaces
    // and overflow are refused (`str::parse` alone would accept `+3`).
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HlsQueryError::BadNumber {
            name,
            value: value.to_string(),
        });
    }
    value.parse().map_err(|_| HlsQueryError::BadNumber {
        name,
        value: value.to_string(),
    })
}

/// Parses a media playlist request's query (with or without its `?`).
pub fn parse_query(query: &str) -> Result<HlsQuery, HlsQueryError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut msn = None;
    let mut part = None;
    let mut skip = None;
    let mut rest = form_urlencoded::Serializer::new(String::new());
    let mut any_rest = false;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "_HLS_msn" => set_once(&mut msn, "_HLS_msn", number::<u64>("_HLS_msn", &value)?)?,
            "_HLS_part" => set_once(&mut part, "_HLS_part", number::<u32>("_HLS_part", &value)?)?,
            "_HLS_skip" => {
                let s = match &*value {
                    "YES" => Skip::Yes,
                    "v2" => Skip::V2,
                    other => return Err(HlsQueryError::BadSkip(other.to_string())),
                };
                set_once(&mut skip, "_HLS_skip", s)?;
            }
            k if k.starts_with("_HLS_") => {}
            _ => {
                rest.append_pair(&key, &value);
                any_rest = true;
            }
        }
    }
    if part.is_some() && msn.is_none() {
        return Err(HlsQueryError::PartWithoutMsn);
    }
    let rest = if any_rest {
        format!("?{}", rest.finish())
    } else {
        String::new()
    };
    Ok(HlsQuery {
        msn,
        part,
        skip: skip.unwrap_or_default(),
        rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_asset_name_parses() {
        assert_eq!(parse_asset("index.m3u8"), Some(Asset::MediaPlaylist));
        assert_eq!(parse_asset("master.m3u8"), Some(Asset::Multivariant));
        assert_eq!(parse_asset("init.mp4"), Some(Asset::Init));
        assert_eq!(parse_asset("index.mpd"), Some(Asset::Mpd));
        assert_eq!(parse_asset("seg0.m4s"), Some(Asset::Segment(0)));
        assert_eq!(parse_asset("seg12.m4s"), Some(Asset::Segment(12)));
        assert_eq!(parse_asset("part12.3.m4s"), Some(Asset::Part(12, 3)));
        assert_eq!(parse_asset("part0.0.m4s"), Some(Asset::Part(0, 0)));
        assert_eq!(
            parse_asset("seg18446744073709551615.m4s"),
            Some(Asset::Segment(u64::MAX))
        );
        assert_eq!(
            parse_asset("part1.4294967295.m4s"),
            Some(Asset::Part(1, u32::MAX))
        );
    }

    #[test]
    fn each_track_has_its_playlist_parts_and_segments() {
        use Track::{Audio, Video};
        for (name, asset) in [
            ("audio.m3u8", Asset::TrackPlaylist(Audio)),
            ("video.m3u8", Asset::TrackPlaylist(Video)),
            ("init-a.mp4", Asset::TrackInit(Audio)),
            ("init-v.mp4", Asset::TrackInit(Video)),
            ("seg7-a.m4s", Asset::TrackSegment(7, Audio)),
            ("seg7-v.m4s", Asset::TrackSegment(7, Video)),
            ("part7.0-a.m4s", Asset::TrackPart(7, 0, Audio)),
            ("part7.12-v.m4s", Asset::TrackPart(7, 12, Video)),
        ] {
            assert_eq!(parse_asset(name), Some(asset), "{name}");
            assert_eq!(asset.to_string(), name);
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for name in [
            "",
            "seg.m4s",
            "seg+1.m4s",
            "seg-1.m4s",
            "seg 1.m4s",
            "seg01.m4s",
            "seg1.m4s ",
            "seg1.M4S",
            "seg1.mp4",
            "seg１.m4s",
            "seg18446744073709551616.m4s",
            "seg99999999999999999999999.m4s",
            "part1.m4s",
            "part1..m4s",
            "part.1.m4s",
            "part1.2.3.m4s",
            "part1.+2.m4s",
            "part1.02.m4s",
            "part1.4294967296.m4s",
            "Index.m3u8",
            "index.m3u8/",
            "../index.m3u8",
            "index.m3u",
            "master.m3u8.bak",
            "init.m4s",
            "part1.2-x.m4s",
            "part1.2-.m4s",
            "part1.2-a-a.m4s",
            "part1.02-a.m4s",
            "part1-a.2.m4s",
            "part1.2-A.m4s",
            "Audio.m3u8",
            "audio-a.m3u8",
            "seg1-av.m4s",
        ] {
            assert_eq!(parse_asset(name), None, "{name:?}");
        }
    }

    #[test]
    fn directives_are_read_and_the_rest_is_carried() {
        let q = parse_query("_HLS_msn=12&token=abc&_HLS_part=3&sid=42&_HLS_skip=YES").unwrap();
        assert_eq!(q.msn, Some(12));
        assert_eq!(q.part, Some(3));
        assert_eq!(q.skip, Skip::Yes);
        assert_eq!(q.rest, "?token=abc&sid=42");
        assert_eq!(parse_query("?_HLS_skip=v2").unwrap().skip, Skip::V2);
        assert_eq!(parse_query("").unwrap(), HlsQuery::default());
        assert_eq!(parse_query("?").unwrap(), HlsQuery::default());
        // Leading zeros are still a decimal-integer.
        assert_eq!(parse_query("_HLS_msn=007").unwrap().msn, Some(7));
    }

    #[test]
    fn the_rest_is_re_encoded_and_loses_every_hls_parameter() {
        let q =
            parse_query("token=a%2Bb%22c&x=1+2&_HLS_primary_id=9&_HLS_foo&name=%C3%A9").unwrap();
        assert_eq!(q.rest, "?token=a%2Bb%22c&x=1+2&name=%C3%A9");
        assert_eq!(parse_query("_HLS_msn=1").unwrap().rest, "");
    }

    #[test]
    fn malformed_directives_are_errors() {
        assert_eq!(
            parse_query("_HLS_part=1"),
            Err(HlsQueryError::PartWithoutMsn)
        );
        assert_eq!(HlsQueryError::PartWithoutMsn.status(), 400);
        for bad in [
            "_HLS_msn=",
            "_HLS_msn=abc",
            "_HLS_msn=+3",
            "_HLS_msn=-3",
            "_HLS_msn=1.5",
            "_HLS_msn=%201",
            "_HLS_msn=18446744073709551616",
            "_HLS_msn=1&_HLS_part=4294967296",
            "_HLS_msn=1&_HLS_part=x",
        ] {
            assert!(
                matches!(parse_query(bad), Err(HlsQueryError::BadNumber { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            parse_query("_HLS_skip=yes"),
            Err(HlsQueryError::BadSkip("yes".into()))
        );
        assert_eq!(
            parse_query("_HLS_msn=1&_HLS_msn=2"),
            Err(HlsQueryError::Repeated("_HLS_msn"))
        );
        assert_eq!(
            parse_query("_HLS_skip=YES&_HLS_skip=v2"),
            Err(HlsQueryError::Repeated("_HLS_skip"))
        );
    }

    fn any_asset() -> impl Strategy<Value = Asset> {
        prop_oneof![
            Just(Asset::MediaPlaylist),
            Just(Asset::Multivariant),
            Just(Asset::Init),
            Just(Asset::Mpd),
            any::<u64>().prop_map(Asset::Segment),
            (any::<u64>(), any::<u32>()).prop_map(|(m, i)| Asset::Part(m, i)),
            any_track().prop_map(Asset::TrackInit),
            any_track().prop_map(Asset::TrackPlaylist),
            (any::<u64>(), any_track()).prop_map(|(m, t)| Asset::TrackSegment(m, t)),
            (any::<u64>(), any::<u32>(), any_track())
                .prop_map(|(m, i, t)| Asset::TrackPart(m, i, t)),
        ]
    }

    fn any_track() -> impl Strategy<Value = Track> {
        prop_oneof![Just(Track::Video), Just(Track::Audio)]
    }

    proptest! {
        #[test]
        fn parse_asset_never_panics(s in "\\PC*") {
            let _ = parse_asset(&s);
        }

        #[test]
        fn parse_asset_never_panics_on_near_misses(
            s in "(seg|part|index|init|master|audio|video)[0-9+.\\-av]{0,30}(\\.m4s|\\.mp4|\\.m3u8|\\.mpd)?"
        ) {
            if let Some(asset) = parse_asset(&s) {
                // Whatever parses is the one spelling of its asset.
                prop_assert_eq!(asset.to_string(), s);
            }
        }

        #[test]
        fn every_asset_round_trips(asset in any_asset()) {
            prop_assert_eq!(parse_asset(&asset.to_string()), Some(asset));
        }

        #[test]
        fn parse_query_never_panics(s in "\\PC*") {
            let _ = parse_query(&s);
        }

        #[test]
        fn parse_query_never_panics_on_directives(
            s in "(_HLS_(msn|part|skip)=[0-9a-zA-Z+%\\-]{0,25}&?|[a-z]{1,3}=[^&]{0,5}&?){0,5}"
        ) {
            if let Ok(q) = parse_query(&s) {
                prop_assert!(q.part.is_none() || q.msn.is_some());
                let rest = q.rest.trim_start_matches('?');
                prop_assert!(
                    form_urlencoded::parse(rest.as_bytes()).all(|(k, _)| !k.starts_with("_HLS_"))
                );
                prop_assert!(q.rest.is_empty() || q.rest.starts_with('?'));
            }
        }
    }
}
