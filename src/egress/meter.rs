//! Egress accounting, in one place: every path a frame can leave by
//! (direct, batched, coalesced, writer task) reports here, so sends, bytes
//! and latency are counted the same way whichever path it took.

use std::time::Instant;

use crate::metrics::CoreStats;

/// `n` subscribers finished sending a frame ingested at `ingest`, by `now`.
pub fn sent(stats: &CoreStats, ingest: Instant, n: u64, now: Instant) {
    if n > 0 {
        stats.record_egress_n(now.saturating_duration_since(ingest), n);
    }
}

/// A play's first keyframe left at `now`; `play_started` is when the play
/// began (taken, so it is recorded once).
pub fn first_frame(stats: &CoreStats, play_started: Option<Instant>, now: Instant) {
    if let Some(t) = play_started {
        stats.record_first_frame(now.saturating_duration_since(t));
    }
}

/// One fan-out pass: `offered` subscribers were offered `bytes`, and
/// `dropped` of them dropped it under their slow-player policy.
pub fn pass(stats: &CoreStats, offered: usize, dropped: u64, bytes: usize) {
    stats.add_dropped(dropped);
    let delivered = (offered as u64).saturating_sub(dropped);
    stats.add_out(delivered, bytes as u64);
}
