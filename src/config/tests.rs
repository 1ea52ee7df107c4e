//! Config parsing, defaults and validation.

use super::*;

#[test]
fn example_file_matches_defaults() {
    let text = include_str!("../../config/cascade.toml");
    assert_eq!(Config::from_toml(text).unwrap(), Config::default());
}

#[test]
fn unknown_key_is_named() {
    let e = Config::from_toml("[server]\nlisten_addr = \"1.2.3.4:1\"\n").unwrap_err();
    assert!(e.to_string().contains("listen_addr"), "{e}");
    let e = Config::from_toml("[nosuch]\n").unwrap_err();
    assert!(e.to_string().contains("nosuch"), "{e}");
}

#[test]
fn chunk_limits_reach_the_session() {
    let c = Config::from_toml(
        "[limits]\nmax_chunk_size = 65536\nmax_reassembly_bytes = 20000000\namf_max_items = 100\n",
    )
    .unwrap();
    let s = c.session_config();
    assert_eq!(s.chunk_limits.max_chunk_size, 65_536);
    assert_eq!(s.chunk_limits.max_reassembly_bytes, 20_000_000);
    assert_eq!(s.amf_limits.max_items, 100);
    let d = Config::default().session_config();
    assert_eq!(d.chunk_limits.max_chunk_size, 0x7FFF_FFFF);
    assert_eq!(d.chunk_limits.max_reassembly_bytes, 8 << 20);
    assert_eq!(d.chunk_limits.max_message_size, 4 << 20);
    let e = Config::from_toml("[limits]\nmax_reassembly_bytes = 1000000\n").unwrap_err();
    assert!(e.to_string().contains("limits.max_reassembly_bytes"), "{e}");
    let e = Config::from_toml("[limits]\nmax_chunk_size = 2147483648\n").unwrap_err();
    assert!(e.to_string().contains("limits.max_chunk_size"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let e = Config::from_toml("[server]\nchunk_size = 0\n").unwrap_err();
    assert!(e.to_string().contains("server.chunk_size"), "{e}");
    let e = Config::from_toml("[server]\nworkers = \"many\"\n").unwrap_err();
    assert!(e.to_string().contains("server.workers"), "{e}");
    let e = Config::from_toml("[server]\nchunk_size = \"big\"\n").unwrap_err();
    assert!(e.to_string().contains("chunk_size"), "{e}");
    assert!(Config::from_toml("[server]\nworkers = \"auto\"\n").is_ok());
}

#[test]
fn edge_and_push_are_checked() {
    let e = Config::from_toml("[edge]\norigins = [\"rtmpt://x/live\"]\n").unwrap_err();
    assert!(e.to_string().contains("edge.origins"), "{e}");
    let e = Config::from_toml("[tls]\nlisten = \"127.0.0.1:1443\"\n").unwrap_err();
    assert!(e.to_string().contains("tls.cert"), "{e}");
    let e = Config::from_toml("[edge]\nmode = \"random\"\n").unwrap_err();
    assert!(e.to_string().contains("edge.mode"), "{e}");
    let c = Config::from_toml("[edge]\norigins = [\"rtmp://a/live\", \"rtmp://b:1\"]\n").unwrap();
    assert_eq!(c.edge.origins.len(), 2);
    let text = "[edge]\nforward_publish = true\n\
                [[edge.app]]\nname = \"studio\"\norigins = [\"rtmp://o/studio\"]\n\
                [[push]]\napp = \"live\"\nurls = [\"rtmp://yt/live2\", \"rtmp://tw/app/key\"]\n";
    let c = Config::from_toml(text).unwrap();
    assert_eq!(c.edge.app[0].name, "studio");
    assert_eq!(c.push[0].urls.len(), 2);
    let e = Config::from_toml("[[push]]\nurls = [\"rtmp://x\"]\n").unwrap_err();
    assert!(e.to_string().contains("push.urls"), "{e}");
    let e = Config::from_toml("[[push]]\nurl = \"rtmp://x/a\"\n").unwrap_err();
    assert!(e.to_string().contains("url"), "{e}");
    let e = Config::from_toml("[[edge.app]]\nname = \"a\"\nlinger = 1\n").unwrap_err();
    assert!(e.to_string().contains("linger"), "{e}");
}

/// Every `*_ms` key of a serialized configuration, as `section.key` (and
/// `edge.app.key` for the per-app tables).
fn ms_keys(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let full = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if k.ends_with("_ms") {
                    out.push(full.clone());
                }
                ms_keys(v, &full, out);
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|i| ms_keys(i, prefix, out)),
        _ => {}
    }
}

#[test]
fn every_ms_key_is_bounded() {
    let mut c = Config::default();
    c.edge.app = vec![EdgeApp {
        name: "studio".into(),
        start_timeout_ms: Some(1),
        linger_ms: Some(1),
        ..EdgeApp::default()
    }];
    let mut keys = Vec::new();
    ms_keys(&toml::Value::try_from(&c).unwrap(), "", &mut keys);
    let bounded: Vec<&str> = c.durations_ms().iter().map(|(k, _)| *k).collect();
    for k in &keys {
        assert!(
            bounded.contains(&k.as_str()),
            "{k} is not checked against MAX_DURATION_MS"
        );
    }
    assert_eq!(keys.len(), bounded.len(), "{keys:?} vs {bounded:?}");
}

#[test]
fn durations_that_overflow_timers_are_refused() {
    let at_max = format!("[limits]\nidle_timeout_ms = {MAX_DURATION_MS}\n");
    assert!(Config::from_toml(&at_max).is_ok());
    for (section, key, value) in [
        ("limits", "idle_timeout_ms", i64::MAX.to_string()),
        (
            "server",
            "drain_timeout_ms",
            (MAX_DURATION_MS + 1).to_string(),
        ),
        ("edge", "linger_ms", i64::MAX.to_string()),
        ("auth", "hook_timeout_ms", i64::MAX.to_string()),
        ("player", "slow_disconnect_ms", i64::MAX.to_string()),
    ] {
        let text = format!("[{section}]\n{key} = {value}\n");
        let e = Config::from_toml(&text).unwrap_err();
        assert!(e.to_string().contains(&format!("{section}.{key}")), "{e}");
    }
    // Beyond i64, TOML itself refuses the number, on the key's line.
    let e = Config::from_toml("[limits]\nidle_timeout_ms = 18446744073709551615\n").unwrap_err();
    assert!(e.to_string().contains("idle_timeout_ms"), "{e}");
    // Per-app values too.
    let text = format!(
        "[[edge.app]]\nname = \"studio\"\nlinger_ms = {}\n",
        MAX_DURATION_MS + 1
    );
    let e = Config::from_toml(&text).unwrap_err();
    assert!(e.to_string().contains("edge.app.linger_ms"), "{e}");
    // Environment overrides meet the same check.
    let env = vec![(
        "CASCADE_LIMITS_IDLE_TIMEOUT_MS".to_string(),
        i64::MAX.to_string(),
    )];
    let errs = load::from_text("", &env).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.to_string().contains("limits.idle_timeout_ms")),
        "{errs:?}"
    );
}

#[test]
fn a_number_too_large_for_toml_names_its_key() {
    let e = Config::from_toml("[limits]\nidle_timeout_ms = 18446744073709551615\n").unwrap_err();
    assert!(e.to_string().contains("`limits.idle_timeout_ms`"), "{e}");
}
