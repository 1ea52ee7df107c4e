//! FLV files: header, tags and PreviousTagSize fields, read incrementally
//! from a `BytesMut` so a clip can be streamed without loading it whole.
//!
//! Layout: header (DataOffset bytes, normally 9), PreviousTagSize0 (0), then
//! repeated { tag header (11), data, PreviousTagSize (11 + data) }.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::FlvError;

pub const TAG_AUDIO: u8 = 8;
pub const TAG_VIDEO: u8 = 9;
pub const TAG_SCRIPT: u8 = 18;

/// Length of the standard file header (without PreviousTagSize0).
pub const FILE_HEADER_LEN: usize = 9;
/// Largest DataOffset accepted; real files use 9, anything huge is garbage.
pub const MAX_FILE_HEADER_LEN: u32 = 1024;
/// Length of a tag header.
pub const TAG_HEADER_LEN: usize = 11;
/// Largest body the 24-bit DataSize field can describe.
const MAX_DATA_SIZE: usize = 0xFF_FFFF;

/// Which streams the file header announces (advisory: players ignore it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlvHeader {
    pub has_audio: bool,
    pub has_video: bool,
}

/// One FLV tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// 8 audio, 9 video, 18 script data (the low 5 bits of the first byte;
    /// the filter/encryption bit is not kept).
    pub tag_type: u8,
    /// Milliseconds, including the extended (upper) byte.
    pub timestamp: u32,
    pub data: Bytes,
}

/// Limits for [`FlvTagReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvLimits {
    /// Largest tag body accepted; bigger tags are an error before any of the
    /// body is buffered. Default 8 MiB (a 4K key frame fits comfortably).
    pub max_tag_size: usize,
    /// Check each PreviousTagSize against its tag. Off by default: some
    /// recorders write wrong values and players ignore the field.
    pub verify_previous_tag_size: bool,
}

impl Default for FlvLimits {
    fn default() -> Self {
        FlvLimits {
            max_tag_size: 8 * 1024 * 1024,
            verify_previous_tag_size: false,
        }
    }
}

/// Parses the file header and PreviousTagSize0; returns the header and the
/// number of bytes they take. `Truncated` means more bytes are needed.
pub fn parse_file_header(buf: &[u8]) -> Result<(FlvHeader, usize), FlvError> {
    let head = buf.get(..FILE_HEADER_LEN).ok_or(FlvError::Truncated)?;
    if &head[..3] != b"FLV" {
        return Err(FlvError::BadSignature);
    }
    // head[3] is the version (1); later versions are accepted as they keep
    // the same layout.
    let flags = head[4];
    let data_offset = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
    if !(FILE_HEADER_LEN as u32..=MAX_FILE_HEADER_LEN).contains(&data_offset) {
        return Err(FlvError::BadHeaderSize(data_offset));
    }
    let consumed = data_offset as usize + 4;
    if buf.len() < consumed {
        return Err(FlvError::Truncated);
    }
    let header = FlvHeader {
        has_audio: flags & 0x04 != 0,
        has_video: flags & 0x01 != 0,
    };
    Ok((header, consumed))
}

/// Writes a version 1 file header followed by PreviousTagSize0.
pub fn write_file_header(header: &FlvHeader, out: &mut BytesMut) {
    out.reserve(FILE_HEADER_LEN + 4);
    out.put_slice(b"FLV");
    out.put_u8(1);
    out.put_u8(u8::from(header.has_audio) << 2 | u8::from(header.has_video));
    out.put_u32(FILE_HEADER_LEN as u32);
    out.put_u32(0);
}

/// Writes a tag and its trailing PreviousTagSize, or fails without writing
/// anything if the body does not fit the 24-bit DataSize field.
pub fn try_write_tag(tag: &FlvTag, out: &mut BytesMut) -> Result<(), FlvError> {
    let size = tag.data.len();
    if size > MAX_DATA_SIZE {
        return Err(FlvError::TagTooLarge {
            size,
            max: MAX_DATA_SIZE,
        });
    }
    out.reserve(TAG_HEADER_LEN + size + 4);
    out.put_u8(tag.tag_type & 0x1F);
    put_u24(out, size as u32);
    put_u24(out, tag.timestamp & 0xFF_FFFF);
    out.put_u8((tag.timestamp >> 24) as u8);
    put_u24(out, 0); // stream id, always 0
    out.put_slice(&tag.data);
    out.put_u32((TAG_HEADER_LEN + size) as u32);
    Ok(())
}

/// Writes a tag and its trailing PreviousTagSize.
///
/// A body over 16 MiB - 1 cannot be represented; such a tag is a caller bug
/// (nothing the relay receives can be that large) and is skipped, with a
/// debug assertion. Use [`try_write_tag`] to get the error instead.
pub fn write_tag(tag: &FlvTag, out: &mut BytesMut) {
    let written = try_write_tag(tag, out);
    debug_assert!(
        written.is_ok(),
        "FLV tag body too large: {}",
        tag.data.len()
    );
}

fn put_u24(out: &mut BytesMut, v: u32) {
    out.put_slice(&v.to_be_bytes()[1..]);
}

fn u24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Tags,
}

/// Pulls tags out of a growing buffer. Feed it bytes as they arrive; each
/// call consumes at most one complete tag (with its PreviousTagSize) and
/// returns `Ok(None)` when more bytes are needed. After an error the input
/// is not resynchronised: stop reading.
#[derive(Debug, Clone)]
pub struct FlvTagReader {
    limits: FlvLimits,
    state: State,
    header: Option<FlvHeader>,
}

impl Default for FlvTagReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FlvTagReader {
    /// A reader that expects the file header first.
    pub fn new() -> Self {
        Self::with_limits(FlvLimits::default())
    }

    /// A reader that expects the file header first, with explicit limits.
    pub fn with_limits(limits: FlvLimits) -> Self {
        FlvTagReader {
            limits,
            state: State::Header,
            header: None,
        }
    }

    /// A reader positioned just after PreviousTagSize0 (header already
    /// consumed, e.g. with [`parse_file_header`]).
    pub fn at_first_tag(limits: FlvLimits) -> Self {
        FlvTagReader {
            limits,
            state: State::Tags,
            header: None,
        }
    }

    /// The file header, once it has been read.
    pub fn header(&self) -> Option<FlvHeader> {
        self.header
    }

    /// Returns the next complete tag, consuming it from `buf`.
    pub fn next_tag(&mut self, buf: &mut BytesMut) -> Result<Option<FlvTag>, FlvError> {
        if self.state == State::Header {
            match parse_file_header(buf) {
                Ok((header, consumed)) => {
                    buf.advance(consumed);
                    self.header = Some(header);
                    self.state = State::Tags;
                }
                Err(FlvError::Truncated) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let Some(head) = buf.get(..TAG_HEADER_LEN) else {
            return Ok(None);
        };
        let tag_type = head[0] & 0x1F;
        let size = u24(&head[1..4]) as usize;
        let timestamp = u24(&head[4..7]) | u32::from(head[7]) << 24;
        if size > self.limits.max_tag_size {
            return Err(FlvError::TagTooLarge {
                size,
                max: self.limits.max_tag_size,
            });
        }
        let total = TAG_HEADER_LEN + size + 4;
        if buf.len() < total {
            // Bounded by max_tag_size; saves the caller repeated regrowth.
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(TAG_HEADER_LEN);
        let data = buf.split_to(size).freeze();
        let previous = buf.get_u32();
        let expected = (TAG_HEADER_LEN + size) as u32;
        if self.limits.verify_previous_tag_size && previous != expected {
            return Err(FlvError::PreviousTagSizeMismatch {
                expected,
                found: previous,
            });
        }
        Ok(Some(FlvTag {
            tag_type,
            timestamp,
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_tags() -> Vec<FlvTag> {
        vec![
            FlvTag {
                tag_type: TAG_SCRIPT,
                timestamp: 0,
                data: Bytes::from_static(b"\x02\x00\x0aonMetaData"),
            },
            FlvTag {
                tag_type: TAG_VIDEO,
                timestamp: 0,
                data: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1]),
            },
            FlvTag {
                tag_type: TAG_AUDIO,
                timestamp: 23,
                data: Bytes::from_static(&[0xAF, 0, 0x11, 0x90]),
            },
            FlvTag {
                tag_type: TAG_VIDEO,
                timestamp: 0x0123_4567,
                data: Bytes::new(),
            },
            FlvTag {
                tag_type: TAG_AUDIO,
                timestamp: u32::MAX,
                data: Bytes::from(vec![7u8; 5000]),
            },
        ]
    }

    fn write_file(header: FlvHeader, tags: &[FlvTag]) -> BytesMut {
        let mut out = BytesMut::new();
        write_file_header(&header, &mut out);
        for t in tags {
            write_tag(t, &mut out);
        }
        out
    }

    #[test]
    fn header_round_trip() {
        for (a, v) in [(false, false), (true, false), (false, true), (true, true)] {
            let h = FlvHeader {
                has_audio: a,
                has_video: v,
            };
            let mut out = BytesMut::new();
            write_file_header(&h, &mut out);
            assert_eq!(out.len(), 13);
            assert_eq!(parse_file_header(&out), Ok((h, 13)));
        }
        let mut out = BytesMut::new();
        write_file_header(
            &FlvHeader {
                has_audio: true,
                has_video: true,
            },
            &mut out,
        );
        assert_eq!(&out[..], b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            parse_file_header(b"FLV\x01\x05\x00\x00"),
            Err(FlvError::Truncated)
        );
        assert_eq!(
            parse_file_header(b"FLV\x01\x05\x00\x00\x00\x09\x00"),
            Err(FlvError::Truncated)
        );
        assert_eq!(
            parse_file_header(b"FLX\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"),
            Err(FlvError::BadSignature)
        );
        assert_eq!(
            parse_file_header(b"FLV\x01\x05\x00\x00\x00\x08\x00\x00\x00\x00"),
            Err(FlvError::BadHeaderSize(8))
        );
        assert_eq!(
            parse_file_header(b"FLV\x01\x05\xFF\xFF\xFF\xFF\x00\x00\x00\x00"),
            Err(FlvError::BadHeaderSize(u32::MAX))
        );
        // A longer DataOffset is honoured.
        let long = b"FLV\x01\x01\x00\x00\x00\x0B\xAA\xBB\x00\x00\x00\x00";
        assert_eq!(
            parse_file_header(long),
            Ok((
                FlvHeader {
                    has_audio: false,
                    has_video: true
                },
                15
            ))
        );
    }

    #[test]
    fn file_round_trip() {
        let header = FlvHeader {
            has_audio: true,
            has_video: true,
        };
        let tags = sample_tags();
        let mut buf = write_file(header, &tags);
        let mut reader = FlvTagReader::with_limits(FlvLimits {
            verify_previous_tag_size: true,
            ..FlvLimits::default()
        });
        let mut got = Vec::new();
        while let Some(t) = reader.next_tag(&mut buf).unwrap() {
            got.push(t);
        }
        assert_eq!(got, tags);
        assert_eq!(reader.header(), Some(header));
        assert!(buf.is_empty());
    }

    #[test]
    fn byte_at_a_time_feeding() {
        let tags = sample_tags();
        let file = write_file(FlvHeader::default(), &tags);
        let mut reader = FlvTagReader::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in file.iter() {
            buf.put_u8(b);
            while let Some(t) = reader.next_tag(&mut buf).unwrap() {
                got.push(t);
            }
        }
        assert_eq!(got, tags);
    }

    #[test]
    fn reader_limits_and_errors() {
        let mut buf = write_file(FlvHeader::default(), &sample_tags());
        let mut reader = FlvTagReader::with_limits(FlvLimits {
            max_tag_size: 100,
            ..FlvLimits::default()
        });
        for _ in 0..4 {
            assert!(reader.next_tag(&mut buf).unwrap().is_some());
        }
        assert_eq!(
            reader.next_tag(&mut buf),
            Err(FlvError::TagTooLarge {
                size: 5000,
                max: 100
            })
        );

        let mut buf = BytesMut::from(&b"NOTFLV\x00\x00\x00\x09\x00\x00\x00\x00"[..]);
        assert_eq!(
            FlvTagReader::new().next_tag(&mut buf),
            Err(FlvError::BadSignature)
        );

        // Wrong PreviousTagSize: tolerated by default, an error when checked.
        let mut bad = BytesMut::new();
        write_tag(
            &FlvTag {
                tag_type: TAG_AUDIO,
                timestamp: 1,
                data: Bytes::from_static(b"ab"),
            },
            &mut bad,
        );
        let n = bad.len();
        bad[n - 1] ^= 0xFF;
        let mut lenient = FlvTagReader::at_first_tag(FlvLimits::default());
        assert!(lenient.next_tag(&mut bad.clone()).unwrap().is_some());
        let mut strict = FlvTagReader::at_first_tag(FlvLimits {
            verify_previous_tag_size: true,
            ..FlvLimits::default()
        });
        assert_eq!(
            strict.next_tag(&mut bad),
            Err(FlvError::PreviousTagSizeMismatch {
                expected: 13,
                found: 13 ^ 0xFF
            })
        );
    }

    #[test]
    fn oversize_tag_is_not_written() {
        let big = FlvTag {
            tag_type: TAG_VIDEO,
            timestamp: 0,
            data: Bytes::from(vec![0u8; MAX_DATA_SIZE + 1]),
        };
        let mut out = BytesMut::new();
        assert!(matches!(
            try_write_tag(&big, &mut out),
            Err(FlvError::TagTooLarge { .. })
        ));
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn tag_round_trip(
            tag_type in prop_oneof![Just(TAG_AUDIO), Just(TAG_VIDEO), Just(TAG_SCRIPT)],
            timestamp in any::<u32>(),
            data in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let tag = FlvTag { tag_type, timestamp, data: Bytes::from(data) };
            let mut buf = BytesMut::new();
            write_tag(&tag, &mut buf);
            let mut reader = FlvTagReader::at_first_tag(FlvLimits { verify_previous_tag_size: true, ..FlvLimits::default() });
            prop_assert_eq!(reader.next_tag(&mut buf).unwrap(), Some(tag));
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), header in any::<bool>()) {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut reader = if header { FlvTagReader::new() } else { FlvTagReader::at_first_tag(FlvLimits::default()) };
            for _ in 0..8 {
                match reader.next_tag(&mut buf) {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
    }
}
