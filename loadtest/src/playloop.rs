//! One player thread: a plain edge-triggered epoll loop (mio) over its
//! players' sockets, whatever protocol each speaks: one connection per
//! stream player ([`Wire`]), two per HLS player ([`HlsPlayer`], whose
//! protocol is `hls`), and a timer heap for the HLS players' reloads,
//! retries and timeouts.
//!
//! Why not an async runtime here: the harness must cost far less than the
//! server it measures, and its cost is almost all kernel work per `recv`.
//! With edge triggering a short read proves the socket drained, so every
//! `recv` returns data (no extra call that ends in EAGAIN), and one
//! `epoll_wait` serves every ready player of the thread.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use cascade::protocol::message::type_id;

use crate::hls::{HlsClient, Slot, SLOTS};
use crate::httpflv::HttpFlvClient;
use crate::play::{PlayConfig, PlayTarget, PlayerState, ThreadMsg};
use crate::rtmp::{is_media, ClientError, ClientProto, Role};
use crate::skim::{Skimmed, Skimmer};
use crate::stats::ThreadStats;
use crate::wsflv::WsFlvClient;

/// The protocol on a player's socket: bytes in, measurements out through
/// [`PlayerState`], bytes to send in [`Wire::out`].
// All players of a run speak the same protocol, so the smaller variants
// waste nothing worth an indirection on every read.
#[allow(clippy::large_enum_variant)]
enum Wire {
    Rtmp {
        proto: ClientProto,
        /// Only used during the handshake; the chunk stream goes to `skim`.
        rbuf: BytesMut,
        skim: Skimmer,
    },
    HttpFlv(HttpFlvClient),
    WsFlv(WsFlvClient),
}

impl Wire {
    fn new(target: &PlayTarget, complex_handshake: bool) -> Wire {
        match target {
            PlayTarget::Rtmp(url) => Wire::Rtmp {
                proto: ClientProto::new(url.clone(), Role::Play, complex_handshake),
                rbuf: BytesMut::new(),
                skim: Skimmer::default(),
            },
            PlayTarget::HttpFlv(url) => Wire::HttpFlv(HttpFlvClient::new(url)),
            PlayTarget::WsFlv(url) => Wire::WsFlv(WsFlvClient::new(url)),
            PlayTarget::Hls(_) => unreachable!("HLS players are HlsPlayer"),
        }
    }

    /// The player is counted as up: RTMP play sent, HTTP 200 or WebSocket
    /// 101 received.
    fn is_active(&self) -> bool {
        match self {
            Wire::Rtmp { proto, .. } => proto.is_active(),
            Wire::HttpFlv(c) => c.is_active(),
            Wire::WsFlv(c) => c.is_active(),
        }
    }

    /// HTTP and WebSocket players ask for the stream in their first bytes,
    /// sent as soon as the socket connects; an RTMP player asks (play)
    /// only after its handshake and commands. First-frame time counts from
    /// the asking, for both.
    fn asks_on_connect(&self) -> bool {
        !matches!(self, Wire::Rtmp { .. })
    }

    fn out(&mut self) -> &mut BytesMut {
        match self {
            Wire::Rtmp { proto, .. } => &mut proto.out,
            Wire::HttpFlv(c) => &mut c.out,
            Wire::WsFlv(c) => &mut c.out,
        }
    }

    /// Feeds bytes just read; media goes to `state` as it completes.
    fn feed(
        &mut self,
        data: &[u8],
        state: &mut PlayerState,
        stats: &mut ThreadStats,
    ) -> Result<(), ClientError> {
        let mut on_tag = |t: u8, timestamp: u32, body: &[u8]| {
            if t == type_id::VIDEO {
                state.on_video_timestamp(timestamp, stats);
            }
            state.on_media(t, body, stats)
        };
        match self {
            Wire::HttpFlv(c) => Ok(c.push(data, &mut on_tag)?),
            Wire::WsFlv(c) => Ok(c.push(data, &mut on_tag)?),
            Wire::Rtmp { proto, rbuf, skim } => feed_rtmp(proto, rbuf, skim, data, state, stats),
        }
    }
}

/// RTMP: the handshake, then the chunk stream through the skimmer (media
/// heads to `state`, commands to the protocol).
fn feed_rtmp(
    proto: &mut ClientProto,
    rbuf: &mut BytesMut,
    skim: &mut Skimmer,
    mut data: &[u8],
    state: &mut PlayerState,
    stats: &mut ThreadStats,
) -> Result<(), ClientError> {
    proto.count_received(data.len());
    let mut leftover = None;
    if !proto.handshake_done() {
        rbuf.extend_from_slice(data);
        if !proto.feed_handshake(rbuf)? {
            return Ok(());
        }
        leftover = Some(rbuf.split());
        data = &[];
    }
    if let Some(l) = &leftover {
        skim_chunks(proto, skim, l, state, stats)?;
    }
    skim_chunks(proto, skim, data, state, stats)
}

/// The chunk stream after the handshake.
fn skim_chunks(
    proto: &mut ClientProto,
    skim: &mut Skimmer,
    data: &[u8],
    state: &mut PlayerState,
    stats: &mut ThreadStats,
) -> Result<(), ClientError> {
    let mut failed = None;
    let mut on = |m: Skimmed<'_>| match m {
        Skimmed::Media {
            type_id: type_id::VIDEO,
            timestamp,
            head,
            ..
        } => {
            state.on_video_timestamp(timestamp, stats);
            state.on_video(head, stats)
        }
        Skimmed::Media { .. } => {}
        Skimmed::Full(raw) if is_media(raw.type_id) => {
            if raw.type_id == type_id::VIDEO {
                state.on_video_timestamp(raw.timestamp, stats);
            }
            state.on_media(raw.type_id, &raw.payload, stats)
        }
        Skimmed::Full(raw) => {
            if let Err(e) = proto.on_message(raw) {
                failed.get_or_insert(e);
            }
        }
    };
    skim.push(data, &mut on)?;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct Conn {
    sock: TcpStream,
    wire: Wire,
    connected: bool,
    /// Counted as up (see [`Wire::is_active`]).
    playing: bool,
    state: PlayerState,
}

/// An HLS player: its protocol, a connection per [`Slot`] while it has
/// one, and the deadline it has in the thread's timer heap.
struct HlsPlayer {
    client: HlsClient,
    socks: [Option<HlsSock>; SLOTS],
    state: PlayerState,
    timer: Option<Instant>,
}

struct HlsSock {
    sock: TcpStream,
    connected: bool,
}

// As for `Wire`: all players of a run are of one kind.
#[allow(clippy::large_enum_variant)]
enum Player {
    Stream(Conn),
    Hls(HlsPlayer),
}

/// Deadlines of HLS players, soonest first, by player index. An entry is
/// live only while it equals its player's `timer`; others are skipped.
type Timers = BinaryHeap<Reverse<(Instant, usize)>>;

/// What the thread's players share.
struct Ctx<'a> {
    poll: Poll,
    /// Per target of [`PlayConfig::target_of`], in the same order.
    addrs: Vec<SocketAddr>,
    cfg: &'a PlayConfig,
    timers: Timers,
}

/// Runs thread `t`'s share of the players until the duration ends.
pub fn run(t: usize, cfg: Arc<PlayConfig>, tx: Sender<ThreadMsg>) {
    let mut stats = ThreadStats::default();
    if let Err(e) = run_inner(t, &cfg, &tx, &mut stats) {
        eprintln!("player thread {t}: {e}");
    }
    let _ = tx.send(ThreadMsg::Final(Box::new(stats)));
}

fn run_inner(
    t: usize,
    cfg: &PlayConfig,
    tx: &Sender<ThreadMsg>,
    stats: &mut ThreadStats,
) -> io::Result<()> {
    let mut cx = Ctx {
        poll: Poll::new()?,
        addrs: std::iter::once(&cfg.target)
            .chain(&cfg.more)
            .map(PlayTarget::socket_addr)
            .collect::<io::Result<_>>()?,
        cfg,
        timers: Timers::new(),
    };
    let mut events = Events::with_capacity(1024);
    let mut players: Vec<Option<Player>> = Vec::new();
    // Shared read buffer: reads land here and only the bytes read are
    // appended to a player's buffer, so idle players hold no 64 KB each.
    let mut scratch = vec![0u8; cfg.read_buf];
    let start = Instant::now();
    let end = start + cfg.duration;
    let step = cfg.threads.max(1) as u64;
    let mut next_player = t as u64;
    let mut second = 0u64;
    loop {
        let now = Instant::now();
        if now >= end {
            for p in players.iter().flatten() {
                if let Player::Hls(h) = p {
                    h.client.finish(stats);
                }
            }
            return Ok(());
        }
        while next_player < cfg.players {
            let due = start + Duration::from_secs_f64(next_player as f64 / cfg.ramp.max(0.001));
            if due > now {
                break;
            }
            let global = next_player;
            next_player += step;
            let i = players.len();
            match start_player(&mut cx, i, global, now, stats) {
                Ok(p) => players.push(Some(p)),
                Err(e) => stats.connect_failed(ClientError::Io(e).reason()),
            }
        }
        let next_tick = start + Duration::from_secs(second + 1);
        if now >= next_tick {
            second += 1;
            let _ = tx.send(ThreadMsg::Interval(stats.take_interval(second)));
            continue;
        }
        let mut wake = next_tick.min(end);
        if next_player < cfg.players {
            wake =
                wake.min(start + Duration::from_secs_f64(next_player as f64 / cfg.ramp.max(0.001)));
        }
        if let Some(Reverse((t, _))) = cx.timers.peek() {
            wake = wake.min(*t);
        }
        match cx
            .poll
            .poll(&mut events, Some(wake.saturating_duration_since(now)))
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        for ev in events.iter() {
            let Token(token) = ev.token();
            let (i, slot) = (token / SLOTS, token % SLOTS);
            let Some(entry) = players.get_mut(i) else {
                continue;
            };
            match entry {
                Some(Player::Stream(conn)) => {
                    if let Err(e) = service(conn, &mut scratch, stats) {
                        if conn.playing {
                            stats.disconnected(e.reason());
                        } else {
                            stats.connect_failed(e.reason());
                        }
                        let _ = cx.poll.registry().deregister(&mut conn.sock);
                        *entry = None;
                    }
                }
                Some(Player::Hls(h)) => {
                    let slot = Slot::ALL[slot];
                    service_hls(&cx, h, slot, &mut scratch, now, stats);
                    hls_sync(&mut cx, i, entry, now, stats);
                }
                None => {}
            }
        }
        while let Some(&Reverse((due, i))) = cx.timers.peek() {
            if due > now {
                break;
            }
            cx.timers.pop();
            let Some(entry) = players.get_mut(i) else {
                continue;
            };
            if let Some(Player::Hls(h)) = entry {
                if h.timer == Some(due) {
                    h.timer = None;
                    h.client.on_timer(now, stats);
                    hls_sync(&mut cx, i, entry, now, stats);
                }
            }
        }
    }
}

fn start_player(
    cx: &mut Ctx<'_>,
    i: usize,
    global: u64,
    now: Instant,
    stats: &mut ThreadStats,
) -> io::Result<Player> {
    let cfg = cx.cfg;
    if let PlayTarget::Hls(url) = &cfg.target {
        let mut client = HlsClient::new(url);
        client.start(now, stats);
        let mut entry = Some(Player::Hls(HlsPlayer {
            client,
            socks: [None, None],
            state: PlayerState::new(cfg.warmup),
            timer: None,
        }));
        hls_sync(cx, i, &mut entry, now, stats);
        return entry.ok_or_else(|| io::Error::other("HLS player ended at once"));
    }
    let target = cfg.target_of(global);
    let addr = cx.addrs[(global % cx.addrs.len() as u64) as usize];
    let mut sock = TcpStream::connect(addr)?;
    cx.poll.registry().register(
        &mut sock,
        Token(i * SLOTS),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    Ok(Player::Stream(Conn {
        sock,
        wire: Wire::new(target, cfg.complex_handshake),
        connected: false,
        playing: false,
        state: PlayerState::new(cfg.warmup),
    }))
}

/// An HLS connection's readiness: finish connecting, then read what there
/// is into the client. A closed or failed connection is dropped and
/// reported; [`hls_sync`] then does what the client asks.
fn service_hls(
    cx: &Ctx<'_>,
    h: &mut HlsPlayer,
    slot: Slot,
    scratch: &mut [u8],
    now: Instant,
    stats: &mut ThreadStats,
) {
    let Some(s) = h.socks[slot as usize].as_mut() else {
        return;
    };
    let failed = |e: io::Error| Some(Some(ClientError::Io(e).reason()));
    // Some(reason): the connection is gone (None: closed by the server).
    let mut gone: Option<Option<String>> = None;
    if !s.connected {
        match s.sock.take_error() {
            Ok(Some(e)) | Err(e) => gone = failed(e),
            Ok(None) => match s.sock.peer_addr() {
                Ok(_) => {
                    s.connected = true;
                    let _ = s.sock.set_nodelay(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => gone = failed(e),
            },
        }
    }
    while gone.is_none() {
        let n = match s.sock.read(scratch) {
            Ok(0) => {
                gone = Some(None);
                break;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                gone = failed(e);
                break;
            }
        };
        stats.add_bytes(n);
        h.client
            .on_data(slot, &scratch[..n], now, &mut h.state, stats);
        // Edge-triggered: a short read means the socket is drained. A
        // connection the client gives up is closed by hls_sync.
        if n < scratch.len() {
            break;
        }
    }
    if let Some(reason) = gone {
        if let Some(mut s) = h.socks[slot as usize].take() {
            let _ = cx.poll.registry().deregister(&mut s.sock);
        }
        h.client.on_closed(slot, reason, now, &mut h.state, stats);
    }
}

/// Does what an HLS client asks after an event: closes connections it gave
/// up, opens one for a slot with a request waiting, writes requests,
/// queues its next deadline, and drops the player once it has ended.
fn hls_sync(
    cx: &mut Ctx<'_>,
    i: usize,
    entry: &mut Option<Player>,
    now: Instant,
    stats: &mut ThreadStats,
) {
    let Some(Player::Hls(h)) = entry else {
        return;
    };
    // A failure on one slot may queue a request on the other: two rounds.
    for _ in 0..2 {
        for slot in Slot::ALL {
            let k = slot as usize;
            if h.client.take_close(slot) {
                if let Some(mut s) = h.socks[k].take() {
                    let _ = cx.poll.registry().deregister(&mut s.sock);
                }
            }
            if h.client.out(slot).is_empty() {
                continue;
            }
            if h.socks[k].is_none() {
                let opened = TcpStream::connect(cx.addrs[0]).and_then(|mut sock| {
                    cx.poll.registry().register(
                        &mut sock,
                        Token(i * SLOTS + k),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    Ok(sock)
                });
                match opened {
                    Ok(sock) => {
                        h.socks[k] = Some(HlsSock {
                            sock,
                            connected: false,
                        })
                    }
                    Err(e) => {
                        let why = ClientError::Io(e).reason();
                        h.client
                            .on_closed(slot, Some(why), now, &mut h.state, stats);
                        continue;
                    }
                }
            }
            let Some(s) = h.socks[k].as_mut().filter(|s| s.connected) else {
                continue;
            };
            if let Err(e) = write_out(&mut s.sock, h.client.out(slot)) {
                if let Some(mut s) = h.socks[k].take() {
                    let _ = cx.poll.registry().deregister(&mut s.sock);
                }
                h.client
                    .on_closed(slot, Some(e.reason()), now, &mut h.state, stats);
            }
        }
    }
    if let Some(why) = h.client.ended() {
        if h.client.is_up() {
            stats.disconnected(why.to_string());
        } else {
            stats.connect_failed(why.to_string());
        }
        for s in h.socks.iter_mut() {
            if let Some(mut s) = s.take() {
                let _ = cx.poll.registry().deregister(&mut s.sock);
            }
        }
        *entry = None;
        return;
    }
    if let Some(d) = h.client.deadline() {
        if h.timer.map_or(true, |t| d < t) {
            cx.timers.push(Reverse((d, i)));
            h.timer = Some(d);
        }
    }
}

/// Writes what the socket takes of `out`; the rest waits for the next
/// writable event.
fn write_out(sock: &mut TcpStream, out: &mut BytesMut) -> Result<(), ClientError> {
    while !out.is_empty() {
        match sock.write(out) {
            Ok(0) => return Err(ClientError::Closed),
            Ok(n) => out.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Handles a readiness event: finish connecting, read everything there is,
/// feed it through the protocol, send what it answers.
fn service(c: &mut Conn, scratch: &mut [u8], stats: &mut ThreadStats) -> Result<(), ClientError> {
    if !c.connected {
        if let Some(e) = c.sock.take_error()? {
            return Err(e.into());
        }
        match c.sock.peer_addr() {
            Ok(_) => {
                c.connected = true;
                let _ = c.sock.set_nodelay(true);
                if c.wire.asks_on_connect() {
                    // The request is written at the end of this call.
                    c.state.play_sent = Instant::now();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    loop {
        let n = match c.sock.read(scratch) {
            Ok(0) => return Err(ClientError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        stats.add_bytes(n);
        c.wire.feed(&scratch[..n], &mut c.state, stats)?;
        if !c.playing && c.wire.is_active() {
            c.playing = true;
            if !c.wire.asks_on_connect() {
                c.state.play_sent = Instant::now();
            }
            stats.connected();
        }
        // Edge-triggered: a short read means the socket is drained.
        if n < scratch.len() {
            break;
        }
    }
    // A player's own output is tiny (handshake, commands, acks, requests,
    // pongs): written directly; whatever the socket does not take waits
    // for the next event.
    write_out(&mut c.sock, c.wire.out())
}

#[cfg(test)]
#[path = "playloop_tests.rs"]
mod tests;
