//! A player as the hub sees it, checking what it is given: a start before
//! any live frame, no inter video before a keyframe after a start, each
//! track's timestamps never going back (wrap-aware), nothing after the end
//! or after leaving.

use std::cell::{Cell, RefCell};
use std::time::Instant;

use cascade::hub::{Frame, Subscriber};
use cascade::protocol::session::MediaKind;

/// What one player saw, checked as it arrives.
#[derive(Default)]
pub struct Seen {
    pub started: bool,
    /// Inter video would be undecodable: no keyframe since the last start.
    pub need_key: bool,
    /// Last timestamp per track (audio, video, data).
    pub last: [Option<u32>; 3],
    pub ended: bool,
    /// Unsubscribed: the hub must not call it again.
    pub gone: bool,
    pub problems: Vec<String>,
}

/// A player as the hub sees it; records problems instead of panicking
/// inside a hub call, so the failure report can show the steps.
pub struct TestSub {
    pub id: u64,
    pub seen: RefCell<Seen>,
    pub closed: Cell<bool>,
}

impl TestSub {
    fn problem(&self, s: &mut Seen, what: String) {
        s.problems.push(format!("player {}: {what}", self.id));
    }

    /// Checks one frame the player gets, in a start or live.
    fn see(&self, s: &mut Seen, f: &Frame, how: &str) {
        if s.ended || s.gone {
            let why = if s.ended { "end" } else { "leaving" };
            self.problem(s, format!("{how} after {why}"));
        }
        let coded_video = f.kind == MediaKind::Video && f.header.is_none();
        if coded_video && f.keyframe {
            s.need_key = false;
        } else if coded_video && s.need_key {
            self.problem(
                s,
                format!("{how} inter video at {} before a keyframe", f.timestamp),
            );
        }
        // Headers are codec settings, not samples, and metadata always
        // goes out at 0: neither is on a track's timeline.
        let slot = match f.kind {
            _ if f.header.is_some() => return,
            MediaKind::Audio => 0,
            MediaKind::Video => 1,
            MediaKind::Data => 2,
            MediaKind::Metadata => return,
        };
        if let Some(prev) = s.last[slot] {
            if (f.timestamp.wrapping_sub(prev) as i32) < 0 {
                let what = format!(
                    "{how} {:?} went back from {prev} to {}",
                    f.kind, f.timestamp
                );
                self.problem(s, what);
            }
        }
        s.last[slot] = Some(f.timestamp);
    }
}

impl Subscriber for TestSub {
    fn start(&self, frames: &[Frame]) {
        let s = &mut *self.seen.borrow_mut();
        s.started = true;
        s.need_key = true;
        for f in frames {
            self.see(s, f, "start");
        }
    }

    fn offer(&self, frame: &Frame, _: Instant) -> bool {
        let s = &mut *self.seen.borrow_mut();
        if !s.started {
            self.problem(s, "live frame before its start".into());
        }
        self.see(s, frame, "live");
        true
    }

    fn end(&self) {
        let s = &mut *self.seen.borrow_mut();
        if s.ended || s.gone {
            self.problem(s, "end after end or leaving".into());
        }
        s.ended = true;
    }

    fn is_closed(&self) -> bool {
        self.closed.get()
    }
}
