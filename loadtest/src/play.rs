//! Players: N play sessions (RTMP, HTTP-FLV, WebSocket-FLV or HLS) spread over
//! T threads (see `playloop`), and what each player measures of the stream
//! it receives, whatever the protocol that carried it.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cascade::protocol::flv::{parse_video, VideoPacket};
use cascade::protocol::message::type_id;

use crate::httpflv::HttpUrl;
use crate::rtmp::RtmpUrl;
use crate::stamp::{
    avc_layout, extract_sei, is_stamp_data, nal_length_size, parse_stamp_data, AvcLayout, Stamp,
};
use crate::stats::{Interval, ThreadStats};

/// Where players play from, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayTarget {
    Rtmp(RtmpUrl),
    /// `http://HOST:PORT/APP/NAME.flv`: one GET, the body is FLV.
    HttpFlv(HttpUrl),
    /// `ws://HOST:PORT/APP/NAME.flv`: binary messages carry FLV.
    WsFlv(HttpUrl),
    /// `http://HOST:PORT/APP/NAME/index.m3u8` (any path ending in
    /// `.m3u8`): (Low-Latency) HLS with fMP4 media, or ordinary HLS with
    /// MPEG-TS media read as opaque bytes; see `hls`.
    Hls(HttpUrl),
}

impl PlayTarget {
    pub fn parse(s: &str) -> Result<PlayTarget, String> {
        match s.split_once("://").map(|(scheme, _)| scheme) {
            Some("rtmp") => RtmpUrl::parse(s).map(PlayTarget::Rtmp),
            Some("http") => {
                let url = HttpUrl::parse(s, "http")?;
                let path = url.path.split(['?', '#']).next().unwrap_or("");
                Ok(if path.ends_with(".m3u8") {
                    PlayTarget::Hls(url)
                } else {
                    PlayTarget::HttpFlv(url)
                })
            }
            Some("ws") => HttpUrl::parse(s, "ws").map(PlayTarget::WsFlv),
            _ => Err(format!(
                "{s}: give an rtmp://, http://….flv (HTTP-FLV), http://….m3u8 (HLS) or ws:// (WebSocket-FLV) URL; TLS is not supported"
            )),
        }
    }

    pub fn socket_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match self {
            PlayTarget::Rtmp(u) => u.socket_addr(),
            PlayTarget::HttpFlv(u) | PlayTarget::WsFlv(u) | PlayTarget::Hls(u) => u.socket_addr(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PlayConfig {
    pub target: PlayTarget,
    /// More streams: player i plays `target_of(i)`, `target` first.
    pub more: Vec<PlayTarget>,
    pub players: u64,
    /// New players per second, over all threads.
    pub ramp: f64,
    /// How long each thread runs, from its start.
    pub duration: Duration,
    pub threads: usize,
    pub read_buf: usize,
    /// RTMP only.
    pub complex_handshake: bool,
    /// Latency is not recorded for this long after a player's first frame.
    pub warmup: Duration,
}

impl PlayConfig {
    /// The stream player `i` (counted over all threads) plays.
    pub fn target_of(&self, i: u64) -> &PlayTarget {
        match (i % (self.more.len() as u64 + 1)) as usize {
            0 => &self.target,
            k => &self.more[k - 1],
        }
    }
}

/// What a player thread tells the main thread.
pub enum ThreadMsg {
    Interval(Interval),
    Final(Box<ThreadStats>),
}

pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Starts the player threads; each sends an interval every second and its
/// totals at the end.
pub fn spawn_players(
    cfg: Arc<PlayConfig>,
    tx: Sender<ThreadMsg>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..cfg.threads.max(1))
        .map(|t| {
            let cfg = cfg.clone();
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("players-{t}"))
                .spawn(move || crate::playloop::run(t, cfg, tx))
                .expect("spawn player thread")
        })
        .collect()
}

/// What one player knows about its stream.
pub struct PlayerState {
    /// When the player asked for the stream (RTMP: play sent; HTTP and
    /// WebSocket: request sent); first-frame time counts from here.
    pub play_sent: Instant,
    nal_length_size: usize,
    seen_sequence_header: bool,
    started: bool,
    /// Unix micros after which latency samples count.
    steady_from: u64,
    last_seq: Option<u64>,
    warmup_us: u64,
    /// When the last coded video frame began to arrive.
    last_frame_at: Option<Instant>,
    /// The last video message's timestamp.
    last_ts: Option<u32>,
}

impl PlayerState {
    pub fn new(warmup: Duration) -> PlayerState {
        PlayerState {
            play_sent: Instant::now(),
            nal_length_size: 4,
            seen_sequence_header: false,
            started: false,
            steady_from: u64::MAX,
            last_seq: None,
            warmup_us: warmup.as_micros() as u64,
            last_frame_at: None,
            last_ts: None,
        }
    }

    /// One whole media or data message: an RTMP message's type and payload,
    /// or an FLV tag's body under the RTMP type of its tag type (the bytes
    /// are the same), so every protocol is measured alike.
    pub fn on_media(&mut self, type_id: u8, payload: &[u8], stats: &mut ThreadStats) {
        match type_id {
            type_id::VIDEO => self.on_video(payload, stats),
            type_id::DATA_AMF0 if is_stamp_data(payload) => {
                if let Some(s) = parse_stamp_data(payload) {
                    self.on_stamp(s, stats);
                }
            }
            _ => {}
        }
    }

    /// A video message body, or (RTMP) just its first bytes: all that is
    /// read of it is the FLV video header and the first NAL unit.
    pub fn on_video(&mut self, body: &[u8], stats: &mut ThreadStats) {
        match avc_layout(body) {
            AvcLayout::SequenceHeader { record } => {
                self.seen_sequence_header = true;
                if let Some(n) = body.get(record..).and_then(nal_length_size) {
                    self.nal_length_size = n;
                }
            }
            AvcLayout::Frames { nal, key } => {
                self.on_frame(key, stats);
                if let Some(s) = extract_sei(body, nal, self.nal_length_size) {
                    self.on_stamp(s, stats);
                }
            }
            AvcLayout::NotAvc => {
                if let Ok(tag) = parse_video(body) {
                    if tag.is_sequence_header() {
                        self.seen_sequence_header = true;
                    } else if tag.packet == VideoPacket::CodedFrames {
                        self.on_frame(tag.is_keyframe(), stats);
                    }
                }
            }
        }
    }

    /// The decoder configuration arrived (an HLS init segment's `avcC`, or
    /// the sample entry of another codec: `nal_length_size` is `None`).
    pub fn on_decoder_config(&mut self, nal_length_size: Option<usize>) {
        self.seen_sequence_header = true;
        if let Some(n) = nal_length_size {
            self.nal_length_size = n;
        }
    }

    /// A coded video frame (stamped or not) began to arrive.
    pub fn on_frame(&mut self, key: bool, stats: &mut ThreadStats) {
        stats.video_frames += 1;
        let now = Instant::now();
        if let Some(last) = self.last_frame_at.replace(now) {
            stats.gap((now - last).as_micros() as u64);
        }
        if self.started {
            return;
        }
        self.started = true;
        let us = self.play_sent.elapsed().as_micros() as u64;
        stats.first_frame(us, key && self.seen_sequence_header);
        self.steady_from = unix_micros() + self.warmup_us;
    }

    /// A video message's timestamp (RTMP or FLV): players must see the
    /// clock go forward whatever happens upstream (wrap-aware).
    pub fn on_video_timestamp(&mut self, ts: u32, stats: &mut ThreadStats) {
        if let Some(last) = self.last_ts.replace(ts) {
            if (ts.wrapping_sub(last) as i32) < 0 {
                stats.timestamps_backwards += 1;
            }
        }
    }

    /// The publisher's stamp of the frame just begun.
    pub fn on_stamp(&mut self, s: Stamp, stats: &mut ThreadStats) {
        let now = unix_micros();
        stats.frame(
            now.saturating_sub(s.micros),
            self.started && now >= self.steady_from,
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert!(matches!(
            PlayTarget::parse("rtmp://127.0.0.1/live/x"),
            Ok(PlayTarget::Rtmp(_))
        ));
        match PlayTarget::parse("http://127.0.0.1:8080/live/x.flv") {
            Ok(PlayTarget::HttpFlv(u)) => {
                assert_eq!((u.port, u.path.as_str()), (8080, "/live/x.flv"))
            }
            t => panic!("{t:?}"),
        }
        match PlayTarget::parse("http://127.0.0.1:8080/live/x/index.m3u8?token=a") {
            Ok(PlayTarget::Hls(u)) => assert_eq!(u.path, "/live/x/index.m3u8?token=a"),
            t => panic!("{t:?}"),
        }
        assert!(matches!(
            PlayTarget::parse("ws://127.0.0.1:8080/live/x.flv"),
            Ok(PlayTarget::WsFlv(_))
        ));
        assert!(PlayTarget::parse("https://127.0.0.1/live/x.flv").is_err());
        assert!(PlayTarget::parse("127.0.0.1/live/x").is_err());
    }
}
