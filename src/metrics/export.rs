//! Renders merged statistics in the Prometheus text format with the
//! `prometheus` crate's encoder. Nothing here runs on a worker: the control
//! thread calls it with snapshots it collected.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::TextEncoder;

use super::names::{self as n, buckets};
use super::{
    AuthRejection, ConnRole, DropReason, HandshakeFailure, HistSnapshot, KickReason, Label,
    LimitKind, OutboundFailure, OutboundKind, ProtocolErrorKind, PullFailure, RejectReason,
    StatsSnapshot, TlsHandshake,
};

/// One stream as exported when `metrics.per_stream` is on.
#[derive(Debug, Clone, Default)]
pub struct StreamSeries {
    pub key: String,
    pub players: u64,
    pub bytes_in: u64,
    pub uptime_secs: f64,
}

/// Everything one scrape shows.
pub struct Scrape<'a> {
    /// `(core, snapshot)` per worker that answered.
    pub cores: &'a [(usize, &'a StatsSnapshot)],
    pub total: &'a StatsSnapshot,
    /// Live streams on the node (counted once, at their owner).
    pub streams: u64,
    pub players: u64,
    /// Per-stream series, already filtered by configuration; empty when off.
    pub per_stream: &'a [StreamSeries],
    /// Streams left out because of `metrics.per_stream_max`.
    pub per_stream_omitted: u64,
    pub ready: bool,
    pub draining: bool,
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect()
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn counter_metric(pairs: &[(&str, &str)], v: u64) -> Metric {
    let mut c = Counter::default();
    c.set_value(v as f64);
    let mut m = Metric::default();
    m.set_label(labels(pairs));
    m.set_counter(c);
    m
}

fn gauge_metric(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    let mut m = Metric::default();
    m.set_label(labels(pairs));
    m.set_gauge(g);
    m
}

fn counter(name: &str, help: &str, v: u64) -> MetricFamily {
    family(
        name,
        help,
        MetricType::COUNTER,
        vec![counter_metric(&[], v)],
    )
}

fn gauge(name: &str, help: &str, v: f64) -> MetricFamily {
    family(name, help, MetricType::GAUGE, vec![gauge_metric(&[], v)])
}

/// A counter (or gauge) family with one series per value of `L`, zeros
/// included, so every label value exists from the first scrape.
fn labelled<L: Label>(
    name: &str,
    help: &str,
    label: &str,
    values: &[u64],
    kind: MetricType,
) -> MetricFamily {
    let metrics = L::NAMES
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = values.get(i).copied().unwrap_or(0);
            if kind == MetricType::GAUGE {
                gauge_metric(&[(label, text)], v as f64)
            } else {
                counter_metric(&[(label, text)], v)
            }
        })
        .collect();
    family(name, help, kind, metrics)
}

/// Cumulative buckets in seconds from a µs hdrhistogram.
fn histogram(name: &str, help: &str, h: &HistSnapshot, bounds: &[f64]) -> MetricFamily {
    let mut out = Histogram::default();
    out.set_sample_count(h.count());
    out.set_sample_sum(h.sum_us as f64 / 1e6);
    let bucket_list = bounds
        .iter()
        .map(|le| {
            let mut b = Bucket::default();
            b.set_upper_bound(*le);
            b.set_cumulative_count(h.count_le((le * 1e6).round() as u64));
            b
        })
        .collect();
    out.set_bucket(bucket_list);
    let mut m = Metric::default();
    m.set_histogram(out);
    family(name, help, MetricType::HISTOGRAM, vec![m])
}

/// The whole exposition for one scrape.
pub fn render(s: &Scrape<'_>) -> String {
    let t = s.total;
    let mut fams = vec![
        family(
            n::BUILD_INFO,
            "Build of this process; the value is always 1.",
            MetricType::GAUGE,
            vec![gauge_metric(
                &[
                    ("version", env!("CARGO_PKG_VERSION")),
                    ("name", env!("CARGO_PKG_NAME")),
                ],
                1.0,
            )],
        ),
        family(
            n::WORKER_IO_DRIVER,
            "IO driver each worker runs (1 for the driver in use).",
            MetricType::GAUGE,
            s.cores
                .iter()
                .map(|(core, st)| {
                    let core = core.to_string();
                    let driver = if st.io_driver.is_empty() {
                        "unknown"
                    } else {
                        st.io_driver
                    };
                    gauge_metric(&[("worker", &core), ("driver", driver)], 1.0)
                })
                .collect(),
        ),
        gauge(
            n::READY,
            "1 when every worker listens and the node is not draining.",
            f64::from(u8::from(s.ready)),
        ),
        gauge(
            n::DRAINING,
            "1 while the node drains after SIGTERM.",
            f64::from(u8::from(s.draining)),
        ),
        labelled::<ConnRole>(
            n::CONNECTIONS,
            "Live connections by role.",
            "role",
            &t.by_role,
            MetricType::GAUGE,
        ),
        counter(
            n::CONNECTIONS_ACCEPTED,
            "Connections accepted by the RTMP listeners.",
            t.connections,
        ),
        labelled::<RejectReason>(
            n::CONNECTIONS_REJECTED,
            "Connections refused or failed at accept, by reason.",
            "reason",
            &t.rejected,
            MetricType::COUNTER,
        ),
        family(
            n::AUTH_REJECTIONS,
            "Publishes and plays refused by [auth], by action and reason.",
            MetricType::COUNTER,
            AuthRejection::NAMES
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let (action, reason) = text.split_once('/').unwrap_or((text, ""));
                    let v = t.auth_rejected.get(i).copied().unwrap_or(0);
                    counter_metric(&[("action", action), ("reason", reason)], v)
                })
                .collect(),
        ),
        labelled::<HandshakeFailure>(
            n::HANDSHAKE_FAILURES,
            "RTMP handshakes that failed, by reason.",
            "reason",
            &t.handshake_failures,
            MetricType::COUNTER,
        ),
        labelled::<TlsHandshake>(
            n::TLS_HANDSHAKES,
            "TLS handshakes on the RTMPS listener, by result.",
            "result",
            &t.tls_handshakes,
            MetricType::COUNTER,
        ),
        labelled::<ProtocolErrorKind>(
            n::PROTOCOL_ERRORS,
            "Connections closed for a protocol error after the handshake, by kind.",
            "kind",
            &t.protocol_errors,
            MetricType::COUNTER,
        ),
        labelled::<LimitKind>(
            n::LIMIT_HITS,
            "Connections closed, refused or publishes refused by a [limits] key, by key.",
            "limit",
            &t.limit_hits,
            MetricType::COUNTER,
        ),
        counter(n::BYTES_IN, "Bytes read from RTMP peers.", t.bytes_in),
        counter(
            n::BYTES_OUT,
            "Media bytes queued to players (one message counted once per player).",
            t.bytes_out,
        ),
        counter(
            n::MESSAGES_IN,
            "Media messages received from publishers.",
            t.messages_in,
        ),
        counter(
            n::MESSAGES_OUT,
            "Media messages queued to players.",
            t.messages_out,
        ),
        gauge(n::STREAMS, "Live streams on this node.", s.streams as f64),
        gauge(n::PLAYERS, "Players on this node.", s.players as f64),
        labelled::<DropReason>(
            n::FRAMES_DROPPED,
            "Frames not delivered, by reason (queue_full: a slow player's queue; await_keyframe: held until a keyframe after a publisher change).",
            "reason",
            &t.dropped,
            MetricType::COUNTER,
        ),
        counter(
            n::SLOW_PLAYER_DISCONNECTS,
            "Players disconnected for staying behind past player.slow_disconnect_ms.",
            t.slow_disconnects,
        ),
        counter(
            n::PUBLISHER_RECONNECTS,
            "Publishers that took over a stream whose previous publisher had left within the grace.",
            t.publisher_reconnects,
        ),
        labelled::<KickReason>(
            n::KICKS,
            "Connections closed by the operator (api) or by a drain.",
            "reason",
            &t.kicks,
            MetricType::COUNTER,
        ),
        gauge(
            n::EDGE_PULLS,
            "Edge pulls from an origin running on this node.",
            t.pulls_active as f64,
        ),
        counter(
            n::EDGE_PULL_STARTS,
            "Edge pulls started (one per stream per node, however many players).",
            t.pull_starts,
        ),
        labelled::<PullFailure>(
            n::EDGE_PULL_FAILURES,
            "Failed attempts to pull a stream from an origin, by reason.",
            "reason",
            &t.pull_failures,
            MetricType::COUNTER,
        ),
        counter(
            n::EDGE_FAILOVERS,
            "Edge pulls that moved to another origin.",
            t.failovers,
        ),
        labelled::<OutboundKind>(
            n::OUTBOUND,
            "Outbound publishes running: forward (a local publish sent on to an origin) or push (a [[push]] target).",
            "kind",
            &t.outbound_active,
            MetricType::GAUGE,
        ),
        labelled::<OutboundKind>(
            n::OUTBOUND_STARTS,
            "Outbound publishes started (one per stream per target), by kind.",
            "kind",
            &t.outbound_starts,
            MetricType::COUNTER,
        ),
        family(
            n::OUTBOUND_FAILURES,
            "Failed outbound publish attempts, by kind and reason.",
            MetricType::COUNTER,
            OutboundFailure::NAMES
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let (kind, reason) = text.split_once('/').unwrap_or((text, ""));
                    let v = t.outbound_failures.get(i).copied().unwrap_or(0);
                    counter_metric(&[("kind", kind), ("reason", reason)], v)
                })
                .collect(),
        ),
        labelled::<OutboundKind>(
            n::OUTBOUND_RECONNECTS,
            "Outbound publish attempts after the first, by kind.",
            "kind",
            &t.outbound_reconnects,
            MetricType::COUNTER,
        ),
        labelled::<OutboundKind>(
            n::FORWARDED_BYTES,
            "Bytes written to origins (forward) and push targets (push).",
            "kind",
            &t.outbound_bytes,
            MetricType::COUNTER,
        ),
        histogram(
            n::INGEST_TO_EGRESS,
            "Delay from a publisher's last byte read to a player's write done.",
            &t.ingest_to_egress,
            buckets::INGEST_TO_EGRESS,
        ),
        histogram(
            n::FIRST_FRAME,
            "Delay from a play command to its first keyframe written.",
            &t.first_frame,
            buckets::FIRST_FRAME,
        ),
        histogram(
            n::HANDSHAKE_DURATION,
            "Duration of the RTMP handshake.",
            &t.handshake,
            buckets::HANDSHAKE,
        ),
        histogram(
            n::AUTH_DECISION,
            "Time to decide a publish or play authorization.",
            &t.auth_decision,
            buckets::AUTH,
        ),
        histogram(
            n::ORIGIN_CONNECT,
            "Time to connect to an origin for an edge pull.",
            &t.origin_connect,
            buckets::ORIGIN_CONNECT,
        ),
    ];
    if !s.per_stream.is_empty() || s.per_stream_omitted > 0 {
        let series = |f: &dyn Fn(&StreamSeries) -> Metric| s.per_stream.iter().map(f).collect();
        fams.push(family(
            n::STREAM_PLAYERS,
            "Players of one stream.",
            MetricType::GAUGE,
            series(&|st| gauge_metric(&[("stream", &st.key)], st.players as f64)),
        ));
        fams.push(family(
            n::STREAM_BYTES_IN,
            "Bytes of media received for one stream.",
            MetricType::COUNTER,
            series(&|st| counter_metric(&[("stream", &st.key)], st.bytes_in)),
        ));
        fams.push(family(
            n::STREAM_UPTIME,
            "Seconds since one stream's publisher started.",
            MetricType::GAUGE,
            series(&|st| gauge_metric(&[("stream", &st.key)], st.uptime_secs)),
        ));
        fams.push(gauge(
            n::STREAM_SERIES_OMITTED,
            "Streams without per-stream series because of metrics.per_stream_max.",
            s.per_stream_omitted as f64,
        ));
    }
    // Families without series would be dropped by the encoder anyway.
    fams.retain(|f| !f.get_metric().is_empty());
    let mut out = String::new();
    if let Err(e) = TextEncoder::new().encode_utf8(&fams, &mut out) {
        tracing::warn!(error = %e, "metrics encoding failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::CoreStats;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let c = CoreStats::default();
        c.record_egress(Duration::from_micros(80));
        c.record_egress(Duration::from_millis(2));
        c.record_egress(Duration::from_secs(5));
        c.io_driver.set("epoll");
        let snap = c.snapshot();
        let text = render(&Scrape {
            cores: &[(0, &snap)],
            total: &snap,
            streams: 1,
            players: 2,
            per_stream: &[StreamSeries {
                key: "live/a".into(),
                players: 2,
                bytes_in: 10,
                uptime_secs: 1.5,
            }],
            per_stream_omitted: 0,
            ready: true,
            draining: false,
        });
        assert!(
            text.contains("cascade_ingest_to_egress_seconds_bucket{le=\"0.0001\"} 1"),
            "{text}"
        );
        assert!(text.contains("cascade_ingest_to_egress_seconds_bucket{le=\"0.0025\"} 2"));
        assert!(text.contains("cascade_ingest_to_egress_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("cascade_ingest_to_egress_seconds_count 3"));
        assert!(text.contains("cascade_worker_io_driver{worker=\"0\",driver=\"epoll\"} 1"));
        assert!(text.contains("cascade_stream_players{stream=\"live/a\"} 2"));
        assert!(text.contains("cascade_auth_decision_seconds_count 0"));
        assert!(text.contains("cascade_connections{role=\"publisher\"} 0"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with(n::PREFIX), "{line}");
        }
    }
}
