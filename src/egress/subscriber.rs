//! The subscriber types the hub hands frames to: an RTMP player, an
//! HTTP-FLV or WebSocket-FLV player, and an upstream publish (forward,
//! push). Each owns an [`Outbox`] and a framing; players also use the
//! core's batched and coalesced sends.

use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::fanout::Fanout;
use super::framing::Framing;
use super::outbox::Outbox;
use crate::hub::frame::HeaderKey;
use crate::hub::{Frame, Subscriber};
use crate::protocol::flv::{write_file_header, FlvHeader};
use crate::protocol::session::unpublish_notice;

/// An RTMP player of one stream.
pub struct RtmpPlayer {
    outbox: Rc<Outbox>,
    egress: Rc<Fanout>,
    /// The stream name its end-of-stream notice carries.
    name: String,
}

impl RtmpPlayer {
    pub fn new(outbox: Rc<Outbox>, egress: Rc<Fanout>, key: &str) -> Rc<RtmpPlayer> {
        let name = key.rsplit('/').next().unwrap_or(key).to_string();
        Rc::new(RtmpPlayer {
            outbox,
            egress,
            name,
        })
    }
}

impl Subscriber for RtmpPlayer {
    fn start(&self, frames: &[Frame]) {
        self.outbox.push_start(frames);
    }

    fn offer(&self, frame: &Frame, now: Instant) -> bool {
        let kept = self.outbox.push_live(frame, now, &self.egress);
        if let Some(window) = self.outbox.take_flush_request() {
            self.egress.coalescer.schedule(&self.outbox, window, now);
        }
        kept
    }

    fn end(&self) {
        self.outbox.mark_ended();
        if let Some((stream_id, chunk_size)) = self.outbox.framing().stream() {
            self.outbox
                .push_control(unpublish_notice(stream_id, chunk_size, &self.name));
        }
    }

    fn is_closed(&self) -> bool {
        self.outbox.closed().is_some()
    }
}

/// An upstream we publish a local stream to: its frames are framed the way
/// a publisher sends them, and the end of the stream is a flag for its
/// task, which ends the publish.
pub struct UpstreamFeed {
    outbox: Rc<Outbox>,
}

impl UpstreamFeed {
    /// `stream_id` is the id the target gave in createStream; `chunk_size`
    /// the one we announced to it.
    pub fn new(outbox: Rc<Outbox>, stream_id: u32, chunk_size: u32) -> Rc<UpstreamFeed> {
        outbox.start_publish(stream_id, chunk_size);
        Rc::new(UpstreamFeed { outbox })
    }
}

impl Subscriber for UpstreamFeed {
    fn start(&self, frames: &[Frame]) {
        self.outbox.push_start(frames);
    }

    fn offer(&self, frame: &Frame, now: Instant) -> bool {
        self.outbox.push_frame(frame, now)
    }

    fn end(&self) {
        self.outbox.mark_ended();
    }

    fn is_closed(&self) -> bool {
        self.outbox.closed().is_some()
    }

    fn is_viewer(&self) -> bool {
        false
    }
}

/// An HTTP-FLV or WebSocket-FLV player of one stream: frames leave as the
/// node-shared FLV tags (or their WebSocket messages), batched with the
/// core's other FLV players of the stream; the FLV file header goes first,
/// with the tracks the stream's cached start shows.
pub struct FlvPlayer {
    outbox: Rc<Outbox>,
    egress: Rc<Fanout>,
    /// The FLV file header went out (a stream restarting within the
    /// publisher's grace period starts again without a second one).
    header_sent: std::cell::Cell<bool>,
}

impl FlvPlayer {
    /// `outbox` must have been started with an FLV framing
    /// ([`Outbox::start_with`]).
    pub fn new(outbox: Rc<Outbox>, egress: Rc<Fanout>) -> Rc<FlvPlayer> {
        Rc::new(FlvPlayer {
            outbox,
            egress,
            header_sent: std::cell::Cell::new(false),
        })
    }

    fn wrap(&self, bytes: Bytes) -> Bytes {
        match self.outbox.framing() {
            Framing::WsFlv => crate::protocol::ws::binary(&bytes),
            _ => bytes,
        }
    }
}

impl Subscriber for FlvPlayer {
    fn start(&self, frames: &[Frame]) {
        if !self.header_sent.replace(true) {
            // Announce the tracks the cached start carries; a stream with
            // no sequence header yet announces both (players wait for what
            // is announced, so announcing too little would hide a track).
            let video = frames
                .iter()
                .any(|f| matches!(f.header, Some(HeaderKey::Video(_))));
            let audio = frames
                .iter()
                .any(|f| matches!(f.header, Some(HeaderKey::Audio(_))));
            let header = FlvHeader {
                has_audio: audio || !video,
                has_video: video || !audio,
            };
            let mut out = BytesMut::with_capacity(13);
            write_file_header(&header, &mut out);
            self.outbox.push_control(self.wrap(out.freeze()));
        }
        self.outbox.push_start(frames);
    }

    fn offer(&self, frame: &Frame, now: Instant) -> bool {
        let kept = self.outbox.push_live(frame, now, &self.egress);
        if let Some(window) = self.outbox.take_flush_request() {
            self.egress.coalescer.schedule(&self.outbox, window, now);
        }
        kept
    }

    fn end(&self) {
        self.outbox.mark_ended();
    }

    fn is_closed(&self) -> bool {
        self.outbox.closed().is_some()
    }
}
