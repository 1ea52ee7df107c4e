//! Hand-made seed inputs, in each target's input layout (see [`super::Input`]).
//! Written to `fuzz/seeds/<target>/` by the ignored `write_seeds` test in
//! `tests/fuzz_regressions.rs`; the random C1 bytes make each run differ.

use bytes::{BufMut, Bytes, BytesMut};
use cascade::protocol::amf::{encode_amf0, encode_amf3, Amf0Value, Amf3Value};
use cascade::protocol::chunk::encode_message;
use cascade::protocol::flv::{write_file_header, write_tag, FlvHeader, FlvTag};
use cascade::protocol::handshake::{ClientHandshake, ServerHandshake, HANDSHAKE_PACKET_LEN};
use cascade::protocol::message::amf0_body;
use cascade::protocol::session::{ClientConfig, ClientSession, MediaKind};

/// (target, file name, bytes).
pub type Seed = (&'static str, &'static str, Vec<u8>);

/// Byte 0 of an input: flag bits and the number of split-size bytes.
fn head(flags: u8, sizes: &[u8]) -> Vec<u8> {
    let mut v = vec![flags << 3 | sizes.len() as u8];
    v.extend_from_slice(sizes);
    v
}

/// Header with config bytes between byte 0 and the split sizes.
fn head_cfg(flags: u8, config: &[u8], sizes: &[u8]) -> Vec<u8> {
    let mut v = vec![flags << 3 | sizes.len() as u8];
    v.extend_from_slice(config);
    v.extend_from_slice(sizes);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub fn all() -> Vec<Seed> {
    let mut seeds = handshake();
    seeds.extend(chunk_decoder());
    seeds.extend(amf());
    seeds.extend(flv());
    seeds.extend(server_session());
    seeds.extend(http_head());
    seeds.extend(ws_frame());
    seeds.extend(cmaf());
    seeds
}

fn handshake() -> Vec<Seed> {
    let plain_c1: Vec<u8> = (0..HANDSHAKE_PACKET_LEN).map(|i| (i * 7) as u8).collect();
    let mut simple = vec![3];
    simple.extend_from_slice(&plain_c1[..4]);
    simple.extend_from_slice(&[0; 4]);
    simple.extend_from_slice(&plain_c1[8..]);
    let c2 = vec![0x55; HANDSHAKE_PACKET_LEN];
    let chunks = [0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 16, 0];

    let mut complex_c0c1 = BytesMut::new();
    ClientHandshake::new(true).start(&mut complex_c0c1);
    let mut s0s1s2 = BytesMut::new();
    let mut c = complex_c0c1.clone();
    let _ = ServerHandshake::new().feed(&mut c, &mut s0s1s2);

    vec![
        (
            "handshake",
            "server_simple",
            cat(&[&head(0, &[]), &simple, &c2, &chunks]),
        ),
        (
            "handshake",
            "server_simple_split",
            cat(&[&head(0, &[1, 200, 0]), &simple, &c2, &chunks]),
        ),
        (
            "handshake",
            "server_complex",
            cat(&[&head(0, &[99]), &complex_c0c1, &c2, &chunks]),
        ),
        (
            "handshake",
            "server_bad_version",
            cat(&[&head(0, &[]), b"GET / HTTP/1.1\r\n"]),
        ),
        (
            "handshake",
            "client_simple",
            cat(&[&head(1, &[13]), &simple, &c2, &chunks]),
        ),
        (
            "handshake",
            "client_complex",
            cat(&[&head(1 | 4, &[255, 1]), &s0s1s2, &chunks]),
        ),
        (
            "handshake",
            "pair_simple",
            cat(&[&head(2, &[7, 100]), &chunks]),
        ),
        (
            "handshake",
            "pair_complex",
            cat(&[&head(2 | 4, &[1, 0]), &chunks]),
        ),
    ]
}

/// What a publisher and a player send after the handshake.
fn client_streams() -> (Vec<u8>, Vec<u8>) {
    let config = ClientConfig::new("live?token=abc", "rtmp://127.0.0.1/live?token=abc");
    let mut publisher = ClientSession::new(config.clone());
    publisher.connect();
    publisher.prepare_publish("cam?sign=1");
    publisher.create_stream();
    publisher.publish(1, "cam?sign=1");
    let meta = amf0_body(&[
        Amf0Value::String("onMetaData".into()),
        Amf0Value::ecma_array([("width", Amf0Value::Number(1280.0))]),
    ]);
    publisher.send_media(1, MediaKind::Metadata, 0, &meta);
    publisher.send_media(
        1,
        MediaKind::Video,
        0,
        &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f],
    );
    publisher.send_media(1, MediaKind::Audio, 0, &[0xaf, 0, 0x12, 0x10]);
    publisher.send_media(1, MediaKind::Video, 33, &vec![0x27; 5000]);
    publisher.send_media(1, MediaKind::Video, 0x0100_0000, &[0x17, 1, 0, 0, 0]);
    publisher.delete_stream(1);

    let mut player = ClientSession::new(config);
    player.connect();
    player.create_stream();
    player.play(1, "cam");
    player.delete_stream(1);
    let take = |s: &mut ClientSession| {
        let mut v = Vec::new();
        while let Some(b) = s.take_output() {
            v.extend_from_slice(&b);
        }
        v
    };
    (take(&mut publisher), take(&mut player))
}

fn chunk_decoder() -> Vec<Seed> {
    let (publish, play) = client_streams();
    // Compressed headers by hand: fmt 1 on a new csid (librtmp), fmt 2,
    // fmt 3 starting a new message, an extended timestamp repeated on a
    // continuation, and an Abort.
    let mut hand = vec![
        0x44, 0, 0, 10, 0, 0, 2, 8, 0xaa, 0xbb, // fmt 1, csid 4, delta 10, len 2, audio
        0x84, 0, 0, 5, 0xcc, 0xdd, // fmt 2, delta 5, same length
        0xc4, 0xee, 0xff, // fmt 3: new message, delta 5 again
    ];
    let mut long = BytesMut::new();
    encode_message(6, 0x0123_4567, 9, 1, &[0x27; 300], 128, &mut long);
    hand.extend_from_slice(&long);
    // Abort csid 7 while its message is half sent.
    hand.extend_from_slice(&[0x07, 0, 0, 0, 0, 0, 200, 9, 1, 0, 0, 0]);
    hand.extend_from_slice(&[0x11; 128]);
    hand.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 7]);
    // Two- and three-byte basic headers.
    let mut wide = BytesMut::new();
    encode_message(100, 1, 18, 0, b"\x02\x00\x01x", 128, &mut wide);
    encode_message(40_000, 2, 8, 1, &[0xaf, 1, 2], 128, &mut wide);
    vec![
        (
            "chunk_decoder",
            "publish",
            cat(&[&head_cfg(0, &[255, 7], &[]), &publish]),
        ),
        (
            "chunk_decoder",
            "publish_split",
            cat(&[&head_cfg(0, &[255, 7], &[1, 3, 50]), &publish]),
        ),
        (
            "chunk_decoder",
            "play",
            cat(&[&head_cfg(0, &[255, 7], &[9]), &play]),
        ),
        (
            "chunk_decoder",
            "hand",
            cat(&[&head_cfg(0, &[20, 7], &[2]), &hand]),
        ),
        (
            "chunk_decoder",
            "wide_csid",
            cat(&[&head_cfg(0, &[1, 3], &[]), &wide]),
        ),
    ]
}

fn amf() -> Vec<Seed> {
    let mut connect = BytesMut::new();
    for v in [
        Amf0Value::String("connect".into()),
        Amf0Value::Number(1.0),
        Amf0Value::object([
            ("app", Amf0Value::String("live".into())),
            ("objectEncoding", Amf0Value::Number(3.0)),
            (
                "fourCcList",
                Amf0Value::StrictArray(vec!["hvc1".into(), "av01".into()]),
            ),
        ]),
        Amf0Value::Null,
        Amf0Value::Undefined,
        Amf0Value::Date {
            millis: 1.7e12,
            timezone: 0,
        },
        Amf0Value::Xml("<a/>".into()),
        Amf0Value::TypedObject {
            class_name: "Cls".into(),
            properties: vec![("k".into(), Amf0Value::Boolean(true))],
        },
        Amf0Value::Amf3(Amf3Value::Integer(-5)),
    ] {
        encode_amf0(&v, &mut connect);
    }
    // An object, then a reference (0x07) to it, and a long string.
    let mut refs = vec![
        0x03, 0, 1, b'a', 0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0, 9,
    ];
    refs.extend_from_slice(&[0x07, 0, 0, 0x0c, 0, 0, 0, 2, b'h', b'i']);

    let mut amf3 = BytesMut::new();
    encode_amf3(
        &Amf3Value::Object {
            class_name: Some("flex.Msg".into()),
            sealed: vec![("id".into(), Amf3Value::Double(0.5))],
            dynamic: Some(vec![(
                "list".into(),
                Amf3Value::Array {
                    assoc: vec![("k".into(), Amf3Value::String("v".into()))],
                    dense: vec![Amf3Value::VectorInt(vec![1, -2], false)],
                },
            )]),
        },
        &mut amf3,
    );
    // Array of three: a string, the same string by reference, an object
    // twice (second by reference), traits reused by reference.
    let amf3_refs = [
        0x09, 0x09, 0x01, // dense array of 4, no assoc part
        0x06, 0x03, b's', // string "s"
        0x06, 0x00, // string reference 0
        0x0a, 0x13, 0x01, 0x03, b'x', 0x04, 0x01, // object, 1 sealed "x" = 1, anonymous
        0x0a, 0x01, 0x04, 0x02, // object with traits reference 0, x = 2
    ];
    let mut dict = BytesMut::new();
    encode_amf3(
        &Amf3Value::Dictionary {
            weak: true,
            entries: vec![(Amf3Value::Integer(1), Amf3Value::ByteArray(vec![1, 2]))],
        },
        &mut dict,
    );
    vec![
        ("amf", "amf0_connect", cat(&[&head(0, &[]), &connect])),
        ("amf", "amf0_refs", cat(&[&head(0, &[]), &refs])),
        ("amf", "amf0_small_limits", cat(&[&head(2, &[]), &connect])),
        ("amf", "amf3_object", cat(&[&head(1, &[]), &amf3])),
        ("amf", "amf3_refs", cat(&[&head(1, &[]), &amf3_refs])),
        ("amf", "amf3_dictionary", cat(&[&head(1 | 2, &[]), &dict])),
    ]
}

fn flv() -> Vec<Seed> {
    let mut file = BytesMut::new();
    write_file_header(
        &FlvHeader {
            has_audio: true,
            has_video: true,
        },
        &mut file,
    );
    let tags: [(u8, u32, &[u8]); 6] = [
        (
            18,
            0,
            b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x00\x00\x00\x09",
        ),
        (9, 0, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]),
        (8, 0, &[0xaf, 0, 0x12, 0x10]),
        // Enhanced: key frame, SequenceStart, hvc1.
        (9, 0, &[0x90, b'h', b'v', b'c', b'1', 1, 2, 3]),
        // Enhanced audio: Opus SequenceStart.
        (8, 0, &[0x90, b'O', b'p', b'u', b's', 1]),
        // Enhanced video multitrack (one track), ModEx prelude first.
        (
            9,
            0x0100_0020,
            &[
                0x97, 0x00, 0x0a, 0x16, 0x01, b'a', b'v', b'0', b'1', 0, 9, 9,
            ],
        ),
    ];
    for (tag_type, timestamp, data) in tags {
        let tag = FlvTag {
            tag_type,
            timestamp,
            data: Bytes::copy_from_slice(data),
        };
        write_tag(&tag, &mut file);
    }
    let mut headerless = file.clone().split_off(13);
    headerless.put_slice(&[9, 0, 0, 1]); // a truncated tag at the end
    vec![
        ("flv", "file", cat(&[&head_cfg(0, &[255], &[]), &file])),
        (
            "flv",
            "file_split",
            cat(&[&head_cfg(2, &[40], &[5, 1]), &file]),
        ),
        (
            "flv",
            "tags",
            cat(&[&head_cfg(1, &[255], &[3]), &headerless]),
        ),
    ]
}

fn server_session() -> Vec<Seed> {
    let (publish, play) = client_streams();
    let ping = [0x02, 0, 0, 0, 0, 0, 6, 4, 0, 0, 0, 0, 0, 6, 0, 0, 0, 9];
    vec![
        (
            "server_session",
            "publish_accept",
            cat(&[&head_cfg(0, &[0xff, 0xff], &[]), &publish]),
        ),
        (
            "server_session",
            "publish_reject_split",
            cat(&[&head_cfg(0, &[0, 0], &[1, 17, 0]), &publish]),
        ),
        (
            "server_session",
            "play_accept_unpublish",
            cat(&[&head_cfg(0, &[0xff, 0xff], &[30]), &play, &ping]),
        ),
        (
            "server_session",
            "play_reject",
            cat(&[&head_cfg(0, &[0x02, 0], &[]), &play]),
        ),
    ]
}

fn http_head() -> Vec<Seed> {
    let player = b"GET /live/cam.flv?token=a%3Db HTTP/1.1\r\nHost: edge\r\n\
        Range: bytes=0-\r\nConnection: keep-alive\r\n\r\n";
    let ws = b"GET /live/cam.flv HTTP/1.1\r\nHost: edge\r\nConnection: Upgrade\r\n\
        Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";
    let pipelined = b"GET /healthz HTTP/1.1\r\n\r\nHEAD /readyz HTTP/1.0\r\n\r\n\
        DELETE /api/v1/clients/7 HTTP/1.1\r\nAuthorization: Bearer t\r\n\
        Content-Length: 3\r\n\r\nabcGET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n";
    let body = b"POST /api/v1/x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\
        Transfer-Encoding: chunked\r\n\r\n";
    let endless = [&b"GET / HTTP/1.1\r\nX: "[..], &[b'a'; 600]].concat();
    vec![
        (
            "http_head",
            "player",
            cat(&[&head_cfg(1, &[0, 0], &[]), &player[..]]),
        ),
        (
            "http_head",
            "player_split",
            cat(&[&head_cfg(1, &[0, 0], &[1, 7, 0]), &player[..]]),
        ),
        (
            "http_head",
            "websocket",
            cat(&[&head_cfg(1, &[0, 0], &[9]), &ws[..]]),
        ),
        (
            "http_head",
            "pipelined_small",
            cat(&[&head_cfg(0, &[40, 4], &[13]), &pipelined[..]]),
        ),
        (
            "http_head",
            "body_headers",
            cat(&[&head_cfg(1, &[0, 0], &[]), &body[..]]),
        ),
        (
            "http_head",
            "endless_small",
            cat(&[&head_cfg(0, &[30, 8], &[100]), &endless]),
        ),
    ]
}

fn ws_frame() -> Vec<Seed> {
    let mask = [1u8, 2, 3, 4];
    let masked = |first: u8, payload: &[u8]| {
        let mut v = vec![first, 0x80 | payload.len() as u8];
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        v
    };
    let pings = [
        masked(0x89, b"hello"),
        masked(0x8a, b""),
        masked(0x88, &[0x03, 0xe8, b'b', b'y', b'e']),
    ]
    .concat();
    let data = masked(0x82, b"flv?");
    let unmasked = [0x89u8, 0x02, b'h', b'i'];
    let oversized = [0x89u8, 0x80 | 126, 0, 200, 1, 2, 3, 4];
    let fragmented = masked(0x09, b"part");
    let reserved = masked(0xc9, b"");
    vec![
        ("ws_frame", "pings", cat(&[&head_cfg(0, &[5], &[]), &pings])),
        (
            "ws_frame",
            "pings_split",
            cat(&[&head_cfg(1, &[3], &[1, 2, 0]), &pings]),
        ),
        ("ws_frame", "data", cat(&[&head_cfg(0, &[0], &[]), &data])),
        (
            "ws_frame",
            "unmasked",
            cat(&[&head_cfg(0, &[2], &[]), &unmasked]),
        ),
        (
            "ws_frame",
            "oversized_control",
            cat(&[&head_cfg(0, &[125], &[3]), &oversized]),
        ),
        (
            "ws_frame",
            "fragmented_ping",
            cat(&[&head_cfg(1, &[0], &[]), &fragmented]),
        ),
        (
            "ws_frame",
            "reserved_bits",
            cat(&[&head_cfg(0, &[0], &[]), &reserved]),
        ),
    ]
}

/// Tag bodies with real decoder configurations (x264 720p, x265 1080p,
/// SVT-AV1 720p, AAC-LC, Opus as ffmpeg 9 writes it) and frames.
fn cmaf() -> Vec<Seed> {
    let sps264: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    let pps264: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    let avcc = cat(&[
        &[1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, sps264.len() as u8],
        sps264,
        &[1, 0, pps264.len() as u8],
        pps264,
    ]);
    let sps265: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x78, 0xa0, 0x03, 0xc0, 0x80, 0x10, 0xe5, 0x96, 0x56, 0x69, 0x24, 0xca, 0xf0,
        0x16, 0x80, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0f, 0x04,
    ];
    let hvcc = cat(&[
        &[
            1,
            0x01,
            0x60,
            0,
            0,
            0,
            0x90,
            0,
            0,
            0,
            0,
            0,
            120,
            0xf0,
            0,
            0xfc,
            0xfd,
            0xf8,
            0xf8,
            0,
            0,
            0x0f,
            1,
            0x80 | 33,
            0,
            1,
            0,
            sps265.len() as u8,
        ],
        sps265,
    ]);
    let av1c: &[u8] = &[
        0x81, 0x05, 0x0c, 0x00, 0x0a, 0x0c, 0x02, 0x00, 0x00, 0x2d, 0x2a, 0x67, 0xfd, 0x9e, 0x01,
        0x7c, 0x00, 0x20,
    ];
    let opus_head: &[u8] = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00";
    let key = head(1, &[]);
    let inter = head(0, &[]);
    vec![
        (
            "cmaf",
            "avc_config",
            cat(&[&key, &[0x17, 0, 0, 0, 0], &avcc]),
        ),
        (
            "cmaf",
            "avc_frame",
            cat(&[&key, &[0x17, 1, 0, 0, 0x28, 0, 0, 0, 2, 0x65, 0x88]]),
        ),
        ("cmaf", "hevc_config", cat(&[&key, b"\x90hvc1", &hvcc])),
        (
            "cmaf",
            "hevc_frame_x",
            cat(&[&inter, b"\xa3hvc1\x00\x00\x00\x02\x02\x01"]),
        ),
        ("cmaf", "av1_config", cat(&[&key, b"\x90av01", av1c])),
        (
            "cmaf",
            "av1_frame",
            cat(&[&key, b"\x91av01\x12\x00", &av1c[4..]]),
        ),
        ("cmaf", "aac_config", cat(&[&key, &[0xaf, 0, 0x11, 0x90]])),
        ("cmaf", "opus_config", cat(&[&key, b"\x90Opus", opus_head])),
        (
            "cmaf",
            "opus_frame_mod_ex",
            cat(&[&key, b"\x97\x01\x00\x00\x01Opus\xfc\xff\xfe"]),
        ),
    ]
}
