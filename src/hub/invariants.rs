//! What must be true of the hubs, written down as checks that tests call.
//!
//! [`Hub::check_invariants`] looks at one core's hub and holds after every
//! public hub call, whatever is still in flight between cores. Anything
//! that depends on other cores having caught up (who is in whose `remote`,
//! which core the directory names) is only true when every mailbox is
//! drained; [`check_mesh`] checks that, given every core's hub.
//!
//! Nothing here runs in production: the checks walk every stream and copy
//! caches, which is fine for a test after each step and wrong per frame.

use super::cache::MAX_HEADER_SLOTS;
use super::directory::Entry;
use super::frame::{Frame, HeaderKey};
use super::stream::LocalStream;
use super::Hub;
use crate::protocol::session::MediaKind;

/// A broken invariant, named after what should have held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantError {
    #[error("core {core}: stream filed under {key} calls itself {named}")]
    KeyMismatch {
        core: usize,
        key: String,
        named: String,
    },
    #[error("core {core}: {key} has a publisher here but the directory says {entry:?}")]
    PublisherNotClaimed {
        core: usize,
        key: String,
        entry: Option<Entry>,
    },
    #[error("core {core}: {key} has publisher {publisher:?} and idle_since set: {idle}")]
    IdleState {
        core: usize,
        key: String,
        publisher: Option<u64>,
        idle: bool,
    },
    #[error("core {core}: {key}'s remote cores {remote:?} repeat a core, name this one, or a core that does not exist")]
    BadRemote {
        core: usize,
        key: String,
        remote: Vec<usize>,
    },
    #[error("core {core}: mirror of {key} has no players")]
    EmptyMirror { core: usize, key: String },
    #[error("core {core}: player {player} of {key} is listed twice")]
    DuplicatePlayer {
        core: usize,
        key: String,
        player: u64,
    },
    #[error("core {core}: player {player} of owned {key} never got its start")]
    UnstartedOnOwner {
        core: usize,
        key: String,
        player: u64,
    },
    #[error("core {core}: mirror of {key} has both started and waiting players")]
    MixedStart { core: usize, key: String },
    #[error("core {core}: cache of {key}: {problem}")]
    Cache {
        core: usize,
        key: String,
        problem: CacheProblem,
    },
    #[error("{key} is owned by cores {first} and {second}")]
    TwoOwners {
        key: String,
        first: usize,
        second: usize,
    },
    #[error(
        "{key} is owned by core {core} (publishing: {publishing}) but the directory says {entry:?}"
    )]
    DirectoryMismatch {
        key: String,
        core: usize,
        publishing: bool,
        entry: Option<Entry>,
    },
    #[error("the directory has {entries} entries for {owned} owned streams")]
    OrphanEntries { entries: usize, owned: usize },
    #[error("core {core} mirrors {key}, which no core owns")]
    MirrorWithoutOwner { core: usize, key: String },
    #[error("core {core} mirrors {key} but is not in owner {owner}'s remote cores")]
    MirrorNotSubscribed {
        core: usize,
        key: String,
        owner: usize,
    },
    #[error("core {core}'s players of {key} never got their start")]
    MirrorNotStarted { core: usize, key: String },
    #[error("owner {owner} of {key} sends to core {core}, which has no players of it")]
    RemoteWithoutMirror {
        key: String,
        owner: usize,
        core: usize,
    },
    #[error("core {core}'s cache of {key} differs from owner {owner}'s")]
    MirrorCacheDiffers {
        key: String,
        core: usize,
        owner: usize,
    },
    #[error("hub {index} of the list says it is core {core}")]
    CoreOrder { index: usize, core: usize },
}

/// How a stream's cache (see [`super::cache::Cache`]) is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheProblem {
    #[error("the start is not metadata, then headers, then the GOP")]
    Order,
    #[error("header slot {0:?} is kept twice")]
    DuplicateHeader(HeaderKey),
    #[error("{0} header slots, more than the bound")]
    TooManyHeaders(usize),
    #[error("the GOP does not open with a keyframe")]
    GopWithoutKeyframe,
    #[error("the GOP holds a header, metadata or data message")]
    GopHoldsNonMedia,
    #[error("the GOP's bytes are counted as {counted}, its frames cost {actual}")]
    GopBytes { counted: usize, actual: usize },
    #[error("the GOP ({bytes} bytes over {span_ms} ms) is past its limits")]
    GopOverLimit { bytes: usize, span_ms: i64 },
    #[error("a GOP is cached while inter video is held for a keyframe")]
    GopWhileAwaitingKeyframe,
}

impl Hub {
    /// Checks what holds on this core after every public hub call, with
    /// messages still in flight between cores:
    /// - each stream is filed under its own key;
    /// - a stream with a publisher here is claimed by this core in the
    ///   directory and marked as publishing (no other core can take a key
    ///   while it is published), and has no `idle_since`; one without a
    ///   publisher has one;
    /// - an owner's remote cores are distinct, exist, and never this core;
    /// - a mirror (a stream not owned here) has players: the last one
    ///   leaving drops it; its players are all started or all waiting for
    ///   the owner's start, since they share one cache;
    /// - every player of an owned stream got its start;
    /// - a player id appears once per stream;
    /// - the cache is well-formed: see [`CacheProblem`]. Its limits are
    ///   the current ones: after a reload that lowers them, a cache filled
    ///   under the old ones is only trimmed by its next frame.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        let core = self.core;
        for (key, s) in &self.streams {
            let err_key = || key.to_string();
            if *key != s.key {
                return Err(InvariantError::KeyMismatch {
                    core,
                    key: err_key(),
                    named: s.key.to_string(),
                });
            }
            for (i, p) in s.players.iter().enumerate() {
                if s.players[..i].iter().any(|q| q.id == p.id) {
                    return Err(InvariantError::DuplicatePlayer {
                        core,
                        key: err_key(),
                        player: p.id,
                    });
                }
            }
            match &s.owned {
                Some(o) => {
                    if o.publisher.is_some() {
                        let entry = self.directory.get(key);
                        let claimed = entry
                            .as_ref()
                            .is_some_and(|e| e.owner == core && e.publishing);
                        if !claimed {
                            return Err(InvariantError::PublisherNotClaimed {
                                core,
                                key: err_key(),
                                entry,
                            });
                        }
                    }
                    if o.publisher.is_some() == o.idle_since.is_some() {
                        return Err(InvariantError::IdleState {
                            core,
                            key: err_key(),
                            publisher: o.publisher,
                            idle: o.idle_since.is_some(),
                        });
                    }
                    let cores = self.mesh.cores();
                    let bad = o
                        .remote
                        .iter()
                        .enumerate()
                        .any(|(i, c)| *c == core || *c >= cores || o.remote[..i].contains(c));
                    if bad {
                        return Err(InvariantError::BadRemote {
                            core,
                            key: err_key(),
                            remote: o.remote.clone(),
                        });
                    }
                    if let Some(p) = s.players.iter().find(|p| !p.started) {
                        return Err(InvariantError::UnstartedOnOwner {
                            core,
                            key: err_key(),
                            player: p.id,
                        });
                    }
                }
                None => {
                    let Some(first) = s.players.first() else {
                        return Err(InvariantError::EmptyMirror {
                            core,
                            key: err_key(),
                        });
                    };
                    if s.players.iter().any(|p| p.started != first.started) {
                        return Err(InvariantError::MixedStart {
                            core,
                            key: err_key(),
                        });
                    }
                }
            }
            self.check_cache(s)
                .map_err(|problem| InvariantError::Cache {
                    core,
                    key: err_key(),
                    problem,
                })?;
        }
        Ok(())
    }

    /// The cache's start is metadata (at most one), then distinct header
    /// slots within their bound, then a GOP that opens with a keyframe,
    /// holds only coded audio and video, is counted at what its frames
    /// cost and fits the limits. A cached GOP means a keyframe passed, so
    /// inter video is no longer held.
    fn check_cache(&self, s: &LocalStream) -> Result<(), CacheProblem> {
        let frames = s.cache.snapshot();
        let gop_len = s.cache.gop_len();
        let (start, gop) = frames.split_at(frames.len() - gop_len);
        let meta = start
            .iter()
            .take_while(|f| f.kind == MediaKind::Metadata)
            .count();
        let headers = &start[meta..];
        if meta > 1 || headers.iter().any(|f| f.header.is_none()) {
            return Err(CacheProblem::Order);
        }
        if headers.len() > MAX_HEADER_SLOTS {
            return Err(CacheProblem::TooManyHeaders(headers.len()));
        }
        for (i, f) in headers.iter().enumerate() {
            if headers[..i].iter().any(|g| g.header == f.header) {
                return Err(CacheProblem::DuplicateHeader(f.header.expect("checked")));
            }
        }
        let Some(first) = gop.first() else {
            return Ok(());
        };
        if !first.keyframe {
            return Err(CacheProblem::GopWithoutKeyframe);
        }
        if s.await_keyframe {
            return Err(CacheProblem::GopWhileAwaitingKeyframe);
        }
        let media = |f: &Frame| matches!(f.kind, MediaKind::Audio | MediaKind::Video);
        if gop.iter().any(|f| f.header.is_some() || !media(f)) {
            return Err(CacheProblem::GopHoldsNonMedia);
        }
        let actual: usize = gop.iter().map(Frame::cost).sum();
        let counted = s.cache.gop_bytes();
        if actual != counted {
            return Err(CacheProblem::GopBytes { counted, actual });
        }
        let limits = &self.config.gop;
        let span_ms = gop
            .iter()
            .map(|f| i64::from(f.timestamp.wrapping_sub(first.timestamp) as i32))
            .max()
            .unwrap_or(0);
        if counted > limits.max_bytes || span_ms > i64::from(limits.max_duration_ms) {
            return Err(CacheProblem::GopOverLimit {
                bytes: counted,
                span_ms,
            });
        }
        Ok(())
    }
}

/// Checks what holds across cores once every mailbox is drained and
/// handled (nothing in flight). `hubs` are all the node's hubs, in core
/// order, sharing one directory. Each hub's own invariants are checked
/// first; then:
/// - a key is owned by at most one core, and the directory names exactly
///   that core, publishing when it has a publisher; the directory holds
///   no entry nobody owns (an ended stream is gone from it);
/// - every mirror has an owner (an ended stream is gone everywhere), is
///   in the owner's remote cores, got its start, and holds the owner's
///   cache;
/// - every core in an owner's remote cores mirrors the stream.
pub fn check_mesh(hubs: &[&Hub]) -> Result<(), InvariantError> {
    let mut owned = 0;
    for (index, hub) in hubs.iter().enumerate() {
        if hub.core != index {
            return Err(InvariantError::CoreOrder {
                index,
                core: hub.core,
            });
        }
        hub.check_invariants()?;
        for (key, s) in &hub.streams {
            match &s.owned {
                Some(o) => {
                    owned += 1;
                    check_owner(hubs, hub, key, o.publisher.is_some())?;
                    for &core in &o.remote {
                        let mirrored = hubs[core]
                            .streams
                            .get(key)
                            .is_some_and(|m| m.owned.is_none());
                        if !mirrored {
                            return Err(InvariantError::RemoteWithoutMirror {
                                key: key.to_string(),
                                owner: hub.core,
                                core,
                            });
                        }
                    }
                }
                None => check_mirror(hubs, hub, key, s)?,
            }
        }
    }
    let entries = hubs.first().map_or(0, |h| h.directory.len());
    if entries != owned {
        return Err(InvariantError::OrphanEntries { entries, owned });
    }
    Ok(())
}

/// `hub` owns `key`: no other core does, and the directory agrees.
fn check_owner(
    hubs: &[&Hub],
    hub: &Hub,
    key: &str,
    publishing: bool,
) -> Result<(), InvariantError> {
    if let Some(other) = hubs
        .iter()
        .find(|h| h.core != hub.core && h.streams.get(key).is_some_and(|s| s.owned.is_some()))
    {
        return Err(InvariantError::TwoOwners {
            key: key.to_string(),
            first: hub.core.min(other.core),
            second: hub.core.max(other.core),
        });
    }
    let entry = hub.directory.get(key);
    if !entry
        .as_ref()
        .is_some_and(|e| e.owner == hub.core && e.publishing == publishing)
    {
        return Err(InvariantError::DirectoryMismatch {
            key: key.to_string(),
            core: hub.core,
            publishing,
            entry,
        });
    }
    Ok(())
}

/// `hub` mirrors `key` (stream `s`): an owner serves it, and it caught up.
fn check_mirror(
    hubs: &[&Hub],
    hub: &Hub,
    key: &str,
    s: &LocalStream,
) -> Result<(), InvariantError> {
    let core = hub.core;
    let found = hubs.iter().find_map(|h| {
        let o = h.streams.get(key)?;
        o.owned.as_ref().map(|owned| (h.core, o, owned))
    });
    let Some((owner, stream, owned)) = found else {
        return Err(InvariantError::MirrorWithoutOwner {
            core,
            key: key.to_string(),
        });
    };
    if !owned.remote.contains(&core) {
        return Err(InvariantError::MirrorNotSubscribed {
            core,
            key: key.to_string(),
            owner,
        });
    }
    if s.players.iter().any(|p| !p.started) {
        return Err(InvariantError::MirrorNotStarted {
            core,
            key: key.to_string(),
        });
    }
    if !same_frames(&s.cache.snapshot(), &stream.cache.snapshot()) {
        return Err(InvariantError::MirrorCacheDiffers {
            key: key.to_string(),
            core,
            owner,
        });
    }
    Ok(())
}

/// Whether two cached starts are the same frames (shared or equal bytes).
fn same_frames(a: &[Frame], b: &[Frame]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.kind == y.kind
                && x.timestamp == y.timestamp
                && x.keyframe == y.keyframe
                && x.header == y.header
                && x.payload == y.payload
        })
}
