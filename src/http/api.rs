//! The operations API (`/api/v1/...`) and the metrics page: which request
//! asks for what, and the documents built from the per-core snapshots
//! merged here.
//!
//! The routes are async: they run in a task on a worker runtime and await
//! the cores' answers ([`Ops::collect_async`], [`Ops::kick_async`]), so the
//! worker serving the request keeps serving its own connections, and its
//! own control task answers like any other core. Authorization is the
//! server's business ([`Ops::authorized`]) before it calls in here.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use super::Ops;
use crate::context::{KickTarget, Snapshot};
use crate::metrics::export::{render, Scrape, StreamSeries};
use crate::metrics::{
    HandshakeFailure, HistSnapshot, Label, LimitKind, Protocol, ProtocolErrorKind, StatsSnapshot,
};
use crate::protocol::http::Method;

/// The content type of the Prometheus text exposition.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A response before it is written.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
}

impl Reply {
    /// A one-line plain-text answer.
    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: format!("{body}\n"),
            content_type: "text/plain; charset=utf-8",
        }
    }

    pub fn json(status: u16, v: Value) -> Reply {
        Reply {
            status,
            body: v.to_string(),
            content_type: "application/json",
        }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, json!({ "error": message }))
    }
}

/// What an API path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    Stats,
    Streams,
    Clients,
    /// One stream, by its key (`app/name`, percent-decoded).
    Stream(String),
    /// One client, by the id the clients list gives (as sent).
    Client(String),
}

/// A request the API answers: a document built from snapshots, or a kick.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    Read(Resource),
    Kick(Resource),
}

/// `path` (after `/api/v1/`, as sent: still percent-encoded) and `method`
/// as a [`Request`], or the error reply.
fn parse(method: Method, path: &str) -> Result<Request, Reply> {
    let path = path.split('?').next().unwrap_or(path);
    let rest = path.trim_start_matches("/api/v1/").trim_end_matches('/');
    let resource = match rest {
        "stats" => Resource::Stats,
        "streams" => Resource::Streams,
        "clients" => Resource::Clients,
        r => match (r.strip_prefix("streams/"), r.strip_prefix("clients/")) {
            (Some(key), _) if !key.is_empty() => {
                // A stream key may hold any byte (`%2F`, spaces).
                Resource::Stream(percent_decode_str(key).decode_utf8_lossy().into_owned())
            }
            (_, Some(id)) if !id.is_empty() => Resource::Client(id.to_string()),
            _ => return Err(Reply::error(404, "not found")),
        },
    };
    let deletable = matches!(resource, Resource::Stream(_) | Resource::Client(_));
    match method {
        // HEAD is answered as GET; the server leaves the body out.
        Method::Get | Method::Head => Ok(Request::Read(resource)),
        Method::Delete if deletable => Ok(Request::Kick(resource)),
        _ => Err(Reply::error(405, "method not allowed")),
    }
}

/// `/api/v1/...`: streams, clients and stats (GET, HEAD); DELETE on a
/// stream or a client kicks it. `path` is the request's path as sent
/// (still percent-encoded: a stream key may hold `/` or `%`), starting
/// with `/api/v1/`.
pub async fn route(method: Method, path: &str, ops: &Ops) -> Reply {
    match parse(method, path) {
        Err(reply) => reply,
        Ok(Request::Read(r)) => read(&r, &ops.collect_async().await),
        Ok(Request::Kick(r)) => match kick_target(&r) {
            Ok(target) => kicked(&r, ops.kick_async(target).await),
            Err(reply) => reply,
        },
    }
}

/// The document `r` names.
fn read(r: &Resource, snaps: &[Snapshot]) -> Reply {
    match r {
        Resource::Stats => Reply::json(200, stats_document(snaps)),
        Resource::Streams => Reply::json(200, streams_document(snaps)),
        Resource::Clients => Reply::json(200, clients_document(snaps)),
        Resource::Stream(key) => match stream_views(snaps).get(key) {
            Some(v) => Reply::json(200, stream_json(key, v)),
            None => Reply::error(404, "not found"),
        },
        Resource::Client(id) => {
            let found = id.parse::<u64>().ok().and_then(|id| {
                snaps.iter().find_map(|s| {
                    let c = s.clients.iter().find(|c| c.id == id)?;
                    Some(client_json(s.core, c))
                })
            });
            match found {
                Some(doc) => Reply::json(200, doc),
                None => Reply::error(404, "not found"),
            }
        }
    }
}

fn kick_target(r: &Resource) -> Result<KickTarget, Reply> {
    match r {
        Resource::Stream(key) => Ok(KickTarget::Stream(key.clone())),
        Resource::Client(id) => id
            .parse::<u64>()
            .map(KickTarget::Client)
            .map_err(|_| Reply::error(400, "client id must be a number")),
        _ => Err(Reply::error(405, "method not allowed")),
    }
}

/// The answer to a kick that closed `n` connections.
fn kicked(r: &Resource, n: usize) -> Reply {
    if n == 0 {
        return Reply::error(404, "not found");
    }
    match r {
        Resource::Stream(key) => {
            tracing::info!(stream = %key, closed = n, "api: stream kicked");
            Reply::json(200, json!({ "stream": key, "closed": n }))
        }
        Resource::Client(id) => {
            tracing::info!(client = %id, "api: client kicked");
            let id: Value = id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n));
            Reply::json(200, json!({ "client": id, "closed": n }))
        }
        _ => Reply::error(405, "method not allowed"),
    }
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
    let by_protocol: serde_json::Map<String, Value> = Protocol::NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let hist = |hs: &[HistSnapshot]| hs.get(i).map(|h| histogram_json(&h.h));
            let at = |v: &[u64]| v.get(i).copied().unwrap_or(0);
            let doc = json!({
                "players": at(&s.players),
                "bytes_out": at(&s.bytes_out),
                "messages_out": at(&s.messages_out),
                "ingest_to_egress": hist(&s.ingest_to_egress),
                "first_frame": hist(&s.first_frame),
            });
            (name.to_string(), doc)
        })
        .collect();
    json!({
        "ingest_to_egress": histogram_json(&HistSnapshot::sum_of(&s.ingest_to_egress).h),
        "first_frame": histogram_json(&HistSnapshot::sum_of(&s.first_frame).h),
        "handshake": histogram_json(&s.handshake.h),
        "frames_dropped": s.frames_dropped,
        "slow_disconnects": s.slow_disconnects,
        "connections_total": s.connections,
        "connections_active": s.connections_active,
        "bytes_in": s.bytes_in,
        "bytes_out": s.bytes_out.iter().sum::<u64>(),
        "publisher_reconnects": s.publisher_reconnects,
        "io_driver": s.io_driver,
        "by_protocol": by_protocol,
        "limit_hits": labelled_json(LimitKind::NAMES, &s.limit_hits),
        "protocol_errors": labelled_json(ProtocolErrorKind::NAMES, &s.protocol_errors),
        "handshake_failures": labelled_json(HandshakeFailure::NAMES, &s.handshake_failures),
    })
}

/// A labelled counter family as `{label: count}`.
fn labelled_json(names: &[&str], values: &[u64]) -> Value {
    let map: serde_json::Map<String, Value> = names
        .iter()
        .zip(values.iter().chain(std::iter::repeat(&0)))
        .map(|(n, v)| (n.to_string(), json!(v)))
        .collect();
    Value::Object(map)
}

fn merged(snaps: &[Snapshot]) -> Option<StatsSnapshot> {
    let mut total: Option<StatsSnapshot> = None;
    for s in snaps {
        match &mut total {
            Some(t) => t.merge(&s.stats),
            None => total = Some(StatsSnapshot::clone(&s.stats)),
        }
    }
    total
}

/// The `/api/v1/stats` document: per core and merged.
pub fn stats_document(snaps: &[Snapshot]) -> Value {
    let cores: Vec<Value> = snaps
        .iter()
        .map(|s| {
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
            json!({ "core": s.core, "stats": stats_json(&s.stats), "streams": streams })
        })
        .collect();
    json!({
        "cores": cores,
        "total": merged(snaps).as_ref().map(stats_json),
    })
}

/// One stream merged across cores.
#[derive(Debug, Default)]
struct StreamView {
    owner: Option<usize>,
    publishing: bool,
    publisher: Option<u64>,
    publisher_addr: Option<String>,
    video: Option<String>,
    audio: Option<String>,
    bytes_in: u64,
    publisher_bytes_in: u64,
    uptime_ms: u64,
    gop_frames: usize,
    players: BTreeMap<usize, usize>,
    upstream: Option<(usize, String)>,
}

fn stream_views(snaps: &[Snapshot]) -> BTreeMap<String, StreamView> {
    let mut out: BTreeMap<String, StreamView> = BTreeMap::new();
    for s in snaps {
        for st in s.streams.iter() {
            let v = out.entry(st.key.clone()).or_default();
            if st.players > 0 {
                v.players.insert(s.core, st.players);
            }
            if st.upstream.is_some() {
                v.upstream = st.upstream.clone();
            }
            if st.owned {
                v.owner = Some(s.core);
                v.publishing = st.publishing;
                v.publisher = st.publisher;
                v.video = st.video_codec.clone();
                v.audio = st.audio_codec.clone();
                v.bytes_in = st.bytes_in;
                v.publisher_bytes_in = st.publisher_bytes_in;
                v.uptime_ms = st.uptime_ms;
                v.gop_frames = st.gop_frames;
                v.publisher_addr = st.publisher.and_then(|id| {
                    s.clients
                        .iter()
                        .find(|c| c.id == id)
                        .map(|c| c.peer.clone())
                });
            }
        }
    }
    out
}

fn stream_json(key: &str, v: &StreamView) -> Value {
    let (app, name) = key.rsplit_once('/').unwrap_or(("", key));
    // The current publisher's bytes over its uptime: a stream taken over
    // (a reconnect, a publisher moved here) restarts its average.
    let bitrate = v
        .publisher_bytes_in
        .saturating_mul(8_000)
        .checked_div(v.uptime_ms)
        .unwrap_or(0);
    let per_core: serde_json::Map<String, Value> = v
        .players
        .iter()
        .map(|(c, n)| (c.to_string(), json!(n)))
        .collect();
    json!({
        "key": key,
        "app": app,
        "name": name,
        "owner_core": v.owner,
        "publishing": v.publishing,
        "publisher": v.publisher.map(|id| json!({ "id": id, "address": v.publisher_addr })),
        "video_codec": v.video,
        "audio_codec": v.audio,
        "bytes_in": v.bytes_in,
        "bitrate_bps": bitrate,
        "uptime_ms": v.uptime_ms,
        "gop_frames": v.gop_frames,
        "players": v.players.values().sum::<usize>(),
        "players_per_core": per_core,
        // Set when an edge pull feeds the stream (null: published here).
        "upstream": v.upstream.as_ref().map(|(core, state)| json!({ "core": core, "state": state })),
    })
}

/// The `/api/v1/streams` document.
pub fn streams_document(snaps: &[Snapshot]) -> Value {
    let streams: Vec<Value> = stream_views(snaps)
        .iter()
        .map(|(k, v)| stream_json(k, v))
        .collect();
    json!({ "streams": streams })
}

fn client_json(core: usize, c: &crate::context::ClientInfo) -> Value {
    json!({
        "id": c.id, "core": core, "peer": c.peer, "role": c.role,
        "protocol": c.protocol.name(), "stream": c.stream,
        "connected_ms": c.connected_ms,
    })
}

fn clients_document(snaps: &[Snapshot]) -> Value {
    let clients: Vec<Value> = snaps
        .iter()
        .flat_map(|s| s.clients.iter().map(move |c| client_json(s.core, c)))
        .collect();
    json!({ "clients": clients })
}

/// The Prometheus page for one scrape (see [`METRICS_CONTENT_TYPE`]). A
/// core that does not answer in time shows its last figures.
pub async fn metrics_text(ops: &Ops) -> String {
    metrics_page(ops, &ops.collect_async().await)
}

/// The Prometheus page from these snapshots.
fn metrics_page(ops: &Ops, snaps: &[Snapshot]) -> String {
    let config = ops.config();
    let total = merged(snaps).unwrap_or_else(|| crate::metrics::CoreStats::default().snapshot());
    let views = stream_views(snaps);
    let streams = views.values().filter(|v| v.owner.is_some()).count() as u64;
    let mut series = Vec::new();
    let mut omitted = 0;
    if config.metrics.per_stream {
        for (key, v) in views.iter().filter(|(_, v)| v.owner.is_some()) {
            if series.len() >= config.metrics.per_stream_max {
                omitted += 1;
                continue;
            }
            series.push(StreamSeries {
                key: key.clone(),
                players: v.players.values().sum::<usize>() as u64,
                bytes_in: v.bytes_in,
                uptime_secs: v.uptime_ms as f64 / 1000.0,
            });
        }
    }
    let cores: Vec<(usize, &StatsSnapshot)> = snaps.iter().map(|s| (s.core, &*s.stats)).collect();
    render(&Scrape {
        cores: &cores,
        total: &total,
        streams,
        per_stream: &series,
        per_stream_omitted: omitted,
        ready: ops.is_ready(),
        draining: ops.is_draining(),
        hls_sessions: ops.hls_sessions(std::time::Instant::now()),
    })
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
