//! Connection limits at accept: a global count and a count per peer
//! address, shared by every worker (a mutex touched only at accept and at
//! close, never per frame), so the per-IP limit holds across cores.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Which limit refused a connection (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("limits.max_connections reached")]
    Total,
    #[error("limits.max_connections_per_ip reached")]
    PerIp,
}

#[derive(Default, Debug)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The node's connection counts.
#[derive(Default, Debug, Clone)]
pub struct ConnLimiter {
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection; dropping it gives its slot back.
#[derive(Debug)]
pub struct ConnPermit {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl ConnLimiter {
    pub fn new() -> ConnLimiter {
        ConnLimiter::default()
    }

    /// Admits a connection from `ip` if both limits allow it.
    pub fn admit(
        &self,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Result<ConnPermit, LimitExceeded> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= max_total {
            return Err(LimitExceeded::Total);
        }
        let n = c.per_ip.get(&ip).copied().unwrap_or(0);
        if n >= max_per_ip {
            return Err(LimitExceeded::PerIp);
        }
        c.total += 1;
        c.per_ip.insert(ip, n + 1);
        Ok(ConnPermit {
            counts: self.counts.clone(),
            ip,
        })
    }

    /// Connections admitted and not yet closed.
    pub fn total(&self) -> usize {
        self.counts.lock().map(|c| c.total).unwrap_or(0)
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_release() {
        let l = ConnLimiter::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = l.admit(a, 3, 2).unwrap();
        let _p2 = l.admit(a, 3, 2).unwrap();
        assert_eq!(l.admit(a, 3, 2).unwrap_err(), LimitExceeded::PerIp);
        let _p3 = l.admit(b, 3, 2).unwrap();
        assert_eq!(l.admit(b, 3, 2).unwrap_err(), LimitExceeded::Total);
        drop(p1);
        assert_eq!(l.total(), 2);
        assert!(l.admit(a, 3, 2).is_ok());
        // The permit above was dropped at once: its slot is back.
        assert_eq!(l.total(), 2);
    }
}
