//! Batched sends on a worker's own small io_uring: one frame to every idle
//! player of a fan-out pass, or every coalescing window that closed at the
//! same moment, in one `io_uring_enter` instead of one `send(2)` each.
//!
//! Each send is `MSG_DONTWAIT`, so the kernel completes it during the
//! submission (written, partly written, or `EAGAIN`) and never parks it; we
//! still wait for every completion before returning, which is what keeps
//! the borrowed buffer valid for as long as the kernel may read it.

use std::ops::Range;
use std::os::fd::RawFd;

use bytes::Bytes;
use io_uring::{opcode, squeue, types, IoUring};

use super::fanout::BatchSend;

/// Sends in flight per submission; larger batches go in rounds.
const ENTRIES: u32 = 1024;

pub struct UringBatch {
    ring: IoUring,
    /// Reused by [`BatchSend::send_each`]: the vectors and message headers
    /// of one submission (empty between calls, so no pointer outlives one).
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::msghdr>,
}

impl UringBatch {
    /// A ring for batched sends, or the reason it cannot be had (the
    /// caller then sends one by one).
    pub fn new() -> std::io::Result<UringBatch> {
        Ok(UringBatch {
            ring: IoUring::new(ENTRIES)?,
            iovecs: Vec::new(),
            headers: Vec::new(),
        })
    }
}

fn result_of(res: i32) -> std::io::Result<usize> {
    if res >= 0 {
        return Ok(res as usize);
    }
    let err = std::io::Error::from_raw_os_error(-res);
    match err.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(0),
        _ => Err(err),
    }
}

impl UringBatch {
    /// Submits the `n` sends `make(i)` builds, in rounds of [`ENTRIES`],
    /// and waits for every completion, so that whatever the entries point
    /// at (buffers, message headers) is never read by the kernel after this
    /// returns. `results[i]` gets the outcome of send `i`.
    ///
    /// # Safety
    /// Every entry `make` builds must point only at memory that stays valid
    /// and unchanged until this call returns, and at open sockets.
    unsafe fn run(
        &mut self,
        n: usize,
        make: impl Fn(usize) -> squeue::Entry,
        results: &mut Vec<std::io::Result<usize>>,
    ) {
        results.clear();
        results.resize_with(n, || Ok(0));
        let mut base = 0usize;
        while base < n {
            let end = (base + ENTRIES as usize).min(n);
            let mut queued = 0usize;
            {
                let mut sq = self.ring.submission();
                for i in base..end {
                    let sqe = make(i).user_data(i as u64);
                    // SAFETY: the caller vouches for what the entry points
                    // at, and we reap every completion of this round below
                    // before returning.
                    if unsafe { sq.push(&sqe) }.is_err() {
                        break;
                    }
                    queued += 1;
                }
            }
            let mut reaped = 0usize;
            while reaped < queued {
                if let Err(e) = self.ring.submit_and_wait(queued - reaped) {
                    // Interrupted or short of kernel resources: what was
                    // queued is still ours to wait for (returning now could
                    // let the kernel read the buffers later), so try again.
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        tracing::debug!(error = %e, "batched send: io_uring_enter failed; retrying");
                        std::thread::yield_now();
                    }
                }
                for cqe in self.ring.completion() {
                    let idx = cqe.user_data() as usize;
                    if let Some(slot) = results.get_mut(idx) {
                        *slot = result_of(cqe.result());
                    }
                    reaped += 1;
                }
            }
            // What did not fit the ring this round goes in the next.
            base += queued.max(1);
        }
    }
}

const FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

impl BatchSend for UringBatch {
    fn send_all(&mut self, data: &[u8], fds: &[RawFd], results: &mut Vec<std::io::Result<usize>>) {
        let Ok(len) = u32::try_from(data.len()) else {
            // Larger than one send can carry: the writers take it (Ok(0)).
            results.clear();
            results.resize_with(fds.len(), || Ok(0));
            return;
        };
        let make = |i: usize| {
            opcode::Send::new(types::Fd(fds[i]), data.as_ptr(), len)
                .flags(FLAGS)
                .build()
        };
        // SAFETY: `data` is borrowed for this whole call; every fd is an
        // open socket (its connection keeps it open while its sink is
        // installed, and sinks are only used synchronously from the pass
        // that called us).
        unsafe { self.run(fds.len(), make, results) }
    }

    fn send_each(
        &mut self,
        bufs: &[Bytes],
        sends: &[(RawFd, Range<usize>)],
        results: &mut Vec<std::io::Result<usize>>,
    ) {
        // Built in full before any pointer into them is taken, and not
        // touched again until `run` returned: no reallocation can move them.
        let mut iovecs = std::mem::take(&mut self.iovecs);
        let mut headers = std::mem::take(&mut self.headers);
        iovecs.extend(bufs.iter().map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        }));
        headers.extend(sends.iter().map(|(_, range)| {
            // SAFETY: an all-zero msghdr is valid (no name, no control).
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            let slice = &iovecs[range.clone()];
            msg.msg_iov = slice.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = slice.len() as _;
            msg
        }));
        let make = |i: usize| {
            opcode::SendMsg::new(types::Fd(sends[i].0), &headers[i])
                .flags(FLAGS as u32)
                .build()
        };
        // SAFETY: the headers point into `iovecs`, which point into `bufs`;
        // all three are left untouched until `run` returns, having reaped
        // every completion. The fds are open sockets, as for `send_all`.
        unsafe { self.run(sends.len(), make, results) };
        // Emptied for the next call: no pointer into `bufs` is kept.
        iovecs.clear();
        headers.clear();
        self.iovecs = iovecs;
        self.headers = headers;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    /// `n` connected (client, server) loopback pairs.
    fn socket_pairs(n: usize) -> Vec<(std::net::TcpStream, std::net::TcpStream)> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (0..n)
            .map(|_| {
                let client = std::net::TcpStream::connect(addr).unwrap();
                let (server, _) = listener.accept().unwrap();
                (client, server)
            })
            .collect()
    }

    #[test]
    fn one_buffer_reaches_every_socket() {
        let Ok(mut batch) = UringBatch::new() else {
            eprintln!("io_uring unavailable here; skipping");
            return;
        };
        let mut pairs = socket_pairs(3);
        let fds: Vec<RawFd> = pairs.iter().map(|(_, s)| s.as_raw_fd()).collect();
        let mut results = Vec::new();
        batch.send_all(b"hello", &fds, &mut results);
        assert_eq!(results.len(), 3);
        for ((client, _), r) in pairs.iter_mut().zip(&results) {
            assert_eq!(*r.as_ref().unwrap(), 5);
            let mut got = [0u8; 5];
            client.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"hello");
        }
        // A closed descriptor is an error for that socket only.
        let (_, dead) = pairs.pop().unwrap();
        let dead_fd = dead.as_raw_fd();
        drop(dead);
        batch.send_all(b"x", &[fds[0], dead_fd], &mut results);
        assert_eq!(*results[0].as_ref().unwrap(), 1);
        assert!(results[1].is_err());
    }

    #[test]
    fn each_socket_gets_its_own_buffers() {
        let Ok(mut batch) = UringBatch::new() else {
            eprintln!("io_uring unavailable here; skipping");
            return;
        };
        let mut pairs = socket_pairs(2);
        let bufs = [
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"cd"),
            Bytes::from_static(b"xyz"),
        ];
        let sends = [
            (pairs[0].1.as_raw_fd(), 0..2),
            (pairs[1].1.as_raw_fd(), 2..3),
        ];
        let mut results = Vec::new();
        batch.send_each(&bufs, &sends, &mut results);
        assert_eq!(*results[0].as_ref().unwrap(), 4);
        assert_eq!(*results[1].as_ref().unwrap(), 3);
        let mut got = [0u8; 4];
        pairs[0].0.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcd");
        let mut got = [0u8; 3];
        pairs[1].0.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"xyz");
    }
}
