//! A list of shared buffers handed to one vectored write.

use bytes::{Buf, Bytes};
use monoio::buf::IoVecBuf;

/// Owns the `Bytes` being written and the `iovec` array pointing into them,
/// so both stay alive and unmoved while the kernel reads them.
#[derive(Default)]
pub struct IoVecs {
    bufs: Vec<Bytes>,
    iov: Vec<libc::iovec>,
    /// First buffer not yet fully written.
    start: usize,
}

impl IoVecs {
    #[cfg(test)]
    pub fn new(bufs: Vec<Bytes>) -> IoVecs {
        let mut v = IoVecs::default();
        let mut bufs = bufs;
        v.load(&mut bufs);
        v
    }

    /// Takes the buffers out of `bufs` (leaving its capacity for reuse) and
    /// points the iovecs at them. Reusing one `IoVecs` per writer keeps the
    /// hot path free of allocations.
    pub fn load(&mut self, bufs: &mut Vec<Bytes>) {
        self.clear();
        self.bufs.append(bufs);
        self.iov.extend(self.bufs.iter().map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        }));
    }

    /// Drops the buffers (their refcounts), keeping capacity.
    pub fn clear(&mut self) {
        self.bufs.clear();
        self.iov.clear();
        self.start = 0;
    }

    /// The bytes not yet written, buffer by buffer.
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs[self.start..].iter().map(|b| &b[..])
    }

    pub fn remaining(&self) -> usize {
        self.iov[self.start..].iter().map(|v| v.iov_len).sum()
    }

    /// Skips `n` bytes that the kernel accepted (a short write).
    pub fn advance(&mut self, mut n: usize) {
        while self.start < self.bufs.len() {
            let b = &mut self.bufs[self.start];
            let take = n.min(b.len());
            b.advance(take);
            n -= take;
            self.iov[self.start] = libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            };
            if !b.is_empty() {
                break;
            }
            self.start += 1;
        }
    }
}

// SAFETY: every iovec in `iov[start..]` points at the live bytes of the
// matching `Bytes` in `bufs`, which this struct owns. `Bytes` data lives on
// the heap (or in static memory) and does not move when `IoVecs` moves, and
// neither `bufs` nor `iov` is modified while the runtime holds the value
// (only `advance`, which needs `&mut self`, changes them, and the runtime
// owns the value for the whole operation).
unsafe impl IoVecBuf for IoVecs {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iov[self.start..].as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iov.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_across_buffers() {
        let mut v = IoVecs::new(vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defg"),
            Bytes::from_static(b"h"),
        ]);
        assert_eq!(v.remaining(), 8);
        v.advance(4);
        assert_eq!(v.remaining(), 4);
        assert_eq!(v.read_iovec_len(), 2);
        assert_eq!(v.iov[v.start].iov_len, 3);
        v.advance(4);
        assert_eq!(v.remaining(), 0);
        assert_eq!(v.read_iovec_len(), 0);
    }
}
