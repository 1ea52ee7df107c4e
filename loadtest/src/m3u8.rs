//! HLS playlists as an LL-HLS player reads them (RFC 8216bis): the media
//! playlist's segments, parts, preload hint, server control and skip tag;
//! a multivariant playlist only far enough to follow its first variant;
//! and relative URI resolution against the playlist's URL.
//!
//! Written by hand: the harness needs a dozen tags, positions by media
//! sequence number and part index, and nothing that allocates per tag it
//! ignores. Tags it does not use are skipped, as RFC 8216 tells clients to.

/// A playlist bigger than this is not a live edge's.
pub const MAX_PLAYLIST: usize = 1024 * 1024;

/// A position in the stream: part `part` of media segment `msn`. Part 0 of
/// a segment is also where that segment starts, so a player that fetches
/// whole segments walks `(msn, 0)`, `(msn + 1, 0)`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub msn: u64,
    pub part: u64,
}

impl Pos {
    pub fn new(msn: u64, part: u64) -> Pos {
        Pos { msn, part }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub duration: f64,
    pub uri: String,
    pub independent: bool,
    /// `BYTERANGE` given: the part is this range of `uri`, which is the
    /// whole segment (byte-range addressed parts).
    pub byterange: Option<ByteRange>,
    pub gap: bool,
}

/// A part's place in its segment's resource: `length` bytes from byte
/// `offset` (`BYTERANGE="length@offset"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub length: u64,
    pub offset: u64,
}

impl ByteRange {
    /// One past its last byte: where the next part of the resource starts.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub msn: u64,
    pub duration: f64,
    pub uri: String,
    /// Its parts, when the playlist still lists them.
    pub parts: Vec<Part>,
    /// `EXT-X-DISCONTINUITY` before it.
    pub discontinuity: bool,
    /// The `EXT-X-MAP` URI in effect for it.
    pub map: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerControl {
    pub can_block_reload: bool,
    pub part_hold_back: Option<f64>,
    pub hold_back: Option<f64>,
    pub can_skip_until: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PreloadHint {
    /// `TYPE=PART` (the only type this player follows; `MAP` hints are
    /// noted and ignored).
    pub part: bool,
    pub uri: String,
    /// `BYTERANGE-START`: the hinted part begins at this byte of `uri`
    /// (a byte-range addressed part; without `BYTERANGE-LENGTH` it runs to
    /// the end of the resource, which the server sends as it is made).
    pub byterange_start: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MediaPlaylist {
    pub target_duration: f64,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    /// `EXT-X-SKIP:SKIPPED-SEGMENTS`: segments left out after
    /// `media_sequence`; the first listed one is `media_sequence + skipped`.
    pub skipped: u64,
    pub server_control: ServerControl,
    /// `EXT-X-PART-INF:PART-TARGET`: the playlist is low-latency.
    pub part_target: Option<f64>,
    /// Complete segments, oldest first; `segments[i].msn` is consecutive.
    pub segments: Vec<Segment>,
    /// Parts of the segment still being made (`next_msn()`).
    pub trailing_parts: Vec<Part>,
    /// The `EXT-X-MAP` in effect after the last segment (for the trailing
    /// parts and the hint).
    pub trailing_map: Option<String>,
    /// A discontinuity before the trailing parts.
    pub trailing_discontinuity: bool,
    pub preload_hint: Option<PreloadHint>,
    pub endlist: bool,
}

/// What a playlist URL answered.
// One is built per playlist response and taken apart at once, so the
// size of the media variant costs a move, not memory held.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Playlist {
    Media(MediaPlaylist),
    /// A multivariant playlist: the URIs of its variants, in order.
    Multivariant(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaylistError {
    #[error("not a playlist (no #EXTM3U)")]
    NotM3u8,
    #[error("line {line}: {what}")]
    Bad { line: usize, what: String },
    #[error("larger than {MAX_PLAYLIST} bytes")]
    TooLarge,
}

impl MediaPlaylist {
    /// The media sequence number of the segment being made: one past the
    /// last complete segment.
    pub fn next_msn(&self) -> u64 {
        self.media_sequence + self.skipped + self.segments.len() as u64
    }

    /// The first position this playlist does not list: the part the
    /// preload hint names, and what a blocking reload waits for.
    pub fn next_unlisted(&self) -> Pos {
        Pos::new(self.next_msn(), self.trailing_parts.len() as u64)
    }

    /// The oldest segment whose URI is listed.
    pub fn first_listed_msn(&self) -> u64 {
        self.media_sequence + self.skipped
    }

    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        let i = msn.checked_sub(self.first_listed_msn())?;
        self.segments.get(usize::try_from(i).ok()?)
    }

    /// Low-latency delivery: parts are listed and the server blocks
    /// reloads, so a player can wait on the server instead of polling.
    pub fn is_low_latency(&self) -> bool {
        self.part_target.is_some() && self.server_control.can_block_reload
    }

    /// The `EXT-X-MAP` URI in effect at `msn` (the trailing one past the
    /// last segment).
    pub fn map_at(&self, msn: u64) -> Option<&str> {
        match self.segment(msn) {
            Some(s) => s.map.as_deref(),
            None => self.trailing_map.as_deref(),
        }
    }
}

/// Parses a playlist body.
pub fn parse(text: &str) -> Result<Playlist, PlaylistError> {
    if text.len() > MAX_PLAYLIST {
        return Err(PlaylistError::TooLarge);
    }
    let mut lines = text
        .lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty());
    if !lines
        .next()
        .is_some_and(|(_, l)| l.trim_start_matches('\u{feff}') == "#EXTM3U")
    {
        return Err(PlaylistError::NotM3u8);
    }
    let mut pl = MediaPlaylist {
        target_duration: 0.0,
        ..MediaPlaylist::default()
    };
    let mut variants = Vec::new();
    let mut pending_variant = false;
    // What applies to the next URI line.
    let mut extinf: Option<f64> = None;
    let mut discontinuity = false;
    let mut map: Option<String> = None;
    let mut parts: Vec<Part> = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let bad = |what: String| PlaylistError::Bad { line: n, what };
        if !line.starts_with('#') {
            if pending_variant {
                variants.push(line.to_string());
                pending_variant = false;
                continue;
            }
            let Some(duration) = extinf.take() else {
                return Err(bad(format!("URI without #EXTINF: {line}")));
            };
            pl.segments.push(Segment {
                msn: pl.next_msn(),
                duration,
                uri: line.to_string(),
                parts: std::mem::take(&mut parts),
                discontinuity: std::mem::take(&mut discontinuity),
                map: map.clone(),
            });
            continue;
        }
        let (tag, value) = match line.split_once(':') {
            Some((t, v)) => (t, v),
            None => (line, ""),
        };
        match tag {
            "#EXT-X-TARGETDURATION" => pl.target_duration = number(value).map_err(bad)?,
            "#EXT-X-MEDIA-SEQUENCE" => pl.media_sequence = integer(value).map_err(bad)?,
            "#EXT-X-DISCONTINUITY-SEQUENCE" => {
                pl.discontinuity_sequence = integer(value).map_err(bad)?
            }
            "#EXT-X-DISCONTINUITY" => discontinuity = true,
            "#EXT-X-ENDLIST" => pl.endlist = true,
            "#EXTINF" => {
                let d = value.split(',').next().unwrap_or("");
                extinf = Some(number(d).map_err(bad)?);
            }
            "#EXT-X-MAP" => {
                let a = Attrs::parse(value).map_err(bad)?;
                map = Some(a.string("URI").map_err(bad)?.to_string());
            }
            "#EXT-X-PART-INF" => {
                let a = Attrs::parse(value).map_err(bad)?;
                pl.part_target = Some(number(a.raw("PART-TARGET").map_err(bad)?).map_err(bad)?);
            }
            "#EXT-X-SERVER-CONTROL" => {
                let a = Attrs::parse(value).map_err(bad)?;
                let sc = &mut pl.server_control;
                sc.can_block_reload = a.get("CAN-BLOCK-RELOAD") == Some("YES");
                let opt = |k: &str| a.get(k).map(number).transpose();
                sc.part_hold_back = opt("PART-HOLD-BACK").map_err(bad)?;
                sc.hold_back = opt("HOLD-BACK").map_err(bad)?;
                sc.can_skip_until = opt("CAN-SKIP-UNTIL").map_err(bad)?;
            }
            "#EXT-X-SKIP" => {
                if !pl.segments.is_empty() {
                    return Err(bad("EXT-X-SKIP after a segment".into()));
                }
                let a = Attrs::parse(value).map_err(bad)?;
                pl.skipped = integer(a.raw("SKIPPED-SEGMENTS").map_err(bad)?).map_err(bad)?;
            }
            "#EXT-X-PART" => {
                let a = Attrs::parse(value).map_err(bad)?;
                let uri = a.string("URI").map_err(bad)?.to_string();
                // Without `@offset` a range follows the previous part's
                // range of the same resource (RFC 8216bis 4.4.4.9).
                let follows = parts
                    .last()
                    .filter(|p| p.uri == uri)
                    .and_then(|p| p.byterange)
                    .map(|r| r.end());
                let byterange = match a.get("BYTERANGE") {
                    Some(v) => Some(byte_range(v, follows).map_err(bad)?),
                    None => None,
                };
                parts.push(Part {
                    duration: number(a.raw("DURATION").map_err(bad)?).map_err(bad)?,
                    uri,
                    independent: a.get("INDEPENDENT") == Some("YES"),
                    byterange,
                    gap: a.get("GAP") == Some("YES"),
                });
            }
            "#EXT-X-PRELOAD-HINT" => {
                let a = Attrs::parse(value).map_err(bad)?;
                pl.preload_hint = Some(PreloadHint {
                    part: a.get("TYPE") == Some("PART"),
                    uri: a.string("URI").map_err(bad)?.to_string(),
                    byterange_start: a
                        .get("BYTERANGE-START")
                        .map(integer)
                        .transpose()
                        .map_err(bad)?,
                });
            }
            "#EXT-X-STREAM-INF" => pending_variant = true,
            _ => {}
        }
    }
    if !variants.is_empty() {
        return Ok(Playlist::Multivariant(variants));
    }
    pl.trailing_parts = parts;
    pl.trailing_map = map;
    pl.trailing_discontinuity = discontinuity;
    Ok(Playlist::Media(pl))
}

fn number(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("not a duration: {s:?}")),
    }
}

fn integer(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("not an integer: {s:?}"))
}

/// `length[@offset]`; `follows` is where the range starts when the offset
/// is left out (none: the resource's previous part is not a range here).
fn byte_range(s: &str, follows: Option<u64>) -> Result<ByteRange, String> {
    let (length, offset) = match s.split_once('@') {
        Some((l, o)) => (integer(l)?, integer(o)?),
        None => {
            let start = follows.ok_or_else(|| format!("byte range without an offset: {s:?}"))?;
            (integer(s)?, start)
        }
    };
    Ok(ByteRange { length, offset })
}

/// An attribute list (`KEY=VALUE,KEY="quoted, value"`), borrowed from the
/// line. Quoted values keep their commas and lose their quotes.
struct Attrs<'a> {
    list: Vec<(&'a str, &'a str, bool)>,
}

impl<'a> Attrs<'a> {
    fn parse(mut s: &'a str) -> Result<Attrs<'a>, String> {
        let mut list = Vec::new();
        loop {
            s = s.trim_start();
            if s.is_empty() {
                return Ok(Attrs { list });
            }
            let (key, rest) = s
                .split_once('=')
                .ok_or_else(|| format!("attribute without a value: {s:?}"))?;
            let (value, quoted, rest) = if let Some(q) = rest.strip_prefix('"') {
                let end = q
                    .find('"')
                    .ok_or_else(|| format!("unterminated quote in {key}"))?;
                (&q[..end], true, &q[end + 1..])
            } else {
                let end = rest.find(',').unwrap_or(rest.len());
                (rest[..end].trim(), false, &rest[end..])
            };
            list.push((key.trim(), value, quoted));
            s = rest.trim_start();
            match s.strip_prefix(',') {
                Some(r) => s = r,
                None if s.is_empty() => {}
                None => return Err(format!("junk after {key}: {s:?}")),
            }
        }
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.list.iter().find(|(k, _, _)| *k == key).map(|e| e.1)
    }

    fn raw(&self, key: &str) -> Result<&'a str, String> {
        self.get(key).ok_or_else(|| format!("no {key}"))
    }

    /// A quoted-string attribute (URIs are always quoted).
    fn string(&self, key: &str) -> Result<&'a str, String> {
        match self.list.iter().find(|(k, _, _)| *k == key) {
            Some((_, v, true)) => Ok(v),
            Some(_) => Err(format!("{key} is not quoted")),
            None => Err(format!("no {key}")),
        }
    }
}

/// Resolves a URI reference from a playlist against the playlist's request
/// target (`/path?query`), as RFC 3986 section 5.2 does for the forms a
/// playlist uses: an absolute `http://` URL on the same host, an absolute
/// path, a query alone, or a relative path. The reference's own query is
/// kept exactly as given (it carries tokens and session ids); the base's
/// query is not inherited by a path reference. Returns the request target.
pub fn resolve(base: &str, reference: &str, authority: &str) -> Result<String, String> {
    let reference = reference.split('#').next().unwrap_or("");
    if let Some(rest) = reference
        .strip_prefix("http://")
        .or_else(|| reference.strip_prefix("https://"))
    {
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        // Another host would need its own connections; the server this
        // harness loads serves everything from one.
        let same = auth == authority
            || (authority.ends_with(":80") && auth == &authority[..authority.len() - 3]);
        if !same || reference.starts_with("https://") {
            return Err(format!(
                "{reference}: another host or scheme than the playlist's"
            ));
        }
        return Ok(remove_dot_segments(path));
    }
    if reference.starts_with("//") || reference.contains("://") {
        return Err(format!(
            "{reference}: another host or scheme than the playlist's"
        ));
    }
    let (base_path, base_query) = match base.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (base, None),
    };
    if reference.is_empty() {
        return Ok(match base_query {
            Some(q) => format!("{base_path}?{q}"),
            None => base_path.to_string(),
        });
    }
    if let Some(q) = reference.strip_prefix('?') {
        return Ok(format!("{base_path}?{q}"));
    }
    let (ref_path, ref_query) = match reference.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (reference, None),
    };
    let merged = if ref_path.starts_with('/') {
        ref_path.to_string()
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{}{ref_path}", if dir.is_empty() { "/" } else { dir })
    };
    let mut out = remove_dot_segments(&merged);
    if let Some(q) = ref_query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// RFC 3986 section 5.2.4, on a path without query.
fn remove_dot_segments(path: &str) -> String {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut s = format!("/{}", out.join("/"));
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    s
}

/// `target` with a blocking-reload directive for `pos` appended to its
/// query (`?` or `&`, whichever it needs), the query otherwise untouched.
pub fn blocking_reload(target: &str, pos: Pos) -> String {
    let sep = if target.contains('?') { '&' } else { '?' };
    format!("{target}{sep}_HLS_msn={}&_HLS_part={}", pos.msn, pos.part)
}

#[cfg(test)]
#[path = "m3u8_tests.rs"]
mod tests;
