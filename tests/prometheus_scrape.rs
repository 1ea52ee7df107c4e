//! cascade's `/metrics` checked by the real Prometheus tools: `promtool
//! check metrics` on the page after a publish and a play over RTMP and
//! over HTTP-FLV, and a real Prometheus server scraping cascade on loopback
//! and answering queries about the ingest-to-egress histogram and the
//! series by protocol and by worker.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::ops::{metric_sum, OpsServer, Prometheus};
use common::{ffmpeg_play, publish_ffmpeg, tool, wait_playable_with_ffmpeg, Clip};

/// Publishes the H.264 clip and plays it once over RTMP and once over
/// HTTP-FLV, so every histogram that can have observations has some, in
/// both protocols.
fn publish_and_play(ops: &OpsServer) -> common::ChildGuard {
    let ffmpeg = tool("ffmpeg");
    let url = ops.server.url("scrape");
    let publisher = publish_ffmpeg(&ffmpeg, &Clip::H264Aac.path(), &url);
    wait_playable_with_ffmpeg(&ffmpeg, &url, Duration::from_secs(20));
    let flv = format!("http://127.0.0.1:{}/live/scrape.flv", ops.http);
    for url in [url, flv] {
        let out = ffmpeg_play(&ffmpeg, &url, 2.0, "error", Duration::from_secs(20));
        assert!(out.success(), "play of {url} failed: {}", out.describe());
    }
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
    for protocol in ["protocol=\"rtmp\"", "protocol=\"http-flv\""] {
        let at = |name: &str| metric_sum(&page, name, &[protocol]);
        for name in [
            "cascade_ingest_to_egress_seconds_count",
            "cascade_time_to_first_frame_seconds_count",
            "cascade_bytes_out_total",
            "cascade_messages_out_total",
        ] {
            assert!(at(name) > 0.0, "no {name}{{{protocol}}}:\n{page}");
        }
    }
    // Per-worker families name both workers.
    for worker in ["worker=\"0\"", "worker=\"1\""] {
        assert!(
            page.contains(&format!("cascade_connections{{{worker},role=\"player\"}}")),
            "{page}"
        );
        assert!(
            page.contains(&format!("cascade_players{{{worker},protocol=\"ws-flv\"}}")),
            "{page}"
        );
    }
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
    // Both protocols' observations and bytes reach Prometheus.
    for query in [
        "sum(cascade_ingest_to_egress_seconds_count{protocol=\"rtmp\"})",
        "sum(cascade_ingest_to_egress_seconds_count{protocol=\"http-flv\"})",
        "sum by (protocol) (cascade_bytes_out_total{protocol=\"http-flv\"})",
    ] {
        let mut last = Err("no query yet".to_string());
        while Instant::now() < deadline {
            last = prom.query(query);
            if matches!(last, Ok(Some(v)) if v > 0.0) {
                break;
            }
            thread::sleep(Duration::from_millis(500));
        }
        assert!(
            matches!(last, Ok(Some(v)) if v > 0.0),
            "Prometheus never saw {query}: {last:?}\nprometheus log:\n{}",
            prom.log()
        );
    }
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
