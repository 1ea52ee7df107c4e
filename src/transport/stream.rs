//! A TCP stream, plain or carrying TLS, and its two halves.
//!
//! With TLS the halves share the rustls connection state through an
//! `Rc<RefCell<_>>` (one worker thread; a borrow is never held across an
//! await) and each owns its half of the socket: the read half only reads
//! the socket, the write half only writes it, so a connection's reader
//! task and writer task never race on a buffer. Records the reader
//! processes that want an answer (a key update) go out with the writer's
//! next write.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent,
    OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use super::IoVecs;

/// Ciphertext read from the socket per read call.
const CIPHER_READ: usize = 16 * 1024;
/// Plaintext rustls may hold encrypted but unsent: one writer batch fits in
/// a few records and is sent with one write.
const TLS_SEND_LIMIT: usize = 256 * 1024;
/// Plaintext a read may return when the caller reserved no room.
const PLAIN_READ_MIN: usize = 4 * 1024;

/// A connected socket, before it is split.
pub struct Stream {
    tcp: TcpStream,
    tls: Option<Tls>,
}

/// The TLS state of a stream: rustls's connection and ciphertext that was
/// read but not yet given to it.
struct Tls {
    conn: Connection,
    cipher: BytesMut,
}

impl Stream {
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream { tcp, tls: None }
    }

    /// Runs the server side of a TLS handshake on `tcp`.
    pub async fn accept_tls(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<Stream> {
        let conn = ServerConnection::new(config).map_err(invalid)?;
        Stream::handshake(tcp, conn.into()).await
    }

    /// Runs the client side of a TLS handshake on `tcp` for `name`.
    pub async fn connect_tls(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<Stream> {
        let conn = ClientConnection::new(config, name).map_err(invalid)?;
        Stream::handshake(tcp, conn.into()).await
    }

    async fn handshake(mut tcp: TcpStream, mut conn: Connection) -> io::Result<Stream> {
        conn.set_buffer_limit(Some(TLS_SEND_LIMIT));
        let mut cipher = BytesMut::with_capacity(CIPHER_READ);
        let mut out = Vec::new();
        loop {
            flush_tls(&mut conn, &mut tcp, &mut out).await?;
            if !conn.is_handshaking() {
                break;
            }
            if cipher.is_empty() {
                let len = cipher.len();
                cipher.reserve(CIPHER_READ);
                let (res, slice) = tcp.read(cipher.slice_mut(len..)).await;
                cipher = slice.into_inner();
                if res? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed during the TLS handshake",
                    ));
                }
            }
            if let Err(e) = feed(&mut conn, &mut cipher) {
                // Tell the peer why (an alert is queued), then give up.
                let _ = flush_tls(&mut conn, &mut tcp, &mut out).await;
                return Err(e);
            }
        }
        Ok(Stream {
            tcp,
            tls: Some(Tls { conn, cipher }),
        })
    }

    /// The socket's descriptor, for socket options and a forced shutdown.
    pub fn fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        let (rd, wr) = self.tcp.into_split();
        match self.tls {
            None => (
                ReadHalf {
                    tcp: rd,
                    tls: None,
                    eof: false,
                },
                WriteHalf { tcp: wr, tls: None },
            ),
            Some(Tls { conn, cipher }) => {
                let conn = Rc::new(RefCell::new(conn));
                (
                    ReadHalf {
                        tcp: rd,
                        tls: Some((conn.clone(), cipher)),
                        eof: false,
                    },
                    WriteHalf {
                        tcp: wr,
                        tls: Some((conn, Vec::new())),
                    },
                )
            }
        }
    }
}

/// Reads plaintext.
pub struct ReadHalf {
    tcp: OwnedReadHalf<TcpStream>,
    /// With TLS: the shared connection and unprocessed ciphertext.
    tls: Option<(Rc<RefCell<Connection>>, BytesMut)>,
    /// The socket reached end of file (TLS only: rustls was told).
    eof: bool,
}

impl ReadHalf {
    /// Reads once into the spare capacity of `buf` (after its contents):
    /// the bytes read, 0 at end of stream.
    pub async fn read(&mut self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        self.read_inner(buf, None).await
    }

    /// As [`ReadHalf::read`], but gives up with an `ECANCELED` error once
    /// `cancel` fires. No byte is lost: whatever the socket delivered before
    /// the cancel is returned now or kept for the next read.
    pub async fn read_cancelable(
        &mut self,
        buf: BytesMut,
        cancel: CancelHandle,
    ) -> (io::Result<usize>, BytesMut) {
        self.read_inner(buf, Some(cancel)).await
    }

    /// Reads once, unless `stop` resolves first: then `Ok(None)`. The read
    /// is cancelled and awaited rather than dropped, so a byte the socket
    /// delivered meanwhile is returned, never lost.
    pub async fn read_until(
        &mut self,
        buf: BytesMut,
        stop: impl std::future::Future<Output = ()>,
    ) -> (io::Result<Option<usize>>, BytesMut) {
        let canceller = monoio::io::Canceller::new();
        let read = self.read_cancelable(buf, canceller.handle());
        let mut read = std::pin::pin!(read);
        let first = monoio::select! {
            r = &mut read => Some(r),
            _ = stop => None,
        };
        let (res, buf) = match first {
            Some(r) => r,
            None => {
                let _ = canceller.cancel();
                read.await
            }
        };
        match res {
            Ok(n) => (Ok(Some(n)), buf),
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => (Ok(None), buf),
            Err(e) => (Err(e), buf),
        }
    }

    async fn read_inner(
        &mut self,
        mut buf: BytesMut,
        cancel: Option<CancelHandle>,
    ) -> (io::Result<usize>, BytesMut) {
        let Some((conn, cipher)) = self.tls.as_mut() else {
            let len = buf.len();
            let (res, slice) = match cancel {
                None => self.tcp.read(buf.slice_mut(len..)).await,
                Some(c) => self.tcp.cancelable_read(buf.slice_mut(len..), c).await,
            };
            return (res, slice.into_inner());
        };
        loop {
            match read_plain(&mut conn.borrow_mut(), &mut buf) {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => {}
                Err(e) => return (Err(e), buf),
            }
            // rustls needs more records.
            if !cipher.is_empty() {
                if let Err(e) = feed(&mut conn.borrow_mut(), cipher) {
                    return (Err(e), buf);
                }
                continue;
            }
            if self.eof {
                // rustls was told and still wants more: nothing will come.
                return (Ok(0), buf);
            }
            let taken = std::mem::take(cipher);
            let (res, back) = read_cipher(&mut self.tcp, taken, cancel.clone()).await;
            *cipher = back;
            match res {
                Ok(0) => {
                    self.eof = true;
                    let mut conn = conn.borrow_mut();
                    // An empty read tells rustls the socket ended.
                    let _ = conn.read_tls(&mut io::empty());
                    if let Err(e) = conn.process_new_packets() {
                        return (Err(invalid(e)), buf);
                    }
                }
                Ok(_) => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }
}

/// Plaintext rustls already decrypted, into `buf`'s spare room: `Some(n)`
/// (0 at a clean or unclean end of stream), `None` if it needs records.
fn read_plain(conn: &mut Connection, buf: &mut BytesMut) -> io::Result<Option<usize>> {
    let len = buf.len();
    let room = (buf.capacity() - len).max(PLAIN_READ_MIN);
    buf.resize(len + room, 0);
    let result = conn.reader().read(&mut buf[len..]);
    let n = match &result {
        Ok(n) => *n,
        Err(_) => 0,
    };
    buf.truncate(len + n);
    match result {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        // The peer closed the socket without close_notify. RTMP has its own
        // framing, so a truncation attack gains nothing: treat it as the end.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(0)),
        Err(e) => Err(e),
    }
}

/// Gives buffered ciphertext to rustls and processes it.
fn feed(conn: &mut Connection, cipher: &mut BytesMut) -> io::Result<()> {
    let mut rd: &[u8] = &cipher[..];
    let n = conn.read_tls(&mut rd)?;
    if n == 0 {
        // Only when rustls holds undelivered plaintext, which callers
        // drain before feeding more; never spin on it.
        return Err(io::Error::other("TLS receive buffer full"));
    }
    cipher.advance(n);
    conn.process_new_packets().map_err(invalid)?;
    Ok(())
}

async fn read_cipher(
    tcp: &mut OwnedReadHalf<TcpStream>,
    mut cipher: BytesMut,
    cancel: Option<CancelHandle>,
) -> (io::Result<usize>, BytesMut) {
    cipher.reserve(CIPHER_READ);
    let len = cipher.len();
    let (res, slice) = match cancel {
        None => tcp.read(cipher.slice_mut(len..)).await,
        Some(c) => tcp.cancelable_read(cipher.slice_mut(len..), c).await,
    };
    (res, slice.into_inner())
}

/// Writes plaintext.
pub struct WriteHalf {
    tcp: OwnedWriteHalf<TcpStream>,
    /// With TLS: the shared connection and a reused ciphertext buffer.
    tls: Option<(Rc<RefCell<Connection>>, Vec<u8>)>,
}

impl WriteHalf {
    /// One vectored write: the bytes of `iov` taken (with TLS: encrypted and
    /// fully sent). Ok(0) means the peer is gone.
    pub async fn writev(&mut self, iov: IoVecs) -> (io::Result<usize>, IoVecs) {
        let Some((conn, out)) = self.tls.as_mut() else {
            return self.tcp.writev(iov).await;
        };
        let taken = {
            let slices: Vec<io::IoSlice<'_>> = iov.slices().map(io::IoSlice::new).collect();
            conn.borrow_mut().writer().write_vectored(&slices)
        };
        let n = match taken {
            Ok(n) => n,
            Err(e) => return (Err(e), iov),
        };
        match send_pending(conn, &mut self.tcp, out).await {
            Ok(()) => (Ok(n), iov),
            Err(e) => (Err(e), iov),
        }
    }

    /// Writes all of `bytes`.
    pub async fn write_all(&mut self, bytes: Bytes) -> io::Result<()> {
        let Some((conn, out)) = self.tls.as_mut() else {
            let (res, _) = self.tcp.write_all(bytes).await;
            return res.map(|_| ());
        };
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = conn.borrow_mut().writer().write(rest)?;
            send_pending(conn, &mut self.tcp, out).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            rest = &rest[n..];
        }
        Ok(())
    }
}

/// Sends every TLS record rustls has queued.
async fn send_pending(
    conn: &Rc<RefCell<Connection>>,
    tcp: &mut OwnedWriteHalf<TcpStream>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        out.clear();
        {
            let mut c = conn.borrow_mut();
            while c.wants_write() {
                c.write_tls(out)?;
            }
        }
        if out.is_empty() {
            return Ok(());
        }
        let (res, back) = tcp.write_all(std::mem::take(out)).await;
        *out = back;
        res?;
    }
}

/// Sends what rustls has queued during the handshake.
async fn flush_tls(
    conn: &mut Connection,
    tcp: &mut TcpStream,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    while conn.wants_write() {
        conn.write_tls(out)?;
    }
    if !out.is_empty() {
        let (res, back) = tcp.write_all(std::mem::take(out)).await;
        *out = back;
        res?;
    }
    Ok(())
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
