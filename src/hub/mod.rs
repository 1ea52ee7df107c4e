//! Streams on this core: publishers in, shared frames out to players, and
//! one channel hop per message to every other core that has players.
//!
//! The hub knows publishers and subscribers by id and outbox, never
//! sockets. Its methods are called from tasks of the same core; the
//! [`Directory`] is the only thing shared with other cores.

pub mod cache;
pub mod directory;
pub mod frame;
pub mod hls;
mod invariants;
pub mod msg;
pub mod stream;
pub mod subscriber;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::metrics::{CoreStats, DropReason};
use crate::protocol::session::MediaKind;
use crate::xcore::Mesh;
pub use cache::GopLimits;
pub use directory::{Claim, Directory, PullEntry, PullRegistration, PullState};
pub use frame::{classify, Frame, PLAY_STREAM_ID};
pub use hls::{HlsStore, Packager, PackagerConfig};
pub use invariants::{check_mesh, CacheProblem, InvariantError};
pub use msg::{StreamInfo, StreamMsg};
pub use stream::{LocalStream, Owned};
pub use subscriber::{Delivery, NoDelivery, Subscriber};

#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Outgoing chunk size every player was told.
    pub chunk_size: u32,
    pub gop: GopLimits,
    /// How long players wait for a publisher to come back.
    pub publisher_grace: Duration,
    pub max_streams: usize,
}

impl HubConfig {
    /// The hub's part of the configuration.
    pub fn from_config(config: &crate::config::Config) -> HubConfig {
        HubConfig {
            chunk_size: config.server.chunk_size,
            gop: GopLimits {
                max_duration_ms: config.stream.gop_cache_max_ms,
                max_bytes: config.stream.gop_cache_max_bytes,
            },
            publisher_grace: Duration::from_millis(config.stream.publisher_grace_ms),
            max_streams: config.limits.max_streams,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    #[error("stream {0} is already being published")]
    InUse(String),
    #[error("stream limit reached ({0})")]
    TooManyStreams(usize),
    #[error("stream {0} not found")]
    NotFound(String),
}

pub struct Hub {
    core: usize,
    config: HubConfig,
    directory: Arc<Directory>,
    mesh: Mesh<StreamMsg>,
    streams: HashMap<Arc<str>, LocalStream>,
    /// Cores sent to since the last [`Hub::flush_wakes`].
    dirty: Vec<bool>,
    /// The last subscription epoch this core handed out.
    epochs: u64,
    stats: Rc<CoreStats>,
    /// Where a fan-out pass ends (the egress layer's batched sends).
    delivery: Rc<dyn Delivery>,
    /// The node's HLS/DASH windows and how to package, when `[hls]` is on.
    hls: Option<(Arc<HlsStore>, PackagerConfig)>,
    /// Packagers of the streams this core owns.
    packagers: HashMap<Arc<str>, Packager>,
}

impl Hub {
    pub fn new(
        core: usize,
        config: HubConfig,
        directory: Arc<Directory>,
        mesh: Mesh<StreamMsg>,
        stats: Rc<CoreStats>,
    ) -> Hub {
        Hub {
            core,
            stats,
            dirty: vec![false; mesh.cores()],
            epochs: 0,
            config,
            directory,
            mesh,
            streams: HashMap::new(),
            delivery: Rc::new(NoDelivery),
            hls: None,
            packagers: HashMap::new(),
        }
    }

    /// Packages the streams this core will own into `store` (HLS, DASH).
    pub fn set_hls(&mut self, store: Arc<HlsStore>, config: PackagerConfig) {
        self.hls = Some((store, config));
    }

    /// The node's HLS/DASH windows, if packaging is on.
    pub fn hls_store(&self) -> Option<&Arc<HlsStore>> {
        self.hls.as_ref().map(|(s, _)| s)
    }

    /// Starts (or, for a publisher change on this core, restarts) the
    /// packager of an owned stream.
    fn package(&mut self, key: &Arc<str>, now: Instant) {
        let Some((store, cfg)) = &self.hls else {
            return;
        };
        if let Some(p) = self.packagers.get_mut(key) {
            p.restart(now);
            return;
        }
        let (window, continues) = store.attach(key);
        self.packagers
            .insert(key.clone(), Packager::new(window, *cfg, continues));
    }

    /// Stops packaging `key` here; `end` also ends its window (the stream
    /// is over rather than moving to another core).
    fn unpackage(&mut self, key: &str, end: bool, now: Instant) {
        let Some(mut p) = self.packagers.remove(key) else {
            return;
        };
        if end {
            p.finish(now);
            if let Some((store, _)) = &self.hls {
                store.remove(key, p.window());
            }
        } else {
            p.restart(now);
        }
    }

    /// Installs the end of every fan-out pass (the core's egress).
    pub fn set_delivery(&mut self, delivery: Rc<dyn Delivery>) {
        self.delivery = delivery;
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// A reload: new limits for what comes next. The chunk size frames are
    /// serialized with stays, since every player was told it.
    pub fn set_config(&mut self, mut config: HubConfig) {
        config.chunk_size = self.config.chunk_size;
        self.config = config;
    }

    pub fn core(&self) -> usize {
        self.core
    }

    fn send(&mut self, core: usize, msg: StreamMsg) {
        if self.mesh.send(core, msg) {
            if let Some(d) = self.dirty.get_mut(core) {
                *d = true;
            }
        }
    }

    /// Wakes every core sent to since the last call: once per batch.
    pub fn flush_wakes(&mut self) {
        for (core, d) in self.dirty.iter_mut().enumerate() {
            if std::mem::take(d) {
                self.mesh.wake(core);
            }
        }
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Whether `publisher` publishes `key` on this core right now (an edge
    /// pull asks before each message it feeds in: a local publisher may
    /// have taken the stream over).
    pub fn is_publisher(&self, key: &str, publisher: u64) -> bool {
        self.streams
            .get(key)
            .and_then(|s| s.owned.as_ref())
            .is_some_and(|o| o.publisher == Some(publisher))
    }

    /// Who watches an owned stream: its players on this core plus the
    /// other cores that have players (a core unsubscribes when its last
    /// player leaves). None if this core does not own `key`.
    pub fn audience(&self, key: &str) -> Option<usize> {
        let s = self.streams.get(key)?;
        let o = s.owned.as_ref()?;
        Some(s.players.len() + o.remote.len())
    }

    /// Whether an HLS or DASH player asked for `key` within `within` of
    /// `now`: such players are not subscribers, yet an edge keeps pulling
    /// for them.
    pub fn hls_watched(&self, key: &str, now: Instant, within: Duration) -> bool {
        self.hls_store()
            .and_then(|s| s.get(key))
            .and_then(|w| w.read().last_request)
            .is_some_and(|t| now.saturating_duration_since(t) < within)
    }

    /// Whether a play for `key` can be served (here or via another core).
    pub fn contains(&self, key: &str) -> bool {
        self.streams.contains_key(key) || self.directory.owner(key).is_some()
    }

    pub fn stream_infos(&self, now: Instant) -> Vec<StreamInfo> {
        self.streams
            .values()
            .map(|s| StreamInfo {
                key: s.key.to_string(),
                owned: s.owned.is_some(),
                publishing: s.owned.as_ref().is_some_and(|o| o.publisher.is_some()),
                // Forwards and pushes subscribe like players but are not viewers.
                players: s.players.iter().filter(|p| p.sub.is_viewer()).count(),
                remote_cores: s
                    .owned
                    .as_ref()
                    .map(|o| o.remote.clone())
                    .unwrap_or_default(),
                gop_frames: s.cache.gop_len(),
                video_codec: s
                    .owned
                    .as_ref()
                    .and_then(|o| o.video_codec)
                    .map(|c| format!("{c:?}")),
                audio_codec: s
                    .owned
                    .as_ref()
                    .and_then(|o| o.audio_codec)
                    .map(|c| format!("{c:?}")),
                bytes_in: s.owned.as_ref().map_or(0, |o| o.bytes_in),
                publisher_bytes_in: s.owned.as_ref().map_or(0, |o| o.publisher_bytes_in()),
                publisher: s.owned.as_ref().and_then(|o| o.publisher),
                uptime_ms: s
                    .owned
                    .as_ref()
                    .filter(|o| o.publisher.is_some())
                    .map_or(0, |o| {
                        now.saturating_duration_since(o.publish_started).as_millis() as u64
                    }),
                upstream: self
                    .directory
                    .pull(&s.key)
                    .map(|p| (p.core, format!("{:?}", p.state).to_lowercase())),
            })
            .collect()
    }

    fn local(&mut self, key: &str) -> &mut LocalStream {
        if !self.streams.contains_key(key) {
            let k: Arc<str> = Arc::from(key);
            self.streams.insert(k.clone(), LocalStream::new(k));
        }
        self.streams.get_mut(key).expect("inserted above")
    }

    /// Claims `key` for a publisher on this core.
    pub fn publish(&mut self, key: &str, publisher: u64, now: Instant) -> Result<(), HubError> {
        let claim = self.directory.claim(key, self.core)?;
        if matches!(claim, Claim::Takeover { .. }) {
            // A publisher came back (or another took over) within the grace.
            let n = &self.stats.publisher_reconnects;
            n.set(n.get() + 1);
        }
        let me = self.core;
        if claim == Claim::New && self.streams.get(key).is_some_and(|s| s.owned.is_none()) {
            // A mirror of a stream that ended (its End is on the way): its
            // players watched that stream, not this one.
            self.end_local(key);
        }
        let s = self.local(key);
        s.reset();
        let key_arc = s.key.clone();
        let mut out = Vec::new();
        let last_ts = match &claim {
            Claim::Takeover { last_ts, .. } => *last_ts,
            Claim::New => None,
        };
        // Still the owner here: this core's publisher came back, or the
        // stream went to another core and back before that core's Adopt
        // arrived. Either way the mirrors stay; the clock continues after
        // the latest publisher's.
        let restarted = s.owned.as_mut().map(|o| {
            if last_ts.is_some() {
                o.last_out = last_ts;
            }
            o.restart(publisher, now);
            o.remote.clone()
        });
        if let Some(remote) = restarted {
            // Tell the mirrors to reset and wait for the new keyframe.
            for core in remote {
                let frames = Vec::new();
                out.push((
                    core,
                    StreamMsg::Start {
                        key: key_arc.clone(),
                        frames,
                        epoch: 0,
                    },
                ));
            }
        } else {
            s.owned = Some(Owned::new(publisher, last_ts, now));
            // Players that were waiting here for another core's start (this
            // core mirrored the stream) would wait forever: that start is
            // ignored now the stream is owned here. They start empty; the
            // new publisher's headers and keyframe come live.
            for p in s.players.iter_mut().filter(|p| !p.started) {
                p.started = true;
                p.sub.start(&[]);
            }
        }
        self.package(&key_arc, now);
        if let Claim::Takeover { prev_owner, .. } = claim {
            if prev_owner != me {
                let new_owner = me;
                out.push((
                    prev_owner,
                    StreamMsg::Adopt {
                        key: key_arc,
                        new_owner,
                    },
                ));
            }
        }
        for (core, msg) in out {
            self.send(core, msg);
        }
        self.flush_wakes();
        Ok(())
    }

    /// The publisher left. With no grace the stream ends now; otherwise
    /// players wait and [`Hub::expire`] ends it later.
    pub fn unpublish(&mut self, key: &str, publisher: u64, now: Instant) {
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        let Some(o) = s.owned.as_mut() else { return };
        if o.publisher != Some(publisher) {
            return;
        }
        o.publisher = None;
        o.idle_since = Some(now);
        self.directory.release(key, self.core, o.last_out);
        if self.config.publisher_grace.is_zero() {
            self.expire(now);
        }
    }

    /// Ends owned streams whose publisher did not come back within the grace.
    pub fn expire(&mut self, now: Instant) {
        let grace = self.config.publisher_grace;
        let done: Vec<Arc<str>> = self
            .streams
            .values()
            .filter(|s| s.owned.as_ref().is_some_and(|o| o.expired(grace, now)))
            .map(|s| s.key.clone())
            .collect();
        for key in done {
            self.end_owned(&key, now);
        }
        self.flush_wakes();
    }

    /// Ends an owned stream at once, without a grace (an edge pull that
    /// closes because nobody watches, a publisher a drain sent elsewhere).
    pub fn end_now(&mut self, key: &str, publisher: u64, now: Instant) {
        let ours = self
            .streams
            .get(key)
            .and_then(|s| s.owned.as_ref())
            .is_some_and(|o| o.publisher == Some(publisher));
        if !ours {
            return;
        }
        self.unpublish(key, publisher, now);
        if self.streams.get(key).is_some_and(|s| s.owned.is_some()) {
            let key: Arc<str> = Arc::from(key);
            self.end_owned(&key, now);
            self.flush_wakes();
        }
    }

    /// Ends an owned stream nobody publishes: its mirrors, then its players.
    fn end_owned(&mut self, key: &Arc<str>, now: Instant) {
        if self.directory.remove_if_idle(key, self.core) {
            self.unpackage(key, true, now);
            let remote = self
                .streams
                .get(&**key)
                .and_then(|s| s.owned.as_ref())
                .map(|o| o.remote.clone())
                .unwrap_or_default();
            for core in remote {
                self.send(core, StreamMsg::End { key: key.clone() });
            }
            self.end_local(key);
        }
    }

    /// Tells this core's players the stream is over and forgets it.
    fn end_local(&mut self, key: &str) {
        let Some(s) = self.streams.remove(key) else {
            return;
        };
        for p in s.players {
            p.sub.end();
        }
    }

    /// One message from this core's publisher of `key`.
    pub fn ingest(
        &mut self,
        key: &str,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
        now: Instant,
    ) {
        let chunk_size = self.config.chunk_size;
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        let Some(o) = s.owned.as_mut() else { return };
        let class = classify(kind, &payload);
        o.bytes_in += payload.len() as u64;
        if class.video.is_some() {
            o.video_codec = class.video;
        }
        if class.audio.is_some() {
            o.audio_codec = class.audio;
        }
        // Metadata always goes out at timestamp 0: ffmpeg's FLV reader
        // takes a script message with any other timestamp for a new data
        // stream rather than metadata.
        let ts = if kind == MediaKind::Metadata {
            0
        } else {
            o.map_timestamp(kind, timestamp, class.cts, class.header.is_some())
        };
        let frame = Frame::new(kind, ts, class, payload, chunk_size, now);
        self.stats.messages_in.set(self.stats.messages_in.get() + 1);
        if s.deliver(&frame, &self.config.gop, &*self.delivery, now)
            .is_none()
        {
            self.stats.dropped.inc(DropReason::AwaitKeyframe);
            return;
        }
        let key = s.key.clone();
        let remote = s
            .owned
            .as_ref()
            .map(|o| o.remote.clone())
            .unwrap_or_default();
        if let Some(p) = self.packagers.get_mut(&key) {
            if let Some(latency) = p.push(&frame, now) {
                self.stats.hls_part_latency.record(latency);
            }
        }
        for core in remote {
            self.send(
                core,
                StreamMsg::Frame {
                    key: key.clone(),
                    frame: frame.clone(),
                },
            );
        }
    }

    /// Adds a player. Served from this core's cache when the stream is
    /// owned or mirrored here; otherwise subscribes this core at the owner.
    pub fn subscribe(
        &mut self,
        key: &str,
        player: u64,
        sub: Rc<dyn Subscriber>,
    ) -> Result<(), HubError> {
        if let Some(s) = self.streams.get_mut(key) {
            let started = s.owned.is_some() || s.players.iter().any(|p| p.started);
            s.add_player(player, sub, started);
            return Ok(());
        }
        let owner = self
            .directory
            .owner(key)
            .ok_or_else(|| HubError::NotFound(key.to_string()))?;
        if owner == self.core {
            return Err(HubError::NotFound(key.to_string()));
        }
        let me = self.core;
        self.epochs += 1;
        let epoch = self.epochs;
        let s = self.local(key);
        s.epoch = epoch;
        s.awaiting_start = true;
        s.add_player(player, sub, false);
        let key = s.key.clone();
        self.send(
            owner,
            StreamMsg::Subscribe {
                key,
                core: me,
                epoch,
            },
        );
        self.flush_wakes();
        Ok(())
    }

    pub fn unsubscribe(&mut self, key: &str, player: u64) {
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        s.remove_player(player);
        self.drop_if_unused(key);
    }

    /// A mirror with no players left unsubscribes from the owner.
    fn drop_if_unused(&mut self, key: &str) {
        let unused = self
            .streams
            .get(key)
            .is_some_and(|s| s.owned.is_none() && s.players.is_empty());
        if !unused {
            return;
        }
        if let Some(s) = self.streams.remove(key) {
            if let Some(owner) = self.directory.owner(key) {
                if owner != self.core {
                    self.send(
                        owner,
                        StreamMsg::Unsubscribe {
                            key: s.key,
                            core: self.core,
                        },
                    );
                    self.flush_wakes();
                }
            }
        }
    }

    /// Applies messages from other cores (a batch drained from the inbox).
    pub fn handle(&mut self, msg: StreamMsg, now: Instant) {
        match msg {
            StreamMsg::Subscribe { key, core, epoch } => self.on_subscribe(key, core, epoch),
            StreamMsg::Unsubscribe { key, core } => {
                if let Some(o) = self.streams.get_mut(&*key).and_then(|s| s.owned.as_mut()) {
                    o.remote.retain(|c| *c != core);
                    o.epochs.remove(&core);
                }
            }
            StreamMsg::Start { key, frames, epoch } => {
                let gop = self.config.gop.clone();
                match self.streams.get_mut(&*key) {
                    Some(s) if s.owned.is_none() => {
                        if epoch == 0 || epoch == s.epoch {
                            s.start(&frames, &gop);
                        }
                        if epoch != 0 && epoch == s.epoch {
                            s.awaiting_start = false;
                        }
                    }
                    Some(_) => {}
                    None => self.on_stale(key),
                }
            }
            StreamMsg::Frame { key, frame } => {
                let gop = self.config.gop.clone();
                match self.streams.get_mut(&*key) {
                    // A frame of an older subscription: the start on its
                    // way replays it from the owner's cache.
                    Some(s) if s.owned.is_none() && s.awaiting_start => {}
                    Some(s) if s.owned.is_none() => {
                        if s.deliver(&frame, &gop, &*self.delivery, now).is_none() {
                            self.stats.dropped.inc(DropReason::AwaitKeyframe);
                        }
                        self.drop_if_unused(&key);
                    }
                    Some(_) => {}
                    None => self.on_stale(key),
                }
            }
            StreamMsg::End { key } => {
                if self.streams.get(&*key).is_some_and(|s| s.owned.is_none()) {
                    self.end_local(&key);
                }
            }
            StreamMsg::Adopt { key, new_owner } => self.on_adopt(key, new_owner, now),
        }
    }

    fn on_subscribe(&mut self, key: Arc<str>, core: usize, epoch: u64) {
        let me = self.core;
        if let Some(s) = self.streams.get_mut(&*key) {
            if let Some(o) = s.owned.as_mut() {
                if !o.remote.contains(&core) {
                    o.remote.push(core);
                }
                if epoch != 0 || !o.epochs.contains_key(&core) {
                    o.epochs.insert(core, epoch);
                }
                let frames = s.cache.snapshot();
                self.send(core, StreamMsg::Start { key, frames, epoch });
                return;
            }
        }
        match self.directory.owner(&key) {
            // The subscribing core publishes the stream itself now: its
            // players are served there.
            Some(owner) if owner == core => {}
            // The stream moved: pass the subscription on.
            Some(owner) if owner != me => {
                self.send(owner, StreamMsg::Subscribe { key, core, epoch })
            }
            _ => self.send(core, StreamMsg::End { key }),
        }
    }

    /// Frames for a stream this core no longer has players of.
    fn on_stale(&mut self, key: Arc<str>) {
        if let Some(owner) = self.directory.owner(&key) {
            if owner != self.core {
                let core = self.core;
                self.send(owner, StreamMsg::Unsubscribe { key, core });
            }
        }
    }

    /// Another core took over a stream this core owned (publisher
    /// reconnected there): hand over the subscribers, keep local players
    /// as a mirror.
    fn on_adopt(&mut self, key: Arc<str>, new_owner: usize, now: Instant) {
        let me = self.core;
        if self.directory.owner(&key) == Some(me) {
            // Stale: this core took the stream back since, and the Adopt
            // it sent then brings the subscribers back.
            return;
        }
        // The new owner's packager continues the window.
        self.unpackage(&key, false, now);
        let Some(s) = self.streams.get_mut(&*key) else {
            return;
        };
        let Some(o) = s.owned.take() else { return };
        s.reset();
        // Each core's subscription moves with its epoch, so the new
        // owner's start answers the subscription the core still has.
        let mut cores: Vec<(usize, u64)> = o
            .remote
            .iter()
            .filter(|c| **c != new_owner)
            .map(|c| (*c, o.epochs.get(c).copied().unwrap_or(0)))
            .collect();
        if !s.players.is_empty() {
            // This core becomes a mirror with a subscription of its own.
            self.epochs += 1;
            s.epoch = self.epochs;
            s.awaiting_start = true;
            cores.push((me, s.epoch));
        } else {
            self.streams.remove(&*key);
        }
        for (core, epoch) in cores {
            self.send(
                new_owner,
                StreamMsg::Subscribe {
                    key: key.clone(),
                    core,
                    epoch,
                },
            );
        }
    }
}
