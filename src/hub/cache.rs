//! What a late joiner needs at once: metadata, sequence headers, and the
//! GOP from the last keyframe. Kept by the owning core and mirrored by
//! every core with players (the frames are shared, so a mirror costs a
//! list of refcounts, not bytes).

use std::collections::VecDeque;

use super::frame::{Frame, HeaderKey};
use crate::protocol::session::MediaKind;

#[derive(Debug, Clone)]
pub struct GopLimits {
    pub max_duration_ms: u32,
    pub max_bytes: usize,
}

impl Default for GopLimits {
    fn default() -> Self {
        GopLimits {
            max_duration_ms: 10_000,
            max_bytes: 32 << 20,
        }
    }
}

/// Sequence-header slots one stream keeps: one per media kind and track.
/// Real streams use two (one video, one audio); OBS multitrack a handful.
/// A header for a further track still goes to the players live, it is just
/// not replayed to late joiners.
pub const MAX_HEADER_SLOTS: usize = 8;

#[derive(Default)]
pub struct Cache {
    metadata: Option<Frame>,
    headers: Vec<(HeaderKey, Frame)>,
    gop: VecDeque<Frame>,
    /// What the GOP costs in memory (see [`Frame::cost`]).
    gop_bytes: usize,
    /// False until a keyframe, and after the GOP outgrew its limits.
    gop_valid: bool,
    /// The video track whose keyframes start a GOP: the first seen. With
    /// Enhanced RTMP multitrack, a keyframe of another track must not cut
    /// the GOP that late joiners of this one need.
    main_track: Option<u8>,
}

impl Cache {
    pub fn clear(&mut self) {
        *self = Cache::default();
    }

    /// Records a frame that is going out to players.
    pub fn apply(&mut self, frame: &Frame, limits: &GopLimits) {
        if frame.kind == MediaKind::Metadata {
            self.metadata = Some(frame.clone());
        } else if let Some(key) = frame.header {
            let full = self.headers.len() >= MAX_HEADER_SLOTS;
            match self.headers.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = frame.clone(),
                None if !full => self.headers.push((key, frame.clone())),
                None => {}
            }
        } else if frame.keyframe && *self.main_track.get_or_insert(frame.track) == frame.track {
            self.gop.clear();
            self.gop_bytes = 0;
            self.gop_valid = true;
            self.push_gop(frame, limits);
        } else if self.gop_valid && frame.kind != MediaKind::Data {
            self.push_gop(frame, limits);
        }
    }

    fn push_gop(&mut self, frame: &Frame, limits: &GopLimits) {
        self.gop_bytes += frame.cost();
        let first = self.gop.front().map_or(frame.timestamp, |f| f.timestamp);
        let span = frame.timestamp.wrapping_sub(first) as i32;
        self.gop.push_back(frame.clone());
        if self.gop_bytes > limits.max_bytes || span > limits.max_duration_ms as i32 {
            // Too long a GOP to cache: late joiners wait for the next keyframe.
            self.gop.clear();
            self.gop_bytes = 0;
            self.gop_valid = false;
        }
    }

    /// The cached start in the order a player needs it.
    pub fn snapshot(&self) -> Vec<Frame> {
        let mut v = Vec::with_capacity(1 + self.headers.len() + self.gop.len());
        v.extend(self.metadata.iter().cloned());
        v.extend(self.headers.iter().map(|(_, f)| f.clone()));
        v.extend(self.gop.iter().cloned());
        v
    }

    pub fn gop_len(&self) -> usize {
        self.gop.len()
    }

    pub fn gop_bytes(&self) -> usize {
        self.gop_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::frame::{classify, FRAME_OVERHEAD};
    use bytes::Bytes;
    use std::time::Instant;

    fn frame(kind: MediaKind, ts: u32, body: &[u8]) -> Frame {
        let class = classify(kind, body);
        Frame::new(
            kind,
            ts,
            class,
            Bytes::copy_from_slice(body),
            4096,
            Instant::now(),
        )
    }

    #[test]
    fn late_joiner_start_order_and_header_replacement() {
        let mut c = Cache::default();
        let l = GopLimits::default();
        // AVC sequence header, AAC sequence header, key, inter, then a resent header.
        c.apply(
            &frame(MediaKind::Metadata, 0, b"\x02\x00\x0aonMetaData"),
            &l,
        );
        c.apply(&frame(MediaKind::Video, 0, &[0x17, 0, 0, 0, 0, 1]), &l);
        c.apply(&frame(MediaKind::Audio, 0, &[0xAF, 0, 0x12, 0x10]), &l);
        c.apply(&frame(MediaKind::Video, 0, &[0x27, 1, 0, 0, 0, 9]), &l); // inter before any key: not cached
        c.apply(&frame(MediaKind::Video, 40, &[0x17, 1, 0, 0, 0, 9]), &l);
        c.apply(&frame(MediaKind::Audio, 50, &[0xAF, 1, 7]), &l);
        c.apply(&frame(MediaKind::Video, 80, &[0x27, 1, 0, 0, 0, 9]), &l);
        c.apply(&frame(MediaKind::Video, 80, &[0x17, 0, 0, 0, 0, 2]), &l);
        let s = c.snapshot();
        let kinds: Vec<_> = s.iter().map(|f| (f.kind, f.timestamp)).collect();
        assert_eq!(
            kinds,
            vec![
                (MediaKind::Metadata, 0),
                (MediaKind::Video, 80), // the resent header replaced the first
                (MediaKind::Audio, 0),
                (MediaKind::Video, 40),
                (MediaKind::Audio, 50),
                (MediaKind::Video, 80),
            ]
        );
        assert!(s[3].keyframe);
    }

    #[test]
    fn oversized_gop_is_dropped_until_next_keyframe() {
        let mut c = Cache::default();
        let l = GopLimits {
            max_duration_ms: 100,
            max_bytes: 1 << 20,
        };
        c.apply(&frame(MediaKind::Video, 0, &[0x17, 1, 0, 0, 0]), &l);
        c.apply(&frame(MediaKind::Video, 200, &[0x27, 1, 0, 0, 0]), &l);
        assert_eq!(c.gop_len(), 0);
        c.apply(&frame(MediaKind::Video, 240, &[0x27, 1, 0, 0, 0]), &l);
        assert_eq!(c.gop_len(), 0);
        c.apply(&frame(MediaKind::Video, 300, &[0x17, 1, 0, 0, 0]), &l);
        assert_eq!(c.gop_len(), 1);
    }

    /// An Enhanced RTMP v2 multitrack video body: one track, `track` id.
    fn multitrack_video(key: bool, packet: u8, track: u8) -> Vec<u8> {
        let frame_type = if key { 1 } else { 2 };
        // ExHeader | frame type | packet type 6 (multitrack), then one-track
        // layout (0) with the inner packet type, FourCC, track id.
        let mut v = vec![0x80 | (frame_type << 4) | 6, packet];
        v.extend_from_slice(b"avc1");
        v.push(track);
        if packet == 1 {
            v.extend_from_slice(&[0, 0, 0]);
        }
        v.extend_from_slice(&[0, 0, 0, 9]);
        v
    }

    #[test]
    fn multitrack_headers_and_gops_are_kept_per_track() {
        let mut c = Cache::default();
        let l = GopLimits::default();
        c.apply(
            &frame(MediaKind::Video, 0, &multitrack_video(true, 0, 0)),
            &l,
        );
        c.apply(
            &frame(MediaKind::Video, 0, &multitrack_video(true, 0, 1)),
            &l,
        );
        c.apply(
            &frame(MediaKind::Video, 10, &multitrack_video(true, 1, 0)),
            &l,
        );
        c.apply(
            &frame(MediaKind::Video, 20, &multitrack_video(false, 1, 0)),
            &l,
        );
        // A keyframe of track 1 does not cut track 0's GOP.
        c.apply(
            &frame(MediaKind::Video, 30, &multitrack_video(true, 1, 1)),
            &l,
        );
        c.apply(
            &frame(MediaKind::Video, 40, &multitrack_video(false, 1, 0)),
            &l,
        );
        let s = c.snapshot();
        // Both tracks' headers, then the GOP from track 0's keyframe.
        assert_eq!(
            s.len(),
            2 + 4,
            "{:?}",
            s.iter().map(|f| f.timestamp).collect::<Vec<_>>()
        );
        assert_eq!(s[0].header, Some(HeaderKey::Video(0)));
        assert_eq!(s[1].header, Some(HeaderKey::Video(1)));
        assert_eq!(s[2].timestamp, 10);
        assert_eq!(c.gop_len(), 4);
    }

    #[test]
    fn header_slots_are_bounded_whatever_the_fourcc() {
        let mut c = Cache::default();
        let l = GopLimits::default();
        for i in 0..10_000u32 {
            // Enhanced SequenceStart (packet type 0) with a made-up FourCC.
            let mut body = vec![0x90];
            body.extend_from_slice(&i.to_be_bytes());
            c.apply(&frame(MediaKind::Video, 0, &body), &l);
            let mut body = vec![0x90, 6, 0];
            body.extend_from_slice(&i.to_be_bytes());
            body.push((i % 256) as u8);
            c.apply(&frame(MediaKind::Video, 0, &body), &l);
        }
        assert!(c.snapshot().len() <= MAX_HEADER_SLOTS);
    }

    #[test]
    fn tiny_frames_count_by_what_they_cost() {
        let mut c = Cache::default();
        let l = GopLimits {
            max_duration_ms: 1_000_000,
            max_bytes: 100 * FRAME_OVERHEAD,
        };
        c.apply(&frame(MediaKind::Video, 0, &[0x17, 1, 0, 0, 0]), &l);
        for i in 0..1000 {
            c.apply(&frame(MediaKind::Audio, i, &[0xAF, 1]), &l);
        }
        // Far fewer than 1000 two-byte frames fit in 100 overheads.
        assert_eq!(c.gop_len(), 0, "the GOP outgrew its bound and was dropped");
    }
}
