//! Renders merged statistics in the Prometheus text format with the
//! `prometheus` crate's encoder. Nothing here runs on a worker: the control
//! thread calls it with snapshots it collected.
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
    pub players: u64,
    /// Per-stream series, already filtered by configuration; empty when off.
    pub per_stream: &'a [StreamSeries],
    /// Streams left out because of `metrics.per_stream_max`.
    pub per_stream_omitted: u64,
    pub ready: bool,
    pub draining: bool,
}

/// `d`'s label names paired with `values`, in order; a missing value
/// exports as empty.
fn labels(d: &Desc, values: &[&str]) -> Vec<LabelPair> {
    d.labels
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut l = LabelPair::default();
            l.set_name((*name).to_string());
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

/// Cumulative buckets in seconds from a µs hdrhistogram.
fn histogram(d: &Desc, h: &HistSnapshot) -> MetricFamily {
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
    m.set_histogram(out);
    family(d, vec![m])
}

/// The family of one per-core metric. A labelled family has one series per
/// value of its enum, zeros included, so every label value exists from the
/// first scrape; a value's text is split at `/` across the label names.
fn per_core(d: &Desc, values: Series<'_>) -> MetricFamily {
    debug_assert_eq!(
        matches!(values, Series::Histogram(_)),
        d.kind == Kind::Histogram,
        "{} is declared with the wrong kind",
        d.name
    );
    match values {
        Series::One(v) => single(d, v as f64),
        Series::Labelled(texts, values) => {
            let metrics = texts
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let parts: Vec<&str> = text.splitn(d.labels.len().max(1), '/').collect();
                    series(d, &parts, values.get(i).copied().unwrap_or(0) as f64)
                })
                .collect();
            family(d, metrics)
        }
        Series::Histogram(h) => histogram(d, h),
    }
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
        single(&n::PLAYERS, s.players as f64),
    ];
    s.total
        .for_each_exported(|d, values| fams.push(per_core(d, values)));
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
    use crate::metrics::CoreStats;
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
                let histogram = matches!(values, Series::Histogram(_));
                assert_eq!(d.kind == Kind::Histogram, histogram, "{}", d.name);
                match values {
                    Series::One(_) => assert!(d.labels.is_empty(), "{}", d.name),
                    Series::Labelled(texts, _) => {
                        for text in texts {
                            let parts = text.split('/').count();
                            assert_eq!(parts, d.labels.len(), "{}: {text}", d.name);
                        }
                    }
                    Series::Histogram(_) => {
                        assert!(d.buckets.windows(2).all(|w| w[0] < w[1]), "{}", d.name);
                    }
                }
                assert!(!seen.contains(&d.name), "{} declared twice", d.name);
                seen.push(d.name);
            });
    }

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
