//! How a metric is declared, and the macro that turns the table in
//! [`super::names`] into the per-core structs.
//!
//! A per-core metric used to be written six times: its name, its field on
//! `CoreStats`, its field on `StatsSnapshot`, the line copying it, the line
//! merging it and the call rendering it. Five of those only repeat what the
//! field's type already says (a `Cell` copies to a `u64` and sums, a
//! `Counters<L>` copies to one value per label, a `Hist` to a histogram),
//! so `per_core!` writes them from one line per metric, and the traits
//! here say, once per recorder type, how it is copied, merged and shown.
//! What stays by hand is what only a person can say: the name, the help,
//! the label names, the kind and the buckets, in a [`Desc`].

use std::cell::Cell;

use super::{Counters, Hist, HistSnapshot, Hists, Label};

/// The Prometheus type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Everything a scraper learns about one metric besides its values.
#[derive(Debug, Clone, Copy)]
pub struct Desc {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Label names, in export order. A label enum's text carries one part
    /// per name, joined by `/` (`publish/bad_key` is `action`, `reason`).
    pub labels: &'static [&'static str],
    /// Upper bounds in seconds; histograms only.
    pub buckets: &'static [f64],
    /// Exported once per worker, with a `worker` label before `labels`,
    /// rather than once for the node (see [`Desc::per_worker`]).
    pub per_worker: bool,
}

const fn desc(name: &'static str, help: &'static str, kind: Kind) -> Desc {
    Desc {
        name,
        help,
        kind,
        labels: &[],
        buckets: &[],
        per_worker: false,
    }
}

pub const fn counter(name: &'static str, help: &'static str) -> Desc {
    desc(name, help, Kind::Counter)
}

pub const fn gauge(name: &'static str, help: &'static str) -> Desc {
    desc(name, help, Kind::Gauge)
}

pub const fn histogram(name: &'static str, help: &'static str, buckets: &'static [f64]) -> Desc {
    Desc {
        buckets,
        ..desc(name, help, Kind::Histogram)
    }
}

impl Desc {
    /// The same metric with these label names.
    pub const fn by(self, labels: &'static [&'static str]) -> Desc {
        Desc { labels, ..self }
    }

    /// The same metric exported per worker: one series per worker and
    /// label value, each with `worker="N"` first, and no node sum beside
    /// them (a sum next to its parts would double every `sum()`; queries
    /// `sum by` what they need). Meant for the few families where an
    /// uneven spread across cores is worth seeing: connections, players,
    /// bytes.
    pub const fn per_worker(self) -> Desc {
        Desc {
            per_worker: true,
            ..self
        }
    }

    /// Every label name of a series, `worker` included where it applies.
    pub fn label_names(&self) -> impl Iterator<Item = &'static str> {
        let worker: &'static [&'static str] = if self.per_worker { &["worker"] } else { &[] };
        worker.iter().chain(self.labels).copied()
    }
}

/// A recorder a worker writes on its hot path, and the plain copy of it
/// that travels to the control plane.
pub trait Record: Default {
    type Snap: Clone + std::fmt::Debug + Merge;
    fn copy(&self) -> Self::Snap;
}

/// Adds another core's copy into this one.
pub trait Merge {
    fn merge(&mut self, other: &Self);
}

/// A copy's values as the exporter walks them.
pub enum Series<'a> {
    One(u64),
    /// Each label text of the enum with its value.
    Labelled(&'static [&'static str], &'a [u64]),
    Histogram(&'a HistSnapshot),
    /// One histogram per label text of the enum.
    Histograms(&'static [&'static str], &'a [HistSnapshot]),
}

/// A recorder whose copy is exported as a family.
pub trait Exported: Record {
    fn series(snap: &Self::Snap) -> Series<'_>;
}

impl Record for Cell<u64> {
    type Snap = u64;
    fn copy(&self) -> u64 {
        self.get()
    }
}

impl Exported for Cell<u64> {
    fn series(snap: &u64) -> Series<'_> {
        Series::One(*snap)
    }
}

impl Merge for u64 {
    fn merge(&mut self, other: &u64) {
        *self = self.wrapping_add(*other);
    }
}

/// A name set once per core (the IO driver): not summed, the first kept.
impl Record for Cell<&'static str> {
    type Snap = &'static str;
    fn copy(&self) -> &'static str {
        self.get()
    }
}

impl Merge for &'static str {
    fn merge(&mut self, _other: &Self) {}
}

impl<L: Label> Record for Counters<L> {
    type Snap = Vec<u64>;
    fn copy(&self) -> Vec<u64> {
        self.values()
    }
}

impl<L: Label> Exported for Counters<L> {
    fn series(snap: &Vec<u64>) -> Series<'_> {
        Series::Labelled(L::NAMES, snap)
    }
}

impl Merge for Vec<u64> {
    fn merge(&mut self, other: &Vec<u64>) {
        if self.len() < other.len() {
            self.resize(other.len(), 0);
        }
        for (x, y) in self.iter_mut().zip(other) {
            *x = x.wrapping_add(*y);
        }
    }
}

impl Record for Hist {
    type Snap = HistSnapshot;
    fn copy(&self) -> HistSnapshot {
        self.snapshot()
    }
}

impl Exported for Hist {
    fn series(snap: &HistSnapshot) -> Series<'_> {
        Series::Histogram(snap)
    }
}

impl Merge for HistSnapshot {
    fn merge(&mut self, other: &HistSnapshot) {
        let _ = self.h.add(&other.h);
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }
}

impl<L: Label> Record for Hists<L> {
    type Snap = Vec<HistSnapshot>;
    fn copy(&self) -> Vec<HistSnapshot> {
        self.snapshots()
    }
}

impl<L: Label> Exported for Hists<L> {
    fn series(snap: &Vec<HistSnapshot>) -> Series<'_> {
        Series::Histograms(L::NAMES, snap)
    }
}

impl Merge for Vec<HistSnapshot> {
    fn merge(&mut self, other: &Vec<HistSnapshot>) {
        // Both sides come from the same enum, so they have the same length;
        // a longer one (a newer peer, in principle) keeps its extra parts.
        for (i, h) in other.iter().enumerate() {
            match self.get_mut(i) {
                Some(mine) => mine.merge(h),
                None => self.push(h.clone()),
            }
        }
    }
}

/// Writes `CoreStats` (the recorders), `StatsSnapshot` (their copies),
/// `CoreStats::snapshot`, `StatsSnapshot::merge` and
/// `StatsSnapshot::for_each_exported` from one line per metric:
///
/// ```text
/// recorded {
///     /// doc comment, kept on the CoreStats field
///     field: RecorderType => Desc;   // exported as a family
///     field: RecorderType;           // copied and merged, not exported
/// }
/// derived {
///     // a snapshot field computed from the recorders when the copy is taken
///     field: Type = |core: &CoreStats| value;
/// }
/// ```
macro_rules! per_core {
    (
        recorded {
            $( $(#[$doc:meta])* $field:ident : $ty:ty $(=> $desc:expr)? ; )+
        }
        derived {
            $( $(#[$ddoc:meta])* $dfield:ident : $dty:ty = $dfrom:expr ; )*
        }
    ) => {
        /// Latency histograms, counters and gauges of one worker.
        #[derive(Default)]
        pub struct CoreStats {
            $( $(#[$doc])* pub $field: $ty, )+
        }

        /// A copy of one core's statistics, taken on that core and sent to
        /// the control plane, where copies from all cores are merged.
        #[derive(Debug, Clone)]
        pub struct StatsSnapshot {
            $( pub $field: <$ty as $crate::metrics::declare::Record>::Snap, )+
            $( $(#[$ddoc])* pub $dfield: $dty, )*
        }

        impl CoreStats {
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot {
                    $( $field: $crate::metrics::declare::Record::copy(&self.$field), )+
                    $( $dfield: ($dfrom)(self), )*
                }
            }
        }

        impl StatsSnapshot {
            /// Adds another core's figures into this one.
            pub fn merge(&mut self, o: &StatsSnapshot) {
                use $crate::metrics::declare::Merge;
                $( self.$field.merge(&o.$field); )+
                $( self.$dfield.merge(&o.$dfield); )*
            }

            /// Each exported metric with its values, in table order.
            pub fn for_each_exported(
                &self,
                mut f: impl FnMut(&$crate::metrics::declare::Desc, $crate::metrics::declare::Series<'_>),
            ) {
                $( $(
                    f(&$desc, <$ty as $crate::metrics::declare::Exported>::series(&self.$field));
                )? )+
            }
        }
    };
}
pub(super) use per_core;
