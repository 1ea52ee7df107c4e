//! Secrets kept out of logs and error messages.
//!
//! Push targets carry their stream key in the URL path
//! (`rtmp://a.rtmp.youtube.com/live2/KEY`), clients carry keys and tokens in
//! the query of their tcUrl or stream name (`cam?token=…`), and a hook URL
//! may hold a credential of its own. Logs are read by more people than
//! config files, so whatever is logged goes through one of the wrappers
//! here. Each keeps what tells peers and streams apart (scheme, host, port,
//! app, parameter names) and prints [`MASK`] for the rest. Routing keys
//! (`app/name`, no query) are not secrets and are logged as they are.
//!
//! The wrappers implement `Display` and copy nothing, so a `tracing` field
//! costs nothing unless the line is emitted: `target = %redact::url(&u)`.

use std::fmt::{self, Display, Formatter, Write};

/// What stands in for a hidden value.
pub const MASK: &str = "***";

/// A URL of a peer we dial (origin, push or forward target, auth hook):
/// scheme, host, port and the first path segment (the app) are kept; user
/// info, every later path segment (a push URL's stream key) and every
/// query value are masked.
pub fn url(s: &str) -> Url<'_> {
    Url {
        s,
        whole_path: false,
    }
}

/// A client's tcUrl: its path is the client's app and is kept; user info
/// and every query value are masked.
pub fn tc_url(s: &str) -> Url<'_> {
    Url {
        s,
        whole_path: true,
    }
}

/// A stream name or app as a client sent it, possibly with a `?query`:
/// the part before `?` is kept, every query value masked.
pub fn name(s: &str) -> Name<'_> {
    Name(s)
}

/// See [`url`] and [`tc_url`].
#[derive(Debug, Clone, Copy)]
pub struct Url<'a> {
    s: &'a str,
    whole_path: bool,
}

/// See [`name`].
#[derive(Debug, Clone, Copy)]
pub struct Name<'a>(&'a str);

/// Writes `a=1&b&c=3` as `a=***&***&c=***`: names stay (they say which
/// credential was sent), values go. A bare item has no name, so all of it
/// may be a secret.
fn write_query(f: &mut Formatter<'_>, query: &str) -> fmt::Result {
    for (i, item) in query.split('&').enumerate() {
        if i > 0 {
            f.write_char('&')?;
        }
        match item.split_once('=') {
            Some((k, _)) => write!(f, "{k}={MASK}")?,
            None if item.is_empty() => {}
            None => f.write_str(MASK)?,
        }
    }
    Ok(())
}

impl Display for Name<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0.split_once('?') {
            Some((name, query)) => {
                write!(f, "{name}?")?;
                write_query(f, query)
            }
            None => f.write_str(self.0),
        }
    }
}

impl Display for Url<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        // The query first: its values may hold `/` or `@`.
        let (head, query) = match self.s.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (self.s, None),
        };
        let Some((scheme, rest)) = head.split_once("://") else {
            // Not a URL at all: treat it as a name.
            return name(self.s).fmt(f);
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        write!(f, "{scheme}://")?;
        match authority.rsplit_once('@') {
            Some((_, host)) => write!(f, "{MASK}@{host}")?,
            None => f.write_str(authority)?,
        }
        if !path.is_empty() || rest.len() > authority.len() {
            f.write_char('/')?;
        }
        if self.whole_path {
            f.write_str(path)?;
        } else {
            match path.split_once('/') {
                Some((app, more)) if !more.trim_matches('/').is_empty() => {
                    write!(f, "{app}/{MASK}")?
                }
                _ => f.write_str(path)?,
            }
        }
        if let Some(q) = query {
            f.write_char('?')?;
            write_query(f, q)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_urls_keep_host_and_app_but_not_the_key() {
        let shown = url("rtmp://a.rtmp.youtube.com/live2/abcd-1234-SECRET").to_string();
        assert_eq!(shown, "rtmp://a.rtmp.youtube.com/live2/***");
        assert_eq!(
            url("rtmps://h:443/app/inst/deeper?sign=SECRET&x").to_string(),
            "rtmps://h:443/app/***?sign=***&***"
        );
        assert_eq!(url("rtmp://h:1935/live").to_string(), "rtmp://h:1935/live");
        assert_eq!(url("rtmp://h").to_string(), "rtmp://h");
        assert_eq!(url("rtmp://h/live/").to_string(), "rtmp://h/live/");
        assert_eq!(
            url("http://user:SECRET@hook.example/auth?token=SECRET").to_string(),
            "http://***@hook.example/auth?token=***"
        );
    }

    #[test]
    fn tc_urls_keep_the_app_path_and_mask_query_values() {
        assert_eq!(
            tc_url("rtmp://127.0.0.1:1935/live/team?token=1.SECRET/cam").to_string(),
            "rtmp://127.0.0.1:1935/live/team?token=***"
        );
        assert_eq!(tc_url("rtmp://h/live").to_string(), "rtmp://h/live");
    }

    #[test]
    fn names_keep_the_name_and_mask_query_values() {
        assert_eq!(
            name("cam?key=SECRET&token=SECRET").to_string(),
            "cam?key=***&token=***"
        );
        assert_eq!(name("live?SECRET").to_string(), "live?***");
        assert_eq!(name("team/cam").to_string(), "team/cam");
        // Not a URL: handled as a name.
        assert_eq!(url("cam?sign=SECRET").to_string(), "cam?sign=***");
    }
}
