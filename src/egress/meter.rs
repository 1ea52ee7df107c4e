//! Egress accounting, in one place: every path a frame can leave by
//! (direct, batched, coalesced, writer task) reports here, so sends, bytes
//! and latency are counted the same way whichever path it took, and under
//! the protocol of the player that took it.
//!
//! Bytes and messages are counted where a player's outbox accepts a live
//! frame (`Outbox::push_live`), in that player's framing: an FLV tag is not
//! as long as the RTMP chunks of the same frame. Latency is counted when
//! the send completes.

use std::time::Instant;

use super::framing::{Framing, Wire};
use crate::hub::Frame;
use crate::metrics::{CoreStats, Protocol};

/// `n` subscribers of `protocol` finished sending a frame ingested at
/// `ingest`, by `now`.
pub fn sent(stats: &CoreStats, protocol: Protocol, ingest: Instant, n: u64, now: Instant) {
    if n > 0 {
        stats.record_egress_n(protocol, now.saturating_duration_since(ingest), n);
    }
}

/// A play's first keyframe left at `now`; `play_started` is when the play
/// began (taken, so it is recorded once).
pub fn first_frame(
    stats: &CoreStats,
    protocol: Protocol,
    play_started: Option<Instant>,
    now: Instant,
) {
    if let Some(t) = play_started {
        stats.record_first_frame(protocol, now.saturating_duration_since(t));
    }
}

/// A player in `framing` accepted `frame` (sent, batched or queued).
pub fn accepted(stats: &CoreStats, framing: &Framing, frame: &Frame) {
    stats.add_out(framing.protocol(), framing.len(frame) as u64);
}

/// One fan-out pass: `dropped` subscribers dropped the frame under their
/// slow-player policy (what the others took was counted as they took it).
pub fn pass(stats: &CoreStats, dropped: u64) {
    stats.add_dropped(dropped);
}

/// The protocol of the players a shared wire form is batched for.
pub fn wire_protocol(wire: Wire) -> Protocol {
    match wire {
        Wire::Chunks => Protocol::Rtmp,
        Wire::FlvTag => Protocol::HttpFlv,
        Wire::WsFlv => Protocol::WsFlv,
    }
}
