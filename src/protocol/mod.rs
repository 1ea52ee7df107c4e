//! Sans-IO protocols: bytes and time in, events and bytes out. RTMP and
//! FLV for ingest and playback, HTTP heads and WebSocket frames for the
//! HTTP players, and the text of HLS playlists and DASH manifests.
//!
//! Nothing in this module touches sockets, runtimes or the system clock
//! (times are arguments); `tests/layering.rs` keeps it that way.

pub mod amf;
pub mod chunk;
pub mod cmaf;
pub mod command;
pub mod dash;
pub mod flv;
pub mod handshake;
pub mod hls;
pub mod http;
pub(crate) mod manifest;
pub mod message;
pub mod session;
pub mod time;
pub mod ws;
