//! The FLV byte stream an HTTP-FLV or WebSocket-FLV player receives: the
//! body bytes (or the binary WebSocket payloads, concatenated) go in as
//! they arrive, tags come out as (RTMP message type, timestamp, body).
//!
//! An FLV tag body is exactly the payload of the RTMP message of the same
//! type, so handing tags out under RTMP type ids lets every player,
//! whatever its protocol, measure through the same
//! [`PlayerState::on_media`](crate::play::PlayerState::on_media).

use bytes::BytesMut;

use cascade::protocol::flv::{FlvError, FlvTagReader, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
use cascade::protocol::message::type_id;

/// Bytes received but not yet a whole tag, and the reader that cuts them.
#[derive(Default)]
pub struct FlvStream {
    buf: BytesMut,
    reader: FlvTagReader,
}

impl FlvStream {
    /// Appends stream bytes; call [`FlvStream::drain`] to get the tags.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Hands out every complete tag (type id, timestamp, body); what is left
    /// waits for more bytes. Tag types other than audio, video and script
    /// data are skipped, as a player would.
    pub fn drain(&mut self, on: &mut impl FnMut(u8, u32, &[u8])) -> Result<(), FlvError> {
        while let Some(tag) = self.reader.next_tag(&mut self.buf)? {
            let t = match tag.tag_type {
                TAG_AUDIO => type_id::AUDIO,
                TAG_VIDEO => type_id::VIDEO,
                TAG_SCRIPT => type_id::DATA_AMF0,
                _ => continue,
            };
            on(t, tag.timestamp, &tag.data);
        }
        Ok(())
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use bytes::Bytes;
    use cascade::protocol::flv::{write_file_header, write_tag, FlvHeader, FlvTag};

    use crate::media::{GenParams, Generator, MediaMsg, Source, Stamper};

    /// `n` messages of the synthetic H.264 + AAC stream (10-frame GOPs),
    /// video frames stamped as the publisher stamps them when `stamped`.
    pub fn clip(n: usize, stamped: bool) -> Vec<MediaMsg> {
        let mut src = Source::Gen(Generator::new(GenParams {
            video_bps: 2_500_000,
            fps: 30,
            gop: 10,
            audio_bps: 64_000,
        }));
        let mut stamper = Stamper::default();
        let mut out = Vec::new();
        while out.len() < n {
            let m = src.next_msg();
            if stamped {
                stamper.stamp(m, crate::play::unix_micros(), &mut out);
            } else {
                out.push(m);
            }
        }
        out
    }

    /// Tags as a player sees them: (type id, timestamp, body).
    pub type Tags = Vec<(u8, u32, Vec<u8>)>;

    /// The tags a player should see of `msgs`.
    pub fn expected(msgs: &[MediaMsg]) -> Tags {
        msgs.iter()
            .map(|m| (m.type_id, m.timestamp, m.payload.to_vec()))
            .collect()
    }

    /// A whole FLV stream (header, PreviousTagSize0, tags) of `msgs`.
    pub fn flv_bytes(msgs: &[MediaMsg]) -> Vec<u8> {
        let mut out = BytesMut::new();
        let header = FlvHeader {
            has_audio: true,
            has_video: true,
        };
        write_file_header(&header, &mut out);
        for m in msgs {
            let tag_type = match m.type_id {
                type_id::AUDIO => TAG_AUDIO,
                type_id::VIDEO => TAG_VIDEO,
                _ => TAG_SCRIPT,
            };
            let tag = FlvTag {
                tag_type,
                timestamp: m.timestamp,
                data: m.payload.clone(),
            };
            write_tag(&tag, &mut out);
        }
        out.to_vec()
    }

    #[test]
    fn tags_come_out_under_rtmp_types_whatever_the_cuts() {
        let msgs = vec![
            MediaMsg {
                type_id: type_id::DATA_AMF0,
                timestamp: 0,
                payload: Bytes::from_static(b"\x02\x00\x0aonMetaData"),
            },
            MediaMsg {
                type_id: type_id::VIDEO,
                timestamp: 0,
                payload: Bytes::from(vec![0x17; 3000]),
            },
            MediaMsg {
                type_id: type_id::AUDIO,
                timestamp: 0x0100_0021,
                payload: Bytes::from_static(&[0xAF, 1, 2]),
            },
        ];
        let bytes = flv_bytes(&msgs);
        for step in [1, 7, 13, 4096, bytes.len()] {
            let mut s = FlvStream::default();
            let mut got = Vec::new();
            for part in bytes.chunks(step) {
                s.extend(part);
                s.drain(&mut |t, ts, body| got.push((t, ts, body.to_vec())))
                    .unwrap();
            }
            let want: Vec<_> = msgs
                .iter()
                .map(|m| (m.type_id, m.timestamp, m.payload.to_vec()))
                .collect();
            assert_eq!(got, want, "step {step}");
        }
    }

    #[test]
    fn not_flv_is_an_error() {
        let mut s = FlvStream::default();
        s.extend(b"<html><body>not found</body></html>");
        assert!(s.drain(&mut |_, _, _| {}).is_err());
    }
}
