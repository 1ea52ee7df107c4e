//! Per-core statistics, recorded on the core without atomics and read
//! (merged) off the hot path.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latency histograms and counters of one worker.
pub struct CoreStats {
    /// Microseconds from the publisher's last byte read to a player's write done.
    pub ingest_to_egress_us: RefCell<Histogram<u64>>,
    /// Microseconds from a play command to its first keyframe written.
    pub first_frame_us: RefCell<Histogram<u64>>,
    pub frames_dropped: Cell<u64>,
    pub slow_disconnects: Cell<u64>,
    pub connections: Cell<u64>,
    pub connections_active: Cell<u64>,
}

/// A copy of one core's statistics, taken on that core and sent to the
/// control plane, where copies from all cores are merged.
#[derive(Debug, Clone)]
pub struct StatsSnapshot {
    pub ingest_to_egress_us: Histogram<u64>,
    pub first_frame_us: Histogram<u64>,
    pub frames_dropped: u64,
    pub slow_disconnects: u64,
    pub connections: u64,
    pub connections_active: u64,
}

impl StatsSnapshot {
    /// Adds another core's figures into this one.
    pub fn merge(&mut self, other: &StatsSnapshot) {
        let _ = self.ingest_to_egress_us.add(&other.ingest_to_egress_us);
        let _ = self.first_frame_us.add(&other.first_frame_us);
        self.frames_dropped += other.frames_dropped;
        self.slow_disconnects += other.slow_disconnects;
        self.connections += other.connections;
        self.connections_active += other.connections_active;
    }
}

impl Default for CoreStats {
    fn default() -> Self {
        let h = || Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds");
        CoreStats {
            ingest_to_egress_us: RefCell::new(h()),
            first_frame_us: RefCell::new(h()),
            frames_dropped: Cell::new(0),
            slow_disconnects: Cell::new(0),
            connections: Cell::new(0),
            connections_active: Cell::new(0),
        }
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 60_000_000)
}

impl CoreStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            ingest_to_egress_us: self.ingest_to_egress_us.borrow().clone(),
            first_frame_us: self.first_frame_us.borrow().clone(),
            frames_dropped: self.frames_dropped.get(),
            slow_disconnects: self.slow_disconnects.get(),
            connections: self.connections.get(),
            connections_active: self.connections_active.get(),
        }
    }

    pub fn add_dropped(&self, n: u64) {
        self.frames_dropped.set(self.frames_dropped.get() + n);
    }

    pub fn record_egress(&self, d: Duration) {
        let _ = self.ingest_to_egress_us.borrow_mut().record(micros(d));
    }

    pub fn record_first_frame(&self, d: Duration) {
        let _ = self.first_frame_us.borrow_mut().record(micros(d));
    }
}
