//! CMAF packaging checked by real players' demuxers: each test clip (the
//! cached FLV clips of tests/common: H.264 + AAC legacy FLV, HEVC + Opus and
//! AV1 + Opus Enhanced RTMP FLV) is read tag by tag with `FlvTagReader`,
//! turned into configs and samples by `flv_video` / `flv_audio`, packaged
//! as an init segment and one fragment per 200 ms, and written to a file.
//!
//! ffprobe (Debian's ffmpeg 5.1, which knows nothing of cascade) must then
//! find the same codecs, picture size, sample rate, channels and decoded
//! frame counts as in the source clip, every packet at the decode and
//! presentation time and with the key flag the FLV tags gave; and ffmpeg
//! must decode the whole file without a single error line. (ffmpeg takes
//! the key flag from the `trun` for HEVC; for H.264 and AV1 its parser
//! derives it from the bitstream, so the unit tests of `fragment` pin the
//! flag values themselves.) The picture size the init segment states is
//! read from its boxes and must be the decoded one.
//!
//! The reference for the source is ffprobe on the FLV itself for the legacy
//! clip; ffprobe 5.1 cannot read Enhanced RTMP FLV, so for the others ffmpeg
//! 9 (which can) first copies the streams into Matroska, an independent
//! container path. Like every peer of the end-to-end tests, a missing
//! ffprobe or ffmpeg fails the test (scripts/install-test-deps.sh installs
//! them); nothing is skipped.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cascade::protocol::cmaf::{
    flv_audio, flv_video, fragment, init_segment, CodecConfig, FlvMedia, Run, Sample, TrackConfig,
};
use cascade::protocol::flv::{FlvTagReader, TAG_AUDIO, TAG_VIDEO};
use common::{ffmpeg9, run_with_timeout, tool, Clip};
use serde_json::Value;

const VIDEO_TRACK: u32 = 1;
const AUDIO_TRACK: u32 = 2;
const VIDEO_TIMESCALE: u32 = 90_000;
/// Fragment length; the clips are 10 s.
const FRAGMENT_MS: u64 = 200;

/// One video tag's frame, in FLV milliseconds.
struct VideoFrame {
    dts_ms: u32,
    cto_ms: i32,
    keyframe: bool,
    data: Bytes,
}

/// What the FLV clip holds, as the packager sees it.
#[derive(Default)]
struct Source {
    video_config: Option<CodecConfig>,
    audio_config: Option<CodecConfig>,
    video: Vec<VideoFrame>,
    /// (timestamp ms, frame)
    audio: Vec<(u32, Bytes)>,
}

fn read_clip(path: &Path) -> Source {
    let file = std::fs::read(path).expect("read clip");
    let mut buf = BytesMut::from(&file[..]);
    let mut reader = FlvTagReader::new();
    let mut src = Source::default();
    while let Some(tag) = reader.next_tag(&mut buf).expect("clip parses as FLV") {
        let media = match tag.tag_type {
            TAG_VIDEO => flv_video(&tag.data).expect("video tag"),
            TAG_AUDIO => flv_audio(&tag.data).expect("audio tag"),
            _ => continue,
        };
        match media {
            FlvMedia::Config(config) => {
                let slot = if config.is_video() {
                    &mut src.video_config
                } else {
                    &mut src.audio_config
                };
                // ffmpeg writes each sequence header once, before any frame.
                assert!(slot.is_none(), "second sequence header {config:?}");
                *slot = Some(config);
            }
            FlvMedia::Frame {
                data,
                composition_offset_ms,
                keyframe,
            } if tag.tag_type == TAG_VIDEO => src.video.push(VideoFrame {
                dts_ms: tag.timestamp,
                cto_ms: composition_offset_ms,
                keyframe,
                data,
            }),
            FlvMedia::Frame { data, keyframe, .. } => {
                assert!(keyframe, "audio frames are sync samples");
                src.audio.push((tag.timestamp, data));
            }
            FlvMedia::Other => {}
        }
    }
    assert!(buf.is_empty(), "clip has {} trailing bytes", buf.len());
    src
}

/// A packaged sample with its absolute decode time, to compare with what
/// ffprobe reports.
struct Timed {
    dts: u64,
    sample: Sample,
}

/// What the test expects ffprobe to see, and the file to show it.
struct Packaged {
    file: Vec<u8>,
    video: Vec<Timed>,
    audio: Vec<Timed>,
    audio_rate: u32,
}

fn package(src: &Source, audio_frame_len: u32) -> Packaged {
    let video_config = src.video_config.clone().expect("video sequence header");
    let audio_config = src.audio_config.clone().expect("audio sequence header");
    let (audio_rate, _) = audio_config.audio_params().expect("audio params");

    // Video: 90 kHz, durations from the next frame's decode time (the last
    // one repeats the one before).
    let mut video: Vec<Timed> = src
        .video
        .iter()
        .map(|f| Timed {
            dts: u64::from(f.dts_ms) * 90,
            sample: Sample {
                duration: 0,
                composition_offset: f.cto_ms * 90,
                keyframe: f.keyframe,
                data: f.data.clone(),
            },
        })
        .collect();
    for i in 0..video.len() {
        let duration = match (video.get(i + 1), i.checked_sub(1)) {
            (Some(next), _) => next.dts - video[i].dts,
            (None, Some(prev)) => video[i].dts - video[prev].dts,
            (None, None) => 3000,
        };
        video[i].sample.duration = u32::try_from(duration).expect("frame duration");
    }

    // Audio: the sample rate as timescale, fixed-length frames laid end to
    // end from the first frame's timestamp.
    let start = src.audio.first().map_or(0, |(ts, _)| *ts);
    let base = u64::from(start) * u64::from(audio_rate) / 1000;
    let audio: Vec<Timed> = src
        .audio
        .iter()
        .enumerate()
        .map(|(i, (_, data))| Timed {
            dts: base + i as u64 * u64::from(audio_frame_len),
            sample: Sample {
                duration: audio_frame_len,
                composition_offset: 0,
                keyframe: true,
                data: data.clone(),
            },
        })
        .collect();

    let tracks = [
        TrackConfig {
            id: VIDEO_TRACK,
            timescale: VIDEO_TIMESCALE,
            codec: video_config,
        },
        TrackConfig {
            id: AUDIO_TRACK,
            timescale: audio_rate,
            codec: audio_config,
        },
    ];
    let mut file = init_segment(&tracks).expect("init segment").to_vec();

    // One fragment per 200 ms of decode time, a run of each track in it.
    let window = |dts: u64, timescale: u32| dts * 1000 / u64::from(timescale) / FRAGMENT_MS;
    let (mut v, mut a, mut sequence) = (0, 0, 1);
    while v < video.len() || a < audio.len() {
        let next = |list: &[Timed], i: usize, ts| list.get(i).map(|t| window(t.dts, ts));
        let w = [
            next(&video, v, VIDEO_TIMESCALE),
            next(&audio, a, audio_rate),
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("samples left");
        let v_end = v + video[v..]
            .iter()
            .take_while(|t| window(t.dts, VIDEO_TIMESCALE) == w)
            .count();
        let a_end = a + audio[a..]
            .iter()
            .take_while(|t| window(t.dts, audio_rate) == w)
            .count();
        let v_samples: Vec<Sample> = video[v..v_end].iter().map(|t| t.sample.clone()).collect();
        let a_samples: Vec<Sample> = audio[a..a_end].iter().map(|t| t.sample.clone()).collect();
        let mut runs = Vec::new();
        if let Some(first) = video.get(v).filter(|_| v < v_end) {
            runs.push(Run {
                track_id: VIDEO_TRACK,
                base_decode_time: first.dts,
                samples: &v_samples,
            });
        }
        if let Some(first) = audio.get(a).filter(|_| a < a_end) {
            runs.push(Run {
                track_id: AUDIO_TRACK,
                base_decode_time: first.dts,
                samples: &a_samples,
            });
        }
        file.extend_from_slice(&fragment(sequence, &runs));
        sequence += 1;
        v = v_end;
        a = a_end;
    }
    assert!(sequence > 40, "only {} fragments", sequence - 1);
    Packaged {
        file,
        video,
        audio,
        audio_rate,
    }
}

fn run_json(name: &str, mut cmd: Command) -> Value {
    cmd.args(["-of", "json"]);
    let out = run_with_timeout(name, cmd, Duration::from_secs(120));
    assert!(
        out.success(),
        "{name} failed: {}\n{}",
        out.describe(),
        out.stderr
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{name} JSON: {e}"))
}

/// ffprobe's streams with decoded frame counts, video first.
fn probe_streams(path: &Path) -> Vec<Value> {
    let mut cmd = Command::new(tool("ffprobe"));
    cmd.args(["-v", "error", "-count_frames", "-show_streams"])
        .arg(path);
    let json = run_json("ffprobe-streams", cmd);
    let mut streams = json["streams"].as_array().expect("streams").clone();
    streams.sort_by_key(|s| s["codec_type"] != "video");
    streams
}

/// The fields the packaged file must share with its source.
fn summary(stream: &Value) -> Vec<(&'static str, String)> {
    let mut fields = vec!["codec_type", "codec_name", "nb_read_frames"];
    if stream["codec_type"] == "video" {
        fields.extend(["width", "height"]);
    } else {
        fields.extend(["sample_rate", "channels"]);
    }
    fields
        .into_iter()
        .map(|f| (f, stream[f].to_string().trim_matches('"').to_string()))
        .collect()
}

/// Each packet of one stream as (dts, pts, key) in the stream's time base.
fn probe_packets(path: &Path, stream: &str) -> Vec<(i64, i64, bool)> {
    let mut cmd = Command::new(tool("ffprobe"));
    cmd.args(["-v", "error", "-select_streams", stream])
        .args(["-show_entries", "packet=dts,pts,flags"])
        .arg(path);
    let json = run_json("ffprobe-packets", cmd);
    json["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .map(|p| {
            (
                p["dts"].as_i64().expect("dts"),
                p["pts"].as_i64().expect("pts"),
                p["flags"].as_str().expect("flags").starts_with('K'),
            )
        })
        .collect()
}

/// The body of the first box of type `kind` directly in `data` (sizes are
/// trusted: only our own output goes in).
fn find_box<'a>(mut data: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
    while data.len() >= 8 {
        let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        if &data[4..8] == kind {
            return &data[8..size];
        }
        data = &data[size..];
    }
    panic!("no {} box", String::from_utf8_lossy(kind));
}

/// The picture size the init segment states, in the video track's `tkhd`
/// and in its sample entry: what MSE players size their buffers by, which
/// ffprobe does not show (it reports what the decoder found).
fn stated_sizes(init: &[u8]) -> [(u32, u32); 2] {
    let trak = find_box(find_box(init, b"moov"), b"trak");
    let tkhd = find_box(trak, b"tkhd");
    let at = |b: &[u8], i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    let tkhd_size = (
        at(tkhd, tkhd.len() - 8) >> 16,
        at(tkhd, tkhd.len() - 4) >> 16,
    );
    let mut stsd = trak;
    for kind in [b"mdia", b"minf", b"stbl", b"stsd"] {
        stsd = find_box(stsd, kind);
    }
    // stsd: version/flags, entry count, then the entry: its header, six
    // reserved bytes, data_reference_index, 16 bytes, width, height.
    let entry = &stsd[8..];
    let size = (
        u32::from(u16::from_be_bytes([entry[32], entry[33]])),
        u32::from(u16::from_be_bytes([entry[34], entry[35]])),
    );
    [tkhd_size, size]
}

/// Packages `clip` and checks the file against the source and the samples.
fn check(clip: Clip, video_codec: &str, audio_codec: &str, audio_frame_len: u32) {
    let source_path = clip.path();
    let src = read_clip(&source_path);
    // The clips are 10 s of 30 fps video (tests/common).
    assert_eq!(src.video.len(), 300, "video frames in {clip:?}");
    let packaged = package(&src, audio_frame_len);

    let dir = common::temp_dir("cascade-cmaf");
    let out = dir.path().join("out.mp4");
    std::fs::write(&out, &packaged.file).expect("write out.mp4");

    // The source as an independent demuxer sees it.
    let reference = if clip == Clip::H264Aac {
        source_path.clone()
    } else {
        let mkv = dir.path().join("reference.mkv");
        let mut cmd = Command::new(ffmpeg9());
        cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
            .arg(&source_path)
            .args(["-c", "copy"])
            .arg(&mkv);
        let remux = run_with_timeout("ffmpeg9-remux", cmd, Duration::from_secs(60));
        assert!(
            remux.success(),
            "remux: {}\n{}",
            remux.describe(),
            remux.stderr
        );
        mkv
    };
    let ours = probe_streams(&out);
    let theirs = probe_streams(&reference);
    assert_eq!(ours.len(), 2, "streams in out.mp4: {ours:#?}");
    let ours: Vec<_> = ours.iter().map(summary).collect();
    let theirs: Vec<_> = theirs.iter().map(summary).collect();
    assert_eq!(ours, theirs, "out.mp4 against the source");
    assert_eq!(ours[0][1].1, video_codec);
    assert_eq!(ours[1][1].1, audio_codec);
    // Every packaged sample decodes to one frame.
    assert_eq!(ours[0][2].1, src.video.len().to_string());
    assert_eq!(ours[1][2].1, src.audio.len().to_string());
    // The size the init segment states is the one the decoder found.
    let decoded: (u32, u32) = (ours[0][3].1.parse().unwrap(), ours[0][4].1.parse().unwrap());
    assert_eq!(decoded, (640, 360));
    assert_eq!(stated_sizes(&packaged.file), [decoded; 2]);
    assert_eq!(ours[1][3].1, packaged.audio_rate.to_string());

    // Every packet where the FLV tags put it.
    let video = probe_packets(&out, "v");
    let want: Vec<_> = packaged
        .video
        .iter()
        .map(|t| {
            let dts = t.dts as i64;
            let pts = dts + i64::from(t.sample.composition_offset);
            (dts, pts, t.sample.keyframe)
        })
        .collect();
    assert_eq!(video, want, "video packet timing and key flags");
    assert!(want.iter().any(|p| p.1 != p.0) || clip == Clip::Av1Opus);
    let audio = probe_packets(&out, "a");
    let want: Vec<_> = packaged
        .audio
        .iter()
        .map(|t| (t.dts as i64, t.dts as i64, true))
        .collect();
    assert_eq!(audio, want, "audio packet timing");

    // A whole decode without one error line.
    let mut cmd = Command::new(tool("ffmpeg"));
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(&out)
        .args(["-f", "null", "-"]);
    let decode = run_with_timeout("ffmpeg-decode", cmd, Duration::from_secs(120));
    assert!(
        decode.success() && decode.stderr.trim().is_empty(),
        "decoding out.mp4: {}\n{}",
        decode.describe(),
        decode.stderr
    );
}

#[test]
fn h264_aac_legacy_flv() {
    check(Clip::H264Aac, "h264", "aac", 1024);
}

#[test]
fn hevc_opus_enhanced_flv() {
    check(Clip::HevcOpus, "hevc", "opus", 960);
}

#[test]
fn av1_opus_enhanced_flv() {
    check(Clip::Av1Opus, "av1", "opus", 960);
}

#[test]
fn codec_strings_of_the_clips() {
    for (clip, prefix) in [
        (Clip::H264Aac, "avc1.64"),
        (Clip::HevcOpus, "hvc1.1.6.L"),
        (Clip::Av1Opus, "av01.0."),
    ] {
        let src = read_clip(&clip.path());
        let video = src.video_config.unwrap().codec_string();
        assert!(video.starts_with(prefix), "{clip:?}: {video}");
        let audio = src.audio_config.unwrap().codec_string();
        let want = if clip == Clip::H264Aac {
            "mp4a.40.2"
        } else {
            "opus"
        };
        assert_eq!(audio, want, "{clip:?}");
    }
}
