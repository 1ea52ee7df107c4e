//! A worker's accept loop: the node-wide connection limits, then a task
//! per connection (with a TLS handshake first on the RTMPS listener).

use std::rc::Rc;
use std::sync::Arc;

use tracing::warn;

use super::Worker;
use crate::http::{Ops, Serves};
use crate::metrics::{Label, LimitKind, RejectReason};
use crate::transport::TlsServer;

/// What a listener's connections speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Service {
    Rtmp,
    Http(Serves),
}

/// One listener's accept loop on one worker.
#[derive(Clone)]
pub(super) struct Accept {
    pub(super) worker: Rc<Worker>,
    pub(super) ops: Arc<Ops>,
    pub(super) limiter: crate::auth::ConnLimiter,
}

impl Accept {
    /// Accepts until a drain starts, then closes the listener (HTTP
    /// listeners stay open: probes, metrics and the API answer through a
    /// drain, and media requests get a 503). With `tls`, each connection
    /// starts with a TLS handshake using the certificate in force at
    /// accept time.
    pub(super) async fn run(
        &self,
        listener: monoio::net::TcpListener,
        tls: Option<Arc<TlsServer>>,
        service: Service,
    ) {
        let worker = &self.worker;
        let id = worker.id;
        let stop_on_drain = service == Service::Rtmp;
        loop {
            let accepted = if stop_on_drain {
                monoio::select! {
                    r = listener.accept() => r,
                    _ = worker.drained() => break,
                }
            } else {
                listener.accept().await
            };
            match accepted {
                Ok((stream, peer)) => {
                    worker
                        .stats
                        .connections
                        .set(worker.stats.connections.get() + 1);
                    // Limits are read from the live configuration (a reload applies).
                    let limits = self.ops.config().limits.clone();
                    let permit = match self.limiter.admit(
                        peer.ip(),
                        limits.max_connections,
                        limits.max_connections_per_ip,
                    ) {
                        Ok(p) => p,
                        Err(e) => {
                            let (reason, kind, value) = match e {
                                crate::auth::LimitExceeded::Total => (
                                    RejectReason::MaxConnections,
                                    LimitKind::MaxConnections,
                                    limits.max_connections,
                                ),
                                crate::auth::LimitExceeded::PerIp => (
                                    RejectReason::MaxConnectionsPerIp,
                                    LimitKind::MaxConnectionsPerIp,
                                    limits.max_connections_per_ip,
                                ),
                            };
                            worker.stats.rejected.inc(reason);
                            worker.stats.limit_hits.inc(kind);
                            warn!(
                                worker = id,
                                limit = %format_args!("limits.{}", kind.name()),
                                value,
                                %peer,
                                reason = %e,
                                "limit hit: connection refused"
                            );
                            drop(stream);
                            continue;
                        }
                    };
                    let worker = worker.clone();
                    let tls = tls.as_ref().map(|t| t.config());
                    let ops = self.ops.clone();
                    monoio::spawn(async move {
                        match service {
                            Service::Rtmp => crate::conn::serve(worker, stream, peer, tls).await,
                            Service::Http(serves) => {
                                crate::http::serve(worker, ops, stream, peer, serves, tls).await
                            }
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    worker.stats.rejected.inc(RejectReason::AcceptError);
                    warn!(worker = id, error = %e, "accept failed");
                    monoio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        drop(listener);
    }
}
