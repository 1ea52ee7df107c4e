//! Which `[limits]` key ended a connection: one warning line naming the
//! key, its configured value and the peer, and one count in
//! `cascade_limit_hits_total`. Only the connection that hit the limit is
//! closed; the caller has already decided that.

use std::net::SocketAddr;

use tracing::warn;

use super::ConnError;
use crate::context::Worker;
use crate::metrics::{Label, LimitKind};
use crate::protocol::amf::AmfError;
use crate::protocol::chunk::ChunkError;
use crate::protocol::message::MessageError;
use crate::protocol::session::SessionError;

/// The limit behind `e` and its configured value, if a limit closed it.
pub(super) fn limit_of(e: &ConnError, worker: &Worker) -> Option<(LimitKind, u64)> {
    Some(match e {
        ConnError::HandshakeTimeout { ms } => (LimitKind::HandshakeTimeout, *ms),
        ConnError::Timeout { limit, ms, .. } => (*limit, *ms),
        ConnError::Session(SessionError::Chunk(c)) => match c {
            ChunkError::MessageTooLarge { max, .. } => (LimitKind::MaxMessageSize, u64::from(*max)),
            ChunkError::TooManyChunkStreams { max, .. } => {
                (LimitKind::MaxChunkStreams, *max as u64)
            }
            ChunkError::ChunkSizeTooLarge { max, .. } => (LimitKind::MaxChunkSize, u64::from(*max)),
            ChunkError::ReassemblyBudget { max, .. } => {
                (LimitKind::MaxReassemblyBytes, *max as u64)
            }
            _ => return None,
        },
        ConnError::Session(SessionError::Message(MessageError::Amf { source, .. })) => {
            let amf = worker.live_session_config().amf_limits;
            match source {
                AmfError::TooDeep => (LimitKind::AmfMaxDepth, amf.max_depth as u64),
                AmfError::TooManyItems => (LimitKind::AmfMaxItems, amf.max_items as u64),
                _ => return None,
            }
        }
        ConnError::Session(SessionError::TooManyStreams(max)) => {
            (LimitKind::MaxStreamsPerConnection, *max as u64)
        }
        ConnError::Unread { max } => (LimitKind::MaxPendingOutputBytes, *max as u64),
        _ => return None,
    })
}

/// Logs and counts `e` if a limit caused it; false if none did.
pub(super) fn report(worker: &Worker, e: &ConnError, peer: SocketAddr) -> bool {
    match limit_of(e, worker) {
        Some((kind, value)) => {
            report_hit(worker, kind, value, peer, &e.to_string());
            true
        }
        None => false,
    }
}

/// Logs and counts one hit of `kind` (configured at `value`) by `peer`.
pub(super) fn report_hit(
    worker: &Worker,
    kind: LimitKind,
    value: u64,
    peer: SocketAddr,
    detail: &str,
) {
    worker.stats.limit_hits.inc(kind);
    warn!(
        limit = %format_args!("limits.{}", kind.name()),
        value,
        %peer,
        reason = %detail,
        "limit hit: closing the connection"
    );
}
