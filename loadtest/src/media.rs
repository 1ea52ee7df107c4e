//! What the publisher (and the floor server) send: an FLV file looped with
//! monotonic timestamps, or a synthetic H.264 + AAC stream of a target
//! bitrate; plus the stamper that marks every video frame.

use bytes::{Bytes, BytesMut};

use cascade::protocol::amf::{encode_amf0, Amf0Value};
use cascade::protocol::flv::{
    parse_video, FlvTagReader, VideoPacket, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO,
};
use cascade::protocol::message::type_id;

use crate::stamp::{avc_layout, insert_sei, nal_length_size, stamp_data_body, AvcLayout, Stamp};

/// One media or data message, its timestamp already made monotonic.
#[derive(Debug, Clone)]
pub struct MediaMsg {
    pub type_id: u8,
    pub timestamp: u32,
    pub payload: Bytes,
}

/// Parameters of the synthetic stream.
#[derive(Debug, Clone, Copy)]
pub struct GenParams {
    pub video_bps: u64,
    pub fps: u32,
    pub gop: u32,
    /// 0 for no audio.
    pub audio_bps: u64,
}

pub enum Source {
    File(FileLoop),
    Gen(Generator),
}

impl Source {
    pub fn next_msg(&mut self) -> MediaMsg {
        match self {
            Source::File(f) => f.next_msg(),
            Source::Gen(g) => g.next_msg(),
        }
    }

    /// What a new connection needs before frames: metadata and sequence
    /// headers (a publisher that moves to another server sends them again).
    pub fn headers(&self) -> Vec<MediaMsg> {
        match self {
            Source::File(f) => f
                .tags
                .iter()
                .take_while(|t| !is_coded_video(t))
                .cloned()
                .collect(),
            Source::Gen(g) => g.header_msgs.clone(),
        }
    }
}

/// A video frame (not a sequence header).
fn is_coded_video(m: &MediaMsg) -> bool {
    m.type_id == type_id::VIDEO
        && match avc_layout(&m.payload) {
            AvcLayout::Frames { .. } => true,
            AvcLayout::SequenceHeader { .. } => false,
            AvcLayout::NotAvc => {
                parse_video(&m.payload).is_ok_and(|t| t.packet == VideoPacket::CodedFrames)
            }
        }
}

/// A video keyframe (not a sequence header): where a moved publisher
/// resumes.
pub fn is_keyframe(m: &MediaMsg) -> bool {
    is_coded_video(m) && m.payload.first().is_some_and(|b| b >> 4 & 0x7 == 1)
}

/// An FLV file held in memory and replayed forever.
pub struct FileLoop {
    tags: Vec<MediaMsg>,
    pos: usize,
    /// Added to the file's timestamps on the current pass.
    offset: u32,
    /// Length of one pass in ms (last tag minus first, plus one frame).
    span: u32,
    pass: u32,
}

impl FileLoop {
    pub fn load(path: &str) -> Result<FileLoop, String> {
        let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        let mut buf = BytesMut::from(&data[..]);
        let mut reader = FlvTagReader::new();
        let mut tags = Vec::new();
        while let Some(tag) = reader
            .next_tag(&mut buf)
            .map_err(|e| format!("{path}: {e}"))?
        {
            let type_id = match tag.tag_type {
                TAG_AUDIO => type_id::AUDIO,
                TAG_VIDEO => type_id::VIDEO,
                TAG_SCRIPT => type_id::DATA_AMF0,
                _ => continue,
            };
            tags.push(MediaMsg {
                type_id,
                timestamp: tag.timestamp,
                payload: tag.data,
            });
        }
        if !tags.iter().any(|t| t.type_id == type_id::VIDEO) {
            return Err(format!("{path}: no video tags"));
        }
        let first = tags.iter().map(|t| t.timestamp).min().unwrap_or(0);
        let last = tags.iter().map(|t| t.timestamp).max().unwrap_or(0);
        for t in &mut tags {
            t.timestamp -= first;
        }
        Ok(FileLoop {
            tags,
            pos: 0,
            offset: 0,
            span: last - first + 33,
            pass: 0,
        })
    }

    fn next_msg(&mut self) -> MediaMsg {
        loop {
            if self.pos >= self.tags.len() {
                self.pos = 0;
                self.pass += 1;
                self.offset = self.offset.wrapping_add(self.span);
            }
            let t = &self.tags[self.pos];
            self.pos += 1;
            // Metadata once; cameras resend headers, but not the script tag.
            if self.pass > 0 && t.type_id == type_id::DATA_AMF0 {
                continue;
            }
            return MediaMsg {
                type_id: t.type_id,
                timestamp: t.timestamp.wrapping_add(self.offset),
                payload: t.payload.clone(),
            };
        }
    }
}

/// A synthetic H.264 (fake NAL units) + AAC stream.
pub struct Generator {
    p: GenParams,
    headers: Vec<MediaMsg>,
    /// The headers in sending order, kept for [`Source::headers`].
    header_msgs: Vec<MediaMsg>,
    frame: u64,
    audio_frame: u64,
    key_size: usize,
    inter_size: usize,
    audio_size: usize,
    filler: Bytes,
}

/// Audio frames are AAC-sized: 1024 samples at 48 kHz.
const AUDIO_FRAME_MS: f64 = 1024.0 * 1000.0 / 48_000.0;

impl Generator {
    pub fn new(p: GenParams) -> Generator {
        let fps = p.fps.max(1);
        let gop = u64::from(p.gop.max(1));
        let avg = (p.video_bps / 8 / u64::from(fps)).max(64);
        // Keyframes are about 4x an average frame; the GOP keeps the rate.
        let key = if gop > 1 { avg * 4 } else { avg };
        let inter = if gop > 1 {
            (avg * gop - key) / (gop - 1)
        } else {
            avg
        };
        let audio_size = ((p.audio_bps as f64 / 8.0) * AUDIO_FRAME_MS / 1000.0) as usize;
        let mut headers = Vec::new();
        headers.push(MediaMsg {
            type_id: type_id::DATA_AMF0,
            timestamp: 0,
            payload: metadata(&p),
        });
        headers.push(MediaMsg {
            type_id: type_id::VIDEO,
            timestamp: 0,
            payload: Bytes::from(avc_sequence_header()),
        });
        if p.audio_bps > 0 {
            headers.push(MediaMsg {
                type_id: type_id::AUDIO,
                timestamp: 0,
                payload: Bytes::from_static(&[0xAF, 0x00, 0x11, 0x90]),
            });
        }
        let max = key.max(inter) as usize + 64;
        let filler: Bytes = (0..max)
            .map(|i| (i % 251) as u8 | 0x10)
            .collect::<Vec<u8>>()
            .into();
        let header_msgs = headers.clone();
        headers.reverse();
        Generator {
            p,
            headers,
            header_msgs,
            frame: 0,
            audio_frame: 0,
            key_size: key as usize,
            inter_size: inter as usize,
            audio_size: audio_size.max(8),
            filler,
        }
    }

    fn next_msg(&mut self) -> MediaMsg {
        if let Some(h) = self.headers.pop() {
            return h;
        }
        let video_ms = self.frame as f64 * 1000.0 / f64::from(self.p.fps.max(1));
        let audio_ms = self.audio_frame as f64 * AUDIO_FRAME_MS;
        if self.p.audio_bps > 0 && audio_ms < video_ms {
            self.audio_frame += 1;
            let mut v = Vec::with_capacity(self.audio_size + 2);
            v.extend_from_slice(&[0xAF, 0x01]);
            v.extend_from_slice(&self.filler[..self.audio_size]);
            return MediaMsg {
                type_id: type_id::AUDIO,
                timestamp: audio_ms as u32,
                payload: Bytes::from(v),
            };
        }
        let key = self.frame % u64::from(self.p.gop.max(1)) == 0;
        self.frame += 1;
        let size = if key { self.key_size } else { self.inter_size };
        let mut v = Vec::with_capacity(size + 16);
        v.extend_from_slice(&[if key { 0x17 } else { 0x27 }, 1, 0, 0, 0]);
        v.extend_from_slice(&(size as u32 + 1).to_be_bytes());
        v.push(if key { 0x65 } else { 0x41 });
        v.extend_from_slice(&self.filler[..size]);
        MediaMsg {
            type_id: type_id::VIDEO,
            timestamp: video_ms as u32,
            payload: Bytes::from(v),
        }
    }
}

/// `onMetaData` for the synthetic stream, in FLV script-tag form.
fn metadata(p: &GenParams) -> Bytes {
    let mut out = BytesMut::new();
    encode_amf0(&Amf0Value::String("onMetaData".into()), &mut out);
    let mut props = vec![
        ("width", Amf0Value::Number(1280.0)),
        ("height", Amf0Value::Number(720.0)),
        ("framerate", Amf0Value::Number(f64::from(p.fps))),
        ("videocodecid", Amf0Value::Number(7.0)),
        (
            "videodatarate",
            Amf0Value::Number(p.video_bps as f64 / 1000.0),
        ),
    ];
    if p.audio_bps > 0 {
        props.push(("audiocodecid", Amf0Value::Number(10.0)));
        props.push((
            "audiodatarate",
            Amf0Value::Number(p.audio_bps as f64 / 1000.0),
        ));
    }
    encode_amf0(&Amf0Value::ecma_array(props), &mut out);
    out.freeze()
}

/// A plausible AVC sequence header (baseline 3.1, 4-byte NAL lengths); the
/// SPS/PPS are not meant to be decoded, only parsed by servers.
fn avc_sequence_header() -> Vec<u8> {
    let sps: &[u8] = &[
        0x67, 0x42, 0xC0, 0x1F, 0xDA, 0x01, 0x40, 0x16, 0xE8, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40,
        0x00, 0x00, 0x0F, 0x03, 0xC6, 0x0C, 0xA8,
    ];
    let pps: &[u8] = &[0x68, 0xCE, 0x3C, 0x80];
    let mut v = vec![0x17, 0, 0, 0, 0, 1, sps[1], sps[2], sps[3], 0xFF, 0xE1];
    v.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    v.extend_from_slice(sps);
    v.push(1);
    v.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    v.extend_from_slice(pps);
    v
}

/// Stamps video frames in sending order.
#[derive(Debug, Default)]
pub struct Stamper {
    seq: u64,
    nal_length_size: Option<usize>,
}

impl Stamper {
    /// Number of stamps issued so far.
    pub fn stamped(&self) -> u64 {
        self.seq
    }

    /// Pushes `msg` (stamped when it is a video frame) to `out`, preceded by
    /// an `onCascadeStamp` data message for non-H.264 frames.
    pub fn stamp(&mut self, msg: MediaMsg, now_micros: u64, out: &mut Vec<MediaMsg>) {
        if msg.type_id != type_id::VIDEO {
            out.push(msg);
            return;
        }
        match avc_layout(&msg.payload) {
            AvcLayout::SequenceHeader { record } => {
                self.nal_length_size = msg.payload.get(record..).and_then(nal_length_size);
                out.push(msg);
            }
            AvcLayout::Frames { nal, .. } => {
                let stamp = Stamp {
                    seq: self.seq,
                    micros: now_micros,
                };
                let ls = self.nal_length_size.unwrap_or(4);
                match insert_sei(&msg.payload, nal, ls, stamp) {
                    Some(body) => {
                        self.seq += 1;
                        out.push(MediaMsg {
                            payload: body.freeze(),
                            ..msg
                        });
                    }
                    None => out.push(msg),
                }
            }
            AvcLayout::NotAvc => {
                let coded = parse_video(&msg.payload)
                    .map(|t| t.packet == VideoPacket::CodedFrames)
                    .unwrap_or(false);
                if coded {
                    let stamp = Stamp {
                        seq: self.seq,
                        micros: now_micros,
                    };
                    self.seq += 1;
                    out.push(MediaMsg {
                        type_id: type_id::DATA_AMF0,
                        timestamp: msg.timestamp,
                        payload: stamp_data_body(stamp).freeze(),
                    });
                }
                out.push(msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::extract_sei;

    #[test]
    fn generator_rate_and_order() {
        let p = GenParams {
            video_bps: 2_500_000,
            fps: 30,
            gop: 60,
            audio_bps: 128_000,
        };
        let mut g = Generator::new(p);
        let mut bytes = 0usize;
        let mut last = 0;
        let mut keys = 0;
        let mut msgs = Vec::new();
        loop {
            let m = g.next_msg();
            assert!(m.timestamp >= last, "timestamps go back");
            last = m.timestamp;
            if m.timestamp >= 10_000 {
                break;
            }
            if m.type_id == type_id::VIDEO
                && avc_layout(&m.payload) == (AvcLayout::Frames { nal: 5, key: true })
            {
                keys += 1;
            }
            bytes += m.payload.len();
            msgs.push(m);
        }
        assert_eq!(
            avc_layout(&msgs[1].payload),
            AvcLayout::SequenceHeader { record: 5 }
        );
        let mbit = bytes as f64 * 8.0 / 10.0 / 1e6;
        assert!((2.4..2.8).contains(&mbit), "{mbit} Mbit/s");
        assert_eq!(keys, 5);
    }

    #[test]
    fn stamper_marks_avc_frames_in_sequence() {
        let mut g = Generator::new(GenParams {
            video_bps: 1_000_000,
            fps: 25,
            gop: 50,
            audio_bps: 0,
        });
        let mut s = Stamper::default();
        let mut out = Vec::new();
        for i in 0..10 {
            s.stamp(g.next_msg(), 1000 + i, &mut out);
        }
        let stamps: Vec<_> = out
            .iter()
            .filter_map(|m| match avc_layout(&m.payload) {
                AvcLayout::Frames { nal, .. } => extract_sei(&m.payload, nal, 4),
                _ => None,
            })
            .map(|s| s.seq)
            .collect();
        assert_eq!(stamps, (0..8).collect::<Vec<u64>>());
    }
}
