//! The CMAF header (init segment): `ftyp` + `moov` with one `trak` per
//! track and an `mvex` that announces fragments. Sample tables are empty:
//! every sample lives in a fragment.
//!
//! Layout (ISO/IEC 14496-12, CMAF ISO/IEC 23000-19 7.3):
//!
//! ```text
//! ftyp  iso6, cmfc
//! moov
//!   mvhd
//!   trak*   tkhd, mdia (mdhd, hdlr, minf (vmhd|smhd, dinf/dref/url,
//!           stbl (stsd (avc1|hvc1|av01|mp4a|Opus), stts, stsc, stsz, stco)))
//!   mvex    trex*
//! ```

use bytes::Bytes;

use super::boxes::BoxWriter;
use super::codec::{parse_asc, OpusHead};
use super::{CmafError, CodecConfig, TrackConfig};

/// Largest decoder configuration accepted: an FLV tag body (and so a
/// sequence header) is at most 16 MiB - 1, and this keeps every box size
/// and esds descriptor length (28 bits) in range.
pub const MAX_CONFIG_LEN: usize = 0xFF_FFFF;

/// What the sample entry needs beyond the record, read before writing so a
/// bad track fails the whole init segment and nothing half-written escapes.
enum Entry {
    Video { width: u16, height: u16 },
    Audio { rate: u32, channels: u8 },
}

/// Writes the init segment for `tracks` (in the given order).
///
/// Fails if there is no track, a track id is 0 or repeated, a timescale is
/// 0, a record is over [`MAX_CONFIG_LEN`], or a video size or audio
/// parameters cannot be read from the configuration: a sample entry with a
/// made-up size would mislead players, so none is written.
pub fn init_segment(tracks: &[TrackConfig]) -> Result<Bytes, CmafError> {
    if tracks.is_empty() {
        return Err(CmafError::NoTracks);
    }
    let mut entries = Vec::with_capacity(tracks.len());
    for (i, t) in tracks.iter().enumerate() {
        if t.id == 0 || tracks[..i].iter().any(|o| o.id == t.id) {
            return Err(CmafError::BadTrackId(t.id));
        }
        if t.timescale == 0 {
            return Err(CmafError::ZeroTimescale(t.id));
        }
        let codec = t.codec.name();
        let len = t.codec.bytes().len();
        if len > MAX_CONFIG_LEN {
            return Err(CmafError::ConfigTooLarge {
                codec,
                len,
                max: MAX_CONFIG_LEN,
            });
        }
        entries.push(if t.codec.is_video() {
            let (width, height) = t
                .codec
                .video_size()
                .ok_or(CmafError::NoVideoSize { codec })?;
            Entry::Video { width, height }
        } else {
            let (rate, channels) = t
                .codec
                .audio_params()
                .ok_or(CmafError::NoAudioParams { codec })?;
            Entry::Audio { rate, channels }
        });
    }

    let mut w = BoxWriter::new();
    let ftyp = w.open(b"ftyp");
    w.bytes(b"iso6"); // major brand
    w.u32(0); // minor version
    w.bytes(b"iso6cmfc"); // compatible brands
    w.close(ftyp);

    let moov = w.open(b"moov");
    mvhd(&mut w, tracks);
    for (t, e) in tracks.iter().zip(&entries) {
        trak(&mut w, t, e);
    }
    let mvex = w.open(b"mvex");
    for t in tracks {
        let trex = w.open_full(b"trex", 0, 0);
        w.u32(t.id);
        w.u32(1); // default_sample_description_index
                  // Default duration, size and flags: every trun states its own.
        w.zeros(12);
        w.close(trex);
    }
    w.close(mvex);
    w.close(moov);
    Ok(w.buf.freeze())
}

fn mvhd(w: &mut BoxWriter, tracks: &[TrackConfig]) {
    let b = w.open_full(b"mvhd", 0, 0);
    w.zeros(8); // creation and modification time: unknown for a live stream
    w.u32(1000); // movie timescale: only durations in it, and they are 0
    w.u32(0); // duration: unknown (fragmented)
    w.u32(0x0001_0000); // rate 1.0
    w.u16(0x0100); // volume 1.0
    w.zeros(10); // reserved
    w.unity_matrix();
    w.zeros(24); // pre_defined
    let next = tracks.iter().map(|t| t.id).max().unwrap_or(0);
    w.u32(next.saturating_add(1)); // next_track_ID
    w.close(b);
}

fn trak(w: &mut BoxWriter, t: &TrackConfig, entry: &Entry) {
    let trak = w.open(b"trak");

    // Track enabled and in the movie.
    let tkhd = w.open_full(b"tkhd", 0, 0x000003);
    w.zeros(8); // creation and modification time
    w.u32(t.id);
    w.zeros(4); // reserved
    w.u32(0); // duration
    w.zeros(8); // reserved
    w.u16(0); // layer
    w.u16(0); // alternate_group
    w.u16(if matches!(entry, Entry::Audio { .. }) {
        0x0100
    } else {
        0
    }); // volume
    w.u16(0); // reserved
    w.unity_matrix();
    let (width, height) = match entry {
        Entry::Video { width, height } => (*width, *height),
        Entry::Audio { .. } => (0, 0),
    };
    w.u32(u32::from(width) << 16); // 16.16 fixed point
    w.u32(u32::from(height) << 16);
    w.close(tkhd);

    let mdia = w.open(b"mdia");
    let mdhd = w.open_full(b"mdhd", 0, 0);
    w.zeros(8); // creation and modification time
    w.u32(t.timescale);
    w.u32(0); // duration
    w.u16(0x55C4); // language "und", packed ISO 639-2/T
    w.u16(0); // pre_defined
    w.close(mdhd);

    let (handler, name): (&[u8; 4], &[u8]) = match entry {
        Entry::Video { .. } => (b"vide", b"VideoHandler\0"),
        Entry::Audio { .. } => (b"soun", b"SoundHandler\0"),
    };
    let hdlr = w.open_full(b"hdlr", 0, 0);
    w.u32(0); // pre_defined
    w.bytes(handler);
    w.zeros(12); // reserved
    w.bytes(name);
    w.close(hdlr);

    let minf = w.open(b"minf");
    match entry {
        Entry::Video { .. } => {
            // Flags 1 is required by the spec; graphicsmode copy, opcolor 0.
            let vmhd = w.open_full(b"vmhd", 0, 1);
            w.zeros(8);
            w.close(vmhd);
        }
        Entry::Audio { .. } => {
            let smhd = w.open_full(b"smhd", 0, 0);
            w.zeros(4); // balance, reserved
            w.close(smhd);
        }
    }
    let dinf = w.open(b"dinf");
    let dref = w.open_full(b"dref", 0, 0);
    w.u32(1); // entry_count
    let url = w.open_full(b"url ", 0, 1); // flag 1: media in this file
    w.close(url);
    w.close(dref);
    w.close(dinf);

    let stbl = w.open(b"stbl");
    let stsd = w.open_full(b"stsd", 0, 0);
    w.u32(1); // entry_count
    match entry {
        Entry::Video { width, height } => video_entry(w, &t.codec, *width, *height),
        Entry::Audio { rate, channels } => audio_entry(w, &t.codec, *rate, *channels),
    }
    w.close(stsd);
    // Empty tables: the samples are in the fragments.
    for kind in [b"stts", b"stsc", b"stco"] {
        let b = w.open_full(kind, 0, 0);
        w.u32(0); // entry_count
        w.close(b);
    }
    let stsz = w.open_full(b"stsz", 0, 0);
    w.u32(0); // sample_size
    w.u32(0); // sample_count
    w.close(stsz);
    w.close(stbl);

    w.close(minf);
    w.close(mdia);
    w.close(trak);
}

/// A VisualSampleEntry with the configuration record in its box, verbatim.
fn video_entry(w: &mut BoxWriter, codec: &CodecConfig, width: u16, height: u16) {
    let (kind, config, record): (&[u8; 4], &[u8; 4], _) = match codec {
        CodecConfig::Avc { record } => (b"avc1", b"avcC", record),
        CodecConfig::Hevc { record } => (b"hvc1", b"hvcC", record),
        CodecConfig::Av1 { record } => (b"av01", b"av1C", record),
        // init_segment only calls this for video configs.
        CodecConfig::Aac { .. } | CodecConfig::Opus { .. } => return,
    };
    let entry = w.open(kind);
    w.zeros(6); // reserved
    w.u16(1); // data_reference_index
    w.zeros(16); // pre_defined, reserved
    w.u16(width);
    w.u16(height);
    w.u32(0x0048_0000); // 72 dpi horizontally
    w.u32(0x0048_0000); // and vertically
    w.u32(0); // reserved
    w.u16(1); // frame_count
    w.zeros(32); // compressorname: empty
    w.u16(0x0018); // depth: colour, no alpha
    w.u16(0xFFFF); // pre_defined = -1
    let b = w.open(config);
    w.bytes(record);
    w.close(b);
    w.close(entry);
}

/// An AudioSampleEntry: `mp4a` + `esds`, or `Opus` + `dOps`.
fn audio_entry(w: &mut BoxWriter, codec: &CodecConfig, rate: u32, channels: u8) {
    let kind = match codec {
        CodecConfig::Aac { .. } => b"mp4a",
        CodecConfig::Opus { .. } => b"Opus",
        _ => return,
    };
    let entry = w.open(kind);
    w.zeros(6); // reserved
    w.u16(1); // data_reference_index
    w.zeros(8); // reserved
    w.u16(u16::from(channels));
    w.u16(16); // samplesize
    w.zeros(4); // pre_defined, reserved
                // 16.16 fixed point; rates over 65535 Hz (88.2/96 kHz AAC) do not fit
                // and are written as 0: decoders take the rate from the ASC.
    w.u32(u16::try_from(rate).map_or(0, |r| u32::from(r) << 16));
    match codec {
        CodecConfig::Aac { asc } => esds(w, asc),
        CodecConfig::Opus { head } => {
            // audio_params parsed the same head before we got here.
            if let Some(head) = OpusHead::parse(head) {
                dops(w, &head);
            }
        }
        _ => {}
    }
    w.close(entry);
}

/// `esds` (ISO/IEC 14496-14 3.1.2): an ES_Descriptor holding a
/// DecoderConfigDescriptor (MPEG-4 audio) with the ASC as its
/// DecoderSpecificInfo, and the SLConfigDescriptor MP4 requires.
fn esds(w: &mut BoxWriter, asc: &[u8]) {
    debug_assert!(parse_asc(asc).is_some());
    let dsi_len = asc.len();
    let dcd_len = 13 + descriptor_size(dsi_len);
    let es_len = 3 + descriptor_size(dcd_len) + descriptor_size(1);
    let b = w.open_full(b"esds", 0, 0);
    descriptor_header(w, 0x03, es_len); // ES_DescrTag
    w.u16(0); // ES_ID: 0 in files (14496-14 3.1.2)
    w.u8(0); // no dependency, URL or OCR stream
    descriptor_header(w, 0x04, dcd_len); // DecoderConfigDescrTag
    w.u8(0x40); // objectTypeIndication: MPEG-4 Audio
    w.u8(0x05 << 2 | 1); // streamType audio, upStream 0, reserved 1
    w.bytes(&[0, 0, 0]); // bufferSizeDB: unknown
    w.u32(0); // maxBitrate: unknown
    w.u32(0); // avgBitrate: unknown (variable)
    descriptor_header(w, 0x05, dsi_len); // DecSpecificInfoTag
    w.bytes(asc);
    descriptor_header(w, 0x06, 1); // SLConfigDescrTag
    w.u8(0x02); // predefined: reserved for MP4 files
    w.close(b);
}

/// Bytes a descriptor of `len` body bytes takes with its tag and length.
fn descriptor_size(len: usize) -> usize {
    1 + length_bytes(len) + len
}

/// The expandable length field takes 7 bits a byte (at most 4 bytes).
fn length_bytes(len: usize) -> usize {
    match len {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        _ => 4,
    }
}

fn descriptor_header(w: &mut BoxWriter, tag: u8, len: usize) {
    w.u8(tag);
    let n = length_bytes(len);
    for i in (0..n).rev() {
        let more = if i > 0 { 0x80 } else { 0 };
        w.u8(more | ((len >> (7 * i)) & 0x7F) as u8);
    }
}

/// `dOps` (Opus in ISOBMFF, 4.3.2): the OpusHead fields, big-endian, with
/// version 0 instead of the head's 1.
fn dops(w: &mut BoxWriter, head: &OpusHead<'_>) {
    let b = w.open(b"dOps");
    w.u8(0); // Version
    w.u8(head.channels);
    w.u16(head.pre_skip);
    w.u32(head.input_rate);
    w.u16(head.output_gain as u16);
    w.u8(head.mapping_family);
    // Stream count, coupled count, mapping: the same bytes in both forms.
    w.bytes(head.mapping_table);
    w.close(b);
}

#[cfg(test)]
#[path = "init_tests.rs"]
mod tests;
