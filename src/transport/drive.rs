//! The one loop that drives a sans-IO RTMP session over a transport: read,
//! `handle_input`, the session's events, its output, and a wait bounded by
//! a deadline or the caller's own signal. Used by an accepted connection
//! (`ServerSession`), the edge pull and the outbound publish
//! (`ClientSession`); what differs between them (what an event means, where
//! output goes, when to give up) is their [`Handler`].

use std::future::Future;
use std::ops::ControlFlow;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::ReadHalf;
use crate::protocol::session::{
    ClientEvent, ClientSession, ServerEvent, ServerSession, SessionError,
};

/// What the driver needs of a session.
pub trait Session {
    type Event;
    /// `n` more bytes arrived (acknowledgement accounting).
    fn received(&mut self, n: usize);
    /// Decodes what `buf` holds, leaving any partial message there.
    fn handle_input(&mut self, buf: &mut BytesMut) -> Result<(), SessionError>;
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// Bytes to send (replies, acknowledgements, commands), if any.
    fn take_output(&mut self) -> Option<Bytes>;
}

macro_rules! session_impl {
    ($session:ty, $event:ty) => {
        impl Session for $session {
            type Event = $event;
            fn received(&mut self, n: usize) {
                <$session>::received(self, n)
            }
            fn handle_input(&mut self, buf: &mut BytesMut) -> Result<(), SessionError> {
                <$session>::handle_input(self, buf)
            }
            fn poll_event(&mut self) -> Option<$event> {
                <$session>::poll_event(self)
            }
            fn take_output(&mut self) -> Option<Bytes> {
                <$session>::take_output(self)
            }
        }
    };
}

session_impl!(ServerSession, ServerEvent);
session_impl!(ClientSession, ClientEvent);

/// What one kind of conversation does with its session. `Break` anywhere
/// ends the drive with that outcome.
// The runtime is thread-per-core: these futures never cross threads, so
// the `Send` bound the lint asks about would be wrong, not missing.
#[allow(async_fn_in_trait)]
pub trait Handler {
    type Session: Session;
    type Outcome;

    /// The session this handler drives (it owns it).
    fn session(&mut self) -> &mut Self::Session;

    /// One event of the session (may wait, e.g. for an auth decision).
    async fn on_event(
        &mut self,
        ev: <Self::Session as Session>::Event,
    ) -> ControlFlow<Self::Outcome>;

    /// The session's output: queue it for the writer, or write it.
    async fn send(&mut self, bytes: Bytes) -> ControlFlow<Self::Outcome>;

    /// The peer sent something the session refuses.
    fn bad_input(&mut self, e: SessionError) -> Self::Outcome;

    /// Whether to decode `buf` again before reading (a client that
    /// pipelined its commands behind one that waited for an answer).
    fn decode_again(&mut self, _buf: &BytesMut) -> bool {
        false
    }

    /// Everything read so far is handled. Break to stop; otherwise the
    /// deadline the next read may wait until (None: no deadline).
    fn idle(&mut self, now: Instant) -> ControlFlow<Self::Outcome, Option<Instant>>;

    /// Resolves when the wait for data must end early (a queue closed, a
    /// stream ended); never, by default.
    fn interrupt(&self) -> impl Future<Output = ()> {
        std::future::pending()
    }

    /// Makes room in `buf` for the next read.
    fn reserve(&self, buf: &mut BytesMut);

    /// `n` bytes were read (n > 0).
    fn on_read(&mut self, _n: usize) {}

    /// The peer closed the connection (`None`) or the read failed.
    fn closed(&mut self, error: Option<std::io::Error>) -> Self::Outcome;
}

/// Drives `session` over `rd` until the handler stops it. `buf` may already
/// hold bytes that arrived with the handshake.
pub async fn drive<H: Handler>(
    handler: &mut H,
    rd: &mut ReadHalf,
    mut buf: BytesMut,
) -> H::Outcome {
    loop {
        loop {
            if let Err(e) = handler.session().handle_input(&mut buf) {
                return handler.bad_input(e);
            }
            while let Some(ev) = handler.session().poll_event() {
                if let ControlFlow::Break(out) = handler.on_event(ev).await {
                    // What the session still has to say (a goodbye) first.
                    let _ = flush(handler).await;
                    return out;
                }
                if let ControlFlow::Break(out) = flush(handler).await {
                    return out;
                }
            }
            if let ControlFlow::Break(out) = flush(handler).await {
                return out;
            }
            if !handler.decode_again(&buf) {
                break;
            }
        }
        let deadline = match handler.idle(Instant::now()) {
            ControlFlow::Break(out) => return out,
            ControlFlow::Continue(d) => d,
        };
        handler.reserve(&mut buf);
        let wait = async {
            match deadline {
                Some(at) => monoio::time::sleep(at.saturating_duration_since(Instant::now())).await,
                None => std::future::pending::<()>().await,
            }
        };
        let interrupt = handler.interrupt();
        let stop = async {
            monoio::select! {
                _ = wait => {},
                _ = interrupt => {},
            }
        };
        let (res, back) = rd.read_until(buf, stop).await;
        buf = back;
        match res {
            // A deadline passed or the handler's signal fired: look again.
            Ok(None) => {}
            Ok(Some(0)) => return handler.closed(None),
            Ok(Some(n)) => {
                handler.session().received(n);
                handler.on_read(n);
            }
            Err(e) => return handler.closed(Some(e)),
        }
    }
}

async fn flush<H: Handler>(handler: &mut H) -> ControlFlow<H::Outcome> {
    match handler.session().take_output() {
        Some(bytes) => handler.send(bytes).await,
        None => ControlFlow::Continue(()),
    }
}
