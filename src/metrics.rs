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
        }
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 60_000_000)
}

impl CoreStats {
    pub fn record_egress(&self, d: Duration) {
        let _ = self.ingest_to_egress_us.borrow_mut().record(micros(d));
    }

    pub fn record_first_frame(&self, d: Duration) {
        let _ = self.first_frame_us.borrow_mut().record(micros(d));
    }
}
