//! FLV: tag-body classifiers and the file tag reader on arbitrary bytes.
//! Tags read must be the same whatever the splits, and write -> read must
//! give each tag back.

use bytes::BytesMut;
use cascade::protocol::flv::{
    parse_audio, parse_file_header, parse_video, write_file_header, write_tag, FlvError, FlvLimits,
    FlvTag, FlvTagReader, TAG_AUDIO, TAG_VIDEO,
};

use super::Input;

/// Flag bit 0: the reader starts at the first tag (no file header).
/// Bit 1: verify PreviousTagSize. Config byte: tag size limit (255: default).
pub fn flv(data: &[u8]) {
    let input = Input::new(data, 1);
    let payload = input.payload;

    classify(payload, TAG_VIDEO);
    classify(payload, TAG_AUDIO);

    if let Ok((header, consumed)) = parse_file_header(payload) {
        assert!(consumed <= payload.len());
        let mut out = BytesMut::new();
        write_file_header(&header, &mut out);
        let (again, _) = parse_file_header(&out).expect("written file header failed to parse");
        assert_eq!(again, header);
    }

    let limits = FlvLimits {
        max_tag_size: match input.config[0] {
            255 => FlvLimits::default().max_tag_size,
            n => usize::from(n) * 32,
        },
        verify_previous_tag_size: input.flags & 2 != 0,
    };
    let headerless = input.flags & 1 != 0;
    let (split_tags, split_err) = read_all(limits, headerless, input.pieces());
    let (whole_tags, whole_err) = read_all(limits, headerless, std::iter::once(payload));
    assert_eq!(split_tags, whole_tags, "splitting changed the tags");
    assert_eq!(split_err, whole_err, "splitting changed the error");

    let mut wire = BytesMut::new();
    for tag in &split_tags {
        assert!(tag.data.len() <= limits.max_tag_size);
        assert!(tag.tag_type < 32);
        classify(&tag.data, tag.tag_type);
        write_tag(tag, &mut wire);
    }
    let strict = FlvLimits {
        verify_previous_tag_size: true,
        ..limits
    };
    let (again, err) = read_all(strict, true, std::iter::once(&wire[..]));
    assert_eq!(err, None, "written tags failed to read back");
    assert_eq!(again, split_tags, "write -> read changed the tags");
}

/// Runs the classifier for the tag type and touches every accessor.
fn classify(body: &[u8], tag_type: u8) {
    match tag_type {
        TAG_VIDEO => {
            if let Ok(v) = parse_video(body) {
                let _ = (v.is_keyframe(), v.is_sequence_header(), v.is_command());
            }
        }
        TAG_AUDIO => {
            let _ = parse_audio(body);
        }
        _ => {}
    }
}

fn read_all<'p>(
    limits: FlvLimits,
    headerless: bool,
    pieces: impl Iterator<Item = &'p [u8]>,
) -> (Vec<FlvTag>, Option<FlvError>) {
    let mut reader = if headerless {
        FlvTagReader::at_first_tag(limits)
    } else {
        FlvTagReader::with_limits(limits)
    };
    let mut buf = BytesMut::new();
    let mut tags = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match reader.next_tag(&mut buf) {
                Ok(Some(tag)) => tags.push(tag),
                Ok(None) => break,
                Err(e) => return (tags, Some(e)),
            }
        }
    }
    (tags, None)
}
