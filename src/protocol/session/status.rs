//! `onStatus` info objects and the reply shapes clients check.

use bytes::{Bytes, BytesMut};

use crate::protocol::amf::Amf0Value;
use crate::protocol::message::{MessageWriter, UserControl};

/// The info object of an `onStatus` call.
pub fn status_info(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::object([
        ("level", Amf0Value::String(level.to_string())),
        ("code", Amf0Value::String(code.to_string())),
        ("description", Amf0Value::String(description.to_string())),
    ])
}

/// The full `onStatus` command values: name, transaction 0, null, info.
pub fn on_status(level: &str, code: &str, description: &str) -> [Amf0Value; 4] {
    [
        Amf0Value::String("onStatus".into()),
        Amf0Value::Number(0.0),
        Amf0Value::Null,
        status_info(level, code, description),
    ]
}

/// The `_result` of `connect`: a properties object and an info object.
/// GStreamer fails the connect when `code` is missing; `objectEncoding` is
/// echoed so AMF3 clients know what was agreed.
pub fn connect_result(transaction_id: f64, object_encoding: f64) -> [Amf0Value; 4] {
    [
        Amf0Value::String("_result".into()),
        Amf0Value::Number(transaction_id),
        Amf0Value::object([
            ("fmsVer", Amf0Value::String("FMS/3,5,7,7009".into())),
            ("capabilities", Amf0Value::Number(31.0)),
            ("mode", Amf0Value::Number(1.0)),
        ]),
        Amf0Value::object([
            ("level", Amf0Value::String("status".into())),
            (
                "code",
                Amf0Value::String("NetConnection.Connect.Success".into()),
            ),
            (
                "description",
                Amf0Value::String("Connection succeeded.".into()),
            ),
            ("objectEncoding", Amf0Value::Number(object_encoding)),
        ]),
    ]
}

/// What a player gets when its stream's publisher is gone for good:
/// StreamEOF then `NetStream.Play.UnpublishNotify`, which ends ffmpeg and
/// librtmp sessions. Built without a session so a stream can end many
/// players at once.
pub fn unpublish_notice(stream_id: u32, chunk_size: u32, name: &str) -> Bytes {
    let w = MessageWriter::with_chunk_size(chunk_size);
    let mut out = BytesMut::new();
    w.user_control(UserControl::StreamEof(stream_id), &mut out);
    let values = on_status(
        "status",
        "NetStream.Play.UnpublishNotify",
        &format!("{name} is now unpublished."),
    );
    w.command(stream_id, &values, &mut out);
    out.freeze()
}
