//! Sans-IO RTMP: bytes and time in, events and bytes out.
//!
//! Nothing in this module touches sockets, runtimes or the system clock;
//! `tests/sans_io_boundary.rs` keeps it that way.

pub mod amf;
pub mod chunk;
pub mod cmaf;
pub mod command;
pub mod flv;
pub mod handshake;
pub mod http;
pub mod message;
pub mod session;
pub mod time;
pub mod ws;
