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

/// An Enhanced RTMP v2 multitrack video body with one track (`track`): the
/// layout OBS multitrack sends, one rendition per track.
fn multitrack_video(key: bool, packet: u8, track: u8, tag: u8) -> Vec<u8> {
    let frame_type = if key { 1 } else { 2 };
    let mut v = vec![0x80 | (frame_type << 4) | 6, packet];
    v.extend_from_slice(b"avc1");
    v.push(track);
    if packet == 1 {
        v.extend_from_slice(&[0, 0, 0]);
    }
    v.extend_from_slice(&[0, 0, 0, 1, tag]);
    v
}

/// A late joiner of a two-track stream gets both tracks' sequence headers
/// and the GOP from the main track's keyframe: a keyframe on track 1 must
/// neither replace track 0's header nor cut track 0's GOP.
#[test]
fn multitrack_late_joiner_gets_every_tracks_header_and_the_main_gop() {
    use common::rtmp_client::{RtmpClient, TYPE_VIDEO};
    use std::time::Instant;
    let t = Duration::from_secs(5);
    let server = Server::start_cascade(&[]);
    let mut publisher = RtmpClient::connect(server.port, "live", t).expect("connect");
    let sid = publisher.publish("multi", t).expect("publish");
    let mut send = |ts: u32, body: Vec<u8>| {
        publisher
            .send_message(6, TYPE_VIDEO, sid, ts, &body)
            .expect("publisher write")
    };
    send(0, multitrack_video(true, 0, 0, 0xA0));
    send(0, multitrack_video(true, 0, 1, 0xA1));
    send(0, multitrack_video(true, 1, 0, 1));
    send(33, multitrack_video(false, 1, 0, 2));
    send(40, multitrack_video(true, 1, 1, 3));
    send(66, multitrack_video(false, 1, 0, 4));
    std::thread::sleep(Duration::from_millis(300));

    let mut player = RtmpClient::connect(server.port, "live", t).expect("connect");
    let psid = player.create_stream(t).expect("createStream");
    player.play(psid, "multi").expect("play");
    let deadline = Instant::now() + t;
    let mut tags = Vec::new();
    while tags.len() < 6 {
        let Some(m) = player.next_message(deadline).expect("read") else {
            break;
        };
        if m.type_id == TYPE_VIDEO {
            tags.push(*m.payload.last().expect("tagged body"));
        }
    }
    // Both headers (track 0, then 1), then track 0's keyframe and what
    // followed it, with track 1's keyframe kept inside the GOP.
    assert_eq!(
        tags,
        vec![0xA0, 0xA1, 1, 2, 3, 4],
        "video messages seen by the late joiner"
    );
}
