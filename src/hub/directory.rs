//! The stream directory: stream key -> owning core. The only structure
//! shared by all cores; touched when a stream starts or ends, when a
//! publisher takes over a stream in its grace, and when a core gets its
//! first player of a stream. Never per frame.

use std::collections::HashMap;
use std::sync::Mutex;

use super::HubError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub owner: usize,
    pub publishing: bool,
    /// Last timestamp players saw, kept while no one publishes, so a new
    /// publisher continues the clock monotonically.
    pub last_ts: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    New,
    /// A stream in its grace: players are waiting on `prev_owner`'s core(s).
    Takeover {
        prev_owner: usize,
        last_ts: Option<u32>,
    },
}

pub struct Directory {
    map: Mutex<HashMap<String, Entry>>,
    max_streams: usize,
}

impl Directory {
    pub fn new(max_streams: usize) -> Directory {
        Directory {
            map: Mutex::new(HashMap::new()),
            max_streams,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere while holding this lock must not take the node down.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims `key` for a publisher on `core`.
    pub fn claim(&self, key: &str, core: usize) -> Result<Claim, HubError> {
        let mut map = self.lock();
        if let Some(e) = map.get_mut(key) {
            if e.publishing {
                return Err(HubError::InUse(key.to_string()));
            }
            let claim = Claim::Takeover {
                prev_owner: e.owner,
                last_ts: e.last_ts,
            };
            e.owner = core;
            e.publishing = true;
            return Ok(claim);
        }
        if map.len() >= self.max_streams {
            return Err(HubError::TooManyStreams(self.max_streams));
        }
        map.insert(
            key.to_string(),
            Entry {
                owner: core,
                publishing: true,
                last_ts: None,
            },
        );
        Ok(Claim::New)
    }

    /// The publisher on `core` left; the stream enters its grace.
    pub fn release(&self, key: &str, core: usize, last_ts: Option<u32>) {
        if let Some(e) = self.lock().get_mut(key) {
            if e.owner == core {
                e.publishing = false;
                e.last_ts = last_ts;
            }
        }
    }

    pub fn owner(&self, key: &str) -> Option<usize> {
        self.lock().get(key).map(|e| e.owner)
    }

    pub fn get(&self, key: &str) -> Option<Entry> {
        self.lock().get(key).cloned()
    }

    /// Removes the entry if `core` still owns it and nobody publishes.
    pub fn remove_if_idle(&self, key: &str, core: usize) -> bool {
        let mut map = self.lock();
        match map.get(key) {
            Some(e) if e.owner == core && !e.publishing => {
                map.remove(key);
                true
            }
            _ => false,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_release_takeover() {
        let d = Directory::new(2);
        assert_eq!(d.claim("a", 0), Ok(Claim::New));
        assert_eq!(d.claim("a", 1), Err(HubError::InUse("a".into())));
        d.release("a", 0, Some(500));
        assert_eq!(
            d.claim("a", 1),
            Ok(Claim::Takeover {
                prev_owner: 0,
                last_ts: Some(500)
            })
        );
        assert_eq!(d.owner("a"), Some(1));
        assert!(!d.remove_if_idle("a", 1), "still publishing");
        d.release("a", 1, None);
        assert!(!d.remove_if_idle("a", 0), "not the owner");
        assert!(d.remove_if_idle("a", 1));
        assert!(d.is_empty());
        d.claim("x", 0).unwrap();
        d.claim("y", 0).unwrap();
        assert_eq!(d.claim("z", 0), Err(HubError::TooManyStreams(2)));
    }
}
