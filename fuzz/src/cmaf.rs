//! CMAF packaging on arbitrary bytes: `flv_video` / `flv_audio` on tag
//! bodies, and the `CodecConfig` readers (codec string, picture size,
//! audio parameters) and `init_segment` on arbitrary records.
//!
//! A frame must be a slice of the body it came from; a configuration whose
//! size or audio parameters read must make an init segment, and the boxes
//! of every init segment and fragment must add up to exactly their length.

use bytes::Bytes;
use cascade::protocol::cmaf::{
    flv_audio, flv_video, fragment, init_segment, CodecConfig, FlvMedia, Run, Sample, TrackConfig,
};

use super::Input;

/// The payload is one tag body, read as video and as audio, and taken as
/// the record of each codec in turn. Flag bit 0: the sample of the test
/// fragment is a key frame. No config bytes, no splits (a tag body arrives
/// whole).
pub fn cmaf(data: &[u8]) {
    let input = Input::new(data, 0);
    let body = Bytes::copy_from_slice(input.payload);
    let keyframe = input.flags & 1 != 0;

    for media in [flv_video(&body), flv_audio(&body)].into_iter().flatten() {
        match media {
            FlvMedia::Config(config) => check_config(&config),
            FlvMedia::Frame {
                data,
                composition_offset_ms,
                ..
            } => {
                // A slice of the body (not a copy), ending where it ends.
                assert!(data.len() < body.len());
                if !data.is_empty() {
                    let end = data.as_ptr() as usize + data.len();
                    assert_eq!(end, body.as_ptr() as usize + body.len());
                }
                check_fragment(data, composition_offset_ms, keyframe);
            }
            FlvMedia::Other => {}
        }
    }

    for config in [
        CodecConfig::Avc {
            record: body.clone(),
        },
        CodecConfig::Hevc {
            record: body.clone(),
        },
        CodecConfig::Av1 {
            record: body.clone(),
        },
        CodecConfig::Aac { asc: body.clone() },
        CodecConfig::Opus { head: body.clone() },
    ] {
        check_config(&config);
    }
}

fn check_config(config: &CodecConfig) {
    let codec = config.codec_string();
    assert!(codec.is_ascii() && !codec.is_empty());
    let size = config.video_size();
    let audio = config.audio_params();
    assert!(size.is_none() || config.is_video());
    assert!(audio.is_none() || !config.is_video());
    if let Some((w, h)) = size {
        assert!(w > 0 && h > 0);
    }
    if let Some((rate, channels)) = audio {
        assert!(rate > 0 && channels > 0);
    }
    let track = TrackConfig {
        id: 1,
        timescale: 90_000,
        codec: config.clone(),
    };
    match init_segment(&[track]) {
        Ok(init) => {
            assert!(size.is_some() || audio.is_some());
            check_boxes(&init, 0);
        }
        Err(e) => assert!(
            size.is_none() && audio.is_none(),
            "{e} with {size:?} {audio:?}"
        ),
    }
}

fn check_fragment(data: Bytes, composition_offset_ms: i32, keyframe: bool) {
    let len = data.len();
    let samples = [Sample {
        duration: 3000,
        composition_offset: composition_offset_ms.saturating_mul(90),
        keyframe,
        data,
    }];
    let frag = fragment(
        7,
        &[Run {
            track_id: 1,
            base_decode_time: u64::MAX,
            samples: &samples,
        }],
    );
    check_boxes(&frag, 0);
    assert!(frag.ends_with(&samples[0].data));
    assert!(frag.len() > len);
}

/// Container boxes whose bodies are boxes.
const CONTAINERS: [&[u8; 4]; 9] = [
    b"moov", b"trak", b"mdia", b"minf", b"dinf", b"stbl", b"mvex", b"moof", b"traf",
];

/// Every box in `data` (recursively, through the containers) has a size
/// that fits, and together they fill `data` exactly.
fn check_boxes(mut data: &[u8], depth: usize) {
    assert!(depth < 8, "boxes nested too deep");
    while !data.is_empty() {
        assert!(data.len() >= 8, "{} stray bytes", data.len());
        let size = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        assert!(
            (8..=data.len()).contains(&size),
            "box size {size} of {}",
            data.len()
        );
        let kind: [u8; 4] = [data[4], data[5], data[6], data[7]];
        if CONTAINERS.contains(&&kind) {
            check_boxes(&data[8..size], depth + 1);
        }
        data = &data[size..];
    }
}
