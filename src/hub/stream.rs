//! One live stream on one core: its cached start (metadata, sequence
//! headers, GOP from the last keyframe) and its local players.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::frame::Frame;
use super::outbox::Outbox;
use crate::protocol::flv::{self, AudioCodec, VideoCodec};
use crate::protocol::session::MediaKind;

#[derive(Debug, Clone)]
pub struct GopLimits {
    pub max_duration_ms: u32,
    pub max_bytes: usize,
}

impl Default for GopLimits {
    fn default() -> Self {
        GopLimits {
            max_duration_ms: 10_000,
            max_bytes: 32 << 20,
        }
    }
}

/// Which sequence header a frame replaces: one per media kind and codec,
/// so cameras that resend headers every GOP do not pile them up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderKey {
    Video(VideoCodec),
    Audio(AudioCodec),
}

pub struct Player {
    pub id: u64,
    pub outbox: Rc<Outbox>,
}

pub struct Stream {
    pub key: String,
    /// The connection publishing, if any.
    pub publisher: Option<u64>,
    /// When the last publisher left; players wait for a new one until the grace passes.
    pub idle_since: Option<Instant>,
    metadata: Option<Frame>,
    headers: Vec<(HeaderKey, Frame)>,
    gop: VecDeque<Frame>,
    gop_bytes: usize,
    /// False after the GOP outgrew its limits, until the next keyframe.
    gop_valid: bool,
    players: Vec<Player>,
    /// Timestamp mapping so players see a monotonic clock across publisher reconnects.
    offset: u32,
    last_out: Option<u32>,
    rebase: bool,
    /// After a publisher change, hold inter video until the new keyframe.
    await_keyframe: bool,
    pub video_codec: Option<VideoCodec>,
    pub audio_codec: Option<AudioCodec>,
    pub started: Instant,
    pub bytes_in: u64,
}

impl Stream {
    pub fn new(key: String, now: Instant) -> Stream {
        Stream {
            key,
            publisher: None,
            idle_since: None,
            metadata: None,
            headers: Vec::new(),
            gop: VecDeque::new(),
            gop_bytes: 0,
            gop_valid: false,
            players: Vec::new(),
            offset: 0,
            last_out: None,
            rebase: false,
            await_keyframe: false,
            video_codec: None,
            audio_codec: None,
            started: now,
            bytes_in: 0,
        }
    }

    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// A (new) publisher takes the stream. The cached start is dropped: the
    /// new publisher brings its own metadata, headers and keyframe.
    pub fn set_publisher(&mut self, id: u64) {
        self.publisher = Some(id);
        self.idle_since = None;
        self.metadata = None;
        self.headers.clear();
        self.gop.clear();
        self.gop_bytes = 0;
        self.gop_valid = false;
        self.rebase = self.last_out.is_some();
        self.await_keyframe = true;
    }

    pub fn clear_publisher(&mut self, now: Instant) {
        self.publisher = None;
        self.idle_since = Some(now);
    }

    fn map_timestamp(&mut self, ts: u32) -> u32 {
        if self.rebase {
            self.rebase = false;
            // Continue one frame interval after the last timestamp players saw.
            let next = self.last_out.unwrap_or(0).wrapping_add(33);
            self.offset = next.wrapping_sub(ts);
        }
        let out = ts.wrapping_add(self.offset);
        self.last_out = Some(match self.last_out {
            // Keep the high-water mark; small B-frame reorderings pass through as is.
            Some(prev) if (out.wrapping_sub(prev) as i32) < 0 => prev,
            _ => out,
        });
        out
    }

    /// Takes one message from the publisher: caches what a late joiner
    /// needs, then hands the shared frame to every local player.
    pub fn ingest(
        &mut self,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
        chunk_size: u32,
        gop_limits: &GopLimits,
        now: Instant,
    ) {
        self.bytes_in += payload.len() as u64;
        let (keyframe, header) = match kind {
            MediaKind::Video => match flv::parse_video(&payload) {
                Ok(tag) => {
                    self.video_codec = Some(tag.codec);
                    let header = tag.is_sequence_header().then_some(HeaderKey::Video(tag.codec));
                    (tag.is_keyframe(), header)
                }
                Err(_) => (false, None),
            },
            MediaKind::Audio => match flv::parse_audio(&payload) {
                Ok(tag) => {
                    self.audio_codec = Some(tag.codec);
                    (false, tag.is_sequence_header.then_some(HeaderKey::Audio(tag.codec)))
                }
                Err(_) => (false, None),
            },
            _ => (false, None),
        };
        let ts = self.map_timestamp(timestamp);
        let frame = Frame::new(kind, ts, keyframe, payload, chunk_size, now);
        if kind == MediaKind::Metadata {
            self.metadata = Some(frame.clone());
        } else if let Some(key) = header {
            match self.headers.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = frame.clone(),
                None => self.headers.push((key, frame.clone())),
            }
        } else if keyframe {
            self.gop.clear();
            self.gop_bytes = 0;
            self.gop_valid = true;
            self.await_keyframe = false;
            self.cache(frame.clone(), gop_limits);
        } else if self.gop_valid {
            self.cache(frame.clone(), gop_limits);
        }
        if self.await_keyframe && kind == MediaKind::Video && header.is_none() {
            return;
        }
        self.players.retain(|p| {
            p.outbox.push_frame(&frame, now);
            p.outbox.closed().is_none()
        });
    }

    fn cache(&mut self, frame: Frame, limits: &GopLimits) {
        self.gop_bytes += frame.chunks.len();
        let first_ts = self.gop.front().map_or(frame.timestamp, |f| f.timestamp);
        let span = frame.timestamp.wrapping_sub(first_ts) as i32;
        self.gop.push_back(frame);
        if self.gop_bytes > limits.max_bytes || span > limits.max_duration_ms as i32 {
            // Too long a GOP to cache: late joiners wait for the next keyframe.
            self.gop.clear();
            self.gop_bytes = 0;
            self.gop_valid = false;
        }
    }

    /// Adds a player and queues the cached start: metadata, sequence
    /// headers, then the GOP from its keyframe.
    pub fn add_player(&mut self, id: u64, outbox: Rc<Outbox>) {
        if let Some(m) = &self.metadata {
            outbox.push_start(m);
        }
        for (_, h) in &self.headers {
            outbox.push_start(h);
        }
        for f in &self.gop {
            outbox.push_start(f);
        }
        self.players.push(Player { id, outbox });
    }

    pub fn remove_player(&mut self, id: u64) {
        self.players.retain(|p| p.id != id);
    }

    /// Removes every player, handing back their outboxes (end of stream).
    pub fn take_players(&mut self) -> Vec<Player> {
        std::mem::take(&mut self.players)
    }

    /// Whether a publisher-less stream has outlived the grace.
    pub fn expired(&self, grace: Duration, now: Instant) -> bool {
        self.publisher.is_none()
            && self
                .idle_since
                .is_some_and(|t| now.duration_since(t) >= grace)
    }

    pub fn gop_len(&self) -> usize {
        self.gop.len()
    }
}
