//! The packager of one stream, on the core that owns it: frames in (the
//! hub's, already on the players' monotonic timeline), CMAF parts out into
//! the stream's shared [`Window`].
//!
//! Video drives the cuts when the stream has video: a part closes when the
//! next frame would take it past `part_ms`, a segment at the first keyframe
//! at least `segment_ms` after its start (so segments start on keyframes),
//! or at `max_segment_ms` whatever comes. A frame's duration is known only
//! when the next frame arrives, so the newest video frame is held open and
//! the cut falls on the arriving frame's decode time; audio frames before
//! that time go into the same fragment as a second track. An audio-only
//! stream is cut on its own frames.
//!
//! Timescales: video 90 kHz (milliseconds × 90, exact); audio the codec's
//! sample rate, with each frame's duration from the codec (1024 samples
//! per AAC frame, an Opus packet's TOC), counted on from the first frame so
//! rounding of millisecond timestamps never shows up as gaps. A gap of more
//! than two frames restarts the count from the timestamp.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::window::{PartData, SegmentData, StreamFacts, Window};
use crate::hub::Frame;
use crate::protocol::cmaf::{self, CodecConfig, FlvMedia, Run, Sample, TrackConfig};
use crate::protocol::session::MediaKind;

/// The video track's timescale (90 kHz, the MPEG convention; milliseconds
/// map onto it exactly).
pub const VIDEO_TIMESCALE: u32 = 90_000;
const VIDEO_TRACK: u32 = 1;
const AUDIO_TRACK: u32 = 2;

/// Limits and targets of a packager, from `[hls]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackagerConfig {
    pub part: Duration,
    pub segment: Duration,
    pub max_segment: Duration,
    pub window_segments: usize,
    pub max_bytes: usize,
    /// Package whether or not anyone watches.
    pub always: bool,
    /// Without `always`: how long after the last request packaging stops.
    pub idle: Duration,
}

impl PackagerConfig {
    pub fn from_config(c: &crate::config::HlsSection) -> PackagerConfig {
        PackagerConfig {
            part: Duration::from_millis(c.part_ms.into()),
            segment: Duration::from_millis(c.segment_ms.into()),
            max_segment: Duration::from_millis(c.max_segment_ms.into()),
            window_segments: c.window_segments,
            max_bytes: c.max_window_bytes,
            always: c.always,
            // A first request waits up to two segments for its answer: the
            // packager must not give up on it meanwhile.
            idle: Duration::from_millis(c.session_timeout_ms)
                .max(Duration::from_millis(2 * u64::from(c.segment_ms))),
        }
    }
}

/// A video frame whose duration is not known yet.
struct OpenFrame {
    ms: u64,
    cts_ms: i32,
    keyframe: bool,
    data: Bytes,
}

/// Widens 32-bit millisecond timestamps (which wrap after 49 days) to 64.
#[derive(Default)]
struct Clock {
    last: Option<u32>,
    high: u64,
}

impl Clock {
    fn widen(&mut self, ts: u32) -> u64 {
        if let Some(last) = self.last {
            if ts < last && last - ts > 1 << 31 {
                self.high += 1 << 32;
            }
        }
        self.last = Some(ts);
        self.high + u64::from(ts)
    }
}

pub struct Packager {
    window: Arc<Window>,
    cfg: PackagerConfig,
    video_cfg: Option<CodecConfig>,
    audio_cfg: Option<CodecConfig>,
    /// The configurations the window's init segment was made from.
    init_of: Option<(Option<CodecConfig>, Option<CodecConfig>)>,
    clock: Clock,
    /// Where the open part and segment started (ms); None until the first
    /// keyframe (or, audio-only, the first frame).
    part_start: Option<u64>,
    segment_start: u64,
    open: Option<OpenFrame>,
    /// Complete video samples of the open part, and the first one's time.
    video: Vec<Sample>,
    video_start: u64,
    /// Audio frames waiting for their part: (ms, data).
    audio: Vec<(u64, Bytes)>,
    /// The next audio decode time on the audio timescale.
    audio_next: Option<u64>,
    last_video_delta: u64,
    sequence: u32,
    /// The next segment follows a publisher change or a new init.
    discontinuity: bool,
    /// The oldest ingest instant in the open part (production latency).
    part_ingest: Option<Instant>,
    segment_ingest: Option<Instant>,
    /// The stream has both tracks: parts are also made one track each.
    split: bool,
}

impl Packager {
    /// A packager writing into `window` (a stream that continues after a
    /// publisher change on another core keeps its window).
    pub fn new(window: Arc<Window>, cfg: PackagerConfig, continues: bool) -> Packager {
        Packager {
            window,
            cfg,
            video_cfg: None,
            audio_cfg: None,
            init_of: None,
            clock: Clock::default(),
            part_start: None,
            segment_start: 0,
            open: None,
            video: Vec::new(),
            video_start: 0,
            audio: Vec::new(),
            audio_next: None,
            last_video_delta: 33,
            sequence: 1,
            discontinuity: continues,
            part_ingest: None,
            segment_ingest: None,
            split: false,
        }
    }

    pub fn window(&self) -> &Arc<Window> {
        &self.window
    }

    /// One frame of the stream. Returns how long the part it closed (if
    /// any) took from its oldest frame's ingest to being available.
    pub fn push(&mut self, frame: &Frame, now: Instant) -> Option<Duration> {
        if !self.cfg.always && !self.watched(frame, now) {
            // Nobody asks: keep the codec configurations (they come once,
            // at the start) and package nothing.
            if frame.header.is_some() {
                self.configure(frame, now);
            }
            return None;
        }
        match frame.kind {
            MediaKind::Video => match cmaf::flv_video(&frame.payload) {
                Ok(FlvMedia::Config(c)) => {
                    self.set_config(c, now);
                    None
                }
                Ok(FlvMedia::Frame {
                    data,
                    composition_offset_ms,
                    keyframe,
                }) => {
                    let ms = self.clock.widen(frame.timestamp);
                    self.video_frame(ms, composition_offset_ms, keyframe, data, frame.ingest, now)
                }
                _ => None,
            },
            MediaKind::Audio => match cmaf::flv_audio(&frame.payload) {
                Ok(FlvMedia::Config(c)) => {
                    self.set_config(c, now);
                    None
                }
                Ok(FlvMedia::Frame { data, .. }) => {
                    let ms = self.clock.widen(frame.timestamp);
                    self.audio_frame(ms, data, frame.ingest, now)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether players want this stream packaged: the first request turns
    /// packaging on; at a keyframe with no request for `idle`, it stops and
    /// the window lets its media go (a later request starts it again).
    fn watched(&mut self, frame: &Frame, now: Instant) -> bool {
        if !self.window.wanted() {
            return false;
        }
        if frame.keyframe && self.part_start.is_some() {
            let last = self.window.read().last_request;
            let idle = last.map_or(true, |t| now.saturating_duration_since(t) >= self.cfg.idle);
            if idle {
                self.flush(now);
                self.discontinuity = true;
                self.window.idle();
                return false;
            }
        }
        true
    }

    /// A sequence header while not packaging.
    fn configure(&mut self, frame: &Frame, now: Instant) {
        let parsed = match frame.kind {
            MediaKind::Video => cmaf::flv_video(&frame.payload),
            MediaKind::Audio => cmaf::flv_audio(&frame.payload),
            _ => return,
        };
        if let Ok(FlvMedia::Config(c)) = parsed {
            self.set_config(c, now);
        }
    }

    /// The publisher changed (came back, or another took over): what is
    /// open is closed, the next segment is a discontinuity and waits for a
    /// keyframe.
    pub fn restart(&mut self, now: Instant) {
        self.flush(now);
        self.discontinuity = true;
        self.video_cfg = None;
        self.audio_cfg = None;
        self.clock = Clock::default();
    }

    /// The stream is over: close what is open and tell waiting requests.
    pub fn finish(&mut self, now: Instant) {
        self.flush(now);
        self.window.end();
    }

    /// Closes the open part and segment, ending the open frame with the
    /// last frame interval.
    fn flush(&mut self, now: Instant) {
        if let Some(open) = self.open.take() {
            let end = open.ms + self.last_video_delta.max(1);
            self.finish_open(open, end);
            self.close_part(end, now);
        } else if let Some(&(ms, _)) = self.audio.last() {
            self.close_part(ms + 1, now);
        }
        self.close_segment();
        self.part_start = None;
        self.audio.clear();
        self.audio_next = None;
    }

    fn set_config(&mut self, c: CodecConfig, now: Instant) {
        let slot = if c.is_video() {
            &mut self.video_cfg
        } else {
            &mut self.audio_cfg
        };
        if slot.as_ref() == Some(&c) {
            return;
        }
        *slot = Some(c);
        if self.init_of.is_some() && self.part_start.is_some() {
            // A codec change mid-stream: what follows needs a new init
            // segment, so it starts a new segment on its next keyframe.
            self.flush(now);
            self.discontinuity = true;
        }
    }

    /// Makes (or keeps) the init segment for the current configurations.
    fn ensure_init(&mut self) -> bool {
        let want = (self.video_cfg.clone(), self.audio_cfg.clone());
        if self.init_of.as_ref() == Some(&want) {
            return true;
        }
        let mut tracks = Vec::with_capacity(2);
        let mut facts = StreamFacts {
            timescale: VIDEO_TIMESCALE,
            ..StreamFacts::default()
        };
        let mut codecs = Vec::new();
        if let Some(v) = &want.0 {
            tracks.push(TrackConfig {
                id: VIDEO_TRACK,
                timescale: VIDEO_TIMESCALE,
                codec: v.clone(),
            });
            codecs.push(v.codec_string());
            facts.resolution = v.video_size();
        }
        if let Some(a) = &want.1 {
            let Some((rate, channels)) = a.audio_params() else {
                return false;
            };
            tracks.push(TrackConfig {
                id: AUDIO_TRACK,
                timescale: rate,
                codec: a.clone(),
            });
            codecs.push(a.codec_string());
            facts.audio_rate = Some(rate);
            facts.audio_channels = Some(channels);
            if want.0.is_none() {
                facts.timescale = rate;
            }
        }
        let Ok(init) = cmaf::init_segment(&tracks) else {
            return false;
        };
        // With both tracks, each also alone: DASH players want audio and
        // video in separate adaptation sets, and HLS offers them apart too
        // (`video.m3u8`, `audio.m3u8`).
        let track_inits = match (
            tracks.len() == 2,
            cmaf::init_segment(&tracks[..1]),
            cmaf::init_segment(&tracks[1..]),
        ) {
            (true, Ok(v), Ok(a)) => Some([v, a]),
            _ => None,
        };
        if track_inits.is_some() {
            facts.track_codecs = Some([codecs[0].clone(), codecs[1].clone()]);
        }
        self.split = track_inits.is_some();
        facts.codecs = codecs.join(",");
        let first = self.init_of.is_none();
        self.window.change(|s| {
            if s.init.as_ref() != Some(&init) {
                if s.init.is_some() {
                    // Segments made for another init cannot be listed
                    // under this one: the window starts over (msns go on).
                    let gone = s.segments.iter().filter(|g| g.discontinuity).count() as u64;
                    s.discontinuity_sequence += gone;
                    s.segments.clear();
                    s.current = None;
                    s.bytes = 0;
                }
                s.init = Some(init);
                s.init_generation += 1;
            }
            s.track_inits = track_inits;
            s.facts = facts;
        });
        if !first {
            self.discontinuity = true;
        }
        self.init_of = Some(want);
        true
    }

    fn video_frame(
        &mut self,
        ms: u64,
        cts_ms: i32,
        keyframe: bool,
        data: Bytes,
        ingest: Instant,
        now: Instant,
    ) -> Option<Duration> {
        let new = OpenFrame {
            ms,
            cts_ms,
            keyframe,
            data,
        };
        let Some(part_start) = self.part_start else {
            // Segments start on keyframes.
            if !keyframe || !self.ensure_init() {
                return None;
            }
            self.start_segment(ms, ingest);
            self.open = Some(new);
            return None;
        };
        let mut latency = None;
        if let Some(open) = self.open.take() {
            let delta = ms.saturating_sub(open.ms).max(1);
            self.last_video_delta = delta;
            self.finish_open(open, ms);
        }
        let in_segment = ms.saturating_sub(self.segment_start);
        let in_part = ms.saturating_sub(part_start);
        let segment_due = keyframe && in_segment >= ms_of(self.cfg.segment);
        if segment_due || in_segment >= ms_of(self.cfg.max_segment) {
            latency = self.close_part(ms, now);
            self.close_segment();
            self.start_segment(ms, ingest);
        } else if in_part + self.last_video_delta > ms_of(self.cfg.part) {
            latency = self.close_part(ms, now);
        }
        self.part_ingest.get_or_insert(ingest);
        self.open = Some(new);
        latency
    }

    fn audio_frame(
        &mut self,
        ms: u64,
        data: Bytes,
        ingest: Instant,
        now: Instant,
    ) -> Option<Duration> {
        self.audio_cfg.as_ref()?;
        if self.video_cfg.is_some() {
            // Video drives the cuts; audio waits for its part (and, before
            // the first keyframe, is dropped: a segment starts on video).
            if self.part_start.is_some() {
                self.audio.push((ms, data));
                self.part_ingest.get_or_insert(ingest);
            }
            return None;
        }
        let mut latency = None;
        match self.part_start {
            None => {
                if !self.ensure_init() {
                    return None;
                }
                self.start_segment(ms, ingest);
            }
            Some(part_start) => {
                if ms.saturating_sub(self.segment_start) >= ms_of(self.cfg.segment) {
                    latency = self.close_part(ms, now);
                    self.close_segment();
                    self.start_segment(ms, ingest);
                } else if ms.saturating_sub(part_start) >= ms_of(self.cfg.part) {
                    latency = self.close_part(ms, now);
                }
            }
        }
        self.part_ingest.get_or_insert(ingest);
        self.audio.push((ms, data));
        latency
    }

    fn finish_open(&mut self, open: OpenFrame, next_ms: u64) {
        let duration = next_ms.saturating_sub(open.ms).max(1);
        if self.video.is_empty() {
            self.video_start = open.ms;
        }
        self.video.push(Sample {
            duration: (duration * 90) as u32,
            composition_offset: open.cts_ms.saturating_mul(90),
            keyframe: open.keyframe,
            data: open.data,
        });
    }

    fn start_segment(&mut self, ms: u64, ingest: Instant) {
        self.part_start = Some(ms);
        self.segment_start = ms;
        self.segment_ingest = Some(ingest);
    }

    /// Audio samples for the frames before `end` (ms), with their first
    /// decode time on the audio timescale.
    fn take_audio(&mut self, end: u64) -> (u64, Vec<Sample>) {
        let Some(cfg) = &self.audio_cfg else {
            return (0, Vec::new());
        };
        let Some((rate, _)) = cfg.audio_params() else {
            self.audio.clear();
            return (0, Vec::new());
        };
        let n = self.audio.iter().take_while(|(ms, _)| *ms < end).count();
        let frames: Vec<(u64, Bytes)> = self.audio.drain(..n).collect();
        let mut samples: Vec<Sample> = Vec::with_capacity(frames.len());
        let mut start = None;
        let max_fill = u64::from(rate);
        let mut frames = frames.into_iter();
        while let Some((ms, data)) = frames.next() {
            let mut duration = audio_frame_samples(cfg, &data, rate);
            let at = ms * u64::from(rate) / 1000;
            let expected = self.audio_next.unwrap_or(at);
            let half = u64::from(duration / 2);
            let here = if at > expected + half && at - expected <= max_fill {
                // A hole (a publisher's gap, a looped file's seam): the
                // sample before it is stretched over it, so a player's
                // buffered range stays contiguous (MSE players stall at
                // holes). First in this run, the run starts early instead.
                let gap = (at - expected) as u32;
                match samples.last_mut() {
                    Some(prev) => {
                        prev.duration += gap;
                        at
                    }
                    None => {
                        duration += gap;
                        expected
                    }
                }
            } else if at.abs_diff(expected) <= 2 * u64::from(duration) {
                // Millisecond rounding of the timestamps: stay contiguous.
                expected
            } else {
                // A jump (back, or a gap past a second): follow it.
                if !samples.is_empty() {
                    // Times inside a run are implicit: end it here and let
                    // the next part start at the jump.
                    let back: Vec<(u64, Bytes)> =
                        std::iter::once((ms, data)).chain(frames).collect();
                    self.audio.splice(0..0, back);
                    break;
                }
                at
            };
            start.get_or_insert(here);
            self.audio_next = Some(here + u64::from(duration));
            samples.push(Sample {
                duration,
                composition_offset: 0,
                keyframe: true,
                data,
            });
        }
        (start.unwrap_or(0), samples)
    }

    /// Closes the open part at `end` (ms) into the window.
    fn close_part(&mut self, end: u64, now: Instant) -> Option<Duration> {
        let part_start = self.part_start?;
        let (audio_start, audio) = self.take_audio(end);
        if self.video.is_empty() && audio.is_empty() {
            return None;
        }
        let video = std::mem::take(&mut self.video);
        let independent = match video.first() {
            Some(s) => s.keyframe,
            None => self.video_cfg.is_none(),
        };
        let mut runs = Vec::with_capacity(2);
        if !video.is_empty() {
            runs.push(Run {
                track_id: VIDEO_TRACK,
                base_decode_time: self.video_start * 90,
                samples: &video,
            });
        }
        if !audio.is_empty() {
            runs.push(Run {
                track_id: AUDIO_TRACK,
                base_decode_time: audio_start,
                samples: &audio,
            });
        }
        let bytes = cmaf::fragment(self.sequence, &runs);
        // Each track alone, with the same sequence number: a DASH player
        // (or an HLS one of one track's playlist) reads one track's
        // fragments in order. A part without one of the tracks has nothing
        // for it (listed GAP=YES in that track's HLS playlist).
        let one = |track: u32| {
            runs.iter()
                .find(|r| r.track_id == track)
                .map_or_else(Bytes::new, |r| {
                    cmaf::fragment(self.sequence, std::slice::from_ref(r))
                })
        };
        let split = self.split.then(|| [one(VIDEO_TRACK), one(AUDIO_TRACK)]);
        self.sequence = self.sequence.wrapping_add(1);
        let part = PartData {
            duration: Duration::from_millis(end.saturating_sub(part_start).max(1)),
            independent,
            bytes,
            split,
        };
        let discontinuity = std::mem::take(&mut self.discontinuity);
        let start = self.segment_ingest.unwrap_or(now);
        let start_time = if self.video_cfg.is_some() {
            self.segment_start * 90
        } else {
            audio_start
        };
        let len = part.bytes.len() + part.split.as_ref().map_or(0, |[v, a]| v.len() + a.len());
        self.window.change(|s| {
            if s.current.is_none() {
                let msn = s.next_msn;
                s.next_msn += 1;
                s.origin.get_or_insert((start, start_time));
                s.current = Some(SegmentData {
                    msn,
                    parts: Vec::new(),
                    duration: Duration::ZERO,
                    discontinuity,
                    start,
                    start_time,
                    bytes: 0,
                });
            }
            let c = s.current.as_mut().expect("opened above");
            c.duration += part.duration;
            c.bytes += len;
            c.parts.push(part);
            s.bytes += len;
        });
        self.part_start = Some(end);
        let oldest = self.part_ingest.take();
        oldest.map(|t| now.saturating_duration_since(t))
    }

    /// Moves the segment in progress to the complete ones and trims the
    /// window to its segment and byte bounds.
    fn close_segment(&mut self) {
        let cfg = self.cfg;
        self.window.change(|s| {
            let Some(done) = s.current.take() else {
                return;
            };
            s.max_segment = s.max_segment.max(done.duration);
            s.segments.push_back(done);
            while s.segments.len() > cfg.window_segments
                || (s.bytes > cfg.max_bytes && s.segments.len() > 1)
            {
                let Some(old) = s.segments.pop_front() else {
                    break;
                };
                s.bytes -= old.bytes;
                if old.discontinuity {
                    s.discontinuity_sequence += 1;
                }
            }
        });
    }
}

fn ms_of(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Samples in one audio frame on a `rate` timescale.
fn audio_frame_samples(cfg: &CodecConfig, data: &[u8], rate: u32) -> u32 {
    match cfg {
        CodecConfig::Opus { .. } => opus_samples(data).map_or(960, |n| n * rate / 48_000),
        // AAC: 1024 samples per frame (the core rate for HE-AAC, which is
        // what its config's rate gives).
        _ => 1024,
    }
}

/// Samples at 48 kHz in an Opus packet, from its TOC byte (RFC 6716 §3.1).
fn opus_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame size in 48 kHz samples by configuration number.
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][(config % 4) as usize],
        12..=15 => [480, 960][(config % 2) as usize],
        _ => [120, 240, 480, 960][(config % 4) as usize],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3F),
    };
    Some(frame * frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_packet_durations_come_from_the_toc() {
        // Config 31 (CELT FB 20 ms), one frame; 28 is CELT FB 2.5 ms.
        assert_eq!(opus_samples(&[31 << 3]), Some(960));
        assert_eq!(opus_samples(&[28 << 3]), Some(120));
        // Config 1 (SILK NB 20 ms), two frames (code 1).
        assert_eq!(opus_samples(&[(1 << 3) | 1]), Some(1920));
        // Config 16 (CELT NB 2.5 ms), code 3 with 4 frames.
        assert_eq!(opus_samples(&[(16 << 3) | 3, 4]), Some(480));
        assert_eq!(opus_samples(&[]), None);
        assert_eq!(opus_samples(&[3]), None);
    }

    #[test]
    fn the_clock_widens_across_a_wrap() {
        let mut c = Clock::default();
        assert_eq!(c.widen(u32::MAX - 10), u64::from(u32::MAX - 10));
        assert_eq!(c.widen(5), (1u64 << 32) + 5);
        // A small step back (reordering) is not a wrap.
        assert_eq!(c.widen(3), (1u64 << 32) + 3);
    }
}
