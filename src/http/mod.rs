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
mod media;
mod ops;
mod server;
mod shim;

pub use api::{metrics_text, stats_document, streams_document};
pub use ops::Ops;
pub use server::serve;
pub use shim::Scope;

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

/// A response before it is written.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
}

impl Reply {
    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: format!("{body}\n"),
            content_type: "text/plain; charset=utf-8",
        }
    }
    pub fn json(status: u16, v: serde_json::Value) -> Reply {
        Reply {
            status,
            body: v.to_string(),
            content_type: "application/json",
        }
    }
}
