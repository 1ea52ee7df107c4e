//! WebSocket client frames: `next_client_frame` on arbitrary bytes in
//! arbitrary splits, and the server's own frame writers. A player's
//! connection reads client frames one read at a time until it meets a data
//! frame or an error, so the frames and the error must not depend on the
//! splits; a masked ping built from the input must decode to its payload.

use bytes::{BufMut, Bytes, BytesMut};
use cascade::protocol::ws::{binary, close, next_client_frame, pong, ClientFrame, WsError};

use super::Input;

/// Frames a connection reads before it stops (a data frame ends it too).
const MAX_FRAMES: usize = 256;

/// Config byte: the length of the payload of the masked ping built from the
/// start of the payload (0..=125, the rest of 255 wraps), and (flag bit 0)
/// whether the input's bytes follow that ping.
pub fn ws_frame(data: &[u8]) {
    let input = Input::new(data, 1);
    let payload = input.payload;

    let (split, split_err) = read_all(input.pieces());
    let (whole, whole_err) = read_all(std::iter::once(payload));
    assert_eq!(split, whole, "splitting changed the frames");
    assert_eq!(split_err, whole_err, "splitting changed the error");
    for f in &whole {
        if let ClientFrame::Ping(p) = f {
            assert!(p.len() <= 125, "a ping of {} bytes was accepted", p.len());
            check_server_frame(&pong(p), 0xA, p);
        }
    }

    // A masked ping of the input's bytes decodes to exactly those bytes.
    let n = usize::from(input.config[0] % 126).min(payload.len());
    let ping = &payload[..n];
    let mask = [0x5a, payload.len() as u8, 0xc3, n as u8];
    let mut buf = BytesMut::new();
    buf.put_u8(0x89);
    buf.put_u8(0x80 | n as u8);
    buf.put_slice(&mask);
    buf.extend(ping.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    if input.flags & 1 != 0 {
        buf.put_slice(payload);
    }
    let before = buf.len();
    assert_eq!(
        next_client_frame(&mut buf),
        Ok(Some(ClientFrame::Ping(Bytes::copy_from_slice(ping))))
    );
    assert_eq!(before - buf.len(), 6 + n, "the ping took the wrong length");

    // The server's frames carry their payload behind a well-formed header.
    check_server_frame(&binary(payload), 0x2, payload);
    let code = u16::from_be_bytes([
        payload.first().copied().unwrap_or(3),
        payload.get(1).copied().unwrap_or(0xe8),
    ]);
    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
    let frame = close(code, &reason);
    assert!(
        frame.len() <= 2 + 125,
        "a close frame of {} bytes",
        frame.len()
    );
    assert_eq!(&frame[2..4], &code.to_be_bytes());
}

/// Client frames until the input runs out, a data frame, or an error.
fn read_all<'p>(pieces: impl Iterator<Item = &'p [u8]>) -> (Vec<ClientFrame>, Option<WsError>) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        while frames.len() < MAX_FRAMES {
            let before = buf.len();
            match next_client_frame(&mut buf) {
                Ok(None) => break,
                Ok(Some(ClientFrame::Data)) => {
                    // Reported at its header; the connection closes here.
                    frames.push(ClientFrame::Data);
                    return (frames, None);
                }
                Ok(Some(f)) => {
                    assert!(buf.len() < before, "{f:?} consumed nothing");
                    assert!(before - buf.len() <= 14 + 125, "a control frame too long");
                    frames.push(f);
                }
                Err(e) => return (frames, Some(e)),
            }
        }
        if frames.len() >= MAX_FRAMES {
            break;
        }
    }
    (frames, None)
}

/// `frame` is one unmasked final frame of `opcode` carrying `payload`.
fn check_server_frame(frame: &[u8], opcode: u8, payload: &[u8]) {
    assert_eq!(frame[0], 0x80 | opcode, "first byte of a server frame");
    assert_eq!(frame[1] & 0x80, 0, "a server frame is never masked");
    let (len, at) = match frame[1] {
        126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&frame[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (usize::from(n), 2),
    };
    assert_eq!(len, payload.len(), "length field");
    assert_eq!(&frame[at..], payload, "payload");
}
