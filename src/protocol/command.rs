//! Typed RTMP commands: what the encoders and players in the field send
//! (OBS, ffmpeg, GStreamer, librtmp), turned from loose AMF into enums.

use super::amf::Amf0Value;
use super::message::Command;

/// Parameters of `connect` that the relay uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectParams {
    /// Application name as sent, possibly with `?query` (OBS puts tokens here).
    pub app: String,
    pub tc_url: String,
    pub flash_ver: String,
    /// 0 for AMF0, 3 for AMF3; echoed in the connect reply.
    pub object_encoding: f64,
    /// Enhanced RTMP: codecs the client says it can handle.
    pub four_cc_list: Vec<String>,
}

/// A command from a client (publisher or player) to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientCommand {
    Connect(ConnectParams),
    ReleaseStream {
        name: String,
    },
    FcPublish {
        name: String,
    },
    FcUnpublish {
        name: String,
    },
    CreateStream,
    DeleteStream {
        stream_id: u32,
    },
    CloseStream,
    Publish {
        name: String,
        kind: String,
    },
    Play {
        name: String,
        start: f64,
        duration: f64,
        reset: bool,
    },
    Pause {
        pause: bool,
        millis: f64,
    },
    ReceiveAudio(bool),
    ReceiveVideo(bool),
    GetStreamLength {
        name: String,
    },
    CheckBandwidth,
    /// `_result` / `_error` / `onStatus` sent to us (we may be a client too).
    Result,
    Error,
    OnStatus {
        code: String,
    },
    /// Anything else; answered with `_error` when it carries a transaction id.
    Unknown {
        name: String,
    },
}

fn arg_str(args: &[Amf0Value], i: usize) -> String {
    args.get(i)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

fn arg_num(args: &[Amf0Value], i: usize) -> Option<f64> {
    args.get(i).and_then(|v| v.as_f64())
}

impl ClientCommand {
    /// Interprets a parsed command message. Never fails: odd shapes map to
    /// defaults or `Unknown`, so a client's quirks cannot kill its session.
    pub fn from_command(c: &Command) -> ClientCommand {
        let a = &c.args;
        match c.name.as_str() {
            "connect" => {
                let o = &c.object;
                let s = |k: &str| {
                    o.get(k)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string()
                };
                let four_cc_list = match o.get("fourCcList") {
                    Some(Amf0Value::StrictArray(items)) => items
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect(),
                    _ => Vec::new(),
                };
                ClientCommand::Connect(ConnectParams {
                    app: s("app"),
                    tc_url: s("tcUrl"),
                    flash_ver: s("flashVer"),
                    object_encoding: o
                        .get("objectEncoding")
                        .and_then(|v| v.as_f64())
                        .unwrap_or(0.0),
                    four_cc_list,
                })
            }
            "releaseStream" => ClientCommand::ReleaseStream {
                name: arg_str(a, 0),
            },
            "FCPublish" => ClientCommand::FcPublish {
                name: arg_str(a, 0),
            },
            "FCUnpublish" => ClientCommand::FcUnpublish {
                name: arg_str(a, 0),
            },
            "createStream" => ClientCommand::CreateStream,
            "deleteStream" => ClientCommand::DeleteStream {
                stream_id: arg_num(a, 0).unwrap_or(0.0) as u32,
            },
            "closeStream" => ClientCommand::CloseStream,
            "publish" => ClientCommand::Publish {
                name: arg_str(a, 0),
                kind: a
                    .get(1)
                    .and_then(|v| v.as_str())
                    .unwrap_or("live")
                    .to_string(),
            },
            "play" => ClientCommand::Play {
                name: arg_str(a, 0),
                start: arg_num(a, 1).unwrap_or(-2.0),
                duration: arg_num(a, 2).unwrap_or(-1.0),
                reset: a.get(3).and_then(|v| v.as_bool()).unwrap_or(true),
            },
            // play2 carries one object: {streamName, start, len, transition}.
            "play2" => {
                let o = a.first();
                let get = |k: &str| o.and_then(|o| o.get(k));
                ClientCommand::Play {
                    name: get("streamName")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    start: get("start").and_then(|v| v.as_f64()).unwrap_or(-2.0),
                    duration: get("len").and_then(|v| v.as_f64()).unwrap_or(-1.0),
                    reset: true,
                }
            }
            "pause" | "pauseRaw" => ClientCommand::Pause {
                pause: a.first().and_then(|v| v.as_bool()).unwrap_or(true),
                millis: arg_num(a, 1).unwrap_or(0.0),
            },
            "receiveAudio" => {
                ClientCommand::ReceiveAudio(a.first().and_then(|v| v.as_bool()).unwrap_or(true))
            }
            "receiveVideo" => {
                ClientCommand::ReceiveVideo(a.first().and_then(|v| v.as_bool()).unwrap_or(true))
            }
            "getStreamLength" => ClientCommand::GetStreamLength {
                name: arg_str(a, 0),
            },
            "_checkbw" | "checkBandwidth" => ClientCommand::CheckBandwidth,
            "_result" => ClientCommand::Result,
            "_error" => ClientCommand::Error,
            "onStatus" => ClientCommand::OnStatus {
                code: a
                    .first()
                    .and_then(|v| v.get("code"))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string(),
            },
            other => ClientCommand::Unknown {
                name: other.to_string(),
            },
        }
    }
}

/// A stream address split into routing key and auth query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPath {
    /// Application without its query.
    pub app: String,
    /// Stream name without its query.
    pub name: String,
    /// Query parameters from the app (tcUrl side) and the stream name, joined with `&`.
    pub query: String,
}

impl StreamPath {
    /// Splits `app?a=b` and `name?c=d` (OBS's "server" and "stream key").
    pub fn new(app: &str, name: &str) -> StreamPath {
        let (app, q1) = split_query(app);
        let (name, q2) = split_query(name);
        let query = match (q1.is_empty(), q2.is_empty()) {
            (true, _) => q2.to_string(),
            (false, true) => q1.to_string(),
            (false, false) => format!("{q1}&{q2}"),
        };
        StreamPath {
            app: app.trim_matches('/').to_string(),
            name: name.to_string(),
            query,
        }
    }

    /// The routing key: `app/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.app, self.name)
    }
}

/// The apps a routing key can belong to, longest first: every run of
/// leading segments that stops before the last one (`live/team/cam` gives
/// `live/team`, then `live`). Names may hold `/`, so a key reaches us from
/// several (app, name) splits; per-app settings are chosen from the key
/// through this, never from the app a client happened to send.
pub fn apps_of(key: &str) -> impl Iterator<Item = &str> {
    key.rmatch_indices('/').map(move |(i, _)| &key[..i])
}

/// Whether `key` lies under `app` (its leading segments equal `app`):
/// `live` holds `live/cam` and `live/team/cam`, never `liveX/cam`.
pub fn key_in_app(key: &str, app: &str) -> bool {
    key.len() > app.len() && key.starts_with(app) && key.as_bytes()[app.len()] == b'/'
}

/// Whether `s` can name an app in a per-app setting: one or more
/// non-empty segments joined by `/`, with no query.
pub fn is_app_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('?') && s.split('/').all(|seg| !seg.is_empty())
}

fn split_query(s: &str) -> (&str, &str) {
    match s.split_once('?') {
        Some((a, q)) => (a, q),
        None => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(name: &str, object: Amf0Value, args: Vec<Amf0Value>) -> Command {
        Command {
            name: name.into(),
            transaction_id: 1.0,
            object,
            args,
        }
    }

    #[test]
    fn connect_fields() {
        let c = cmd(
            "connect",
            Amf0Value::object([
                ("app", Amf0Value::String("live".into())),
                ("tcUrl", Amf0Value::String("rtmp://h/live".into())),
                ("objectEncoding", Amf0Value::Number(3.0)),
                (
                    "fourCcList",
                    Amf0Value::StrictArray(vec![Amf0Value::String("hvc1".into())]),
                ),
            ]),
            vec![],
        );
        let ClientCommand::Connect(p) = ClientCommand::from_command(&c) else {
            panic!()
        };
        assert_eq!(p.app, "live");
        assert_eq!(p.object_encoding, 3.0);
        assert_eq!(p.four_cc_list, vec!["hvc1".to_string()]);
    }

    #[test]
    fn play_defaults_and_play2() {
        let c = cmd("play", Amf0Value::Null, vec![Amf0Value::String("s".into())]);
        assert_eq!(
            ClientCommand::from_command(&c),
            ClientCommand::Play {
                name: "s".into(),
                start: -2.0,
                duration: -1.0,
                reset: true
            }
        );
        let c = cmd(
            "play2",
            Amf0Value::Null,
            vec![Amf0Value::object([
                ("streamName", Amf0Value::String("x".into())),
                ("start", Amf0Value::Number(0.0)),
            ])],
        );
        assert!(
            matches!(ClientCommand::from_command(&c), ClientCommand::Play { name, start, .. } if name == "x" && start == 0.0)
        );
    }

    #[test]
    fn stream_path_strips_queries() {
        let p = StreamPath::new("live?token=a", "key?sign=b");
        assert_eq!(p.key(), "live/key");
        assert_eq!(p.query, "token=a&sign=b");
        let p = StreamPath::new("/live/", "cam");
        assert_eq!(p.key(), "live/cam");
        assert_eq!(p.query, "");
    }

    #[test]
    fn apps_of_a_key_run_longest_first_and_stop_at_segments() {
        let apps: Vec<&str> = apps_of("live/team/cam").collect();
        assert_eq!(apps, vec!["live/team", "live"]);
        assert_eq!(apps_of("live/cam").collect::<Vec<_>>(), vec!["live"]);
        assert!(key_in_app("live/team/cam", "live"));
        assert!(key_in_app("live/team/cam", "live/team"));
        assert!(!key_in_app("liveX/cam", "live"));
        assert!(!key_in_app("live", "live"));
        assert!(is_app_name("live") && is_app_name("live/team"));
        assert!(!is_app_name("") && !is_app_name("/live") && !is_app_name("a//b"));
        assert!(!is_app_name("live?x=1"));
    }

    #[test]
    fn unknown_commands_are_kept() {
        let c = cmd("fancyThing", Amf0Value::Null, vec![]);
        assert_eq!(
            ClientCommand::from_command(&c),
            ClientCommand::Unknown {
                name: "fancyThing".into()
            }
        );
    }
}
