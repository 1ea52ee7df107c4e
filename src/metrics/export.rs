//! Renders merged statistics in the Prometheus text format with the
//! `prometheus` crate's encoder. It runs once per scrape on the worker that
//! serves the request, off the media path, with the snapshots the control
//! plane collected: a few hundred series, a millisecond or so.
//!
//! The per-core families are not listed here: `render` walks the table in
//! [`super::names`] through `StatsSnapshot::for_each_exported`, so a metric
//! added there is exported without an edit here. Only the node-level
//! families, whose values come from the [`Scrape`], are assembled by hand.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::TextEncoder;

use super::declare::{Desc, Kind, Series};
use super::names as n;
use super::{HistSnapshot, StatsSnapshot};

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
    /// Per-stream series, already filtered by configuration; empty when off.
    pub per_stream: &'a [StreamSeries],
    /// Streams left out because of `metrics.per_stream_max`.
    pub per_stream_omitted: u64,
    pub ready: bool,
    pub draining: bool,
    /// Active HLS and DASH sessions on the node.
    pub hls_sessions: [u64; 2],
}

/// `d`'s label names (`worker` first where it applies) paired with
/// `values`, in order; a missing value exports as empty.
fn labels(d: &Desc, values: &[&str]) -> Vec<LabelPair> {
    d.label_names()
        .enumerate()
        .map(|(i, name)| {
            let mut l = LabelPair::default();
            l.set_name(name.to_string());
            l.set_value(values.get(i).copied().unwrap_or("").to_string());
            l
        })
        .collect()
}

fn family(d: &Desc, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(d.name.to_string());
    f.set_help(d.help.to_string());
    f.set_field_type(match d.kind {
        Kind::Counter => MetricType::COUNTER,
        Kind::Gauge => MetricType::GAUGE,
        Kind::Histogram => MetricType::HISTOGRAM,
    });
    f.set_metric(metrics);
    f
}

/// One series of a counter or gauge family, labelled with `values`.
fn series(d: &Desc, values: &[&str], v: f64) -> Metric {
    let mut m = Metric::default();
    m.set_label(labels(d, values));
    if d.kind == Kind::Gauge {
        let mut g = Gauge::default();
        g.set_value(v);
        m.set_gauge(g);
    } else {
        let mut c = Counter::default();
        c.set_value(v);
        m.set_counter(c);
    }
    m
}

/// An unlabelled family of one series.
fn single(d: &Desc, v: f64) -> MetricFamily {
    family(d, vec![series(d, &[], v)])
}

/// One histogram series, labelled with `values`: cumulative buckets in
/// seconds from a µs hdrhistogram.
fn histogram(d: &Desc, values: &[&str], h: &HistSnapshot) -> Metric {
    let mut out = Histogram::default();
    out.set_sample_count(h.count());
    out.set_sample_sum(h.sum_us as f64 / 1e6);
    let bucket_list = d
        .buckets
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
    m.set_label(labels(d, values));
    m.set_histogram(out);
    m
}

/// The series of one per-core metric, with `worker` (if any) as the first
/// label value. A labelled family has one series per value of its enum,
/// zeros included, so every label value exists from the first scrape; a
/// value's text is split at `/` across the label names.
fn per_core(d: &Desc, worker: Option<&str>, values: Series<'_>) -> Vec<Metric> {
    debug_assert_eq!(
        matches!(values, Series::Histogram(_) | Series::Histograms(..)),
        d.kind == Kind::Histogram,
        "{} is declared with the wrong kind",
        d.name
    );
    let with = |text: &'static str| -> Vec<&str> {
        let parts = text.splitn(d.labels.len().max(1), '/');
        worker.into_iter().chain(parts).collect()
    };
    let mine: Vec<&str> = worker.into_iter().collect();
    match values {
        Series::One(v) => vec![series(d, &mine, v as f64)],
        Series::Labelled(texts, values) => texts
            .iter()
            .enumerate()
            .map(|(i, text)| series(d, &with(text), values.get(i).copied().unwrap_or(0) as f64))
            .collect(),
        Series::Histogram(h) => vec![histogram(d, &mine, h)],
        Series::Histograms(texts, hists) => texts
            .iter()
            .zip(hists)
            .map(|(text, h)| histogram(d, &with(text), h))
            .collect(),
    }
}

/// The per-core families in table order: node sums from `total`, and the
/// families declared [`Desc::per_worker`] from each core's own copy.
fn per_core_families(s: &Scrape<'_>) -> Vec<MetricFamily> {
    let mut fams = Vec::new();
    s.total.for_each_exported(|d, values| {
        let metrics = if d.per_worker {
            Vec::new()
        } else {
            per_core(d, None, values)
        };
        fams.push(family(d, metrics));
    });
    for (core, snap) in s.cores {
        let worker = core.to_string();
        let mut i = 0;
        snap.for_each_exported(|d, values| {
            if d.per_worker {
                if let Some(f) = fams.get_mut(i) {
                    f.mut_metric().extend(per_core(d, Some(&worker), values));
                }
            }
            i += 1;
        });
    }
    fams
}

/// The whole exposition for one scrape.
pub fn render(s: &Scrape<'_>) -> String {
    let workers = s
        .cores
        .iter()
        .map(|(core, st)| {
            let driver = if st.io_driver.is_empty() {
                "unknown"
            } else {
                st.io_driver
            };
            series(&n::WORKER_IO_DRIVER, &[&core.to_string(), driver], 1.0)
        })
        .collect();
    let mut fams = vec![
        family(
            &n::BUILD_INFO,
            vec![series(
                &n::BUILD_INFO,
                &[env!("CARGO_PKG_VERSION"), env!("CARGO_PKG_NAME")],
                1.0,
            )],
        ),
        family(&n::WORKER_IO_DRIVER, workers),
        single(&n::READY, f64::from(u8::from(s.ready))),
        single(&n::DRAINING, f64::from(u8::from(s.draining))),
        single(&n::STREAMS, s.streams as f64),
        family(
            &n::HLS_SESSIONS,
            vec![
                series(&n::HLS_SESSIONS, &["hls"], s.hls_sessions[0] as f64),
                series(&n::HLS_SESSIONS, &["dash"], s.hls_sessions[1] as f64),
            ],
        ),
    ];
    fams.extend(per_core_families(s));
    if !s.per_stream.is_empty() || s.per_stream_omitted > 0 {
        let each = |d: &Desc, value: &dyn Fn(&StreamSeries) -> f64| {
            let metrics = s
                .per_stream
                .iter()
                .map(|st| series(d, &[&st.key], value(st)))
                .collect();
            family(d, metrics)
        };
        fams.push(each(&n::STREAM_PLAYERS, &|st| st.players as f64));
        fams.push(each(&n::STREAM_BYTES_IN, &|st| st.bytes_in as f64));
        fams.push(each(&n::STREAM_UPTIME, &|st| st.uptime_secs));
        fams.push(single(
            &n::STREAM_SERIES_OMITTED,
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
    use crate::metrics::{CoreStats, Protocol};
    use std::time::Duration;

    /// A slip in a table line (a label name missing, a kind that does not
    /// fit the recorder, unsorted buckets) fails here, not on a dashboard.
    #[test]
    fn every_declaration_fits_its_recorder() {
        let mut seen = Vec::new();
        CoreStats::default()
            .snapshot()
            .for_each_exported(|d, values| {
                assert!(d.name.starts_with(n::PREFIX), "{}", d.name);
                assert!(!d.help.is_empty(), "{}", d.name);
                let histogram = matches!(values, Series::Histogram(_) | Series::Histograms(..));
                assert_eq!(d.kind == Kind::Histogram, histogram, "{}", d.name);
                assert!(
                    !d.labels.contains(&"worker"),
                    "{}: use per_worker()",
                    d.name
                );
                let fits = |texts: &[&str]| {
                    for text in texts {
                        let parts = text.split('/').count();
                        assert_eq!(parts, d.labels.len(), "{}: {text}", d.name);
                    }
                };
                match values {
                    Series::One(_) => assert!(d.labels.is_empty(), "{}", d.name),
                    Series::Labelled(texts, _) => fits(texts),
                    Series::Histogram(_) => assert!(d.labels.is_empty(), "{}", d.name),
                    Series::Histograms(texts, _) => fits(texts),
                }
                if histogram {
                    assert!(d.buckets.windows(2).all(|w| w[0] < w[1]), "{}", d.name);
                }
                assert!(!seen.contains(&d.name), "{} declared twice", d.name);
                seen.push(d.name);
            });
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let c = CoreStats::default();
        for d in [
            Duration::from_micros(80),
            Duration::from_millis(2),
            Duration::from_secs(5),
        ] {
            c.record_egress_n(Protocol::Rtmp, d, 1);
        }
        c.record_first_frame(Protocol::WsFlv, Duration::from_millis(30));
        c.set_player(None, Some(Protocol::HttpFlv));
        c.add_out(Protocol::HttpFlv, 1000);
        c.io_driver.set("epoll");
        let snap = c.snapshot();
        let text = render(&Scrape {
            cores: &[(0, &snap)],
            total: &snap,
            streams: 1,
            per_stream: &[StreamSeries {
                key: "live/a".into(),
                players: 2,
                bytes_in: 10,
                uptime_secs: 1.5,
            }],
            per_stream_omitted: 0,
            ready: true,
            draining: false,
            hls_sessions: [0, 0],
        });
        let rtmp = "cascade_ingest_to_egress_seconds_bucket{protocol=\"rtmp\"";
        assert!(
            text.contains(&format!("{rtmp},le=\"0.0001\"}} 1")),
            "{text}"
        );
        assert!(text.contains(&format!("{rtmp},le=\"0.0025\"}} 2")));
        assert!(text.contains(&format!("{rtmp},le=\"+Inf\"}} 3")));
        assert!(text.contains("cascade_ingest_to_egress_seconds_count{protocol=\"rtmp\"} 3"));
        assert!(text.contains("cascade_ingest_to_egress_seconds_count{protocol=\"ws-flv\"} 0"));
        assert!(text.contains("cascade_time_to_first_frame_seconds_count{protocol=\"ws-flv\"} 1"));
        assert!(text.contains("cascade_players{worker=\"0\",protocol=\"http-flv\"} 1"));
        assert!(text.contains("cascade_bytes_out_total{worker=\"0\",protocol=\"http-flv\"} 1000"));
        assert!(text.contains("cascade_messages_out_total{protocol=\"http-flv\"} 1"));
        assert!(text.contains("cascade_worker_io_driver{worker=\"0\",driver=\"epoll\"} 1"));
        assert!(text.contains("cascade_stream_players{stream=\"live/a\"} 2"));
        assert!(text.contains("cascade_auth_decision_seconds_count 0"));
        assert!(text.contains("cascade_connections{worker=\"0\",role=\"publisher\"} 0"));
        assert!(text.contains("cascade_connections_accepted_total{worker=\"0\"} 0"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with(n::PREFIX), "{line}");
        }
    }
}
