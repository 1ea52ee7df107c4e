//! The HTTP service, on every worker (SO_REUSEPORT, like RTMP): media
//! players (HTTP-FLV and WebSocket-FLV, `media`), and the control plane
//! (health, readiness, Prometheus metrics and the operations API, `api`
//! and `ops`) on the same connection code (`server`). The control plane
//! reaches the cores only through the control mesh: a snapshot request, a
//! kick, a reload or a drain is one message per core, awaited without
//! blocking the core that serves the request.
//!
//! `http.listen` serves media, `/metrics`, `/healthz` and `/readyz` (and the
//! API unless `http.api_listen` is set, in which case the API is served only
//! there, e.g. on loopback); `tls.http_listen` serves the same over HTTPS.

mod api;
mod hls;
mod media;
mod ops;
mod server;

pub use api::{metrics_text, stats_document, streams_document, Reply, METRICS_CONTENT_TYPE};
pub use ops::{Ops, Scope, REPLY_TIMEOUT};
pub use server::serve;

/// Which endpoints a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serves {
    /// Media, /metrics, /healthz, /readyz and the API.
    All,
    /// Media, /metrics, /healthz, /readyz.
    Probes,
    /// The API (and /healthz).
    Api,
}

/// The CORS header every media answer (and the helpers a browser player
/// calls: preflight, `/time`) carries, from `http.allow_origin`; none when
/// that is empty.
fn cors(origin: &str) -> Option<(&'static str, &str)> {
    (!origin.is_empty()).then_some(("Access-Control-Allow-Origin", origin))
}
