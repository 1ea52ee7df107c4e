//! The publisher: one RTMP publish session sending a file or a synthetic
//! stream in real time, every video frame stamped at the moment it is sent.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncWriteRent, AsyncWriteRentExt, Splitable};

use cascade::protocol::chunk::RawMessage;
use cascade::protocol::message::{csid, type_id};
use cascade::protocol::session::MediaKind;

use bytes::BytesMut;

use crate::media::{is_keyframe, FileLoop, GenParams, Generator, MediaMsg, Source, Stamper};
use crate::play::unix_micros;
use crate::rtmp::{establish, read_some, ClientError, ClientProto, Role, RtmpUrl};
use crate::stats::PublisherReport;

#[derive(Debug, Clone)]
pub enum SourceSpec {
    File(String),
    Generate(GenParams),
}

impl SourceSpec {
    pub fn open(&self) -> Result<Source, String> {
        Ok(match self {
            SourceSpec::File(p) => Source::File(FileLoop::load(p)?),
            SourceSpec::Generate(g) => Source::Gen(Generator::new(*g)),
        })
    }
}

#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub url: RtmpUrl,
    pub source: SourceSpec,
    /// Stop after this long; `None` runs until the process ends.
    pub duration: Option<Duration>,
    pub complex_handshake: bool,
    /// Other servers (`host:port`) to move to, in turn, when the server
    /// asks us to reconnect (a drain's ReconnectRequest) or drops us: what
    /// an encoder behind a load balancer does. Empty: a drop ends the run.
    pub move_to: Vec<String>,
}
/// Chunk stream a media message goes out on.
pub fn csid_for(type_id: u8) -> u32 {
    match type_id {
        type_id::AUDIO => csid::AUDIO,
        type_id::VIDEO => csid::VIDEO,
        _ => csid::DATA,
    }
}

/// What a message of `type_id` is to the session; `None` for types a
/// publisher has no business sending.
fn media_kind(type_id: u8) -> Option<MediaKind> {
    match type_id {
        type_id::AUDIO => Some(MediaKind::Audio),
        type_id::VIDEO => Some(MediaKind::Video),
        // The session wraps an `onMetaData` body in `@setDataFrame`.
        type_id::DATA_AMF0 => Some(MediaKind::Data),
        _ => None,
    }
}

/// Publishes until the duration ends or the server drops us (and no
/// other server takes us). `on_ready` runs once the first server accepted
/// the publish.
pub async fn publish(cfg: PublishConfig, on_ready: impl FnOnce()) -> PublisherReport {
    let mut report = PublisherReport::default();
    if let Err(e) = publish_inner(&cfg, on_ready, &mut report).await {
        report.error = Some(e);
    }
    report
}

/// What carries over from one server to the next when the publisher
/// moves: the source, its real-time schedule and the stamp sequence, so
/// players count a move as a gap, not as lost frames.
struct Feed {
    source: Source,
    stamper: Stamper,
    next: MediaMsg,
    start: Instant,
    end: Option<Instant>,
    /// After a move: send the headers again, then resume on a keyframe.
    resuming: bool,
}

/// How long a publisher keeps trying other servers before it gives up.
const MOVE_GIVE_UP: Duration = Duration::from_secs(20);

async fn publish_inner(
    cfg: &PublishConfig,
    on_ready: impl FnOnce(),
    report: &mut PublisherReport,
) -> Result<(), String> {
    let mut source = cfg.source.open()?;
    let next = source.next_msg();
    let start = Instant::now();
    let mut feed = Feed {
        source,
        stamper: Stamper::default(),
        next,
        start,
        end: cfg.duration.map(|d| start + d),
        resuming: false,
    };
    let mut hosts = vec![cfg.url.clone()];
    for h in &cfg.move_to {
        hosts.push(cfg.url.with_authority(h)?);
    }
    let mut at = 0;
    let mut on_ready = Some(on_ready);
    let mut failing_since: Option<Instant> = None;
    loop {
        let url = &hosts[at];
        let err = match connect(cfg, url).await {
            Ok(conn) => {
                failing_since = None;
                if let Some(f) = on_ready.take() {
                    f();
                }
                match send(conn, &mut feed, report).await {
                    Ok(()) => return Ok(()),
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        let now = Instant::now();
        let since = *failing_since.get_or_insert(now);
        if hosts.len() < 2 || feed.end.is_some_and(|e| now >= e) || now - since > MOVE_GIVE_UP {
            return Err(err);
        }
        at = (at + 1) % hosts.len();
        report.moves += 1;
        eprintln!(
            "publish {}/{}: {err}; moving to {}",
            url.app,
            url.name,
            hosts[at].tc_url()
        );
        feed.resuming = true;
        monoio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Conn = (monoio::net::TcpStream, ClientProto, BytesMut);

async fn connect(cfg: &PublishConfig, url: &RtmpUrl) -> Result<Conn, String> {
    let mut ignore = |_: &RawMessage| {};
    establish(
        url,
        Role::Publish,
        cfg.complex_handshake,
        16 * 1024,
        &mut ignore,
    )
    .await
    .map_err(|e| format!("publish {}: {e}", url.tc_url()))
}

/// Sends the feed on one connection until the duration ends (`Ok`) or
/// the server closes or asks us to go (`Err`).
async fn send(conn: Conn, feed: &mut Feed, report: &mut PublisherReport) -> Result<(), String> {
    let (stream, proto, mut rbuf) = conn;
    let (mut rd, mut wr) = stream.into_split();

    // The reader feeds the session; acknowledgements and ping answers it
    // queues go out with the next media batch (never more than a frame
    // away), in the session's order.
    let proto = Rc::new(RefCell::new(proto));
    let closed: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    {
        let proto = proto.clone();
        let closed = closed.clone();
        monoio::spawn(async move {
            let res: Result<(), ClientError> = async {
                loop {
                    let (res, b) = read_some(&mut rd, rbuf, 16 * 1024).await;
                    rbuf = b;
                    let n = res?;
                    if n == 0 {
                        return Err(ClientError::Closed);
                    }
                    proto
                        .borrow_mut()
                        .feed(&mut rbuf, n, &mut |_: &RawMessage| {})?;
                }
            }
            .await;
            if let Err(e) = res {
                *closed.borrow_mut() = Some(e.to_string());
            }
        });
    }
    let res = send_loop(&proto, &closed, &mut wr, feed, report).await;
    if res.is_err() {
        // Leave for good: our FIN makes the server close its side, which
        // ends the reader (if the server has not already) and frees the socket.
        let _ = wr.shutdown().await;
    }
    res
}

async fn send_loop(
    proto: &Rc<RefCell<ClientProto>>,
    closed: &Rc<RefCell<Option<String>>>,
    wr: &mut monoio::net::tcp::TcpOwnedWriteHalf,
    feed: &mut Feed,
    report: &mut PublisherReport,
) -> Result<(), String> {
    let mut batch = Vec::with_capacity(8);
    let mut await_key = false;
    if std::mem::take(&mut feed.resuming) {
        // A new server knows nothing of the stream: headers first, at the
        // current time, then frames from the next keyframe on.
        let ts = feed.next.timestamp;
        for mut h in feed.source.headers() {
            h.timestamp = ts;
            batch.push(h);
        }
        await_key = true;
    }
    loop {
        let due = feed.start + Duration::from_millis(u64::from(feed.next.timestamp));
        if feed.end.is_some_and(|e| due >= e) {
            return Ok(());
        }
        if batch.is_empty() {
            sleep_until(due).await;
        }
        if let Some(e) = closed.borrow().clone() {
            return Err(format!("server closed the publish: {e}"));
        }
        // Everything due by now goes out in one write.
        let now = Instant::now();
        report.max_late_ms = report
            .max_late_ms
            .max(now.saturating_duration_since(due).as_secs_f64() * 1000.0);
        let micros = unix_micros();
        while feed.start + Duration::from_millis(u64::from(feed.next.timestamp)) <= now {
            let msg = std::mem::replace(&mut feed.next, feed.source.next_msg());
            if await_key {
                if !is_keyframe(&msg) {
                    continue;
                }
                await_key = false;
            }
            feed.stamper.stamp(msg, micros, &mut batch);
        }
        let wbuf = {
            let mut proto = proto.borrow_mut();
            for m in batch.drain(..) {
                if let Some(kind) = media_kind(m.type_id) {
                    proto.send_media(kind, m.timestamp, &m.payload);
                    report.messages += 1;
                }
            }
            proto.out.split().freeze()
        };
        report.bytes += wbuf.len() as u64;
        report.stamped_frames = feed.stamper.stamped();
        let (res, _) = wr.write_all(wbuf).await;
        res.map_err(|e| format!("publish write: {e}"))?;
    }
}

pub async fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        monoio::time::sleep(at - now).await;
    }
}
