//! Replays fuzz inputs through the same entry points the fuzz targets run
//! (`fuzz/src/`, included by path so no nightly toolchain is needed):
//! every seed in `fuzz/seeds/<target>/`, and each crash the fuzzers found,
//! as its own test. A crash whose fix is not in yet is `#[ignore]`d with
//! the panic it hits.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_entry;

use std::path::Path;

type Entry = fn(&[u8]);

const TARGETS: [(&str, Entry); 8] = [
    ("handshake", fuzz_entry::handshake),
    ("chunk_decoder", fuzz_entry::chunk_decoder),
    ("amf", fuzz_entry::amf),
    ("flv", fuzz_entry::flv),
    ("server_session", fuzz_entry::server_session),
    ("http_head", fuzz_entry::http_head),
    ("ws_frame", fuzz_entry::ws_frame),
    ("cmaf", fuzz_entry::cmaf),
];

fn seeds_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds"))
}

#[test]
fn seeds_run_clean() {
    for (target, entry) in TARGETS {
        let dir = seeds_dir().join(target);
        let mut count = 0;
        for file in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = file.expect("seed dir entry").path();
            let data = std::fs::read(&path).expect("read seed");
            entry(&data);
            count += 1;
        }
        assert!(count > 0, "no seeds for {target}");
    }
}

/// The generated seeds pass too (they carry fresh random handshake bytes).
#[test]
fn generated_seeds_run_clean() {
    for (target, _, data) in fuzz_entry::seeds::all() {
        let entry = TARGETS
            .iter()
            .find(|(name, _)| *name == target)
            .map(|(_, e)| *e)
            .expect("seed for an unknown target");
        entry(&data);
    }
}

/// Rewrites `fuzz/seeds/`: `cargo test --test fuzz_regressions -- --ignored write_seeds`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand"]
fn write_seeds() {
    for (target, name, data) in fuzz_entry::seeds::all() {
        let dir = seeds_dir().join(target);
        std::fs::create_dir_all(&dir).expect("create seed dir");
        std::fs::write(dir.join(name), data).expect("write seed");
    }
}

/// Trivial inputs every target must take: empty, one byte, all zeros.
#[test]
fn degenerate_inputs() {
    for (_, entry) in TARGETS {
        entry(&[]);
        entry(&[0]);
        entry(&[0xff]);
        entry(&[0; 64]);
        entry(&[0xff; 64]);
    }
}

// Crashes found by fuzzing follow, one test each, named after the target.
