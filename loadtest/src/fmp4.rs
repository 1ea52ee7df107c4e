//! Just enough fragmented MP4 (CMAF) to measure an HLS player: which track
//! is the video and how long its NAL length prefixes are (from `init.mp4`),
//! then, as a part's or segment's bytes arrive, where each video sample
//! lies (from `moof`: `tfhd`, `trun`) and the NAL units inside it, to find
//! the publisher's SEI stamps.
//!
//! Written by hand rather than with an MP4 crate: the harness reads a dozen
//! box headers and the `trun` sample table, and it must do so on whatever
//! slice a non-blocking read returns, keeping no more of a player's body
//! than one `moof` and the first bytes of each SEI. The sample data itself
//! is walked in place and never copied. Every length read from the wire is
//! checked before it is used: bad input is an [`Fmp4Error`], never a panic.

use std::collections::VecDeque;

use crate::stamp::{sei_stamp, Stamp, NAL_TYPE_SEI};

/// A `moof` is a sample table: a few KB. Bigger is not a live stream's.
const MAX_MOOF: u64 = 1024 * 1024;
/// An init segment is `ftyp` + `moov`: a few KB.
pub const MAX_INIT: usize = 1024 * 1024;
/// Video samples listed by one `moof` (a 10 s fragment at 240 fps is 2,400).
const MAX_SAMPLES: usize = 100_000;
/// Bytes kept of an SEI NAL: the stamp, escaped, is under 50.
const SEI_KEEP: usize = 64;
/// `sample_is_non_sync_sample` in ISO/IEC 14496-12 sample flags.
const NON_SYNC: u32 = 0x0001_0000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fmp4Error {
    #[error("box {0:?} overruns its parent")]
    BoxOverrun(String),
    #[error("box {0:?} of {1} bytes is too large")]
    TooLarge(String, u64),
    #[error("{0} is truncated")]
    Truncated(&'static str),
    #[error("no moov in the init segment")]
    NoMoov,
    #[error("no video track in the init segment")]
    NoVideo,
    #[error("more than {MAX_SAMPLES} video samples in one moof")]
    TooManySamples,
    #[error("video sample data outside the following mdat")]
    BadOffset,
    #[error("NAL unit overruns its sample")]
    NalOverrun,
    #[error("body ended inside a box or before a sample's data")]
    Unfinished,
}

/// What the init segment says of the video track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTrack {
    pub track_id: u32,
    /// The sample entry (`avc1`, `avc3`, `hvc1`, ...).
    pub codec: [u8; 4],
    /// H.264 only (from `avcC`): the samples' NAL length prefix, 1 to 4.
    /// `None` for other codecs, whose samples are counted, not searched.
    pub nal_length_size: Option<usize>,
    /// `trex` defaults, used when a fragment gives none.
    pub default_size: u32,
    pub default_flags: u32,
}

fn fourcc_str(t: [u8; 4]) -> String {
    String::from_utf8_lossy(&t).into_owned()
}

/// Iterates the boxes of a complete buffer.
struct Boxes<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<([u8; 4], &'a [u8]), Fmp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        let r = box_at(self.data);
        match r {
            Ok((t, header, size)) => {
                let payload = &self.data[header..size];
                self.data = &self.data[size..];
                Some(Ok((t, payload)))
            }
            Err(e) => {
                self.data = &[];
                Some(Err(e))
            }
        }
    }
}

/// The type, header length and total size of the box at the start of
/// `data`, checked to fit in `data`.
fn box_at(data: &[u8]) -> Result<([u8; 4], usize, usize), Fmp4Error> {
    let head = data.get(..8).ok_or(Fmp4Error::Truncated("box header"))?;
    let t: [u8; 4] = [head[4], head[5], head[6], head[7]];
    let (size, header) = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
        0 => (data.len() as u64, 8),
        1 => (
            be_u64(data, 8).ok_or(Fmp4Error::Truncated("box header"))?,
            16,
        ),
        n => (u64::from(n), 8),
    };
    if size < header as u64 || size > data.len() as u64 {
        return Err(Fmp4Error::BoxOverrun(fourcc_str(t)));
    }
    Ok((t, header, size as usize))
}

fn boxes(data: &[u8]) -> Boxes<'_> {
    Boxes { data }
}

/// The first child box of type `t`.
fn child<'a>(data: &'a [u8], t: &[u8; 4]) -> Result<Option<&'a [u8]>, Fmp4Error> {
    for b in boxes(data) {
        let (bt, payload) = b?;
        if &bt == t {
            return Ok(Some(payload));
        }
    }
    Ok(None)
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Reads the video track of an init segment (`ftyp` + `moov`): the first
/// `trak` whose handler is `vide`.
pub fn parse_init(data: &[u8]) -> Result<VideoTrack, Fmp4Error> {
    let moov = child(data, b"moov")?.ok_or(Fmp4Error::NoMoov)?;
    let mut video = None;
    for b in boxes(moov) {
        let (t, payload) = b?;
        if &t == b"trak" && video.is_none() {
            video = parse_trak(payload)?;
        }
    }
    let mut v = video.ok_or(Fmp4Error::NoVideo)?;
    if let Some(mvex) = child(moov, b"mvex")? {
        for b in boxes(mvex) {
            let (t, p) = b?;
            // trex: version/flags, track_ID, description index, duration,
            // size, flags.
            if &t == b"trex" && be_u32(p, 4) == Some(v.track_id) {
                let trunc = Fmp4Error::Truncated("trex");
                v.default_size = be_u32(p, 16).ok_or(trunc.clone())?;
                v.default_flags = be_u32(p, 20).ok_or(trunc)?;
            }
        }
    }
    Ok(v)
}

/// A `trak`'s video track, or None when it is not video.
fn parse_trak(trak: &[u8]) -> Result<Option<VideoTrack>, Fmp4Error> {
    let Some(mdia) = child(trak, b"mdia")? else {
        return Ok(None);
    };
    // hdlr: version/flags, pre_defined, handler_type.
    let hdlr = child(mdia, b"hdlr")?.ok_or(Fmp4Error::Truncated("mdia"))?;
    if hdlr.get(8..12) != Some(&b"vide"[..]) {
        return Ok(None);
    }
    let tkhd = child(trak, b"tkhd")?.ok_or(Fmp4Error::Truncated("trak"))?;
    // tkhd: version 1 has 64-bit creation and modification times.
    let id_at = if tkhd.first() == Some(&1) { 20 } else { 12 };
    let track_id = be_u32(tkhd, id_at).ok_or(Fmp4Error::Truncated("tkhd"))?;
    let stsd = child(mdia, b"minf")?
        .map(|m| child(m, b"stbl"))
        .transpose()?
        .flatten()
        .map(|s| child(s, b"stsd"))
        .transpose()?
        .flatten()
        .ok_or(Fmp4Error::Truncated("stbl"))?;
    // stsd: version/flags, entry_count, then the sample entries.
    let entries = stsd.get(8..).ok_or(Fmp4Error::Truncated("stsd"))?;
    let (codec, entry) = boxes(entries)
        .next()
        .ok_or(Fmp4Error::Truncated("stsd"))??;
    let mut nal_length_size = None;
    if &codec == b"avc1" || &codec == b"avc3" {
        // A VisualSampleEntry has 78 bytes of fields before its boxes.
        let inner = entry.get(78..).ok_or(Fmp4Error::Truncated("avc1"))?;
        let avcc = child(inner, b"avcC")?.ok_or(Fmp4Error::Truncated("avc1"))?;
        nal_length_size =
            Some(crate::stamp::nal_length_size(avcc).ok_or(Fmp4Error::Truncated("avcC"))?);
    }
    Ok(Some(VideoTrack {
        track_id,
        codec,
        nal_length_size,
        default_size: 0,
        default_flags: 0,
    }))
}

/// One video sample's place in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    /// Offset from the start of the body.
    start: u64,
    size: u32,
    key: bool,
}

/// What the reader finds, in body order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A video sample's first byte arrived; `key` from its sample flags.
    Frame { key: bool },
    /// The publisher's stamp, from an SEI NAL of the current sample.
    Stamp(Stamp),
}

/// The top-level box being read.
#[derive(Debug)]
enum Top {
    Header {
        buf: [u8; 16],
        got: usize,
    },
    /// A `moof` collected whole (its start offset, its bytes so far).
    Moof {
        start: u64,
        size: u64,
        buf: Vec<u8>,
    },
    /// `mdat` payload until `end` (exclusive; `u64::MAX`: to the body's end).
    Mdat {
        end: u64,
    },
    Skip {
        end: u64,
    },
}

/// Walks one sample's length-prefixed NAL units as its bytes arrive.
#[derive(Debug, Default)]
struct NalWalker {
    /// Length prefix bytes still to read (0 inside a NAL).
    len_left: usize,
    len: u64,
    /// Bytes of the current NAL still to come.
    nal_left: u64,
    /// The next byte is the current NAL's header.
    at_header: bool,
    /// The start of the current NAL, when it is an SEI.
    sei: Option<Vec<u8>>,
}

impl NalWalker {
    fn start(nal_length_size: usize) -> NalWalker {
        NalWalker {
            len_left: nal_length_size,
            ..NalWalker::default()
        }
    }

    fn feed(&mut self, mut data: &[u8], nal_length_size: usize, on: &mut impl FnMut(Event)) {
        while !data.is_empty() {
            if self.len_left > 0 {
                self.len = (self.len << 8) | u64::from(data[0]);
                data = &data[1..];
                self.len_left -= 1;
                if self.len_left == 0 {
                    self.nal_left = std::mem::take(&mut self.len);
                    self.at_header = true;
                    if self.nal_left == 0 {
                        self.len_left = nal_length_size;
                    }
                }
                continue;
            }
            let n = self.nal_left.min(data.len() as u64) as usize;
            let (bytes, rest) = data.split_at(n);
            if std::mem::take(&mut self.at_header) && bytes[0] & 0x1F == NAL_TYPE_SEI {
                self.sei = Some(Vec::with_capacity(SEI_KEEP));
            }
            if let Some(buf) = &mut self.sei {
                let room = SEI_KEEP.saturating_sub(buf.len()).min(bytes.len());
                buf.extend_from_slice(&bytes[..room]);
            }
            self.nal_left -= n as u64;
            data = rest;
            if self.nal_left == 0 {
                if let Some(s) = self.sei.take().and_then(|b| sei_stamp(&b)) {
                    on(Event::Stamp(s));
                }
                self.len_left = nal_length_size;
            }
        }
    }

    /// The sample ended: it must end between two NAL units.
    fn finish(&self, nal_length_size: usize) -> Result<(), Fmp4Error> {
        if self.nal_left == 0 && self.len_left == nal_length_size {
            Ok(())
        } else {
            Err(Fmp4Error::NalOverrun)
        }
    }
}

/// Reads one part's or segment's body (`styp`? `moof` `mdat` ...) as it
/// arrives and reports its video samples and stamps. Boxes other than
/// `moof` and `mdat` are skipped; audio samples are passed over in place.
#[derive(Debug)]
pub struct FragmentReader {
    video: VideoTrack,
    /// Offset of the next byte from the start of the body.
    pos: u64,
    top: Top,
    /// Video samples the last `moof` listed that have not ended yet.
    samples: VecDeque<Sample>,
    /// The front sample has begun (its `Frame` event was sent).
    in_sample: bool,
    walker: NalWalker,
}

impl FragmentReader {
    pub fn new(video: VideoTrack) -> FragmentReader {
        FragmentReader {
            video,
            pos: 0,
            top: Top::Header {
                buf: [0; 16],
                got: 0,
            },
            samples: VecDeque::new(),
            in_sample: false,
            walker: NalWalker::default(),
        }
    }

    /// Consumes body bytes; events go to `on` as soon as their bytes are in.
    pub fn push(&mut self, mut data: &[u8], on: &mut impl FnMut(Event)) -> Result<(), Fmp4Error> {
        while !data.is_empty() {
            match &mut self.top {
                Top::Header { buf, got } => {
                    // 8 bytes, or 16 when the 32-bit size is 1 (a 64-bit
                    // size follows the type).
                    let large = |b: &[u8; 16]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) == 1;
                    let want = if *got >= 8 && large(buf) { 16 } else { 8 };
                    let n = (want - *got).min(data.len());
                    buf[*got..*got + n].copy_from_slice(&data[..n]);
                    *got += n;
                    data = &data[n..];
                    if *got == 16 || (*got == 8 && !large(buf)) {
                        let (buf, got) = (*buf, *got);
                        self.open_box(&buf[..got])?;
                    }
                }
                Top::Moof { start, size, buf } => {
                    let n = ((*size - buf.len() as u64).min(data.len() as u64)) as usize;
                    buf.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if buf.len() as u64 == *size {
                        let (start, moof) = (*start, std::mem::take(buf));
                        self.pos = start + moof.len() as u64;
                        self.top = Top::Header {
                            buf: [0; 16],
                            got: 0,
                        };
                        self.on_moof(start, &moof)?;
                    }
                }
                Top::Mdat { end } | Top::Skip { end } => {
                    let end = *end;
                    let n = ((end - self.pos).min(data.len() as u64)) as usize;
                    if matches!(self.top, Top::Mdat { .. }) {
                        self.on_media(&data[..n], on)?;
                    }
                    self.pos += n as u64;
                    data = &data[n..];
                    if self.pos == end {
                        self.top = Top::Header {
                            buf: [0; 16],
                            got: 0,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    /// The body ended: it must end between boxes, with every listed video
    /// sample read.
    pub fn finish(&self) -> Result<(), Fmp4Error> {
        let between = match &self.top {
            Top::Header { got, .. } => *got == 0,
            Top::Mdat { end } => *end == u64::MAX,
            _ => false,
        };
        if between && self.samples.is_empty() {
            Ok(())
        } else {
            Err(Fmp4Error::Unfinished)
        }
    }

    /// A box header is complete (`head` is 8 or 16 bytes).
    fn open_box(&mut self, head: &[u8]) -> Result<(), Fmp4Error> {
        let t: [u8; 4] = [head[4], head[5], head[6], head[7]];
        let start = self.pos;
        let header = head.len() as u64;
        let size = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
            0 => None,
            1 => be_u64(head, 8),
            n => Some(u64::from(n)),
        };
        self.pos += header;
        if size.is_some_and(|s| s < header) {
            return Err(Fmp4Error::BoxOverrun(fourcc_str(t)));
        }
        let end = match size {
            Some(s) => start
                .checked_add(s)
                .ok_or(Fmp4Error::TooLarge(fourcc_str(t), s))?,
            None => u64::MAX,
        };
        self.top = match &t {
            b"moof" => {
                let s = size.ok_or(Fmp4Error::BoxOverrun("moof".into()))?;
                if s > MAX_MOOF {
                    return Err(Fmp4Error::TooLarge("moof".into(), s));
                }
                if !self.samples.is_empty() {
                    return Err(Fmp4Error::BadOffset);
                }
                let mut buf = Vec::with_capacity(s as usize);
                buf.extend_from_slice(head);
                Top::Moof {
                    start,
                    size: s,
                    buf,
                }
            }
            b"mdat" => Top::Mdat { end },
            _ => Top::Skip { end },
        };
        if self.pos == end {
            self.top = Top::Header {
                buf: [0; 16],
                got: 0,
            };
        }
        Ok(())
    }

    /// Lists the video samples of a whole `moof` (header included) that
    /// starts at body offset `start`.
    fn on_moof(&mut self, start: u64, moof: &[u8]) -> Result<(), Fmp4Error> {
        let (_, header, _) = box_at(moof)?;
        // Without default-base-is-moof or an explicit base, the first
        // traf's data starts from the moof and each later one's where the
        // previous traf's data ended (ISO/IEC 14496-12, 8.8.7.1).
        let mut data_end = start;
        for b in boxes(&moof[header..]) {
            let (t, traf) = b?;
            if &t == b"traf" {
                data_end = self.on_traf(start, data_end, traf)?;
            }
        }
        let moof_end = start + moof.len() as u64;
        let mut last_end = moof_end;
        for s in &self.samples {
            if s.start < last_end {
                return Err(Fmp4Error::BadOffset);
            }
            last_end = s.start + u64::from(s.size);
        }
        self.in_sample = false;
        Ok(())
    }

    /// One `traf`: records its samples if it is the video track; returns
    /// where its data ends.
    fn on_traf(&mut self, moof_start: u64, prev_end: u64, traf: &[u8]) -> Result<u64, Fmp4Error> {
        let tfhd = child(traf, b"tfhd")?.ok_or(Fmp4Error::Truncated("traf"))?;
        let trunc = || Fmp4Error::Truncated("tfhd");
        let flags = be_u32(tfhd, 0).ok_or_else(trunc)? & 0x00FF_FFFF;
        let track_id = be_u32(tfhd, 4).ok_or_else(trunc)?;
        let mut at = 8;
        let mut base = if flags & 0x02_0000 != 0 {
            moof_start
        } else {
            prev_end
        };
        if flags & 0x01 != 0 {
            base = be_u64(tfhd, at).ok_or_else(trunc)?;
            at += 8;
        }
        let mut field = |bit: u32| -> Result<Option<u32>, Fmp4Error> {
            if flags & bit == 0 {
                return Ok(None);
            }
            let v = be_u32(tfhd, at).ok_or_else(trunc)?;
            at += 4;
            Ok(Some(v))
        };
        let _description = field(0x02)?;
        let _duration = field(0x08)?;
        let default_size = field(0x10)?.unwrap_or(self.video.default_size);
        let default_flags = field(0x20)?.unwrap_or(self.video.default_flags);
        let is_video = track_id == self.video.track_id;
        let mut data_pos = base;
        for b in boxes(traf) {
            let (t, trun) = b?;
            if &t != b"trun" {
                continue;
            }
            let trunc = || Fmp4Error::Truncated("trun");
            let tflags = be_u32(trun, 0).ok_or_else(trunc)? & 0x00FF_FFFF;
            let count = be_u32(trun, 4).ok_or_else(trunc)? as usize;
            let mut at = 8;
            if tflags & 0x01 != 0 {
                let off = be_u32(trun, at).ok_or_else(trunc)? as i32;
                data_pos = base
                    .checked_add_signed(i64::from(off))
                    .ok_or(Fmp4Error::BadOffset)?;
                at += 4;
            }
            let first_flags = if tflags & 0x04 != 0 {
                let f = be_u32(trun, at).ok_or_else(trunc)?;
                at += 4;
                Some(f)
            } else {
                None
            };
            let per_sample = [0x100u32, 0x200, 0x400, 0x800]
                .iter()
                .filter(|&&bit| tflags & bit != 0)
                .count()
                * 4;
            if per_sample > 0 && count > (trun.len().saturating_sub(at)) / per_sample {
                return Err(trunc());
            }
            // Checked for every track: a trun with no per-sample fields
            // could otherwise make this loop run four billion times.
            if count > MAX_SAMPLES || (is_video && self.samples.len() + count > MAX_SAMPLES) {
                return Err(Fmp4Error::TooManySamples);
            }
            for i in 0..count {
                let mut read = |bit: u32| -> Option<u32> {
                    if tflags & bit == 0 {
                        return None;
                    }
                    let v = be_u32(trun, at);
                    at += 4;
                    v
                };
                let _duration = read(0x100);
                let size = read(0x200).unwrap_or(default_size);
                let sflags = read(0x400);
                let _cto = read(0x800);
                if is_video {
                    let f = match (i, first_flags, sflags) {
                        (0, Some(f), _) => f,
                        (_, _, Some(f)) => f,
                        _ => default_flags,
                    };
                    self.samples.push_back(Sample {
                        start: data_pos,
                        size,
                        key: f & NON_SYNC == 0,
                    });
                }
                data_pos = data_pos
                    .checked_add(u64::from(size))
                    .ok_or(Fmp4Error::BadOffset)?;
            }
        }
        Ok(data_pos)
    }

    /// `mdat` payload bytes at `self.pos`: hands video samples' bytes to the
    /// NAL walker and skips the rest.
    fn on_media(&mut self, mut data: &[u8], on: &mut impl FnMut(Event)) -> Result<(), Fmp4Error> {
        let mut pos = self.pos;
        while let Some(&s) = self.samples.front() {
            if s.start > pos {
                if data.is_empty() {
                    break;
                }
                let skip = (s.start - pos).min(data.len() as u64) as usize;
                data = &data[skip..];
                pos += skip as u64;
                continue;
            }
            if !self.in_sample {
                if s.start < pos {
                    return Err(Fmp4Error::BadOffset);
                }
                self.in_sample = true;
                on(Event::Frame { key: s.key });
                if let Some(ls) = self.video.nal_length_size {
                    self.walker = NalWalker::start(ls);
                }
            }
            let end = s.start + u64::from(s.size);
            let n = (end - pos).min(data.len() as u64) as usize;
            if let Some(ls) = self.video.nal_length_size {
                self.walker.feed(&data[..n], ls, on);
            }
            data = &data[n..];
            pos += n as u64;
            if pos < end {
                break;
            }
            if let Some(ls) = self.video.nal_length_size {
                self.walker.finish(ls)?;
            }
            self.samples.pop_front();
            self.in_sample = false;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "fmp4_tests.rs"]
pub mod tests;
