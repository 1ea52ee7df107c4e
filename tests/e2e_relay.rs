//! End-to-end relay tests with real programs: ffmpeg 5.1, ffprobe, rtmpdump
//! (librtmp) and GStreamer publish to and play from a cascade started on a
//! free port. `CASCADE_TEST_SERVER=nginx` runs them against nginx-rtmp.

mod common;

use std::process::Command;
use std::thread;
use std::time::Duration;

use cascade::protocol::flv::parse_video;

use common::rtmp_client::{status_code, RtmpClient, TYPE_AUDIO, TYPE_VIDEO};
use common::{
    decoded_frames, ffmpeg_play, ffprobe, publish_ffmpeg, run_with_timeout, tail, temp_dir, tool,
    wait_playable, ChildGuard, Clip, RunOutput, Server, Streams,
};

fn has_stream(streams: &Streams, kind: &str, codec: &str) -> bool {
    streams.iter().any(|(k, c)| k == kind && c == codec)
}

fn assert_h264_aac(streams: &Streams, what: &str) {
    assert!(
        has_stream(streams, "video", "h264") && has_stream(streams, "audio", "aac"),
        "{what}: expected h264 video and aac audio, got {streams:?}"
    );
}

/// Asserts an ffmpeg play at `-v error` exited 0, printed no error and decoded
/// at least `min_frames` frames.
fn assert_clean_decode(out: &RunOutput, min_frames: u64) {
    assert!(
        out.success(),
        "player failed: {}\n{}",
        out.describe(),
        tail(&out.stderr, 40)
    );
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("error"))
        .collect();
    assert!(
        errors.is_empty(),
        "player printed errors:\n{}",
        errors.join("\n")
    );
    let frames = decoded_frames(out);
    assert!(
        frames >= min_frames,
        "player decoded {frames} frames, expected at least {min_frames}\nstdout tail:\n{}",
        tail(&out.stdout, 15)
    );
}

fn assert_running(publisher: &mut ChildGuard) {
    if let Some(st) = publisher.try_status() {
        panic!(
            "{} exited early with {st}:\n{}",
            publisher.name(),
            tail(&publisher.stderr_text(), 30)
        );
    }
}

#[test]
fn ffmpeg_publishes_ffprobe_sees_codecs_and_ffmpeg_decodes() {
    let server = Server::start();
    let url = server.url("ffplay");
    let ffmpeg = tool("ffmpeg");
    let mut publisher = publish_ffmpeg(&ffmpeg, &Clip::H264Aac.path(), &url);

    let streams = wait_playable(&url, Duration::from_secs(10));
    assert_h264_aac(&streams, "ffprobe of the live stream");

    let out = ffmpeg_play(&ffmpeg, &url, 3.0, "error", Duration::from_secs(12));
    assert_clean_decode(&out, 60);
    assert_running(&mut publisher);
}

#[test]
fn rtmpdump_records_a_playable_flv() {
    let server = Server::start();
    let url = server.url("dump");
    let mut publisher = publish_ffmpeg(&tool("ffmpeg"), &Clip::H264Aac.path(), &url);
    wait_playable(&url, Duration::from_secs(10));

    let dir = temp_dir("cascade-e2e-rtmpdump-");
    let file = dir.path().join("dump.flv");
    let mut cmd = Command::new(tool("rtmpdump"));
    cmd.args(["-r", &url, "--live", "-B", "3", "-o"]).arg(&file);
    let mut dump = ChildGuard::spawn("rtmpdump", cmd);
    // A live stream has no end, and librtmp leaves -B to the server, so stop
    // the recording with SIGINT (a clean stop) if it did not end by itself.
    if let Some(st) = dump.wait_timeout(Duration::from_secs(4)) {
        assert!(
            matches!(st.code(), Some(0) | Some(2)),
            "rtmpdump exited early with {st}:\n{}",
            tail(&dump.stderr_text(), 30)
        );
    } else {
        assert!(
            dump.interrupt(Duration::from_secs(3)).is_some(),
            "rtmpdump ignored SIGINT:\n{}",
            tail(&dump.stderr_text(), 30)
        );
    }
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 100_000,
        "rtmpdump wrote only {size} bytes in ~3 s:\n{}",
        tail(&dump.stderr_text(), 30)
    );

    let (probe, streams) = ffprobe(&file.to_string_lossy(), Duration::from_secs(10));
    assert!(
        probe.success(),
        "ffprobe of the dump: {}\n{}",
        probe.describe(),
        probe.stderr
    );
    assert_h264_aac(&streams, "ffprobe of rtmpdump's file");
    assert_running(&mut publisher);
}

#[test]
fn gstreamer_plays_and_decodes() {
    let server = Server::start();
    let url = server.url("gstplay");
    let mut publisher = publish_ffmpeg(&tool("ffmpeg"), &Clip::H264Aac.path(), &url);
    wait_playable(&url, Duration::from_secs(10));

    // num-buffers makes rtmp2src send EOS after ~3 s of tags, so a healthy
    // pipeline exits 0 by itself; -v prints every decoded frame reaching vsink.
    let mut cmd = Command::new(tool("gst-launch-1.0"));
    cmd.arg("-v").args(
        format!(
            "rtmp2src location={url} num-buffers=200 timeout=5 ! flvdemux name=d \
             d.video ! queue ! h264parse ! avdec_h264 ! fakesink name=vsink silent=false sync=false \
             d.audio ! queue ! fakesink sync=false"
        )
        .split_whitespace(),
    );
    let out = run_with_timeout("gst-launch-1.0", cmd, Duration::from_secs(12));
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert!(
        out.success(),
        "gst-launch: {}\n{}",
        out.describe(),
        tail(&all, 40)
    );
    assert!(
        !all.contains("ERROR"),
        "gst-launch reported an error:\n{}",
        tail(&all, 40)
    );
    assert!(
        all.contains("Setting pipeline to PLAYING") && all.contains("Got EOS"),
        "pipeline never played to EOS:\n{}",
        tail(&all, 40)
    );
    let frames = all
        .lines()
        .filter(|l| l.contains("(vsink:sink)") && l.contains("chain"))
        .count();
    assert!(frames >= 30, "GStreamer decoded only {frames} video frames");
    assert_running(&mut publisher);
}

#[test]
fn gstreamer_publishes_and_ffmpeg_decodes() {
    let server = Server::start();
    let url = server.url("gstpub");
    let clip = Clip::H264Aac.path();
    // identity sync=true paces the file at real time, like a live encoder.
    let mut cmd = Command::new(tool("gst-launch-1.0"));
    cmd.args(
        format!(
            "filesrc location={} ! flvdemux name=d \
             d.video ! queue ! h264parse ! identity sync=true ! flvmux name=m streamable=true ! \
             rtmp2sink location={url} \
             d.audio ! queue ! aacparse ! identity sync=true ! m.",
            clip.display()
        )
        .split_whitespace(),
    );
    let mut publisher = ChildGuard::spawn("gst-publisher", cmd);

    let streams = wait_playable(&url, Duration::from_secs(8));
    assert_h264_aac(&streams, "ffprobe of GStreamer's stream");
    let out = ffmpeg_play(&tool("ffmpeg"), &url, 2.0, "error", Duration::from_secs(8));
    assert_clean_decode(&out, 40);
    let all = format!("{}\n{}", publisher.stdout_text(), publisher.stderr_text());
    assert!(
        !all.contains("ERROR"),
        "GStreamer publisher reported an error:\n{}",
        tail(&all, 30)
    );
    assert_running(&mut publisher);
}

#[test]
fn second_publisher_on_same_name_is_rejected() {
    let server = Server::start();
    let url = server.url("taken");
    let ffmpeg = tool("ffmpeg");
    let clip = Clip::H264Aac.path();
    let mut first = publish_ffmpeg(&ffmpeg, &clip, &url);
    wait_playable(&url, Duration::from_secs(10));

    let mut cmd = Command::new(&ffmpeg);
    cmd.args(["-hide_banner", "-nostdin", "-v", "info", "-re", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-f", "flv", &url]);
    let second = run_with_timeout("second-publisher", cmd, Duration::from_secs(8));
    assert!(
        !second.timed_out,
        "second publisher was not refused (still streaming after {:?}):\n{}",
        second.elapsed,
        tail(&second.stderr, 20)
    );
    assert!(
        !second.success(),
        "second publisher exited 0; it should have been refused:\n{}",
        tail(&second.stderr, 20)
    );

    assert_running(&mut first);
    let out = ffmpeg_play(&ffmpeg, &url, 2.0, "error", Duration::from_secs(10));
    assert_clean_decode(&out, 30);
    assert_running(&mut first);
}

/// A player joining mid-GOP must get the video sequence header and then a
/// keyframe as its first video messages, the keyframe within 200 ms of
/// `play` (the GOP cache, not the encoder's next keyframe, feeds it).
#[test]
fn late_joiner_starts_on_cached_keyframe_within_200ms() {
    let server = Server::start();
    let name = "latejoin";
    let url = server.url(name);
    let mut publisher = publish_ffmpeg(&tool("ffmpeg"), &Clip::H264Aac.path(), &url);
    wait_playable(&url, Duration::from_secs(10));

    // Keyframes come every 2 s; join ~1.2 s into a GOP after at least 3 s of
    // publishing, so the next live keyframe is ~0.8 s away.
    let mut join_at = Duration::from_millis(3200);
    while join_at < publisher.elapsed() {
        join_at += Duration::from_secs(2);
    }
    thread::sleep(join_at - publisher.elapsed());
    assert_running(&mut publisher);

    let mut client = RtmpClient::connect(server.port, "live", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("RTMP connect: {e}"));
    let stream_id = client
        .create_stream(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("createStream: {e}"));
    let sent_play = client
        .play(stream_id, name)
        .unwrap_or_else(|e| panic!("play: {e}"));

    let deadline = sent_play + Duration::from_secs(5);
    let mut log = Vec::new();
    let mut play_started = false;
    let mut saw_sequence_header = false;
    let first_keyframe_after = loop {
        let msg = match client.next_message(deadline) {
            Ok(Some(msg)) => msg,
            Ok(None) => panic!(
                "no keyframe within 5 s of play; messages:\n{}",
                log.join("\n")
            ),
            Err(e) => panic!("{e}; messages so far:\n{}", log.join("\n")),
        };
        let at = sent_play.elapsed();
        if let Some(code) = status_code(&msg) {
            log.push(format!("{at:?} onStatus {code}"));
            assert!(
                !code.contains("Failed") && !code.contains("StreamNotFound"),
                "play refused: {code}"
            );
            play_started |= code == "NetStream.Play.Start";
            continue;
        }
        match msg.type_id {
            TYPE_AUDIO => {
                assert!(play_started, "audio before NetStream.Play.Start");
                log.push(format!("{at:?} audio ts={}", msg.timestamp));
            }
            TYPE_VIDEO => {
                assert!(play_started, "video before NetStream.Play.Start");
                let tag = parse_video(&msg.payload)
                    .unwrap_or_else(|e| panic!("unparsable video message: {e}"));
                log.push(format!("{at:?} video ts={} {tag:?}", msg.timestamp));
                if tag.is_sequence_header() {
                    saw_sequence_header = true;
                    continue;
                }
                assert!(
                    saw_sequence_header,
                    "first video message is not the sequence header:\n{}",
                    log.join("\n")
                );
                assert!(
                    tag.is_keyframe(),
                    "first coded video frame is not a keyframe:\n{}",
                    log.join("\n")
                );
                break at;
            }
            other => log.push(format!("{at:?} type {other} ts={}", msg.timestamp)),
        }
    };
    eprintln!(
        "first keyframe {first_keyframe_after:?} after play:\n{}",
        log.join("\n")
    );
    assert!(
        first_keyframe_after <= Duration::from_millis(200),
        "first keyframe arrived {first_keyframe_after:?} after play (limit 200 ms):\n{}",
        log.join("\n")
    );
    assert_running(&mut publisher);
}
