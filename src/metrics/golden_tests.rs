//! Pins the whole `/metrics` page: a snapshot in which every counter,
//! gauge and histogram holds a distinct non-zero value is rendered and
//! compared, family by family, with `golden.prom`. A renamed metric, a
//! changed help text or a lost label value fails here before a dashboard
//! notices. Family order is not pinned, only each family's text.
//!
//! After adding a metric on purpose, rewrite the file with
//! `CASCADE_BLESS_METRICS=1 cargo test --lib metrics::golden` and review the diff.

use std::time::Duration;

use super::export::{render, Scrape, StreamSeries};
use super::{CoreStats, Counters, Label, Protocol};

/// Gives label `i` of a family the value `base + i`.
fn fill<L: Label>(c: &Counters<L>, base: u64) {
    for (i, cell) in c.cells.iter().enumerate() {
        cell.set(base + i as u64);
    }
}

/// One core whose every figure differs from its neighbours.
fn busy_core(seed: u64) -> CoreStats {
    let c = CoreStats::default();
    let hists = [&c.handshake, &c.auth_decision, &c.origin_connect];
    let record = |i: u64, one: &dyn Fn(Duration, u64)| {
        one(Duration::from_micros(90 * i), 1);
        one(Duration::from_millis(3 * i), i);
        one(Duration::from_secs(2 * i), 1);
    };
    for (i, h) in hists.iter().enumerate() {
        record(i as u64 + 2 + seed, &|d, n| h.record_n(d, n));
    }
    // The per-protocol families: each protocol its own figures (RTMP's
    // are those the families had before they had protocols).
    let protocols = [
        (Protocol::Rtmp, 0, 1),
        (Protocol::HttpFlv, 5, 7),
        (Protocol::WsFlv, 6, 8),
    ];
    for (p, egress, first) in protocols {
        record(egress + seed, &|d, n| c.ingest_to_egress.record_n(p, d, n));
        record(first + seed, &|d, n| c.first_frame.record_n(p, d, n));
    }
    let mut base = seed * 1000;
    let mut next = || {
        base += 100;
        base
    };
    fill(&c.by_role, next());
    fill(&c.rejected, next());
    fill(&c.auth_rejected, next());
    fill(&c.handshake_failures, next());
    fill(&c.tls_handshakes, next());
    fill(&c.protocol_errors, next());
    fill(&c.limit_hits, next());
    fill(&c.dropped, next());
    fill(&c.kicks, next());
    fill(&c.pull_failures, next());
    fill(&c.outbound_active, next());
    fill(&c.outbound_starts, next());
    fill(&c.outbound_failures, next());
    fill(&c.outbound_reconnects, next());
    fill(&c.outbound_bytes, next());
    let cells = [
        &c.connections,
        &c.connections_active,
        &c.bytes_in,
        &c.messages_in,
        &c.slow_disconnects,
        &c.publisher_reconnects,
        &c.pulls_active,
        &c.pull_starts,
        &c.failovers,
    ];
    for cell in cells {
        cell.set(next());
    }
    fill(&c.players, next());
    fill(&c.bytes_out, next());
    fill(&c.messages_out, next());
    c.io_driver
        .set(if seed == 1 { "io_uring" } else { "epoll" });
    c
}

/// The page, with the crate version masked so a release does not touch the file.
fn page() -> String {
    let a = busy_core(1).snapshot();
    let b = busy_core(2).snapshot();
    let mut total = a.clone();
    total.merge(&b);
    render(&Scrape {
        cores: &[(0, &a), (1, &b)],
        total: &total,
        streams: 3,
        per_stream: &[
            StreamSeries {
                key: "live/a".into(),
                players: 4,
                bytes_in: 1234,
                uptime_secs: 12.5,
            },
            StreamSeries {
                key: "live/b".into(),
                players: 3,
                bytes_in: 99,
                uptime_secs: 0.25,
            },
        ],
        per_stream_omitted: 2,
        ready: true,
        draining: true,
        hls_sessions: [3, 1],
    })
    .replace(
        &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        "version=\"VERSION\"",
    )
}

/// The page cut at each `# HELP`, sorted by family name.
fn families(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || out.is_empty() {
            out.push(String::new());
        }
        if let Some(f) = out.last_mut() {
            f.push_str(line);
            f.push('\n');
        }
    }
    out.sort();
    out
}

#[test]
fn the_metrics_page_matches_the_golden_file() {
    let text = page();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/metrics/golden.prom");
    if std::env::var_os("CASCADE_BLESS_METRICS").is_some() {
        std::fs::write(path, &text).expect("write golden.prom");
    }
    let golden = std::fs::read_to_string(path).expect("read golden.prom");
    let (want, got) = (families(&golden), families(&text));
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w, g, "a family differs from golden.prom");
    }
    assert_eq!(want.len(), got.len(), "families added or lost:\n{text}");
}
