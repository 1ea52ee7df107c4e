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
//!   segment when a complete one is next ([`next_media`]). Its bytes go
//!   through the [`FragmentReader`] as they arrive.
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
//! What it counts besides the common measurements: every request, failed
//! requests by reason, and stalls (no new video for longer than
//! [`HlsClient::stall_bound`] while playing, or a jump to the live edge
//! because the next media left the playlist or its sequence restarted).

use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::fmp4::{parse_init, Event, FragmentReader, VideoTrack, MAX_INIT};
use crate::httpflv::{Dechunker, Framing, HeadReader, HttpError, HttpUrl};
use crate::m3u8::{self, MediaPlaylist, Playlist, Pos, MAX_PLAYLIST};
use crate::play::PlayerState;
use crate::stats::ThreadStats;
use crate::ts::TsReader;

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

/// What the media connection should do next at position `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaStep {
    /// Fetch `uri`; the position after it is `then`.
    Fetch {
        uri: String,
        kind: MediaKind,
        then: Pos,
    },
    /// Not listed yet: wait for a newer playlist.
    Wait,
    /// No longer listed (expired from the window), or the media sequence
    /// restarted below it: go to the live edge.
    Jump,
    /// The playlist ended (`EXT-X-ENDLIST`) and all of it was fetched.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Part,
    /// The preload-hinted part: the server answers when it is complete.
    Hint,
    Segment,
}

/// Parts are fetched only when the playlist is low-latency and its parts
/// are resources of their own (byte-range parts are not supported here).
fn uses_parts(pl: &MediaPlaylist) -> bool {
    pl.is_low_latency()
        && !pl
            .segments
            .iter()
            .flat_map(|s| &s.parts)
            .chain(&pl.trailing_parts)
            .any(|p| p.byterange)
}

/// Chooses what to fetch at `next`, given the newest playlist.
pub fn next_media(pl: &MediaPlaylist, mut next: Pos) -> MediaStep {
    let parts = uses_parts(pl);
    if next.msn < pl.first_listed_msn() || next.msn > pl.next_msn() {
        return MediaStep::Jump;
    }
    if let Some(seg) = pl.segment(next.msn) {
        // A complete segment: whole when we are at its start, by parts
        // when we stopped inside it.
        if next.part > 0 && next.part >= seg.parts.len() as u64 {
            if seg.parts.is_empty() {
                // Its parts were dropped from the playlist while we were
                // inside it: the rest of it cannot be fetched alone.
                return MediaStep::Jump;
            }
            // We fetched its last part before the playlist said it was
            // the last.
            next = Pos::new(next.msn + 1, 0);
            return next_media(pl, next);
        }
        if next.part == 0 {
            return MediaStep::Fetch {
                uri: seg.uri.clone(),
                kind: MediaKind::Segment,
                then: Pos::new(next.msn + 1, 0),
            };
        }
        let i = next.part as usize;
        let then = if i + 1 == seg.parts.len() {
            Pos::new(next.msn + 1, 0)
        } else {
            Pos::new(next.msn, next.part + 1)
        };
        return MediaStep::Fetch {
            uri: seg.parts[i].uri.clone(),
            kind: MediaKind::Part,
            then,
        };
    }
    // The segment being made.
    if pl.endlist {
        return MediaStep::End;
    }
    if !parts {
        return MediaStep::Wait;
    }
    let then = Pos::new(next.msn, next.part + 1);
    if let Some(p) = pl.trailing_parts.get(next.part as usize) {
        return MediaStep::Fetch {
            uri: p.uri.clone(),
            kind: MediaKind::Part,
            then,
        };
    }
    match &pl.preload_hint {
        Some(h) if h.part && !h.byterange && next == pl.next_unlisted() => MediaStep::Fetch {
            uri: h.uri.clone(),
            kind: MediaKind::Hint,
            then,
        },
        _ => MediaStep::Wait,
    }
}

/// Where a player joining now starts. With parts: the last independent
/// part at least `PART-HOLD-BACK` (three part targets when not given) from
/// the end of the playlist, as an LL-HLS player joins; the oldest listed
/// independent part when none is that old; the start of the newest
/// segment when no part is marked independent. Without parts: the newest
/// complete segment, the least latency ordinary HLS allows.
pub fn start_position(pl: &MediaPlaylist) -> Pos {
    let newest_segment = match pl.segments.last() {
        Some(s) => Pos::new(s.msn, 0),
        None => Pos::new(pl.next_msn(), 0),
    };
    if !uses_parts(pl) {
        return newest_segment;
    }
    // Every listed part with its start time from the first listed segment.
    let mut t = 0.0;
    let mut independent = Vec::new();
    for s in &pl.segments {
        let mut pt = t;
        for (i, p) in s.parts.iter().enumerate() {
            if p.independent {
                independent.push((Pos::new(s.msn, i as u64), pt));
            }
            pt += p.duration;
        }
        t += s.duration;
    }
    for (i, p) in pl.trailing_parts.iter().enumerate() {
        if p.independent {
            independent.push((Pos::new(pl.next_msn(), i as u64), t));
        }
        t += p.duration;
    }
    let hold_back = pl
        .server_control
        .part_hold_back
        .unwrap_or(3.0 * pl.part_target.unwrap_or(0.0));
    let latest_start = t - hold_back;
    independent
        .iter()
        .rev()
        .find(|(_, start)| *start <= latest_start + 1e-6)
        .or(independent.first())
        .map(|(pos, _)| *pos)
        .unwrap_or(newest_segment)
}

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
    },
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
            Some(pl) if !uses_parts(pl) => {
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
                s.inflight = None;
                s.close = true;
                s.out.clear();
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
                s.out
                    .extend_from_slice(request(&f.target, &self.authority).as_bytes());
                s.inflight = Some(f);
                return;
            }
            match (&f.status, reason) {
                (Some((_, _, Body::Close)), None) => self.complete(slot, f, now, state, stats),
                (_, reason) => {
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
        let s = &mut self.slots[slot as usize];
        let Some(f) = s.inflight.as_mut() else {
            // Nothing was asked: a server that talks out of turn.
            s.close = true;
            return;
        };
        f.answered = true;
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
                s.inflight = None;
                s.close = true;
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
            Req::Media { reader, then, ts } => {
                // Whatever happened inside the body, this media is done:
                // refetching it would count its frames twice.
                self.next = Some(then);
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
                    let d = pl.next_unlisted();
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
        let mut step = next_media(pl, next);
        if step == MediaStep::Jump {
            next = start_position(pl);
            self.next = Some(next);
            // A jump is a stall, unless the player is already in one (the
            // media it waited for is what expired).
            if !std::mem::replace(&mut self.stalled, true) {
                stats.stalls += 1;
            }
            step = next_media(pl, next);
        }
        // No map: MPEG-TS media, read as opaque bytes.
        let map = pl.map_at(next.msn).map(str::to_string);
        match step {
            MediaStep::Fetch { uri, then, .. } => {
                let Some(map) = map else {
                    let Ok(target) = m3u8::resolve(&self.playlist, &uri, &self.authority) else {
                        self.ended = Some("hls:media-uri".into());
                        return;
                    };
                    let reader = Some(MediaReader::Ts(TsReader::default()));
                    let req = Req::Media {
                        then,
                        reader,
                        ts: true,
                    };
                    self.send(Slot::Media, &target, req, now, stats);
                    return;
                };
                // The init segment in effect here first (a discontinuity
                // may bring a new one).
                let Some(video) = self.init.as_ref().filter(|i| i.uri == map).map(|i| i.video)
                else {
                    let Ok(target) = m3u8::resolve(&self.playlist, &map, &self.authority) else {
                        self.ended = Some("hls:map-uri".into());
                        return;
                    };
                    self.send(Slot::Media, &target, Req::Init { uri: map }, now, stats);
                    return;
                };
                let Ok(target) = m3u8::resolve(&self.playlist, &uri, &self.authority) else {
                    self.ended = Some("hls:media-uri".into());
                    return;
                };
                let reader = Some(MediaReader::Fmp4(FragmentReader::new(video)));
                let req = Req::Media {
                    then,
                    reader,
                    ts: false,
                };
                self.send(Slot::Media, &target, req, now, stats);
            }
            MediaStep::End => self.ended = Some("ended:hls-endlist".into()),
            MediaStep::Wait | MediaStep::Jump => {}
        }
    }

    fn send(&mut self, slot: Slot, target: &str, req: Req, now: Instant, stats: &mut ThreadStats) {
        stats.requests += 1;
        let timeout = self.request_timeout();
        let s = &mut self.slots[slot as usize];
        s.not_before = None;
        s.out
            .extend_from_slice(request(target, &self.authority).as_bytes());
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

/// A GET. No `Connection` header: HTTP/1.1 keeps the connection, as
/// browsers' players do.
fn request(target: &str, authority: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: cascade-loadtest\r\nAccept: */*\r\n\r\n"
    )
}

/// Where a media body's findings go.
struct Sink<'a> {
    state: &'a mut PlayerState,
    stats: &'a mut ThreadStats,
    last_video: &'a mut Option<Instant>,
    stalled: &'a mut bool,
    now: Instant,
}

impl Sink<'_> {
    fn event(&mut self, e: Event) {
        match e {
            Event::Frame { key } => {
                *self.last_video = Some(self.now);
                *self.stalled = false;
                self.state.on_frame(key, self.stats);
            }
            Event::Stamp(s) => self.state.on_stamp(s, self.stats),
        }
    }

    /// Opaque (MPEG-TS) media bytes arrived: progress, though no frame.
    fn opaque(&mut self) {
        *self.last_video = Some(self.now);
        *self.stalled = false;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
}

impl ResponseError {
    /// A short stable label for counting failures by reason.
    pub fn reason(&self) -> String {
        match self {
            ResponseError::Http(e) => e.reason(),
            ResponseError::TooLarge(_) => "http-body-size".into(),
        }
    }
}

/// Feeds bytes to the response in flight; true once it is complete. A
/// media body goes through its [`FragmentReader`] as it comes; a playlist
/// or init body is collected; the body of a failed request is dropped.
fn read_response(
    f: &mut Inflight,
    mut data: &[u8],
    sink: &mut Sink<'_>,
) -> Result<bool, ResponseError> {
    if f.status.is_none() {
        let Some((head, used)) = f.head.push(data)? else {
            return Ok(false);
        };
        data = &data[used..];
        let body = match head.framing {
            Framing::Close => Body::Close,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(Dechunker::default()),
        };
        f.status = Some((head.status, head.close, body));
        f.head = HeadReader::default();
    }
    let Some((status, close, body)) = f.status.as_mut() else {
        return Ok(false);
    };
    let ok = (200..300).contains(status);
    let mut too_large = None;
    let mut piece = |bytes: &[u8]| {
        if !ok || bytes.is_empty() {
            return;
        }
        let cap = match &mut f.req {
            Req::Playlist { .. } => MAX_PLAYLIST,
            Req::Init { .. } => MAX_INIT,
            Req::Media { reader, .. } => {
                let ok = match reader {
                    Some(MediaReader::Fmp4(r)) => r.push(bytes, &mut |e| sink.event(e)).is_ok(),
                    Some(MediaReader::Ts(r)) => {
                        let ok = r.push(bytes).is_ok();
                        if ok {
                            sink.opaque();
                        }
                        ok
                    }
                    None => true,
                };
                if !ok {
                    *reader = None;
                }
                return;
            }
        };
        if f.buf.len() + bytes.len() > cap {
            too_large = Some(cap);
        } else {
            f.buf.extend_from_slice(bytes);
        }
    };
    let done = match body {
        Body::Close => {
            piece(data);
            false
        }
        Body::Length(left) => {
            let n = (*left).min(data.len() as u64) as usize;
            piece(&data[..n]);
            *left -= n as u64;
            if n < data.len() {
                // Bytes nobody asked for: the connection is out of step.
                *close = true;
            }
            *left == 0
        }
        Body::Chunked(d) => d.push(data, &mut piece)?,
    };
    match too_large {
        Some(cap) => Err(ResponseError::TooLarge(cap)),
        None => Ok(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::tests::{fragment, init_segment, video_samples};
    use crate::ts::tests::segment as ts_segment;

    /// An LL-HLS playlist: segment 40 without its parts (aged out), 41 with
    /// two, one part of 42 so far and the hint for the next.
    fn ll(media_sequence: u64, hold_back: f64) -> String {
        let m = media_sequence;
        format!(
            "#EXTM3U
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={hold_back},CAN-SKIP-UNTIL=12
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:{m}
#EXT-X-MAP:URI=\"init.mp4?token=t1&sid=9\"
#EXTINF:2.0,
seg{m}.m4s?sid=9
#EXT-X-PART:DURATION=0.2,URI=\"part{m1}.0.m4s?sid=9\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.2,URI=\"part{m1}.1.m4s?sid=9\"
#EXTINF:0.4,
seg{m1}.m4s?sid=9
#EXT-X-PART:DURATION=0.2,URI=\"part{m2}.0.m4s?sid=9\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{m2}.1.m4s?sid=9\"
",
            m1 = m + 1,
            m2 = m + 2
        )
    }

    fn media(text: &str) -> MediaPlaylist {
        match m3u8::parse(text) {
            Ok(Playlist::Media(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    fn fetch(uri: &str, kind: MediaKind, then: (u64, u64)) -> MediaStep {
        MediaStep::Fetch {
            uri: uri.into(),
            kind,
            then: Pos::new(then.0, then.1),
        }
    }

    #[test]
    fn next_media_walks_segments_parts_and_the_hint() {
        let pl = media(&ll(40, 0.6));
        let at = |msn, part| next_media(&pl, Pos::new(msn, part));
        // A complete segment from its start is fetched whole.
        assert_eq!(
            at(41, 0),
            fetch("seg41.m4s?sid=9", MediaKind::Segment, (42, 0))
        );
        // Inside it, by parts; its last part leads to the next segment.
        assert_eq!(
            at(41, 1),
            fetch("part41.1.m4s?sid=9", MediaKind::Part, (42, 0))
        );
        // Past its last part (fetched as a hint before it was known to be
        // the last): the next segment.
        assert_eq!(
            at(41, 2),
            fetch("part42.0.m4s?sid=9", MediaKind::Part, (42, 1))
        );
        // The segment being made: listed parts, then the hinted one.
        assert_eq!(
            at(42, 0),
            fetch("part42.0.m4s?sid=9", MediaKind::Part, (42, 1))
        );
        assert_eq!(
            at(42, 1),
            fetch("part42.1.m4s?sid=9", MediaKind::Hint, (42, 2))
        );
        // Beyond the hint: wait for the next playlist.
        assert_eq!(at(42, 2), MediaStep::Wait);
        // Expired from the window, or inside a segment whose parts are gone.
        assert_eq!(at(39, 0), MediaStep::Jump);
        assert_eq!(at(40, 1), MediaStep::Jump);
        // Beyond the segment being made: the sequence restarted lower.
        assert_eq!(at(43, 0), MediaStep::Jump);
    }

    #[test]
    fn ordinary_hls_waits_for_whole_segments() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:1.0,\nindex3.m4s\n#EXTINF:1.0,\nindex4.m4s\n";
        let pl = media(text);
        assert_eq!(start_position(&pl), Pos::new(4, 0));
        assert_eq!(
            next_media(&pl, Pos::new(4, 0)),
            fetch("index4.m4s", MediaKind::Segment, (5, 0))
        );
        assert_eq!(next_media(&pl, Pos::new(5, 0)), MediaStep::Wait);
        let ended = media(&format!("{text}#EXT-X-ENDLIST\n"));
        assert_eq!(next_media(&ended, Pos::new(5, 0)), MediaStep::End);
        // Parts without blocking reloads are not low-latency: segments.
        let pl = media(&ll(40, 0.6).replace("CAN-BLOCK-RELOAD=YES,", ""));
        assert_eq!(next_media(&pl, Pos::new(42, 0)), MediaStep::Wait);
        assert_eq!(start_position(&pl), Pos::new(41, 0));
    }

    #[test]
    fn start_is_the_last_independent_part_behind_the_hold_back() {
        // Parts start at 2.0 (41.0, independent), 2.2, 2.4 (42.0,
        // independent); the playlist ends at 2.6.
        assert_eq!(start_position(&media(&ll(40, 0.6))), Pos::new(41, 0));
        assert_eq!(start_position(&media(&ll(40, 0.1))), Pos::new(42, 0));
        // None old enough: the oldest independent part still listed.
        assert_eq!(start_position(&media(&ll(40, 5.0))), Pos::new(41, 0));
        // None marked: the newest segment.
        let plain = ll(40, 0.6).replace(",INDEPENDENT=YES", "");
        assert_eq!(start_position(&media(&plain)), Pos::new(41, 0));
    }

    /// A client driven in memory: answers go in through `on_data`, in
    /// `step`-sized reads.
    struct Rig {
        c: HlsClient,
        state: PlayerState,
        stats: ThreadStats,
        now: Instant,
    }

    impl Rig {
        fn new(url: &str) -> Rig {
            let url = HttpUrl::parse(url, "http").unwrap();
            let mut r = Rig {
                c: HlsClient::new(&url),
                state: PlayerState::new(Duration::ZERO),
                stats: ThreadStats::default(),
                now: Instant::now(),
            };
            r.c.start(r.now, &mut r.stats);
            r
        }

        /// The request target waiting on `slot` (taken), if any.
        fn request(&mut self, slot: Slot) -> Option<String> {
            let out = self.c.out(slot).split();
            if out.is_empty() {
                return None;
            }
            let text = String::from_utf8(out.to_vec()).unwrap();
            assert!(text.ends_with("\r\n\r\n") && text.contains("\r\nHost: h:8080\r\n"));
            let line = text.lines().next().unwrap();
            Some(
                line.strip_prefix("GET ")
                    .and_then(|l| l.strip_suffix(" HTTP/1.1"))
                    .unwrap()
                    .to_string(),
            )
        }

        fn answer(&mut self, slot: Slot, status: u16, body: &[u8], chunked: bool) {
            let mut bytes = if chunked {
                format!("HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes()
            } else {
                format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes()
            };
            if chunked {
                for c in body.chunks(100) {
                    bytes.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    bytes.extend_from_slice(c);
                    bytes.extend_from_slice(b"\r\n");
                }
                bytes.extend_from_slice(b"0\r\n\r\n");
            } else {
                bytes.extend_from_slice(body);
            }
            for part in bytes.chunks(37) {
                self.c
                    .on_data(slot, part, self.now, &mut self.state, &mut self.stats);
            }
        }

        fn wait(&mut self, d: Duration) {
            self.now += d;
            self.c.on_timer(self.now, &mut self.stats);
        }
    }

    #[test]
    fn a_player_waits_for_the_stream_then_follows_the_live_edge() {
        let mut r = Rig::new("http://h:8080/live/x/index.m3u8?token=a");
        let pl = Slot::Playlist;
        let md = Slot::Media;
        assert_eq!(r.request(pl).as_deref(), Some("/live/x/index.m3u8?token=a"));
        assert_eq!(r.request(md), None);

        // Not published yet: 404, retried after a backoff, not counted up.
        r.answer(pl, 404, b"", false);
        assert_eq!(r.request(pl), None);
        assert!(!r.c.is_up());
        assert_eq!(r.stats.request_errors["http:404"], 1);
        assert_eq!(r.stats.request_errors_playing, 0);
        r.wait(BACKOFF_MIN);
        assert_eq!(r.request(pl).as_deref(), Some("/live/x/index.m3u8?token=a"));

        // The playlist: up; a blocking reload for the hinted part, and the
        // init segment, its own query kept.
        r.answer(pl, 200, ll(40, 0.6).as_bytes(), false);
        assert!(r.c.is_up());
        assert_eq!(r.stats.players_up, 1);
        assert_eq!(
            r.request(pl).as_deref(),
            Some("/live/x/index.m3u8?token=a&_HLS_msn=42&_HLS_part=1")
        );
        assert_eq!(
            r.request(md).as_deref(),
            Some("/live/x/init.mp4?token=t1&sid=9")
        );
        r.answer(md, 200, &init_segment(4), false);
        // Start: segment 41 whole (its first part is the independent one
        // behind the hold-back).
        assert_eq!(r.request(md).as_deref(), Some("/live/x/seg41.m4s?sid=9"));
        r.answer(
            md,
            200,
            &fragment(&video_samples(4, 0, 12), &[vec![1; 20]]),
            true,
        );
        assert_eq!(
            (r.stats.video_frames, r.stats.frames, r.stats.lost),
            (12, 12, 0)
        );
        assert_eq!((r.stats.good_starts, r.stats.bad_starts), (1, 0));
        // Then the listed part of 42, then the hinted one.
        assert_eq!(r.request(md).as_deref(), Some("/live/x/part42.0.m4s?sid=9"));
        r.answer(md, 200, &fragment(&video_samples(4, 12, 6), &[]), false);
        assert_eq!(r.request(md).as_deref(), Some("/live/x/part42.1.m4s?sid=9"));
        r.answer(md, 200, &fragment(&video_samples(4, 18, 6), &[]), false);
        // Beyond the hint: nothing until the blocking reload answers.
        assert_eq!(r.request(md), None);
        let newer = ll(40, 0.6).replace(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part42.1.m4s?sid=9\"",
            "#EXT-X-PART:DURATION=0.2,URI=\"part42.1.m4s?sid=9\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part42.2.m4s?sid=9\"",
        );
        r.answer(pl, 200, newer.as_bytes(), false);
        assert_eq!(
            r.request(pl).as_deref(),
            Some("/live/x/index.m3u8?token=a&_HLS_msn=42&_HLS_part=2")
        );
        assert_eq!(r.request(md).as_deref(), Some("/live/x/part42.2.m4s?sid=9"));
        assert_eq!((r.stats.frames, r.stats.lost, r.stats.stalls), (24, 0, 0));
        assert!(r.stats.request_errors_playing == 0);
    }

    #[test]
    fn expired_media_jumps_to_the_live_edge_as_a_stall() {
        let mut r = Rig::new("http://h:8080/live/x/index.m3u8");
        r.request(Slot::Playlist);
        r.answer(Slot::Playlist, 200, ll(40, 0.6).as_bytes(), false);
        r.request(Slot::Playlist);
        r.request(Slot::Media);
        r.answer(Slot::Media, 200, &init_segment(4), false);
        assert_eq!(
            r.request(Slot::Media).as_deref(),
            Some("/live/x/seg41.m4s?sid=9")
        );
        // The segment request fails; meanwhile the window moved past it
        // (the publisher came back, the sequence jumped by 10).
        r.answer(Slot::Media, 404, b"", false);
        assert_eq!(r.stats.request_errors_playing, 1);
        r.answer(Slot::Playlist, 200, ll(50, 0.6).as_bytes(), false);
        r.wait(BACKOFF_MIN);
        assert_eq!(
            r.request(Slot::Media).as_deref(),
            Some("/live/x/seg51.m4s?sid=9")
        );
        assert_eq!(r.stats.stalls, 1);
    }

    #[test]
    fn no_video_for_a_second_is_a_stall_and_a_silent_server_a_timeout() {
        let mut r = Rig::new("http://h:8080/live/x/index.m3u8");
        r.request(Slot::Playlist);
        r.answer(Slot::Playlist, 200, ll(40, 0.1).as_bytes(), false);
        r.request(Slot::Media);
        r.answer(Slot::Media, 200, &init_segment(4), false);
        assert_eq!(
            r.request(Slot::Media).as_deref(),
            Some("/live/x/part42.0.m4s?sid=9")
        );
        r.answer(
            Slot::Media,
            200,
            &fragment(&video_samples(4, 0, 6), &[]),
            false,
        );
        // The hinted part never comes.
        assert_eq!(
            r.request(Slot::Media).as_deref(),
            Some("/live/x/part42.1.m4s?sid=9")
        );
        r.wait(Duration::from_millis(999));
        assert_eq!(r.stats.stalls, 0);
        r.wait(Duration::from_millis(1));
        assert_eq!(r.stats.stalls, 1);
        // One stall however long it lasts.
        r.wait(Duration::from_secs(2));
        assert_eq!(r.stats.stalls, 1);
        r.wait(REQUEST_TIMEOUT_MIN);
        assert_eq!(r.stats.request_errors["timeout"], 2, "both requests");
        assert!(r.c.take_close(Slot::Media) && r.c.take_close(Slot::Playlist));
        // Retried after the backoff on fresh connections.
        r.wait(BACKOFF_MIN);
        assert_eq!(
            r.request(Slot::Media).as_deref(),
            Some("/live/x/part42.1.m4s?sid=9")
        );
        assert!(r.request(Slot::Playlist).is_some());
    }

    #[test]
    fn a_connection_closed_mid_response_fails_the_request_only() {
        let mut r = Rig::new("http://h:8080/live/x/index.m3u8");
        r.request(Slot::Playlist);
        let (now, state, stats) = (r.now, &mut r.state, &mut r.stats);
        r.c.on_data(
            Slot::Playlist,
            b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n#EXTM3U\n",
            now,
            state,
            stats,
        );
        r.c.on_closed(Slot::Playlist, None, now, state, stats);
        assert_eq!(r.stats.request_errors["closed"], 1);
        assert!(r.c.ended().is_none());
        r.wait(BACKOFF_MIN);
        assert!(r.request(Slot::Playlist).is_some());
        // A close-delimited body is complete at the close.
        let body = format!("HTTP/1.0 200 OK\r\n\r\n{}", ll(40, 0.6));
        let (now, state, stats) = (r.now, &mut r.state, &mut r.stats);
        r.c.on_data(Slot::Playlist, body.as_bytes(), now, state, stats);
        assert!(!r.c.is_up());
        r.c.on_closed(Slot::Playlist, None, now, state, stats);
        assert!(r.c.is_up());
        assert_eq!(r.stats.request_errors.len(), 1);
    }

    #[test]
    fn a_request_lost_to_a_keep_alive_close_is_sent_again_once() {
        let mut r = Rig::new("http://h:8080/live/x/index.m3u8");
        r.request(Slot::Playlist);
        r.answer(Slot::Playlist, 200, ll(40, 0.6).as_bytes(), false);
        let reload = r.request(Slot::Playlist).unwrap();
        // The server closes the connection as the reload goes out.
        let (now, state, stats) = (r.now, &mut r.state, &mut r.stats);
        r.c.on_closed(Slot::Playlist, None, now, state, stats);
        assert_eq!(r.request(Slot::Playlist), Some(reload));
        assert!(r.stats.request_errors.is_empty());
        // On the new connection, a second close is a failure.
        let (now, state, stats) = (r.now, &mut r.state, &mut r.stats);
        r.c.on_closed(Slot::Playlist, None, now, state, stats);
        assert_eq!(r.stats.request_errors["closed"], 1);
        assert_eq!(r.request(Slot::Playlist), None);
    }

    #[test]
    fn a_discontinuity_with_a_new_map_fetches_the_new_init_first() {
        let mut r = Rig::new("http://h:8080/live/x/index.m3u8");
        let head = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:41\n#EXT-X-MAP:URI=\"a/init.mp4\"\n#EXTINF:1,\na/41.m4s\n";
        r.request(Slot::Playlist);
        r.answer(Slot::Playlist, 200, head.as_bytes(), false);
        assert_eq!(
            r.request(Slot::Media).as_deref(),
            Some("/live/x/a/init.mp4")
        );
        r.answer(Slot::Media, 200, &init_segment(4), false);
        assert_eq!(r.request(Slot::Media).as_deref(), Some("/live/x/a/41.m4s"));
        r.answer(
            Slot::Media,
            200,
            &fragment(&video_samples(4, 0, 30), &[]),
            false,
        );
        assert_eq!(r.request(Slot::Media), None);
        // Ordinary HLS: the next poll half a target duration later.
        assert_eq!(r.request(Slot::Playlist), None);
        r.wait(Duration::from_millis(500));
        assert_eq!(
            r.request(Slot::Playlist).as_deref(),
            Some("/live/x/index.m3u8")
        );
        let more = format!(
            "{head}#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"b/init.mp4\"\n#EXTINF:1,\nb/42.m4s\n"
        );
        r.answer(Slot::Playlist, 200, more.as_bytes(), false);
        assert_eq!(
            r.request(Slot::Media).as_deref(),
            Some("/live/x/b/init.mp4")
        );
        r.answer(Slot::Media, 200, &init_segment(2), false);
        assert_eq!(r.request(Slot::Media).as_deref(), Some("/live/x/b/42.m4s"));
        // The new init's NAL length size applies to the new media.
        r.answer(
            Slot::Media,
            200,
            &fragment(&video_samples(2, 30, 30), &[]),
            false,
        );
        assert_eq!((r.stats.frames, r.stats.lost, r.stats.stalls), (60, 0, 0));
    }

    #[test]
    fn mpeg_ts_segments_are_read_as_opaque_media() {
        // nginx-rtmp's ordinary HLS: no map, MPEG-TS segments.
        let mut r = Rig::new("http://h:8080/hls/bench.m3u8");
        r.request(Slot::Playlist);
        let head = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\nbench-7.ts\n#EXTINF:2.000,\nbench-8.ts\n";
        r.answer(Slot::Playlist, 200, head.as_bytes(), false);
        assert!(r.c.is_up() && r.c.ended().is_none());
        // No init segment: the newest whole segment at once.
        assert_eq!(r.request(Slot::Media).as_deref(), Some("/hls/bench-8.ts"));
        r.answer(Slot::Media, 200, &ts_segment(40), false);
        assert_eq!(r.stats.ts_segments, 1);
        // Bytes and segments, but no frames: no latency, no first frame.
        assert_eq!((r.stats.video_frames, r.stats.frames), (0, 0));
        assert!(r.stats.first_frame.is_empty() && r.stats.latency.is_empty());
        assert_eq!(r.request(Slot::Media), None);
        // Polled every half target duration; the next segment, chunked.
        r.wait(Duration::from_millis(1000));
        assert_eq!(
            r.request(Slot::Playlist).as_deref(),
            Some("/hls/bench.m3u8")
        );
        let more = format!("{head}#EXTINF:2.000,\nbench-9.ts\n");
        r.answer(Slot::Playlist, 200, more.as_bytes(), false);
        assert_eq!(r.request(Slot::Media).as_deref(), Some("/hls/bench-9.ts"));
        r.answer(Slot::Media, 200, &ts_segment(3), true);
        assert_eq!(r.stats.ts_segments, 2);
        // Media arrived within the bound (1 s beyond the target duration):
        // no stall, no failed request.
        assert_eq!((r.stats.stalls, r.stats.request_errors_playing), (0, 0));
        // A body that is not TS fails as "ts", and the player goes on.
        r.wait(Duration::from_millis(1000));
        r.request(Slot::Playlist);
        let more = format!("{more}#EXTINF:2.000,\nbench-10.ts\n");
        r.answer(Slot::Playlist, 200, more.as_bytes(), false);
        assert_eq!(r.request(Slot::Media).as_deref(), Some("/hls/bench-10.ts"));
        r.answer(
            Slot::Media,
            200,
            &fragment(&video_samples(4, 0, 3), &[]),
            false,
        );
        assert_eq!(r.stats.request_errors["ts"], 1);
        assert_eq!(r.stats.ts_segments, 2);
        assert!(r.c.ended().is_none());
        // No media for 1 s beyond the target duration is a stall.
        r.wait(Duration::from_millis(999));
        assert_eq!(r.stats.stalls, 0);
        r.wait(Duration::from_millis(1001));
        assert_eq!(r.stats.stalls, 1);
    }

    #[test]
    fn a_multivariant_playlist_leads_to_its_first_variant() {
        let mut r = Rig::new("http://h:8080/live/x/master.m3u8?t=1");
        r.request(Slot::Playlist);
        let mv = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow/index.m3u8?t=1\n";
        r.answer(Slot::Playlist, 200, mv.as_bytes(), false);
        assert_eq!(
            r.request(Slot::Playlist).as_deref(),
            Some("/live/x/low/index.m3u8?t=1")
        );
        assert!(!r.c.is_up());
    }
}
