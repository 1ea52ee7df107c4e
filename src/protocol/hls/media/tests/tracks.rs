//! One track's media playlist: the muxed playlist's tags over that track's
//! file names.

use super::*;
use crate::protocol::hls::Track;

#[test]
fn a_track_playlist_names_that_tracks_files_and_marks_parts_without_it() {
    let mut segs = window(3);
    let mut current = segs.pop().unwrap();
    current.parts.truncate(3);
    current.parts[1].gap = true;
    let p = MediaPlaylist {
        track: Some(Track::Audio),
        init_generation: Some(1),
        ..playlist(&segs, Some(&current))
    };
    let text = render_media(&p);
    // The same tags as the muxed playlist: only the names differ.
    let muxed = render_media(&MediaPlaylist { track: None, ..p });
    let strip = |t: &str| {
        t.replace("-a.m4s", ".m4s")
            .replace("init-a.mp4", "init.mp4")
    };
    assert_eq!(strip(&text), muxed);
    assert!(
        text.contains(&format!("#EXT-X-MAP:URI=\"init-a.mp4{Q}&g=1\"\n")),
        "{text}"
    );
    assert!(text.contains(&format!("\nseg101-a.m4s{Q}\n")), "{text}");
    assert!(
        text.contains(&format!(
            "#EXT-X-PART:DURATION=0.200,URI=\"part102.0-a.m4s{Q}\",INDEPENDENT=YES\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "#EXT-X-PART:DURATION=0.200,URI=\"part102.1-a.m4s{Q}\",GAP=YES\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part102.3-a.m4s{Q}\"\n"
        )),
        "{text}"
    );
    // Nothing of the muxed rendition's names is left.
    for line in text.lines().filter(|l| !l.starts_with("#EXT-X-SERVER")) {
        assert!(
            !line.contains(".m4s") || line.contains("-a.m4s"),
            "a muxed name in the audio playlist: {line}"
        );
    }
    let video = render_media(&MediaPlaylist {
        track: Some(Track::Video),
        ..p
    });
    assert!(video.contains("init-v.mp4") && video.contains("part102.2-v.m4s"));
}
