//! Unit tests of `fmp4`.
use super::*;
use crate::stamp::sei_nal;
use proptest::prelude::*;

pub fn bx(t: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(t);
    v.extend_from_slice(payload);
    v
}

fn full(t: &[u8; 4], version: u8, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = (flags | (u32::from(version) << 24)).to_be_bytes().to_vec();
    p.extend_from_slice(payload);
    bx(t, &p)
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn trak(track_id: u32, handler: &[u8; 4], entry: Vec<u8>) -> Vec<u8> {
    let mut tkhd = vec![0u8; 8];
    tkhd.extend_from_slice(&track_id.to_be_bytes());
    tkhd.extend_from_slice(&[0u8; 68]);
    let mut hdlr = vec![0u8; 4];
    hdlr.extend_from_slice(handler);
    hdlr.extend_from_slice(&[0u8; 13]);
    let mut stsd = 1u32.to_be_bytes().to_vec();
    stsd.extend_from_slice(&entry);
    bx(
        b"trak",
        &cat(&[
            full(b"tkhd", 0, 3, &tkhd),
            bx(
                b"mdia",
                &cat(&[
                    full(b"hdlr", 0, 0, &hdlr),
                    bx(b"minf", &bx(b"stbl", &full(b"stsd", 0, 0, &stsd))),
                ]),
            ),
        ]),
    )
}

/// An init segment: audio track 1 first, then H.264 video as track 2
/// with the given NAL length size.
pub fn init_segment(nal_length_size: u8) -> Vec<u8> {
    let avcc = [1, 0x64, 0, 0x1f, 0xfc | (nal_length_size - 1), 0xe0];
    let mut avc1 = vec![0u8; 78];
    avc1.extend_from_slice(&bx(b"avcC", &avcc));
    let mut trex = 2u32.to_be_bytes().to_vec();
    trex.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    trex.extend_from_slice(&0u32.to_be_bytes()); // default size
    trex.extend_from_slice(&NON_SYNC.to_be_bytes()); // default flags
    cat(&[
        bx(b"ftyp", b"iso6\0\0\0\0iso6cmfc"),
        bx(
            b"moov",
            &cat(&[
                bx(b"mvhd", &[0u8; 100]),
                trak(1, b"soun", bx(b"mp4a", &[0u8; 28])),
                trak(2, b"vide", bx(b"avc1", &avc1)),
                bx(b"mvex", &full(b"trex", 0, 0, &trex)),
            ]),
        ),
    ])
}

/// Length-prefixed NAL units.
fn sample(ls: usize, nals: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for n in nals {
        v.extend_from_slice(&(n.len() as u32).to_be_bytes()[4 - ls..]);
        v.extend_from_slice(n);
    }
    v
}

fn stamp(seq: u64) -> Stamp {
    Stamp {
        seq,
        micros: 1_700_000_000_000_000 + seq,
    }
}

/// Video samples of a fragment: a keyframe with the stamp first, then
/// inter frames with an access unit delimiter before the stamp.
pub fn video_samples(ls: usize, first_seq: u64, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let sei = sei_nal(stamp(first_seq + i as u64));
            if i == 0 {
                sample(ls, &[&sei, &[0x65; 300]])
            } else {
                sample(ls, &[&[0x09, 0xf0], &sei, &[0x41; 120]])
            }
        })
        .collect()
}

/// One `moof` + `mdat`: the audio traf (track 1) and its samples first,
/// then the video traf (track 2); default-base-is-moof.
pub fn fragment(video: &[Vec<u8>], audio: &[Vec<u8>]) -> Vec<u8> {
    let build = |moof_len: u32| {
        let audio_len: usize = audio.iter().map(Vec::len).sum();
        let traf = |track: u32, samples: &[Vec<u8>], offset: u32, video: bool| {
            let mut tfhd = track.to_be_bytes().to_vec();
            let mut tflags = 0x02_0000;
            if !video {
                tflags |= 0x20; // default sample flags
                tfhd.extend_from_slice(&0u32.to_be_bytes());
            }
            let mut trun = (samples.len() as u32).to_be_bytes().to_vec();
            trun.extend_from_slice(&offset.to_be_bytes());
            let mut rflags = 0x01 | 0x200;
            if video {
                rflags |= 0x04; // first sample flags: sync
                trun.extend_from_slice(&0u32.to_be_bytes());
            }
            for s in samples {
                trun.extend_from_slice(&(s.len() as u32).to_be_bytes());
            }
            bx(
                b"traf",
                &cat(&[
                    full(b"tfhd", 0, tflags, &tfhd),
                    full(b"tfdt", 1, 0, &[0u8; 8]),
                    full(b"trun", 0, rflags, &trun),
                ]),
            )
        };
        let data = moof_len + 8;
        bx(
            b"moof",
            &cat(&[
                full(b"mfhd", 0, 0, &1u32.to_be_bytes()),
                traf(1, audio, data, false),
                traf(2, video, data + audio_len as u32, true),
            ]),
        )
    };
    let moof = build(build(0).len() as u32);
    let mdat = bx(b"mdat", &cat(&[audio.concat(), video.concat()]));
    cat(&[bx(b"styp", b"msdh\0\0\0\0msdhmsix"), moof, mdat])
}

fn read(track: VideoTrack, body: &[u8], step: usize) -> Result<Vec<Event>, Fmp4Error> {
    let mut r = FragmentReader::new(track);
    let mut got = Vec::new();
    for part in body.chunks(step.max(1)) {
        r.push(part, &mut |e| got.push(e))?;
    }
    r.finish()?;
    Ok(got)
}

fn expected(first_seq: u64, n: usize) -> Vec<Event> {
    (0..n)
        .flat_map(|i| {
            [
                Event::Frame { key: i == 0 },
                Event::Stamp(stamp(first_seq + i as u64)),
            ]
        })
        .collect()
}

#[test]
fn init_segment_names_the_video_track() {
    for ls in [1, 2, 4] {
        let v = parse_init(&init_segment(ls)).unwrap();
        assert_eq!(v.track_id, 2);
        assert_eq!(&v.codec, b"avc1");
        assert_eq!(v.nal_length_size, Some(usize::from(ls)));
        assert_eq!(v.default_flags, NON_SYNC);
    }
    assert_eq!(parse_init(&bx(b"ftyp", b"iso6")), Err(Fmp4Error::NoMoov));
    let audio_only = bx(b"moov", &trak(1, b"soun", bx(b"mp4a", &[0u8; 28])));
    assert_eq!(parse_init(&audio_only), Err(Fmp4Error::NoVideo));
}

#[test]
fn stamps_come_out_of_video_samples_whatever_the_reads() {
    for ls in [4usize, 2] {
        let track = parse_init(&init_segment(ls as u8)).unwrap();
        let audio = vec![vec![0x21; 40], vec![0x21; 37]];
        let body = cat(&[
            fragment(&video_samples(ls, 10, 3), &audio),
            fragment(&video_samples(ls, 13, 2), &audio),
        ]);
        let mut want = expected(10, 3);
        want.extend(expected(13, 2));
        // The second fragment opens with a keyframe too.
        for step in [1, 2, 7, 64, 1000, body.len()] {
            assert_eq!(
                read(track, &body, step),
                Ok(want.clone()),
                "ls {ls} step {step}"
            );
        }
    }
}

#[test]
fn a_64_bit_box_size_and_unknown_boxes_are_read() {
    let track = parse_init(&init_segment(4)).unwrap();
    let frag = fragment(&video_samples(4, 0, 2), &[]);
    // Re-frame the leading styp with a 64-bit size: offsets are
    // relative to the moof, so nothing else moves.
    let styp_len = u32::from_be_bytes(frag[..4].try_into().unwrap()) as usize;
    let mut big = 1u32.to_be_bytes().to_vec();
    big.extend_from_slice(b"styp");
    big.extend_from_slice(&((styp_len + 8) as u64).to_be_bytes());
    big.extend_from_slice(&frag[8..styp_len]);
    let body = cat(&[big, bx(b"prft", &[0; 20]), frag[styp_len..].to_vec()]);
    assert_eq!(read(track, &body, 3), Ok(expected(0, 2)));
}

#[test]
fn truncated_bodies_are_errors() {
    let track = parse_init(&init_segment(4)).unwrap();
    let body = fragment(&video_samples(4, 0, 2), &[vec![1; 9]]);
    for cut in 0..body.len() {
        // An empty body or one cut right after the styp is simply
        // empty; any other cut is an error.
        if let Ok(events) = read(track, &body[..cut], 5) {
            assert!(events.is_empty() && (cut == 0 || cut == 24), "cut {cut}");
        }
    }
}

#[test]
fn a_nal_running_past_its_sample_is_an_error() {
    let track = parse_init(&init_segment(4)).unwrap();
    let mut bad = sample(4, &[&[0x65; 10]]);
    bad[3] = 50; // the NAL claims 50 bytes of a 14-byte sample
    let body = fragment(&[bad], &[]);
    assert_eq!(read(track, &body, 4), Err(Fmp4Error::NalOverrun));
}

#[test]
fn sample_data_before_its_moof_is_an_error() {
    let track = parse_init(&init_segment(4)).unwrap();
    let mut body = fragment(&video_samples(4, 0, 1), &[]);
    // The video trun's data_offset (after sample_count) pointed into the moof.
    let trun = body.windows(4).rposition(|w| w == b"trun").unwrap();
    body[trun + 12..trun + 16].copy_from_slice(&8u32.to_be_bytes());
    assert_eq!(read(track, &body, 100), Err(Fmp4Error::BadOffset));
}

proptest! {
    #[test]
    fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600), step in 1usize..50) {
        let track = parse_init(&init_segment(4)).unwrap();
        let _ = read(track, &body, step);
        let _ = parse_init(&body);
    }

    #[test]
    fn damaged_fragments_never_panic(at in 0usize..2000, byte: u8, cut in 0usize..2000, step in 1usize..300) {
        let track = parse_init(&init_segment(4)).unwrap();
        let mut body = fragment(&video_samples(4, 0, 3), &[vec![7; 30]]);
        let i = at % body.len();
        body[i] = byte;
        body.truncate(cut.max(1).min(body.len()));
        let _ = read(track, &body, step);
        let mut init = init_segment(4);
        let j = at % init.len();
        init[j] = byte;
        let _ = parse_init(&init);
    }
}
