//! Per-core statistics, recorded on the core without atomics and read
//! (merged) off the hot path.
//!
//! Every counter is a `Cell` owned by one worker; a scrape asks each core
//! for a [`StatsSnapshot`] through the control mesh and sums them, so no
//! frame ever touches a shared cache line.
//!
//! Each metric is declared once, in [`names`]: the per-core ones as lines
//! of a table from which `declare::per_core!` writes `CoreStats`,
//! `StatsSnapshot`, the copy and the merge. The recorder types (`Cell`,
//! [`Counters`], [`Hist`], [`Hists`]) live here, the label enums in `labels.rs`, the
//! Prometheus rendering in [`export`].

pub mod declare;
pub mod export;
#[cfg(test)]
mod golden_tests;
mod labels;
pub mod names;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use hdrhistogram::Histogram;

pub use labels::*;
pub use names::{CoreStats, StatsSnapshot};

/// Largest value a histogram holds, in µs (a minute).
const HIST_MAX_US: u64 = 60_000_000;

/// A family of counters indexed by a [`Label`] enum.
pub struct Counters<L: Label> {
    cells: Vec<Cell<u64>>,
    _label: std::marker::PhantomData<L>,
}

impl<L: Label> Default for Counters<L> {
    fn default() -> Self {
        Counters {
            cells: (0..L::COUNT).map(|_| Cell::new(0)).collect(),
            _label: std::marker::PhantomData,
        }
    }
}

impl<L: Label> Counters<L> {
    pub fn add(&self, label: L, n: u64) {
        if let Some(c) = self.cells.get(label.index()) {
            c.set(c.get().wrapping_add(n));
        }
    }
    pub fn inc(&self, label: L) {
        self.add(label, 1);
    }
    /// For gauges: never below zero.
    pub fn dec(&self, label: L) {
        if let Some(c) = self.cells.get(label.index()) {
            c.set(c.get().saturating_sub(1));
        }
    }
    pub fn get(&self, label: L) -> u64 {
        self.cells.get(label.index()).map_or(0, Cell::get)
    }
    pub fn values(&self) -> Vec<u64> {
        self.cells.iter().map(Cell::get).collect()
    }
}

/// An hdrhistogram in µs plus the exact sum Prometheus wants.
pub struct Hist {
    h: RefCell<Histogram<u64>>,
    sum_us: Cell<u64>,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            h: RefCell::new(
                Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static histogram bounds"),
            ),
            sum_us: Cell::new(0),
        }
    }
}

impl Hist {
    pub fn record(&self, d: Duration) {
        self.record_n(d, 1);
    }

    /// `n` observations of the same value (a batch that finished together).
    pub fn record_n(&self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let us = (d.as_micros().min(u128::from(HIST_MAX_US)) as u64).max(1);
        let _ = self.h.borrow_mut().record_n(us, n);
        self.sum_us
            .set(self.sum_us.get().saturating_add(us.saturating_mul(n)));
    }
    pub fn snapshot(&self) -> HistSnapshot {
        HistSnapshot {
            h: self.h.borrow().clone(),
            sum_us: self.sum_us.get(),
        }
    }
}

/// A family of histograms indexed by a [`Label`] enum (one per protocol,
/// say): the hot path indexes an array, as [`Counters`] does.
pub struct Hists<L: Label> {
    hists: Vec<Hist>,
    _label: std::marker::PhantomData<L>,
}

impl<L: Label> Default for Hists<L> {
    fn default() -> Self {
        Hists {
            hists: (0..L::COUNT).map(|_| Hist::default()).collect(),
            _label: std::marker::PhantomData,
        }
    }
}

impl<L: Label> Hists<L> {
    pub fn record(&self, label: L, d: Duration) {
        self.record_n(label, d, 1);
    }

    /// `n` observations of the same value under `label`.
    pub fn record_n(&self, label: L, d: Duration, n: u64) {
        if let Some(h) = self.hists.get(label.index()) {
            h.record_n(d, n);
        }
    }

    pub fn snapshots(&self) -> Vec<HistSnapshot> {
        self.hists.iter().map(Hist::snapshot).collect()
    }
}

/// A copy of one histogram, merged across cores at scrape time.
#[derive(Debug, Clone)]
pub struct HistSnapshot {
    pub h: Histogram<u64>,
    pub sum_us: u64,
}

impl HistSnapshot {
    /// Every label's observations in one histogram (the JSON stats show
    /// the node's latency whatever the protocol).
    pub fn sum_of(parts: &[HistSnapshot]) -> HistSnapshot {
        let mut total = Hist::default().snapshot();
        for p in parts {
            declare::Merge::merge(&mut total, p);
        }
        total
    }

    pub fn count(&self) -> u64 {
        self.h.len()
    }
    /// Observations at or below `us` (to the histogram's 3 significant digits).
    pub fn count_le(&self, us: u64) -> u64 {
        if us == 0 {
            return 0;
        }
        self.h.count_between(0, us)
    }
}

fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

impl CoreStats {
    /// Frames a slow player's full queue refused.
    pub fn add_dropped(&self, n: u64) {
        self.dropped.add(DropReason::QueueFull, n);
    }

    /// `n` players' sends of one frame that completed together.
    pub fn record_egress_n(&self, protocol: Protocol, d: Duration, n: u64) {
        self.ingest_to_egress.record_n(protocol, d, n);
    }

    pub fn record_first_frame(&self, protocol: Protocol, d: Duration) {
        self.first_frame.record(protocol, d);
    }

    pub fn add_in(&self, bytes: u64) {
        add(&self.bytes_in, bytes);
    }

    /// One media message of `bytes` accepted for one player.
    pub fn add_out(&self, protocol: Protocol, bytes: u64) {
        self.messages_out.inc(protocol);
        self.bytes_out.add(protocol, bytes);
    }

    /// A connection moved from one role to another (gauge bookkeeping).
    pub fn set_role(&self, from: Option<ConnRole>, to: Option<ConnRole>) {
        if let Some(f) = from {
            self.by_role.dec(f);
        }
        if let Some(t) = to {
            self.by_role.inc(t);
        }
    }

    /// A connection started or stopped playing, or changed how (players
    /// gauge bookkeeping, by protocol).
    pub fn set_player(&self, from: Option<Protocol>, to: Option<Protocol>) {
        if let Some(f) = from {
            self.players.dec(f);
        }
        if let Some(t) = to {
            self.players.inc(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sums_counters_and_histograms() {
        let a = CoreStats::default();
        let b = CoreStats::default();
        a.record_egress_n(Protocol::Rtmp, Duration::from_micros(100), 1);
        b.record_egress_n(Protocol::Rtmp, Duration::from_millis(3), 1);
        b.record_egress_n(Protocol::HttpFlv, Duration::from_millis(5), 2);
        a.add_out(Protocol::WsFlv, 10);
        b.add_out(Protocol::WsFlv, 20);
        b.add_out(Protocol::Rtmp, 7);
        a.add_dropped(2);
        b.dropped.inc(DropReason::AwaitKeyframe);
        b.set_role(None, Some(ConnRole::Player));
        b.set_role(Some(ConnRole::Player), Some(ConnRole::Idle));
        let mut s = a.snapshot();
        s.merge(&b.snapshot());
        let rtmp = &s.ingest_to_egress[Protocol::Rtmp.index()];
        assert_eq!(rtmp.count(), 2);
        assert_eq!(rtmp.sum_us, 3100);
        assert_eq!(rtmp.count_le(1000), 1);
        assert_eq!(s.ingest_to_egress[Protocol::HttpFlv.index()].count(), 2);
        assert_eq!(s.ingest_to_egress[Protocol::WsFlv.index()].count(), 0);
        assert_eq!(HistSnapshot::sum_of(&s.ingest_to_egress).count(), 4);
        assert_eq!(s.bytes_out, vec![7, 0, 30, 0, 0]);
        assert_eq!(s.messages_out, vec![1, 0, 2, 0, 0]);
        assert_eq!(s.frames_dropped, 2);
        assert_eq!(s.dropped, vec![2, 1]);
        assert_eq!(s.by_role[ConnRole::Player.index()], 0);
        assert_eq!(s.by_role[ConnRole::Idle.index()], 1);
    }

    #[test]
    fn merge_sums_gauges_and_keeps_the_first_io_driver() {
        let a = CoreStats::default();
        let b = CoreStats::default();
        a.io_driver.set("io_uring");
        b.io_driver.set("epoll");
        a.connections_active.set(2);
        b.connections_active.set(3);
        let mut s = a.snapshot();
        s.merge(&b.snapshot());
        assert_eq!(s.connections_active, 5);
        assert_eq!(s.io_driver, "io_uring");
    }

    #[test]
    fn gauges_never_underflow() {
        let a = CoreStats::default();
        a.set_role(Some(ConnRole::Publisher), None);
        assert_eq!(a.by_role.get(ConnRole::Publisher), 0);
        a.set_player(Some(Protocol::HttpFlv), None);
        assert_eq!(a.players.get(Protocol::HttpFlv), 0);
    }

    #[test]
    fn a_player_that_changes_protocol_moves_between_gauges() {
        let a = CoreStats::default();
        a.set_player(None, Some(Protocol::Rtmp));
        a.set_player(Some(Protocol::Rtmp), Some(Protocol::WsFlv));
        assert_eq!(a.players.values(), vec![0, 0, 1, 0, 0]);
    }
}
