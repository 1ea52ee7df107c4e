//! A minimal ISO BMFF box writer: a box is opened (size placeholder, type,
//! and for a full box version and flags), filled, and closed, which writes
//! its size. Only what the init segment needs; [`super::fragment`] computes
//! its sizes up front instead, to write each sample once.

use bytes::{BufMut, BytesMut};

/// Appends boxes to a buffer.
pub(crate) struct BoxWriter {
    pub(crate) buf: BytesMut,
}

impl BoxWriter {
    pub(crate) fn new() -> Self {
        BoxWriter {
            buf: BytesMut::with_capacity(1024),
        }
    }

    /// Starts a box; returns where it starts, for [`BoxWriter::close`].
    pub(crate) fn open(&mut self, kind: &[u8; 4]) -> usize {
        let start = self.buf.len();
        self.buf.put_u32(0);
        self.buf.put_slice(kind);
        start
    }

    /// Starts a full box (version and 24-bit flags after the type).
    pub(crate) fn open_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> usize {
        let start = self.open(kind);
        self.buf
            .put_u32(u32::from(version) << 24 | (flags & 0x00FF_FFFF));
        start
    }

    /// Ends the box opened at `start`, writing its size.
    ///
    /// Init segments hold a few boxes around configuration records of at
    /// most [`super::MAX_CONFIG_LEN`] bytes each (checked before writing),
    /// so the size always fits the 32-bit field.
    pub(crate) fn close(&mut self, start: usize) {
        let size = self.buf.len() - start;
        let size = u32::try_from(size).expect("init segment box under 4 GiB");
        self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.put_u16(v);
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.put_slice(v);
    }

    pub(crate) fn zeros(&mut self, n: usize) {
        self.buf.put_bytes(0, n);
    }

    /// The unity transformation matrix of `mvhd` and `tkhd` (16.16 and 2.30
    /// fixed point).
    pub(crate) fn unity_matrix(&mut self) {
        for v in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000u32] {
            self.u32(v);
        }
    }
}

/// The boxes directly in `data`, as (type, body) pairs, for tests to walk
/// what was written. Panics on a malformed size: only our output goes in.
#[cfg(test)]
pub(crate) fn children(mut data: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = data[4..8].try_into().unwrap();
        out.push((kind, &data[8..size]));
        data = &data[size..];
    }
    out
}

/// The body of the one child of type `kind`, or a panic naming it.
#[cfg(test)]
pub(crate) fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
    let found: Vec<_> = children(data)
        .into_iter()
        .filter(|(k, _)| k == kind)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{} boxes of type {}",
        found.len(),
        String::from_utf8_lossy(kind)
    );
    found[0].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_boxes_get_their_sizes() {
        let mut w = BoxWriter::new();
        let outer = w.open(b"moov");
        let inner = w.open_full(b"mvhd", 1, 0x0A0B0C);
        w.u16(0xBEEF);
        w.close(inner);
        w.close(outer);
        assert_eq!(
            &w.buf[..],
            b"\x00\x00\x00\x16moov\x00\x00\x00\x0emvhd\x01\x0a\x0b\x0c\xbe\xef"
        );
    }
}
