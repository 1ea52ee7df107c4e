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
