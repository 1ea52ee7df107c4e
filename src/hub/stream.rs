//! One stream as one core sees it: its local players and cache, plus the
//! publisher-side state on the core that owns it.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::{Cache, GopLimits};
use super::frame::Frame;
use super::subscriber::{Delivery, Subscriber};
use crate::protocol::flv::{AudioCodec, VideoCodec};
use crate::protocol::session::MediaKind;

pub struct Player {
    pub id: u64,
    pub sub: Rc<dyn Subscriber>,
    /// False while waiting for the owner's cached start (remote streams).
    pub started: bool,
    /// Its start had no keyframe (the GOP outgrew the cache, or a new
    /// publisher): inter video would not decode until one comes.
    pub await_keyframe: bool,
}

/// State only the owning core has.
/// A publisher clock step back past this (ms) is a discontinuity (audio and
/// video interleave within a few hundred ms; B-frames reorder presentation
/// times, not these decode times).
pub const JUMP_BACK_MS: i32 = 1_000;
/// A step ahead past this (ms) is one too: players would stall on it.
pub const JUMP_AHEAD_MS: i32 = 30_000;
/// Within one track, decode times never go back. A step back up to this
/// (ms) is jitter and is held at the track's last time; past it, it is a
/// discontinuity and rebased, so no sequence of small steps back (each
/// under [`JUMP_BACK_MS`]) can walk players' time backwards.
pub const TRACK_JITTER_MS: i32 = 100;

/// The timelines kept apart by the timestamp mapping.
fn track_slot(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
        MediaKind::Metadata | MediaKind::Data => 2,
    }
}

pub struct Owned {
    /// The connection publishing, if any.
    pub publisher: Option<u64>,
    /// When the last publisher left; players wait for a new one until the grace passes.
    pub idle_since: Option<Instant>,
    /// Other cores with players of this stream: one channel send each per message.
    pub remote: Vec<usize>,
    /// The subscription epoch each remote core last subscribed with, so a
    /// hand-over (Adopt) passes it on and the new owner's start answers it.
    pub epochs: std::collections::HashMap<usize, u64>,
    /// Timestamp mapping so players see a monotonic clock across publishers.
    offset: u32,
    pub last_out: Option<u32>,
    /// The last decode time players saw (audio and video, not headers):
    /// a publisher's clock jumping away from it is a discontinuity.
    last_dts: Option<u32>,
    /// The last time players saw per track (audio, video, data): never
    /// to be undercut.
    last_track: [Option<u32>; 3],
    rebase: bool,
    pub video_codec: Option<VideoCodec>,
    pub audio_codec: Option<AudioCodec>,
    pub publish_started: Instant,
    pub bytes_in: u64,
    /// `bytes_in` when the current publisher started: the bitrate of the
    /// current publisher is over its own bytes and its own uptime.
    pub bytes_in_at_start: u64,
}

impl Owned {
    pub fn new(publisher: u64, last_ts: Option<u32>, now: Instant) -> Owned {
        Owned {
            publisher: Some(publisher),
            idle_since: None,
            remote: Vec::new(),
            epochs: std::collections::HashMap::new(),
            offset: 0,
            last_out: last_ts,
            last_dts: None,
            // Players may have seen any track up to the last publisher's
            // high-water mark: no track starts below it.
            last_track: [last_ts; 3],
            rebase: last_ts.is_some(),
            video_codec: None,
            audio_codec: None,
            publish_started: now,
            bytes_in: 0,
            bytes_in_at_start: 0,
        }
    }

    /// A new publisher on the same stream: continue the players' clock.
    pub fn restart(&mut self, publisher: u64, now: Instant) {
        self.publisher = Some(publisher);
        self.idle_since = None;
        self.rebase = self.last_out.is_some();
        self.publish_started = now;
        self.bytes_in_at_start = self.bytes_in;
    }

    /// Bytes the current publisher sent.
    pub fn publisher_bytes_in(&self) -> u64 {
        self.bytes_in - self.bytes_in_at_start
    }

    /// Maps a publisher timestamp of `kind` (a decode time; `cts` is the
    /// video composition offset, 0 elsewhere) to the players' timeline.
    ///
    /// `last_out` is the high-water mark of presentation times players saw,
    /// so a new publisher's first frames land after every frame a player's
    /// decoder may still hold for B-frame reordering.
    ///
    /// A publisher's clock that jumps back more than [`JUMP_BACK_MS`] or
    /// ahead more than [`JUMP_AHEAD_MS`] (a restarted encoder, a glitch),
    /// or that steps back within one track by more than
    /// [`TRACK_JITTER_MS`], is rebased the same way; smaller steps back are
    /// held at the track's last time. So, for every input, each track's
    /// times as players see them never decrease (wrap-aware); steps across
    /// the 2^32 wrap are ordinary steps. Sequence headers (`header`, often
    /// stamped 0) never cause a rebase.
    pub fn map_timestamp(&mut self, kind: MediaKind, ts: u32, cts: i32, header: bool) -> u32 {
        let slot = track_slot(kind);
        if !self.rebase && !header {
            let step_from = |prev: u32| ts.wrapping_add(self.offset).wrapping_sub(prev) as i32;
            if let Some(prev) = self.last_dts {
                if !(-JUMP_BACK_MS..=JUMP_AHEAD_MS).contains(&step_from(prev)) {
                    self.rebase = true;
                }
            }
            if let Some(prev) = self.last_track[slot] {
                if step_from(prev) < -TRACK_JITTER_MS {
                    self.rebase = true;
                }
            }
        }
        if self.rebase {
            self.rebase = false;
            // Continue one frame interval after the last time players saw.
            let next = self.last_out.unwrap_or(0).wrapping_add(33);
            self.offset = next.wrapping_sub(ts);
        }
        let mut out = ts.wrapping_add(self.offset);
        if let Some(prev) = self.last_track[slot] {
            if (out.wrapping_sub(prev) as i32) < 0 {
                out = prev;
            }
        }
        self.last_track[slot] = Some(out);
        if !header {
            self.last_dts = Some(out);
        }
        let shown = out.wrapping_add(cts.max(0) as u32);
        self.last_out = Some(match self.last_out {
            // Keep the high-water mark; small reorderings pass through as is.
            Some(prev) if (shown.wrapping_sub(prev) as i32) < 0 => prev,
            _ => shown,
        });
        out
    }

    pub fn expired(&self, grace: Duration, now: Instant) -> bool {
        self.publisher.is_none()
            && self
                .idle_since
                .is_some_and(|t| now.duration_since(t) >= grace)
    }
}

pub struct LocalStream {
    pub key: Arc<str>,
    pub players: Vec<Player>,
    pub cache: Cache,
    /// Hold inter video until a keyframe (after a publisher change).
    pub await_keyframe: bool,
    pub owned: Option<Owned>,
    /// A mirror's current subscription at the owner (see `StreamMsg::Start`).
    pub epoch: u64,
    /// A mirror subscribed (`epoch`) and its start has not come yet: live
    /// frames arriving meanwhile belong to an older subscription (still in
    /// flight, or an owner that had this core as a mirror before a change
    /// of hands) and are not delivered, since the start that comes next
    /// replays the owner's cache, which holds them; delivering them too
    /// would take players back in time.
    pub awaiting_start: bool,
}

impl LocalStream {
    pub fn new(key: Arc<str>) -> LocalStream {
        LocalStream {
            key,
            players: Vec::new(),
            cache: Cache::default(),
            await_keyframe: true,
            epoch: 0,
            awaiting_start: false,
            owned: None,
        }
    }

    /// Resets for a new publisher: its metadata, headers and keyframe come fresh.
    pub fn reset(&mut self) {
        self.cache.clear();
        self.await_keyframe = true;
    }

    /// Adds a player; if the cache is authoritative here (owner, or a
    /// started mirror) it gets the cached start at once.
    /// A connection is at most one player of a stream: adding it again is
    /// a no-op (so a repeated unpause cannot queue the start again).
    pub fn add_player(&mut self, id: u64, sub: Rc<dyn Subscriber>, started: bool) {
        if self.players.iter().any(|p| p.id == id) {
            return;
        }
        let mut await_keyframe = true;
        if started {
            let frames = self.cache.snapshot();
            await_keyframe = !frames.iter().any(|f| f.keyframe);
            sub.start(&frames);
        }
        self.players.push(Player {
            id,
            sub,
            started,
            await_keyframe,
        });
    }

    /// The owner's cached start arrived (or a reset): rebuild the cache and
    /// give every player the new start.
    pub fn start(&mut self, frames: &[Frame], limits: &GopLimits) {
        self.cache.clear();
        self.await_keyframe = true;
        for f in frames {
            self.cache.apply(f, limits);
            if f.keyframe {
                self.await_keyframe = false;
            }
        }
        let keyframe = frames.iter().any(|f| f.keyframe);
        for p in &mut self.players {
            p.started = true;
            p.await_keyframe = !keyframe;
            p.sub.start(frames);
        }
    }

    /// Records a live frame and hands it to every started player. Returns
    /// None if the frame was held back (waiting for a keyframe), else how
    /// many players dropped it (slow-player policy).
    pub fn deliver(
        &mut self,
        frame: &Frame,
        limits: &GopLimits,
        delivery: &dyn Delivery,
        now: Instant,
    ) -> Option<u64> {
        let coded_video = frame.kind == MediaKind::Video && frame.header.is_none();
        if coded_video {
            if frame.keyframe {
                self.await_keyframe = false;
            } else if self.await_keyframe {
                return None;
            }
        }
        self.cache.apply(frame, limits);
        let mut dropped = 0;
        let mut offered = 0;
        self.players.retain_mut(|p| {
            // A late joiner whose start had no keyframe begins at the next.
            if coded_video && p.started {
                p.await_keyframe &= !frame.keyframe;
            }
            if p.started && !(coded_video && p.await_keyframe) {
                offered += 1;
                if !p.sub.offer(frame, now) {
                    dropped += 1;
                }
            }
            !p.sub.is_closed()
        });
        // What egress held back for this pass goes out together; a
        // subscriber whose socket died there is forgotten on the next frame.
        delivery.pass_done(frame, offered, dropped, now);
        Some(dropped)
    }

    pub fn remove_player(&mut self, id: u64) {
        self.players.retain(|p| p.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    #[test]
    fn a_new_publisher_counts_its_own_bytes() {
        let now = std::time::Instant::now();
        let mut o = Owned::new(1, None, now);
        o.bytes_in = 50_000;
        assert_eq!(o.publisher_bytes_in(), 50_000);
        o.restart(2, now);
        o.bytes_in += 700;
        assert_eq!((o.bytes_in, o.publisher_bytes_in()), (50_700, 700));
    }

    const V: MediaKind = MediaKind::Video;
    const A: MediaKind = MediaKind::Audio;

    fn owned() -> Owned {
        Owned::new(1, None, Instant::now())
    }

    #[test]
    fn a_steady_clock_passes_through_also_across_the_wrap() {
        let mut o = owned();
        let start = u32::MAX - 100;
        assert_eq!(o.map_timestamp(V, start, 0, true), start);
        for i in 0..10u32 {
            let ts = start.wrapping_add(i * 33);
            assert_eq!(o.map_timestamp(V, ts, 0, false), ts);
        }
    }

    #[test]
    fn jumps_back_or_far_ahead_continue_one_frame_later() {
        let mut o = owned();
        assert_eq!(o.map_timestamp(V, 20_000, 0, false), 20_000);
        assert_eq!(o.map_timestamp(V, 20_033, 0, false), 20_033);
        // Back 15 s: rebased to continue right after what players saw.
        assert_eq!(o.map_timestamp(V, 5_000, 0, false), 20_066);
        assert_eq!(o.map_timestamp(V, 5_033, 0, false), 20_099);
        // Small reorderings (audio after video) are not jumps.
        assert_eq!(o.map_timestamp(A, 5_010, 0, false), 20_076);
        // An hour ahead: rebased too.
        assert_eq!(o.map_timestamp(V, 3_605_033, 0, false), 20_132);
        assert_eq!(o.map_timestamp(V, 3_605_066, 0, false), 20_165);
    }

    #[test]
    fn headers_stamped_zero_are_not_jumps() {
        let mut o = owned();
        o.map_timestamp(V, 50_000, 0, false);
        // Held at the track's time rather than sent back to 0.
        assert_eq!(o.map_timestamp(V, 0, 0, true), 50_000);
        assert_eq!(o.map_timestamp(V, 50_033, 0, false), 50_033);
    }

    #[test]
    fn steps_back_under_the_jump_threshold_cannot_walk_time_back() {
        let mut o = owned();
        let mut last = 0;
        for i in 0..100u32 {
            let out = o.map_timestamp(V, 100_000 - i * 999, 0, false);
            assert!(out >= last, "frame {i}: {out} after {last}");
            last = out;
        }
        // Jitter within a track is held, not rebased.
        let mut o = owned();
        assert_eq!(o.map_timestamp(A, 1_000, 0, false), 1_000);
        assert_eq!(o.map_timestamp(A, 990, 0, false), 1_000);
        assert_eq!(o.map_timestamp(A, 1_023, 0, false), 1_023);
    }

    proptest! {
        /// Whatever a publisher sends, each track's times as players see
        /// them never run backwards (wrap-aware), headers included.
        #[test]
        fn every_track_is_monotonic_for_any_input(
            start in any::<u32>(),
            steps in proptest::collection::vec(
                (any::<bool>(), any::<bool>(), prop_oneof![-2_000i64..2_000, any::<u32>().prop_map(i64::from)], -500i32..2_000),
                1..300,
            ),
            takeover in proptest::option::of(any::<u32>()),
        ) {
            let mut o = Owned::new(1, takeover, Instant::now());
            let mut ts = start;
            let mut last: [Option<u32>; 2] = [None; 2];
            for (video, header, step, cts) in steps {
                ts = ts.wrapping_add(step as u32);
                let kind = if video { V } else { A };
                let out = o.map_timestamp(kind, ts, cts, header);
                let slot = usize::from(video);
                if let Some(prev) = last[slot] {
                    prop_assert!((out.wrapping_sub(prev) as i32) >= 0, "{kind:?} went from {prev} to {out}");
                }
                last[slot] = Some(out);
            }
        }
    }

    #[test]
    fn a_new_publisher_continues_after_the_old_one() {
        let mut o = Owned::new(2, Some(90_000), Instant::now());
        // Its header takes the rebase; its frames follow from 0.
        assert_eq!(o.map_timestamp(V, 0, 0, true), 90_033);
        assert_eq!(o.map_timestamp(V, 0, 0, false), 90_033);
        assert_eq!(o.map_timestamp(V, 33, 0, false), 90_066);
    }
}
