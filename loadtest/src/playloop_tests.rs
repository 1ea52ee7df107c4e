//! Unit tests of `playloop`.

use super::*;
use cascade::protocol::chunk::encode_message;

use crate::flvstream::tests::{clip, flv_bytes};
use crate::media::MediaMsg;
use crate::publish::csid_for;

/// What a player measured of `bytes` fed in `read`-sized pieces.
fn measure(wire: &mut Wire, bytes: &[u8], read: usize) -> ThreadStats {
    let mut state = PlayerState::new(Duration::ZERO);
    let mut stats = ThreadStats::default();
    for part in bytes.chunks(read) {
        stats.add_bytes(part.len());
        wire.feed(part, &mut state, &mut stats).unwrap();
    }
    stats
}

fn rtmp(msgs: &[MediaMsg]) -> ThreadStats {
    let mut chunks = BytesMut::new();
    for m in msgs {
        encode_message(
            csid_for(m.type_id),
            m.timestamp,
            m.type_id,
            1,
            &m.payload,
            128,
            &mut chunks,
        );
    }
    let url = crate::rtmp::RtmpUrl::parse("rtmp://127.0.0.1/live/x").unwrap();
    let mut proto = ClientProto::new(url, Role::Play, false);
    let mut skim = Skimmer::default();
    let mut state = PlayerState::new(Duration::ZERO);
    let mut stats = ThreadStats::default();
    for part in chunks.chunks(1400) {
        skim_chunks(&mut proto, &mut skim, part, &mut state, &mut stats).unwrap();
    }
    stats
}

fn http(msgs: &[MediaMsg]) -> ThreadStats {
    let target = PlayTarget::parse("http://127.0.0.1:8080/live/x.flv").unwrap();
    let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\n".to_vec();
    bytes.extend_from_slice(&flv_bytes(msgs));
    let mut wire = Wire::new(&target, false);
    let stats = measure(&mut wire, &bytes, 1400);
    assert!(wire.is_active());
    stats
}

fn ws(msgs: &[MediaMsg]) -> ThreadStats {
    let target = PlayTarget::parse("ws://127.0.0.1:8080/live/x.flv").unwrap();
    let mut wire = Wire::new(&target, false);
    let Wire::WsFlv(c) = &wire else {
        unreachable!()
    };
    // The key is in the request: answer it as a server would.
    let req = String::from_utf8(c.out.to_vec()).unwrap();
    let key = req
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap();
    let mut bytes = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            tungstenite::handshake::derive_accept_key(key.as_bytes())
        )
        .into_bytes();
    for payload in flv_bytes(msgs).chunks(5000) {
        bytes.extend_from_slice(&[0x82, 126]);
        bytes.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        bytes.extend_from_slice(payload);
    }
    let stats = measure(&mut wire, &bytes, 1400);
    assert!(wire.is_active());
    stats
}

/// (frames, lost, latency samples, good starts, bad starts, first frames)
fn summary(s: &ThreadStats) -> (u64, u64, u64, u64, u64, u64) {
    (
        s.frames,
        s.lost,
        s.latency.len(),
        s.good_starts,
        s.bad_starts,
        s.first_frame.len(),
    )
}

#[test]
fn every_protocol_measures_the_same_stream_alike() {
    let msgs = clip(300, true);
    let video = msgs.iter().filter(|m| m.type_id == type_id::VIDEO).count() as u64;
    // Every video frame but the sequence header carries a stamp.
    let want = (video - 1, 0, video - 1, 1, 0, 1);
    assert_eq!(summary(&rtmp(&msgs)), want);
    assert_eq!(summary(&http(&msgs)), want);
    assert_eq!(summary(&ws(&msgs)), want);
}

#[test]
fn a_missing_frame_is_counted_lost_alike() {
    let mut msgs = clip(300, true);
    let nth_frame = msgs
        .iter()
        .enumerate()
        .filter(|(_, m)| m.type_id == type_id::VIDEO)
        .nth(20)
        .map(|(i, _)| i)
        .unwrap();
    msgs.remove(nth_frame);
    let r = summary(&rtmp(&msgs));
    assert_eq!(r.1, 1);
    assert_eq!(summary(&http(&msgs)), r);
    assert_eq!(summary(&ws(&msgs)), r);
}
