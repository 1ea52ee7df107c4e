//! One accepted connection's plumbing, the same for every protocol path
//! (RTMP, HTTP): the connection counted as active, its outbox and writer
//! task, direct sends where the transport allows them, and the teardown
//! that flushes what was queued (bounded) and forgets the client.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Duration;

use monoio::task::JoinHandle;

use super::Worker;
use crate::egress::{writer, CloseReason, Outbox};
use crate::transport::{ReadHalf, Stream};

/// How long a closing connection may take to flush what it queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection's outbox, writer task and socket, from accept to close.
pub struct Link {
    pub worker: Rc<Worker>,
    pub outbox: Rc<Outbox>,
    pub id: u64,
    pub peer: SocketAddr,
    pub fd: RawFd,
    /// TLS bytes go through the writer task's TLS stream only.
    pub tls: bool,
    writer: JoinHandle<()>,
}

impl Link {
    /// Counts the connection active, splits `stream` and starts its writer
    /// task; the read half is the caller's.
    pub fn open(
        worker: &Rc<Worker>,
        stream: Stream,
        id: u64,
        peer: SocketAddr,
    ) -> (Link, ReadHalf) {
        let stats = &worker.stats;
        stats
            .connections_active
            .set(stats.connections_active.get() + 1);
        let fd = stream.fd();
        let tls = stream.is_tls();
        let (rd, wr) = stream.into_split();
        let outbox = Rc::new(Outbox::new(worker.live_queue_limits()));
        let writer = monoio::spawn(writer::write_loop(
            wr,
            outbox.clone(),
            worker.stats.clone(),
            fd,
            id,
            peer,
        ));
        let link = Link {
            worker: worker.clone(),
            outbox,
            id,
            peer,
            fd,
            tls,
            writer,
        };
        (link, rd)
    }

    /// Lets live frames go straight to the socket (or the core's batch)
    /// when the configuration allows it and the transport is plain TCP.
    pub fn send_direct(&self) {
        if self.worker.config.server.direct_writes && !self.tls {
            self.outbox.set_sink(
                Some(Box::new(writer::FdSink(self.fd))),
                Some(self.worker.stats.clone()),
            );
        }
    }

    /// Flushes what is queued (for at most [`FLUSH_TIMEOUT`]), closes the
    /// socket and forgets the client.
    pub async fn close(self, rd: ReadHalf) {
        // The socket closes below: no more direct writes.
        self.outbox.set_sink(None, None);
        self.outbox.close(CloseReason::Finish);
        if monoio::time::timeout(FLUSH_TIMEOUT, self.writer)
            .await
            .is_err()
        {
            // The peer stopped reading; unblock the writer. `rd` is still
            // alive here, so the descriptor is open.
            writer::shutdown(self.fd);
        }
        drop(rd);
        self.worker.remove_client(self.id);
        let stats = &self.worker.stats;
        stats
            .connections_active
            .set(stats.connections_active.get() - 1);
    }
}
