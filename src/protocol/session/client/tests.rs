//! Unit tests of the client session against hand-built server replies.

use super::*;
use crate::protocol::chunk::ChunkDecoder;
use crate::protocol::message::MessageWriter;
use crate::protocol::session::status::{connect_result, on_status};
use proptest::prelude::*;

fn session() -> ClientSession {
    ClientSession::new(ClientConfig::new("live", "rtmp://origin/live"))
}

/// Decodes everything the client queued.
fn sent(c: &mut ClientSession) -> Vec<Message> {
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    let mut buf = BytesMut::from(&c.take_output().unwrap_or_default()[..]);
    let mut out = Vec::new();
    while let Some(raw) = dec.decode(&mut buf).unwrap() {
        out.push(Message::parse(&raw, &AmfLimits::default()).unwrap());
    }
    assert!(buf.is_empty());
    out
}

fn feed(c: &mut ClientSession, build: impl FnOnce(&MessageWriter, &mut BytesMut)) {
    let mut buf = BytesMut::new();
    build(&MessageWriter::default(), &mut buf);
    c.received(buf.len());
    c.handle_input(&mut buf).unwrap();
    assert!(buf.is_empty());
}

#[test]
fn connect_advertises_four_cc_and_chunk_size() {
    let mut cfg = ClientConfig::new("live?token=x", "rtmp://o/live?token=x");
    cfg.four_cc_list = vec!["hvc1".into(), "av01".into()];
    let mut c = ClientSession::new(cfg);
    c.connect();
    let msgs = sent(&mut c);
    let Message::Command(cmd) = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert_eq!(cmd.name, "connect");
    assert_eq!(cmd.transaction_id, 1.0);
    assert_eq!(
        cmd.object.get("app").and_then(|v| v.as_str()),
        Some("live?token=x")
    );
    assert!(
        matches!(cmd.object.get("fourCcList"), Some(Amf0Value::StrictArray(l)) if l.len() == 2)
    );
    assert_eq!(msgs[1], Message::SetChunkSize(4096));
    assert_eq!(c.out_chunk_size(), 4096);
}

#[test]
fn connect_error_is_a_rejection_and_ping_is_answered() {
    let mut c = session();
    c.connect();
    c.take_output();
    feed(&mut c, |w, out| {
        let info =
            crate::protocol::session::status_info("error", "NetConnection.Connect.Rejected", "no");
        let values = [
            Amf0Value::String("_error".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Null,
            info,
        ];
        w.command(0, &values, out);
        w.user_control(UserControl::PingRequest(77), out);
    });
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::ConnectRejected {
            code: "NetConnection.Connect.Rejected".into(),
            description: "no".into()
        })
    );
    assert_eq!(
        sent(&mut c),
        vec![Message::UserControl(UserControl::PingResponse(77))]
    );
}

#[test]
fn odd_replies_do_not_break_the_session() {
    let mut c = session();
    c.connect();
    c.create_stream();
    c.take_output();
    feed(&mut c, |w, out| {
        // Connect `_result` without any info object, then a stream id of 0.
        w.command(
            0,
            &[Amf0Value::String("_result".into()), Amf0Value::Number(1.0)],
            out,
        );
        w.command(
            0,
            &[
                Amf0Value::String("_result".into()),
                Amf0Value::Number(2.0),
                Amf0Value::Null,
                Amf0Value::Number(0.0),
            ],
            out,
        );
        // Unknown transaction, onStatus without an info object, stray call.
        w.command(0, &connect_result(99.0, 0.0), out);
        w.command(1, &[Amf0Value::String("onStatus".into())], out);
        w.command(
            0,
            &[Amf0Value::String("onBWDone".into()), Amf0Value::Number(0.0)],
            out,
        );
        w.command(
            1,
            &on_status("error", "NetStream.Play.StreamNotFound", "gone"),
            out,
        );
    });
    let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert_eq!(events[0], ClientEvent::Connected);
    assert!(
        matches!(&events[1], ClientEvent::Status { stream_id: 0, level, .. } if level == "error")
    );
    assert!(
        matches!(&events[2], ClientEvent::Status { stream_id: 1, code, .. } if code.is_empty())
    );
    assert!(
        matches!(&events[3], ClientEvent::Status { code, .. } if code == "NetStream.Play.StreamNotFound")
    );
    assert_eq!(events.len(), 4);
}

#[test]
fn acknowledges_each_window_with_wrapping_counter() {
    let mut c = session();
    feed(&mut c, |w, out| w.window_ack_size(100, out));
    c.core.skip_to(u32::MAX - 10);
    c.received(150);
    assert_eq!(sent(&mut c), vec![Message::Acknowledgement(139)]);
    c.received(50);
    assert!(c.take_output().is_none());
}

#[test]
fn reconnect_request_carries_tc_url() {
    let mut c = session();
    feed(&mut c, |w, out| {
        let info = Amf0Value::object([
            (
                "code",
                Amf0Value::String("NetConnection.Connect.ReconnectRequest".into()),
            ),
            ("tcUrl", Amf0Value::String("rtmp://other/live".into())),
        ]);
        w.command(
            0,
            &[
                Amf0Value::String("onStatus".into()),
                Amf0Value::Number(0.0),
                Amf0Value::Null,
                info,
            ],
            out,
        );
    });
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::ReconnectRequest {
            tc_url: Some("rtmp://other/live".into())
        })
    );
}

proptest! {
    #[test]
    fn garbage_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut c = session();
        c.connect();
        c.create_stream();
        let mut buf = BytesMut::from(&bytes[..]);
        c.received(buf.len());
        let _ = c.handle_input(&mut buf);
        while c.poll_event().is_some() {}
    }
}

fn status(stream_id: u32, level: &str, code: &str) -> ClientEvent {
    ClientEvent::Status {
        stream_id,
        level: level.into(),
        code: code.into(),
        description: String::new(),
    }
}

#[test]
fn play_flow_walks_to_media_and_ends_on_unpublish() {
    let mut c = session();
    let mut flow = PlayFlow::start(&mut c, "cam");
    assert!(matches!(&sent(&mut c)[0], Message::Command(cmd) if cmd.name == "connect"));
    assert_eq!(
        flow.on_event(&mut c, ClientEvent::Connected),
        PlayStep::Pending
    );
    assert!(matches!(&sent(&mut c)[..], [Message::Command(cmd)] if cmd.name == "createStream"));
    let created = ClientEvent::StreamCreated { stream_id: 5 };
    assert_eq!(
        flow.on_event(&mut c, created),
        PlayStep::Requested { stream_id: 5 }
    );
    assert_eq!(flow.stream_id(), Some(5));
    let msgs = sent(&mut c);
    let Message::Command(play) = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert_eq!(play.name, "play");
    assert_eq!(play.args[0].as_str(), Some("cam"));
    let buffer = UserControl::SetBufferLength {
        stream_id: 5,
        millis: PLAY_BUFFER_MS,
    };
    assert_eq!(msgs[1], Message::UserControl(buffer));
    // Another stream's Play.Start does not count; chatter changes nothing.
    let other = ClientEvent::PlayStarted { stream_id: 3 };
    assert_eq!(flow.on_event(&mut c, other), PlayStep::Pending);
    let reset = status(5, "status", "NetStream.Play.Reset");
    assert_eq!(flow.on_event(&mut c, reset), PlayStep::Pending);
    let started = ClientEvent::PlayStarted { stream_id: 5 };
    assert_eq!(
        flow.on_event(&mut c, started),
        PlayStep::Started { stream_id: 5 }
    );
    assert_eq!(flow.stage(), PlayStage::Playing(5));
    let media = ClientEvent::Media {
        stream_id: 5,
        kind: MediaKind::Video,
        timestamp: 40,
        payload: Bytes::from_static(b"\x17\x01"),
    };
    assert!(matches!(
        flow.on_event(&mut c, media),
        PlayStep::Media {
            stream_id: 5,
            kind: MediaKind::Video,
            timestamp: 40,
            ..
        }
    ));
    let eof = ClientEvent::StreamEof { stream_id: 5 };
    assert_eq!(flow.on_event(&mut c, eof), PlayStep::Eof { stream_id: 5 });
    let gone = status(5, "status", "NetStream.Play.UnpublishNotify");
    assert!(
        matches!(flow.on_event(&mut c, gone), PlayStep::Ended { code, .. } if code == "NetStream.Play.UnpublishNotify")
    );
}

#[test]
fn play_flow_refusals_before_anything_played() {
    let mut c = session();
    let mut flow = PlayFlow::start(&mut c, "cam");
    let no = ClientEvent::ConnectRejected {
        code: "NetConnection.Connect.Rejected".into(),
        description: "no".into(),
    };
    assert!(matches!(
        flow.on_event(&mut c, no),
        PlayStep::ConnectRefused { .. }
    ));
    flow.on_event(&mut c, ClientEvent::Connected);
    flow.on_event(&mut c, ClientEvent::StreamCreated { stream_id: 1 });
    let missing = status(1, "error", "NetStream.Play.StreamNotFound");
    assert!(
        matches!(flow.on_event(&mut c, missing), PlayStep::Refused { code, .. } if code == "NetStream.Play.StreamNotFound")
    );
    // Media without a Play.Start counts as playing: a later stop ends it.
    let media = ClientEvent::Media {
        stream_id: 1,
        kind: MediaKind::Audio,
        timestamp: 0,
        payload: Bytes::from_static(b"\xaf\x01"),
    };
    assert!(matches!(
        flow.on_event(&mut c, media),
        PlayStep::Media { .. }
    ));
    let stop = status(1, "status", "NetStream.Play.Stop");
    assert!(matches!(
        flow.on_event(&mut c, stop),
        PlayStep::Ended { .. }
    ));
}

#[test]
fn decode_then_handle_message_is_handle_input() {
    let mut c = session();
    c.connect();
    c.take_output();
    let mut buf = BytesMut::new();
    let w = MessageWriter::default();
    w.command(0, &connect_result(1.0, 0.0), &mut buf);
    w.window_ack_size(10, &mut buf);
    let arrived = buf.len() as u32;
    c.received(buf.len());
    let mut seen = Vec::new();
    while let Some(raw) = c.decode(&mut buf).unwrap() {
        seen.push(raw.type_id);
        c.handle_message(raw).unwrap();
    }
    assert_eq!(seen, vec![type_id::COMMAND_AMF0, type_id::WINDOW_ACK_SIZE]);
    assert_eq!(c.poll_event(), Some(ClientEvent::Connected));
    // The window applies to what arrives next.
    c.received(10);
    assert_eq!(sent(&mut c), vec![Message::Acknowledgement(arrived + 10)]);
}

#[test]
fn a_bad_message_leaves_the_session_usable() {
    let mut c = session();
    let mut buf = BytesMut::new();
    // A command whose name is a number, then a ping.
    let w = MessageWriter::default();
    w.command(0, &[Amf0Value::Number(1.0)], &mut buf);
    w.user_control(UserControl::PingRequest(9), &mut buf);
    assert!(matches!(
        c.handle_input(&mut buf),
        Err(SessionError::Message(_))
    ));
    c.handle_input(&mut buf).unwrap();
    assert_eq!(
        sent(&mut c),
        vec![Message::UserControl(UserControl::PingResponse(9))]
    );
}

#[test]
fn call_and_chunk_size_go_out_as_asked() {
    let mut c = session();
    let txn = c.call(0, "_checkbw", &[]);
    c.set_chunk_size(5000);
    assert_eq!(c.out_chunk_size(), 5000);
    let msgs = sent(&mut c);
    let Message::Command(cmd) = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert_eq!((cmd.name.as_str(), cmd.transaction_id), ("_checkbw", txn));
    assert_eq!(cmd.object, Amf0Value::Null);
    assert_eq!(msgs[1], Message::SetChunkSize(5000));
}
