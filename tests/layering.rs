//! Keeps the layers true: every top-level module of `src/` may import only
//! the modules below it in [`LAYERS`], and the bottom layers stay free of
//! IO. A plain text scan of the sources (comments skipped), so a failure
//! names the file, the line and the rule it breaks.
//!
//! The order is the one `ARCHITECTURE.md` describes; change both together.

use std::fs;
use std::path::{Path, PathBuf};

/// Top to bottom. A module may import any module listed after it, never
/// one listed before it (or `main`'s binary, which is not a module).
const LAYERS: &[&str] = &[
    "main",      // start-up, signals, wiring of the control plane
    "shard",     // threads, runtimes, pinning, accept
    "http",      // the control plane's HTTP service
    "conn",      // a connection's life
    "upstream",  // the same dialled out: edge pull, forward, push
    "context",   // the per-core context (hub, egress, stats, live settings)
    "egress",    // a subscriber's delivery
    "hub",       // streams, GOP cache, who gets which frame
    "xcore",     // channels and wake-ups between cores
    "transport", // plain TCP or TLS streams
    "auth",      // publish/play decisions
    "config",    // the configuration, plain data
    "metrics",   // per-core counters
    "protocol",  // sans-IO RTMP, HTTP, WebSocket, HLS and DASH text
];

/// Names that mean IO, threads or reading the clock. Holding or formatting a
/// `SystemTime` passed in is fine (a playlist's dates are data); asking the
/// clock for one is not.
const IO_WORDS: &[&str] = &[
    "monoio",
    "tokio",
    "io_uring",
    "libc::",
    "std::net",
    "std::fs",
    "std::thread",
    "socket2",
    "Instant::now",
    "SystemTime::now",
    ".elapsed()",
];

/// Layers that must stay free of [`IO_WORDS`]: the protocol is sans-IO, and
/// the hub holds stream state with time passed in. Their unit tests (from a
/// file's `#[cfg(test)]` on) may read the clock to make that time.
const NO_IO: &[&str] = &["protocol", "hub"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layer a source file belongs to (its top-level folder; `main.rs` is
/// `main`), or None for `lib.rs`.
fn layer_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.as_str() {
        "lib.rs" => None,
        "main.rs" => Some("main".into()),
        other => Some(other.trim_end_matches(".rs").to_string()),
    }
}

/// The code of a line: `//` comments dropped (doc comments included).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Every top-level module a line names through `crate::` or `cascade::`.
fn imports(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["crate::", "cascade::"] {
        let mut rest = line;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c}`: the names at the start of each item.
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.push(name);
                    }
                }
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

/// The [`IO_WORDS`] a line of code uses.
fn io_words(line: &str) -> Vec<&'static str> {
    IO_WORDS
        .iter()
        .copied()
        .filter(|word| line.contains(word))
        .collect()
}

fn rank(layer: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == layer)
}

/// Every line of `src/` that breaks the order or the IO rule.
fn violations() -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut hits = Vec::new();
    for file in &files {
        let Some(layer) = layer_of(file) else {
            continue;
        };
        let Some(mine) = rank(&layer) else {
            hits.push(format!(
                "{}: module `{layer}` is not in the declared layer order (tests/layering.rs)",
                file.display()
            ));
            continue;
        };
        let text = fs::read_to_string(file).expect("read source");
        let mut in_tests = false;
        for (n, raw) in text.lines().enumerate() {
            let line = code(raw);
            in_tests |= line.trim() == "#[cfg(test)]";
            let at = || format!("{}:{}: {}", file.display(), n + 1, raw.trim());
            for target in imports(line) {
                if target == layer {
                    continue;
                }
                match rank(&target) {
                    Some(r) if r > mine => {}
                    Some(_) => hits.push(format!(
                        "{}\n    `{layer}` may not import `{target}`: it is not below it",
                        at()
                    )),
                    // Not a layer (e.g. a macro or crate-level item): ignore.
                    None => {}
                }
            }
            if NO_IO.contains(&layer.as_str()) && !in_tests {
                for word in io_words(line) {
                    hits.push(format!("{}\n    `{layer}` must not use `{word}`", at()));
                }
            }
        }
    }
    hits
}

#[test]
fn every_import_runs_down_the_layers() {
    let hits = violations();
    assert!(
        hits.is_empty(),
        "layer order (top to bottom): {}\n{}",
        LAYERS.join(" > "),
        hits.join("\n")
    );
}

#[test]
fn every_module_of_lib_rs_has_a_layer() {
    let lib = fs::read_to_string(src().join("lib.rs")).expect("read lib.rs");
    for line in lib.lines() {
        if let Some(name) = line
            .trim()
            .strip_prefix("pub mod ")
            .and_then(|r| r.strip_suffix(';'))
        {
            assert!(
                rank(name).is_some(),
                "src/lib.rs declares `{name}`, which tests/layering.rs does not place"
            );
        }
    }
}

#[test]
fn the_scan_sees_imports_in_every_form() {
    assert_eq!(imports("use crate::hub::Frame;"), ["hub"]);
    assert_eq!(
        imports("use crate::{egress, hub::Frame};"),
        ["egress", "hub"]
    );
    assert_eq!(
        imports("let x = crate::metrics::Label::COUNT;"),
        ["metrics"]
    );
    assert_eq!(imports("use cascade::shard::{self, IoDriver};"), ["shard"]);
    assert!(imports("my_crate::hub::x").is_empty());
    assert_eq!(code("let a = 1; // crate::shard"), "let a = 1; ");
}

#[test]
fn the_scan_tells_a_clock_read_from_a_time_value() {
    assert_eq!(
        io_words("let t = std::time::SystemTime::now();"),
        ["SystemTime::now"]
    );
    assert_eq!(io_words("let age = start.elapsed();"), [".elapsed()"]);
    assert_eq!(io_words("let t = Instant::now();"), ["Instant::now"]);
    assert!(io_words("pub program_date_time: Option<SystemTime>,").is_empty());
    assert!(io_words("use std::time::{Duration, SystemTime, UNIX_EPOCH};").is_empty());
}
