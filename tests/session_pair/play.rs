//! The client's play flow against the server session, in memory: the steps
//! an edge pull, the harness's players and the test client rely on.

use super::*;
use cascade::protocol::session::{PlayFlow, PlayRejection, PlayStep};

/// Drives `flow` until the server waits for a decision or all is quiet;
/// the steps that were not `Pending`.
fn steps(p: &mut Pair, flow: &mut PlayFlow) -> Vec<PlayStep> {
    let mut out = Vec::new();
    for _ in 0..16 {
        p.pump();
        let events = p.take_client_events();
        if events.is_empty() {
            break;
        }
        out.extend(apply(p, flow, events));
    }
    out
}

/// The steps `events` make, without the `Pending` ones.
fn apply(p: &mut Pair, flow: &mut PlayFlow, events: Vec<ClientEvent>) -> Vec<PlayStep> {
    events
        .into_iter()
        .map(|ev| flow.on_event(&mut p.client, ev))
        .filter(|s| *s != PlayStep::Pending)
        .collect()
}

/// Connect, createStream and play `name`, up to the server's PlayRequested.
fn requested(name: &str) -> (Pair, PlayFlow, u32) {
    let mut p = Pair::new(ServerConfig::default(), vec![7, 300, 1]);
    let mut flow = PlayFlow::start(&mut p.client, name);
    let got = steps(&mut p, &mut flow);
    let [PlayStep::Requested { stream_id }] = got[..] else {
        panic!("{got:?}")
    };
    let ev = p.take_server_events();
    assert!(
        matches!(&ev[..], [ServerEvent::Connected { .. }, ServerEvent::PlayRequested { stream_id: s, path, .. }] if *s == stream_id && path.key() == format!("live/{name}")),
        "{ev:?}"
    );
    (p, flow, stream_id)
}

/// What the relay sends a player, decoded by the client.
fn deliver(p: &mut Pair, flow: &mut PlayFlow, bytes: &[u8]) -> Vec<PlayStep> {
    p.client.received(bytes.len());
    let mut buf = BytesMut::from(bytes);
    p.client.handle_input(&mut buf).unwrap();
    assert!(buf.is_empty());
    let events = std::iter::from_fn(|| p.client.poll_event()).collect();
    apply(p, flow, events)
}

fn on_status(sid: u32, level: &str, code: &str, chunk: u32) -> Vec<u8> {
    let mut body = BytesMut::new();
    for v in [
        Amf0Value::String("onStatus".into()),
        Amf0Value::Number(0.0),
        Amf0Value::Null,
        Amf0Value::object([
            ("level", Amf0Value::String(level.into())),
            ("code", Amf0Value::String(code.into())),
        ]),
    ] {
        encode_amf0(&v, &mut body);
    }
    let mut out = BytesMut::new();
    encode_message(3, 0, 20, sid, &body, chunk, &mut out);
    out.to_vec()
}

#[test]
fn play_flow_starts_gets_media_and_ends_on_unpublish() {
    let (mut p, mut flow, sid) = requested("cam");
    p.server.accept_play(sid, true, "cam");
    assert_eq!(
        steps(&mut p, &mut flow),
        vec![PlayStep::Started { stream_id: sid }]
    );
    let chunk = p.server.out_chunk_size();
    let mut down = BytesMut::new();
    encode_message(5, 0, 18, sid, &metadata_body(), chunk, &mut down);
    let video: Vec<u8> = (0..9000u32).map(|i| i as u8).collect();
    encode_message(6, 40, 9, sid, &video, chunk, &mut down);
    encode_message(4, 45, 8, sid, &[0xAF, 1, 7], chunk, &mut down);
    down.extend_from_slice(&unpublish_notice(sid, chunk, "cam"));
    let got = deliver(&mut p, &mut flow, &down);
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(
        matches!(&got[0], PlayStep::Media { kind: MediaKind::Metadata, payload, .. } if payload[..] == metadata_body()[..])
    );
    assert!(
        matches!(&got[1], PlayStep::Media { kind: MediaKind::Video, timestamp: 40, payload, .. } if payload[..] == video[..])
    );
    assert!(matches!(
        &got[2],
        PlayStep::Media {
            kind: MediaKind::Audio,
            timestamp: 45,
            ..
        }
    ));
    assert_eq!(got[3], PlayStep::Eof { stream_id: sid });
    assert!(
        matches!(&got[4], PlayStep::Ended { code, .. } if code == "NetStream.Play.UnpublishNotify")
    );
}

#[test]
fn play_flow_reports_stream_not_found() {
    let (mut p, mut flow, sid) = requested("nobody");
    p.server
        .reject_play(sid, PlayRejection::StreamNotFound, "no such stream");
    let got = steps(&mut p, &mut flow);
    assert!(
        matches!(&got[..], [PlayStep::Refused { code, description }] if code == "NetStream.Play.StreamNotFound" && description == "no such stream"),
        "{got:?}"
    );
}

#[test]
fn play_flow_ends_on_stop_and_complete() {
    for code in ["NetStream.Play.Stop", "NetStream.Play.Complete"] {
        let (mut p, mut flow, sid) = requested("cam");
        p.server.accept_play(sid, false, "cam");
        steps(&mut p, &mut flow);
        let chunk = p.server.out_chunk_size();
        let got = deliver(&mut p, &mut flow, &on_status(sid, "status", code, chunk));
        assert!(
            matches!(&got[..], [PlayStep::Ended { code: c, .. }] if c == code),
            "{code}: {got:?}"
        );
    }
}

#[test]
fn the_server_sees_the_player_leave() {
    let (mut p, mut flow, sid) = requested("cam");
    p.server.accept_play(sid, false, "cam");
    steps(&mut p, &mut flow);
    p.take_server_events();
    p.client.delete_stream(sid);
    p.pump();
    assert_eq!(
        p.take_server_events(),
        vec![ServerEvent::PlayFinished { stream_id: sid }]
    );
}
