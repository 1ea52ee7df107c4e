//! Enhanced RTMP end to end: ffmpeg 9 publishes HEVC+Opus or AV1+Opus as
//! enhanced FLV tags (ExHeader + FourCC) and ffmpeg 9 plays them back through
//! the server, which must pass them through and start players on a keyframe.

mod common;

use std::time::Duration;

use common::{
    decoded_frames, ffmpeg9, ffmpeg_play, publish_ffmpeg, tail, wait_playable_with_ffmpeg, Clip,
    Server,
};

fn relay_enhanced(clip: Clip, name: &str, video: &str) {
    let ffmpeg = ffmpeg9();
    let server = Server::start();
    let url = server.url(name);
    let mut publisher = publish_ffmpeg(&ffmpeg, &clip.path(), &url);

    wait_playable_with_ffmpeg(&ffmpeg, &url, Duration::from_secs(12));
    let out = ffmpeg_play(&ffmpeg, &url, 3.0, "info", Duration::from_secs(12));
    assert!(
        out.success(),
        "ffmpeg 9 player failed: {}\n{}",
        out.describe(),
        tail(&out.stderr, 40)
    );
    let want_video = format!("Video: {video}");
    assert!(
        out.stderr.contains(&want_video) && out.stderr.contains("Audio: opus"),
        "expected `{want_video}` and `Audio: opus` in the player's stream list:\n{}",
        tail(&out.stderr, 40)
    );
    let frames = decoded_frames(&out);
    eprintln!(
        "{frames} frames decoded; player stderr:\n{}",
        tail(&out.stderr, 25)
    );
    assert!(
        frames >= 45,
        "ffmpeg 9 decoded only {frames} frames of {video}"
    );
    if let Some(st) = publisher.try_status() {
        panic!(
            "publisher exited early with {st}:\n{}",
            tail(&publisher.stderr_text(), 30)
        );
    }
}

#[test]
fn ffmpeg9_relays_hevc_and_opus() {
    relay_enhanced(Clip::HevcOpus, "hevc", "hevc");
}

#[test]
fn ffmpeg9_relays_av1_and_opus() {
    relay_enhanced(Clip::Av1Opus, "av1", "av1");
}
