//! WebSocket framing for WebSocket-FLV players, sans-IO: the opening
//! handshake's accept key, the server's (unmasked) frames, and the client's
//! (masked) control frames. Framing and the key come from `tungstenite`;
//! this module only says which frames a media server sends and accepts.

use bytes::{BufMut, Bytes, BytesMut};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Largest control frame payload a client may send (RFC 6455: 125).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &[u8]) -> String {
    tungstenite::handshake::derive_accept_key(client_key)
}

/// The header of one unmasked, final frame of `opcode` carrying `len` bytes.
fn header(opcode: OpCode, len: usize, out: &mut BytesMut) {
    let head = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let mut buf = Vec::with_capacity(head.len(len as u64));
    // Writing into a Vec cannot fail.
    let _ = head.format(len as u64, &mut buf);
    out.put_slice(&buf);
}

/// `payload` as one binary message, the way media leaves.
pub fn binary(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    header(OpCode::Data(Data::Binary), payload.len(), &mut out);
    out.put_slice(payload);
    out.freeze()
}

/// A pong echoing a ping's payload.
pub fn pong(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 2);
    header(OpCode::Control(Control::Pong), payload.len(), &mut out);
    out.put_slice(payload);
    out.freeze()
}

/// A close frame with `code` and a short reason.
pub fn close(code: u16, reason: &str) -> Bytes {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut out = BytesMut::with_capacity(reason.len() + 4);
    header(OpCode::Control(Control::Close), reason.len() + 2, &mut out);
    out.put_u16(code);
    out.put_slice(reason);
    out.freeze()
}

/// What a client sent, as a media server cares about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Ping(Bytes),
    Pong,
    /// The client closes; its status code if it gave one.
    Close(Option<u16>),
    /// A text, binary or continuation frame: a player has nothing to send.
    Data,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("malformed frame header")]
    Malformed,
    #[error("client frame not masked")]
    Unmasked,
    #[error("control frame of {0} bytes (at most 125)")]
    ControlTooLarge(u64),
    #[error("fragmented control frame")]
    FragmentedControl,
    #[error("reserved opcode or bits")]
    Reserved,
}

/// Takes one client frame off the front of `buf`: `Ok(None)` until all of
/// it arrived. Data frames are reported as soon as their header is read
/// (their payload is never buffered: the caller closes the connection).
pub fn next_client_frame(buf: &mut BytesMut) -> Result<Option<ClientFrame>, WsError> {
    let mut cursor = std::io::Cursor::new(&buf[..]);
    let (head, len) = match FrameHeader::parse(&mut cursor) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        Err(_) => return Err(WsError::Malformed),
    };
    if head.rsv1 || head.rsv2 || head.rsv3 {
        return Err(WsError::Reserved);
    }
    let Some(mask) = head.mask else {
        return Err(WsError::Unmasked);
    };
    let control = match head.opcode {
        OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
            return Err(WsError::Reserved)
        }
        OpCode::Data(_) => return Ok(Some(ClientFrame::Data)),
        OpCode::Control(c) => c,
    };
    if len > MAX_CONTROL_PAYLOAD {
        return Err(WsError::ControlTooLarge(len));
    }
    if !head.is_final {
        return Err(WsError::FragmentedControl);
    }
    let start = cursor.position() as usize;
    let end = start + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    let mut frame = buf.split_to(end);
    let mut payload = frame.split_off(start);
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Some(match control {
        Control::Ping => ClientFrame::Ping(payload.freeze()),
        Control::Pong => ClientFrame::Pong,
        Control::Close => ClientFrame::Close(
            (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
        ),
        Control::Reserved(_) => return Err(WsError::Reserved),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, payload: &[u8]) -> BytesMut {
        let mask = [1u8, 2, 3, 4];
        let mut out = BytesMut::new();
        out.put_u8(0x80 | opcode);
        out.put_u8(0x80 | payload.len() as u8);
        out.put_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn binary_frames_carry_short_and_long_payloads() {
        assert_eq!(&binary(b"abc")[..], &[0x82, 3, b'a', b'b', b'c']);
        let long = binary(&[7u8; 300]);
        assert_eq!(&long[..4], &[0x82, 126, 1, 44]);
        assert_eq!(long.len(), 304);
        let huge = binary(&vec![0u8; 70_000]);
        assert_eq!(huge[1], 127);
        assert_eq!(huge.len(), 70_010);
    }

    #[test]
    fn a_ping_is_unmasked_and_answered_only_when_whole() {
        let mut buf = masked(0x9, b"hello");
        let mut part = buf.split_to(4);
        assert_eq!(next_client_frame(&mut part), Ok(None));
        part.unsplit(buf);
        let mut buf = part;
        assert_eq!(
            next_client_frame(&mut buf),
            Ok(Some(ClientFrame::Ping(Bytes::from_static(b"hello"))))
        );
        assert!(buf.is_empty());
        assert_eq!(&pong(b"hello")[..2], &[0x8A, 5]);
    }

    #[test]
    fn close_data_and_unmasked_frames_are_told_apart() {
        let mut buf = masked(0x8, &[0x03, 0xE8]);
        assert_eq!(
            next_client_frame(&mut buf),
            Ok(Some(ClientFrame::Close(Some(1000))))
        );
        let mut buf = masked(0x2, b"data");
        assert_eq!(next_client_frame(&mut buf), Ok(Some(ClientFrame::Data)));
        let mut buf = BytesMut::from(&[0x89u8, 0][..]);
        assert_eq!(next_client_frame(&mut buf), Err(WsError::Unmasked));
        let mut buf = masked(0x9, &[0u8; 126][..125]);
        buf[1] = 0x80 | 126;
        assert!(next_client_frame(&mut buf).is_err());
    }
}
