//! One player thread: a plain edge-triggered epoll loop (mio) over its
//! players' sockets.
//!
//! Why not an async runtime here: the harness must cost far less than the
//! server it measures, and its cost is almost all kernel work per `recv`.
//! With edge triggering a short read proves the socket drained, so every
//! `recv` returns data (no extra call that ends in EAGAIN), and one
//! `epoll_wait` serves every ready player of the thread.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use cascade::protocol::message::type_id;

use crate::play::{PlayConfig, PlayerState, ThreadMsg};
use crate::rtmp::{is_media, ClientError, ClientProto, Role};
use crate::skim::{Skimmed, Skimmer};
use crate::stats::ThreadStats;

struct Conn {
    sock: TcpStream,
    proto: ClientProto,
    /// Only used during the handshake; the chunk stream goes to `skim`.
    rbuf: BytesMut,
    skim: Skimmer,
    connected: bool,
    /// Counted as up (play sent).
    playing: bool,
    state: PlayerState,
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
    let addr: SocketAddr = cfg.url.socket_addr()?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Option<Conn>> = Vec::new();
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
            return Ok(());
        }
        while next_player < cfg.players {
            let due = start + Duration::from_secs_f64(next_player as f64 / cfg.ramp.max(0.001));
            if due > now {
                break;
            }
            next_player += step;
            match start_player(&poll, addr, cfg, conns.len()) {
                Ok(c) => conns.push(Some(c)),
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
        match poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let Token(i) = ev.token();
            let Some(slot) = conns.get_mut(i) else {
                continue;
            };
            let Some(conn) = slot.as_mut() else { continue };
            if let Err(e) = service(conn, &mut scratch, stats) {
                if conn.playing {
                    stats.disconnected(e.reason());
                } else {
                    stats.connect_failed(e.reason());
                }
                let _ = poll.registry().deregister(&mut conn.sock);
                *slot = None;
            }
        }
    }
}

fn start_player(poll: &Poll, addr: SocketAddr, cfg: &PlayConfig, token: usize) -> io::Result<Conn> {
    let mut sock = TcpStream::connect(addr)?;
    poll.registry().register(
        &mut sock,
        Token(token),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    Ok(Conn {
        sock,
        proto: ClientProto::new(cfg.url.clone(), Role::Play, cfg.complex_handshake),
        rbuf: BytesMut::new(),
        skim: Skimmer::default(),
        connected: false,
        playing: false,
        state: PlayerState::new(cfg.warmup),
    })
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
        c.proto.count_received(n);
        let mut data = &scratch[..n];
        let mut leftover = None;
        if !c.proto.handshake_done() {
            c.rbuf.extend_from_slice(data);
            if !c.proto.feed_handshake(&mut c.rbuf)? {
                continue;
            }
            leftover = Some(c.rbuf.split());
            data = &[];
        }
        let (proto, state) = (&mut c.proto, &mut c.state);
        let mut failed = None;
        let mut on = |m: Skimmed<'_>| match m {
            Skimmed::Media {
                type_id: type_id::VIDEO,
                head,
                ..
            } => state.on_video(head, stats),
            Skimmed::Media { .. } => {}
            Skimmed::Full(raw) if is_media(raw.type_id) => {
                state.on_media(raw.type_id, &raw.payload, stats)
            }
            Skimmed::Full(raw) => {
                if let Err(e) = proto.on_message(raw) {
                    failed.get_or_insert(e);
                }
            }
        };
        if let Some(l) = &leftover {
            c.skim.push(l, &mut on)?;
        }
        c.skim.push(data, &mut on)?;
        if let Some(e) = failed {
            return Err(e);
        }
        if !c.playing && c.proto.is_active() {
            c.playing = true;
            c.state.play_sent = Instant::now();
            stats.connected();
        }
        // Edge-triggered: a short read means the socket is drained.
        if n < scratch.len() {
            break;
        }
    }
    // A player's own output is tiny (handshake, commands, acks): written
    // directly; whatever the socket does not take waits for the next event.
    while !c.proto.out.is_empty() {
        match c.sock.write(&c.proto.out) {
            Ok(0) => return Err(ClientError::Closed),
            Ok(n) => c.proto.out.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
