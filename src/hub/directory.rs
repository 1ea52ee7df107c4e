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

/// Where an edge pull for a key is: at most one per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullState {
    /// Dialling origins; players wait.
    Connecting,
    /// Media flows; the stream is published in the directory.
    Live,
    /// The origin was lost; reconnecting while players wait in the grace.
    Retrying,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullEntry {
    /// The core whose task runs the pull.
    pub core: usize,
    /// The pull's publisher id in the hub.
    pub id: u64,
    pub state: PullState,
}

/// The answer to [`Directory::register_pull`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullRegistration {
    /// The caller won: it must start the pull task.
    Started,
    /// A pull exists already (maybe on another core).
    Existing(PullEntry),
}

pub struct Directory {
    map: Mutex<HashMap<String, Entry>>,
    /// Edge pulls by stream key (a separate lock: touched only at play start
    /// and at pull state changes).
    pulls: Mutex<HashMap<String, PullEntry>>,
    max_streams: usize,
}

impl Directory {
    pub fn new(max_streams: usize) -> Directory {
        Directory {
            map: Mutex::new(HashMap::new()),
            pulls: Mutex::new(HashMap::new()),
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

    fn pulls(&self) -> std::sync::MutexGuard<'_, HashMap<String, PullEntry>> {
        self.pulls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a pull of `key` run by `core` as publisher `id`, unless
    /// one exists: the first caller wins, so a node pulls a stream once.
    pub fn register_pull(&self, key: &str, core: usize, id: u64) -> PullRegistration {
        let mut pulls = self.pulls();
        if let Some(e) = pulls.get(key) {
            return PullRegistration::Existing(*e);
        }
        pulls.insert(
            key.to_string(),
            PullEntry {
                core,
                id,
                state: PullState::Connecting,
            },
        );
        PullRegistration::Started
    }

    pub fn pull(&self, key: &str) -> Option<PullEntry> {
        self.pulls().get(key).copied()
    }

    /// Updates the state of pull `id` (ignored if it is not the current one).
    pub fn set_pull_state(&self, key: &str, id: u64, state: PullState) {
        if let Some(e) = self.pulls().get_mut(key) {
            if e.id == id {
                e.state = state;
            }
        }
    }

    /// Forgets pull `id` of `key` (its task ended).
    pub fn remove_pull(&self, key: &str, id: u64) {
        let mut pulls = self.pulls();
        if pulls.get(key).is_some_and(|e| e.id == id) {
            pulls.remove(key);
        }
    }

    pub fn pull_count(&self) -> usize {
        self.pulls().len()
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

    #[test]
    fn one_pull_per_key() {
        let d = Directory::new(10);
        assert_eq!(d.register_pull("live/a", 0, 7), PullRegistration::Started);
        let first = PullEntry {
            core: 0,
            id: 7,
            state: PullState::Connecting,
        };
        assert_eq!(
            d.register_pull("live/a", 1, 9),
            PullRegistration::Existing(first)
        );
        d.set_pull_state("live/a", 9, PullState::Live);
        assert_eq!(d.pull("live/a").unwrap().state, PullState::Connecting);
        d.set_pull_state("live/a", 7, PullState::Live);
        assert_eq!(d.pull("live/a").unwrap().state, PullState::Live);
        d.remove_pull("live/a", 9);
        assert_eq!(d.pull_count(), 1, "only the owner id removes it");
        d.remove_pull("live/a", 7);
        assert!(d.pull("live/a").is_none());
        assert_eq!(d.register_pull("live/a", 1, 9), PullRegistration::Started);
    }
}
