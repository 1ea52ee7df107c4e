//! RTMP messages above the chunk layer: protocol control, user control,
//! media, data and command messages, parsed from a [`RawMessage`].
//!
//! Media and data payloads stay `Bytes` slices of what the chunk decoder
//! produced; nothing here copies them.

use bytes::{BufMut, Bytes, BytesMut};

use super::amf::{self, Amf0Value, AmfError, AmfLimits};
use super::chunk::{encode_message, RawMessage};

/// Message type ids (RTMP spec section 5.4 and 7.1).
pub mod type_id {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// Chunk stream ids cascade sends on. Media always goes out with a full
/// header on its first chunk, so these can be shared by every player.
pub mod csid {
    pub const CONTROL: u32 = 2;
    pub const COMMAND: u32 = 3;
    pub const AUDIO: u32 = 4;
    pub const DATA: u32 = 5;
    pub const VIDEO: u32 = 6;
}

/// User control event types (RTMP spec section 7.1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserControl {
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength {
        stream_id: u32,
        millis: u32,
    },
    StreamIsRecorded(u32),
    PingRequest(u32),
    PingResponse(u32),
    /// Events we do not act on (e.g. SWF verification); kept for logging.
    Other {
        event: u16,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message type {type_id} too short: {len} bytes")]
    Truncated { type_id: u8, len: usize },
    #[error("bad AMF in message type {type_id}: {source}")]
    Amf {
        type_id: u8,
        #[source]
        source: AmfError,
    },
    #[error("command message has no name")]
    MissingCommandName,
}

/// A parsed RTMP message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    SetChunkSize(u32),
    Abort(u32),
    Acknowledgement(u32),
    UserControl(UserControl),
    WindowAckSize(u32),
    SetPeerBandwidth {
        size: u32,
        limit_type: u8,
    },
    Audio(Bytes),
    Video(Bytes),
    /// A data message normalised to AMF0 (the leading format byte of type 15 is stripped).
    Data(Bytes),
    Command(Command),
    Aggregate(Bytes),
    /// Shared objects and unknown types: ignored but not an error.
    Ignored {
        type_id: u8,
    },
}

/// A command message: name, transaction id, command object and arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    pub object: Amf0Value,
    pub args: Vec<Amf0Value>,
}

fn be_u32(p: &[u8], type_id: u8) -> Result<u32, MessageError> {
    match p.get(..4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(MessageError::Truncated {
            type_id,
            len: p.len(),
        }),
    }
}

impl Message {
    /// Parses a raw message; media payloads are shared, not copied.
    pub fn parse(raw: &RawMessage, limits: &AmfLimits) -> Result<Message, MessageError> {
        use type_id::*;
        let p = &raw.payload;
        let t = raw.type_id;
        Ok(match t {
            SET_CHUNK_SIZE => Message::SetChunkSize(be_u32(p, t)? & 0x7FFF_FFFF),
            ABORT => Message::Abort(be_u32(p, t)?),
            ACKNOWLEDGEMENT => Message::Acknowledgement(be_u32(p, t)?),
            WINDOW_ACK_SIZE => Message::WindowAckSize(be_u32(p, t)?),
            SET_PEER_BANDWIDTH => {
                let size = be_u32(p, t)?;
                let limit_type = *p.get(4).unwrap_or(&2);
                Message::SetPeerBandwidth { size, limit_type }
            }
            USER_CONTROL => Message::UserControl(parse_user_control(p)?),
            AUDIO => Message::Audio(raw.payload.clone()),
            VIDEO => Message::Video(raw.payload.clone()),
            DATA_AMF0 => Message::Data(raw.payload.clone()),
            DATA_AMF3 => {
                if p.is_empty() {
                    return Err(MessageError::Truncated { type_id: t, len: 0 });
                }
                Message::Data(raw.payload.slice(1..))
            }
            COMMAND_AMF0 => Message::Command(parse_command(p, t, limits)?),
            COMMAND_AMF3 => {
                let body = p
                    .get(1..)
                    .ok_or(MessageError::Truncated { type_id: t, len: 0 })?;
                Message::Command(parse_command(body, t, limits)?)
            }
            AGGREGATE => Message::Aggregate(raw.payload.clone()),
            other => Message::Ignored { type_id: other },
        })
    }
}

fn parse_user_control(p: &[u8]) -> Result<UserControl, MessageError> {
    let t = type_id::USER_CONTROL;
    if p.len() < 2 {
        return Err(MessageError::Truncated {
            type_id: t,
            len: p.len(),
        });
    }
    let event = u16::from_be_bytes([p[0], p[1]]);
    let rest = &p[2..];
    Ok(match event {
        0 => UserControl::StreamBegin(be_u32(rest, t)?),
        1 => UserControl::StreamEof(be_u32(rest, t)?),
        2 => UserControl::StreamDry(be_u32(rest, t)?),
        3 => UserControl::SetBufferLength {
            stream_id: be_u32(rest, t)?,
            millis: be_u32(rest.get(4..).unwrap_or(&[]), t)?,
        },
        4 => UserControl::StreamIsRecorded(be_u32(rest, t)?),
        6 => UserControl::PingRequest(be_u32(rest, t)?),
        7 => UserControl::PingResponse(be_u32(rest, t)?),
        other => UserControl::Other { event: other },
    })
}

fn parse_command(body: &[u8], type_id: u8, limits: &AmfLimits) -> Result<Command, MessageError> {
    let values = amf::decode_amf0_all(body, limits)
        .map_err(|source| MessageError::Amf { type_id, source })?;
    let mut it = values.into_iter();
    let name = match it.next() {
        Some(Amf0Value::String(s)) => s,
        _ => return Err(MessageError::MissingCommandName),
    };
    let transaction_id = it.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
    let object = it.next().unwrap_or(Amf0Value::Null);
    Ok(Command {
        name,
        transaction_id,
        object,
        args: it.collect(),
    })
}

/// Serializes outgoing control and command messages with one chunk size.
///
/// Every message gets a full type-0 header: slightly larger than header
/// compression, but it lets media bytes serialized elsewhere interleave
/// freely with what this writer produces.
#[derive(Debug, Clone)]
pub struct MessageWriter {
    chunk_size: u32,
}

impl Default for MessageWriter {
    fn default() -> Self {
        MessageWriter { chunk_size: 128 }
    }
}

impl MessageWriter {
    /// A writer for a peer that was already told this chunk size.
    pub fn with_chunk_size(chunk_size: u32) -> Self {
        MessageWriter {
            chunk_size: chunk_size.clamp(1, 0x7FFF_FFFF),
        }
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Sends Set Chunk Size and switches to it for everything after.
    pub fn set_chunk_size(&mut self, size: u32, out: &mut BytesMut) {
        let size = size.clamp(1, 0x7FFF_FFFF);
        self.control(type_id::SET_CHUNK_SIZE, &size.to_be_bytes(), out);
        self.chunk_size = size;
    }

    pub fn control(&self, type_id: u8, payload: &[u8], out: &mut BytesMut) {
        encode_message(csid::CONTROL, 0, type_id, 0, payload, self.chunk_size, out);
    }

    pub fn window_ack_size(&self, size: u32, out: &mut BytesMut) {
        self.control(type_id::WINDOW_ACK_SIZE, &size.to_be_bytes(), out);
    }

    pub fn set_peer_bandwidth(&self, size: u32, limit_type: u8, out: &mut BytesMut) {
        let mut p = [0u8; 5];
        p[..4].copy_from_slice(&size.to_be_bytes());
        p[4] = limit_type;
        self.control(type_id::SET_PEER_BANDWIDTH, &p, out);
    }

    pub fn acknowledgement(&self, sequence: u32, out: &mut BytesMut) {
        self.control(type_id::ACKNOWLEDGEMENT, &sequence.to_be_bytes(), out);
    }

    pub fn user_control(&self, event: UserControl, out: &mut BytesMut) {
        let mut p = Vec::with_capacity(10);
        let (code, a, b): (u16, u32, Option<u32>) = match event {
            UserControl::StreamBegin(s) => (0, s, None),
            UserControl::StreamEof(s) => (1, s, None),
            UserControl::StreamDry(s) => (2, s, None),
            UserControl::SetBufferLength { stream_id, millis } => (3, stream_id, Some(millis)),
            UserControl::StreamIsRecorded(s) => (4, s, None),
            UserControl::PingRequest(t) => (6, t, None),
            UserControl::PingResponse(t) => (7, t, None),
            UserControl::Other { event } => (event, 0, None),
        };
        p.put_u16(code);
        p.put_u32(a);
        if let Some(b) = b {
            p.put_u32(b);
        }
        self.control(type_id::USER_CONTROL, &p, out);
    }

    /// An AMF0 command message on the given message stream.
    pub fn command(&self, stream_id: u32, values: &[Amf0Value], out: &mut BytesMut) {
        let body = amf0_body(values);
        encode_message(
            csid::COMMAND,
            0,
            type_id::COMMAND_AMF0,
            stream_id,
            &body,
            self.chunk_size,
            out,
        );
    }

    /// An AMF0 data message (e.g. `|RtmpSampleAccess`, `onMetaData`).
    pub fn data(&self, stream_id: u32, values: &[Amf0Value], out: &mut BytesMut) {
        let body = amf0_body(values);
        encode_message(
            csid::DATA,
            0,
            type_id::DATA_AMF0,
            stream_id,
            &body,
            self.chunk_size,
            out,
        );
    }
}

/// Encodes a sequence of AMF0 values back to back.
pub fn amf0_body(values: &[Amf0Value]) -> BytesMut {
    let mut body = BytesMut::with_capacity(256);
    for v in values {
        amf::encode_amf0(v, &mut body);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::chunk::{ChunkDecoder, ChunkLimits};

    fn roundtrip(bytes: &mut BytesMut) -> Vec<Message> {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut out = Vec::new();
        while let Some(raw) = dec.decode(bytes).unwrap() {
            out.push(Message::parse(&raw, &AmfLimits::default()).unwrap());
        }
        out
    }

    #[test]
    fn control_messages_round_trip() {
        let mut w = MessageWriter::default();
        let mut out = BytesMut::new();
        w.window_ack_size(2_500_000, &mut out);
        w.set_peer_bandwidth(2_500_000, 2, &mut out);
        w.set_chunk_size(4096, &mut out);
        w.acknowledgement(u32::MAX, &mut out);
        w.user_control(UserControl::StreamBegin(1), &mut out);
        w.user_control(
            UserControl::SetBufferLength {
                stream_id: 1,
                millis: 3000,
            },
            &mut out,
        );
        let msgs = roundtrip(&mut out);
        assert_eq!(
            msgs,
            vec![
                Message::WindowAckSize(2_500_000),
                Message::SetPeerBandwidth {
                    size: 2_500_000,
                    limit_type: 2
                },
                Message::SetChunkSize(4096),
                Message::Acknowledgement(u32::MAX),
                Message::UserControl(UserControl::StreamBegin(1)),
                Message::UserControl(UserControl::SetBufferLength {
                    stream_id: 1,
                    millis: 3000
                }),
            ]
        );
    }

    #[test]
    fn command_round_trip_and_amf3_prefix() {
        let w = MessageWriter::default();
        let mut out = BytesMut::new();
        let values = [
            Amf0Value::String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::object([("app", Amf0Value::String("live".into()))]),
            Amf0Value::Null,
        ];
        w.command(0, &values, &mut out);
        let msgs = roundtrip(&mut out);
        let Message::Command(c) = &msgs[0] else {
            panic!("not a command: {msgs:?}")
        };
        assert_eq!(c.name, "connect");
        assert_eq!(c.transaction_id, 1.0);
        assert_eq!(c.object.get("app").and_then(|v| v.as_str()), Some("live"));
        assert_eq!(c.args, vec![Amf0Value::Null]);

        // Type 17 carries a format byte before AMF0 values.
        let mut body = vec![0u8];
        body.extend_from_slice(&amf0_body(&values));
        let raw = RawMessage {
            csid: 3,
            timestamp: 0,
            type_id: type_id::COMMAND_AMF3,
            stream_id: 0,
            payload: Bytes::from(body),
        };
        let Message::Command(c3) = Message::parse(&raw, &AmfLimits::default()).unwrap() else {
            panic!()
        };
        assert_eq!(&c3, c);
    }

    #[test]
    fn short_payloads_are_errors_not_panics() {
        for t in [1u8, 2, 3, 4, 5, 6, 15, 17, 20] {
            let raw = RawMessage {
                csid: 2,
                timestamp: 0,
                type_id: t,
                stream_id: 0,
                payload: Bytes::from_static(&[0]),
            };
            let _ = Message::parse(&raw, &AmfLimits::default());
        }
        let raw = RawMessage {
            csid: 2,
            timestamp: 0,
            type_id: 4,
            stream_id: 0,
            payload: Bytes::from_static(&[0, 3, 0, 0, 0, 1]),
        };
        assert!(Message::parse(&raw, &AmfLimits::default()).is_err());
    }
}
