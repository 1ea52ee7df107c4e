//! The control plane: health, readiness, Prometheus metrics and the
//! operations API over HTTP, on their own threads, off the RTMP cores' hot
//! path. It reaches the cores only through the mesh: a snapshot request,
//! a kick, a reload or a drain is one message per core.
//!
//! `http.listen` serves `/metrics`, `/healthz` and `/readyz` (and the API
//! unless `http.api_listen` is set, in which case the API is served only
//! there, e.g. on loopback).

mod api;
mod ops;

use std::sync::Arc;

use tracing::{info, warn};

use crate::config::Config;

pub use api::{
    metrics_text, route as api_route, stats_document, streams_document, Reply, METRICS_CONTENT_TYPE,
};
pub use ops::{Ops, Scope, REPLY_TIMEOUT};

/// Which endpoints a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Serves {
    /// /metrics, /healthz, /readyz and the API.
    All,
    /// /metrics, /healthz, /readyz.
    Probes,
    /// The API (and /healthz).
    Api,
}

/// Starts the listeners the configuration asks for.
pub fn start(config: &Config, ops: Arc<Ops>) -> std::io::Result<()> {
    let api = config.http.api_listen.trim();
    let main = config.http.listen.trim();
    if !main.is_empty() {
        let serves = if api.is_empty() {
            Serves::All
        } else {
            Serves::Probes
        };
        spawn(main, serves, ops.clone())?;
    }
    if !api.is_empty() {
        spawn(api, Serves::Api, ops)?;
    }
    Ok(())
}

fn spawn(addr: &str, serves: Serves, ops: Arc<Ops>) -> std::io::Result<()> {
    let server = tiny_http::Server::http(addr).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("http listener {addr}: {e}"),
        )
    })?;
    info!(%addr, ?serves, "http control listener");
    std::thread::Builder::new()
        .name("cascade-http".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let reply = route(req.method(), req.url(), serves, &ops);
                let header = tiny_http::Header::from_bytes("Content-Type", reply.content_type)
                    .expect("static header");
                let resp = tiny_http::Response::from_string(reply.body)
                    .with_status_code(reply.status)
                    .with_header(header);
                if let Err(e) = req.respond(resp) {
                    warn!(error = %e, "http respond failed");
                }
            }
        })?;
    Ok(())
}

fn route(method: &tiny_http::Method, url: &str, serves: Serves, ops: &Ops) -> Reply {
    use tiny_http::Method::{Delete, Get};
    let path = url.split('?').next().unwrap_or(url);
    let probes = serves != Serves::Api;
    let api_on = serves != Serves::Probes;
    match (method, path) {
        (Get, "/healthz") => Reply::text(200, "ok"),
        (Get, "/readyz") if probes => {
            if ops.is_ready() {
                Reply::text(200, "ready")
            } else if ops.is_draining() {
                Reply::text(503, "draining")
            } else {
                Reply::text(503, "starting")
            }
        }
        (Get, "/metrics") if probes => Reply {
            status: 200,
            body: api::metrics_text_blocking(ops),
            content_type: "text/plain; version=0.0.4; charset=utf-8",
        },
        // Interim: the blocking twins of the async routes, until the
        // listener moves onto the worker runtimes.
        _ if api_on && path.starts_with("/api/v1/") => {
            let method = match method {
                Get => crate::protocol::http::Method::Get,
                Delete => crate::protocol::http::Method::Delete,
                tiny_http::Method::Head => crate::protocol::http::Method::Head,
                _ => crate::protocol::http::Method::Other,
            };
            api::route_blocking(method, path, ops)
        }
        (Get | Delete, _) => Reply::text(404, "not found"),
        _ => Reply::text(405, "method not allowed"),
    }
}
