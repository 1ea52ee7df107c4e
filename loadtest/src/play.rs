//! Players: N RTMP play sessions spread over T threads, each thread a monoio
//! runtime whose players share one [`ThreadStats`].

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cascade::protocol::chunk::RawMessage;
use cascade::protocol::flv::{parse_video, VideoPacket};
use cascade::protocol::message::type_id;

use crate::rtmp::{establish, flush, read_some, ClientError, RtmpUrl, Role};
use crate::runtime::{run_on_runtime, Driver};
use crate::stamp::{avc_layout, extract_sei, is_stamp_data, nal_length_size, parse_stamp_data, AvcLayout, Stamp};
use crate::stats::{Interval, ThreadStats};

#[derive(Debug, Clone)]
pub struct PlayConfig {
    pub url: RtmpUrl,
    pub players: u64,
    /// New players per second, over all threads.
    pub ramp: f64,
    /// How long each thread runs, from its start.
    pub duration: Duration,
    pub threads: usize,
    pub read_buf: usize,
    pub complex_handshake: bool,
    /// Latency is not recorded for this long after a player's first frame.
    pub warmup: Duration,
    pub driver: Driver,
}

/// What a player thread tells the main thread.
pub enum ThreadMsg {
    Interval(Interval),
    Final(Box<ThreadStats>),
}

pub fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Starts the player threads; each sends an interval every second and its
/// totals at the end.
pub fn spawn_players(cfg: Arc<PlayConfig>, tx: Sender<ThreadMsg>) -> Vec<std::thread::JoinHandle<()>> {
    (0..cfg.threads.max(1))
        .map(|t| {
            let cfg = cfg.clone();
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("players-{t}"))
                .spawn(move || {
                    let driver = cfg.driver;
                    run_on_runtime(driver, move || thread_main(t, cfg, tx));
                })
                .expect("spawn player thread")
        })
        .collect()
}

async fn thread_main(t: usize, cfg: Arc<PlayConfig>, tx: Sender<ThreadMsg>) {
    let start = Instant::now();
    let stats = Rc::new(RefCell::new(ThreadStats::default()));
    {
        let cfg = cfg.clone();
        let stats = stats.clone();
        monoio::spawn(async move {
            let step = cfg.threads.max(1) as u64;
            let mut i = t as u64;
            while i < cfg.players {
                let due = start + Duration::from_secs_f64(i as f64 / cfg.ramp.max(0.001));
                sleep_until(due).await;
                monoio::spawn(player(cfg.clone(), stats.clone()));
                i += step;
            }
        });
    }
    let end = start + cfg.duration;
    let mut second = 0;
    loop {
        second += 1;
        let tick = start + Duration::from_secs(second);
        if tick > end {
            break;
        }
        sleep_until(tick).await;
        let iv = stats.borrow_mut().take_interval(second);
        if tx.send(ThreadMsg::Interval(iv)).is_err() {
            return;
        }
    }
    sleep_until(end).await;
    let totals = stats.borrow().clone();
    let _ = tx.send(ThreadMsg::Final(Box::new(totals)));
}

pub async fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        monoio::time::sleep(at - now).await;
    }
}

/// What one player knows about its stream.
struct PlayerState {
    play_sent: Instant,
    nal_length_size: usize,
    seen_sequence_header: bool,
    started: bool,
    /// Unix micros after which latency samples count.
    steady_from: u64,
    last_seq: Option<u64>,
    warmup_us: u64,
}

impl PlayerState {
    fn on_message(&mut self, raw: &RawMessage, stats: &mut ThreadStats) {
        match raw.type_id {
            type_id::VIDEO => self.on_video(&raw.payload, stats),
            type_id::DATA_AMF0 if is_stamp_data(&raw.payload) => {
                if let Some(s) = parse_stamp_data(&raw.payload) {
                    self.on_stamp(s, stats);
                }
            }
            _ => {}
        }
    }

    fn on_video(&mut self, body: &[u8], stats: &mut ThreadStats) {
        match avc_layout(body) {
            AvcLayout::SequenceHeader { record } => {
                self.seen_sequence_header = true;
                if let Some(n) = body.get(record..).and_then(nal_length_size) {
                    self.nal_length_size = n;
                }
            }
            AvcLayout::Frames { nal, key } => {
                self.first_frame(key, stats);
                if let Some(s) = extract_sei(body, nal, self.nal_length_size) {
                    self.on_stamp(s, stats);
                }
            }
            AvcLayout::NotAvc if !self.started => {
                if let Ok(tag) = parse_video(body) {
                    if tag.is_sequence_header() {
                        self.seen_sequence_header = true;
                    } else if tag.packet == VideoPacket::CodedFrames {
                        self.first_frame(tag.is_keyframe(), stats);
                    }
                }
            }
            AvcLayout::NotAvc => {}
        }
    }

    fn first_frame(&mut self, key: bool, stats: &mut ThreadStats) {
        if self.started {
            return;
        }
        self.started = true;
        let us = self.play_sent.elapsed().as_micros() as u64;
        stats.first_frame(us, key && self.seen_sequence_header);
        self.steady_from = unix_micros() + self.warmup_us;
    }

    fn on_stamp(&mut self, s: Stamp, stats: &mut ThreadStats) {
        let now = unix_micros();
        stats.frame(now.saturating_sub(s.micros), self.started && now >= self.steady_from);
        match self.last_seq {
            Some(last) if s.seq > last + 1 => stats.lost += s.seq - last - 1,
            Some(last) if s.seq <= last => {
                stats.reordered += 1;
                return;
            }
            _ => {}
        }
        self.last_seq = Some(s.seq);
    }
}

async fn player(cfg: Arc<PlayConfig>, stats: Rc<RefCell<ThreadStats>>) {
    let mut ignore = |_: &RawMessage| {};
    let est = establish(&cfg.url, Role::Play, cfg.complex_handshake, cfg.read_buf, &mut ignore).await;
    let (mut stream, mut proto, mut rbuf) = match est {
        Ok(v) => v,
        Err(e) => {
            stats.borrow_mut().connect_failed(e.reason());
            return;
        }
    };
    stats.borrow_mut().connected();
    let mut state = PlayerState {
        play_sent: Instant::now(),
        nal_length_size: 4,
        seen_sequence_header: false,
        started: false,
        steady_from: u64::MAX,
        last_seq: None,
        warmup_us: cfg.warmup.as_micros() as u64,
    };
    let result: Result<(), ClientError> = async {
        loop {
            let (res, b) = read_some(&mut stream, rbuf, cfg.read_buf).await;
            rbuf = b;
            let n = res?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            let mut st = stats.borrow_mut();
            st.add_bytes(n);
            proto.feed(&mut rbuf, n, &mut |raw: &RawMessage| state.on_message(raw, &mut st))?;
            drop(st);
            flush(&mut stream, &mut proto).await?;
        }
    }
    .await;
    if let Err(e) = result {
        stats.borrow_mut().disconnected(e.reason());
    }
}
