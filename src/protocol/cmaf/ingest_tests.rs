//! FLV extraction: every form the packager takes, the zero-copy promise,
//! and hostile bodies.

use super::*;
use proptest::prelude::*;

fn video(body: &'static [u8]) -> Result<FlvMedia, CmafError> {
    flv_video(&Bytes::from_static(body))
}

fn audio(body: &'static [u8]) -> Result<FlvMedia, CmafError> {
    flv_audio(&Bytes::from_static(body))
}

fn frame(data: &'static [u8], cto: i32, keyframe: bool) -> FlvMedia {
    FlvMedia::Frame {
        data: Bytes::from_static(data),
        composition_offset_ms: cto,
        keyframe,
    }
}

#[test]
fn legacy_avc_and_hevc() {
    assert_eq!(
        video(b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"),
        Ok(FlvMedia::Config(CodecConfig::Avc {
            record: Bytes::from_static(b"\x01\x64\x00\x1f")
        }))
    );
    assert_eq!(
        video(b"\x17\x01\x00\x00\x28\x00\x00\x00\x02\x65\x88"),
        Ok(frame(b"\x00\x00\x00\x02\x65\x88", 40, true))
    );
    assert_eq!(
        video(b"\x27\x01\xFF\xFF\xF6\x00\x00\x00\x01\x41"),
        Ok(frame(b"\x00\x00\x00\x01\x41", -10, false))
    );
    assert_eq!(
        video(b"\x1C\x00\x00\x00\x00\x01\x01\x60"),
        Ok(FlvMedia::Config(CodecConfig::Hevc {
            record: Bytes::from_static(b"\x01\x01\x60")
        }))
    );
    assert_eq!(
        video(b"\x2C\x01\x00\x00\x21\xAA"),
        Ok(frame(b"\xAA", 33, false))
    );
    // End of sequence, command frames and other codecs are not media here.
    assert_eq!(video(b"\x17\x02\x00\x00\x00"), Ok(FlvMedia::Other));
    assert_eq!(video(b"\x57\x01"), Ok(FlvMedia::Other));
    assert_eq!(video(b"\x12\x00\x00"), Ok(FlvMedia::Other));
    assert_eq!(video(b"\x24\x00"), Ok(FlvMedia::Other));
    // A generated key frame (type 4) is not a sync sample.
    assert_eq!(
        video(b"\x47\x01\x00\x00\x00\xAB"),
        Ok(frame(b"\xAB", 0, false))
    );
}

#[test]
fn enhanced_video() {
    assert_eq!(
        video(b"\x90hvc1\x01\x01\x60"),
        Ok(FlvMedia::Config(CodecConfig::Hevc {
            record: Bytes::from_static(b"\x01\x01\x60")
        }))
    );
    assert_eq!(
        video(b"\x90avc1\x01\x64"),
        Ok(FlvMedia::Config(CodecConfig::Avc {
            record: Bytes::from_static(b"\x01\x64")
        }))
    );
    assert_eq!(
        video(b"\x90av01\x81\x05\x0c\x00"),
        Ok(FlvMedia::Config(CodecConfig::Av1 {
            record: Bytes::from_static(b"\x81\x05\x0c\x00")
        }))
    );
    // CodedFrames: SI24 composition time for avc1/hvc1.
    assert_eq!(
        video(b"\x91hvc1\x00\x00\x43\x00\x00\x00\x01\x26"),
        Ok(frame(b"\x00\x00\x00\x01\x26", 67, true))
    );
    assert_eq!(
        video(b"\xA1avc1\xFF\xFF\xFE\x00\x00\x00\x01\x41"),
        Ok(frame(b"\x00\x00\x00\x01\x41", -2, false))
    );
    // CodedFramesX: none; the data starts right after the FourCC.
    assert_eq!(
        video(b"\xA3hvc1\x00\x00\x00\x01\x02"),
        Ok(frame(b"\x00\x00\x00\x01\x02", 0, false))
    );
    // AV1: no composition time; the leading temporal delimiter is dropped.
    assert_eq!(
        video(b"\x91av01\x12\x00\x0a\x0b\x32\x10"),
        Ok(frame(b"\x0a\x0b\x32\x10", 0, true))
    );
    assert_eq!(video(b"\xA1av01\x32\x10"), Ok(frame(b"\x32\x10", 0, false)));
    // ModEx prelude before CodedFrames.
    assert_eq!(
        video(b"\x97\x02\x01\x02\x03\x01hvc1\x00\x00\x10\xAA"),
        Ok(frame(b"\xAA", 16, true))
    );
    // Sequence end, metadata, MPEG-2 TS sequence start, VP9, multitrack.
    assert_eq!(video(b"\x92hvc1"), Ok(FlvMedia::Other));
    assert_eq!(video(b"\x84hvc1\x02\x00\x09colorInfo"), Ok(FlvMedia::Other));
    assert_eq!(video(b"\x95av01\x80"), Ok(FlvMedia::Other));
    assert_eq!(video(b"\x91vp09\x00"), Ok(FlvMedia::Other));
    assert_eq!(video(b"\x96\x00hvc1\x00\x01\x01"), Ok(FlvMedia::Other));
}

#[test]
fn frames_are_slices_of_the_body() {
    let body = Bytes::from_static(b"\x91hvc1\x00\x00\x00NALUNALU");
    let Ok(FlvMedia::Frame { data, .. }) = flv_video(&body) else {
        panic!("not a frame");
    };
    // Same memory: a slice, not a copy.
    assert_eq!(data.as_ptr(), body[8..].as_ptr());
    let body = Bytes::from_static(b"\xAF\x01\x21\x10");
    let Ok(FlvMedia::Frame { data, .. }) = flv_audio(&body) else {
        panic!("not a frame");
    };
    assert_eq!(data.as_ptr(), body[2..].as_ptr());
}

#[test]
fn audio_forms() {
    assert_eq!(
        audio(b"\xAF\x00\x11\x90"),
        Ok(FlvMedia::Config(CodecConfig::Aac {
            asc: Bytes::from_static(b"\x11\x90")
        }))
    );
    assert_eq!(audio(b"\xAF\x01\x21\x10"), Ok(frame(b"\x21\x10", 0, true)));
    assert_eq!(
        audio(b"\x90OpusOpusHead\x01\x01"),
        Ok(FlvMedia::Config(CodecConfig::Opus {
            head: Bytes::from_static(b"OpusHead\x01\x01")
        }))
    );
    assert_eq!(audio(b"\x91Opus\xf8\x72"), Ok(frame(b"\xf8\x72", 0, true)));
    assert_eq!(
        audio(b"\x90mp4a\x12\x10"),
        Ok(FlvMedia::Config(CodecConfig::Aac {
            asc: Bytes::from_static(b"\x12\x10")
        }))
    );
    assert_eq!(audio(b"\x91mp4a\x01\x02"), Ok(frame(b"\x01\x02", 0, true)));
    // ModEx before an Opus frame.
    assert_eq!(
        audio(b"\x97\x01\x00\x00\x01Opus\xfc"),
        Ok(frame(b"\xfc", 0, true))
    );
    // Other AAC packet types, MultichannelConfig, sequence end, other codecs,
    // multitrack.
    assert_eq!(audio(b"\xAF\x02"), Ok(FlvMedia::Other));
    assert_eq!(
        audio(b"\x94Opus\x01\x02\x00\x00\x00\x03"),
        Ok(FlvMedia::Other)
    );
    assert_eq!(audio(b"\x92Opus"), Ok(FlvMedia::Other));
    assert_eq!(audio(b"\x2F\xFF\xFB"), Ok(FlvMedia::Other));
    assert_eq!(audio(b"\x91fLaC\x00"), Ok(FlvMedia::Other));
    assert_eq!(audio(b"\x95\x00Opus\x00\x4F"), Ok(FlvMedia::Other));
}

#[test]
fn truncated_bodies_are_errors() {
    let truncated = Err(CmafError::Flv(FlvError::Truncated));
    for body in [
        &b""[..],
        b"\x17",
        b"\x17\x01\x00\x00",
        // A legacy sequence start needs its composition time bytes too.
        b"\x17\x00",
        b"\x17\x00\x00\x00",
        // Sequence starts without a record.
        b"\x17\x00\x00\x00\x00",
        b"\x90hvc1",
        b"\x90av0",
        b"\x91hvc1\x00\x00",
        b"\x97\x05\x00",
    ] {
        assert_eq!(
            flv_video(&Bytes::from_static(body)),
            truncated,
            "{body:02x?}"
        );
    }
    for body in [
        &b""[..],
        b"\xAF",
        b"\xAF\x00",
        b"\x90Opus",
        b"\x90Opu",
        b"\x97",
    ] {
        assert_eq!(
            flv_audio(&Bytes::from_static(body)),
            truncated,
            "{body:02x?}"
        );
    }
}

proptest! {
    #[test]
    fn flv_video_never_panics(body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let body = Bytes::from(body);
        if let Ok(FlvMedia::Frame { data, .. }) = flv_video(&body) {
            prop_assert!(data.len() < body.len());
        }
    }

    #[test]
    fn flv_video_never_panics_on_enhanced(
        b0 in 0x80u8..=0xFF,
        fourcc in prop::sample::select(vec![*b"avc1", *b"hvc1", *b"av01"]),
        rest in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut body = vec![b0];
        body.extend_from_slice(&fourcc);
        body.extend(rest);
        let body = Bytes::from(body);
        if let Ok(FlvMedia::Config(config)) = flv_video(&body) {
            let _ = (config.codec_string(), config.video_size());
        }
    }

    #[test]
    fn flv_audio_never_panics(body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let body = Bytes::from(body);
        if let Ok(FlvMedia::Config(config)) = flv_audio(&body) {
            let _ = (config.codec_string(), config.audio_params());
        }
    }
}
