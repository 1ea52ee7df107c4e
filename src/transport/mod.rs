//! The byte stream under a connection or an edge pull: plain TCP, or TLS
//! (rustls) over TCP, split into a read half and a write half.
//!
//! Owns: the TLS record layer and its handshake ([`stream`]), certificate
//! loading and reload, and the client trust settings ([`certs`]). Does not
//! own: anything RTMP; the connection and pull code see plaintext bytes and
//! the socket's descriptor (for socket options and the slow-player
//! shutdown), whichever transport carries them.
//!
//! Why not `monoio-rustls`: its read half may write on an error (racing
//! the writer task), its reads cannot be cancelled without losing bytes
//! (the edge pull ticks its reads), and its vectored write sends one buffer
//! per call. Driving rustls's buffer API (`read_tls`, `process_new_packets`,
//! `write_tls`) directly is a few hundred lines and has none of those.

pub mod certs;
pub mod drive;
mod iovec;
mod stream;

pub use certs::{client_config, TlsConfigError, TlsServer};
pub use iovec::IoVecs;
pub use stream::{ReadHalf, Stream, WriteHalf};
