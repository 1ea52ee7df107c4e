//! Egress: how a subscriber's bytes leave the node. Above the hub (which
//! decides who gets which frame) and below the connection code.
//!
//! One module owns a subscriber's queue ([`Outbox`]) and decides, in
//! [`Outbox::push_live`], how each live frame leaves:
//! - **direct**: the writer is idle and the queue empty, so the shared bytes
//!   are sent from the fan-out pass itself (no task wake-up);
//! - **batched**: the same, but every such send of the pass goes to the
//!   kernel in one io_uring submission ([`Fanout`], [`UringBatch`]);
//! - **coalescing window**: frames wait up to `player.write_coalesce_ms`
//!   and then leave in one vectored send, batched with the other windows
//!   that close at the same moment ([`Coalescer`]);
//! - **writer task**: whatever the socket did not take waits in the queue
//!   for the connection's writer ([`writer`]), under the slow-player policy.
//!
//! Sends, bytes and latency are counted here, once per frame ([`meter`]).
//! The subscriber types ([`RtmpPlayer`], [`UpstreamFeed`]) carry their own
//! framing ([`Framing`]), so another delivery protocol is another type.

pub mod batch;
pub mod coalesce;
pub mod fanout;
pub mod framing;
pub mod meter;
pub mod outbox;
pub mod subscriber;
pub mod writer;

pub use batch::UringBatch;
pub use coalesce::Coalescer;
pub use fanout::{BatchSend, Fanout};
pub use framing::Framing;
pub use outbox::{Batch, CloseReason, DirectSink, Outbox, QueueLimits};
pub use subscriber::{FlvPlayer, RtmpPlayer, UpstreamFeed};
