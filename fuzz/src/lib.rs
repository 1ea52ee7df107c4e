//! Fuzz entry points for cascade's sans-IO protocol.
//!
//! Each public function takes the raw fuzzer input, never panics on valid
//! behaviour, and panics (an assertion) on a broken invariant. The
//! `fuzz_targets/*.rs` binaries call them, and `tests/fuzz_regressions.rs`
//! at the repository root includes this file by path to replay crashes and
//! seeds under `cargo test`, so a fix is checked by the same code that found
//! the bug. Paths use `super::` (not `crate::`) for that reason.

pub mod amf;
pub mod chunk;
pub mod cmaf;
pub mod flv;
pub mod handshake;
pub mod http;
pub mod seeds;
pub mod session;
pub mod ws;

pub use amf::amf;
pub use chunk::chunk_decoder;
pub use cmaf::cmaf;
pub use flv::flv;
pub use handshake::handshake;
pub use http::http_head;
pub use session::server_session;
pub use ws::ws_frame;

/// The fuzzer's bytes cut into a header and a payload that is fed in pieces.
///
/// Layout: byte 0 holds the number of split-size bytes (low 3 bits) and
/// five flag bits; then `extra` configuration bytes; then the split sizes;
/// then the payload. Missing bytes read as zero, so every input is valid.
pub struct Input<'a> {
    /// High five bits of byte 0, for the target to choose modes.
    pub flags: u8,
    /// The target's own configuration bytes (always `extra` long).
    pub config: Vec<u8>,
    sizes: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8], extra: usize) -> Self {
        let first = data.first().copied().unwrap_or(0);
        let rest = data.get(1..).unwrap_or_default();
        let (config, rest) = rest.split_at(extra.min(rest.len()));
        let mut config = config.to_vec();
        config.resize(extra, 0);
        let n = usize::from(first & 7).min(rest.len());
        let (sizes, payload) = rest.split_at(n);
        Input {
            flags: first >> 3,
            config,
            sizes,
            payload,
        }
    }

    /// The payload in pieces.
    pub fn pieces(&self) -> Pieces<'a> {
        self.split(self.payload)
    }

    /// Any byte string cut with this input's split sizes: cycled, a size
    /// byte of 0 meaning "everything left", no size bytes meaning one piece.
    pub fn split<'b>(&self, bytes: &'b [u8]) -> Pieces<'b>
    where
        'a: 'b,
    {
        Pieces {
            sizes: self.sizes,
            next: 0,
            rest: bytes,
        }
    }
}

pub struct Pieces<'b> {
    sizes: &'b [u8],
    next: usize,
    rest: &'b [u8],
}

impl<'b> Iterator for Pieces<'b> {
    type Item = &'b [u8];

    fn next(&mut self) -> Option<&'b [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let size = match self.sizes.get(self.next % self.sizes.len().max(1)) {
            Some(&s) if s > 0 => usize::from(s),
            _ => self.rest.len(),
        };
        self.next += 1;
        let (piece, rest) = self.rest.split_at(size.min(self.rest.len()));
        self.rest = rest;
        Some(piece)
    }
}

/// Bit `i` (cycled) of a decision byte string; false when it is empty.
pub fn bit(bits: &[u8], i: usize) -> bool {
    match bits.get((i / 8) % bits.len().max(1)) {
        Some(b) => b >> (i % 8) & 1 == 1,
        None => false,
    }
}
