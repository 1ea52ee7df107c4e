//! RTMP timestamps: 32-bit milliseconds that wrap every ~49.7 days.
//!
//! Comparisons are done on the signed wrapping difference (serial-number
//! arithmetic), so ordering is correct across the wrap as long as the two
//! values are less than 2^31 ms (~24.8 days) apart.

/// RTMP timestamp: 32-bit milliseconds that wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RtmpTime(pub u32);

impl RtmpTime {
    /// Adds `ms`, wrapping at 2^32 like the wire field does.
    pub fn add_ms(self, ms: u32) -> RtmpTime {
        RtmpTime(self.0.wrapping_add(ms))
    }

    /// Wrap-aware signed difference `self - earlier`.
    ///
    /// `RtmpTime(5).delta_since(RtmpTime(u32::MAX)) == 6`. Values exactly
    /// 2^31 apart are ambiguous and yield `i32::MIN`.
    pub fn delta_since(self, earlier: RtmpTime) -> i32 {
        self.0.wrapping_sub(earlier.0) as i32
    }

    /// True when `self` is strictly later than `other`, across the wrap.
    pub fn is_after(self, other: RtmpTime) -> bool {
        self.delta_since(other) > 0
    }
}

/// Default largest backwards step (ms) still treated as reordering rather
/// than a discontinuity. B-frame DTS reordering and audio/video interleave
/// skew stay well under a second in practice; 5 s leaves room for sloppy
/// hardware encoders while a publisher restart after more than 5 s of
/// streaming is recognised as a jump.
pub const DEFAULT_MAX_BACKWARD_MS: u32 = 5_000;

/// Maps a publisher's wrapping 32-bit timestamps onto a monotonic `u64`
/// millisecond timeline.
///
/// Policy:
/// - The first timestamp maps to its own value (so output equals input until
///   the first wrap, which keeps logs readable).
/// - The unwrapper keeps a high-water mark: the latest timestamp seen, in
///   both raw and unwrapped form. A timestamp at or after the mark (wrap-aware)
///   advances it by the exact difference, so a wrap from `0xFFFF_FFF0` to
///   `0x10` continues at `0x1_0000_0010`. The mark never moves backwards.
/// - A timestamp up to `max_backward_ms` before the mark is reordering
///   (B-frame DTS, audio trailing video): it maps to the mark minus the
///   exact step (saturating at 0) and does not move the mark, so relative
///   timing between tracks is preserved exactly.
/// - A timestamp further back than that (a publisher that restarted at 0,
///   or garbage) is a discontinuity: the timeline is rebased so that the new
///   timestamp maps to the mark + 1 ms and becomes the new mark. Forward
///   jumps of less than 2^31 ms are taken at face value.
/// - [`TimestampUnwrapper::mark_discontinuity`] forces that rebase on the
///   next timestamp (call it when a publisher reconnects).
///
/// Never panics on any input; all arithmetic saturates or wraps.
#[derive(Debug, Clone)]
pub struct TimestampUnwrapper {
    max_backward_ms: u32,
    /// `(raw, unwrapped)` of the high-water mark; `None` before the first
    /// timestamp.
    mark: Option<(RtmpTime, u64)>,
    rebase_next: bool,
    discontinuities: u64,
}

impl Default for TimestampUnwrapper {
    fn default() -> Self {
        Self::new()
    }
}

impl TimestampUnwrapper {
    /// An unwrapper with [`DEFAULT_MAX_BACKWARD_MS`].
    pub fn new() -> Self {
        Self::with_max_backward_ms(DEFAULT_MAX_BACKWARD_MS)
    }

    /// An unwrapper tolerating backwards steps of up to `max_backward_ms`
    /// (capped at `i32::MAX`) before declaring a discontinuity.
    pub fn with_max_backward_ms(max_backward_ms: u32) -> Self {
        TimestampUnwrapper {
            max_backward_ms: max_backward_ms.min(i32::MAX as u32),
            mark: None,
            rebase_next: false,
            discontinuities: 0,
        }
    }

    /// Maps `ts` onto the monotonic timeline (see the type docs for policy).
    pub fn unwrap(&mut self, ts: RtmpTime) -> u64 {
        let Some((mark_raw, mark_out)) = self.mark else {
            self.mark = Some((ts, u64::from(ts.0)));
            self.rebase_next = false;
            return u64::from(ts.0);
        };
        if self.rebase_next {
            return self.rebase(ts, mark_out);
        }
        let delta = ts.delta_since(mark_raw);
        if delta >= 0 {
            let out = mark_out.saturating_add(u64::from(delta.unsigned_abs()));
            self.mark = Some((ts, out));
            out
        } else if delta.unsigned_abs() <= self.max_backward_ms {
            mark_out.saturating_sub(u64::from(delta.unsigned_abs()))
        } else {
            self.rebase(ts, mark_out)
        }
    }

    /// Makes the next timestamp start a new segment right after the current
    /// high-water mark, whatever its value (publisher reconnected).
    pub fn mark_discontinuity(&mut self) {
        self.rebase_next = true;
    }

    /// The highest unwrapped timestamp handed out so far.
    pub fn high_water(&self) -> Option<u64> {
        self.mark.map(|(_, out)| out)
    }

    /// How many discontinuities (large backward jumps or forced rebases)
    /// have been absorbed; useful as a metric.
    pub fn discontinuities(&self) -> u64 {
        self.discontinuities
    }

    fn rebase(&mut self, ts: RtmpTime, mark_out: u64) -> u64 {
        let out = mark_out.saturating_add(1);
        self.mark = Some((ts, out));
        self.rebase_next = false;
        self.discontinuities = self.discontinuities.saturating_add(1);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wrap_arithmetic() {
        assert_eq!(RtmpTime(5).delta_since(RtmpTime(u32::MAX)), 6);
        assert_eq!(RtmpTime(u32::MAX).delta_since(RtmpTime(5)), -6);
        assert_eq!(RtmpTime(u32::MAX).add_ms(7), RtmpTime(6));
        assert!(RtmpTime(5).is_after(RtmpTime(u32::MAX)));
        assert!(!RtmpTime(u32::MAX).is_after(RtmpTime(5)));
        assert!(!RtmpTime(9).is_after(RtmpTime(9)));
        // Exactly half the ring apart: neither is after the other.
        assert!(!RtmpTime(0).is_after(RtmpTime(0x8000_0000)));
        assert!(!RtmpTime(0x8000_0000).is_after(RtmpTime(0)));
    }

    #[test]
    fn unwrap_across_wrap_is_monotonic() {
        let mut u = TimestampUnwrapper::new();
        let input = [0xFFFF_FF00u32, 0xFFFF_FFF0, 0x10, 0x20, 0x1000];
        let out: Vec<u64> = input.iter().map(|&t| u.unwrap(RtmpTime(t))).collect();
        assert_eq!(
            out,
            vec![
                0xFFFF_FF00,
                0xFFFF_FFF0,
                0x1_0000_0010,
                0x1_0000_0020,
                0x1_0000_1000
            ]
        );
        assert_eq!(u.discontinuities(), 0);
    }

    #[test]
    fn small_backward_steps_keep_exact_offsets() {
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(RtmpTime(1000)), 1000);
        assert_eq!(u.unwrap(RtmpTime(1040)), 1040);
        // Audio trailing video by 30 ms, B-frame DTS 20 ms back.
        assert_eq!(u.unwrap(RtmpTime(1010)), 1010);
        assert_eq!(u.unwrap(RtmpTime(1020)), 1020);
        // The mark did not move back: the next forward step is exact.
        assert_eq!(u.unwrap(RtmpTime(1080)), 1080);
        assert_eq!(u.high_water(), Some(1080));
        assert_eq!(u.discontinuities(), 0);
    }

    #[test]
    fn small_backward_step_across_wrap() {
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(RtmpTime(0xFFFF_FFF0)), 0xFFFF_FFF0);
        assert_eq!(u.unwrap(RtmpTime(0x10)), 0x1_0000_0010);
        // A straggler from before the wrap maps before the wrap.
        assert_eq!(u.unwrap(RtmpTime(0xFFFF_FFF8)), 0xFFFF_FFF8);
    }

    #[test]
    fn backward_step_near_start_saturates() {
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(RtmpTime(5)), 5);
        assert_eq!(u.unwrap(RtmpTime(u32::MAX)), 0);
    }

    #[test]
    fn publisher_restart_is_a_discontinuity() {
        let mut u = TimestampUnwrapper::new();
        u.unwrap(RtmpTime(0));
        assert_eq!(u.unwrap(RtmpTime(60_000)), 60_000);
        // Restart at 0: far more than 5 s back.
        assert_eq!(u.unwrap(RtmpTime(0)), 60_001);
        assert_eq!(u.unwrap(RtmpTime(33)), 60_034);
        assert_eq!(u.discontinuities(), 1);
    }

    #[test]
    fn forced_discontinuity_rebases_next() {
        let mut u = TimestampUnwrapper::new();
        u.unwrap(RtmpTime(2_000));
        u.mark_discontinuity();
        // Only 2 s back, which would be reordering, but the caller said so.
        assert_eq!(u.unwrap(RtmpTime(0)), 2_001);
        assert_eq!(u.unwrap(RtmpTime(40)), 2_041);
    }

    proptest! {
        #[test]
        fn unwrap_never_panics_and_mark_is_monotonic(
            seq in proptest::collection::vec(any::<u32>(), 0..200),
            limit in any::<u32>(),
        ) {
            let mut u = TimestampUnwrapper::with_max_backward_ms(limit);
            let mut last_mark = 0u64;
            for t in seq {
                let _ = u.unwrap(RtmpTime(t));
                let mark = u.high_water().unwrap_or(0);
                prop_assert!(mark >= last_mark);
                last_mark = mark;
            }
        }

        #[test]
        fn forward_steps_are_exact(start in any::<u32>(), steps in proptest::collection::vec(0u32..100_000, 1..100)) {
            let mut u = TimestampUnwrapper::new();
            let mut raw = RtmpTime(start);
            let mut expect = u.unwrap(raw);
            for s in steps {
                raw = raw.add_ms(s);
                expect += u64::from(s);
                prop_assert_eq!(u.unwrap(raw), expect);
            }
        }
    }
}
