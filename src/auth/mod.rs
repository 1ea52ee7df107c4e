//! Publish and play authorization: static stream keys, HMAC-SHA256
//! expiring tokens, and CIDR allow/deny lists, decided once per
//! `publish`/`play` command before the session answers it.
//!
//! The checks are pure (the caller passes the peer address and the wall
//! clock), so they are unit-tested without sockets or time. The per-IP
//! connection limiter lives in [`limits`].

pub mod cidr;
pub mod limits;
pub mod token;

use std::net::IpAddr;

use crate::config::AuthSection;
use crate::protocol::command::StreamPath;

pub use cidr::Cidr;
pub use limits::{ConnLimiter, ConnPermit, LimitExceeded};
pub use token::{sign, verify};

/// What a client asks to do with a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Play,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Play => "play",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "publish" => Some(Action::Publish),
            "play" => Some(Action::Play),
            _ => None,
        }
    }
}

/// How an action is authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Open,
    Key,
    Token,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "open" => Some(Mode::Open),
            "key" => Some(Mode::Key),
            "token" => Some(Mode::Token),
            _ => None,
        }
    }
}

/// Why an action was refused (the `reason` label; never contains secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("address not allowed")]
    Address,
    #[error("no credential")]
    Missing,
    #[error("wrong key")]
    BadKey,
    #[error("bad token")]
    BadToken,
    #[error("token expired")]
    Expired,
}

impl Denial {
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::Address => "address",
            Denial::Missing => "missing",
            Denial::BadKey => "bad_key",
            Denial::BadToken => "bad_token",
            Denial::Expired => "expired",
        }
    }
}

/// The metric label of a refusal.
pub fn rejection_label(action: Action, d: Denial) -> crate::metrics::AuthRejection {
    use crate::metrics::AuthRejection as R;
    match (action, d) {
        (Action::Publish, Denial::Address) => R::PublishAddress,
        (Action::Publish, Denial::Missing) => R::PublishMissing,
        (Action::Publish, Denial::BadKey) => R::PublishBadKey,
        (Action::Publish, Denial::BadToken) => R::PublishBadToken,
        (Action::Publish, Denial::Expired) => R::PublishExpired,
        (Action::Play, Denial::Address) => R::PlayAddress,
        (Action::Play, Denial::Missing) => R::PlayMissing,
        (Action::Play, Denial::BadKey) => R::PlayBadKey,
        (Action::Play, Denial::BadToken) => R::PlayBadToken,
        (Action::Play, Denial::Expired) => R::PlayExpired,
    }
}

/// Seconds since the Unix epoch from the wall clock (tokens carry wall time).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The rule of one action.
#[derive(Debug, Clone)]
struct Rule {
    mode: Mode,
    keys: Vec<String>,
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
}

impl Rule {
    fn address_ok(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

/// The parsed `[auth]` section, built once per worker.
#[derive(Debug, Clone)]
pub struct Policy {
    publish: Rule,
    play: Rule,
    secret: Vec<u8>,
}

/// A key rule with no keys: refuses everything.
fn closed_rule() -> Rule {
    Rule {
        mode: Mode::Key,
        keys: Vec::new(),
        allow: Vec::new(),
        deny: Vec::new(),
    }
}

/// Every problem of an `[auth]` section, as (key, why).
pub fn problems(a: &AuthSection) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (key, mode, keys) in [
        ("auth.publish", &a.publish, &a.publish_keys),
        ("auth.play", &a.play, &a.play_keys),
    ] {
        match Mode::parse(mode) {
            None => out.push((key, "expected open, key or token".to_string())),
            Some(Mode::Key) if keys.iter().all(|k| k.is_empty()) => {
                out.push((key, "mode \"key\" needs a non-empty key list".to_string()))
            }
            Some(Mode::Token) if a.secret.is_empty() => {
                out.push((key, "mode \"token\" needs auth.secret".to_string()))
            }
            _ => {}
        }
    }
    for (key, list) in [
        ("auth.publish_allow", &a.publish_allow),
        ("auth.publish_deny", &a.publish_deny),
        ("auth.play_allow", &a.play_allow),
        ("auth.play_deny", &a.play_deny),
    ] {
        for c in list {
            if let Err(why) = Cidr::parse(c) {
                out.push((key, why));
            }
        }
    }
    out
}

fn cidrs(list: &[String]) -> Result<Vec<Cidr>, String> {
    list.iter().map(|c| Cidr::parse(c)).collect()
}

impl Policy {
    pub fn from_config(a: &AuthSection) -> Result<Policy, String> {
        if let Some((key, why)) = problems(a).into_iter().next() {
            return Err(format!("{key}: {why}"));
        }
        let rule = |mode: &str, keys: &[String], allow: &[String], deny: &[String]| {
            Ok::<Rule, String>(Rule {
                mode: Mode::parse(mode).unwrap_or(Mode::Open),
                keys: keys.iter().filter(|k| !k.is_empty()).cloned().collect(),
                allow: cidrs(allow)?,
                deny: cidrs(deny)?,
            })
        };
        Ok(Policy {
            publish: rule(
                &a.publish,
                &a.publish_keys,
                &a.publish_allow,
                &a.publish_deny,
            )?,
            play: rule(&a.play, &a.play_keys, &a.play_allow, &a.play_deny)?,
            secret: a.secret.as_bytes().to_vec(),
        })
    }

    /// Refuses every publish and play (for a section that failed to parse,
    /// so a mistake never opens the node).
    pub fn deny_all() -> Policy {
        Policy {
            publish: closed_rule(),
            play: closed_rule(),
            secret: Vec::new(),
        }
    }

    /// True when every check is a no-op (the default): callers may skip
    /// the decision entirely.
    pub fn is_open(&self, action: Action) -> bool {
        let r = self.rule(action);
        r.mode == Mode::Open && r.allow.is_empty() && r.deny.is_empty()
    }

    fn rule(&self, action: Action) -> &Rule {
        match action {
            Action::Publish => &self.publish,
            Action::Play => &self.play,
        }
    }

    /// Decides one action: addresses first (deny wins, an empty allow list
    /// allows all), then the credential in the query.
    pub fn check(
        &self,
        action: Action,
        peer: IpAddr,
        path: &StreamPath,
        now_unix: u64,
    ) -> Result<(), Denial> {
        let rule = self.rule(action);
        if !rule.address_ok(peer) {
            return Err(Denial::Address);
        }
        match rule.mode {
            Mode::Open => Ok(()),
            Mode::Key => {
                let given = query_param(&path.query, "key").ok_or(Denial::Missing)?;
                if rule
                    .keys
                    .iter()
                    .any(|k| ct_eq(k.as_bytes(), given.as_bytes()))
                {
                    Ok(())
                } else {
                    Err(Denial::BadKey)
                }
            }
            Mode::Token => {
                let given = query_param(&path.query, "token").ok_or(Denial::Missing)?;
                verify(&self.secret, action, &path.key(), given, now_unix)
            }
        }
    }
}

/// The first value of `name` in an `a=b&c=d` query.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares without an early exit, so timing does not reveal a key prefix.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> AuthSection {
        AuthSection::default()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_is_open() {
        let p = Policy::from_config(&section()).unwrap();
        assert!(p.is_open(Action::Publish) && p.is_open(Action::Play));
        let path = StreamPath::new("live", "x");
        assert_eq!(p.check(Action::Publish, ip("1.2.3.4"), &path, 0), Ok(()));
    }

    #[test]
    fn static_keys() {
        let mut a = section();
        a.publish = "key".into();
        a.publish_keys = vec!["s3cret".into(), "other".into()];
        let p = Policy::from_config(&a).unwrap();
        let peer = ip("10.0.0.1");
        let check =
            |app: &str, name: &str| p.check(Action::Publish, peer, &StreamPath::new(app, name), 0);
        assert_eq!(check("live", "cam?key=s3cret"), Ok(()));
        assert_eq!(check("live?key=other", "cam"), Ok(()));
        assert_eq!(check("live", "cam?key=nope"), Err(Denial::BadKey));
        assert_eq!(check("live", "cam"), Err(Denial::Missing));
        // Play stays open.
        assert_eq!(
            p.check(Action::Play, peer, &StreamPath::new("live", "cam"), 0),
            Ok(())
        );
    }

    #[test]
    fn tokens() {
        let mut a = section();
        a.play = "token".into();
        a.secret = "k".into();
        let p = Policy::from_config(&a).unwrap();
        let t = sign(b"k", Action::Play, "live/cam", 100);
        let peer = ip("::1");
        let path = StreamPath::new("live", &format!("cam?token={t}"));
        assert_eq!(p.check(Action::Play, peer, &path, 99), Ok(()));
        assert_eq!(
            p.check(Action::Play, peer, &path, 101),
            Err(Denial::Expired)
        );
        // Bound to the stream and the action.
        let other = StreamPath::new("live", &format!("cam2?token={t}"));
        assert_eq!(
            p.check(Action::Play, peer, &other, 99),
            Err(Denial::BadToken)
        );
        let tp = sign(b"k", Action::Publish, "live/cam", 100);
        let wrong = StreamPath::new(&format!("live?token={tp}"), "cam");
        assert_eq!(
            p.check(Action::Play, peer, &wrong, 99),
            Err(Denial::BadToken)
        );
    }

    #[test]
    fn cidr_deny_wins() {
        let mut a = section();
        a.play_allow = vec!["127.0.0.0/8".into()];
        a.play_deny = vec!["127.0.0.1/32".into()];
        let p = Policy::from_config(&a).unwrap();
        let path = StreamPath::new("live", "x");
        assert_eq!(
            p.check(Action::Play, ip("127.0.0.1"), &path, 0),
            Err(Denial::Address)
        );
        assert_eq!(p.check(Action::Play, ip("127.0.0.2"), &path, 0), Ok(()));
        assert_eq!(
            p.check(Action::Play, ip("10.0.0.1"), &path, 0),
            Err(Denial::Address)
        );
        assert_eq!(p.check(Action::Publish, ip("127.0.0.1"), &path, 0), Ok(()));
    }

    #[test]
    fn bad_sections_are_named() {
        let mut a = section();
        a.publish = "token".into();
        a.play = "maybe".into();
        a.play_deny = vec!["300.0.0.0/8".into()];
        let keys: Vec<_> = problems(&a).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["auth.publish", "auth.play", "auth.play_deny"]);
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param("a=1&token=x&b", "token"), Some("x"));
        assert_eq!(query_param("tokens=1", "token"), None);
        assert_eq!(query_param("", "key"), None);
    }
}
