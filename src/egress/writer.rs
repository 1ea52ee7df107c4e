//! The writer task of a connection: drains its outbox with vectored writes
//! (through TLS on an RTMPS connection).

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;

use super::meter;
use super::outbox::{Batch, CloseReason, DirectSink, Outbox};
use crate::metrics::CoreStats;
use crate::transport::{IoVecs, WriteHalf};

/// Messages and bytes per vectored write: enough to batch a burst, small
/// enough to keep one slow socket from holding much memory in flight.
const BATCH_ITEMS: usize = 64;
const BATCH_BYTES: usize = 512 * 1024;

/// How [`drain`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// The outbox closed and everything queued was written.
    Done,
    /// The slow-player policy cut the peer off (the socket is shut down).
    Slow,
    /// The socket failed (the outbox is closed, the socket shut down).
    Broken,
}

/// Drains `outbox` to `wr` with vectored writes until it closes: the loop
/// shared by players' writers and upstream publishes. `wrote` hears every
/// write's byte count, `done` every batch once it is fully written.
pub async fn drain(
    wr: &mut WriteHalf,
    outbox: &Outbox,
    fd: RawFd,
    mut wrote: impl FnMut(usize),
    mut done: impl FnMut(&mut Batch),
) -> Drained {
    let mut batch = Batch::default();
    let mut iov = IoVecs::default();
    while outbox
        .next_batch(&mut batch, BATCH_ITEMS, BATCH_BYTES)
        .await
    {
        iov.load(&mut batch.bufs);
        while iov.remaining() > 0 {
            // A peer that stopped reading blocks this write; the slow-player
            // policy cuts it off by shutting the socket down under it.
            let (res, back) = monoio::select! {
                r = wr.writev(iov) => r,
                _ = outbox.slow_closed() => {
                    reset(fd);
                    return Drained::Slow;
                }
            };
            iov = back;
            match res {
                Ok(0) | Err(_) => {
                    // Peer gone: drop what is queued and unblock the reader.
                    outbox.close(CloseReason::Broken);
                    shutdown(fd);
                    return Drained::Broken;
                }
                Ok(n) => {
                    iov.advance(n);
                    wrote(n);
                }
            }
        }
        iov.clear();
        outbox.write_done();
        done(&mut batch);
    }
    Drained::Done
}

/// A player connection's writer: [`drain`], recording egress latency and
/// first frames.
pub async fn write_loop(
    mut wr: WriteHalf,
    outbox: Rc<Outbox>,
    stats: Rc<CoreStats>,
    fd: RawFd,
    conn: u64,
    peer: SocketAddr,
) {
    // Not instrumented with the connection's span: entering a span on every
    // poll costs more than the rest of this loop. Logs name the connection.
    let record = |batch: &mut Batch| {
        let now = Instant::now();
        // Read per batch: a connection's protocol is fixed once it plays,
        // but it may play in several framings over its life.
        let protocol = outbox.framing().protocol();
        for t in batch.ingests.drain(..) {
            meter::sent(&stats, protocol, t, 1, now);
        }
        meter::first_frame(&stats, protocol, batch.first_keyframe_of_play.take(), now);
    };
    if drain(&mut wr, &outbox, fd, |_| {}, record).await != Drained::Broken {
        finish(&outbox, &stats, fd, conn, peer);
    }
}

fn finish(outbox: &Outbox, stats: &CoreStats, fd: RawFd, conn: u64, peer: SocketAddr) {
    let closed = outbox.closed();
    if closed.as_ref().is_some_and(CloseReason::is_abort) {
        reset(fd);
    }
    if closed == Some(CloseReason::SlowPlayer) {
        stats.slow_disconnects.set(stats.slow_disconnects.get() + 1);
        tracing::warn!(
            conn,
            %peer,
            dropped = outbox.dropped(),
            "slow player disconnected: stayed behind past player.slow_disconnect_ms"
        );
    }
    shutdown(fd);
}

/// Cuts a peer off with a reset rather than a FIN: with `SO_LINGER` 0 the
/// close discards what the kernel still holds for it (a stalled player's
/// unsent data would otherwise sit in FIN-WAIT-1 for minutes), and the peer
/// learns it was dropped instead of waiting for bytes that never come.
/// Then the socket is shut down so the reader's pending read returns.
pub fn reset(fd: RawFd) {
    // SAFETY: as in `shutdown`: the descriptor is open and ours for the
    // duration of the call; BorrowedFd does not close it.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let _ = socket2::SockRef::from(&borrowed).set_linger(Some(std::time::Duration::ZERO));
    shutdown(fd);
}

/// Shuts the socket down both ways so the reader's pending read returns.
pub fn shutdown(fd: RawFd) {
    // SAFETY: `fd` belongs to a socket whose read half is kept alive by the
    // connection task until after the writer finished or was told to stop,
    // so the descriptor is open and still ours; shutdown(2) does not free it.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Non-blocking sends on the connection's socket, for the outbox's direct
/// path (see `Outbox::set_sink`).
pub struct FdSink(pub RawFd);

impl DirectSink for FdSink {
    fn send_now(&self, bufs: &[&[u8]]) -> std::io::Result<usize> {
        if let [one] = bufs {
            // SAFETY: as below for the socket; `one` is a live slice and we
            // pass its exact length.
            let rc = unsafe {
                libc::send(
                    self.0,
                    one.as_ptr().cast(),
                    one.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            return sent(rc);
        }
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 64];
        let n = bufs.len().min(iov.len());
        for (slot, b) in iov.iter_mut().zip(bufs) {
            *slot = libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            };
        }
        // SAFETY: an all-zero msghdr is valid (no name, no control data);
        // we then point it at `n` initialised iovecs that borrow `bufs`,
        // which outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = n as _;
        // SAFETY: the connection keeps the socket open while this sink is
        // installed (it is removed before the socket closes); `msg` is
        // valid for the duration of the call. MSG_DONTWAIT makes this one
        // call non-blocking without touching the descriptor's flags, which
        // the runtime owns.
        let rc = unsafe { libc::sendmsg(self.0, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        sent(rc)
    }

    fn batch_handle(&self) -> Option<RawFd> {
        Some(self.0)
    }
}

/// A send's return value: bytes written, 0 when it would block, or the error.
fn sent(rc: isize) -> std::io::Result<usize> {
    if rc >= 0 {
        return Ok(rc as usize);
    }
    let err = std::io::Error::last_os_error();
    match err.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(0),
        _ => Err(err),
    }
}
