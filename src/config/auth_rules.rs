//! The `[auth]` section read as rules: which mode and lists apply to an
//! app (its own settings over the section's), and every problem of the
//! section, for `check-config` and start-up. The decisions themselves live
//! in `crate::auth`, which builds on this.

use super::cidr::Cidr;
use super::{AppAuth, AuthSection};
use crate::protocol::command::is_app_name;

/// How an action is authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Open,
    Key,
    Token,
    /// Asked of `auth.hook_url` (after the address lists).
    Hook,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "open" => Some(Mode::Open),
            "key" => Some(Mode::Key),
            "token" => Some(Mode::Token),
            "hook" => Some(Mode::Hook),
            _ => None,
        }
    }
}

/// One app's settings with the section's as fallback.
pub struct Effective<'a> {
    pub publish: &'a str,
    pub play: &'a str,
    pub publish_keys: &'a [String],
    pub play_keys: &'a [String],
    pub publish_allow: &'a [String],
    pub publish_deny: &'a [String],
    pub play_allow: &'a [String],
    pub play_deny: &'a [String],
}

impl<'a> Effective<'a> {
    pub fn of(a: &'a AuthSection, app: Option<&'a AppAuth>) -> Effective<'a> {
        fn pick<'a, T: ?Sized>(own: Option<&'a T>, global: &'a T) -> &'a T {
            own.unwrap_or(global)
        }
        Effective {
            publish: pick(app.and_then(|p| p.publish.as_deref()), &a.publish),
            play: pick(app.and_then(|p| p.play.as_deref()), &a.play),
            publish_keys: pick(app.and_then(|p| p.publish_keys.as_deref()), &a.publish_keys),
            play_keys: pick(app.and_then(|p| p.play_keys.as_deref()), &a.play_keys),
            publish_allow: pick(
                app.and_then(|p| p.publish_allow.as_deref()),
                &a.publish_allow,
            ),
            publish_deny: pick(app.and_then(|p| p.publish_deny.as_deref()), &a.publish_deny),
            play_allow: pick(app.and_then(|p| p.play_allow.as_deref()), &a.play_allow),
            play_deny: pick(app.and_then(|p| p.play_deny.as_deref()), &a.play_deny),
        }
    }
}

/// Every problem of an `[auth]` section, as (key, why).
pub fn problems(a: &AuthSection) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let scopes = std::iter::once(None).chain(a.app.iter().map(Some));
    for app in scopes {
        let e = Effective::of(a, app);
        for (key, mode, keys) in [
            ("auth.publish", e.publish, e.publish_keys),
            ("auth.play", e.play, e.play_keys),
        ] {
            let scope = app
                .map(|p| format!(" (app {:?})", p.name))
                .unwrap_or_default();
            match Mode::parse(mode) {
                None => out.push((key, format!("expected open, key, token or hook{scope}"))),
                Some(Mode::Key) if keys.iter().all(|k| k.is_empty()) => out.push((
                    key,
                    format!("mode \"key\" needs a non-empty key list{scope}"),
                )),
                Some(Mode::Token) if a.secret.is_empty() => {
                    out.push((key, format!("mode \"token\" needs auth.secret{scope}")))
                }
                Some(Mode::Hook) if a.hook_url.is_empty() => {
                    out.push((key, format!("mode \"hook\" needs auth.hook_url{scope}")))
                }
                _ => {}
            }
        }
        for (key, list) in [
            ("auth.publish_allow", e.publish_allow),
            ("auth.publish_deny", e.publish_deny),
            ("auth.play_allow", e.play_allow),
            ("auth.play_deny", e.play_deny),
        ] {
            for c in list {
                if let Err(why) = Cidr::parse(c) {
                    out.push((key, why));
                }
            }
        }
    }
    let mut names = std::collections::HashSet::new();
    for app in &a.app {
        if !is_app_name(&app.name) {
            out.push((
                "auth.app.name",
                format!(
                    "{:?}: expected an app name (segments joined by /)",
                    app.name
                ),
            ));
        } else if !names.insert(app.name.as_str()) {
            out.push(("auth.app.name", format!("{:?} appears twice", app.name)));
        }
    }
    if !a.hook_url.is_empty() {
        if let Err(why) = check_url(&a.hook_url) {
            out.push(("auth.hook_url", why));
        }
    }
    if !["deny", "allow"].contains(&a.hook_on_error.as_str()) {
        out.push(("auth.hook_on_error", "expected deny or allow".into()));
    }
    if a.hook_timeout_ms == 0 {
        out.push(("auth.hook_timeout_ms", "must be > 0".into()));
    }
    if a.hook_threads == 0 {
        out.push(("auth.hook_threads", "must be > 0".into()));
    }
    if a.hook_max_pending == 0 {
        out.push(("auth.hook_max_pending", "must be > 0".into()));
    }
    out
}

/// A hook URL is http(s) with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let shown = super::redact::url(url);
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{shown}: expected http://host[:port]/path or https://..."))?;
    if rest.split('/').next().unwrap_or("").is_empty() {
        return Err(format!("{shown}: missing host"));
    }
    Ok(())
}
