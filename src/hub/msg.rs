//! What cores tell each other (the mesh's messages) and what they report
//! to the control plane.

use std::sync::Arc;
use std::time::Duration;

use super::{Frame, HubConfig, QueueLimits};
use crate::metrics::StatsSnapshot;
use crate::protocol::session::ServerConfig;

/// What cores tell each other.
#[derive(Debug)]
pub enum CoreMsg {
    /// To the owner: `core` has players of `key` now.
    Subscribe { key: Arc<str>, core: usize },
    /// To the owner: `core` has no players of `key` any more.
    Unsubscribe { key: Arc<str>, core: usize },
    /// To a subscriber: the cached start; replaces its cache (also a reset on a new publisher).
    Start { key: Arc<str>, frames: Vec<Frame> },
    /// To a subscriber: one live message.
    Frame { key: Arc<str>, frame: Frame },
    /// To a subscriber: the stream is over.
    End { key: Arc<str> },
    /// To the previous owner: `new_owner` took the stream over; hand it your subscribers.
    Adopt { key: Arc<str>, new_owner: usize },
    /// From the control plane: reply with this core's streams and statistics.
    Snapshot {
        reply: crossbeam_channel::Sender<Snapshot>,
    },
    /// From the control plane (SIGHUP): settings that may change live.
    /// Applied by the worker; the hub takes `hub`.
    Reload(Box<LiveSettings>),
    /// From the control plane (SIGTERM): stop accepting, ask publishers to
    /// reconnect elsewhere. Handled by the worker.
    Drain,
    /// From the control plane: close connections, by id, by stream (its
    /// publisher and players), or all; replies with how many were closed.
    /// Handled by the worker.
    Kick {
        target: KickTarget,
        reply: crossbeam_channel::Sender<usize>,
    },
}

/// What a [`CoreMsg::Kick`] closes.
#[derive(Debug, Clone)]
pub enum KickTarget {
    Client(u64),
    Stream(String),
    /// Every connection (end of a drain).
    All,
}

/// Settings a reload can change without dropping a connection. Chunk size,
/// listen address and worker count are not among them.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    pub hub: HubConfig,
    pub queue: QueueLimits,
    pub session: ServerConfig,
    pub handshake_timeout: Duration,
    /// A publisher that sends nothing this long is closed.
    pub publisher_timeout: Duration,
    /// A connection that neither publishes nor plays this long is closed.
    pub idle_timeout: Duration,
    /// A paused player is closed after this long.
    pub pause_timeout: Duration,
    /// Refused publishes or plays before a connection is closed.
    pub max_refusals: u32,
    /// The `[auth]` policy (one per configuration, shared by the workers).
    pub auth: Arc<crate::auth::Policy>,
}

/// One core's view, sent to the control plane.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub core: usize,
    pub streams: Vec<StreamInfo>,
    pub stats: StatsSnapshot,
    /// This core's connections (filled in by the worker).
    pub clients: Vec<ClientInfo>,
}

/// One connection, for the clients API.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub id: u64,
    pub peer: String,
    pub role: &'static str,
    pub stream: Option<String>,
    pub connected_ms: u64,
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
    /// Connection id of the publisher (owner core only).
    pub publisher: Option<u64>,
    /// Milliseconds since the current publisher started (owner core only).
    pub uptime_ms: u64,
    /// When an edge pull feeds the stream: the pull's core and state.
    pub upstream: Option<(usize, String)>,
}
