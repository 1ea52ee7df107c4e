//! Tests for the AMF codecs: hand-made vectors, hostile inputs, round trips.

mod amf0;
mod amf3;
mod roundtrip;

use super::AmfLimits;

fn limits() -> AmfLimits {
    AmfLimits::default()
}

/// AMF0 short string body: u16 length and bytes.
fn s16(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// AMF0 number value: marker and big-endian double.
fn num(n: f64) -> Vec<u8> {
    let mut v = vec![0x00];
    v.extend_from_slice(&n.to_be_bytes());
    v
}
