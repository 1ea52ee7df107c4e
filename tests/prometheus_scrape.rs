//! cascade's `/metrics` checked by the real Prometheus tools: `promtool
//! check metrics` on the page after a publish and a play, and a real
//! Prometheus server scraping cascade on loopback and answering a query
//! about the ingest-to-egress histogram.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::ops::{metric_value, OpsServer, Prometheus};
use common::{ffmpeg_play, publish_ffmpeg, tool, wait_playable_with_ffmpeg, Clip};

/// Publishes the H.264 clip and plays it once, so every histogram that
/// can have observations has some.
fn publish_and_play(ops: &OpsServer) -> common::ChildGuard {
    let ffmpeg = tool("ffmpeg");
    let url = ops.server.url("scrape");
    let publisher = publish_ffmpeg(&ffmpeg, &Clip::H264Aac.path(), &url);
    wait_playable_with_ffmpeg(&ffmpeg, &url, Duration::from_secs(20));
    let out = ffmpeg_play(&ffmpeg, &url, 2.0, "error", Duration::from_secs(20));
    assert!(out.success(), "play failed: {}", out.describe());
    publisher
}

#[test]
fn promtool_accepts_the_metrics_page() {
    let ops = OpsServer::start(
        &["--workers", "2"],
        &[("CASCADE_METRICS_PER_STREAM", "true")],
    );
    let _publisher = publish_and_play(&ops);
    let page = ops.get("/metrics");
    assert!(
        metric_value(&page, "cascade_ingest_to_egress_seconds_count").unwrap_or(0.0) > 0.0,
        "no ingest-to-egress observations:\n{page}"
    );
    assert!(
        page.contains("cascade_stream_players{stream=\"live/scrape\"}"),
        "{page}"
    );
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("write page to promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- page ---\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_server_scrapes_ingest_to_egress() {
    let ops = OpsServer::start(&[], &[]);
    let prom = Prometheus::start(&format!("127.0.0.1:{}", ops.http));
    let _publisher = publish_and_play(&ops);
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut last = Err("no query yet".to_string());
    while Instant::now() < deadline {
        last = prom.query("max(cascade_ingest_to_egress_seconds_count)");
        if matches!(last, Ok(Some(v)) if v > 0.0) {
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    assert!(
        matches!(last, Ok(Some(v)) if v > 0.0),
        "Prometheus never saw ingest-to-egress observations: {last:?}\nprometheus log:\n{}",
        prom.log()
    );
    // The buckets make a usable quantile, and the target is up.
    let p99 = prom
        .query("histogram_quantile(0.99, sum by (le) (cascade_ingest_to_egress_seconds_bucket))")
        .expect("quantile query");
    assert!(
        p99.is_some_and(|v| v.is_finite() && v > 0.0),
        "p99: {p99:?}"
    );
    assert_eq!(
        prom.query("up{job=\"cascade\"}").expect("up query"),
        Some(1.0)
    );
}
