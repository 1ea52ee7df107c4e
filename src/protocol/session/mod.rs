//! RTMP session flows above the message layer.
//!
//! A session takes bytes in (after the handshake) and yields events and
//! bytes out. Policy stays outside: the server session raises
//! `PublishRequested` / `PlayRequested` and waits for the application's
//! accept or reject before anything is sent for that stream, which is where
//! auth, stream-name checks and edge routing plug in.
//!
//! Both sides own one `SessionCore` (`core.rs`): chunk decoding, byte
//! accounting and acknowledgements, output and the event queue are written
//! once. The client walks the publisher or player order with
//! [`PublishFlow`] or [`PlayFlow`]; the edge pull, outbound pushes, the load
//! harness and the test client all speak through [`ClientSession`].
//! See `LIFECYCLE.md` in this folder for the order of calls.

mod aggregate;
mod client;
mod core;
mod data;
mod server;
mod server_answers;
mod status;

pub use aggregate::split_aggregate;
pub use client::{
    set_data_frame, ClientConfig, ClientEvent, ClientSession, PlayFlow, PlayStage, PlayStep,
    PublishFlow, PublishStage, PublishStep,
};
pub use server::{
    MediaKind, PlayRejection, PublishRejection, ServerConfig, ServerEvent, ServerSession,
    SessionError,
};
pub use status::{status_info, unpublish_notice};
