//! One HLS player's protocol, without I/O: which request goes out next on
//! each of its two keep-alive HTTP/1.1 connections, reading the answers,
//! and what it measures of them. Socket bytes and timer expiries go in;
//! request bytes wait in [`HlsClient::out`], and the I/O loop (`playloop`)
//! opens and closes connections when the client asks.
//!
//! The two connections split the work so that each holds at most one
//! request (no pipelining), and a player keeps up with 200 ms parts:
//!
//! - [`Slot::Playlist`] reloads the media playlist. With low-latency
//!   delivery (parts and `CAN-BLOCK-RELOAD=YES`) every reload is blocking,
//!   for the first part the last playlist did not list
//!   ([`MediaPlaylist::next_unlisted`], the part its preload hint names),
//!   so it returns as that part is finished, listing it and hinting the
//!   next. Without it (ordinary HLS) the playlist is polled every half
//!   target duration.
//! - [`Slot::Media`] fetches `init.mp4`, then media in order from the live
//!   edge ([`start_position`]): a listed part, the preload-hinted part
//!   (which the server holds open until it is complete), or a whole
//!   segment when a complete one is next ([`next_media`]; the choices are
//!   made in [`crate::hls_steps`]). Its bytes go through the
//!   [`FragmentReader`] as they arrive.
//!
//! Media without an `EXT-X-MAP` is MPEG-TS (ordinary HLS, as nginx-rtmp
//! writes it): no init segment, and each body is read as opaque media by
//! a [`TsReader`], which only checks the transport packets' sync bytes.
//! Such a player counts bytes and segments ([`ThreadStats::ts_segments`])
//! but no frames, so it measures no latency and no first frame; its
//! stalls are gaps in media bytes instead of video frames.
//!
//! So at the live edge the two requests in flight wait for the same part
//! and both return as it is finished; the next pair goes out at once.
//!
//! Byte-range addressed parts (`BYTERANGE="length@offset"` on the parts, a
//! hint with `BYTERANGE-START`; cascade writes them for
//! `index.m3u8?parts=byterange`) are a part's bytes within its segment's
//! resource, so they are not fetched one by one
//! ([`crate::hls_steps::Delivery::ByteRanges`]). The media connection asks
//! for the rest of a segment with `Range: bytes=<offset>-`, from the start
//! part's offset when joining and from byte 0 after that; the server sends
//! what exists at once and each further part as it is made (206, chunked),
//! ending the body with the segment, so parts are read and measured as
//! they arrive on one response. Because such a response lasts up to a
//! segment (three target durations at most), its timeout counts from the
//! last bytes received rather than from the request. A fetch that fails
//! is resumed at the first byte not read, into the same reader. The
//! playlist connection waits for the first part of the segment after the
//! one being made (`_HLS_msn=N+1&_HLS_part=0`), which is all the media
//! connection needs from it: about one reload and one range per segment.
//! A 404 on a segment jumps to the live edge.
//!
//! What it counts besides the common measurements: every request, failed
//! requests by reason, and stalls (no new video for longer than
//! [`HlsClient::stall_bound`] while playing, or a jump to the live edge
//! because the next media left the playlist or its sequence restarted).

use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::fmp4::{parse_init, Event, FragmentReader, VideoTrack, MAX_INIT};
use crate::hls_steps::{
    delivery, next_media, reload_directive, resume_media, start_position, Delivery, MediaKind,
    MediaStep, ResumePoint,
};
use crate::httpflv::{Dechunker, Framing, HeadReader, HttpError, HttpUrl};
use crate::m3u8::{self, MediaPlaylist, Playlist, Pos, MAX_PLAYLIST};
use crate::play::PlayerState;
use crate::stats::ThreadStats;
use crate::ts::TsReader;

#[path = "hls_response.rs"]
mod response;
use response::{read_response, request, Sink};

/// A player's connections: one per kind of request, so each carries one
/// request at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Playlist = 0,
    Media = 1,
}

pub const SLOTS: usize = 2;

impl Slot {
    pub const ALL: [Slot; SLOTS] = [Slot::Playlist, Slot::Media];
}

/// First wait after a failed request; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A request unanswered this long has failed (blocking requests are
/// answered within three target durations, or 503, by RFC 8216bis; the
/// longer of the two bounds applies).
const REQUEST_TIMEOUT_MIN: Duration = Duration::from_secs(10);
/// No new video for this long while playing parts is a stall.
const STALL: Duration = Duration::from_secs(1);
/// Multivariant playlists followed before giving up.
const MAX_VARIANT_HOPS: u32 = 4;

/// What a request was for.
#[derive(Debug)]
enum Req {
    /// `directive`: a blocking reload waiting for that part.
    Playlist {
        directive: Option<Pos>,
    },
    Init {
        uri: String,
    },
    Media {
        then: Pos,
        /// `None` once the body failed to parse (the rest is read and
        /// dropped, so the connection stays usable).
        reader: Option<MediaReader>,
        /// MPEG-TS (no `EXT-X-MAP`), to name a failure.
        ts: bool,
        /// A byte-range fetch (`Range: bytes=start-`), and how far it got.
        /// Boxed: it is three times the size of the other variants.
        range: Option<Box<RangeReq>>,
    },
}

impl Req {
    /// The first byte asked for, when the request carries a `Range`.
    fn range_start(&self) -> Option<u64> {
        match self {
            Req::Media { range: Some(r), .. } => Some(r.at.offset),
            _ => None,
        }
    }
}

/// A byte-range media request's progress.
#[derive(Debug)]
struct RangeReq {
    /// Where it starts (`at.offset` is the first byte asked for).
    at: ResumePoint,
    /// Body bytes of the segment read so far.
    got: u64,
    /// Bytes still to drop from the front of the body: a server that
    /// ignored the `Range` and answered 200 with the whole segment sends
    /// the `at.offset` bytes before the ones asked for.
    skip: u64,
}

/// A byte-range fetch that failed partway, kept to go on from where it
/// broke off, with the reader that has seen the bytes before that point.
#[derive(Debug)]
struct Resume {
    at: ResumePoint,
    reader: Option<MediaReader>,
}

/// How a media body is read: fMP4 (frames and stamps), or MPEG-TS as
/// opaque media.
#[derive(Debug)]
enum MediaReader {
    Fmp4(FragmentReader),
    Ts(TsReader),
}

enum Body {
    Close,
    Length(u64),
    Chunked(Dechunker),
}

/// One request in flight and its response so far.
struct Inflight {
    req: Req,
    /// The request target, to send it again (see [`HlsClient::on_closed`]).
    target: String,
    /// Some of the answer arrived.
    answered: bool,
    /// Already sent again once.
    resent: bool,
    sent: Instant,
    deadline: Instant,
    head: HeadReader,
    /// After the head: its status, whether the server closes afterwards,
    /// and how the body ends.
    status: Option<(u16, bool, Body)>,
    /// A playlist or init body, collected whole (both are small).
    buf: Vec<u8>,
}

/// A connection's side of the client.
#[derive(Default)]
pub struct SlotState {
    /// Request bytes to write.
    pub out: BytesMut,
    /// The I/O loop must close this connection (and open a new one for
    /// what `out` holds next).
    close: bool,
    inflight: Option<Inflight>,
    /// Responses read whole on the current connection.
    served: u32,
    /// Earliest time for this slot's next request (backoff, polling).
    not_before: Option<Instant>,
    backoff: Duration,
}

/// The loaded init segment.
#[derive(Debug, Clone)]
struct Init {
    uri: String,
    video: VideoTrack,
}

/// One HLS player.
pub struct HlsClient {
    authority: String,
    /// Request target of the media playlist (a multivariant playlist's
    /// first variant replaces the one given).
    playlist: String,
    variant_hops: u32,
    slots: [SlotState; SLOTS],
    pl: Option<MediaPlaylist>,
    /// The next media position to fetch, once the start is chosen.
    next: Option<Pos>,
    /// Byte-range delivery: the failed fetch to resume before `next`.
    resume: Option<Resume>,
    init: Option<Init>,
    /// Counted as up: the first playlist arrived.
    up: bool,
    last_video: Option<Instant>,
    stalled: bool,
    /// Why this player stopped, when it did.
    ended: Option<String>,
    /// The last failure, reported if the player never gets up.
    last_error: Option<String>,
}

impl HlsClient {
    /// A player of the media (or multivariant) playlist at `url`; call
    /// [`HlsClient::start`] to queue its first request.
    pub fn new(url: &HttpUrl) -> HlsClient {
        let mut c = HlsClient {
            authority: url.authority(),
            playlist: url.path.clone(),
            variant_hops: 0,
            slots: Default::default(),
            pl: None,
            next: None,
            resume: None,
            init: None,
            up: false,
            last_video: None,
            stalled: false,
            ended: None,
            last_error: None,
        };
        c.slots.iter_mut().for_each(|s| s.backoff = BACKOFF_MIN);
        c
    }

    /// Queues the first playlist request.
    pub fn start(&mut self, now: Instant, stats: &mut ThreadStats) {
        self.step(now, stats);
    }

    /// Request bytes waiting for `slot`'s connection.
    pub fn out(&mut self, slot: Slot) -> &mut BytesMut {
        &mut self.slots[slot as usize].out
    }

    /// True once: the I/O loop must close `slot`'s connection now.
    pub fn take_close(&mut self, slot: Slot) -> bool {
        let s = &mut self.slots[slot as usize];
        if s.close {
            s.served = 0;
        }
        std::mem::take(&mut s.close)
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Why the player stopped (the playlist ended, or the stream is not
    /// one this player can play); the I/O loop then drops it.
    pub fn ended(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    /// How long without new video counts as a stall: 1 s with parts; with
    /// whole segments a new one comes only every target duration (plus
    /// half of one for the polling), so 1 s beyond a target duration.
    pub fn stall_bound(&self) -> Duration {
        match &self.pl {
            Some(pl) if delivery(pl) == Delivery::Segments => {
                STALL + Duration::from_secs_f64(pl.target_duration.min(60.0))
            }
            _ => STALL,
        }
    }

    fn request_timeout(&self) -> Duration {
        let target = self
            .pl
            .as_ref()
            .map_or(0.0, |p| p.target_duration.min(60.0));
        REQUEST_TIMEOUT_MIN.max(Duration::from_secs_f64(3.0 * target))
    }

    /// When [`HlsClient::on_timer`] should next run.
    pub fn deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut add = |t: Instant| d = Some(d.map_or(t, |d| d.min(t)));
        for s in &self.slots {
            match &s.inflight {
                Some(f) => add(f.deadline),
                None => {
                    if let Some(t) = s.not_before {
                        add(t);
                    }
                }
            }
        }
        if let (Some(t), false) = (self.last_video, self.stalled) {
            add(t + self.stall_bound());
        }
        d
    }

    /// Times out requests, notices stalls, and sends what was waiting.
    pub fn on_timer(&mut self, now: Instant, stats: &mut ThreadStats) {
        for slot in Slot::ALL {
            let s = &mut self.slots[slot as usize];
            if s.inflight.as_ref().is_some_and(|f| now >= f.deadline) {
                let f = s.inflight.take().expect("a request is in flight");
                s.close = true;
                s.out.clear();
                self.salvage(f.req);
                self.failed(slot, "timeout".into(), now, stats);
            }
        }
        if let (Some(t), false) = (self.last_video, self.stalled) {
            if now >= t + self.stall_bound() {
                self.stalled = true;
                stats.stalls += 1;
            }
        }
        self.step(now, stats);
    }

    /// `slot`'s connection closed (`reason` None: the server closed it) or
    /// could not be opened. A response whose body runs to the close is
    /// complete. A request on a connection that had served others and got
    /// no answer at all is sent once more on a new one, not counted: the
    /// server closed an idle keep-alive connection as the request went
    /// out, which browsers retry too. Any other request in flight failed.
    pub fn on_closed(
        &mut self,
        slot: Slot,
        reason: Option<String>,
        now: Instant,
        state: &mut PlayerState,
        stats: &mut ThreadStats,
    ) {
        let s = &mut self.slots[slot as usize];
        s.out.clear();
        let reused = std::mem::take(&mut s.served) > 0;
        if let Some(mut f) = s.inflight.take() {
            if reused && !f.answered && !f.resent {
                f.resent = true;
                let range = f.req.range_start();
                s.out
                    .extend_from_slice(request(&f.target, &self.authority, range).as_bytes());
                s.inflight = Some(f);
                return;
            }
            match (&f.status, reason) {
                (Some((_, _, Body::Close)), None) => self.complete(slot, f, now, state, stats),
                (_, reason) => {
                    self.salvage(f.req);
                    self.failed(slot, reason.unwrap_or_else(|| "closed".into()), now, stats)
                }
            }
        }
        self.step(now, stats);
    }

    /// Bytes read on `slot`'s connection.
    pub fn on_data(
        &mut self,
        slot: Slot,
        data: &[u8],
        now: Instant,
        state: &mut PlayerState,
        stats: &mut ThreadStats,
    ) {
        let timeout = self.request_timeout();
        let s = &mut self.slots[slot as usize];
        let Some(f) = s.inflight.as_mut() else {
            // Nothing was asked: a server that talks out of turn.
            s.close = true;
            return;
        };
        f.answered = true;
        if f.req.range_start().is_some() {
            // A range of the segment being made legitimately streams for
            // up to three target durations, one part at a time: it fails
            // only when nothing arrives for a whole request timeout, not
            // when the whole body takes longer than one.
            f.deadline = f.deadline.max(now + timeout);
        }
        let mut sink = Sink {
            state: &mut *state,
            stats: &mut *stats,
            last_video: &mut self.last_video,
            stalled: &mut self.stalled,
            now,
        };
        match read_response(f, data, &mut sink) {
            Ok(false) => {}
            Ok(true) => {
                s.served += 1;
                let f = s.inflight.take().expect("a request is in flight");
                if f.status.as_ref().is_some_and(|st| st.1) {
                    s.close = true;
                }
                self.complete(slot, f, now, state, stats);
                self.step(now, stats);
            }
            Err(e) => {
                let f = s.inflight.take().expect("a request is in flight");
                s.close = true;
                self.salvage(f.req);
                self.failed(slot, e.reason(), now, stats);
                self.step(now, stats);
            }
        }
    }

    /// The run is over: a player that never got its playlist failed to
    /// connect, for its last reason.
    pub fn finish(&self, stats: &mut ThreadStats) {
        if !self.up && self.ended.is_none() {
            let why = self
                .last_error
                .clone()
                .unwrap_or_else(|| "hls:no-playlist".into());
            stats.connect_failed(why);
        }
    }

    fn failed(&mut self, slot: Slot, reason: String, now: Instant, stats: &mut ThreadStats) {
        stats.request_failed(reason.clone(), self.up);
        self.last_error = Some(reason);
        let s = &mut self.slots[slot as usize];
        s.not_before = Some(now + s.backoff);
        s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
    }

    /// A media request failed: when it was a byte-range fetch, keep where
    /// it broke off, so the next try asks for the rest of the segment from
    /// that byte and feeds the same reader (see [`resume_media`]).
    fn salvage(&mut self, req: Req) {
        if let Req::Media {
            range: Some(r),
            reader,
            ..
        } = req
        {
            let mut at = r.at;
            at.offset += r.got;
            self.resume = Some(Resume { at, reader });
        }
    }

    fn succeeded(&mut self, slot: Slot) {
        self.slots[slot as usize].backoff = BACKOFF_MIN;
    }

    /// A response was read whole.
    fn complete(
        &mut self,
        slot: Slot,
        f: Inflight,
        now: Instant,
        state: &mut PlayerState,
        stats: &mut ThreadStats,
    ) {
        let status = f.status.as_ref().map_or(0, |s| s.0);
        if !(200..300).contains(&status) {
            if status == 404 && f.req.range_start().is_some() {
                // Byte-range delivery: the server no longer has the
                // segment (it left the window, or the stream restarted),
                // so the playlist we have is stale there: go to the live
                // edge rather than retry it.
                self.jump_after_404(&f.req, stats);
            } else {
                self.salvage(f.req);
            }
            self.failed(slot, format!("http:{status}"), now, stats);
            return;
        }
        match f.req {
            Req::Playlist { directive } => {
                self.on_playlist(&f.buf, directive, f.sent, now, state, stats)
            }
            Req::Init { uri } => match parse_init(&f.buf) {
                Ok(video) => {
                    self.succeeded(slot);
                    state.on_decoder_config(video.nal_length_size);
                    self.init = Some(Init { uri, video });
                }
                Err(_) => self.failed(slot, "init".into(), now, stats),
            },
            Req::Media {
                reader, then, ts, ..
            } => {
                // Whatever happened inside the body, this media is done:
                // refetching it would count its frames twice.
                self.next = Some(then);
                self.resume = None;
                match reader {
                    Some(MediaReader::Fmp4(r)) if r.finish().is_ok() => self.succeeded(slot),
                    Some(MediaReader::Ts(r)) if r.finish().is_ok() => {
                        stats.ts_segments += 1;
                        self.succeeded(slot);
                    }
                    _ => {
                        let why = if ts { "ts" } else { "fmp4" };
                        self.failed(slot, why.into(), now, stats)
                    }
                }
            }
        }
    }

    /// A byte-range fetch got 404: a jump to the live edge, counted as a
    /// stall. The edge of the playlist we have, when it is past the lost
    /// segment; otherwise the playlist is older than the server's window
    /// and the start is chosen again from the next one.
    fn jump_after_404(&mut self, req: &Req, stats: &mut ThreadStats) {
        let Req::Media { range: Some(r), .. } = req else {
            return;
        };
        self.resume = None;
        self.next = self
            .pl
            .as_ref()
            .map(start_position)
            .filter(|p| p.msn > r.at.msn);
        if !std::mem::replace(&mut self.stalled, true) {
            stats.stalls += 1;
        }
    }

    fn on_playlist(
        &mut self,
        body: &[u8],
        directive: Option<Pos>,
        sent: Instant,
        now: Instant,
        state: &mut PlayerState,
        stats: &mut ThreadStats,
    ) {
        let parsed = std::str::from_utf8(body)
            .map_err(|_| ())
            .and_then(|t| m3u8::parse(t).map_err(|_| ()));
        let pl = match parsed {
            Ok(Playlist::Media(pl)) => pl,
            Ok(Playlist::Multivariant(variants)) if self.variant_hops < MAX_VARIANT_HOPS => {
                self.variant_hops += 1;
                match m3u8::resolve(&self.playlist, &variants[0], &self.authority) {
                    Ok(t) => self.playlist = t,
                    Err(e) => self.ended = Some(format!("hls:variant ({e})")),
                }
                return;
            }
            _ => {
                self.failed(Slot::Playlist, "playlist".into(), now, stats);
                return;
            }
        };
        self.succeeded(Slot::Playlist);
        if !self.up {
            self.up = true;
            stats.connected();
            // First-frame time counts from the request of the playlist
            // that found the stream, not from retries before it existed.
            state.play_sent = sent;
        }
        if self.next.is_none() {
            self.next = Some(start_position(&pl));
        }
        let s = &mut self.slots[Slot::Playlist as usize];
        s.not_before = if pl.endlist {
            // Nothing more will come: no more reloads.
            Some(now + Duration::from_secs(3600))
        } else if pl.is_low_latency() {
            // A reload that did not wait (the server answered with no newer
            // part than asked for) must not turn into a busy loop.
            match directive {
                Some(d) if pl.next_unlisted() <= d => Some(
                    now + Duration::from_secs_f64(pl.part_target.unwrap_or(0.2).min(10.0) / 2.0),
                ),
                _ => None,
            }
        } else {
            Some(now + Duration::from_secs_f64(pl.target_duration.clamp(0.2, 60.0) / 2.0))
        };
        self.pl = Some(pl);
    }

    /// Puts the next request on every idle connection.
    fn step(&mut self, now: Instant, stats: &mut ThreadStats) {
        if self.ended.is_some() {
            return;
        }
        if self.idle(Slot::Playlist, now) {
            let target = match (&self.pl, self.slots[0].backoff > BACKOFF_MIN) {
                // After a failure the next reload asks plainly (a 400 for
                // a directive too far ahead must not repeat).
                (Some(pl), false) if pl.is_low_latency() => {
                    let d = reload_directive(pl);
                    (m3u8::blocking_reload(&self.playlist, d), Some(d))
                }
                _ => (self.playlist.clone(), None),
            };
            let req = Req::Playlist {
                directive: target.1,
            };
            self.send(Slot::Playlist, &target.0, req, now, stats);
        }
        if self.idle(Slot::Media, now) {
            self.step_media(now, stats);
        }
    }

    fn idle(&self, slot: Slot, now: Instant) -> bool {
        let s = &self.slots[slot as usize];
        s.inflight.is_none() && s.not_before.map_or(true, |t| now >= t)
    }

    fn step_media(&mut self, now: Instant, stats: &mut ThreadStats) {
        let (Some(pl), Some(mut next)) = (&self.pl, self.next) else {
            return;
        };
        // A byte-range fetch that broke off goes on first, from its byte.
        let mut step = match &self.resume {
            Some(r) => resume_media(pl, &r.at),
            None => next_media(pl, next),
        };
        if step == MediaStep::Jump {
            self.resume = None;
            next = start_position(pl);
            self.next = Some(next);
            // A jump is a stall, unless the player is already in one (the
            // media it waited for is what expired).
            if !std::mem::replace(&mut self.stalled, true) {
                stats.stalls += 1;
            }
            step = next_media(pl, next);
        }
        let MediaStep::Fetch { uri, kind, then } = step else {
            if step == MediaStep::End {
                self.ended = Some("ended:hls-endlist".into());
            }
            return;
        };
        // The segment this fetch is in (`then` is the start of the next
        // one, or the next part of this one).
        let msn = match then.part {
            0 => then.msn.saturating_sub(1),
            _ => then.msn,
        };
        // No map: MPEG-TS media, read as opaque bytes.
        let map = pl.map_at(msn).map(str::to_string);
        let video = match &map {
            None => None,
            // The init segment in effect here first (a discontinuity may
            // bring a new one).
            Some(map) => match self.init.as_ref().filter(|i| &i.uri == map) {
                Some(i) => Some(i.video),
                None => {
                    let Ok(target) = m3u8::resolve(&self.playlist, map, &self.authority) else {
                        self.ended = Some("hls:map-uri".into());
                        return;
                    };
                    let req = Req::Init { uri: map.clone() };
                    self.send(Slot::Media, &target, req, now, stats);
                    return;
                }
            },
        };
        let Ok(target) = m3u8::resolve(&self.playlist, &uri, &self.authority) else {
            self.ended = Some("hls:media-uri".into());
            return;
        };
        let range = match kind {
            MediaKind::Range { start } => Some(Box::new(RangeReq {
                at: ResumePoint {
                    msn,
                    uri,
                    offset: start,
                },
                got: 0,
                skip: 0,
            })),
            _ => None,
        };
        // Resuming: the reader that read the bytes before this range.
        let resumed = match (self.resume.take(), &range) {
            (Some(r), Some(q)) if r.at == q.at => Some(r.reader),
            _ => None,
        };
        let reader = match (resumed, video) {
            (Some(reader), _) => reader,
            (None, Some(video)) => Some(MediaReader::Fmp4(FragmentReader::new(video))),
            (None, None) => Some(MediaReader::Ts(TsReader::default())),
        };
        let req = Req::Media {
            then,
            reader,
            ts: map.is_none(),
            range,
        };
        self.send(Slot::Media, &target, req, now, stats);
    }

    fn send(&mut self, slot: Slot, target: &str, req: Req, now: Instant, stats: &mut ThreadStats) {
        stats.requests += 1;
        let timeout = self.request_timeout();
        let s = &mut self.slots[slot as usize];
        s.not_before = None;
        s.out
            .extend_from_slice(request(target, &self.authority, req.range_start()).as_bytes());
        s.inflight = Some(Inflight {
            req,
            target: target.to_string(),
            answered: false,
            resent: false,
            sent: now,
            deadline: now + timeout,
            head: HeadReader::default(),
            status: None,
            buf: Vec::new(),
        });
    }
}

#[cfg(test)]
#[path = "hls_tests.rs"]
mod tests;
