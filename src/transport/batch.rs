//! Batched fan-out sends on a worker's own small io_uring: one frame to
//! every idle player of a pass in one `io_uring_enter`, instead of one
//! `send(2)` per player.
//!
//! Each send is `MSG_DONTWAIT`, so the kernel completes it during the
//! submission (written, partly written, or `EAGAIN`) and never parks it; we
//! still wait for every completion before returning, which is what keeps
//! the borrowed buffer valid for as long as the kernel may read it.

use std::os::fd::RawFd;

use io_uring::{opcode, types, IoUring};

use crate::hub::BatchSend;

/// Sends in flight per submission; larger batches go in rounds.
const ENTRIES: u32 = 1024;

pub struct UringBatch {
    ring: IoUring,
}

impl UringBatch {
    /// A ring for batched sends, or the reason it cannot be had (the
    /// caller then sends one by one).
    pub fn new() -> std::io::Result<UringBatch> {
        Ok(UringBatch {
            ring: IoUring::new(ENTRIES)?,
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

impl BatchSend for UringBatch {
    fn send_all(&mut self, data: &[u8], fds: &[RawFd], results: &mut Vec<std::io::Result<usize>>) {
        results.clear();
        results.resize_with(fds.len(), || Ok(0));
        let Ok(len) = u32::try_from(data.len()) else {
            // Larger than one send can carry: the writers take it (Ok(0)).
            return;
        };
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        for (round, chunk) in fds.chunks(ENTRIES as usize).enumerate() {
            let base = round * ENTRIES as usize;
            let mut queued = 0usize;
            {
                let mut sq = self.ring.submission();
                for (i, fd) in chunk.iter().enumerate() {
                    let sqe = opcode::Send::new(types::Fd(*fd), data.as_ptr(), len)
                        .flags(flags)
                        .build()
                        .user_data((base + i) as u64);
                    // SAFETY: `data` is borrowed for this whole call and we
                    // return only after reaping every completion of this
                    // round (the loop below), so the kernel never reads it
                    // after it could be freed; `fd` is an open socket (its
                    // connection keeps it open while its sink is installed,
                    // and sinks are only used synchronously from the
                    // fan-out pass that called us).
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
                    // let the kernel read `data` later), so try again.
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn one_buffer_reaches_every_socket() {
        let Ok(mut batch) = UringBatch::new() else {
            eprintln!("io_uring unavailable here; skipping");
            return;
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut pairs = Vec::new();
        for _ in 0..3 {
            let client = std::net::TcpStream::connect(addr).unwrap();
            let (server, _) = listener.accept().unwrap();
            pairs.push((client, server));
        }
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
}
