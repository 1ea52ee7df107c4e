//! The control listener: health and statistics over HTTP, on its own
//! thread, off the RTMP cores' hot path. It asks every core for a snapshot
//! through the same channels the cores use, and merges the answers.

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::hub::{CoreMsg, Snapshot};
use crate::metrics::StatsSnapshot;
use crate::xcore::Mesh;

/// How long a scrape waits for a busy core before answering without it.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);

/// Collects one snapshot per core.
pub fn collect(mesh: &Mesh<CoreMsg>) -> Vec<Snapshot> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let cores = mesh.cores();
    for core in 0..cores {
        if mesh.send(core, CoreMsg::Snapshot { reply: tx.clone() }) {
            mesh.wake(core);
        }
    }
    drop(tx);
    let deadline = std::time::Instant::now() + SNAPSHOT_TIMEOUT;
    let mut out = Vec::with_capacity(cores);
    while out.len() < cores {
        match rx.recv_deadline(deadline) {
            Ok(s) => out.push(s),
            Err(_) => break,
        }
    }
    out.sort_by_key(|s| s.core);
    out
}

fn histogram_json(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50_us": h.value_at_quantile(0.50),
        "p90_us": h.value_at_quantile(0.90),
        "p99_us": h.value_at_quantile(0.99),
        "max_us": h.max(),
    })
}

fn stats_json(s: &StatsSnapshot) -> Value {
    json!({
        "ingest_to_egress": histogram_json(&s.ingest_to_egress_us),
        "first_frame": histogram_json(&s.first_frame_us),
        "frames_dropped": s.frames_dropped,
        "slow_disconnects": s.slow_disconnects,
        "connections_total": s.connections,
        "connections_active": s.connections_active,
    })
}

/// The `/api/v1/stats` document: per core and merged.
pub fn stats_document(snaps: &[Snapshot]) -> Value {
    let mut total: Option<StatsSnapshot> = None;
    let mut cores = Vec::new();
    for s in snaps {
        match &mut total {
            Some(t) => t.merge(&s.stats),
            None => total = Some(s.stats.clone()),
        }
        let streams: Vec<Value> = s
            .streams
            .iter()
            .map(|st| {
                json!({
                    "key": st.key, "owned": st.owned, "publishing": st.publishing,
                    "players": st.players, "remote_cores": st.remote_cores,
                    "gop_frames": st.gop_frames, "video_codec": st.video_codec,
                    "audio_codec": st.audio_codec, "bytes_in": st.bytes_in,
                })
            })
            .collect();
        cores.push(json!({ "core": s.core, "stats": stats_json(&s.stats), "streams": streams }));
    }
    json!({
        "cores": cores,
        "total": total.as_ref().map(stats_json),
    })
}

/// Serves the control endpoints until the process exits.
pub fn spawn(addr: String, mesh: Mesh<CoreMsg>) -> std::io::Result<()> {
    let server = tiny_http::Server::http(&addr).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("http listener {addr}: {e}"),
        )
    })?;
    let server = Arc::new(server);
    info!(%addr, "http control listener");
    std::thread::Builder::new()
        .name("cascade-http".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let (status, body, ctype) = route(req.method(), req.url(), &mesh);
                let header =
                    tiny_http::Header::from_bytes("Content-Type", ctype).expect("static header");
                let resp = tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(header);
                if let Err(e) = req.respond(resp) {
                    warn!(error = %e, "http respond failed");
                }
            }
        })?;
    Ok(())
}

fn route(
    method: &tiny_http::Method,
    url: &str,
    mesh: &Mesh<CoreMsg>,
) -> (u16, String, &'static str) {
    let path = url.split('?').next().unwrap_or(url);
    match (method, path) {
        (tiny_http::Method::Get, "/healthz") => (200, "ok\n".into(), "text/plain"),
        (tiny_http::Method::Get, "/api/v1/stats") => {
            let doc = stats_document(&collect(mesh));
            (200, doc.to_string(), "application/json")
        }
        _ => (404, "not found\n".into(), "text/plain"),
    }
}
