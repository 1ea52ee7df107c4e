//! What the hubs of different cores tell each other about streams (the
//! data-plane mesh), and the stream summary they report.

use std::sync::Arc;

use super::Frame;

/// What one core's hub tells another's about a stream.
#[derive(Debug)]
pub enum StreamMsg {
    /// To the owner: `core` has players of `key` now. `epoch` names this
    /// subscription (see [`StreamMsg::Start`]); 0 for any.
    Subscribe {
        key: Arc<str>,
        core: usize,
        epoch: u64,
    },
    /// To the owner: `core` has no players of `key` any more.
    Unsubscribe { key: Arc<str>, core: usize },
    /// To a subscriber: the cached start; replaces its cache (also a reset
    /// on a new publisher). It answers the subscription `epoch` (0: whatever
    /// subscription the core has): a start for an older subscription of
    /// the same core (a player that left and came back before the answer)
    /// is stale and ignored, so players never see an older cache.
    Start {
        key: Arc<str>,
        frames: Vec<Frame>,
        epoch: u64,
    },
    /// To a subscriber: one live message.
    Frame { key: Arc<str>, frame: Frame },
    /// To a subscriber: the stream is over.
    End { key: Arc<str> },
    /// To the previous owner: `new_owner` took the stream over; hand it your subscribers.
    Adopt { key: Arc<str>, new_owner: usize },
}

/// A summary of one stream on this core, for stats and tests.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub key: String,
    pub owned: bool,
    pub publishing: bool,
    pub players: usize,
    pub remote_cores: Vec<usize>,
    pub gop_frames: usize,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub bytes_in: u64,
    /// Of those, what the current publisher sent (owner core only).
    pub publisher_bytes_in: u64,
    /// Connection id of the publisher (owner core only).
    pub publisher: Option<u64>,
    /// Milliseconds since the current publisher started (owner core only).
    pub uptime_ms: u64,
    /// When an edge pull feeds the stream: the pull's core and state.
    pub upstream: Option<(usize, String)>,
}
