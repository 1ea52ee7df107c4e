//! HLS, sans-IO: the Low-Latency HLS media playlist, the multivariant
//! playlist, and the two things a request for them carries (which file, and
//! the `_HLS_` delivery directives in its query).
//!
//! This module owns the text of the playlists and the naming of the files
//! they point at, nothing else. The packager (above) keeps the window of
//! segments and parts and decides when a blocking reload may answer; it
//! hands a snapshot of that window to [`render_media`] and gets the playlist
//! back. Keeping the text here, free of clocks and buffers, lets every tag
//! rule of RFC 8216bis be tested on plain values, and lets the same renderer
//! serve a fresh request, a blocked reload and a delta update alike.
//!
//! File names are fixed and relative, so a playlist never needs to know the
//! host or path it is served under: `init.mp4`, `seg{msn}.m4s`,
//! `part{msn}.{index}.m4s`, `index.m3u8` (media), `master.m3u8`
//! (multivariant), and `index.mpd` for DASH, which shares the segments.
//! Each track alone has the same files with a `-v` or `-a` suffix
//! (`init-a.mp4`, `seg{msn}-a.m4s`, `part{msn}.{index}-a.m4s`) and its own
//! media playlist (`video.m3u8`, `audio.m3u8`): the separate-audio form,
//! which the multivariant playlist offers beside the muxed one, and which
//! DASH uses as its adaptation sets.
//! [`Asset`] is both their parser and their printer, so the names a
//! playlist writes are exactly the names a request is matched against.

mod media;
mod multivariant;
mod request;
mod template;

use std::time::{Duration, SystemTime};

pub use media::{render_media, render_media_template};
pub use multivariant::{render_multivariant, SplitCodecs, Variant, AUDIO_GROUP, MUXED_AUDIO_GROUP};
pub use request::{parse_asset, parse_query, Asset, HlsQuery, HlsQueryError, Track};
pub use template::Template;

/// One partial segment: an fMP4 fragment of about the part target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub duration: Duration,
    /// The part starts with an independent frame (a keyframe).
    pub independent: bool,
    /// The part has nothing of the playlist's track (a one-track playlist
    /// over a part that holds only the other track): listed with GAP=YES so
    /// that a player does not fetch it, and the part indices stay the same
    /// as in every other playlist of the stream.
    pub gap: bool,
    /// Its size in bytes: where it lies in its segment when parts are
    /// addressed as byte ranges ([`MediaPlaylist::byteranges`]).
    pub len: u64,
}

/// One media segment: it starts on a keyframe and is made of parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Media sequence number; segments of a window are consecutive.
    pub msn: u64,
    /// The segment's duration (for the segment in progress: unused, its
    /// parts say how far it got).
    pub duration: Duration,
    /// The first segment after a publisher change: timestamps and perhaps
    /// codecs start over.
    pub discontinuity: bool,
    /// Wall-clock time of the segment's first sample, when known.
    pub program_date_time: Option<SystemTime>,
    /// The segment's parts. The renderer lists them only for segments within
    /// three target durations of the live edge, so the packager may drop
    /// them from older segments (it must still serve the part files for a
    /// while; RFC 8216bis 6.2.2).
    pub parts: Vec<Part>,
}

/// What a request asked to skip (`_HLS_skip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Skip {
    /// A full playlist.
    #[default]
    No,
    /// `_HLS_skip=YES`: a delta update, old segments replaced by EXT-X-SKIP.
    Yes,
    /// `_HLS_skip=v2`: the same, and old date ranges skipped too. cascade
    /// writes no date ranges, so this differs from `Yes` only in carrying an
    /// (empty) RECENTLY-REMOVED-DATERANGES.
    V2,
}

/// A snapshot of one stream's live window, as [`render_media`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct MediaPlaylist<'a> {
    /// Upper bound of segment durations; rendered as whole seconds rounded
    /// up (EXT-X-TARGETDURATION). It must not change over a stream's life.
    pub target_duration: Duration,
    /// No part is longer than this (EXT-X-PART-INF:PART-TARGET).
    pub part_target: Duration,
    /// `msn` of `segments[0]` (or of `current` when there is no segment).
    pub media_sequence: u64,
    /// Discontinuities removed from the window so far.
    pub discontinuity_sequence: u64,
    /// Complete segments, oldest first, consecutive `msn`s.
    pub segments: &'a [Segment],
    /// The segment in progress: its parts are listed, it has no EXTINF yet.
    /// Its `msn` follows the last complete segment's.
    pub current: Option<&'a Segment>,
    /// `(msn, part index)` of the next part, for EXT-X-PRELOAD-HINT.
    pub preload_hint: Option<(u64, u32)>,
    /// From the request's `_HLS_skip`.
    pub skip: Skip,
    /// The stream is over: EXT-X-ENDLIST, no preload hint, no delta update.
    /// The packager should close the segment in progress first.
    pub ended: bool,
    /// Appended to every URI: empty, or starting with `?`
    /// ([`HlsQuery::rest`] is in that form). [`render_media_template`]
    /// leaves it out and marks its places instead.
    pub query: &'a str,
    /// The init segment's generation, added to its URI (`g=`) so that a
    /// player fetches the new one after a codec change.
    pub init_generation: Option<u32>,
    /// The playlist of one track (`init-a.mp4`, `part{m}.{i}-a.m4s`,
    /// `seg{m}-a.m4s` and so on), or of the muxed rendition (`None`).
    pub track: Option<Track>,
    /// Parts addressed as byte ranges of their segment's file
    /// (`BYTERANGE`, and a preload hint of `BYTERANGE-START` with no
    /// length: the rest of the segment) instead of files of their own.
    /// A player can then take a whole segment in one request that the
    /// server answers part by part as they are made: about two requests per
    /// segment instead of two per part, for the same latency.
    pub byteranges: bool,
}
