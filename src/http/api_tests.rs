//! The API's routes: which method and path ask for what, and the answers
//! from real workers (see `ops_tests.rs` for the harness), run as tasks on
//! a worker the way the HTTP server runs them.

use serde_json::Value;

use super::{metrics_text, parse, route, Request, Resource};
use crate::config::Config;
use crate::http::ops::tests::{value, Cores};
use crate::metrics::Protocol;
use crate::protocol::http::Method;

fn status(r: Result<Request, super::Reply>) -> Result<Request, u16> {
    r.map_err(|reply| reply.status)
}

#[test]
fn paths_and_methods_name_requests() {
    use Method::*;
    let read = |r| Ok(Request::Read(r));
    assert_eq!(status(parse(Get, "/api/v1/stats")), read(Resource::Stats));
    assert_eq!(
        status(parse(Head, "/api/v1/streams/")),
        read(Resource::Streams)
    );
    assert_eq!(
        status(parse(Get, "/api/v1/clients?x=1")),
        read(Resource::Clients)
    );
    assert_eq!(
        status(parse(Delete, "/api/v1/clients/42")),
        Ok(Request::Kick(Resource::Client("42".into())))
    );
    assert_eq!(status(parse(Get, "/api/v1/nosuch")), Err(404));
    assert_eq!(
        status(parse(Get, "/api/v1/streams/")),
        read(Resource::Streams)
    );
    assert_eq!(status(parse(Post, "/api/v1/stats")), Err(405));
    assert_eq!(status(parse(Delete, "/api/v1/stats")), Err(405));
    assert_eq!(status(parse(Options, "/api/v1/streams/live/a")), Err(405));
}

#[test]
fn a_stream_key_is_percent_decoded() {
    let want = |k: &str| Ok(Request::Read(Resource::Stream(k.into())));
    let got = |p: &str| status(parse(Method::Get, p));
    assert_eq!(got("/api/v1/streams/live%2Fa%20b"), want("live/a b"));
    assert_eq!(got("/api/v1/streams/live/a"), want("live/a"));
    // Broken escapes are kept as they are.
    assert_eq!(got("/api/v1/streams/bad%zz%4"), want("bad%zz%4"));
}

/// `method path` as a task on core 0: status and JSON body.
fn call(cores: &Cores, method: Method, path: &str) -> (u16, Value) {
    let ops = cores.ops.clone();
    let path = path.to_string();
    let reply = cores.run(0, move |_| async move { route(method, &path, &ops).await });
    let body = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    (reply.status, body)
}

#[test]
fn clients_are_listed_with_their_protocol_and_kicked_by_id() {
    let cores = Cores::start(2, Config::default());
    cores.add_player(0, Protocol::Rtmp, "live/a");
    let ws = cores.add_player(1, Protocol::WsFlv, "live/a");
    let (code, doc) = call(&cores, Method::Get, "/api/v1/clients");
    assert_eq!(code, 200);
    let list = doc["clients"].as_array().expect("clients");
    assert_eq!(list.len(), 2, "{doc}");
    let mine = list.iter().find(|c| c["id"] == ws).expect("listed");
    assert_eq!(mine["protocol"], "ws-flv");
    assert_eq!(mine["role"], "player");
    assert_eq!(mine["core"], 1);
    let (code, one) = call(&cores, Method::Get, &format!("/api/v1/clients/{ws}"));
    assert_eq!((code, &one["protocol"]), (200, &Value::from("ws-flv")));

    let (code, doc) = call(&cores, Method::Delete, &format!("/api/v1/clients/{ws}"));
    assert_eq!((code, &doc["closed"]), (200, &Value::from(1)), "{doc}");
    let (code, _) = call(&cores, Method::Delete, &format!("/api/v1/clients/{ws}"));
    assert_eq!(code, 404, "an outbox already closed is not kicked twice");
    let (code, doc) = call(&cores, Method::Delete, "/api/v1/clients/abc");
    assert_eq!(code, 400, "{doc}");
    let (code, _) = call(&cores, Method::Get, "/api/v1/streams/live%2Fnosuch");
    assert_eq!(code, 404);
}

#[test]
fn stats_split_egress_by_protocol() {
    let cores = Cores::start(2, Config::default());
    cores.on(1, |w| w.stats.add_out(Protocol::HttpFlv, 300));
    cores.on(0, |w| w.stats.add_out(Protocol::Rtmp, 200));
    let (code, doc) = call(&cores, Method::Get, "/api/v1/stats");
    assert_eq!(code, 200);
    let total = &doc["total"];
    assert_eq!(total["bytes_out"], 500, "{total}");
    assert_eq!(total["by_protocol"]["http-flv"]["bytes_out"], 300);
    assert_eq!(total["by_protocol"]["rtmp"]["messages_out"], 1);
    assert!(total["ingest_to_egress"]["p99_us"].is_u64());
}

#[test]
fn the_metrics_page_has_protocol_and_worker_labels() {
    let cores = Cores::start(2, Config::default());
    cores.add_player(1, Protocol::HttpFlv, "live/m");
    cores.on(1, |w| w.stats.add_out(Protocol::HttpFlv, 1234));
    let ops = cores.ops.clone();
    let page = cores.run(1, move |_| async move { metrics_text(&ops).await });
    let at = |s: &str| value(&page, s);
    assert_eq!(
        at("cascade_players{worker=\"1\",protocol=\"http-flv\"}"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        at("cascade_players{worker=\"0\",protocol=\"http-flv\"}"),
        Some(0.0)
    );
    assert_eq!(
        at("cascade_bytes_out_total{worker=\"1\",protocol=\"http-flv\"}"),
        Some(1234.0)
    );
    assert_eq!(
        at("cascade_messages_out_total{protocol=\"http-flv\"}"),
        Some(1.0)
    );
    assert_eq!(
        at("cascade_connections{worker=\"1\",role=\"player\"}"),
        Some(1.0)
    );
    for p in ["rtmp", "http-flv", "ws-flv"] {
        let count = format!("cascade_ingest_to_egress_seconds_count{{protocol=\"{p}\"}}");
        assert_eq!(at(&count), Some(0.0), "{count}");
        let first = format!("cascade_time_to_first_frame_seconds_count{{protocol=\"{p}\"}}");
        assert_eq!(at(&first), Some(0.0), "{first}");
    }
}
