//! The application's answers to a server session: accept or refuse a
//! publish or play, end a play, ask a publisher to reconnect elsewhere.
//! Each queues its replies in the session's output, in the order clients
//! expect them.

use crate::protocol::amf::Amf0Value;
use crate::protocol::chunk::Admission;
use crate::protocol::message::UserControl;

use super::server::{PlayRejection, PublishRejection, ServerSession, StreamState};

impl ServerSession {
    /// Publish allowed: `NetStream.Publish.Start` goes out only now.
    pub fn accept_publish(&mut self, sid: u32) {
        self.clear_pending(sid);
        self.core.decoder.set_admission(Admission::Publishing);
        self.set_state(sid, StreamState::Publishing);
        let begin = UserControl::StreamBegin(sid);
        self.core.writer.user_control(begin, &mut self.core.out);
        self.status(sid, "status", "NetStream.Publish.Start", "Start publishing");
    }

    pub fn reject_publish(&mut self, sid: u32, why: PublishRejection, description: &str) {
        self.clear_pending(sid);
        self.set_state(sid, StreamState::Idle);
        let code = match why {
            PublishRejection::BadName => "NetStream.Publish.BadName",
            PublishRejection::Denied => "NetStream.Publish.Denied",
            PublishRejection::Rejected => "NetStream.Publish.Rejected",
        };
        self.status(sid, "error", code, description);
    }

    /// Play allowed: StreamBegin, Reset, Start, `|RtmpSampleAccess`,
    /// `NetStream.Data.Start`. The caller then sends metadata, sequence
    /// headers and the cached GOP, in that order.
    pub fn accept_play(&mut self, sid: u32, reset: bool, name: &str) {
        self.clear_pending(sid);
        self.set_state(sid, StreamState::Playing);
        let begin = UserControl::StreamBegin(sid);
        self.core.writer.user_control(begin, &mut self.core.out);
        if reset {
            self.status(
                sid,
                "status",
                "NetStream.Play.Reset",
                &format!("Playing and resetting {name}."),
            );
        }
        self.status(
            sid,
            "status",
            "NetStream.Play.Start",
            &format!("Started playing {name}."),
        );
        let access = [
            Amf0Value::String("|RtmpSampleAccess".into()),
            Amf0Value::Boolean(true),
            Amf0Value::Boolean(true),
        ];
        self.core.writer.data(sid, &access, &mut self.core.out);
        // Sent as a command, not a data message: ffmpeg turns an unknown
        // data message into a spurious data stream.
        self.status(sid, "status", "NetStream.Data.Start", "Data start");
    }

    pub fn reject_play(&mut self, sid: u32, why: PlayRejection, description: &str) {
        self.clear_pending(sid);
        self.set_state(sid, StreamState::Idle);
        let code = match why {
            PlayRejection::StreamNotFound => "NetStream.Play.StreamNotFound",
            PlayRejection::Denied => "NetStream.Play.Failed",
        };
        self.status(sid, "error", code, description);
    }

    /// The publisher of a played stream left for good: StreamEOF and
    /// `UnpublishNotify` end ffmpeg and librtmp sessions.
    pub fn notify_unpublished(&mut self, sid: u32, name: &str) {
        let eof = UserControl::StreamEof(sid);
        self.core.writer.user_control(eof, &mut self.core.out);
        self.status(
            sid,
            "status",
            "NetStream.Play.UnpublishNotify",
            &format!("{name} is now unpublished."),
        );
        self.set_state(sid, StreamState::Idle);
    }

    /// Asks a publishing client to reconnect elsewhere (Enhanced RTMP v2).
    pub fn request_reconnect(&mut self, tc_url: &str, description: &str) {
        let info = Amf0Value::object([
            ("level", Amf0Value::String("status".into())),
            (
                "code",
                Amf0Value::String("NetConnection.Connect.ReconnectRequest".into()),
            ),
            ("description", Amf0Value::String(description.into())),
            ("tcUrl", Amf0Value::String(tc_url.into())),
        ]);
        self.call(0, "onStatus", info);
    }
}
