//! What the hub hands frames to. A subscriber is a player (RTMP today,
//! HTTP-FLV and segmenters next) or an upstream publish; how it frames and
//! sends the bytes is its own business, implemented above the hub by the
//! egress layer. The hub only decides who gets which frame, and when.

use std::time::Instant;

use super::frame::Frame;

/// One consumer of a stream on this core.
pub trait Subscriber {
    /// The cached start of the stream (metadata, sequence headers, then the
    /// GOP from its keyframe), or a fresh start after a publisher change.
    fn start(&self, frames: &[Frame]);
    /// One live frame, as part of a fan-out pass (see [`Delivery`]). False
    /// when the subscriber's own policy dropped it.
    fn offer(&self, frame: &Frame, now: Instant) -> bool;
    /// The stream is over.
    fn end(&self);
    /// The subscriber is gone (closed, cut off): the hub forgets it.
    fn is_closed(&self) -> bool;
    /// Whether it counts as a viewer (an upstream publish does not).
    fn is_viewer(&self) -> bool {
        true
    }
}

/// The end of a fan-out pass: every subscriber of one stream on this core
/// was offered `frame`. The egress layer sends what it held back for the
/// pass together and counts the pass.
pub trait Delivery {
    /// `offered` subscribers were offered `frame`, of which `dropped` dropped it.
    fn pass_done(&self, frame: &Frame, offered: usize, dropped: u64, now: Instant);
}

/// A delivery that does nothing at the end of a pass (tests, benches).
pub struct NoDelivery;

impl Delivery for NoDelivery {
    fn pass_done(&self, _: &Frame, _: usize, _: u64, _: Instant) {}
}
