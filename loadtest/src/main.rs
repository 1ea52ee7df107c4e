//! cascade-loadtest: publish, play (RTMP, HTTP-FLV, WebSocket-FLV or HLS), both
//! at once, or be the kernel floor.

mod floor;
mod flvstream;
mod fmp4;
mod hls;
mod hls_steps;
mod httpflv;
mod m3u8;
mod media;
mod play;
mod playloop;
mod plot;
mod publish;
mod rtmp;
mod runtime;
mod skim;
mod stamp;
mod stats;
mod ts;
mod wsflv;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use media::GenParams;
use play::{spawn_players, PlayConfig, PlayTarget, ThreadMsg};
use publish::{publish, PublishConfig, SourceSpec};
use rtmp::RtmpUrl;
use runtime::{run_on_runtime, Driver};
use stats::{merge_intervals, Interval, Point, PublisherReport, Report, ThreadStats};

#[derive(Parser)]
#[command(
    name = "cascade-loadtest",
    about = "Live-streaming load harness: RTMP publishers; RTMP, HTTP-FLV, WebSocket-FLV and (LL-)HLS players; latency stamps; a kernel-floor server"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Publish a looped FLV file or a synthetic stream, in real time.
    Publish {
        /// rtmp://HOST[:PORT]/APP/NAME; repeat it to publish several
        /// streams from one process.
        #[arg(long, required = true)]
        url: Vec<String>,
        /// On a ReconnectRequest or a dropped connection, publish again to
        /// the same app and name on this server (HOST:PORT); repeat it to
        /// move on in turn, back to --url's server after the last.
        #[arg(long)]
        move_to: Vec<String>,
        #[command(flatten)]
        source: SourceArgs,
        /// Seconds to publish; forever when absent.
        #[arg(long)]
        duration: Option<f64>,
        #[arg(long)]
        complex_handshake: bool,
    },
    /// Play a stream with many players and measure what they receive.
    Play(PlayArgs),
    /// Publish and play in one process.
    Run {
        #[command(flatten)]
        play: PlayArgs,
        #[command(flatten)]
        source: SourceArgs,
        /// Where to publish (rtmp://); defaults to --url, so it is needed
        /// when players use HTTP-FLV, WebSocket-FLV or HLS.
        #[arg(long)]
        publish_url: Option<String>,
    },
    /// Minimal fan-out server: the same chunk bytes to every player, one write each.
    Floor {
        #[arg(long, default_value = "127.0.0.1:1935")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        source: SourceArgs,
        /// Most players accepted at once.
        #[arg(long, default_value_t = 100_000)]
        players: usize,
        #[arg(long, default_value_t = 4096)]
        chunk_size: u32,
        /// Seconds to run; forever when absent.
        #[arg(long)]
        duration: Option<f64>,
    },
}

#[derive(Args, Clone)]
struct SourceArgs {
    /// FLV file to loop.
    #[arg(long, conflicts_with = "generate")]
    file: Option<String>,
    /// Send a synthetic H.264 + AAC stream instead of a file.
    #[arg(long)]
    generate: bool,
    /// Synthetic video bitrate (e.g. 2500k, 6M).
    #[arg(long, default_value = "2500k", value_parser = parse_rate)]
    bitrate: u64,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Frames per keyframe interval.
    #[arg(long, default_value_t = 60)]
    gop: u32,
    /// Synthetic AAC bitrate; 0 for no audio.
    #[arg(long, default_value = "128k", value_parser = parse_rate)]
    audio_bitrate: u64,
}

impl SourceArgs {
    fn spec(&self) -> Result<SourceSpec, String> {
        match (&self.file, self.generate) {
            (Some(f), false) => Ok(SourceSpec::File(f.clone())),
            (None, true) => Ok(SourceSpec::Generate(GenParams {
                video_bps: self.bitrate,
                fps: self.fps,
                gop: self.gop,
                audio_bps: self.audio_bitrate,
            })),
            _ => Err("give either --file PATH or --generate".into()),
        }
    }
}

#[derive(Args, Clone)]
struct PlayArgs {
    /// rtmp://HOST[:PORT]/APP/NAME, http://HOST[:PORT]/APP/NAME.flv
    /// (HTTP-FLV), http://HOST[:PORT]/APP/NAME/index.m3u8 (HLS or
    /// Low-Latency HLS, fMP4; any .m3u8 URL, and MPEG-TS media is counted
    /// as bytes only) or ws://HOST[:PORT]/APP/NAME.flv (WebSocket-FLV).
    #[arg(long)]
    url: String,
    /// More streams (same protocol rules as --url, any mix of RTMP and
    /// HTTP): player i plays the i-th of --url and these, in turn.
    #[arg(long)]
    also_url: Vec<String>,
    #[arg(long, default_value_t = 1)]
    players: u64,
    /// New players per second.
    #[arg(long, default_value_t = 200.0)]
    ramp: f64,
    /// Seconds, from the first player's start.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Read buffer per player, bytes.
    #[arg(long, default_value_t = 65_536)]
    read_buf: usize,
    /// Latency is not recorded for this long after a player's first frame
    /// (a GOP cache replays old frames).
    #[arg(long, default_value_t = 2000)]
    warmup_ms: u64,
    /// RTMP players and the publisher: the digest (complex) handshake.
    #[arg(long)]
    complex_handshake: bool,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<String>,
    /// Write the latency-over-time SVG here.
    #[arg(long)]
    plot: Option<String>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Report only: exit 0 even when frames were lost, starts were bad or
    /// players failed (by default such a run exits with status 3).
    #[arg(long)]
    no_gate: bool,
}

/// "2500k", "2.5M", "800000" -> bits per second.
fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1e3),
        Some('m' | 'M') => (&s[..s.len() - 1], 1e6),
        Some('g' | 'G') => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    let v: f64 = num.parse().map_err(|e| format!("{s}: {e}"))?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(format!("{s}: not a rate"));
    }
    Ok((v * mult) as u64)
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Publish {
            url,
            move_to,
            source,
            duration,
            complex_handshake,
        } => cmd_publish(&url, &move_to, &source, duration, complex_handshake),
        Cmd::Play(p) => cmd_play(&p, None, None),
        Cmd::Run {
            play,
            source,
            publish_url,
        } => {
            let url = publish_url.unwrap_or_else(|| play.url.clone());
            cmd_play(&play, Some(source), Some(url))
        }
        Cmd::Floor {
            listen,
            source,
            players,
            chunk_size,
            duration,
        } => source.spec().and_then(|source| {
            floor::run_floor(floor::FloorConfig {
                listen,
                source,
                max_players: players,
                chunk_size,
                max_backlog: 8 * 1024 * 1024,
                duration: duration.map(Duration::from_secs_f64),
            })
        }),
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn cmd_publish(
    urls: &[String],
    move_to: &[String],
    source: &SourceArgs,
    duration: Option<f64>,
    complex: bool,
) -> Result<(), String> {
    let mut cfgs = Vec::new();
    for url in urls {
        cfgs.push(PublishConfig {
            url: RtmpUrl::parse(url)?,
            source: source.spec()?,
            duration: duration.map(Duration::from_secs_f64),
            complex_handshake: complex,
            move_to: move_to.to_vec(),
        });
    }
    let reports = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    run_on_runtime(Driver::Epoll, || {
        let reports = reports.clone();
        async move {
            let tasks: Vec<_> = cfgs
                .into_iter()
                .map(|cfg| {
                    let url = cfg.url.tc_url() + "/" + &cfg.url.name;
                    monoio::spawn(async move {
                        (
                            url.clone(),
                            publish(cfg, || eprintln!("publishing {url}")).await,
                        )
                    })
                })
                .collect();
            for t in tasks {
                let r = t.await;
                reports.borrow_mut().push(r);
            }
        }
    });
    let reports = reports.take();
    let mut errors = Vec::new();
    for (url, report) in &reports {
        eprintln!(
            "{url}: {}",
            serde_json::to_string(report).unwrap_or_default()
        );
        if let Some(e) = &report.error {
            errors.push(format!("{url}: {e}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// `play`, or `run` when `source` is given: starts the publisher first.
fn cmd_play(
    p: &PlayArgs,
    source: Option<SourceArgs>,
    publish_url: Option<String>,
) -> Result<(), String> {
    let target = PlayTarget::parse(&p.url)?;
    let more = p
        .also_url
        .iter()
        .map(|u| PlayTarget::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    if more
        .iter()
        .chain([&target])
        .any(|t| matches!(t, PlayTarget::Hls(_)))
        && !more.is_empty()
    {
        return Err("HLS players play one --url; --also-url is for RTMP and FLV".into());
    }
    let duration = Duration::from_secs_f64(p.duration.max(1.0));
    let publisher = match (source, publish_url) {
        (Some(src), Some(purl)) => Some(start_publisher(PublishConfig {
            url: RtmpUrl::parse(&purl).map_err(|e| {
                format!("{e} (the publisher speaks RTMP: give --publish-url rtmp://...)")
            })?,
            source: src.spec()?,
            duration: Some(duration + Duration::from_secs(2)),
            complex_handshake: p.complex_handshake,
            move_to: Vec::new(),
        })?),
        _ => None,
    };
    let cfg = Arc::new(PlayConfig {
        target,
        more,
        players: p.players,
        ramp: p.ramp,
        duration,
        threads: p.threads.max(1),
        read_buf: p.read_buf.max(4096),
        complex_handshake: p.complex_handshake,
        warmup: Duration::from_millis(p.warmup_ms),
    });
    let (tx, rx) = mpsc::channel();
    let handles = spawn_players(cfg.clone(), tx);
    let (totals, timeline) = collect(&cfg, &rx, p.quiet);
    for h in handles {
        let _ = h.join();
    }
    let pub_report = publisher.and_then(|h| h.join().ok());
    let ramp_end = p.players as f64 / p.ramp.max(0.001);
    let report = Report::build(
        &p.url,
        p.players,
        cfg.threads,
        p.duration,
        ramp_end,
        &totals,
        timeline,
        pub_report,
        matches!(cfg.target, PlayTarget::Hls(_)),
    );
    print_summary(&report);
    if let Some(path) = &p.report {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("{path}: {e}"))?;
    }
    if let Some(path) = &p.plot {
        let title = format!("{} players, {}: latency per second", p.players, p.url);
        std::fs::write(path, plot::render_svg(&report.timeline, &title))
            .map_err(|e| format!("{path}: {e}"))?;
    }
    let failures = report.gate_failures();
    if !failures.is_empty() && !p.no_gate {
        eprintln!("FAILED: {}", failures.join("; "));
        std::process::exit(GATE_FAILED);
    }
    Ok(())
}

/// Exit status of a run that completed but failed the gate (loss, bad
/// starts, failed or dropped players); 1 means the run itself failed.
const GATE_FAILED: i32 = 3;

/// Runs the publisher on its own thread and waits until it is publishing.
fn start_publisher(cfg: PublishConfig) -> Result<std::thread::JoinHandle<PublisherReport>, String> {
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("publisher".into())
        .spawn(move || {
            let mut report = PublisherReport::default();
            run_on_runtime(Driver::Epoll, || async {
                report = publish(cfg, move || {
                    let _ = ready_tx.send(());
                })
                .await;
            });
            if let Some(e) = &report.error {
                eprintln!("publisher: {e}");
            }
            report
        })
        .map_err(|e| e.to_string())?;
    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(()) => Ok(handle),
        Err(_) => {
            let r = handle.join().ok().and_then(|r| r.error);
            Err(format!(
                "publisher did not start: {}",
                r.unwrap_or_else(|| "timeout".into())
            ))
        }
    }
}

/// Gathers the threads' intervals into one point per second (printing the
/// progress line) and their totals at the end.
fn collect(
    cfg: &PlayConfig,
    rx: &mpsc::Receiver<ThreadMsg>,
    quiet: bool,
) -> (ThreadStats, Vec<Point>) {
    let threads = cfg.threads;
    let mut buckets: BTreeMap<u64, Vec<Interval>> = BTreeMap::new();
    let mut timeline = Vec::new();
    let mut totals = ThreadStats::default();
    let mut finals = 0;
    let emit = |second: u64, ivs: Vec<Interval>, timeline: &mut Vec<Point>| {
        let pt = merge_intervals(second, 1.0, &ivs);
        if !quiet {
            let latency = if pt.latency_samples > 0 {
                format!(
                    "p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
                    pt.p50_ms, pt.p99_ms, pt.max_ms
                )
            } else {
                format!("{:<39}", "latency unknown (no stamped frames)")
            };
            eprintln!(
                "[{:>4}s] players {:>6}/{} | {:>9.1} Mbit/s | {} | errors {}",
                second, pt.players, cfg.players, pt.mbit_s, latency, pt.errors
            );
        }
        timeline.push(pt);
    };
    let deadline = std::time::Instant::now() + cfg.duration + Duration::from_secs(15);
    while finals < threads {
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(wait) {
            Ok(ThreadMsg::Interval(iv)) => {
                let second = iv.second;
                let b = buckets.entry(second).or_default();
                b.push(iv);
                if b.len() == threads {
                    if let Some(ivs) = buckets.remove(&second) {
                        emit(second, ivs, &mut timeline);
                    }
                }
            }
            Ok(ThreadMsg::Final(s)) => {
                totals.merge(&s);
                finals += 1;
            }
            Err(_) => break,
        }
    }
    for (second, ivs) in std::mem::take(&mut buckets) {
        emit(second, ivs, &mut timeline);
    }
    timeline.sort_by_key(|p| p.t_s);
    (totals, timeline)
}

fn print_summary(r: &Report) {
    // Without stamps latency is unknown, which is not the same as zero.
    let latency = match &r.latency_ms {
        Some(l) => format!("p50 {:.1} p99 {:.1} max {:.1} ms", l.p50, l.p99, l.max),
        None => "unknown (no stamped frames)".into(),
    };
    let hls = match &r.hls {
        Some(h) => format!(
            " | hls requests {} stalls {} request errors {:?} ({} while playing) | ts segments {}",
            h.requests, h.stalls, h.request_errors, h.request_errors_playing, h.ts_segments
        ),
        None => String::new(),
    };
    eprintln!(
        "players {} connected, {} up at end | steady {:.1} Mbit/s, {} bytes | latency {} | first frame p50 {:.0} p99 {:.0} ms | frames {} (stamped {}) | starts ok {} bad {} | lost {} | disconnects {:?} | connect failures {:?}{}",
        r.players_connected,
        r.players_up_at_end,
        r.mbit_s_steady,
        r.bytes_received,
        latency,
        r.first_frame_ms.p50,
        r.first_frame_ms.p99,
        r.video_frames,
        r.frames,
        r.good_starts,
        r.bad_starts,
        r.lost_frames,
        r.disconnects,
        r.connect_failures,
        hls
    );
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("2500k"), Ok(2_500_000));
        assert_eq!(parse_rate("2.5M"), Ok(2_500_000));
        assert_eq!(parse_rate("800"), Ok(800));
        assert!(parse_rate("fast").is_err());
    }
}
