//! cascade: a thread-per-core RTMP edge relay.
//!
//! Layers, imports pointing down only:
//! - `protocol`: sans-IO RTMP (handshake, chunks, AMF, messages, FLV, sessions),
//!   HTTP heads, WebSocket frames, HLS playlists and DASH MPDs.
//! - `hub`: streams, GOP cache, fan-out queues. Knows publishers and subscribers, not sockets.
//! - `conn`: a connection's life on one worker.
//! - `transport`: plain TCP or TLS under a connection or an edge pull.
//! - `shard`: per-core runtime and acceptor.
//! - `config`: TOML configuration with embedded defaults.

pub mod auth;
pub mod config;
pub mod conn;
pub mod context;
pub mod egress;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod protocol;
pub mod shard;
pub mod transport;
pub mod upstream;
pub mod xcore;
