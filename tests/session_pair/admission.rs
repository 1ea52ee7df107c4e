//! What a server session admits before and after `connect` and `publish`,
//! fed raw chunks as a hostile or confused client would send them.

use super::*;

fn connect_bytes(out: &mut BytesMut) {
    command(
        &[
            Amf0Value::String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::object([("app", Amf0Value::String("live".into()))]),
        ],
        0,
        out,
    );
}

#[test]
fn a_second_connect_is_refused_not_answered_again() {
    let mut server = ServerSession::new(ServerConfig::default());
    let mut input = BytesMut::new();
    connect_bytes(&mut input);
    server.handle_input(&mut input).unwrap();
    assert!(server.take_output().is_some());
    connect_bytes(&mut input);
    let err = server.handle_input(&mut input).unwrap_err();
    assert!(
        matches!(
            err,
            cascade::protocol::session::SessionError::AlreadyConnected
        ),
        "{err}"
    );
    assert!(server.take_output().is_none(), "no second reply");
}

#[test]
fn a_ping_before_connect_is_refused_at_its_header() {
    let mut server = ServerSession::new(ServerConfig::default());
    let mut input = BytesMut::new();
    // User Control PingRequest (event 6) on chunk stream 2.
    encode_message(2, 0, 4, 0, &[0, 6, 0, 0, 0, 1], 128, &mut input);
    assert!(server.handle_input(&mut input).is_err());
    assert!(server.take_output().is_none(), "no ping response");
}

#[test]
fn media_before_publish_is_refused_at_its_header() {
    let mut server = ServerSession::new(ServerConfig::default());
    let mut input = BytesMut::new();
    connect_bytes(&mut input);
    server.handle_input(&mut input).unwrap();
    // Only the 12-byte header of a 4 MB video message: refused before its payload.
    let mut header = BytesMut::new();
    encode_message(6, 0, 9, 1, &vec![0u8; 4 << 20], 1 << 30, &mut header);
    let mut input = header.split_to(12);
    let err = server.handle_input(&mut input).unwrap_err();
    assert!(err.to_string().contains("refused at its header"), "{err}");
}

#[test]
fn a_flood_of_empty_media_is_a_protocol_error() {
    let mut server = ServerSession::new(ServerConfig::default());
    let mut input = BytesMut::new();
    connect_bytes(&mut input);
    command(
        &[
            Amf0Value::String("publish".into()),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            Amf0Value::String("s".into()),
        ],
        1,
        &mut input,
    );
    server.handle_input(&mut input).unwrap();
    while let Some(ev) = server.poll_event() {
        if let ServerEvent::PublishRequested { stream_id, .. } = ev {
            server.accept_publish(stream_id);
        }
    }
    // A few empty messages are tolerated and dropped.
    for _ in 0..10 {
        encode_message(4, 0, 8, 1, &[], 128, &mut input);
    }
    encode_message(4, 0, 8, 1, &[0xAF, 1, 7], 128, &mut input);
    server.handle_input(&mut input).unwrap();
    let media: Vec<_> = std::iter::from_fn(|| server.poll_event())
        .filter(|e| matches!(e, ServerEvent::Media { .. }))
        .collect();
    assert_eq!(media.len(), 1, "empty messages are not passed on");
    for _ in 0..100 {
        encode_message(4, 0, 8, 1, &[], 128, &mut input);
    }
    let err = server.handle_input(&mut input).unwrap_err();
    assert!(
        matches!(
            err,
            cascade::protocol::session::SessionError::EmptyMediaFlood(_)
        ),
        "{err}"
    );
}
