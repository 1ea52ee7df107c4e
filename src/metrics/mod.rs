//! Per-core statistics, recorded on the core without atomics and read
//! (merged) off the hot path.
//!
//! Every counter is a `Cell` owned by one worker; the control thread asks
//! each core for a [`StatsSnapshot`] through the mesh and sums them, so no
//! frame ever touches a shared cache line. Names live in [`names`]; the
//! Prometheus rendering in [`export`].

pub mod export;
mod labels;
#[cfg(test)]
mod golden_tests;
pub mod names;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use hdrhistogram::Histogram;

pub use labels::*;

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

/// A copy of one histogram, merged across cores at scrape time.
#[derive(Debug, Clone)]
pub struct HistSnapshot {
    pub h: Histogram<u64>,
    pub sum_us: u64,
}

impl HistSnapshot {
    pub fn merge(&mut self, other: &HistSnapshot) {
        let _ = self.h.add(&other.h);
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
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

/// Latency histograms and counters of one worker.
#[derive(Default)]
pub struct CoreStats {
    /// From the publisher's last byte read to a player's write done.
    pub ingest_to_egress: Hist,
    /// From a play command to its first keyframe written.
    pub first_frame: Hist,
    pub handshake: Hist,
    /// Declared for the auth hook; no observations until it exists.
    pub auth_decision: Hist,
    /// Edge pulls: dial to the origin's NetStream.Play.Start.
    pub origin_connect: Hist,
    /// Connections accepted by this worker's listener.
    pub connections: Cell<u64>,
    /// Live connections (gauge).
    pub connections_active: Cell<u64>,
    /// Live connections by what they do (gauge).
    pub by_role: Counters<ConnRole>,
    pub rejected: Counters<RejectReason>,
    /// Publishes and plays refused by `[auth]`.
    pub auth_rejected: Counters<AuthRejection>,
    pub handshake_failures: Counters<HandshakeFailure>,
    /// TLS handshakes on the RTMPS listener, by result.
    pub tls_handshakes: Counters<TlsHandshake>,
    pub protocol_errors: Counters<ProtocolErrorKind>,
    /// Connections closed or refused by a `[limits]` key.
    pub limit_hits: Counters<LimitKind>,
    pub dropped: Counters<DropReason>,
    pub kicks: Counters<KickReason>,
    pub bytes_in: Cell<u64>,
    pub messages_in: Cell<u64>,
    /// Bytes and media messages queued to players (serialized once, counted per player).
    pub bytes_out: Cell<u64>,
    pub messages_out: Cell<u64>,
    pub slow_disconnects: Cell<u64>,
    pub publisher_reconnects: Cell<u64>,
    /// Edge pulls running on this core (gauge).
    pub pulls_active: Cell<u64>,
    /// Edge pulls started (one per stream per node, not per attempt).
    pub pull_starts: Cell<u64>,
    /// Failed attempts to pull from an origin, by reason.
    pub pull_failures: Counters<PullFailure>,
    /// A pull moved to another origin than the one it last used.
    pub failovers: Cell<u64>,
    /// Outbound publishes (forwards, pushes) running on this core (gauge).
    pub outbound_active: Counters<OutboundKind>,
    /// Outbound publishes started (one per stream per target).
    pub outbound_starts: Counters<OutboundKind>,
    pub outbound_failures: Counters<OutboundFailure>,
    /// Attempts after the first of an outbound publish.
    pub outbound_reconnects: Counters<OutboundKind>,
    /// Bytes written to origins and push targets.
    pub outbound_bytes: Counters<OutboundKind>,
    /// "io_uring" or "epoll", set when the worker's runtime starts.
    pub io_driver: Cell<&'static str>,
}

/// A copy of one core's statistics, taken on that core and sent to the
/// control plane, where copies from all cores are merged.
#[derive(Debug, Clone)]
pub struct StatsSnapshot {
    pub ingest_to_egress: HistSnapshot,
    pub first_frame: HistSnapshot,
    pub handshake: HistSnapshot,
    pub auth_decision: HistSnapshot,
    pub origin_connect: HistSnapshot,
    pub connections: u64,
    pub connections_active: u64,
    pub by_role: Vec<u64>,
    pub rejected: Vec<u64>,
    pub auth_rejected: Vec<u64>,
    pub handshake_failures: Vec<u64>,
    pub tls_handshakes: Vec<u64>,
    pub protocol_errors: Vec<u64>,
    pub limit_hits: Vec<u64>,
    pub dropped: Vec<u64>,
    pub kicks: Vec<u64>,
    pub bytes_in: u64,
    pub messages_in: u64,
    pub bytes_out: u64,
    pub messages_out: u64,
    pub frames_dropped: u64,
    pub slow_disconnects: u64,
    pub publisher_reconnects: u64,
    pub pulls_active: u64,
    pub pull_starts: u64,
    pub pull_failures: Vec<u64>,
    pub failovers: u64,
    pub outbound_active: Vec<u64>,
    pub outbound_starts: Vec<u64>,
    pub outbound_failures: Vec<u64>,
    pub outbound_reconnects: Vec<u64>,
    pub outbound_bytes: Vec<u64>,
    pub io_driver: &'static str,
}

fn add_vec(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.wrapping_add(*y);
    }
}

impl StatsSnapshot {
    /// Adds another core's figures into this one.
    pub fn merge(&mut self, o: &StatsSnapshot) {
        self.ingest_to_egress.merge(&o.ingest_to_egress);
        self.first_frame.merge(&o.first_frame);
        self.handshake.merge(&o.handshake);
        self.auth_decision.merge(&o.auth_decision);
        self.origin_connect.merge(&o.origin_connect);
        self.connections += o.connections;
        self.connections_active += o.connections_active;
        add_vec(&mut self.by_role, &o.by_role);
        add_vec(&mut self.rejected, &o.rejected);
        add_vec(&mut self.auth_rejected, &o.auth_rejected);
        add_vec(&mut self.handshake_failures, &o.handshake_failures);
        add_vec(&mut self.tls_handshakes, &o.tls_handshakes);
        add_vec(&mut self.protocol_errors, &o.protocol_errors);
        add_vec(&mut self.limit_hits, &o.limit_hits);
        add_vec(&mut self.dropped, &o.dropped);
        add_vec(&mut self.kicks, &o.kicks);
        self.bytes_in += o.bytes_in;
        self.messages_in += o.messages_in;
        self.bytes_out += o.bytes_out;
        self.messages_out += o.messages_out;
        self.frames_dropped += o.frames_dropped;
        self.slow_disconnects += o.slow_disconnects;
        self.publisher_reconnects += o.publisher_reconnects;
        self.pulls_active += o.pulls_active;
        self.pull_starts += o.pull_starts;
        add_vec(&mut self.pull_failures, &o.pull_failures);
        self.failovers += o.failovers;
        add_vec(&mut self.outbound_active, &o.outbound_active);
        add_vec(&mut self.outbound_starts, &o.outbound_starts);
        add_vec(&mut self.outbound_failures, &o.outbound_failures);
        add_vec(&mut self.outbound_reconnects, &o.outbound_reconnects);
        add_vec(&mut self.outbound_bytes, &o.outbound_bytes);
    }
}

fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

impl CoreStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let dropped = self.dropped.values();
        StatsSnapshot {
            ingest_to_egress: self.ingest_to_egress.snapshot(),
            first_frame: self.first_frame.snapshot(),
            handshake: self.handshake.snapshot(),
            auth_decision: self.auth_decision.snapshot(),
            origin_connect: self.origin_connect.snapshot(),
            connections: self.connections.get(),
            connections_active: self.connections_active.get(),
            by_role: self.by_role.values(),
            rejected: self.rejected.values(),
            auth_rejected: self.auth_rejected.values(),
            handshake_failures: self.handshake_failures.values(),
            tls_handshakes: self.tls_handshakes.values(),
            protocol_errors: self.protocol_errors.values(),
            limit_hits: self.limit_hits.values(),
            // The historical figure: frames a player's full queue refused.
            frames_dropped: self.dropped.get(DropReason::QueueFull),
            dropped,
            kicks: self.kicks.values(),
            bytes_in: self.bytes_in.get(),
            messages_in: self.messages_in.get(),
            bytes_out: self.bytes_out.get(),
            messages_out: self.messages_out.get(),
            slow_disconnects: self.slow_disconnects.get(),
            publisher_reconnects: self.publisher_reconnects.get(),
            pulls_active: self.pulls_active.get(),
            pull_starts: self.pull_starts.get(),
            pull_failures: self.pull_failures.values(),
            failovers: self.failovers.get(),
            outbound_active: self.outbound_active.values(),
            outbound_starts: self.outbound_starts.values(),
            outbound_failures: self.outbound_failures.values(),
            outbound_reconnects: self.outbound_reconnects.values(),
            outbound_bytes: self.outbound_bytes.values(),
            io_driver: self.io_driver.get(),
        }
    }

    /// Frames a slow player's full queue refused.
    pub fn add_dropped(&self, n: u64) {
        self.dropped.add(DropReason::QueueFull, n);
    }

    pub fn record_egress(&self, d: Duration) {
        self.ingest_to_egress.record(d);
    }

    /// `n` players' sends of one frame that completed together.
    pub fn record_egress_n(&self, d: Duration, n: u64) {
        self.ingest_to_egress.record_n(d, n);
    }

    pub fn record_first_frame(&self, d: Duration) {
        self.first_frame.record(d);
    }

    pub fn add_in(&self, bytes: u64) {
        add(&self.bytes_in, bytes);
    }

    /// One media message fanned out to `players` players, `bytes` each.
    pub fn add_out(&self, players: u64, bytes: u64) {
        add(&self.messages_out, players);
        add(&self.bytes_out, players.wrapping_mul(bytes));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sums_counters_and_histograms() {
        let a = CoreStats::default();
        let b = CoreStats::default();
        a.record_egress(Duration::from_micros(100));
        b.record_egress(Duration::from_millis(3));
        a.add_dropped(2);
        b.dropped.inc(DropReason::AwaitKeyframe);
        b.set_role(None, Some(ConnRole::Player));
        b.set_role(Some(ConnRole::Player), Some(ConnRole::Idle));
        let mut s = a.snapshot();
        s.merge(&b.snapshot());
        assert_eq!(s.ingest_to_egress.count(), 2);
        assert_eq!(s.ingest_to_egress.sum_us, 3100);
        assert_eq!(s.ingest_to_egress.count_le(1000), 1);
        assert_eq!(s.frames_dropped, 2);
        assert_eq!(s.dropped, vec![2, 1]);
        assert_eq!(s.by_role[ConnRole::Player.index()], 0);
        assert_eq!(s.by_role[ConnRole::Idle.index()], 1);
    }

    #[test]
    fn gauges_never_underflow() {
        let a = CoreStats::default();
        a.set_role(Some(ConnRole::Publisher), None);
        assert_eq!(a.by_role.get(ConnRole::Publisher), 0);
    }
}
