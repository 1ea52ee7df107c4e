//! The kernel floor: a minimal fan-out server. It accepts players, answers
//! just enough commands for them to play, and writes the same pre-serialized
//! chunk bytes of each message to every player socket: one `write` per
//! player per message and nothing else, so its CPU is what the kernel's TCP
//! work costs. A relay's cost is compared against it.
//!
//! Single-threaded, non-blocking std sockets, no event loop: media is due
//! every few milliseconds anyway, and new connections are polled between
//! messages.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use cascade::protocol::amf::{Amf0Value, AmfLimits};
use cascade::protocol::chunk::{encode_message, ChunkDecoder, ChunkLimits};
use cascade::protocol::flv::{parse_audio, parse_video};
use cascade::protocol::handshake::{HandshakeStatus, ServerHandshake};
use cascade::protocol::message::{type_id, Message, MessageWriter, UserControl};

use crate::media::{MediaMsg, Stamper};
use crate::play::unix_micros;
use crate::publish::{csid_for, SourceSpec};
use crate::stamp::avc_layout;

#[derive(Debug, Clone)]
pub struct FloorConfig {
    pub listen: SocketAddr,
    pub source: SourceSpec,
    pub max_players: usize,
    pub chunk_size: u32,
    /// A player whose unsent bytes exceed this is dropped.
    pub max_backlog: usize,
    pub duration: Option<Duration>,
}

/// The stream id every player gets from createStream.
const STREAM_ID: u32 = 1;

/// A connection still in handshake or command exchange.
struct Pending {
    sock: TcpStream,
    hs: ServerHandshake,
    handshaken: bool,
    rbuf: BytesMut,
    dec: ChunkDecoder,
    writer: MessageWriter,
    out: BytesMut,
    play: bool,
    /// Announced with the connect reply; media uses it too.
    chunk_size: u32,
}

struct Player {
    sock: TcpStream,
    /// Bytes a short write left behind, sent before anything new.
    backlog: VecDeque<Bytes>,
    backlog_len: usize,
    /// Joins at the next keyframe, like nginx-rtmp.
    waiting_key: bool,
}

enum Flow {
    Keep,
    Drop,
}

/// Header messages a joining player gets first.
#[derive(Default)]
struct Headers {
    metadata: Option<Bytes>,
    video: Option<Bytes>,
    audio: Option<Bytes>,
}

pub fn run_floor(cfg: FloorConfig) -> Result<(), String> {
    let listener =
        TcpListener::bind(cfg.listen).map_err(|e| format!("bind {}: {e}", cfg.listen))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let mut source = cfg.source.open()?;
    eprintln!("floor listening on {}", cfg.listen);
    let mut pending: Vec<Pending> = Vec::new();
    let mut players: Vec<Player> = Vec::new();
    let mut headers = Headers::default();
    let mut stamper = Stamper::default();
    let mut batch = Vec::with_capacity(4);
    let start = Instant::now();
    let mut next = source.next_msg();
    let mut dropped = 0u64;
    let mut last_log = start;
    loop {
        let now = Instant::now();
        if cfg.duration.is_some_and(|d| now - start >= d) {
            return Ok(());
        }
        accept_all(
            &listener,
            &mut pending,
            players.len(),
            cfg.max_players,
            cfg.chunk_size,
        );
        service_pending(&mut pending, &mut players, &headers);

        let due = start + Duration::from_millis(u64::from(next.timestamp));
        if due <= now {
            let msg = std::mem::replace(&mut next, source.next_msg());
            // Stamped with the time it was due, as a real-time publisher
            // sends it then: a message that waited for an earlier one's
            // fan-out counts that wait, as it does behind any relay.
            let late = now.saturating_duration_since(due).as_micros() as u64;
            stamper.stamp(msg, unix_micros().saturating_sub(late), &mut batch);
            for m in batch.drain(..) {
                let wire = serialize(&m, cfg.chunk_size);
                let key = m.type_id == type_id::VIDEO && is_key(&m.payload);
                remember_header(&mut headers, &m, &wire);
                players.retain_mut(|p| match fan_out(p, &wire, key, cfg.max_backlog) {
                    Flow::Keep => true,
                    Flow::Drop => {
                        dropped += 1;
                        false
                    }
                });
            }
            continue;
        }
        if now - last_log >= Duration::from_secs(5) {
            last_log = now;
            eprintln!(
                "floor: {} players, {} pending, {} dropped",
                players.len(),
                pending.len(),
                dropped
            );
        }
        let wait = if pending.is_empty() {
            Duration::from_millis(5)
        } else {
            Duration::from_millis(1)
        };
        std::thread::sleep((due - now).min(wait));
    }
}

fn is_key(body: &[u8]) -> bool {
    match avc_layout(body) {
        crate::stamp::AvcLayout::Frames { key, .. } => key,
        _ => parse_video(body).map(|t| t.is_keyframe()).unwrap_or(false),
    }
}

fn serialize(m: &MediaMsg, chunk_size: u32) -> Bytes {
    let mut out = BytesMut::new();
    encode_message(
        csid_for(m.type_id),
        m.timestamp,
        m.type_id,
        STREAM_ID,
        &m.payload,
        chunk_size,
        &mut out,
    );
    out.freeze()
}

fn remember_header(h: &mut Headers, m: &MediaMsg, wire: &Bytes) {
    match m.type_id {
        type_id::DATA_AMF0 if m.payload.get(3..13) == Some(&b"onMetaData"[..]) => {
            h.metadata = Some(wire.clone())
        }
        type_id::VIDEO if parse_video(&m.payload).is_ok_and(|t| t.is_sequence_header()) => {
            h.video = Some(wire.clone())
        }
        type_id::AUDIO if parse_audio(&m.payload).is_ok_and(|t| t.is_sequence_header) => {
            h.audio = Some(wire.clone())
        }
        _ => {}
    }
}

/// One write of the message's bytes (after any backlog).
fn fan_out(p: &mut Player, wire: &Bytes, key: bool, max_backlog: usize) -> Flow {
    if p.waiting_key {
        if !key {
            return Flow::Keep;
        }
        p.waiting_key = false;
    }
    if !p.backlog.is_empty() {
        if let Flow::Drop = drain_backlog(p) {
            return Flow::Drop;
        }
        if !p.backlog.is_empty() {
            p.backlog_len += wire.len();
            p.backlog.push_back(wire.clone());
            return if p.backlog_len > max_backlog {
                Flow::Drop
            } else {
                Flow::Keep
            };
        }
    }
    match p.sock.write(wire) {
        Ok(n) if n == wire.len() => Flow::Keep,
        Ok(n) => {
            p.backlog_len += wire.len() - n;
            p.backlog.push_back(wire.slice(n..));
            Flow::Keep
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            p.backlog_len += wire.len();
            p.backlog.push_back(wire.clone());
            Flow::Keep
        }
        Err(_) => Flow::Drop,
    }
}

fn drain_backlog(p: &mut Player) -> Flow {
    while let Some(front) = p.backlog.front_mut() {
        match p.sock.write(front) {
            Ok(n) => {
                p.backlog_len -= n;
                if n == front.len() {
                    p.backlog.pop_front();
                } else {
                    front.advance(n);
                    return Flow::Keep;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flow::Keep,
            Err(_) => return Flow::Drop,
        }
    }
    Flow::Keep
}

fn accept_all(
    listener: &TcpListener,
    pending: &mut Vec<Pending>,
    players: usize,
    max: usize,
    chunk_size: u32,
) {
    loop {
        match listener.accept() {
            Ok((sock, _)) => {
                if players + pending.len() >= max || sock.set_nonblocking(true).is_err() {
                    continue;
                }
                let _ = sock.set_nodelay(true);
                pending.push(Pending {
                    sock,
                    hs: ServerHandshake::new(),
                    handshaken: false,
                    rbuf: BytesMut::with_capacity(4096),
                    dec: ChunkDecoder::new(ChunkLimits::default()),
                    writer: MessageWriter::with_chunk_size(128),
                    out: BytesMut::new(),
                    play: false,
                    chunk_size,
                });
            }
            Err(_) => return,
        }
    }
}

fn service_pending(pending: &mut Vec<Pending>, players: &mut Vec<Player>, headers: &Headers) {
    let mut i = 0;
    while i < pending.len() {
        let p = &mut pending[i];
        let ok = step_pending(p, headers).is_ok();
        if !ok {
            pending.swap_remove(i);
            continue;
        }
        if p.play && p.out.is_empty() {
            let p = pending.swap_remove(i);
            players.push(Player {
                sock: p.sock,
                backlog: VecDeque::new(),
                backlog_len: 0,
                waiting_key: true,
            });
            continue;
        }
        i += 1;
    }
}

fn step_pending(p: &mut Pending, headers: &Headers) -> io::Result<()> {
    let mut tmp = [0u8; 4096];
    loop {
        match p.sock.read(&mut tmp) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => p.rbuf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    if !p.handshaken {
        match p
            .hs
            .feed(&mut p.rbuf, &mut p.out)
            .map_err(|e| bad(e.to_string()))?
        {
            HandshakeStatus::Done => p.handshaken = true,
            HandshakeStatus::InProgress => {}
        }
    }
    while p.handshaken && !p.play {
        let Some(raw) = p.dec.decode(&mut p.rbuf).map_err(|e| bad(e.to_string()))? else {
            break;
        };
        let Ok(Message::Command(c)) = Message::parse(&raw, &AmfLimits::default()) else {
            continue;
        };
        let tid = Amf0Value::Number(c.transaction_id);
        match c.name.as_str() {
            "connect" => {
                p.writer.window_ack_size(5_000_000, &mut p.out);
                p.writer.set_peer_bandwidth(5_000_000, 2, &mut p.out);
                p.writer.set_chunk_size(p.chunk_size, &mut p.out);
                let info = Amf0Value::object([
                    ("level", Amf0Value::String("status".into())),
                    (
                        "code",
                        Amf0Value::String("NetConnection.Connect.Success".into()),
                    ),
                    ("description", Amf0Value::String("floor".into())),
                    ("objectEncoding", Amf0Value::Number(0.0)),
                ]);
                let props =
                    Amf0Value::object([("fmsVer", Amf0Value::String("FMS/3,5,7,7009".into()))]);
                p.writer.command(
                    0,
                    &[Amf0Value::String("_result".into()), tid, props, info],
                    &mut p.out,
                );
            }
            "createStream" => {
                let v = [
                    Amf0Value::String("_result".into()),
                    tid,
                    Amf0Value::Null,
                    Amf0Value::Number(f64::from(STREAM_ID)),
                ];
                p.writer.command(0, &v, &mut p.out);
            }
            "play" => {
                p.writer
                    .user_control(UserControl::StreamBegin(STREAM_ID), &mut p.out);
                let info = Amf0Value::object([
                    ("level", Amf0Value::String("status".into())),
                    ("code", Amf0Value::String("NetStream.Play.Start".into())),
                    ("description", Amf0Value::String("floor".into())),
                ]);
                let v = [
                    Amf0Value::String("onStatus".into()),
                    Amf0Value::Number(0.0),
                    Amf0Value::Null,
                    info,
                ];
                p.writer.command(STREAM_ID, &v, &mut p.out);
                for h in [&headers.metadata, &headers.video, &headers.audio]
                    .into_iter()
                    .flatten()
                {
                    p.out.extend_from_slice(h);
                }
                p.play = true;
            }
            _ => {}
        }
    }
    while !p.out.is_empty() {
        match p.sock.write(&p.out) {
            Ok(n) => p.out.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
