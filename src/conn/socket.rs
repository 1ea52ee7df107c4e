//! The socket side of a connection: the options set at accept (keepalive,
//! user timeout, unsent-bytes cap) and the read buffer's growth.

use std::os::fd::RawFd;
use std::time::Duration;

use bytes::BytesMut;
use tracing::debug;

use super::{ConnError, READ_MAX, READ_MIN};
use crate::transport::ReadHalf;

/// Finds peers that vanished: TCP keepalive probes an idle connection,
/// and TCP_USER_TIMEOUT closes one whose sent data goes unacknowledged.
pub(crate) fn set_timeouts(fd: RawFd, limits: &crate::config::LimitsSection) {
    // SAFETY: `fd` is the accepted socket, open for the duration of the
    // call; BorrowedFd does not close it.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&borrowed);
    if limits.tcp_keepalive_ms > 0 {
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_millis(limits.tcp_keepalive_ms))
            .with_interval(Duration::from_secs(10))
            .with_retries(3);
        if let Err(e) = sock.set_tcp_keepalive(&keepalive) {
            debug!(error = %e, "TCP keepalive not set");
        }
    }
    if limits.tcp_user_timeout_ms > 0 {
        let t = Duration::from_millis(limits.tcp_user_timeout_ms);
        if let Err(e) = sock.set_tcp_user_timeout(Some(t)) {
            debug!(error = %e, "TCP_USER_TIMEOUT not set");
        }
    }
}

/// Caps the bytes the kernel keeps queued but unsent for this socket.
///
/// Without it, loopback and fast links let the send buffer grow to
/// megabytes (tens of seconds of a stream), which hides a stalled player
/// from the slow-player policy and costs memory. 0 leaves the default.
pub(crate) fn set_notsent_lowat(fd: RawFd, bytes: u32) {
    if bytes == 0 {
        return;
    }
    let value: libc::c_int = bytes.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: `fd` is an open TCP socket owned by the caller's stream for
    // the duration of the call; we pass a pointer to a live c_int and its
    // exact size, as setsockopt(2) requires for TCP_NOTSENT_LOWAT.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        debug!(error = %std::io::Error::last_os_error(), "TCP_NOTSENT_LOWAT not set");
    }
}

/// Makes room for the next read: the small size normally, the large one
/// when the buffer already holds a lot (a publisher mid-message).
pub(super) fn grow(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_MIN / 2 {
        let want = if buf.len() >= READ_MIN / 2 {
            READ_MAX
        } else {
            READ_MIN
        };
        buf.reserve(want);
    }
}

/// Reads once into the spare capacity of `buf`, growing it first if needed:
/// to the small size normally, to the large one when the buffer already
/// holds a lot (a publisher mid-message).
pub(super) async fn read_more(
    rd: &mut ReadHalf,
    mut buf: BytesMut,
) -> Result<(usize, BytesMut), ConnError> {
    grow(&mut buf);
    // Reads go into the spare capacity, after the unconsumed bytes.
    let (res, buf) = rd.read(buf).await;
    Ok((res?, buf))
}
