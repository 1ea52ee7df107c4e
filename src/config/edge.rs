//! The `[edge]` section (origins, per-app overrides, publish forwarding),
//! the `[[push]]` targets, and the URL form every dialled peer uses.

use serde::{Deserialize, Serialize};

use super::redact;
use crate::protocol::command::{apps_of, is_app_name, key_in_app};

/// Edge mode: a play for a stream this node does not have pulls it from an
/// origin; a publish may be forwarded to one. Inert while no app has origins.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeSection {
    /// `rtmp://host[:port][/app]` URLs; without an app the player's app is used.
    pub origins: Vec<String>,
    /// "failover" (in order, sticky to a healthy origin) or "hash"
    /// (rendezvous hashing of the stream key over the origins).
    pub mode: String,
    /// TCP connect plus RTMP handshake to an origin.
    pub connect_timeout_ms: u64,
    /// How long players wait for a pull to deliver its first media (and how
    /// long a forward or push waits for the origin's Publish.Start).
    pub start_timeout_ms: u64,
    /// First pause between reconnect rounds; doubles up to the max.
    pub retry_backoff_ms: u64,
    pub retry_backoff_max_ms: u64,
    /// A pull closes this long after its last player left.
    pub linger_ms: u64,
    /// Forward the player's query string (tokens) to the origin's play name
    /// (and a publisher's to the forwarded publish name).
    pub pass_query: bool,
    /// Forward streams published to this node to an origin (chosen like a
    /// pull's). The stream plays locally too.
    pub forward_publish: bool,
    /// Check `rtmps://` peers' certificates (chain and host name). Off
    /// only for test origins with self-signed certificates.
    pub tls_verify: bool,
    /// PEM file of CA certificates to trust for `rtmps://` peers instead of
    /// the bundled Mozilla roots (a private CA); empty: bundled roots.
    pub tls_ca_file: String,
    /// Per-app overrides (`[[edge.app]]`); a stream takes the one whose
    /// name is the longest run of leading segments of its key.
    pub app: Vec<EdgeApp>,
}

impl Default for EdgeSection {
    fn default() -> Self {
        EdgeSection {
            origins: Vec::new(),
            mode: "failover".into(),
            connect_timeout_ms: 3_000,
            start_timeout_ms: 5_000,
            retry_backoff_ms: 500,
            retry_backoff_max_ms: 5_000,
            linger_ms: 5_000,
            pass_query: false,
            forward_publish: false,
            tls_verify: true,
            tls_ca_file: String::new(),
            app: Vec::new(),
        }
    }
}

/// One `[[edge.app]]` table: keys left out inherit `[edge]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeApp {
    /// The app (`live`, or `live/team`): covers every stream key whose
    /// leading segments are this.
    pub name: String,
    pub origins: Option<Vec<String>>,
    pub mode: Option<String>,
    pub start_timeout_ms: Option<u64>,
    pub linger_ms: Option<u64>,
    pub pass_query: Option<bool>,
    pub forward_publish: Option<bool>,
}

impl EdgeSection {
    /// The settings that apply to the stream `key` (`app/name`): `[edge]`
    /// with the matching `[[edge.app]]` laid over it (its `app` list left
    /// empty). Chosen from the key, as `[auth]` rules are, so a stream
    /// routes the same however a client splits it into app and name.
    pub fn for_key(&self, key: &str) -> EdgeSection {
        let mut out = EdgeSection {
            app: Vec::new(),
            origins: Vec::new(),
            ..self.clone()
        };
        let over = apps_of(key).find_map(|app| self.app.iter().find(|a| a.name == app));
        out.origins = match over.and_then(|a| a.origins.as_ref()) {
            Some(o) => o.clone(),
            None => self.origins.clone(),
        };
        if let Some(a) = over {
            if let Some(m) = &a.mode {
                out.mode = m.clone();
            }
            out.start_timeout_ms = a.start_timeout_ms.unwrap_or(out.start_timeout_ms);
            out.linger_ms = a.linger_ms.unwrap_or(out.linger_ms);
            out.pass_query = a.pass_query.unwrap_or(out.pass_query);
            out.forward_publish = a.forward_publish.unwrap_or(out.forward_publish);
        }
        out
    }

    /// Every value that parses but makes no sense, as (key, why).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut errs = Vec::new();
        let modes = ["failover", "hash"];
        for o in &self.origins {
            if let Err(why) = OriginUrl::parse(o) {
                errs.push(("edge.origins", why));
            }
        }
        if !modes.contains(&self.mode.as_str()) {
            errs.push(("edge.mode", "expected failover or hash".into()));
        }
        if !self.tls_ca_file.is_empty() && !std::path::Path::new(&self.tls_ca_file).is_file() {
            errs.push(("edge.tls_ca_file", "no such file".into()));
        }
        if self.connect_timeout_ms == 0 {
            errs.push(("edge.connect_timeout_ms", "must be > 0".into()));
        }
        if self.start_timeout_ms == 0 {
            errs.push(("edge.start_timeout_ms", "must be > 0".into()));
        }
        if self.retry_backoff_max_ms < self.retry_backoff_ms {
            errs.push((
                "edge.retry_backoff_max_ms",
                "must be >= edge.retry_backoff_ms".into(),
            ));
        }
        for (i, a) in self.app.iter().enumerate() {
            if !is_app_name(&a.name) {
                errs.push(("edge.app.name", format!("entry {i}: expected an app name")));
            }
            if self.app[..i].iter().any(|b| b.name == a.name) {
                errs.push(("edge.app.name", format!("{:?} is listed twice", a.name)));
            }
            for o in a.origins.iter().flatten() {
                if let Err(why) = OriginUrl::parse(o) {
                    errs.push(("edge.app.origins", why));
                }
            }
            if a.mode.as_deref().is_some_and(|m| !modes.contains(&m)) {
                errs.push(("edge.app.mode", "expected failover or hash".into()));
            }
            if a.start_timeout_ms == Some(0) {
                errs.push(("edge.app.start_timeout_ms", "must be > 0".into()));
            }
        }
        errs
    }
}

/// One `[[push]]` table: re-publish an app's streams to fixed targets
/// (multistreaming). Each target runs on its own and reconnects forever
/// while the stream lives.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushEntry {
    /// Only streams of this app are pushed (keys whose leading segments
    /// are this); empty for every app.
    pub app: String,
    /// `rtmp://host[:port]/app[/name]`: the stream's own name is appended
    /// unless the URL names one.
    pub urls: Vec<String>,
}

impl PushEntry {
    /// Whether the stream `key` is pushed by this entry.
    pub fn covers(&self, key: &str) -> bool {
        self.app.is_empty() || key_in_app(key, &self.app)
    }
}

/// Every problem of the `[[push]]` list, as (key, why).
pub fn push_problems(list: &[PushEntry]) -> Vec<(&'static str, String)> {
    let mut errs = Vec::new();
    for (i, p) in list.iter().enumerate() {
        if !p.app.is_empty() && !is_app_name(&p.app) {
            errs.push(("push.app", format!("entry {i}: expected an app name")));
        }
        if p.urls.is_empty() {
            errs.push(("push.urls", format!("entry {i}: no URL")));
        }
        for u in &p.urls {
            match OriginUrl::parse(u) {
                Ok(o) if o.app.is_none() => errs.push((
                    "push.urls",
                    format!("{}: expected rtmp://host[:port]/app[/name]", redact::url(u)),
                )),
                Ok(_) => {}
                Err(why) => errs.push(("push.urls", why)),
            }
        }
    }
    errs
}

/// One peer as dialled: where, and what to say in `connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginUrl {
    /// The URL as configured (may hold a stream key: log it through
    /// `auth::redact::url`).
    pub url: String,
    /// `rtmps://`: TLS on the connection, verified against `host`.
    pub tls: bool,
    /// `host:port` to dial.
    pub addr: String,
    pub host: String,
    pub port: u16,
    /// Application (first path segment); `None` means "the client's app".
    pub app: Option<String>,
    /// Stream name (the rest of the path), if the URL names one.
    pub name: Option<String>,
}

impl OriginUrl {
    /// Parses `rtmp[s]://host[:port][/app[/name]]` (default ports 1935 and
    /// 443, as ffmpeg and librtmp assume).
    pub fn parse(url: &str) -> Result<OriginUrl, String> {
        // Errors are printed and logged: they show the URL without its key.
        let shown = redact::url(url);
        let (tls, rest) = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("rtmp") => (false, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("rtmps") => (true, rest),
            _ => return Err(format!("{shown}: expected rtmp://host[:port][/app]")),
        };
        let (hostport, path) = match rest.split_once('/') {
            Some((h, p)) => (h, p.trim_matches('/')),
            None => (rest, ""),
        };
        let default_port = if tls { 443 } else { 1935 };
        let (host, port) = match hostport.rsplit_once(':') {
            // A bracketed IPv6 address without a port has its colons inside.
            Some((h, p)) if !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{shown}: bad port {p:?}"))?,
            ),
            _ => (hostport, default_port),
        };
        if host.is_empty() {
            return Err(format!("{shown}: missing host"));
        }
        if tls && rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']'])).is_err() {
            return Err(format!("{shown}: {host:?} is not a valid TLS server name"));
        }
        let (app, name) = match path.split_once('/') {
            Some((a, n)) => (a, n.trim_matches('/')),
            None => (path, ""),
        };
        Ok(OriginUrl {
            url: url.to_string(),
            tls,
            addr: format!("{host}:{port}"),
            host: host.to_string(),
            port,
            app: (!app.is_empty()).then(|| app.to_string()),
            name: (!name.is_empty()).then(|| name.to_string()),
        })
    }

    /// The name a TLS peer's certificate must carry (IPv6 unbracketed).
    pub fn server_name(&self) -> Option<rustls::pki_types::ServerName<'static>> {
        rustls::pki_types::ServerName::try_from(self.host.trim_matches(['[', ']']).to_string()).ok()
    }

    /// The whole path (`app` or `app/name`), as an origin's app.
    pub fn path(&self) -> Option<String> {
        match (&self.app, &self.name) {
            (Some(a), Some(n)) => Some(format!("{a}/{n}")),
            (Some(a), None) => Some(a.clone()),
            _ => None,
        }
    }

    /// The tcUrl sent in `connect` for `app`.
    pub fn tc_url(&self, app: &str) -> String {
        let scheme = if self.tls { "rtmps" } else { "rtmp" };
        format!("{scheme}://{}:{}/{app}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_app_and_name() {
        let o = OriginUrl::parse("rtmp://127.0.0.1:1936/live").unwrap();
        assert_eq!(o.addr, "127.0.0.1:1936");
        assert_eq!((o.app.as_deref(), o.name.as_deref()), (Some("live"), None));
        assert_eq!(o.tc_url("live"), "rtmp://127.0.0.1:1936/live");
        let o = OriginUrl::parse("rtmp://origin.example").unwrap();
        assert_eq!((o.addr.as_str(), o.app), ("origin.example:1935", None));
        let o = OriginUrl::parse("rtmp://a.example/live2/abc-123?x=1").unwrap();
        assert_eq!(o.app.as_deref(), Some("live2"));
        assert_eq!(o.name.as_deref(), Some("abc-123?x=1"));
        let o = OriginUrl::parse("rtmps://live.example/app").unwrap();
        assert!(o.tls);
        assert_eq!(o.addr, "live.example:443");
        assert_eq!(o.tc_url("app"), "rtmps://live.example:443/app");
        assert!(OriginUrl::parse("http://x/live").is_err());
        // Errors are printed and logged: the URL's key stays out of them.
        let e = OriginUrl::parse("rtmp://x:0/live2/SECRET?sign=SECRET").unwrap_err();
        assert!(
            e.contains("rtmp://x:0/live2/***") && !e.contains("SECRET"),
            "{e}"
        );
        assert!(OriginUrl::parse("rtmp://x:0/live").is_err());
        assert!(OriginUrl::parse("rtmp://:1935/live").is_err());
    }

    #[test]
    fn rtmps_urls_carry_a_server_name() {
        let o = OriginUrl::parse("rtmps://origin.example/live").unwrap();
        assert!(o.server_name().is_some());
        let o = OriginUrl::parse("RTMPS://127.0.0.1:1443").unwrap();
        assert_eq!((o.addr.as_str(), o.tls), ("127.0.0.1:1443", true));
        assert!(!OriginUrl::parse("rtmp://x/live").unwrap().tls);
    }

    #[test]
    fn app_overrides_inherit_the_rest() {
        let edge = EdgeSection {
            origins: vec!["rtmp://a/live".into()],
            app: vec![EdgeApp {
                name: "studio".into(),
                origins: Some(vec!["rtmp://b/studio".into()]),
                forward_publish: Some(true),
                linger_ms: Some(1),
                ..EdgeApp::default()
            }],
            ..EdgeSection::default()
        };
        let live = edge.for_key("live/cam");
        assert_eq!(live.origins, vec!["rtmp://a/live"]);
        assert!(!live.forward_publish);
        let studio = edge.for_key("studio/cam");
        assert_eq!(studio.origins, vec!["rtmp://b/studio"]);
        assert!(studio.forward_publish);
        assert_eq!((studio.linger_ms, studio.mode.as_str()), (1, "failover"));
        assert!(studio.app.is_empty());
    }

    #[test]
    fn app_overrides_follow_the_stream_key() {
        let over = |name: &str, linger| EdgeApp {
            name: name.into(),
            origins: Some(vec![format!("rtmp://{}/x", name.replace('/', "-"))]),
            linger_ms: Some(linger),
            ..EdgeApp::default()
        };
        let edge = EdgeSection {
            origins: vec!["rtmp://global/live".into()],
            app: vec![over("live", 1), over("live/team", 2)],
            ..EdgeSection::default()
        };
        // One stream, whichever way a client splits app and name.
        assert_eq!(edge.for_key("live/cam").linger_ms, 1);
        assert_eq!(edge.for_key("live/other/cam").linger_ms, 1);
        // The longest matching app wins.
        assert_eq!(edge.for_key("live/team/cam").linger_ms, 2);
        assert_eq!(
            edge.for_key("live/team/cam").origins,
            vec!["rtmp://live-team/x"]
        );
        // Whole segments only.
        assert_eq!(
            edge.for_key("liveX/cam").origins,
            vec!["rtmp://global/live"]
        );
        let push = PushEntry {
            app: "live".into(),
            urls: Vec::new(),
        };
        assert!(push.covers("live/team/cam") && !push.covers("liveX/cam"));
        assert!(PushEntry::default().covers("any/cam"));
    }

    #[test]
    fn push_urls_are_checked() {
        let ok = PushEntry {
            app: "live".into(),
            urls: vec!["rtmp://a:1/live".into(), "rtmp://b/x/key".into()],
        };
        assert!(push_problems(&[ok]).is_empty());
        let bad = PushEntry {
            app: String::new(),
            urls: vec!["rtmp://a:1".into(), "udp://b/x".into()],
        };
        let errs = push_problems(&[bad, PushEntry::default()]);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().all(|(k, _)| k.starts_with("push.")));
    }
}
