//! Publish and play authorization, per app and action: static stream
//! keys, HMAC-SHA256 expiring tokens, an HTTP hook, and CIDR allow/deny
//! lists, decided once per `publish`/`play` command before the session
//! answers it.
//!
//! The local checks are pure (the caller passes the peer address and the
//! wall clock), so they are unit-tested without sockets or time; the hook
//! is asked only after they pass ([`hook`]). The per-IP connection limiter
//! lives in [`limits`].

pub mod hook;
pub mod limits;
pub mod token;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::auth_rules::Effective;
use crate::config::AuthSection;
use crate::protocol::command::{apps_of, StreamPath};

pub use crate::config::auth_rules::{problems, Mode};
pub use crate::config::cidr::{self, Cidr};
pub use crate::config::redact;
pub use hook::{Hook, HookConfig, HookRequest, Outcome};
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
    #[error("refused by the auth hook")]
    Hook,
    #[error("auth hook failed")]
    HookFailed,
    /// Too many hook requests waiting: refused whatever
    /// `auth.hook_on_error` says, or a flood would open the node.
    #[error("auth hook busy")]
    HookBusy,
}

impl Denial {
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::Address => "address",
            Denial::Missing => "missing",
            Denial::BadKey => "bad_key",
            Denial::BadToken => "bad_token",
            Denial::Expired => "expired",
            Denial::Hook => "hook",
            Denial::HookFailed => "hook_error",
            Denial::HookBusy => "hook_busy",
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
        (Action::Publish, Denial::Hook) => R::PublishHook,
        (Action::Publish, Denial::HookFailed) => R::PublishHookError,
        (Action::Publish, Denial::HookBusy) => R::PublishHookBusy,
        (Action::Play, Denial::Address) => R::PlayAddress,
        (Action::Play, Denial::Missing) => R::PlayMissing,
        (Action::Play, Denial::BadKey) => R::PlayBadKey,
        (Action::Play, Denial::BadToken) => R::PlayBadToken,
        (Action::Play, Denial::Expired) => R::PlayExpired,
        (Action::Play, Denial::Hook) => R::PlayHook,
        (Action::Play, Denial::HookFailed) => R::PlayHookError,
        (Action::Play, Denial::HookBusy) => R::PlayHookBusy,
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

/// The rules of one app (or of every app without its own).
#[derive(Debug, Clone)]
struct Rules {
    publish: Rule,
    play: Rule,
}

impl Rules {
    fn get(&self, action: Action) -> &Rule {
        match action {
            Action::Publish => &self.publish,
            Action::Play => &self.play,
        }
    }
}

/// What a hook failure means (`auth.hook_on_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnHookError {
    Deny,
    Allow,
}

/// The parsed `[auth]` section. Built once per configuration (start and
/// each reload) and shared by every worker.
#[derive(Debug, Clone)]
pub struct Policy {
    default: Rules,
    apps: HashMap<String, Rules>,
    secret: Vec<u8>,
    hook: Option<Arc<Hook>>,
    on_hook_error: OnHookError,
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

fn cidrs(list: &[String]) -> Result<Vec<Cidr>, String> {
    list.iter().map(|c| Cidr::parse(c)).collect()
}

fn rules(e: &Effective) -> Result<Rules, String> {
    let rule = |mode: &str, keys: &[String], allow: &[String], deny: &[String]| {
        Ok::<Rule, String>(Rule {
            mode: Mode::parse(mode).unwrap_or(Mode::Open),
            keys: keys.iter().filter(|k| !k.is_empty()).cloned().collect(),
            allow: cidrs(allow)?,
            deny: cidrs(deny)?,
        })
    };
    Ok(Rules {
        publish: rule(e.publish, e.publish_keys, e.publish_allow, e.publish_deny)?,
        play: rule(e.play, e.play_keys, e.play_allow, e.play_deny)?,
    })
}

impl Policy {
    pub fn from_config(a: &AuthSection) -> Result<Policy, String> {
        if let Some((key, why)) = problems(a).into_iter().next() {
            return Err(format!("{key}: {why}"));
        }
        let mut apps = HashMap::new();
        for app in &a.app {
            apps.insert(app.name.clone(), rules(&Effective::of(a, Some(app)))?);
        }
        let hook = (!a.hook_url.is_empty()).then(|| {
            Hook::new(HookConfig {
                url: a.hook_url.clone(),
                timeout: Duration::from_millis(a.hook_timeout_ms),
                threads: a.hook_threads,
                max_pending: a.hook_max_pending,
            })
        });
        Ok(Policy {
            default: rules(&Effective::of(a, None))?,
            apps,
            secret: a.secret.as_bytes().to_vec(),
            hook,
            on_hook_error: if a.hook_on_error == "allow" {
                OnHookError::Allow
            } else {
                OnHookError::Deny
            },
        })
    }

    /// Refuses every publish and play (for a section that failed to parse,
    /// so a mistake never opens the node).
    pub fn deny_all() -> Policy {
        Policy {
            default: Rules {
                publish: closed_rule(),
                play: closed_rule(),
            },
            apps: HashMap::new(),
            secret: Vec::new(),
            hook: None,
            on_hook_error: OnHookError::Deny,
        }
    }

    /// The rule of `action` on the stream `key` (`app/name`): the
    /// `[[auth.app]]` whose name is the longest run of the key's leading
    /// segments, else `[auth]`'s. Chosen from the key, not from the app the
    /// client sent: `live` + `team/cam` and `live/team` + `cam` are the same
    /// stream and must meet the same rule.
    fn rule(&self, action: Action, key: &str) -> &Rule {
        apps_of(key)
            .find_map(|app| self.apps.get(app))
            .unwrap_or(&self.default)
            .get(action)
    }

    /// True when every check of `action` on the stream `key` is a no-op
    /// (the default): callers may skip the decision entirely.
    pub fn is_open(&self, action: Action, key: &str) -> bool {
        let r = self.rule(action, key);
        r.mode == Mode::Open && r.allow.is_empty() && r.deny.is_empty()
    }

    /// The hook to ask after [`Policy::check`] passes, if the rule of the
    /// stream `key` uses one.
    pub fn hook_for(&self, action: Action, key: &str) -> Option<&Arc<Hook>> {
        (self.rule(action, key).mode == Mode::Hook)
            .then_some(self.hook.as_ref())
            .flatten()
    }

    /// The hook's answer as a decision: a failure under
    /// `auth.hook_on_error`, a full queue always a refusal.
    pub fn hook_verdict(&self, outcome: &Outcome) -> Result<(), Denial> {
        match outcome {
            Outcome::Allow => Ok(()),
            Outcome::Deny(_) => Err(Denial::Hook),
            Outcome::Busy => Err(Denial::HookBusy),
            Outcome::Failed(_) if self.on_hook_error == OnHookError::Allow => Ok(()),
            Outcome::Failed(_) => Err(Denial::HookFailed),
        }
    }

    /// Decides one action locally: addresses first (deny wins, an empty
    /// allow list allows all), then the credential in the query. A rule in
    /// hook mode passes here; its hook decides next.
    pub fn check(
        &self,
        action: Action,
        peer: IpAddr,
        path: &StreamPath,
        now_unix: u64,
    ) -> Result<(), Denial> {
        let key = path.key();
        let rule = self.rule(action, &key);
        if !rule.address_ok(peer) {
            return Err(Denial::Address);
        }
        match rule.mode {
            Mode::Open | Mode::Hook => Ok(()),
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
                verify(&self.secret, action, &key, given, now_unix)
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
mod tests;
