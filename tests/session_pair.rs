//! A client and the server session talking in memory, without sockets.

use bytes::BytesMut;
use cascade::protocol::amf::{decode_amf0_all, encode_amf0, Amf0Value, AmfLimits};
use cascade::protocol::chunk::{encode_message, ChunkDecoder, ChunkLimits, RawMessage};
use cascade::protocol::session::{ServerConfig, ServerEvent, ServerSession};

fn command(values: &[Amf0Value], stream_id: u32, out: &mut BytesMut) {
    let mut body = BytesMut::new();
    for v in values {
        encode_amf0(v, &mut body);
    }
    encode_message(3, 0, 20, stream_id, &body, 128, out);
}

fn drain(server: &mut ServerSession, dec: &mut ChunkDecoder) -> Vec<RawMessage> {
    let mut out = Vec::new();
    if let Some(b) = server.take_output() {
        let mut buf = BytesMut::from(&b[..]);
        while let Some(m) = dec.decode(&mut buf).unwrap() {
            out.push(m);
        }
        assert!(buf.is_empty());
    }
    out
}

fn commands(msgs: &[RawMessage]) -> Vec<Vec<Amf0Value>> {
    msgs.iter()
        .filter(|m| m.type_id == 20)
        .map(|m| decode_amf0_all(&m.payload, &AmfLimits::default()).unwrap())
        .collect()
}

#[test]
fn connect_create_stream_publish() {
    let mut server = ServerSession::new(ServerConfig::default());
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    let mut input = BytesMut::new();
    command(
        &[
            Amf0Value::String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::object([("app", Amf0Value::String("live".into()))]),
        ],
        0,
        &mut input,
    );
    server.handle_input(&mut input).unwrap();
    let msgs = drain(&mut server, &mut dec);
    let types: Vec<u8> = msgs.iter().map(|m| m.type_id).collect();
    assert_eq!(types, vec![5, 6, 1, 20], "ack size, peer bw, chunk size, _result");
    let c = commands(&msgs);
    assert_eq!(c[0][0].as_str(), Some("_result"));
    assert_eq!(
        c[0][3].get("code").and_then(|v| v.as_str()),
        Some("NetConnection.Connect.Success")
    );
    assert!(matches!(server.poll_event(), Some(ServerEvent::Connected { .. })));

    // Window ack size from the client, then createStream with a fmt-0 header.
    encode_message(2, 0, 5, 0, &2_500_000u32.to_be_bytes(), 128, &mut input);
    command(
        &[
            Amf0Value::String("createStream".into()),
            Amf0Value::Number(2.0),
            Amf0Value::Null,
        ],
        0,
        &mut input,
    );
    server.handle_input(&mut input).unwrap();
    let c = commands(&drain(&mut server, &mut dec));
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0][0].as_str(), Some("_result"));
    assert_eq!(c[0][3].as_f64(), Some(1.0), "first stream id is 1");

    command(
        &[
            Amf0Value::String("publish".into()),
            Amf0Value::Number(3.0),
            Amf0Value::Null,
            Amf0Value::String("cam?key=1".into()),
            Amf0Value::String("live".into()),
        ],
        1,
        &mut input,
    );
    server.handle_input(&mut input).unwrap();
    let Some(ServerEvent::PublishRequested { stream_id, path, .. }) = server.poll_event() else {
        panic!("no publish request")
    };
    assert_eq!(stream_id, 1);
    assert_eq!(path.key(), "live/cam");
    assert_eq!(path.query, "key=1");
    // Nothing is sent before the decision.
    assert!(drain(&mut server, &mut dec).is_empty());
    server.accept_publish(1);
    let msgs = drain(&mut server, &mut dec);
    let c = commands(&msgs);
    assert_eq!(
        c.last().unwrap()[3].get("code").and_then(|v| v.as_str()),
        Some("NetStream.Publish.Start")
    );
    assert_eq!(msgs.last().unwrap().stream_id, 1);
}

/// ffmpeg's player bytes after connect: a window-ack header whose payload
/// arrives in the next read, then createStream with a type-1 header.
#[test]
fn split_control_then_type1_command() {
    let mut server = ServerSession::new(ServerConfig::default());
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    let mut input = BytesMut::new();
    command(
        &[
            Amf0Value::String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::object([
                ("app", Amf0Value::String("live".into())),
                ("flashVer", Amf0Value::String("LNX 9,0,124,2".into())),
                ("tcUrl", Amf0Value::String("rtmp://127.0.0.1:19400/live".repeat(4))),
                ("fpad", Amf0Value::Boolean(false)),
            ]),
        ],
        0,
        &mut input,
    );
    assert!(input.len() > 140);
    server.handle_input(&mut input).unwrap();
    drain(&mut server, &mut dec);
    input.extend_from_slice(&[2, 0, 0, 0, 0, 0, 4, 5, 0, 0, 0, 0]);
    server.handle_input(&mut input).unwrap();
    input.extend_from_slice(&[0, 38, 37, 160, 67, 0, 0, 0, 0, 0, 25, 20, 2, 0, 12]);
    input.extend_from_slice(b"createStream");
    input.extend_from_slice(&[0, 64, 0, 0, 0, 0, 0, 0, 0, 5]);
    server.handle_input(&mut input).unwrap();
    let c = commands(&drain(&mut server, &mut dec));
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0][3].as_f64(), Some(1.0));
}
