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
    assert_eq!(
        types,
        vec![5, 6, 1, 20],
        "ack size, peer bw, chunk size, _result"
    );
    let c = commands(&msgs);
    assert_eq!(c[0][0].as_str(), Some("_result"));
    assert_eq!(
        c[0][3].get("code").and_then(|v| v.as_str()),
        Some("NetConnection.Connect.Success")
    );
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::Connected { .. })
    ));

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
    let Some(ServerEvent::PublishRequested {
        stream_id, path, ..
    }) = server.poll_event()
    else {
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
                (
                    "tcUrl",
                    Amf0Value::String("rtmp://127.0.0.1:19400/live".repeat(4)),
                ),
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

// ---------------------------------------------------------------------------
// ClientSession <-> ServerSession, wired back to back in memory.
// ---------------------------------------------------------------------------

use bytes::Bytes;
use cascade::protocol::session::{
    unpublish_notice, ClientConfig, ClientEvent, ClientSession, MediaKind, PublishRejection,
};
use proptest::prelude::*;

/// Both ends plus what is in flight, and snooping decoders that see every
/// message on the wire (they follow Set Chunk Size like the real peers).
struct Pair {
    client: ClientSession,
    server: ServerSession,
    to_server: BytesMut,
    to_client: BytesMut,
    /// Piece sizes for delivery, cycled; empty delivers whole buffers.
    splits: Vec<usize>,
    split_pos: usize,
    client_events: Vec<ClientEvent>,
    server_events: Vec<ServerEvent>,
    snoop_up: ChunkDecoder,
    snoop_down: ChunkDecoder,
    up_msgs: Vec<RawMessage>,
    down_msgs: Vec<RawMessage>,
}

impl Pair {
    fn new(server_config: ServerConfig, splits: Vec<usize>) -> Pair {
        Pair {
            client: ClientSession::new(ClientConfig::new("live", "rtmp://127.0.0.1/live")),
            server: ServerSession::new(server_config),
            to_server: BytesMut::new(),
            to_client: BytesMut::new(),
            splits,
            split_pos: 0,
            client_events: Vec::new(),
            server_events: Vec::new(),
            snoop_up: ChunkDecoder::new(ChunkLimits::default()),
            snoop_down: ChunkDecoder::new(ChunkLimits::default()),
            up_msgs: Vec::new(),
            down_msgs: Vec::new(),
        }
    }

    fn next_piece(&mut self, left: usize) -> usize {
        if self.splits.is_empty() {
            return left;
        }
        let n = self.splits[self.split_pos % self.splits.len()].max(1);
        self.split_pos += 1;
        n.min(left)
    }

    /// Moves bytes both ways until neither side has anything to say or the
    /// server waits for a publish/play decision.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            if let Some(b) = self.client.take_output() {
                snoop(&mut self.snoop_up, &b, &mut self.up_msgs);
                self.deliver_to_server(b);
                moved = true;
            }
            // Bytes held back while a decision was pending.
            if !self.server.awaiting_decision() && !self.to_server.is_empty() {
                self.server.handle_input(&mut self.to_server).unwrap();
            }
            self.server_events
                .extend(std::iter::from_fn(|| self.server.poll_event()));
            if let Some(b) = self.server.take_output() {
                snoop(&mut self.snoop_down, &b, &mut self.down_msgs);
                self.deliver_to_client(b);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("pump did not settle");
    }

    fn deliver_to_server(&mut self, b: Bytes) {
        let mut rest = &b[..];
        while !rest.is_empty() {
            let n = self.next_piece(rest.len());
            self.to_server.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            self.server.received(n);
            if !self.server.awaiting_decision() {
                self.server.handle_input(&mut self.to_server).unwrap();
            }
        }
    }

    fn deliver_to_client(&mut self, b: Bytes) {
        let mut rest = &b[..];
        while !rest.is_empty() {
            let n = self.next_piece(rest.len());
            self.to_client.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            self.client.received(n);
            self.client.handle_input(&mut self.to_client).unwrap();
            self.client_events
                .extend(std::iter::from_fn(|| self.client.poll_event()));
        }
    }

    fn take_client_events(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.client_events)
    }

    fn take_server_events(&mut self) -> Vec<ServerEvent> {
        std::mem::take(&mut self.server_events)
    }

    /// connect + createStream, as a publisher or a player would.
    fn connect_and_create(&mut self, publish_name: Option<&str>) {
        self.client.connect();
        self.pump();
        assert_eq!(self.take_client_events(), vec![ClientEvent::Connected]);
        assert!(matches!(
            self.take_server_events()[..],
            [ServerEvent::Connected { .. }]
        ));
        if let Some(name) = publish_name {
            self.client.prepare_publish(name);
        }
        self.client.create_stream();
        self.pump();
        assert_eq!(
            self.take_client_events(),
            vec![ClientEvent::StreamCreated { stream_id: 1 }]
        );
    }
}

fn snoop(dec: &mut ChunkDecoder, b: &[u8], out: &mut Vec<RawMessage>) {
    let mut buf = BytesMut::from(b);
    while let Some(m) = dec.decode(&mut buf).unwrap() {
        out.push(m);
    }
    assert!(buf.is_empty(), "output ends on a message boundary");
}

fn metadata_body() -> Vec<u8> {
    let mut body = BytesMut::new();
    encode_amf0(&Amf0Value::String("onMetaData".into()), &mut body);
    encode_amf0(
        &Amf0Value::ecma_array([
            ("width", Amf0Value::Number(1280.0)),
            ("height", Amf0Value::Number(720.0)),
        ]),
        &mut body,
    );
    body.to_vec()
}

/// The publisher flow; returns every event both sides raised.
fn publisher_flow(splits: Vec<usize>) -> (Vec<ClientEvent>, Vec<ServerEvent>) {
    let mut all_client = Vec::new();
    let mut all_server = Vec::new();
    let mut p = Pair::new(ServerConfig::default(), splits);
    p.connect_and_create(Some("cam"));
    p.client.publish(1, "cam");
    p.pump();
    let ev = p.take_server_events();
    let [ServerEvent::PublishRequested {
        stream_id: 1, path, ..
    }] = &ev[..]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(path.key(), "live/cam");
    all_server.extend(ev);
    assert!(
        p.take_client_events().is_empty(),
        "nothing before the decision"
    );
    p.server.accept_publish(1);
    p.pump();
    let ev = p.take_client_events();
    assert_eq!(ev, vec![ClientEvent::PublishStarted { stream_id: 1 }]);
    all_client.extend(ev);

    let video: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    p.client
        .send_media(1, MediaKind::Metadata, 0, &metadata_body());
    p.client.send_media(1, MediaKind::Video, 0, &video);
    p.client
        .send_media(1, MediaKind::Audio, 23, &[0xAF, 0x01, 1, 2, 3]);
    p.pump();
    let ev = p.take_server_events();
    assert_eq!(ev.len(), 3, "{ev:?}");
    let ServerEvent::Media {
        kind: MediaKind::Metadata,
        payload,
        ..
    } = &ev[0]
    else {
        panic!("{:?}", ev[0])
    };
    assert_eq!(&payload[..], &metadata_body()[..], "@setDataFrame stripped");
    assert!(
        matches!(&ev[1], ServerEvent::Media { kind: MediaKind::Video, payload, .. } if payload[..] == video[..])
    );
    assert!(matches!(
        &ev[2],
        ServerEvent::Media {
            stream_id: 1,
            kind: MediaKind::Audio,
            timestamp: 23,
            ..
        }
    ));
    // The wire carried @setDataFrame, as origins expect.
    let data = p.up_msgs.iter().find(|m| m.type_id == 18).unwrap();
    let v = decode_amf0_all(&data.payload, &AmfLimits::default()).unwrap();
    assert_eq!(v[0].as_str(), Some("@setDataFrame"));
    assert_eq!(v[1].as_str(), Some("onMetaData"));
    all_server.extend(ev);

    p.client.delete_stream(1);
    p.pump();
    let ev = p.take_server_events();
    assert_eq!(ev, vec![ServerEvent::PublishFinished { stream_id: 1 }]);
    all_server.extend(ev);
    all_client.extend(p.take_client_events());
    (all_client, all_server)
}

#[test]
fn client_publisher_flow() {
    publisher_flow(Vec::new());
}

#[test]
fn client_publish_rejected() {
    let mut p = Pair::new(ServerConfig::default(), Vec::new());
    p.connect_and_create(Some("cam"));
    p.client.publish(1, "cam");
    p.pump();
    assert!(matches!(
        p.take_server_events()[..],
        [ServerEvent::PublishRequested { stream_id: 1, .. }]
    ));
    p.server
        .reject_publish(1, PublishRejection::BadName, "cam is already published");
    p.pump();
    assert_eq!(
        p.take_client_events(),
        vec![ClientEvent::Status {
            stream_id: 1,
            level: "error".into(),
            code: "NetStream.Publish.BadName".into(),
            description: "cam is already published".into(),
        }]
    );
}

#[test]
fn client_player_flow() {
    let mut p = Pair::new(ServerConfig::default(), Vec::new());
    p.connect_and_create(None);
    p.client.play(1, "cam");
    p.pump();
    let ev = p.take_server_events();
    let [ServerEvent::PlayRequested {
        stream_id: 1,
        path,
        start,
        ..
    }] = &ev[..]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(path.key(), "live/cam");
    assert_eq!(*start, -2.0);
    p.server.accept_play(1, true, "cam");
    p.pump();
    let ev = p.take_client_events();
    assert_eq!(
        ev,
        vec![
            ClientEvent::Status {
                stream_id: 1,
                level: "status".into(),
                code: "NetStream.Play.Reset".into(),
                description: "Playing and resetting cam.".into(),
            },
            ClientEvent::PlayStarted { stream_id: 1 },
            ClientEvent::Status {
                stream_id: 1,
                level: "status".into(),
                code: "NetStream.Data.Start".into(),
                description: "Data start".into(),
            },
        ],
        "the play sequence, in order; |RtmpSampleAccess is not media"
    );
    // SetBufferLength went up after play.
    assert!(p
        .up_msgs
        .iter()
        .any(|m| m.type_id == 4 && m.payload[..2] == [0, 3]));

    // Media the relay serializes for this player, then the end notice.
    let chunk = p.server.out_chunk_size();
    let mut down = BytesMut::new();
    let mut meta = BytesMut::new();
    encode_amf0(&Amf0Value::String("@setDataFrame".into()), &mut meta);
    meta.extend_from_slice(&metadata_body());
    encode_message(5, 0, 18, 1, &meta, chunk, &mut down);
    encode_message(6, 40, 9, 1, &[0x17, 1, 0, 0, 0, 9, 9], chunk, &mut down);
    down.extend_from_slice(&unpublish_notice(1, chunk, "cam"));
    let down = down.freeze();
    p.client.received(down.len());
    let mut buf = BytesMut::from(&down[..]);
    p.client.handle_input(&mut buf).unwrap();
    let ev: Vec<_> = std::iter::from_fn(|| p.client.poll_event()).collect();
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert!(
        matches!(&ev[0], ClientEvent::Media { kind: MediaKind::Metadata, payload, .. } if payload[..] == metadata_body()[..])
    );
    assert!(matches!(
        &ev[1],
        ClientEvent::Media {
            stream_id: 1,
            kind: MediaKind::Video,
            timestamp: 40,
            ..
        }
    ));
    assert_eq!(ev[2], ClientEvent::StreamEof { stream_id: 1 });
    assert!(
        matches!(&ev[3], ClientEvent::Status { stream_id: 1, code, .. } if code == "NetStream.Play.UnpublishNotify")
    );
}

#[test]
fn client_and_server_acknowledge_small_windows() {
    let config = ServerConfig {
        window_ack_size: 1000,
        peer_bandwidth: 1000,
        ..ServerConfig::default()
    };
    let mut p = Pair::new(config, vec![700]);
    p.client = ClientSession::new(ClientConfig {
        window_ack_size: 1000,
        ..ClientConfig::new("live", "rtmp://127.0.0.1/live")
    });
    p.connect_and_create(Some("cam"));
    p.client.publish(1, "cam");
    p.pump();
    p.take_server_events();
    p.server.accept_publish(1);
    p.pump();
    // Upstream: the client answered Set Peer Bandwidth with its window,
    // and the server acknowledges what the client sends past it.
    assert!(p
        .up_msgs
        .iter()
        .any(|m| m.type_id == 5 && m.payload[..] == 1000u32.to_be_bytes()));
    let acked_before = p.down_msgs.iter().filter(|m| m.type_id == 3).count();
    for i in 0..4u32 {
        p.client
            .send_media(1, MediaKind::Video, i * 33, &[0x27; 900]);
    }
    p.pump();
    let server_acks: Vec<u32> = p
        .down_msgs
        .iter()
        .filter(|m| m.type_id == 3)
        .skip(acked_before)
        .map(|m| u32::from_be_bytes([m.payload[0], m.payload[1], m.payload[2], m.payload[3]]))
        .collect();
    assert!(server_acks.len() >= 3, "{server_acks:?}");
    assert!(server_acks.windows(2).all(|w| w[1] > w[0]));

    // Downstream: the server announced 1000, so > 3000 bytes to the client
    // make it acknowledge at least three times.
    let before = p.up_msgs.iter().filter(|m| m.type_id == 3).count();
    let chunk = p.server.out_chunk_size();
    let mut down = BytesMut::new();
    for i in 0..4u32 {
        encode_message(6, i * 33, 9, 1, &[0x27; 900], chunk, &mut down);
    }
    p.deliver_to_client(down.freeze());
    p.pump();
    let acks = p.up_msgs.iter().filter(|m| m.type_id == 3).count() - before;
    assert!(acks >= 3, "client sent {acks} acknowledgements");
}

#[test]
fn client_answers_server_ping() {
    let mut p = Pair::new(ServerConfig::default(), Vec::new());
    p.client.connect();
    p.pump();
    let mut ping = BytesMut::new();
    // Server-to-client ping: user control event 6 with a timestamp.
    encode_message(2, 0, 4, 0, &[0, 6, 0, 0, 0x12, 0x34], 4096, &mut ping);
    p.deliver_to_client(ping.freeze());
    let out = p.client.take_output().unwrap();
    let mut dec = ChunkDecoder::new(ChunkLimits::default());
    dec.set_chunk_size(4096).unwrap();
    let mut buf = BytesMut::from(&out[..]);
    let m = dec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        (m.type_id, &m.payload[..]),
        (4, &[0, 7, 0, 0, 0x12, 0x34][..])
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// However the bytes are cut up in transit, both sides see the same events.
    #[test]
    fn split_points_do_not_change_events(splits in proptest::collection::vec(1usize..300, 1..16)) {
        let whole = publisher_flow(Vec::new());
        let split = publisher_flow(splits);
        prop_assert_eq!(whole, split);
    }
}

#[path = "session_pair/admission.rs"]
mod admission;
#[path = "session_pair/play.rs"]
mod play;
