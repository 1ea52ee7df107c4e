//! MPEG-TS media segments (ordinary HLS, as nginx-rtmp writes it), read
//! as opaque media: the body must be whole 188-byte transport packets,
//! each starting with the 0x47 sync byte, and nothing else of it is
//! looked at. So a TS player counts bytes and segments, not frames: it
//! measures no latency (the publisher's stamps are not dug out of the
//! PES) and no first frame.

/// A transport packet's size and first byte (ISO/IEC 13818-1).
pub const PACKET: usize = 188;
pub const SYNC: u8 = 0x47;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    #[error("no sync byte at offset {0}")]
    NoSync(u64),
    #[error("body of {0} bytes is not whole 188-byte packets")]
    Unfinished(u64),
}

/// Checks one segment's body as it arrives.
#[derive(Debug, Default)]
pub struct TsReader {
    /// Bytes read so far.
    pos: u64,
}

impl TsReader {
    /// Consumes body bytes: every packet must start with the sync byte.
    pub fn push(&mut self, data: &[u8]) -> Result<(), TsError> {
        let into = (self.pos % PACKET as u64) as usize;
        let first = if into == 0 { 0 } else { PACKET - into };
        for i in (first..data.len()).step_by(PACKET) {
            if data[i] != SYNC {
                return Err(TsError::NoSync(self.pos + i as u64));
            }
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    /// The body ended: at least one packet, and only whole ones.
    pub fn finish(&self) -> Result<(), TsError> {
        if self.pos == 0 || self.pos % PACKET as u64 != 0 {
            return Err(TsError::Unfinished(self.pos));
        }
        Ok(())
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// `n` transport packets: sync byte, a PID, continuity counter, filler.
    pub fn segment(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n * PACKET);
        for i in 0..n {
            let mut p = [0xffu8; PACKET];
            p[..4].copy_from_slice(&[SYNC, 0x01, 0x00, 0x10 | (i as u8 & 0x0f)]);
            v.extend_from_slice(&p);
        }
        v
    }

    #[test]
    fn whole_packets_in_any_reads_are_accepted() {
        let seg = segment(7);
        for step in [1, 37, 188, 189, 1000, seg.len()] {
            let mut r = TsReader::default();
            for c in seg.chunks(step) {
                r.push(c).unwrap();
            }
            assert_eq!(r.finish(), Ok(()), "reads of {step}");
        }
    }

    #[test]
    fn a_missing_sync_byte_or_a_cut_packet_is_an_error() {
        let mut seg = segment(3);
        seg[PACKET * 2] = 0x00;
        let mut r = TsReader::default();
        r.push(&seg[..300]).unwrap();
        assert_eq!(r.push(&seg[300..]), Err(TsError::NoSync(376)));
        // An fMP4 body is not TS.
        let mut r = TsReader::default();
        assert_eq!(r.push(b"\0\0\0\x18stypmsdh"), Err(TsError::NoSync(0)));
        let mut r = TsReader::default();
        r.push(&segment(2)[..300]).unwrap();
        assert_eq!(r.finish(), Err(TsError::Unfinished(300)));
        assert_eq!(TsReader::default().finish(), Err(TsError::Unfinished(0)));
    }
}
