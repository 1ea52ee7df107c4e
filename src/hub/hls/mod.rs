//! Streams packaged for HLS and DASH: CMAF parts made once per node by the
//! core that owns a stream ([`Packager`]) into a [`Window`] every core
//! reads. The [`HlsStore`] maps stream keys to windows; like the stream
//! directory it is shared by all cores and touched when a stream starts or
//! ends and once per player request, never per frame.
//!
//! A window outlives a change of owner (a publisher coming back on another
//! core within the grace continues the same window with a discontinuity)
//! and ends with the stream.

mod packager;
mod wait;
mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub use packager::{Packager, PackagerConfig, VIDEO_TIMESCALE};
pub use wait::WaitFor;
pub use window::{
    PartData, PartLookup, SegmentData, SegmentLookup, StreamFacts, Window, WindowState,
};

/// Every packaged stream's window on this node.
#[derive(Debug, Default)]
pub struct HlsStore {
    windows: Mutex<HashMap<Arc<str>, Arc<Window>>>,
}

impl HlsStore {
    pub fn new() -> HlsStore {
        HlsStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Window>>> {
        // A panic elsewhere while holding the lock must not take the node down.
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The window of `key`, made if new; the flag says whether it existed
    /// (the stream continues after a publisher change).
    pub fn attach(&self, key: &Arc<str>) -> (Arc<Window>, bool) {
        let mut m = self.lock();
        if let Some(w) = m.get(key) {
            if !w.read().ended {
                return (w.clone(), true);
            }
        }
        let w = Arc::new(Window::new());
        m.insert(key.clone(), w.clone());
        (w, false)
    }

    pub fn get(&self, key: &str) -> Option<Arc<Window>> {
        self.lock().get(key).cloned()
    }

    /// Forgets `key`'s window if it is still `window` (a new stream of the
    /// same key may have replaced it).
    pub fn remove(&self, key: &str, window: &Arc<Window>) {
        let mut m = self.lock();
        if m.get(key).is_some_and(|w| Arc::ptr_eq(w, window)) {
            m.remove(key);
        }
    }

    /// Windows by key, for metrics.
    pub fn all(&self) -> Vec<(Arc<str>, Arc<Window>)> {
        self.lock()
            .iter()
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect()
    }
}
