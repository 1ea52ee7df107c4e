//! An append-only memory file whose bytes go to sockets without a copy.
//!
//! A part of the segment being made is read by every LL-HLS player of its
//! stream within a few milliseconds. Sending it from user memory copies
//! every byte into the kernel once per player, the largest single cost of
//! that fan-out. A [`Spool`] is an anonymous memory file (`memfd_create`):
//! the packager appends each part once, and [`send_file`] hands its pages
//! to TCP with `sendfile(2)`, which takes references instead of copying.
//! Nothing touches a disk, and the kernel keeps any page a socket still
//! holds after the last holder of the file drops it.
//!
//! Written by hand: it is three system calls (`memfd_create`, `pwrite`,
//! `sendfile`) on descriptors the async runtime owns, which no crate wraps.
//! `sendfile` has no per-call "don't wait" flag, so it is only for sockets
//! made non-blocking with [`set_nonblocking`]. That flag does not change
//! the runtime's own I/O on the socket: io_uring's socket operations poll
//! and retry whatever the file's flags, and the epoll driver's sockets are
//! non-blocking already.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// An append-only memory file: one writer appends, any thread sends from
/// what was appended.
#[derive(Debug)]
pub struct Spool {
    fd: OwnedFd,
    /// Bytes appended so far; senders only send below this.
    written: AtomicU64,
}

impl Spool {
    /// A new, empty memory file.
    pub fn new() -> io::Result<Spool> {
        // SAFETY: the name is a valid NUL-terminated string and the flags
        // are valid for memfd_create.
        let fd = unsafe { libc::memfd_create(c"cascade-spool".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Spool {
            // SAFETY: `fd` was just returned by memfd_create and nothing
            // else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            written: AtomicU64::new(0),
        })
    }

    /// Appends `bufs` in order and returns the offset the first starts at.
    /// Only one thread appends (the stream's packager).
    pub fn append(&self, bufs: &[&[u8]]) -> io::Result<u64> {
        let start = self.written.load(Ordering::Relaxed);
        let mut at = start;
        for buf in bufs {
            let mut rest = *buf;
            while !rest.is_empty() {
                // SAFETY: the descriptor is open (self owns it); `rest` is a
                // live slice and its exact length is passed.
                let n = unsafe {
                    libc::pwrite(
                        self.fd.as_raw_fd(),
                        rest.as_ptr().cast(),
                        rest.len(),
                        at as libc::off_t,
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                rest = &rest[n as usize..];
                at += n as u64;
            }
        }
        self.written.store(at, Ordering::Release);
        Ok(start)
    }

    /// Bytes appended so far.
    pub fn len(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes a socket non-blocking, so that [`send_file`] on it never waits.
pub fn set_nonblocking(sock: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller holds open, with a valid
    // command.
    let flags = unsafe { libc::fcntl(sock, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above, with the flags just read plus O_NONBLOCK.
    if unsafe { libc::fcntl(sock, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `len` bytes of `spool` from `offset` to the non-blocking socket
/// `sock`: as many as it takes now (0 when it takes none). The range must
/// lie within what was appended.
pub fn send_file(sock: RawFd, spool: &Spool, offset: u64, len: usize) -> io::Result<usize> {
    if offset + len as u64 > spool.len() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let mut off = offset as libc::off_t;
    // SAFETY: both descriptors are open for the call (the caller's
    // connection holds the socket, `spool` the file); `off` is a live local
    // the kernel updates. The socket is non-blocking, so this never waits.
    let rc = unsafe { libc::sendfile(sock, spool.fd.as_raw_fd(), &mut off, len) };
    if rc >= 0 {
        return Ok(rc as usize);
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        set_nonblocking(server.as_raw_fd()).unwrap();
        (server, client)
    }

    #[test]
    fn appended_bytes_go_out_from_their_offset() {
        let spool = Spool::new().unwrap();
        assert_eq!(spool.append(&[b"0123", b"456789"]).unwrap(), 0);
        assert_eq!(spool.append(&[b"abcdef"]).unwrap(), 10);
        assert_eq!(spool.len(), 16);
        let (server, client) = pair();
        assert_eq!(send_file(server.as_raw_fd(), &spool, 8, 5).unwrap(), 5);
        assert!(
            send_file(server.as_raw_fd(), &spool, 12, 5).is_err(),
            "past the end"
        );
        drop(server);
        let mut got = String::new();
        (&client).read_to_string(&mut got).unwrap();
        assert_eq!(got, "89abc");
    }

    #[test]
    fn a_full_socket_takes_what_fits_and_never_blocks() {
        let spool = Spool::new().unwrap();
        let big = vec![7u8; 16 << 20];
        spool.append(&[&big]).unwrap();
        let (server, _client) = pair();
        // Nobody reads: the first sends fill the buffers, then nothing
        // more fits, and no call waits.
        let start = std::time::Instant::now();
        let mut total = 0;
        for _ in 0..8 {
            total += send_file(server.as_raw_fd(), &spool, 0, big.len()).unwrap();
        }
        assert!(total > 0 && total < 8 * big.len(), "{total}");
        assert_eq!(send_file(server.as_raw_fd(), &spool, 0, 1000).unwrap(), 0);
        assert!(start.elapsed() < std::time::Duration::from_millis(500));
    }
}
