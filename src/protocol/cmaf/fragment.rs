//! One CMAF fragment: a `moof` with a `traf` per run and one `mdat` with
//! the runs' samples back to back, in the runs' order.
//!
//! ```text
//! moof
//!   mfhd   sequence_number
//!   traf*  tfhd (default-base-is-moof), tfdt (version 1),
//!          trun (version 1: data offset, then per sample duration, size,
//!          flags and, where any is non-zero, signed composition offset)
//! mdat
//! ```
//!
//! Every size is known before writing (the `trun` entries have a fixed
//! length), so the output is allocated once and each sample copied once.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Run, Sample};

/// `tfhd` flag: data offsets count from the start of the `moof` (CMAF
/// requires it, and it makes a fragment self-contained).
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;

const TRUN_DATA_OFFSET: u32 = 0x000001;
const TRUN_SAMPLE_DURATION: u32 = 0x000100;
const TRUN_SAMPLE_SIZE: u32 = 0x000200;
const TRUN_SAMPLE_FLAGS: u32 = 0x000400;
const TRUN_COMPOSITION_OFFSET: u32 = 0x000800;

/// Sample flags (ISO/IEC 14496-12 8.8.3.1) of a sync sample:
/// sample_depends_on = 2 (depends on no other sample).
const FLAGS_SYNC: u32 = 0x0200_0000;
/// Of any other sample: sample_depends_on = 1, sample_is_non_sync_sample.
const FLAGS_NON_SYNC: u32 = 0x0101_0000;

const MFHD_LEN: usize = 16;
const TFHD_LEN: usize = 16;
const TFDT_LEN: usize = 20;
/// `trun` header through data_offset: box header, version/flags, count, offset.
const TRUN_HEAD_LEN: usize = 20;

/// Whether the run needs the composition offset column.
fn has_composition_offsets(samples: &[Sample]) -> bool {
    samples.iter().any(|s| s.composition_offset != 0)
}

fn traf_len(run: &Run<'_>) -> usize {
    let entry = if has_composition_offsets(run.samples) {
        16
    } else {
        12
    };
    8 + TFHD_LEN + TFDT_LEN + TRUN_HEAD_LEN + entry * run.samples.len()
}

/// Writes one fragment (`moof` + `mdat`) with sequence number `sequence`
/// holding `runs`, each of which becomes a `traf` whose `trun` points at
/// its samples in the `mdat`.
///
/// Timing is taken as given: each run's `base_decode_time` and its samples'
/// durations and composition offsets in its track's timescale. A run may be
/// empty (a `traf` with no samples).
///
/// # Panics
///
/// If the fragment would reach 2 GiB: `trun` data offsets are signed 32-bit
/// numbers. A packager cuts fragments of a few hundred milliseconds, so
/// this is a caller bug, not something input can cause.
pub fn fragment(sequence: u32, runs: &[Run<'_>]) -> Bytes {
    let moof_len = 8 + MFHD_LEN + runs.iter().map(traf_len).sum::<usize>();
    let data_len: usize = runs
        .iter()
        .flat_map(|r| r.samples)
        .map(|s| s.data.len())
        .sum();
    let total = moof_len + 8 + data_len;
    assert!(
        i32::try_from(total).is_ok(),
        "CMAF fragment of {total} bytes: trun data offsets are 32-bit signed"
    );

    let mut out = BytesMut::with_capacity(total);
    out.put_u32(moof_len as u32);
    out.put_slice(b"moof");

    out.put_u32(MFHD_LEN as u32);
    out.put_slice(b"mfhd");
    out.put_u32(0); // version, flags
    out.put_u32(sequence);

    // Where the next run's first sample starts, from the start of the moof.
    let mut data_offset = moof_len + 8;
    for run in runs {
        let cto = has_composition_offsets(run.samples);
        out.put_u32(traf_len(run) as u32);
        out.put_slice(b"traf");

        out.put_u32(TFHD_LEN as u32);
        out.put_slice(b"tfhd");
        out.put_u32(TFHD_DEFAULT_BASE_IS_MOOF); // version 0
        out.put_u32(run.track_id);

        out.put_u32(TFDT_LEN as u32);
        out.put_slice(b"tfdt");
        out.put_u32(1 << 24); // version 1: 64-bit decode time
        out.put_u64(run.base_decode_time);

        let entry = if cto { 16 } else { 12 };
        let mut flags =
            TRUN_DATA_OFFSET | TRUN_SAMPLE_DURATION | TRUN_SAMPLE_SIZE | TRUN_SAMPLE_FLAGS;
        if cto {
            flags |= TRUN_COMPOSITION_OFFSET;
        }
        out.put_u32((TRUN_HEAD_LEN + entry * run.samples.len()) as u32);
        out.put_slice(b"trun");
        // Version 1: composition offsets are signed, so B-frames need no
        // edit list to start presentation at the first decode time.
        out.put_u32(1 << 24 | flags);
        out.put_u32(run.samples.len() as u32);
        out.put_i32(data_offset as i32);
        for s in run.samples {
            out.put_u32(s.duration);
            out.put_u32(s.data.len() as u32);
            out.put_u32(if s.keyframe {
                FLAGS_SYNC
            } else {
                FLAGS_NON_SYNC
            });
            if cto {
                out.put_i32(s.composition_offset);
            }
            data_offset += s.data.len();
        }
    }

    out.put_u32((8 + data_len) as u32);
    out.put_slice(b"mdat");
    for s in runs.iter().flat_map(|r| r.samples) {
        out.put_slice(&s.data);
    }
    debug_assert_eq!(out.len(), total);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::cmaf::boxes::{child, children};

    fn sample(duration: u32, cto: i32, keyframe: bool, data: &'static [u8]) -> Sample {
        Sample {
            duration,
            composition_offset: cto,
            keyframe,
            data: Bytes::from_static(data),
        }
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn two_runs_point_at_their_samples() {
        let video = [
            sample(3000, 6000, true, b"KEYFRAME"),
            sample(3000, -3000, false, b"bframe"),
        ];
        let audio = [
            sample(1024, 0, true, b"aac1"),
            sample(1024, 0, true, b"aac22"),
        ];
        let frag = fragment(
            42,
            &[
                Run {
                    track_id: 1,
                    base_decode_time: 1 << 33,
                    samples: &video,
                },
                Run {
                    track_id: 2,
                    base_decode_time: 96_000,
                    samples: &audio,
                },
            ],
        );
        let top = children(&frag);
        assert_eq!(top.len(), 2);
        assert_eq!(&top[0].0, b"moof");
        assert_eq!(&top[1].0, b"mdat");
        assert_eq!(top[1].1, b"KEYFRAMEbframeaac1aac22");
        let moof = top[0].1;
        assert_eq!(u32_at(child(moof, b"mfhd"), 4), 42);

        let trafs: Vec<_> = children(moof)
            .into_iter()
            .filter(|(k, _)| k == b"traf")
            .map(|(_, b)| b)
            .collect();
        assert_eq!(trafs.len(), 2);

        let tfhd = child(trafs[0], b"tfhd");
        assert_eq!(tfhd, [0, 2, 0, 0, 0, 0, 0, 1]);
        let tfdt = child(trafs[0], b"tfdt");
        assert_eq!(tfdt, [1, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
        let trun = child(trafs[0], b"trun");
        assert_eq!(u32_at(trun, 0), 0x0100_0F01);
        assert_eq!(u32_at(trun, 4), 2);
        // The data offset is from the start of the moof to the first sample.
        let moof_len = 8 + moof.len();
        let offset = u32_at(trun, 8) as usize;
        assert_eq!(offset, moof_len + 8);
        assert_eq!(&frag[offset..offset + 8], b"KEYFRAME");
        let entries: Vec<_> = (0..8).map(|i| u32_at(trun, 12 + 4 * i)).collect();
        assert_eq!(
            entries,
            [
                3000,
                8,
                FLAGS_SYNC,
                6000,
                3000,
                6,
                FLAGS_NON_SYNC,
                -3000i32 as u32
            ]
        );

        // Audio: no composition offsets, so 12-byte entries.
        let tfhd = child(trafs[1], b"tfhd");
        assert_eq!(u32_at(tfhd, 4), 2);
        assert_eq!(u32_at(child(trafs[1], b"tfdt"), 8), 96_000);
        let trun = child(trafs[1], b"trun");
        assert_eq!(u32_at(trun, 0), 0x0100_0701);
        let offset = u32_at(trun, 8) as usize;
        assert_eq!(&frag[offset..offset + 9], b"aac1aac22");
        let entries: Vec<_> = (0..6).map(|i| u32_at(trun, 12 + 4 * i)).collect();
        assert_eq!(entries, [1024, 4, FLAGS_SYNC, 1024, 5, FLAGS_SYNC]);
        assert_eq!(trun.len(), 12 + 24);
    }

    #[test]
    fn empty_runs_and_no_runs() {
        let frag = fragment(
            1,
            &[Run {
                track_id: 3,
                base_decode_time: 0,
                samples: &[],
            }],
        );
        let top = children(&frag);
        assert_eq!(top[1], (*b"mdat", &b""[..]));
        let trun = child(child(top[0].1, b"traf"), b"trun");
        assert_eq!(u32_at(trun, 4), 0);
        assert_eq!(u32_at(trun, 8) as usize, frag.len());

        let bare = fragment(9, &[]);
        assert_eq!(bare.len(), 8 + MFHD_LEN + 8);
    }
}
