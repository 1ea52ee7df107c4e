//! Chunk decoder: arbitrary bytes in arbitrary splits under small limits.
//! Checks that splitting never changes the result, and that what decoded
//! survives encode -> decode unchanged.

use bytes::BytesMut;
use cascade::protocol::chunk::{
    encode_message, ChunkDecoder, ChunkLimits, RawMessage, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE,
    TYPE_SET_CHUNK_SIZE,
};

use super::Input;

/// Config bytes: the message size limit (255: the 16 MiB default) and the
/// chunk stream limit (1..=8).
pub fn chunk_decoder(data: &[u8]) {
    let input = Input::new(data, 2);
    let max_message_size = match input.config[0] {
        255 => ChunkLimits::default().max_message_size,
        n => 1 + u32::from(n) * 64,
    };
    let limits = ChunkLimits {
        max_message_size,
        max_chunk_streams: 1 + usize::from(input.config[1] % 8),
        ..ChunkLimits::default()
    };

    let (split_msgs, split_err) = decode_all(&limits, input.pieces());
    let (whole_msgs, whole_err) = decode_all(&limits, std::iter::once(input.payload));
    assert_eq!(split_msgs, whole_msgs, "splitting changed the messages");
    assert_eq!(split_err, whole_err, "splitting changed the error");
    for m in &split_msgs {
        assert!(m.payload.len() <= max_message_size as usize);
    }

    // Round trip: encode with the chunk size in force for each message
    // (Set Chunk Size messages change it for what follows), decode again.
    let mut wire = BytesMut::new();
    let mut chunk_size = DEFAULT_CHUNK_SIZE;
    for m in &split_msgs {
        encode_message(
            m.csid,
            m.timestamp,
            m.type_id,
            m.stream_id,
            &m.payload,
            chunk_size,
            &mut wire,
        );
        if m.type_id == TYPE_SET_CHUNK_SIZE {
            let b = m
                .payload
                .get(..4)
                .expect("Set Chunk Size returned with < 4 bytes");
            chunk_size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & MAX_CHUNK_SIZE;
        }
    }
    let (again, err) = decode_all(&limits, std::iter::once(&wire[..]));
    assert_eq!(err, None, "re-encoded messages failed to decode");
    assert_eq!(again, split_msgs, "encode -> decode changed the messages");
}

/// Decodes every message from the pieces until the first error; returns
/// the messages and the error's text. Leftover bytes must be an
/// incomplete chunk, so a final decode on them yields nothing.
fn decode_all<'p>(
    limits: &ChunkLimits,
    pieces: impl Iterator<Item = &'p [u8]>,
) -> (Vec<RawMessage>, Option<String>) {
    let mut dec = ChunkDecoder::new(limits.clone());
    let mut buf = BytesMut::new();
    let mut msgs = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(m)) => msgs.push(m),
                Ok(None) => break,
                Err(e) => return (msgs, Some(format!("{e:?}"))),
            }
        }
    }
    (msgs, None)
}
