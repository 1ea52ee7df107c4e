//! Documents the control plane serves: the JSON API and the metrics page,
//! built from per-core snapshots merged here.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::{Ops, Reply};
use crate::context::{KickTarget, Snapshot};
use crate::metrics::export::{render, Scrape, StreamSeries};
use crate::metrics::{
    HandshakeFailure, HistSnapshot, Label, LimitKind, Protocol, ProtocolErrorKind, StatsSnapshot,
};

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
            None => total = Some(s.stats.clone()),
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
    uptime_ms: u64,
    gop_frames: usize,
    players: BTreeMap<usize, usize>,
    upstream: Option<(usize, String)>,
}

fn stream_views(snaps: &[Snapshot]) -> BTreeMap<String, StreamView> {
    let mut out: BTreeMap<String, StreamView> = BTreeMap::new();
    for s in snaps {
        for st in &s.streams {
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
    let bitrate = v
        .bytes_in
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

fn clients_document(snaps: &[Snapshot]) -> Value {
    let clients: Vec<Value> = snaps
        .iter()
        .flat_map(|s| {
            s.clients.iter().map(move |c| {
                json!({
                    "id": c.id, "core": s.core, "peer": c.peer, "role": c.role,
                    "protocol": c.protocol.name(), "stream": c.stream,
                    "connected_ms": c.connected_ms,
                })
            })
        })
        .collect();
    json!({ "clients": clients })
}

/// The Prometheus page for one scrape.
pub fn metrics_text(ops: &Ops) -> String {
    let snaps = ops.collect();
    let config = ops.config();
    let total = merged(&snaps).unwrap_or_else(|| crate::metrics::CoreStats::default().snapshot());
    let views = stream_views(&snaps);
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
    let cores: Vec<(usize, &StatsSnapshot)> = snaps.iter().map(|s| (s.core, &s.stats)).collect();
    render(&Scrape {
        cores: &cores,
        total: &total,
        streams,
        per_stream: &series,
        per_stream_omitted: omitted,
        ready: ops.is_ready(),
        draining: ops.is_draining(),
    })
}

/// `%XX` escapes in a path segment (stream names may carry any byte).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/api/v1/...`: streams, clients, stats; DELETE kicks.
pub fn route(method: &tiny_http::Method, path: &str, ops: &Ops) -> Reply {
    use tiny_http::Method::{Delete, Get};
    let rest = path.trim_start_matches("/api/v1/").trim_end_matches('/');
    let not_found = || Reply::json(404, json!({ "error": "not found" }));
    match (method, rest) {
        (Get, "stats") => Reply::json(200, stats_document(&ops.collect())),
        (Get, "streams") => Reply::json(200, streams_document(&ops.collect())),
        (Get, "clients") => Reply::json(200, clients_document(&ops.collect())),
        (Get, r) if r.starts_with("streams/") => {
            let key = percent_decode(&r["streams/".len()..]);
            match stream_views(&ops.collect()).get(&key) {
                Some(v) => Reply::json(200, stream_json(&key, v)),
                None => not_found(),
            }
        }
        (Delete, r) if r.starts_with("streams/") => {
            let key = percent_decode(&r["streams/".len()..]);
            match ops.kick(KickTarget::Stream(key.clone())) {
                0 => not_found(),
                n => {
                    tracing::info!(stream = %key, closed = n, "api: stream kicked");
                    Reply::json(200, json!({ "stream": key, "closed": n }))
                }
            }
        }
        (Delete, r) if r.starts_with("clients/") => {
            let Ok(id) = r["clients/".len()..].parse::<u64>() else {
                return Reply::json(400, json!({ "error": "client id must be a number" }));
            };
            match ops.kick(KickTarget::Client(id)) {
                0 => not_found(),
                n => {
                    tracing::info!(client = id, "api: client kicked");
                    Reply::json(200, json!({ "client": id, "closed": n }))
                }
            }
        }
        (Get | Delete, _) => not_found(),
        _ => Reply::json(405, json!({ "error": "method not allowed" })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("live%2Fa%20b"), "live/a b");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
    }
}
