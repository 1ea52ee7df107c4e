//! The publisher: one RTMP publish session sending a file or a synthetic
//! stream in real time, every video frame stamped at the moment it is sent.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncWriteRentExt, Splitable};

use cascade::protocol::chunk::RawMessage;
use cascade::protocol::message::{csid, type_id};
use cascade::protocol::session::MediaKind;

use crate::media::{FileLoop, GenParams, Generator, Source, Stamper};
use crate::play::unix_micros;
use crate::rtmp::{establish, read_some, ClientError, Role, RtmpUrl};
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

/// Publishes until the duration ends or the server drops us. `on_ready`
/// runs once the server accepted the publish.
pub async fn publish(cfg: PublishConfig, on_ready: impl FnOnce()) -> PublisherReport {
    let mut report = PublisherReport::default();
    if let Err(e) = publish_inner(&cfg, on_ready, &mut report).await {
        report.error = Some(e);
    }
    report
}

async fn publish_inner(
    cfg: &PublishConfig,
    on_ready: impl FnOnce(),
    report: &mut PublisherReport,
) -> Result<(), String> {
    let mut source = cfg.source.open()?;
    let mut ignore = |_: &RawMessage| {};
    let (stream, proto, mut rbuf) = establish(
        &cfg.url,
        Role::Publish,
        cfg.complex_handshake,
        16 * 1024,
        &mut ignore,
    )
    .await
    .map_err(|e| format!("publish {}: {e}", cfg.url.tc_url()))?;
    on_ready();
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

    let start = Instant::now();
    let end = cfg.duration.map(|d| start + d);
    let mut stamper = Stamper::default();
    let mut batch = Vec::with_capacity(8);
    let mut next = source.next_msg();
    loop {
        let due = start + Duration::from_millis(u64::from(next.timestamp));
        if end.is_some_and(|e| due >= e) {
            return Ok(());
        }
        sleep_until(due).await;
        if let Some(e) = closed.borrow().clone() {
            return Err(format!("server closed the publish: {e}"));
        }
        // Everything due by now goes out in one write.
        let now = Instant::now();
        report.max_late_ms = report
            .max_late_ms
            .max(now.saturating_duration_since(due).as_secs_f64() * 1000.0);
        let micros = unix_micros();
        loop {
            let msg = std::mem::replace(&mut next, source.next_msg());
            stamper.stamp(msg, micros, &mut batch);
            if start + Duration::from_millis(u64::from(next.timestamp)) > now {
                break;
            }
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
        report.stamped_frames = stamper.stamped();
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
