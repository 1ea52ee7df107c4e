//! Streams on this core: publishers in, shared frames out to players.
//!
//! The hub knows publishers and subscribers by id and outbox, never
//! sockets. Its methods are called from connection tasks on the same core.

pub mod frame;
pub mod outbox;
pub mod stream;

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::protocol::session::{unpublish_notice, MediaKind};
pub use frame::{Frame, PLAY_STREAM_ID};
pub use outbox::{CloseReason, Outbox, QueueLimits};
pub use stream::{GopLimits, Stream};

#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Outgoing chunk size every player was told.
    pub chunk_size: u32,
    pub gop: GopLimits,
    /// How long players wait for a publisher to come back.
    pub publisher_grace: Duration,
    pub max_streams: usize,
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
    config: HubConfig,
    streams: HashMap<String, Stream>,
}

impl Hub {
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            config,
            streams: HashMap::new(),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    pub fn contains(&self, key: &str) -> bool {
        self.streams.contains_key(key)
    }

    pub fn streams(&self) -> impl Iterator<Item = &Stream> {
        self.streams.values()
    }

    /// Claims `key` for a publisher. A stream inside its grace (players
    /// waiting, no publisher) is taken over; one with a live publisher is not.
    pub fn publish(&mut self, key: &str, publisher: u64, now: Instant) -> Result<(), HubError> {
        if let Some(s) = self.streams.get_mut(key) {
            if s.publisher.is_some() {
                return Err(HubError::InUse(key.to_string()));
            }
            s.set_publisher(publisher);
            return Ok(());
        }
        if self.streams.len() >= self.config.max_streams {
            return Err(HubError::TooManyStreams(self.config.max_streams));
        }
        let mut s = Stream::new(key.to_string(), now);
        s.set_publisher(publisher);
        self.streams.insert(key.to_string(), s);
        Ok(())
    }

    /// The publisher left. With no grace the stream ends now; otherwise
    /// players wait and [`Hub::expire`] ends it later.
    pub fn unpublish(&mut self, key: &str, publisher: u64, now: Instant) {
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        if s.publisher != Some(publisher) {
            return;
        }
        s.clear_publisher(now);
        if self.config.publisher_grace.is_zero() {
            self.end_stream(key);
        }
    }

    /// Ends streams whose publisher did not come back within the grace.
    pub fn expire(&mut self, now: Instant) {
        let grace = self.config.publisher_grace;
        let done: Vec<String> = self
            .streams
            .values()
            .filter(|s| s.expired(grace, now))
            .map(|s| s.key.clone())
            .collect();
        for key in done {
            self.end_stream(&key);
        }
    }

    fn end_stream(&mut self, key: &str) {
        let Some(mut s) = self.streams.remove(key) else {
            return;
        };
        let name = key.rsplit('/').next().unwrap_or(key);
        let notice = unpublish_notice(PLAY_STREAM_ID, self.config.chunk_size, name);
        for p in s.take_players() {
            p.outbox.push_control(notice.clone());
        }
    }

    pub fn ingest(&mut self, key: &str, kind: MediaKind, timestamp: u32, payload: Bytes, now: Instant) {
        if let Some(s) = self.streams.get_mut(key) {
            s.ingest(kind, timestamp, payload, self.config.chunk_size, &self.config.gop, now);
        }
    }

    /// Adds a player to a stream that has a publisher or is inside its grace.
    pub fn subscribe(&mut self, key: &str, player: u64, outbox: Rc<Outbox>) -> Result<(), HubError> {
        match self.streams.get_mut(key) {
            Some(s) => {
                s.add_player(player, outbox);
                Ok(())
            }
            None => Err(HubError::NotFound(key.to_string())),
        }
    }

    pub fn unsubscribe(&mut self, key: &str, player: u64) {
        if let Some(s) = self.streams.get_mut(key) {
            s.remove_player(player);
        }
    }
}
