//! Measurements: per-thread counters and histograms, the once-a-second
//! intervals the threads send to the main thread, and the final report.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency and first-frame times are kept in microseconds, up to 10 minutes.
const HIST_MAX_US: u64 = 600_000_000;

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static histogram bounds are valid")
}

fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, HIST_MAX_US));
}

/// Everything one player thread measures. Shared by its players (one
/// runtime, one thread), so no locking.
#[derive(Debug, Clone)]
pub struct ThreadStats {
    pub latency: Histogram<u64>,
    pub first_frame: Histogram<u64>,
    pub bytes: u64,
    pub players_up: u64,
    pub players_connected: u64,
    pub good_starts: u64,
    pub bad_starts: u64,
    /// Stamped frames: each one a latency sample (during warm-up too).
    pub frames: u64,
    /// Coded video frames received, stamped or not.
    pub video_frames: u64,
    pub lost: u64,
    pub reordered: u64,
    /// Longest wait between two video frames of one player, once playing.
    pub max_gap_us: u64,
    /// Video timestamps lower than the one before, on one player.
    pub timestamps_backwards: u64,
    pub disconnects: BTreeMap<String, u64>,
    pub connect_failures: BTreeMap<String, u64>,
    /// HLS players' requests, failed requests by reason, and the failed
    /// ones made while playing (after the first playlist: a 404 before the
    /// stream exists is a wait, not a fault).
    pub requests: u64,
    pub request_errors: BTreeMap<String, u64>,
    pub request_errors_playing: u64,
    /// HLS players' stalls: no new video (MPEG-TS: no media bytes) for
    /// longer than the stall bound while playing, or a jump to the live
    /// edge.
    pub stalls: u64,
    /// HLS players' MPEG-TS segments read whole (opaque media: bytes and
    /// segments are counted, no frames).
    pub ts_segments: u64,
    /// Interval parts, reset by [`ThreadStats::take_interval`].
    iv_latency: Histogram<u64>,
    iv_bytes: u64,
    iv_errors: u64,
}

impl Default for ThreadStats {
    fn default() -> Self {
        ThreadStats {
            latency: new_hist(),
            first_frame: new_hist(),
            bytes: 0,
            players_up: 0,
            players_connected: 0,
            good_starts: 0,
            bad_starts: 0,
            frames: 0,
            video_frames: 0,
            lost: 0,
            reordered: 0,
            max_gap_us: 0,
            timestamps_backwards: 0,
            disconnects: BTreeMap::new(),
            connect_failures: BTreeMap::new(),
            requests: 0,
            request_errors: BTreeMap::new(),
            request_errors_playing: 0,
            stalls: 0,
            ts_segments: 0,
            iv_latency: new_hist(),
            iv_bytes: 0,
            iv_errors: 0,
        }
    }
}

/// One thread's second.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Seconds since the thread started (1 for the first interval).
    pub second: u64,
    pub players_up: u64,
    pub bytes: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
}

impl ThreadStats {
    pub fn add_bytes(&mut self, n: usize) {
        self.bytes += n as u64;
        self.iv_bytes += n as u64;
    }

    /// One stamped frame; `steady` is false during a player's warm-up (a
    /// GOP cache replays old frames whose latency means nothing).
    pub fn frame(&mut self, latency_us: u64, steady: bool) {
        self.frames += 1;
        if steady {
            record(&mut self.latency, latency_us);
            record(&mut self.iv_latency, latency_us);
        }
    }

    /// Time between two video frames of one player.
    pub fn gap(&mut self, us: u64) {
        self.max_gap_us = self.max_gap_us.max(us);
    }

    pub fn first_frame(&mut self, us: u64, good_start: bool) {
        record(&mut self.first_frame, us);
        if good_start {
            self.good_starts += 1;
        } else {
            self.bad_starts += 1;
        }
    }

    pub fn connected(&mut self) {
        self.players_up += 1;
        self.players_connected += 1;
    }

    pub fn disconnected(&mut self, reason: String) {
        self.players_up = self.players_up.saturating_sub(1);
        self.iv_errors += 1;
        *self.disconnects.entry(reason).or_default() += 1;
    }

    pub fn connect_failed(&mut self, reason: String) {
        self.iv_errors += 1;
        *self.connect_failures.entry(reason).or_default() += 1;
    }

    /// An HLS request that failed (non-2xx, IO error, timeout, a body
    /// that does not parse); `playing`: the player was already up.
    pub fn request_failed(&mut self, reason: String, playing: bool) {
        self.iv_errors += 1;
        if playing {
            self.request_errors_playing += 1;
        }
        *self.request_errors.entry(reason).or_default() += 1;
    }

    pub fn take_interval(&mut self, second: u64) -> Interval {
        let iv = Interval {
            second,
            players_up: self.players_up,
            bytes: self.iv_bytes,
            errors: self.iv_errors,
            latency: self.iv_latency.clone(),
        };
        self.iv_latency.reset();
        self.iv_bytes = 0;
        self.iv_errors = 0;
        iv
    }

    /// Adds another thread's totals (interval parts are not merged).
    pub fn merge(&mut self, o: &ThreadStats) {
        let _ = self.latency.add(&o.latency);
        let _ = self.first_frame.add(&o.first_frame);
        self.bytes += o.bytes;
        self.players_up += o.players_up;
        self.players_connected += o.players_connected;
        self.good_starts += o.good_starts;
        self.bad_starts += o.bad_starts;
        self.frames += o.frames;
        self.video_frames += o.video_frames;
        self.lost += o.lost;
        self.reordered += o.reordered;
        self.max_gap_us = self.max_gap_us.max(o.max_gap_us);
        self.timestamps_backwards += o.timestamps_backwards;
        self.requests += o.requests;
        self.request_errors_playing += o.request_errors_playing;
        self.stalls += o.stalls;
        self.ts_segments += o.ts_segments;
        for (k, v) in &o.request_errors {
            *self.request_errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.disconnects {
            *self.disconnects.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.connect_failures {
            *self.connect_failures.entry(k.clone()).or_default() += v;
        }
    }
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

pub fn summarize(h: &Histogram<u64>) -> Summary {
    if h.is_empty() {
        return Summary::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Summary {
        count: h.len(),
        mean: h.mean() / 1000.0,
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

/// One second of the whole run, all threads merged.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Point {
    pub t_s: u64,
    pub players: u64,
    pub mbit_s: f64,
    /// Latency samples this second; with none the percentiles are 0 and
    /// mean unknown.
    pub latency_samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
}

/// Merges the intervals the threads sent during one second.
pub fn merge_intervals(t_s: u64, seconds: f64, ivs: &[Interval]) -> Point {
    let mut h = new_hist();
    let mut p = Point {
        t_s,
        ..Point::default()
    };
    let mut bytes = 0;
    for iv in ivs {
        let _ = h.add(&iv.latency);
        p.players += iv.players_up;
        p.errors += iv.errors;
        bytes += iv.bytes;
    }
    p.mbit_s = bytes as f64 * 8.0 / 1e6 / seconds.max(1e-3);
    let s = summarize(&h);
    p.latency_samples = s.count;
    p.p50_ms = s.p50;
    p.p99_ms = s.p99;
    p.max_ms = s.max;
    p
}

/// What the publisher did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PublisherReport {
    pub messages: u64,
    pub bytes: u64,
    pub stamped_frames: u64,
    /// Worst lateness of a send against its real-time schedule.
    pub max_late_ms: f64,
    /// Times the publisher moved to another server (see `--move-to`).
    pub moves: u64,
    pub error: Option<String>,
}

/// The JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub players_target: u64,
    pub threads: usize,
    pub duration_s: f64,
    pub players_connected: u64,
    pub players_up_at_end: u64,
    pub bytes_received: u64,
    /// Mean over the run after the ramp (all of it if the ramp never ended).
    pub mbit_s_steady: f64,
    pub mbit_s_mean: f64,
    /// Stamped frames received.
    pub frames: u64,
    /// Coded video frames received, stamped or not.
    pub video_frames: u64,
    pub lost_frames: u64,
    pub reordered_frames: u64,
    /// Longest time between two video frames of one player.
    pub max_gap_ms: f64,
    /// Video timestamps that went backwards on a player.
    pub timestamps_backwards: u64,
    /// Null when no stamped frame was measured (a stream without the
    /// publisher's stamps): unknown, not zero.
    pub latency_ms: Option<Summary>,
    pub first_frame_ms: Summary,
    /// First coded frame was a keyframe preceded by a sequence header.
    pub good_starts: u64,
    pub bad_starts: u64,
    pub disconnects: BTreeMap<String, u64>,
    pub connect_failures: BTreeMap<String, u64>,
    pub publisher: Option<PublisherReport>,
    /// HLS players only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hls: Option<HlsReport>,
    pub timeline: Vec<Point>,
}

/// What only HLS players measure.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HlsReport {
    pub requests: u64,
    /// No new video for longer than the stall bound while playing (1 s
    /// with parts; 1 s + the target duration when fetching whole
    /// segments), or a jump to the live edge.
    pub stalls: u64,
    /// Failed requests by reason: `http:STATUS`, `io:KIND`, `timeout`,
    /// `closed`, `playlist`, `init`, `fmp4`, `ts`.
    pub request_errors: BTreeMap<String, u64>,
    /// Of those, the ones made after the player's first playlist.
    pub request_errors_playing: u64,
    /// MPEG-TS segments read whole: ordinary HLS whose media is counted as
    /// bytes, with no frames, latency or first frame.
    pub ts_segments: u64,
}

impl Report {
    /// Why this run should not pass a gate (CI, a capacity check): every
    /// lost frame, bad start, player that never connected or left early.
    pub fn gate_failures(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.lost_frames > 0 {
            why.push(format!("{} frames lost", self.lost_frames));
        }
        if self.timestamps_backwards > 0 {
            why.push(format!(
                "{} video timestamps went backwards",
                self.timestamps_backwards
            ));
        }
        if self.bad_starts > 0 {
            why.push(format!("{} bad starts", self.bad_starts));
        }
        if self.players_connected < self.players_target {
            why.push(format!(
                "{} of {} players connected",
                self.players_connected, self.players_target
            ));
        }
        if self.players_up_at_end < self.players_connected {
            why.push(format!(
                "{} players disconnected early",
                self.players_connected - self.players_up_at_end
            ));
        }
        if !self.connect_failures.is_empty() {
            why.push(format!("connect failures {:?}", self.connect_failures));
        }
        if let Some(h) = &self.hls {
            if h.stalls > 0 {
                why.push(format!("{} stalls", h.stalls));
            }
            if h.request_errors_playing > 0 {
                why.push(format!(
                    "{} requests failed while playing {:?}",
                    h.request_errors_playing, h.request_errors
                ));
            }
        }
        why
    }

    #[allow(clippy::too_many_arguments)] // one call site, all named there
    pub fn build(
        url: &str,
        players_target: u64,
        threads: usize,
        duration_s: f64,
        ramp_end_s: f64,
        totals: &ThreadStats,
        timeline: Vec<Point>,
        publisher: Option<PublisherReport>,
        hls: bool,
    ) -> Report {
        let steady: Vec<f64> = timeline
            .iter()
            .filter(|p| p.t_s as f64 > ramp_end_s + 1.0)
            .map(|p| p.mbit_s)
            .collect();
        let all: Vec<f64> = timeline.iter().map(|p| p.mbit_s).collect();
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        Report {
            url: url.to_string(),
            players_target,
            threads,
            duration_s,
            players_connected: totals.players_connected,
            players_up_at_end: totals.players_up,
            bytes_received: totals.bytes,
            mbit_s_steady: if steady.is_empty() {
                mean(&all)
            } else {
                mean(&steady)
            },
            mbit_s_mean: totals.bytes as f64 * 8.0 / 1e6 / duration_s.max(1e-3),
            frames: totals.frames,
            video_frames: totals.video_frames,
            lost_frames: totals.lost,
            reordered_frames: totals.reordered,
            max_gap_ms: totals.max_gap_us as f64 / 1000.0,
            timestamps_backwards: totals.timestamps_backwards,
            latency_ms: (!totals.latency.is_empty()).then(|| summarize(&totals.latency)),
            first_frame_ms: summarize(&totals.first_frame),
            good_starts: totals.good_starts,
            bad_starts: totals.bad_starts,
            disconnects: totals.disconnects.clone(),
            connect_failures: totals.connect_failures.clone(),
            publisher,
            hls: hls.then(|| HlsReport {
                requests: totals.requests,
                stalls: totals.stalls,
                request_errors: totals.request_errors.clone(),
                request_errors_playing: totals.request_errors_playing,
                ts_segments: totals.ts_segments,
            }),
            timeline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sums_counts_and_histograms() {
        let mut a = ThreadStats::default();
        let mut b = ThreadStats::default();
        a.connected();
        b.connected();
        b.connected();
        a.add_bytes(1000);
        b.add_bytes(500);
        for us in [1_000, 2_000, 3_000] {
            a.frame(us, true);
        }
        b.frame(100_000, true);
        b.frame(999_999, false);
        b.disconnected("closed".into());
        a.disconnected("closed".into());
        a.first_frame(500_000, true);
        b.first_frame(700_000, false);
        let mut t = ThreadStats::default();
        t.merge(&a);
        t.merge(&b);
        assert_eq!(t.players_connected, 3);
        assert_eq!(t.players_up, 1);
        assert_eq!(t.bytes, 1500);
        assert_eq!(t.frames, 5);
        assert_eq!(t.latency.len(), 4);
        assert_eq!(t.disconnects["closed"], 2);
        assert_eq!((t.good_starts, t.bad_starts), (1, 1));
        let s = summarize(&t.latency);
        assert!((s.p50 - 2.0).abs() < 0.01, "{s:?}");
        assert!((s.max - 100.0).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn intervals_reset_and_merge_per_second() {
        let mut a = ThreadStats::default();
        a.connected();
        a.add_bytes(125_000);
        a.frame(10_000, true);
        let iv1 = a.take_interval(1);
        let iv2 = a.take_interval(2);
        assert_eq!((iv1.bytes, iv2.bytes), (125_000, 0));
        assert!(iv2.latency.is_empty());
        let p = merge_intervals(3, 1.0, &[iv1.clone(), iv1]);
        assert_eq!(p.players, 2);
        assert!((p.mbit_s - 2.0).abs() < 1e-9);
        assert!((p.p50_ms - 10.0).abs() < 0.05);
    }

    #[test]
    fn empty_summary_is_zero() {
        assert_eq!(summarize(&new_hist()), Summary::default());
    }
}
