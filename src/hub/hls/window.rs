//! One stream's packaged window, shared by every core: the init segment,
//! the complete segments and the one in progress, each a list of parts
//! (fMP4 fragments). The owning core's packager appends; any core's HTTP
//! requests read, or wait for a part that does not exist yet.
//!
//! This is node-wide state behind a mutex, like the stream directory: it is
//! written a few times per second per stream (once per part) and read once
//! per player request, never per frame or per player per frame. Requests
//! that wait park their wakers under the same lock (see `super::wait`), so
//! a part's arrival wakes the requests waiting for it (on whatever core)
//! with no timer polling; the runtimes' cross-thread wake (monoio's `sync`
//! feature) delivers them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::wait::Waiters;
use crate::protocol::hls::Template;

/// One part: a `moof`+`mdat` pair of about `hls.part_ms`.
#[derive(Debug, Clone)]
pub struct PartData {
    pub bytes: Bytes,
    pub duration: Duration,
    /// Starts with a keyframe (a player may begin here).
    pub independent: bool,
    /// The same part as two single-track fragments (video, audio), for
    /// DASH players and HLS's separate-audio form; made when the stream has
    /// both tracks. A part without one of the tracks has it empty.
    pub split: Option<[Bytes; 2]>,
}

/// One segment: the parts from one keyframe to the next cut.
#[derive(Debug, Clone)]
pub struct SegmentData {
    pub msn: u64,
    pub parts: Vec<PartData>,
    /// Sum of the parts' durations.
    pub duration: Duration,
    /// The first segment after a publisher change or a new init segment.
    pub discontinuity: bool,
    /// When the segment's first frame was ingested (its program date-time).
    pub start: Instant,
    /// The segment's first decode time on the video (or only) track's
    /// timescale: DASH's SegmentTimeline `t`.
    pub start_time: u64,
    pub bytes: usize,
}

/// What a player's request for a part finds.
#[derive(Debug, Clone)]
pub enum PartLookup {
    Ready(PartData),
    /// The next part to be made: wait for it.
    Pending,
    /// Outside the window (gone, or further ahead than the next part).
    Missing,
}

/// What a request for a whole segment finds.
#[derive(Debug, Clone)]
pub enum SegmentLookup {
    /// Complete: its parts in order.
    Complete(Vec<Bytes>),
    /// In progress (or the next one): the parts made so far.
    Growing(Vec<Bytes>),
    Missing,
}

/// A segment's parts from some index on: see [`WindowState::segment_tail`].
#[derive(Debug, Default)]
pub struct SegmentTail {
    pub parts: Vec<Bytes>,
    /// No more parts will come: the segment is complete, gone, or never
    /// made.
    pub complete: bool,
}

/// Facts about the stream a manifest needs.
#[derive(Debug, Clone, Default)]
pub struct StreamFacts {
    /// RFC 6381 codecs of the rendition, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    /// Each track's codecs, when the stream has both (DASH's split form).
    pub track_codecs: Option<[String; 2]>,
    pub resolution: Option<(u16, u16)>,
    pub audio_rate: Option<u32>,
    /// Channels of the audio (HLS's CHANNELS of an audio rendition).
    pub audio_channels: Option<u8>,
    /// Timescale of `SegmentData::start_time`.
    pub timescale: u32,
}

/// A media playlist as rendered, with the window `version` it shows.
pub type RenderedPlaylist = (u64, Arc<Template>);

/// The window's state; read under [`Window::read`].
#[derive(Debug)]
pub struct WindowState {
    pub init: Option<Bytes>,
    /// One init segment per track (video, audio) for the split form.
    pub track_inits: Option<[Bytes; 2]>,
    /// Bumped with every new init segment (codec change): a player must
    /// fetch the new one.
    pub init_generation: u32,
    pub facts: StreamFacts,
    /// Complete segments, oldest first.
    pub segments: VecDeque<SegmentData>,
    /// The segment being made; its msn is the next after the last complete.
    pub current: Option<SegmentData>,
    /// The msn the next segment to open gets.
    pub next_msn: u64,
    /// Discontinuities that have left the window (EXT-X-DISCONTINUITY-SEQUENCE).
    pub discontinuity_sequence: u64,
    /// The stream ended: no part will come.
    pub ended: bool,
    /// Bytes held in complete and current segments.
    pub bytes: usize,
    /// The first segment's start: (ingest instant, start time) for DASH's
    /// availabilityStartTime, fixed for the window's life.
    pub origin: Option<(Instant, u64)>,
    /// Largest segment duration seen (the target duration must cover it).
    pub max_segment: Duration,
    /// Requests waiting for a change (see [`Window::wait_for`]).
    pub(super) waiters: Waiters,
    /// Sessions (the `sid` of players' URLs) with their last request.
    sessions: HashMap<u64, (Instant, bool)>,
    /// Last request of any player: an edge keeps pulling while it is recent.
    pub last_request: Option<Instant>,
    /// Bumped by every change the packager makes.
    pub version: u64,
    /// The media playlist last rendered for each kind of request, with the
    /// `version` it shows: every player asking between two changes gets
    /// the same rendering. Indexed by rendition (muxed, video, audio; then
    /// the same three with byte-range parts), then by request (full, and
    /// the two delta updates).
    pub media_playlists: [[Option<RenderedPlaylist>; 3]; 6],
}

/// Sessions tracked per stream; past it the oldest are forgotten (a client
/// making up session ids must not grow memory).
const MAX_SESSIONS: usize = 100_000;

impl WindowState {
    fn new() -> WindowState {
        WindowState {
            init: None,
            track_inits: None,
            init_generation: 0,
            facts: StreamFacts::default(),
            segments: VecDeque::new(),
            current: None,
            next_msn: 0,
            discontinuity_sequence: 0,
            ended: false,
            bytes: 0,
            origin: None,
            max_segment: Duration::ZERO,
            waiters: Waiters::default(),
            sessions: HashMap::new(),
            last_request: None,
            version: 0,
            media_playlists: Default::default(),
        }
    }

    /// The msn of the segment being made (or about to be).
    pub fn live_msn(&self) -> u64 {
        self.current.as_ref().map_or(self.next_msn, |s| s.msn)
    }

    /// Parts complete in the live segment.
    pub fn live_parts(&self) -> usize {
        self.current.as_ref().map_or(0, |s| s.parts.len())
    }

    /// Whether a playlist holds part `part` of segment `msn` (or, without a
    /// part, the complete segment `msn`), or something later: what a
    /// blocking playlist reload waits for.
    pub fn has(&self, msn: u64, part: Option<u32>) -> bool {
        if self.ended {
            return true;
        }
        let complete_upto = self.segments.back().map(|s| s.msn);
        match part {
            None => complete_upto.is_some_and(|last| last >= msn),
            Some(p) => {
                if complete_upto.is_some_and(|last| last >= msn) {
                    return true;
                }
                match &self.current {
                    Some(c) if c.msn == msn => c.parts.len() > p as usize,
                    Some(c) => c.msn > msn,
                    None => false,
                }
            }
        }
    }

    pub fn part(&self, msn: u64, index: u32) -> PartLookup {
        let i = index as usize;
        if let Some(c) = &self.current {
            if c.msn == msn {
                return match c.parts.get(i) {
                    Some(p) => PartLookup::Ready(p.clone()),
                    None if i == c.parts.len() && !self.ended => PartLookup::Pending,
                    None => PartLookup::Missing,
                };
            }
        }
        if let Some(s) = self.find(msn) {
            return match s.parts.get(i) {
                Some(p) => PartLookup::Ready(p.clone()),
                None => PartLookup::Missing,
            };
        }
        // The first part of the next segment, before it opened.
        if msn == self.live_msn() && i == 0 && self.current.is_none() && !self.ended {
            return PartLookup::Pending;
        }
        // The first part of the segment after the live one is the next part
        // once the live one closes; a preload hint can name it.
        if self.current.as_ref().is_some_and(|c| c.msn + 1 == msn) && i == 0 && !self.ended {
            return PartLookup::Pending;
        }
        PartLookup::Missing
    }

    pub fn segment(&self, msn: u64) -> SegmentLookup {
        if let Some(s) = self.find(msn) {
            return SegmentLookup::Complete(s.parts.iter().map(|p| p.bytes.clone()).collect());
        }
        match &self.current {
            Some(c) if c.msn == msn => {
                SegmentLookup::Growing(c.parts.iter().map(|p| p.bytes.clone()).collect())
            }
            None if msn == self.next_msn && !self.ended => SegmentLookup::Growing(Vec::new()),
            _ => SegmentLookup::Missing,
        }
    }

    /// One track (0 video, 1 audio) of a segment, from the parts' split
    /// form; Missing when the stream has no split form.
    pub fn track_segment(&self, msn: u64, track: usize) -> SegmentLookup {
        let pick = |parts: &[PartData]| -> Option<Vec<Bytes>> {
            parts
                .iter()
                .map(|p| p.split.as_ref().map(|s| s[track & 1].clone()))
                .collect()
        };
        if let Some(s) = self.find(msn) {
            return pick(&s.parts).map_or(SegmentLookup::Missing, SegmentLookup::Complete);
        }
        match &self.current {
            Some(c) if c.msn == msn => {
                pick(&c.parts).map_or(SegmentLookup::Missing, SegmentLookup::Growing)
            }
            None if msn == self.next_msn && !self.ended => SegmentLookup::Growing(Vec::new()),
            _ => SegmentLookup::Missing,
        }
    }

    /// The parts of segment `msn` from index `from` on, muxed (`track`
    /// None) or one track: what a player streaming the segment as it is
    /// made sends next. Clones only those parts.
    pub fn segment_tail(&self, msn: u64, track: Option<usize>, from: usize) -> SegmentTail {
        let pick = |parts: &[PartData]| -> Vec<Bytes> {
            let rest = parts.get(from..).unwrap_or_default();
            match track {
                None => rest.iter().map(|p| p.bytes.clone()).collect(),
                // One entry per part, so the caller's count of parts stays
                // true (a part without the split form has nothing here).
                Some(t) => rest
                    .iter()
                    .map(|p| {
                        p.split
                            .as_ref()
                            .map_or_else(Bytes::new, |s| s[t & 1].clone())
                    })
                    .collect(),
            }
        };
        let nothing = |complete| SegmentTail {
            parts: Vec::new(),
            complete,
        };
        if let Some(s) = self.find(msn) {
            return SegmentTail {
                parts: pick(&s.parts),
                complete: true,
            };
        }
        match &self.current {
            Some(c) if c.msn == msn => SegmentTail {
                parts: pick(&c.parts),
                complete: false,
            },
            None if msn == self.next_msn && !self.ended => nothing(false),
            _ => nothing(true),
        }
    }

    /// How many parts segment `msn` has while it is being made (0 before
    /// it opens); None once it is complete, gone or will never come.
    pub fn growing_parts(&self, msn: u64) -> Option<usize> {
        match &self.current {
            Some(c) if c.msn == msn => Some(c.parts.len()),
            None if msn == self.next_msn && !self.ended => Some(0),
            _ => None,
        }
    }

    fn find(&self, msn: u64) -> Option<&SegmentData> {
        let first = self.segments.front()?.msn;
        let i = msn.checked_sub(first)? as usize;
        self.segments.get(i).filter(|s| s.msn == msn)
    }

    /// Notes a player's request (by session id, if its URL had one).
    pub fn touch(&mut self, sid: Option<u64>, dash: bool, now: Instant, timeout: Duration) {
        self.last_request = Some(now);
        let Some(sid) = sid else { return };
        if self.sessions.len() >= MAX_SESSIONS && !self.sessions.contains_key(&sid) {
            self.sessions
                .retain(|_, (seen, _)| now.saturating_duration_since(*seen) < timeout);
            if self.sessions.len() >= MAX_SESSIONS {
                return;
            }
        }
        self.sessions.insert(sid, (now, dash));
    }

    /// Sessions with a request within `timeout` of `now`: (HLS, DASH).
    pub fn active_sessions(&self, now: Instant, timeout: Duration) -> (usize, usize) {
        let mut n = (0, 0);
        for (seen, dash) in self.sessions.values() {
            if now.saturating_duration_since(*seen) < timeout {
                if *dash {
                    n.1 += 1;
                } else {
                    n.0 += 1;
                }
            }
        }
        n
    }

    /// Wakes every waiting request, except those waiting for a part that
    /// has still not come.
    fn wake_due(&mut self) {
        let mut waiters = std::mem::take(&mut self.waiters);
        waiters.wake_due(|msn, part| self.has(msn, part));
        self.waiters = waiters;
    }
}

/// A stream's window: see the module docs.
#[derive(Debug)]
pub struct Window {
    state: Mutex<WindowState>,
    /// A player asked for the stream: the packager works (see
    /// `hls.always`). Read by the packager per frame, so outside the lock.
    wanted: AtomicBool,
}

impl Default for Window {
    fn default() -> Self {
        Window::new()
    }
}

impl Window {
    pub fn new() -> Window {
        Window {
            state: Mutex::new(WindowState::new()),
            wanted: AtomicBool::new(false),
        }
    }

    /// The state, locked. Keep the guard short: the owning core appends
    /// under the same lock.
    pub fn read(&self) -> MutexGuard<'_, WindowState> {
        // A panic elsewhere while holding the lock must not take the node down.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a change and wakes the requests waiting for it.
    pub(super) fn change(&self, f: impl FnOnce(&mut WindowState)) {
        let mut s = self.read();
        f(&mut s);
        s.version += 1;
        s.wake_due();
    }

    /// A player asked: package the stream (from its next keyframe).
    pub fn want(&self) {
        self.wanted.store(true, Ordering::Relaxed);
    }

    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// Nobody asked for a while: packaging stops and the media go (the
    /// init segment and the msn count stay).
    pub(super) fn idle(&self) {
        self.wanted.store(false, Ordering::Relaxed);
        self.change(|s| {
            let gone = s.segments.iter().filter(|g| g.discontinuity).count() as u64;
            s.discontinuity_sequence += gone;
            s.segments.clear();
            s.current = None;
            s.bytes = 0;
            s.origin = None;
        });
    }

    /// The stream is over: waiting requests are answered with what exists.
    pub fn end(&self) {
        self.change(|s| s.ended = true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn part(independent: bool) -> PartData {
        PartData {
            bytes: Bytes::from_static(b"moof"),
            duration: Duration::from_millis(200),
            independent,
            split: None,
        }
    }

    fn segment(msn: u64, parts: usize) -> SegmentData {
        SegmentData {
            msn,
            parts: (0..parts).map(|i| part(i == 0)).collect(),
            duration: Duration::from_millis(200 * parts as u64),
            discontinuity: false,
            start: Instant::now(),
            start_time: 0,
            bytes: 4 * parts,
        }
    }

    #[test]
    fn blocking_reload_conditions_follow_parts_and_segments() {
        let mut s = WindowState::new();
        s.segments.push_back(segment(3, 10));
        s.current = Some(segment(4, 2));
        s.next_msn = 5;
        assert!(s.has(3, None) && s.has(3, Some(50)));
        assert!(!s.has(4, None));
        assert!(s.has(4, Some(1)) && !s.has(4, Some(2)));
        assert!(!s.has(5, Some(0)));
        s.ended = true;
        assert!(s.has(9, Some(0)), "an ended stream answers at once");
    }

    #[test]
    fn parts_are_ready_pending_or_missing() {
        let mut s = WindowState::new();
        s.segments.push_back(segment(3, 10));
        s.current = Some(segment(4, 2));
        s.next_msn = 5;
        assert!(matches!(s.part(3, 9), PartLookup::Ready(_)));
        assert!(matches!(s.part(3, 10), PartLookup::Missing));
        assert!(matches!(s.part(4, 1), PartLookup::Ready(_)));
        assert!(matches!(s.part(4, 2), PartLookup::Pending));
        assert!(matches!(s.part(4, 3), PartLookup::Missing));
        assert!(matches!(s.part(5, 0), PartLookup::Pending));
        assert!(matches!(s.part(5, 1), PartLookup::Missing));
        assert!(matches!(s.part(2, 0), PartLookup::Missing));
        assert!(matches!(s.segment(3), SegmentLookup::Complete(p) if p.len() == 10));
        assert!(matches!(s.segment(4), SegmentLookup::Growing(p) if p.len() == 2));
        assert!(matches!(s.segment(6), SegmentLookup::Missing));
    }

    #[test]
    fn a_segment_tail_holds_the_parts_after_those_seen() {
        let mut s = WindowState::new();
        s.segments.push_back(segment(3, 10));
        s.current = Some(segment(4, 2));
        s.next_msn = 5;
        let t = s.segment_tail(3, None, 8);
        assert_eq!((t.parts.len(), t.complete), (2, true));
        let t = s.segment_tail(4, None, 1);
        assert_eq!((t.parts.len(), t.complete), (1, false));
        // No split form: one empty entry per part, so counts stay true.
        let t = s.segment_tail(4, Some(1), 0);
        assert_eq!(t.parts.len(), 2);
        assert!(t.parts.iter().all(Bytes::is_empty));
        // Past what exists: nothing yet, more to come.
        let t = s.segment_tail(4, None, 5);
        assert_eq!((t.parts.len(), t.complete), (0, false));
        assert!(s.segment_tail(2, None, 0).complete, "gone");
        assert_eq!(s.growing_parts(4), Some(2));
        assert_eq!(s.growing_parts(3), None);
        s.current = None;
        assert_eq!(s.growing_parts(5), Some(0), "the next, not opened yet");
        assert!(!s.segment_tail(5, None, 0).complete);
        s.ended = true;
        assert!(s.segment_tail(5, None, 0).complete, "never made");
    }

    #[test]
    fn sessions_are_bounded_and_expire() {
        let mut s = WindowState::new();
        let t0 = Instant::now();
        let timeout = Duration::from_secs(30);
        s.touch(Some(1), false, t0, timeout);
        s.touch(Some(2), false, t0 + Duration::from_secs(20), timeout);
        s.touch(Some(3), true, t0 + Duration::from_secs(20), timeout);
        s.touch(None, false, t0 + Duration::from_secs(20), timeout);
        assert_eq!(
            s.active_sessions(t0 + Duration::from_secs(25), timeout),
            (2, 1)
        );
        assert_eq!(
            s.active_sessions(t0 + Duration::from_secs(40), timeout),
            (1, 1)
        );
    }

    #[test]
    fn a_change_wakes_a_waiting_request() {
        use std::future::Future;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use std::task::{Context, Wake};
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let w = Window::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut wait = std::pin::pin!(w.wait_for(|s| s.next_msn == 1));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        w.change(|s| s.next_msn = 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(wait.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn a_part_wait_is_queued_once_woken_by_its_part_alone_and_leaves_when_dropped() {
        use std::future::Future;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::{Context, Wake};
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let w = Window::new();
        w.change(|s| s.current = Some(segment(4, 2)));
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut wait = std::pin::pin!(w.wait_for_part(4, Some(2)));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        assert_eq!(w.read().waiters.len(), 1, "queued once");
        // A change that does not bring part 2 leaves it asleep.
        w.change(|s| s.last_request = Some(Instant::now()));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        w.change(|s| s.current.as_mut().unwrap().parts.push(part(false)));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(wait.as_mut().poll(&mut cx).is_ready());
        assert!(w.read().waiters.is_empty());
        {
            let mut gone = std::pin::pin!(w.wait_for_part(5, None));
            assert!(gone.as_mut().poll(&mut cx).is_pending());
            assert_eq!(w.read().waiters.len(), 1);
        }
        assert!(
            w.read().waiters.is_empty(),
            "a dropped wait leaves the queue"
        );
        // The end of the stream wakes it whatever it waits for.
        let mut last = std::pin::pin!(w.wait_for_part(9, None));
        assert!(last.as_mut().poll(&mut cx).is_pending());
        w.end();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(last.as_mut().poll(&mut cx).is_ready());
    }
}
