//! The writer task of a connection: drains its outbox with vectored writes.

use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;

use monoio::io::AsyncWriteRent;

use super::iovec::IoVecs;
use crate::hub::{CloseReason, Outbox};
use crate::metrics::CoreStats;

/// Messages and bytes per vectored write: enough to batch a burst, small
/// enough to keep one slow socket from holding much memory in flight.
const BATCH_ITEMS: usize = 64;
const BATCH_BYTES: usize = 512 * 1024;

pub async fn write_loop<W: AsyncWriteRent>(
    mut wr: W,
    outbox: Rc<Outbox>,
    stats: Rc<CoreStats>,
    fd: RawFd,
) {
    while let Some(batch) = outbox.next_batch(BATCH_ITEMS, BATCH_BYTES).await {
        let mut iov = IoVecs::new(batch.bufs);
        while iov.remaining() > 0 {
            // A peer that stopped reading blocks this write; the slow-player
            // policy cuts it off by shutting the socket down under it.
            let (res, back) = monoio::select! {
                r = wr.writev(iov) => r,
                _ = outbox.slow_closed() => {
                    return finish(&outbox, &stats, fd);
                }
            };
            iov = back;
            match res {
                Ok(0) | Err(_) => {
                    // Peer gone: drop what is queued and unblock the reader.
                    outbox.close(CloseReason::Broken);
                    shutdown(fd);
                    return;
                }
                Ok(n) => iov.advance(n),
            }
        }
        let now = Instant::now();
        for t in &batch.ingests {
            stats.record_egress(now.duration_since(*t));
        }
        if let Some(t) = batch.first_keyframe_of_play {
            stats.record_first_frame(now.duration_since(t));
        }
    }
    finish(&outbox, &stats, fd);
}

fn finish(outbox: &Outbox, stats: &CoreStats, fd: RawFd) {
    if outbox.closed() == Some(CloseReason::SlowPlayer) {
        stats.slow_disconnects.set(stats.slow_disconnects.get() + 1);
        tracing::warn!(
            dropped = outbox.dropped(),
            "slow player disconnected: stayed behind past player.slow_disconnect_ms"
        );
    }
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
