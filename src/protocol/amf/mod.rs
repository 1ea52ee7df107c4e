//! AMF0 and AMF3: the value encodings RTMP commands and metadata travel in.
//!
//! Decoding is hostile-input safe: every length is checked against the bytes
//! that remain before anything is allocated, nesting is bounded by
//! [`AmfLimits::max_depth`], and the total number of values produced by one
//! call (including copies made when a reference is resolved) is bounded by
//! [`AmfLimits::max_items`].
//!
//! References are resolved by decoding the referenced bytes again rather
//! than by keeping a copy of every complex value: that keeps the common case
//! (no references at all) free of clones, and a reference costs what its
//! copy would have cost.

pub mod amf0;
pub mod amf3;
mod amf3_decode;
mod budget;
mod read;

#[cfg(test)]
mod tests;

pub use amf0::{decode_amf0, decode_amf0_all, encode_amf0, Amf0Value};
pub use amf3::{decode_amf3, encode_amf3, Amf3Value};

/// Bounds applied to one decode call, so a small hostile message cannot
/// make us build a huge or deeply nested value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmfLimits {
    /// Maximum nesting of complex values (objects, arrays, ...).
    pub max_depth: usize,
    /// Maximum number of values produced by one call, counting the copies
    /// made for references (long referenced strings count one item per 64 bytes).
    pub max_items: usize,
}

impl Default for AmfLimits {
    fn default() -> Self {
        AmfLimits {
            max_depth: 32,
            max_items: 65_536,
        }
    }
}

/// Why an AMF payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmfError {
    /// The input ended inside a value (or a length field points past the end).
    #[error("AMF input truncated")]
    Truncated,
    /// A type marker this format does not define.
    #[error("unknown AMF type marker 0x{0:02x}")]
    UnknownMarker(u8),
    /// A defined type we refuse to decode (MovieClip, RecordSet).
    #[error("unsupported AMF type: {0}")]
    Unsupported(&'static str),
    /// An AMF3 externalizable object: its body format is private to its class.
    #[error("AMF3 externalizable object of class {0:?} cannot be decoded")]
    Externalizable(String),
    /// An AMF0 object-end marker where a value was expected.
    #[error("unexpected AMF0 object-end marker")]
    UnexpectedObjectEnd,
    /// Nesting exceeded [`AmfLimits::max_depth`].
    #[error("AMF value nested too deeply")]
    TooDeep,
    /// More values than [`AmfLimits::max_items`].
    #[error("AMF value has too many items")]
    TooManyItems,
    /// A reference to a table entry that does not exist (or is still being decoded).
    #[error("bad AMF reference index {0}")]
    BadReference(u32),
}
