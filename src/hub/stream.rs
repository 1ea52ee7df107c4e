//! One stream as one core sees it: its local players and cache, plus the
//! publisher-side state on the core that owns it.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::{Cache, GopLimits};
use super::fanout::Fanout;
use super::frame::Frame;
use super::outbox::Outbox;
use crate::protocol::flv::{AudioCodec, VideoCodec};
use crate::protocol::session::MediaKind;

pub struct Player {
    pub id: u64,
    pub outbox: Rc<Outbox>,
    /// False while waiting for the owner's cached start (remote streams).
    pub started: bool,
}

/// State only the owning core has.
/// A publisher clock step back past this (ms) is a discontinuity (audio and
/// video interleave within a few hundred ms; B-frames reorder presentation
/// times, not these decode times).
pub const JUMP_BACK_MS: i32 = 1_000;
/// A step ahead past this (ms) is one too: players would stall on it.
pub const JUMP_AHEAD_MS: i32 = 30_000;

pub struct Owned {
    /// The connection publishing, if any.
    pub publisher: Option<u64>,
    /// When the last publisher left; players wait for a new one until the grace passes.
    pub idle_since: Option<Instant>,
    /// Other cores with players of this stream: one channel send each per message.
    pub remote: Vec<usize>,
    /// Timestamp mapping so players see a monotonic clock across publishers.
    offset: u32,
    pub last_out: Option<u32>,
    /// The last decode time players saw (audio and video, not headers):
    /// a publisher's clock jumping away from it is a discontinuity.
    last_dts: Option<u32>,
    rebase: bool,
    pub video_codec: Option<VideoCodec>,
    pub audio_codec: Option<AudioCodec>,
    pub publish_started: Instant,
    pub bytes_in: u64,
}

impl Owned {
    pub fn new(publisher: u64, last_ts: Option<u32>, now: Instant) -> Owned {
        Owned {
            publisher: Some(publisher),
            idle_since: None,
            remote: Vec::new(),
            offset: 0,
            last_out: last_ts,
            last_dts: None,
            rebase: last_ts.is_some(),
            video_codec: None,
            audio_codec: None,
            publish_started: now,
            bytes_in: 0,
        }
    }

    /// A new publisher on the same stream: continue the players' clock.
    pub fn restart(&mut self, publisher: u64, now: Instant) {
        self.publisher = Some(publisher);
        self.idle_since = None;
        self.rebase = self.last_out.is_some();
        self.publish_started = now;
    }

    /// Maps a publisher timestamp (a decode time; `cts` is the video
    /// composition offset, 0 elsewhere) to the players' timeline.
    ///
    /// `last_out` is the high-water mark of presentation times players saw,
    /// so a new publisher's first frames land after every frame a player's
    /// decoder may still hold for B-frame reordering.
    ///
    /// A publisher's clock that jumps back more than [`JUMP_BACK_MS`] or
    /// ahead more than [`JUMP_AHEAD_MS`] (a restarted encoder, a glitch) is
    /// rebased the same way, so players never see time run backwards or
    /// stall; steps across the 2^32 wrap are ordinary steps. Sequence
    /// headers (`header`, often stamped 0) are not taken for a jump.
    pub fn map_timestamp(&mut self, ts: u32, cts: i32, header: bool) -> u32 {
        if !self.rebase && !header {
            if let Some(prev) = self.last_dts {
                let step = ts.wrapping_add(self.offset).wrapping_sub(prev) as i32;
                if !(-JUMP_BACK_MS..=JUMP_AHEAD_MS).contains(&step) {
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
        let out = ts.wrapping_add(self.offset);
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
}

impl LocalStream {
    pub fn new(key: Arc<str>) -> LocalStream {
        LocalStream {
            key,
            players: Vec::new(),
            cache: Cache::default(),
            await_keyframe: true,
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
    pub fn add_player(&mut self, id: u64, outbox: Rc<Outbox>, started: bool) {
        if started {
            for f in self.cache.snapshot() {
                outbox.push_start(&f);
            }
        }
        self.players.push(Player {
            id,
            outbox,
            started,
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
        for p in &mut self.players {
            p.started = true;
            for f in frames {
                p.outbox.push_start(f);
            }
        }
    }

    /// Records a live frame and hands it to every started player. Returns
    /// None if the frame was held back (waiting for a keyframe), else how
    /// many players dropped it (slow-player policy).
    pub fn deliver(
        &mut self,
        frame: &Frame,
        limits: &GopLimits,
        fanout: &Fanout,
        now: Instant,
    ) -> Option<u64> {
        if frame.kind == MediaKind::Video && frame.header.is_none() {
            if frame.keyframe {
                self.await_keyframe = false;
            } else if self.await_keyframe {
                return None;
            }
        }
        self.cache.apply(frame, limits);
        let mut dropped = 0;
        self.players.retain(|p| {
            if p.started {
                if !p.outbox.push_live(frame, now, fanout) {
                    dropped += 1;
                }
                if let Some(window) = p.outbox.take_flush_request() {
                    fanout.coalescer.schedule(&p.outbox, window, now);
                }
            }
            p.outbox.closed().is_none()
        });
        // The deferred sends of this pass, together; a player whose socket
        // died here is dropped from the list on the next frame.
        fanout.flush(frame);
        Some(dropped)
    }

    pub fn remove_player(&mut self, id: u64) {
        self.players.retain(|p| p.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned() -> Owned {
        Owned::new(1, None, Instant::now())
    }

    #[test]
    fn a_steady_clock_passes_through_also_across_the_wrap() {
        let mut o = owned();
        assert_eq!(o.map_timestamp(0, 0, true), 0);
        let start = u32::MAX - 100;
        for i in 0..10u32 {
            let ts = start.wrapping_add(i * 33);
            assert_eq!(o.map_timestamp(ts, 0, false), ts);
        }
    }

    #[test]
    fn jumps_back_or_far_ahead_continue_one_frame_later() {
        let mut o = owned();
        assert_eq!(o.map_timestamp(20_000, 0, false), 20_000);
        assert_eq!(o.map_timestamp(20_033, 0, false), 20_033);
        // Back 15 s: rebased to continue right after what players saw.
        assert_eq!(o.map_timestamp(5_000, 0, false), 20_066);
        assert_eq!(o.map_timestamp(5_033, 0, false), 20_099);
        // Small reorderings (audio after video) are not jumps.
        assert_eq!(o.map_timestamp(5_010, 0, false), 20_076);
        // An hour ahead: rebased too.
        assert_eq!(o.map_timestamp(3_605_033, 0, false), 20_132);
        assert_eq!(o.map_timestamp(3_605_066, 0, false), 20_165);
    }

    #[test]
    fn headers_stamped_zero_are_not_jumps() {
        let mut o = owned();
        o.map_timestamp(50_000, 0, false);
        assert_eq!(o.map_timestamp(0, 0, true), 0);
        assert_eq!(o.map_timestamp(50_033, 0, false), 50_033);
    }

    #[test]
    fn a_new_publisher_continues_after_the_old_one() {
        let mut o = Owned::new(2, Some(90_000), Instant::now());
        // Its header takes the rebase; its frames follow from 0.
        assert_eq!(o.map_timestamp(0, 0, true), 90_033);
        assert_eq!(o.map_timestamp(0, 0, false), 90_033);
        assert_eq!(o.map_timestamp(33, 0, false), 90_066);
    }
}
