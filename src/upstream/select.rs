//! Which origin to ask for a stream, in which order.
//!
//! Failover walks the configured list from the origin that last worked
//! (sticky per origin list, node-wide: see [`Sticky`]); hash ranks the origins by rendezvous (highest
//! random weight) hashing of the stream key, so every edge with the same
//! list asks the same origin for a stream, and when one origin dies only
//! the streams it ranked first move.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// How origins are chosen (`edge.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Failover,
    Hash,
}

impl Mode {
    pub fn parse(s: &str) -> Mode {
        if s == "hash" {
            Mode::Hash
        } else {
            Mode::Failover
        }
    }
}

/// Failover stickiness of one origin list: the index of the origin in it
/// that last delivered. Every pull and forward over the same list (the
/// global `[edge] origins`, or one app's own) shares one, on every core;
/// different lists never share, since an index means nothing in another
/// list.
#[derive(Debug, Clone, Default)]
pub struct Sticky(Arc<AtomicUsize>);

/// The stickiness of every origin list seen so far, keyed by the list.
/// Looked up once per pull or forward start, never per frame; the lists
/// come from configuration, so the map stays small.
static STICKY: OnceLock<Mutex<HashMap<Vec<String>, Sticky>>> = OnceLock::new();

impl Sticky {
    /// The shared stickiness of the list `origins`.
    pub fn of(origins: &[String]) -> Sticky {
        let map = STICKY.get_or_init(Default::default);
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(origins.to_vec()).or_default().clone()
    }

    /// Remembers a healthy origin of this list for the next failover ordering.
    pub fn mark_healthy(&self, index: usize) {
        self.0.store(index, Ordering::Relaxed);
    }

    fn preferred(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Indices of `origins` in the order to try them for `key`; `sticky` is
/// the list's own (see [`Sticky::of`]).
pub fn order(mode: Mode, origins: &[String], key: &str, sticky: &Sticky) -> Vec<usize> {
    let n = origins.len();
    match mode {
        Mode::Failover => {
            let first = sticky.preferred() % n.max(1);
            (0..n).map(|i| (first + i) % n).collect()
        }
        Mode::Hash => {
            let mut ranked: Vec<(u64, usize)> = origins
                .iter()
                .enumerate()
                .map(|(i, o)| (weight(o, key), i))
                .collect();
            // Highest weight first; the index breaks (improbable) ties.
            ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            ranked.into_iter().map(|(_, i)| i).collect()
        }
    }
}

/// A stable 64-bit weight of (origin, key): FNV-1a then a SplitMix64
/// finalizer. Fixed, so edges of different builds agree.
fn weight(origin: &str, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in origin.bytes().chain([0u8]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("rtmp://10.0.0.{i}/live")).collect()
    }

    #[test]
    fn hash_is_stable_and_spreads() {
        let o = list(2);
        let mut firsts = [0usize; 2];
        for k in 0..200 {
            let key = format!("live/s{k}");
            let a = order(Mode::Hash, &o, &key, &Sticky::default());
            assert_eq!(
                a,
                order(Mode::Hash, &o, &key, &Sticky::default()),
                "deterministic"
            );
            assert_eq!(a.len(), 2);
            firsts[a[0]] += 1;
        }
        assert!(firsts[0] > 60 && firsts[1] > 60, "{firsts:?}");
    }

    #[test]
    fn hash_moves_only_a_dead_origins_streams() {
        let three = list(3);
        let two: Vec<String> = three[..2].to_vec();
        for k in 0..200 {
            let key = format!("live/s{k}");
            let before = order(Mode::Hash, &three, &key, &Sticky::default())[0];
            let after = order(Mode::Hash, &two, &key, &Sticky::default())[0];
            if before < 2 {
                assert_eq!(before, after, "{key} moved although its origin lives");
            }
        }
    }

    #[test]
    fn failover_starts_at_the_healthy_origin() {
        let o = list(3);
        let s = Sticky::default();
        s.mark_healthy(1);
        assert_eq!(order(Mode::Failover, &o, "live/x", &s), vec![1, 2, 0]);
        s.mark_healthy(0);
        assert_eq!(order(Mode::Failover, &o, "live/x", &s), vec![0, 1, 2]);
        assert!(order(Mode::Failover, &[], "live/x", &s).is_empty());
    }

    #[test]
    fn each_origin_list_keeps_its_own_stickiness() {
        // Lists of their own, so other tests cannot touch them.
        let a: Vec<String> = (0..3).map(|i| format!("rtmp://a{i}.sticky/live")).collect();
        let b: Vec<String> = (0..3).map(|i| format!("rtmp://b{i}.sticky/live")).collect();
        Sticky::of(&a).mark_healthy(2);
        // b's pulls still start at its first origin.
        assert_eq!(
            order(Mode::Failover, &b, "k", &Sticky::of(&b)),
            vec![0, 1, 2]
        );
        Sticky::of(&b).mark_healthy(1);
        assert_eq!(
            order(Mode::Failover, &a, "k", &Sticky::of(&a)),
            vec![2, 0, 1]
        );
        assert_eq!(
            order(Mode::Failover, &b, "k", &Sticky::of(&b)),
            vec![1, 2, 0]
        );
    }
}
