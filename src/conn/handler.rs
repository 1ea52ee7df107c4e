//! The accepted connection as a handler of the shared session loop
//! (`transport::drive`): events to the connection's logic, replies to its
//! outbox, and the deadlines and signals that bound each read.

use std::ops::ControlFlow;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::socket::grow;
use super::{Conn, ConnError, Role};
use crate::egress::CloseReason;
use crate::protocol::session::{ServerEvent, ServerSession, SessionError};
use crate::transport::drive::Handler;

/// The accepted connection's side of the one session loop.
impl Handler for Conn {
    type Session = ServerSession;
    type Outcome = Result<(), ConnError>;

    fn session(&mut self) -> &mut ServerSession {
        &mut self.session
    }

    async fn on_event(&mut self, ev: ServerEvent) -> ControlFlow<Self::Outcome> {
        self.answered |= matches!(
            ev,
            ServerEvent::PublishRequested { .. } | ServerEvent::PlayRequested { .. }
        );
        if let Some(deferred) = self.apply_event(ev, Instant::now()) {
            // The session holds its answer meanwhile; media the client
            // sends stays buffered in the socket.
            self.resolve(deferred).await;
        }
        ControlFlow::Continue(())
    }

    /// Replies are queued; a peer that leaves too many unread is cut off
    /// (seen by `idle`, through the closed outbox).
    async fn send(&mut self, bytes: Bytes) -> ControlFlow<Self::Outcome> {
        self.outbox.push_control(bytes);
        ControlFlow::Continue(())
    }

    fn bad_input(&mut self, e: SessionError) -> Self::Outcome {
        Err(ConnError::Session(e))
    }

    /// The session stops decoding while a publish or play awaits its
    /// answer; once answered, what was already read (a client that
    /// pipelines its commands) is decoded before reading again.
    fn decode_again(&mut self, buf: &BytesMut) -> bool {
        std::mem::take(&mut self.answered) && !buf.is_empty() && self.outbox.closed().is_none()
    }

    fn idle(&mut self, now: Instant) -> ControlFlow<Self::Outcome, Option<Instant>> {
        // One wake-up per other core for everything this read produced.
        self.worker.hub.borrow_mut().flush_wakes();
        if self.worker.draining() && !self.reconnect_sent {
            self.on_drain();
        }
        if let Some(reason) = self.outbox.closed() {
            return ControlFlow::Break(match reason {
                CloseReason::Unread => Err(ConnError::Unread {
                    max: self.worker.live_queue_limits().max_control_bytes,
                }),
                _ => Ok(()),
            });
        }
        self.on_stream_end();
        let Some(((at, after), limit, what)) = self.read_deadline() else {
            return ControlFlow::Continue(None);
        };
        if now >= at {
            return ControlFlow::Break(Err(ConnError::Timeout {
                limit,
                ms: after.as_millis() as u64,
                what,
            }));
        }
        ControlFlow::Continue(Some(at))
    }

    /// A player also looks up when its stream ends; everyone when the
    /// outbox closes.
    fn interrupt(&self) -> impl std::future::Future<Output = ()> {
        let watch_end = matches!(self.role, Role::Player { .. });
        let outbox = self.outbox.clone();
        async move {
            if watch_end {
                outbox.attention().await
            } else {
                outbox.closed_signal().await
            }
        }
    }

    fn reserve(&self, buf: &mut BytesMut) {
        grow(buf);
    }

    fn on_read(&mut self, n: usize) {
        self.worker.stats.add_in(n as u64);
        tracing::trace!(n, "read");
    }

    fn closed(&mut self, error: Option<std::io::Error>) -> Self::Outcome {
        match error {
            None => Ok(()),
            Some(e) => Err(ConnError::Io(e)),
        }
    }
}
