//! Loading with every error reported: the file is checked key by key
//! against the embedded defaults (so `cascade check-config` names every
//! unknown key and every wrong type, not just the first), environment
//! overrides `CASCADE_SECTION_KEY=value` are laid over it, and the result
//! is validated. Also: which changed keys a reload can apply live.

use std::path::Path;

use toml::{Table, Value};

use super::{Config, ConfigError};

/// Prefix of environment overrides: `CASCADE_SERVER_LISTEN=0.0.0.0:1936`.
pub const ENV_PREFIX: &str = "CASCADE_";

fn defaults() -> Table {
    match Value::try_from(Config::default()) {
        Ok(Value::Table(t)) => t,
        _ => Table::new(),
    }
}

fn type_name(v: &Value) -> &'static str {
    v.type_str()
}

/// `server.workers` takes a number or a string.
fn type_ok(key: &str, default: &Value, got: &Value) -> bool {
    if key == "server.workers" {
        return matches!(got, Value::Integer(_) | Value::String(_));
    }
    std::mem::discriminant(default) == std::mem::discriminant(got)
}

/// Unknown sections and keys, and values of the wrong type, in the file.
fn check_shape(file: &Table, defaults: &Table) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    for (section, body) in file {
        let known = match defaults.get(section) {
            Some(Value::Table(known)) => known,
            // `[[push]]`: an array of tables whose keys serde checks.
            Some(Value::Array(_)) => {
                let tables = matches!(body, Value::Array(a) if a.iter().all(Value::is_table));
                if !tables {
                    errs.push(ConfigError::Parse(format!(
                        "`{section}` must be a list of tables ([[{section}]])"
                    )));
                }
                continue;
            }
            _ => {
                errs.push(ConfigError::Parse(format!("unknown section `{section}`")));
                continue;
            }
        };
        let Value::Table(body) = body else {
            errs.push(ConfigError::Parse(format!(
                "`{section}` must be a table ([{section}])"
            )));
            continue;
        };
        for (key, v) in body {
            let full = format!("{section}.{key}");
            match known.get(key) {
                None => errs.push(ConfigError::Parse(format!("unknown key `{full}`"))),
                Some(d) if !type_ok(&full, d, v) => errs.push(ConfigError::Parse(format!(
                    "invalid type for `{full}`: expected {}, got {}",
                    type_name(d),
                    type_name(v)
                ))),
                Some(_) => {}
            }
        }
    }
    errs
}

/// Converts an environment value to the type of the key's default.
fn env_value(full: &str, default: &Value, raw: &str) -> Result<Value, String> {
    match default {
        Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| "expected an integer".into()),
        Value::Boolean(_) => match raw.trim() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err("expected true or false".into()),
        },
        Value::Float(_) => raw
            .trim()
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| "expected a number".into()),
        // Lists (edge.origins): comma or whitespace separated.
        Value::Array(_) => Ok(Value::Array(
            raw.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
        _ if full == "server.workers" => Ok(raw
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .unwrap_or_else(|_| Value::String(raw.to_string()))),
        _ => Ok(Value::String(raw.to_string())),
    }
}

/// Lists of tables (`[[edge.app]]`) have no environment form.
fn full_is_table_list(section: &str, key: &str) -> bool {
    section == "edge" && key == "app"
}

/// Lays `CASCADE_SECTION_KEY` variables over `file`. Variables that name no
/// key are ignored (other tools share the prefix); bad values are errors
/// naming the variable and the key.
fn apply_env(file: &mut Table, defaults: &Table, env: &[(String, String)]) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    for (section, known) in defaults {
        let Value::Table(known) = known else { continue };
        for (key, default) in known {
            if full_is_table_list(section, key) {
                continue;
            }
            let var = format!("{ENV_PREFIX}{}_{}", section, key).to_uppercase();
            let Some((_, raw)) = env.iter().find(|(k, _)| *k == var) else {
                continue;
            };
            let full = format!("{section}.{key}");
            match env_value(&full, default, raw) {
                Ok(v) => {
                    let entry = file
                        .entry(section.clone())
                        .or_insert_with(|| Value::Table(Table::new()));
                    if let Value::Table(t) = entry {
                        t.insert(key.clone(), v);
                    }
                }
                Err(why) => errs.push(ConfigError::Parse(format!(
                    "invalid value for `{full}` from {var}={raw:?}: {why}"
                ))),
            }
        }
    }
    errs
}

/// A TOML syntax error, prefixed with the dotted key of the line it points
/// at when there is one (a number too large for TOML's 64-bit integers is
/// such an error: `limits.idle_timeout_ms = 18446744073709551615`).
fn parse_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let key = e.span().and_then(|span| key_at(text, span.start));
    match key {
        Some(key) => ConfigError::Parse(format!("`{key}`: {e}")),
        None => ConfigError::Parse(e.to_string()),
    }
}

/// The dotted key (`section.key`) of a `key = value` line holding byte
/// `at`, from the nearest `[section]` header above it.
fn key_at(text: &str, at: usize) -> Option<String> {
    let before = text.get(..at)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?;
    let (name, _) = line.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || name.starts_with('#') || name.starts_with('[') {
        return None;
    }
    let section = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match section {
        Some(s) if !s.is_empty() => format!("{s}.{name}"),
        _ => name.to_string(),
    })
}

/// Parses `text` with `env` laid over it; every error found.
pub fn from_text(text: &str, env: &[(String, String)]) -> Result<Config, Vec<ConfigError>> {
    let mut file: Table = text
        .parse()
        .map_err(|e: toml::de::Error| vec![parse_error(text, &e)])?;
    let defaults = defaults();
    let mut errs = check_shape(&file, &defaults);
    errs.extend(apply_env(&mut file, &defaults, env));
    if !errs.is_empty() {
        return Err(errs);
    }
    let config: Config = Value::Table(file)
        .try_into()
        .map_err(|e: toml::de::Error| vec![ConfigError::Parse(e.to_string())])?;
    let problems = config.problems();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// The file (if any) plus the process environment.
pub fn load(path: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|source| {
            vec![ConfigError::Read {
                path: p.display().to_string(),
                source,
            }]
        })?,
        None => String::new(),
    };
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    from_text(&text, &env)
}

/// What a reload (SIGHUP) cannot change, as whole sections or single keys:
/// the one declaration both the reload's diff and what it applies are
/// derived from. Every other key applies to what comes next (new
/// connections, new plays, the next auth decision, the next scrape).
pub const RESTART_KEYS: &[&str] = &[
    // Listeners, workers, chunk size, IO driver: the threads and sockets.
    "server",
    // The control plane's listeners.
    "http",
    // Packagers are made with their stream.
    "hls",
    // Origins and routing of running pulls and forwards.
    "edge",
    // `[[push]]` targets start with their stream.
    "push",
    "log.format",
    "tls.listen",
    "tls.http_listen",
    // The stream directory is sized at start-up.
    "limits.max_streams",
];

/// Whether `full` (a section or `section.key`) needs a restart.
pub fn needs_restart(full: &str) -> bool {
    let section = full.split('.').next().unwrap_or("");
    RESTART_KEYS.iter().any(|k| *k == full || *k == section)
}

/// `new` with every [`RESTART_KEYS`] value kept as in `old`: what a reload
/// applies, so that the next diff is honest about what still differs.
pub fn applicable(old: &Config, new: &Config) -> Config {
    let (Ok(Value::Table(a)), Ok(Value::Table(mut b))) =
        (Value::try_from(old), Value::try_from(new))
    else {
        return old.clone();
    };
    for key in RESTART_KEYS {
        match key.split_once('.') {
            None => {
                if let Some(v) = a.get(*key) {
                    b.insert(key.to_string(), v.clone());
                }
            }
            Some((section, name)) => {
                let old_value = a.get(section).and_then(|t| t.get(name)).cloned();
                if let (Some(v), Some(Value::Table(t))) = (old_value, b.get_mut(section)) {
                    t.insert(name.to_string(), v);
                }
            }
        }
    }
    Value::Table(b).try_into().unwrap_or_else(|_| old.clone())
}

/// Keys whose value differs between `old` and `new`, split into those a
/// reload applies and those that need a restart.
pub fn diff(old: &Config, new: &Config) -> (Vec<String>, Vec<String>) {
    let (Ok(Value::Table(a)), Ok(Value::Table(b))) = (Value::try_from(old), Value::try_from(new))
    else {
        return (Vec::new(), Vec::new());
    };
    let (mut live, mut restart) = (Vec::new(), Vec::new());
    for (section, av) in &a {
        let (Value::Table(at), Some(Value::Table(bt))) = (av, b.get(section)) else {
            // `[[push]]` as a whole.
            if b.get(section) != Some(av) {
                restart.push(section.clone());
            }
            continue;
        };
        for (key, v) in at {
            if bt.get(key) != Some(v) {
                let full = format!("{section}.{key}");
                if needs_restart(&full) {
                    restart.push(full);
                } else {
                    live.push(full);
                }
            }
        }
    }
    (live, restart)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let text = "[server]\nlisten_addr = 1\nchunk_size = \"big\"\n[nosuch]\n[limits]\nmax_chunk_streams = 0\n";
        let errs = from_text(text, &[]).unwrap_err();
        let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let joined = all.join("\n");
        assert!(joined.contains("server.listen_addr"), "{joined}");
        assert!(joined.contains("server.chunk_size"), "{joined}");
        assert!(joined.contains("nosuch"), "{joined}");
        // Value checks run once the shape is right.
        let errs = from_text(
            "[limits]\nmax_chunk_streams = 0\namf_max_depth = 0\n[log]\nformat = \"xml\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
    }

    #[test]
    fn env_overrides_file_and_types_are_checked() {
        let c = from_text(
            "[server]\nlisten = \"127.0.0.1:1\"\n",
            &env(&[
                ("CASCADE_SERVER_LISTEN", "127.0.0.1:2"),
                ("CASCADE_SERVER_TCP_NODELAY", "false"),
                ("CASCADE_SERVER_WORKERS", "3"),
                ("CASCADE_METRICS_PER_STREAM", "1"),
                ("CASCADE_TEST_IO_DRIVER", "epoll"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:2");
        assert!(!c.server.tcp_nodelay);
        assert_eq!(c.worker_count(), Ok(3));
        assert!(c.metrics.per_stream);
        let c = from_text(
            "",
            &env(&[("CASCADE_EDGE_ORIGINS", "rtmp://a/live, rtmp://b:1936/live")]),
        )
        .unwrap();
        assert_eq!(c.edge.origins, vec!["rtmp://a/live", "rtmp://b:1936/live"]);
        let errs = from_text("", &env(&[("CASCADE_PLAYER_QUEUE_MAX_MS", "soon")])).unwrap_err();
        assert!(
            errs[0].to_string().contains("player.queue_max_ms"),
            "{errs:?}"
        );
    }

    #[test]
    fn diff_splits_live_and_restart_keys() {
        let a = Config::default();
        let mut b = a.clone();
        b.player.queue_max_ms = 1;
        b.log.level = "debug".into();
        b.server.listen = "127.0.0.1:5".into();
        let (live, restart) = diff(&a, &b);
        assert_eq!(live, vec!["log.level", "player.queue_max_ms"]);
        assert_eq!(restart, vec!["server.listen"]);
        let mut c = a.clone();
        c.tls.cert = "/etc/new.pem".into();
        c.tls.listen = "127.0.0.1:443".into();
        let (live, restart) = diff(&a, &c);
        assert_eq!(live, vec!["tls.cert"]);
        assert_eq!(restart, vec!["tls.listen"]);
    }

    #[test]
    fn a_reload_applies_exactly_what_the_diff_calls_live() {
        let old = Config::default();
        let mut new = old.clone();
        new.player.queue_max_ms = 1;
        new.log.level = "debug".into();
        new.log.format = "json".into();
        new.server.listen = "127.0.0.1:5".into();
        new.limits.max_streams = 3;
        new.limits.idle_timeout_ms = 7;
        new.tls.listen = "127.0.0.1:443".into();
        new.tls.cert = "/etc/new.pem".into();
        let applied = applicable(&old, &new);
        // What is left to differ after applying is exactly the restart list.
        let (live, restart) = diff(&applied, &new);
        assert!(live.is_empty(), "not applied: {live:?}");
        assert_eq!(restart, diff(&old, &new).1);
        for key in &restart {
            assert!(needs_restart(key), "{key}");
        }
        assert_eq!(applied.limits.idle_timeout_ms, 7);
        assert_eq!(applied.limits.max_streams, old.limits.max_streams);
        assert_eq!(applied.log.format, old.log.format);
        assert_eq!(applied.tls.cert, "/etc/new.pem");
    }
}
