//! The WebSocket-FLV player's protocol, without I/O: the opening handshake
//! (accept key checked with tungstenite's `derive_accept_key`), then the
//! server's frames (headers parsed with tungstenite's `FrameHeader::parse`)
//! whose binary payloads, concatenated, are an FLV stream. Pings are
//! answered with masked pongs queued in [`WsFlvClient::out`]; a close frame
//! ends the player.
//!
//! Payload bytes are passed on as they arrive, not after a whole frame or
//! message: a server may put a whole GOP in one message, and a player that
//! waited for it would not measure what a real one sees.

use std::hash::BuildHasher;
use std::io::Cursor;

use bytes::{BufMut, BytesMut};
use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};

use crate::flvstream::FlvStream;
use crate::httpflv::{HeadReader, HttpError, HttpUrl};

/// Longest frame header (with a mask, which a server must not send).
const MAX_FRAME_HEADER: usize = 14;
/// Largest control frame payload RFC 6455 allows.
const MAX_CONTROL: u64 = 125;

/// Where the current frame's payload goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    /// Binary message data: the FLV stream.
    Flv,
    /// Text message data, or a pong: not ours.
    Skip,
    Ping,
    Close,
}

/// A data message split over frames, still waiting for its final frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    None,
    Binary,
    Text,
}

enum Phase {
    Handshake(HeadReader),
    Frames,
}

/// One WebSocket-FLV player's protocol state.
pub struct WsFlvClient {
    /// Bytes to send: the handshake request, then pongs.
    pub out: BytesMut,
    key: String,
    phase: Phase,
    /// A frame header split across reads.
    carry: Vec<u8>,
    /// The frame being read and its payload bytes still to come.
    frame: Option<(Sink, u64)>,
    /// Payload of the control frame being read.
    control: Vec<u8>,
    message: Message,
    flv: FlvStream,
    /// Keys the masks of the frames we send.
    mask_state: std::collections::hash_map::RandomState,
    sent_frames: u64,
}

impl WsFlvClient {
    /// Queues the upgrade request.
    pub fn new(url: &HttpUrl) -> WsFlvClient {
        WsFlvClient::with_key(url, generate_key())
    }

    fn with_key(url: &HttpUrl, key: String) -> WsFlvClient {
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cascade-loadtest\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            url.path,
            url.authority(),
            key
        );
        WsFlvClient {
            out: BytesMut::from(req.as_bytes()),
            key,
            phase: Phase::Handshake(HeadReader::default()),
            carry: Vec::with_capacity(MAX_FRAME_HEADER),
            frame: None,
            control: Vec::new(),
            message: Message::None,
            flv: FlvStream::default(),
            mask_state: Default::default(),
            sent_frames: 0,
        }
    }

    /// The server accepted the upgrade: the player is playing.
    pub fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Frames)
    }

    /// Consumes bytes just read; each complete tag goes to `on` as (RTMP
    /// type id, timestamp, body). A refused upgrade, a protocol violation
    /// or a close frame is an error; tags that arrived before a close are
    /// handed out first.
    pub fn push(
        &mut self,
        mut data: &[u8],
        on: &mut impl FnMut(u8, u32, &[u8]),
    ) -> Result<(), HttpError> {
        if let Phase::Handshake(h) = &mut self.phase {
            let Some((head, used)) = h.push(data)? else {
                return Ok(());
            };
            if head.status != 101 {
                return Err(HttpError::Status(head.status));
            }
            if !head.upgrade_websocket || !head.connection_upgrade {
                return Err(HttpError::WsHandshake("no Upgrade: websocket"));
            }
            if head.ws_accept.as_deref() != Some(&derive_accept_key(self.key.as_bytes())) {
                return Err(HttpError::WsHandshake("wrong Sec-WebSocket-Accept"));
            }
            self.phase = Phase::Frames;
            data = &data[used..];
        }
        let res = self.frames(data);
        self.flv.drain(on)?;
        res
    }

    /// Walks frames in `data`, sending payload bytes where they belong.
    fn frames(&mut self, mut data: &[u8]) -> Result<(), HttpError> {
        loop {
            if let Some((sink, left)) = self.frame {
                let n = left.min(data.len() as u64) as usize;
                let (part, rest) = data.split_at(n);
                data = rest;
                match sink {
                    Sink::Flv => self.flv.extend(part),
                    Sink::Ping | Sink::Close => self.control.extend_from_slice(part),
                    Sink::Skip => {}
                }
                if left > n as u64 {
                    self.frame = Some((sink, left - n as u64));
                    return Ok(());
                }
                self.frame = None;
                self.frame_done(sink)?;
                continue;
            }
            if data.is_empty() {
                return Ok(());
            }
            let (header, len, used) = if self.carry.is_empty() {
                let mut cur = Cursor::new(data);
                match FrameHeader::parse(&mut cur).map_err(frame_err)? {
                    Some((h, len)) => (h, len, cur.position() as usize),
                    None => {
                        self.carry.extend_from_slice(data);
                        return Ok(());
                    }
                }
            } else {
                let old = self.carry.len();
                let add = data.len().min(MAX_FRAME_HEADER - old);
                let mut buf = [0u8; MAX_FRAME_HEADER];
                buf[..old].copy_from_slice(&self.carry);
                buf[old..old + add].copy_from_slice(&data[..add]);
                let mut cur = Cursor::new(&buf[..old + add]);
                match FrameHeader::parse(&mut cur).map_err(frame_err)? {
                    Some((h, len)) => {
                        self.carry.clear();
                        // The carried bytes were not a whole header, so it
                        // ends within the ones just added.
                        (h, len, cur.position() as usize - old)
                    }
                    None => {
                        self.carry.extend_from_slice(&data[..add]);
                        return Ok(());
                    }
                }
            };
            data = &data[used..];
            let sink = self.start_frame(&header, len)?;
            self.frame = Some((sink, len));
        }
    }

    /// Checks a frame header against RFC 6455's rules for what a server
    /// sends; returns where its payload goes.
    fn start_frame(&mut self, h: &FrameHeader, len: u64) -> Result<Sink, HttpError> {
        if h.mask.is_some() {
            return Err(HttpError::WsFrame("masked frame from the server".into()));
        }
        if h.rsv1 || h.rsv2 || h.rsv3 {
            return Err(HttpError::WsFrame("reserved bits set".into()));
        }
        let sink = match h.opcode {
            OpCode::Data(d) => {
                let kind = match (d, self.message) {
                    (Data::Binary, Message::None) => Message::Binary,
                    (Data::Text, Message::None) => Message::Text,
                    (Data::Continue, m) if m != Message::None => m,
                    _ => return Err(HttpError::WsFrame(format!("unexpected {d} frame"))),
                };
                self.message = if h.is_final { Message::None } else { kind };
                if kind == Message::Binary {
                    Sink::Flv
                } else {
                    Sink::Skip
                }
            }
            OpCode::Control(c) => {
                if !h.is_final || len > MAX_CONTROL {
                    return Err(HttpError::WsFrame(format!("bad {c} frame")));
                }
                self.control.clear();
                match c {
                    Control::Ping => Sink::Ping,
                    Control::Close => Sink::Close,
                    _ => Sink::Skip,
                }
            }
        };
        Ok(sink)
    }

    fn frame_done(&mut self, sink: Sink) -> Result<(), HttpError> {
        match sink {
            Sink::Ping => {
                let payload = std::mem::take(&mut self.control);
                self.send(Frame::pong(payload));
                Ok(())
            }
            Sink::Close => {
                let code = self
                    .control
                    .get(..2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]));
                Err(HttpError::WsClosed(code))
            }
            Sink::Flv | Sink::Skip => Ok(()),
        }
    }

    /// Queues a frame, masked as a client's must be.
    fn send(&mut self, mut frame: Frame) {
        self.sent_frames += 1;
        let mask = self.mask_state.hash_one(self.sent_frames).to_le_bytes();
        frame.header_mut().mask = Some([mask[0], mask[1], mask[2], mask[3]]);
        // Writing into memory cannot fail.
        let _ = frame.format(&mut (&mut self.out).writer());
    }
}

fn frame_err(e: tungstenite::Error) -> HttpError {
    HttpError::WsFrame(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flvstream::tests::{clip, expected, flv_bytes, Tags};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn client() -> WsFlvClient {
        let url = HttpUrl::parse("ws://127.0.0.1:8080/live/x.flv", "ws").unwrap();
        let mut c = WsFlvClient::with_key(&url, KEY.into());
        c.out.clear();
        c
    }

    fn accept_head() -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(KEY.as_bytes())
        )
        .into_bytes()
    }

    /// A server frame: unmasked, `fin` and `opcode` as given.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n if n < 126 => v.push(n as u8),
            n if n < 65_536 => {
                v.push(126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(payload);
        v
    }

    fn play(c: &mut WsFlvClient, bytes: &[u8], step: usize) -> (Tags, Option<HttpError>) {
        let mut got = Vec::new();
        for part in bytes.chunks(step.max(1)) {
            if let Err(e) = c.push(part, &mut |t, ts, b| got.push((t, ts, b.to_vec()))) {
                return (got, Some(e));
            }
        }
        (got, None)
    }

    #[test]
    fn request_has_the_upgrade_headers() {
        let url = HttpUrl::parse("ws://h:2/live/x.flv", "ws").unwrap();
        let c = WsFlvClient::new(&url);
        let req = std::str::from_utf8(&c.out).unwrap();
        assert!(req.starts_with("GET /live/x.flv HTTP/1.1\r\nHost: h:2\r\n"));
        for h in [
            "Upgrade: websocket\r\n",
            "Connection: Upgrade\r\n",
            "Sec-WebSocket-Version: 13\r\n",
            &format!("Sec-WebSocket-Key: {}\r\n", c.key),
        ] {
            assert!(req.contains(h), "{h}");
        }
    }

    #[test]
    fn frames_split_across_reads() {
        let msgs = clip(40, false);
        let flv = flv_bytes(&msgs);
        let mut bytes = accept_head();
        // Fragmented messages, frames of all three length forms, a text
        // message and a pong in between: only binary data is FLV.
        let mut rest = &flv[..];
        let sizes = [1usize, 125, 126, 300, 70_000, 7];
        let mut i = 0;
        // A fragmented text message first: skipped, continuation and all.
        bytes.extend(frame(false, 1, b"te"));
        bytes.extend(frame(true, 0, b"xt"));
        while !rest.is_empty() {
            // One binary message of one to three frames.
            let frames = 1 + i % 3;
            for f in 0..frames {
                let n = sizes[i % sizes.len()].min(rest.len());
                i += 1;
                let last = f + 1 == frames || n == rest.len();
                bytes.extend(frame(last, if f == 0 { 2 } else { 0 }, &rest[..n]));
                rest = &rest[n..];
                if last {
                    break;
                }
                // Control frames may come between a message's fragments.
                bytes.extend(frame(true, 0xA, b"pong"));
            }
            bytes.extend(frame(true, 1, b"text, not FLV"));
        }
        let want = expected(&msgs);
        for step in [1, 2, 3, 10, 4096, bytes.len()] {
            let mut c = client();
            let (got, err) = play(&mut c, &bytes, step);
            assert!(err.is_none(), "step {step}: {err:?}");
            assert!(c.is_active());
            assert_eq!(got, want, "step {step}");
            assert!(c.out.is_empty());
        }
    }

    #[test]
    fn ping_gets_a_masked_pong() {
        let mut c = client();
        let mut bytes = accept_head();
        bytes.extend(frame(true, 0x9, b"are you there"));
        for b in bytes.chunks(5) {
            c.push(b, &mut |_, _, _| {}).unwrap();
        }
        let out = c.out.split();
        let mut cur = Cursor::new(&out[..]);
        let (h, len) = FrameHeader::parse(&mut cur).unwrap().unwrap();
        assert_eq!(h.opcode, OpCode::Control(Control::Pong));
        assert!(h.is_final);
        let mask = h.mask.expect("a client's frames are masked");
        let mut body = out[cur.position() as usize..].to_vec();
        assert_eq!(len as usize, body.len());
        for (i, b) in body.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        assert_eq!(body, b"are you there");
    }

    #[test]
    fn close_ends_after_the_tags_before_it() {
        let msgs = clip(3, false);
        let mut bytes = accept_head();
        bytes.extend(frame(true, 2, &flv_bytes(&msgs)));
        bytes.extend(frame(true, 8, &1001u16.to_be_bytes()));
        let (got, err) = play(&mut client(), &bytes, bytes.len());
        assert_eq!(got.len(), 3);
        match err {
            Some(HttpError::WsClosed(Some(1001))) => {}
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn handshake_failures() {
        let (_, err) = play(
            &mut client(),
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            64,
        );
        assert_eq!(err.unwrap().reason(), "http:404");
        let bad = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        let (_, err) = play(&mut client(), bad, 64);
        assert_eq!(err.unwrap().reason(), "ws-handshake");
    }

    #[test]
    fn protocol_violations() {
        let cases: [&[u8]; 4] = [
            // Masked frame from the server.
            &[0x82, 0x81, 1, 2, 3, 4, 0],
            // Continuation with no message open.
            &[0x80, 0x00],
            // Fragmented ping.
            &[0x09, 0x00],
            // Reserved opcode.
            &[0x83, 0x00],
        ];
        for case in cases {
            let mut bytes = accept_head();
            bytes.extend_from_slice(case);
            let (_, err) = play(&mut client(), &bytes, 3);
            assert_eq!(err.expect("violation").reason(), "ws-frame", "{case:?}");
        }
    }
}
