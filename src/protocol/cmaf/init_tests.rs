//! Init segment structure and refusals (ffprobe reads it in
//! `tests/cmaf_ffprobe.rs`; these pin the bytes players rely on).

use super::*;
use crate::protocol::cmaf::boxes::{child, children};
use crate::protocol::cmaf::codec::tests::{avcc_720p, hvcc_1080p, OPUS_HEAD_MONO};

fn track(id: u32, timescale: u32, codec: CodecConfig) -> TrackConfig {
    TrackConfig {
        id,
        timescale,
        codec,
    }
}

fn avc() -> CodecConfig {
    CodecConfig::Avc {
        record: avcc_720p(),
    }
}

fn aac() -> CodecConfig {
    CodecConfig::Aac {
        asc: Bytes::from_static(&[0x11, 0x90]),
    }
}

/// The path of boxes under `data`, one level per name.
fn path<'a>(mut data: &'a [u8], names: &[&[u8; 4]]) -> &'a [u8] {
    for name in names {
        data = child(data, name);
    }
    data
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn video_and_audio_tracks() {
    let init = init_segment(&[track(1, 90000, avc()), track(2, 48000, aac())]).unwrap();
    let top: Vec<_> = children(&init).iter().map(|(k, _)| *k).collect();
    assert_eq!(top, [*b"ftyp", *b"moov"]);
    assert_eq!(child(&init, b"ftyp"), b"iso6\0\0\0\0iso6cmfc");

    let moov = child(&init, b"moov");
    let kinds: Vec<_> = children(moov).iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, [*b"mvhd", *b"trak", *b"trak", *b"mvex"]);
    // next_track_ID after the highest id.
    let mvhd = child(moov, b"mvhd");
    assert_eq!(u32_at(mvhd, mvhd.len() - 4), 3);

    let traks: Vec<_> = children(moov)
        .into_iter()
        .filter(|(k, _)| k == b"trak")
        .map(|(_, b)| b)
        .collect();
    // Video: tkhd id and 16.16 size, 90 kHz mdhd, vide handler, avc1 entry.
    let tkhd = child(traks[0], b"tkhd");
    assert_eq!(u32_at(tkhd, 12), 1);
    assert_eq!(u32_at(tkhd, tkhd.len() - 8), 1280 << 16);
    assert_eq!(u32_at(tkhd, tkhd.len() - 4), 720 << 16);
    assert_eq!(u32_at(path(traks[0], &[b"mdia", b"mdhd"]), 12), 90000);
    assert_eq!(&path(traks[0], &[b"mdia", b"hdlr"])[8..12], b"vide");
    let minf = path(traks[0], &[b"mdia", b"minf"]);
    child(minf, b"vmhd");
    let stbl = child(minf, b"stbl");
    for empty in [b"stts", b"stsc", b"stco"] {
        assert_eq!(child(stbl, empty), [0; 8]);
    }
    assert_eq!(child(stbl, b"stsz"), [0; 12]);
    let stsd = child(stbl, b"stsd");
    assert_eq!(u32_at(stsd, 4), 1);
    let avc1 = child(&stsd[8..], b"avc1");
    assert_eq!(&avc1[24..28], &[0x05, 0x00, 0x02, 0xD0]); // 1280 x 720
    assert_eq!(child(&avc1[78..], b"avcC"), &avcc_720p()[..]);

    // Audio: soun, smhd, mp4a with the ASC inside its esds.
    assert_eq!(&path(traks[1], &[b"mdia", b"hdlr"])[8..12], b"soun");
    assert_eq!(u32_at(path(traks[1], &[b"mdia", b"mdhd"]), 12), 48000);
    let stsd = path(traks[1], &[b"mdia", b"minf", b"stbl", b"stsd"]);
    let mp4a = child(&stsd[8..], b"mp4a");
    assert_eq!(u16::from_be_bytes([mp4a[16], mp4a[17]]), 2); // channels
    assert_eq!(u32_at(mp4a, 24), 48000 << 16);
    let esds = child(&mp4a[28..], b"esds");
    assert_eq!(
        esds,
        [
            0, 0, 0, 0, // version, flags
            0x03, 25, 0, 0, 0, // ES_Descriptor
            0x04, 17, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // DecoderConfig
            0x05, 2, 0x11, 0x90, // DecoderSpecificInfo: the ASC
            0x06, 1, 0x02, // SLConfig
        ]
    );

    let mvex = child(moov, b"mvex");
    let trex: Vec<_> = children(mvex).iter().map(|(_, b)| u32_at(b, 4)).collect();
    assert_eq!(trex, [1, 2]);
}

#[test]
fn hevc_and_opus_entries() {
    let opus = CodecConfig::Opus {
        head: Bytes::from_static(OPUS_HEAD_MONO),
    };
    let hevc = CodecConfig::Hevc {
        record: hvcc_1080p(),
    };
    let init = init_segment(&[track(7, 48000, opus), track(3, 90000, hevc)]).unwrap();
    let moov = child(&init, b"moov");
    let mvhd = child(moov, b"mvhd");
    assert_eq!(u32_at(mvhd, mvhd.len() - 4), 8);
    let traks: Vec<_> = children(moov)
        .into_iter()
        .filter(|(k, _)| k == b"trak")
        .map(|(_, b)| b)
        .collect();
    let stsd = path(traks[0], &[b"mdia", b"minf", b"stbl", b"stsd"]);
    let entry = child(&stsd[8..], b"Opus");
    assert_eq!(u16::from_be_bytes([entry[16], entry[17]]), 1);
    assert_eq!(u32_at(entry, 24), 48000 << 16);
    // dOps: version 0, 1 channel, pre-skip 312, 48000 Hz, gain 0, family 0.
    assert_eq!(
        child(&entry[28..], b"dOps"),
        [0, 1, 0x01, 0x38, 0, 0, 0xBB, 0x80, 0, 0, 0]
    );
    let stsd = path(traks[1], &[b"mdia", b"minf", b"stbl", b"stsd"]);
    let hvc1 = child(&stsd[8..], b"hvc1");
    assert_eq!(&hvc1[24..28], &[0x07, 0x80, 0x04, 0x38]); // 1920 x 1080
    assert_eq!(child(&hvc1[78..], b"hvcC"), &hvcc_1080p()[..]);
}

#[test]
fn opus_mapping_table_goes_into_dops() {
    let head =
        b"OpusHead\x01\x06\x38\x01\x44\xac\x00\x00\x00\x00\x01\x04\x02\x00\x04\x01\x02\x03\x05";
    let opus = CodecConfig::Opus {
        head: Bytes::from_static(head),
    };
    let init = init_segment(&[track(1, 48000, opus)]).unwrap();
    let stsd = path(
        &init,
        &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"],
    );
    let entry = child(&stsd[8..], b"Opus");
    let dops = child(&entry[28..], b"dOps");
    assert_eq!(&dops[..11], [0, 6, 0x01, 0x38, 0, 0, 0xAC, 0x44, 0, 0, 1]);
    assert_eq!(&dops[11..], &head[19..]);
}

#[test]
fn refusals() {
    assert_eq!(init_segment(&[]), Err(CmafError::NoTracks));
    assert_eq!(
        init_segment(&[track(0, 90000, avc())]),
        Err(CmafError::BadTrackId(0))
    );
    assert_eq!(
        init_segment(&[track(1, 90000, avc()), track(1, 48000, aac())]),
        Err(CmafError::BadTrackId(1))
    );
    assert_eq!(
        init_segment(&[track(1, 0, avc())]),
        Err(CmafError::ZeroTimescale(1))
    );
    let garbage = CodecConfig::Avc {
        record: Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xFF, 0xE1, 0, 2, 0x67, 0x64]),
    };
    assert_eq!(
        init_segment(&[track(1, 90000, garbage)]),
        Err(CmafError::NoVideoSize { codec: "H.264" })
    );
    let pce = CodecConfig::Aac {
        asc: Bytes::from_static(&[0x11, 0x80]),
    };
    assert_eq!(
        init_segment(&[track(2, 48000, pce)]),
        Err(CmafError::NoAudioParams { codec: "AAC" })
    );
    let huge = CodecConfig::Aac {
        asc: Bytes::from(vec![0x11; MAX_CONFIG_LEN + 1]),
    };
    assert_eq!(
        init_segment(&[track(2, 48000, huge)]),
        Err(CmafError::ConfigTooLarge {
            codec: "AAC",
            len: MAX_CONFIG_LEN + 1,
            max: MAX_CONFIG_LEN
        })
    );
}

#[test]
fn descriptor_lengths_use_seven_bits_a_byte() {
    let written = |len| {
        let mut w = BoxWriter::new();
        descriptor_header(&mut w, 5, len);
        w.buf.to_vec()
    };
    assert_eq!(written(0x7F), [5, 0x7F]);
    assert_eq!(written(0x80), [5, 0x81, 0x00]);
    assert_eq!(written(0x3FFF), [5, 0xFF, 0x7F]);
    assert_eq!(written(0x4000), [5, 0x81, 0x80, 0x00]);
    assert_eq!(written(MAX_CONFIG_LEN), [5, 0x87, 0xFF, 0xFF, 0x7F]);
    assert_eq!(descriptor_size(MAX_CONFIG_LEN), 5 + MAX_CONFIG_LEN);
}
