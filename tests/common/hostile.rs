//! Builders for hostile input: broken AMF, chunk floods, slow handshakes,
//! and minimal H.264 FLV video bodies for publishers the test drives itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cascade::protocol::chunk::encode_message;

use super::Server;

/// AMF0 string value.
pub fn amf_str(s: &str) -> Vec<u8> {
    let mut v = vec![0x02];
    v.extend_from_slice(&(s.len() as u16).to_be_bytes());
    v.extend_from_slice(s.as_bytes());
    v
}

/// AMF0 number value.
pub fn amf_num(n: f64) -> Vec<u8> {
    let mut v = vec![0x00];
    v.extend_from_slice(&n.to_be_bytes());
    v
}

/// `depth` strict arrays of one element each, innermost a null.
pub fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(depth * 5 + 1);
    for _ in 0..depth {
        v.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
    }
    v.push(0x05);
    v
}

/// `depth` objects, each the value of key "a" of the one around it
/// (unterminated: the decoder must give up on the depth first).
pub fn nested_objects(depth: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(depth * 4);
    for _ in 0..depth {
        v.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
    }
    v.push(0x05);
    v
}

/// A strict array that claims `count` elements and carries `present` nulls.
pub fn counted_array(count: u32, present: usize) -> Vec<u8> {
    let mut v = vec![0x0A];
    v.extend_from_slice(&count.to_be_bytes());
    v.extend(std::iter::repeat(0x05).take(present));
    v
}

/// A long string that claims `len` bytes and carries `present`.
pub fn long_string(len: u32, present: usize) -> Vec<u8> {
    let mut v = vec![0x0C];
    v.extend_from_slice(&len.to_be_bytes());
    v.extend(std::iter::repeat(b'x').take(present));
    v
}

/// `connect` with `tail` (raw AMF0) where the command object belongs.
pub fn connect_with(tail: &[u8]) -> Vec<u8> {
    let mut v = amf_str("connect");
    v.extend(amf_num(1.0));
    v.extend_from_slice(tail);
    v
}

/// AVC sequence header (a tiny, syntactically plausible record).
pub fn avc_sequence_header() -> Vec<u8> {
    vec![
        0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00,
        0x1f, 0x01, 0x00, 0x02, 0x68, 0xee,
    ]
}

/// One AVC frame of `size` bytes of NAL unit (a keyframe or an inter frame).
pub fn avc_frame(key: bool, size: usize) -> Vec<u8> {
    let mut v = vec![if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
    v.extend_from_slice(&(size as u32).to_be_bytes());
    v.push(if key { 0x65 } else { 0x41 });
    v.extend(std::iter::repeat(0xAB).take(size.saturating_sub(1)));
    v
}

/// Type-0 chunks of a 4-byte Acknowledgement on `count` chunk stream ids
/// from 64 up: each a new chunk stream for the server to remember.
pub fn many_chunk_streams(count: u32) -> Vec<u8> {
    let mut out = BytesMut::new();
    for csid in 64..64 + count {
        encode_message(csid, 0, 3, 0, &[0, 0, 0, 0], 128, &mut out);
    }
    out.to_vec()
}

/// Reads (and discards) until EOF or reset; how long it took, or an error
/// when the connection is still open at the deadline.
pub fn wait_eof(sock: &mut TcpStream, within: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return Ok(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Ok(started.elapsed()),
        }
        if started.elapsed() >= within {
            return Err(format!("still open after {within:?}"));
        }
    }
}

/// Writes as much of `bytes` as the peer takes; stops quietly when it
/// closed (a server refusing a flood resets the connection mid-write).
pub fn write_until_closed(sock: &mut TcpStream, bytes: &[u8]) -> usize {
    let mut sent = 0;
    for piece in bytes.chunks(64 * 1024) {
        match sock.write_all(piece) {
            Ok(()) => sent += piece.len(),
            Err(_) => break,
        }
    }
    sent
}

impl Server {
    /// Waits up to `within` for a log line that names `peer` and contains
    /// every one of `words`.
    pub fn wait_log_line(&self, peer: SocketAddr, words: &[&str], within: Duration) -> bool {
        let peer = format!("peer={peer}");
        self.wait_log(within, |log| {
            log.lines()
                .any(|l| l.contains(&peer) && words.iter().all(|w| l.contains(w)))
        })
    }
}
