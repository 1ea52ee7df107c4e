//! The Dockerfile and the seccomp profile, checked for structure: there
//! is no Docker engine on the development machines to build with.

use std::collections::BTreeSet;
use std::process::Command;

use super::{deploy, read, repo, run_ok, tool};

/// Dockerfile instructions, continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = read(&deploy("docker/Dockerfile"));
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (op, args) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((op.to_uppercase(), args.trim().to_string()));
        current.clear();
    }
    out
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_probed() {
    let ins = dockerfile();
    let args = |op: &str| -> Vec<String> {
        ins.iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a.clone())
            .collect()
    };
    let froms = args("FROM");
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(
        froms[0].starts_with("rust:bookworm AS builder"),
        "{froms:?}"
    );
    assert_eq!(froms[1], "debian:bookworm-slim");
    // Every build-context path copied exists; the runtime copies from the builder.
    for copy in args("COPY") {
        if copy.starts_with("--from=builder") {
            continue;
        }
        let words: Vec<&str> = copy.split_whitespace().collect();
        for src in &words[..words.len() - 1] {
            assert!(repo().join(src).exists(), "COPY {src}: not in the repo");
        }
    }
    let user = args("USER");
    assert_eq!(user.len(), 1);
    let uid = user[0].split(':').next().unwrap_or("");
    assert!(
        uid.parse::<u32>().is_ok_and(|n| n != 0),
        "numeric non-root USER: {user:?}"
    );
    let exposed: BTreeSet<String> = args("EXPOSE")
        .iter()
        .flat_map(|a| {
            a.split_whitespace()
                .map(|p| p.trim_end_matches("/tcp").to_string())
        })
        .collect();
    assert!(
        exposed.contains("1935") && exposed.contains("8080"),
        "{exposed:?}"
    );
    let health = args("HEALTHCHECK").join(" ");
    assert!(health.contains("http://127.0.0.1:8080/healthz"), "{health}");
    assert_eq!(args("STOPSIGNAL"), vec!["SIGTERM".to_string()]);
    let cmd = args("CMD").join(" ");
    assert!(
        cmd.contains("\"--http\", \"0.0.0.0:8080\"") && cmd.contains("\"--config\""),
        "{cmd}"
    );
    assert!(args("ENTRYPOINT")
        .join(" ")
        .contains("/usr/local/bin/cascade"));
}

#[test]
fn seccomp_profile_allows_io_uring_and_names_real_syscalls() {
    let text = read(&deploy("docker/seccomp-io_uring.json"));
    let profile: serde_json::Value = serde_json::from_str(&text).expect("profile parses");
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    let mut allowed = BTreeSet::new();
    let mut all = Vec::new();
    for rule in profile["syscalls"].as_array().expect("syscalls") {
        let names: Vec<String> = rule["names"]
            .as_array()
            .expect("names")
            .iter()
            .map(|n| n.as_str().expect("name").to_string())
            .collect();
        if rule["action"] == "SCMP_ACT_ALLOW" && rule.get("args").is_none() {
            allowed.extend(names.iter().cloned());
        }
        all.extend(names);
    }
    for call in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        assert!(allowed.contains(call), "{call} not allowed");
    }
    // What cascade calls on both drivers, traced through a publish, a play,
    // a scrape, SIGHUP and a drain (strace -f), must be allowed.
    for call in [
        "accept4",
        "bind",
        "listen",
        "setsockopt",
        "epoll_wait",
        "epoll_ctl",
        "eventfd2",
        "writev",
        "sendto",
        "recvfrom",
        "sched_setaffinity",
        "rt_sigtimedwait",
        "futex",
        "execve",
    ] {
        assert!(allowed.contains(call), "{call} not allowed");
    }
    let unique: BTreeSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a syscall is listed twice");
    // A misspelt name is silently skipped by the runtime: check every name
    // against systemd's table of known system calls.
    let mut cmd = Command::new(tool("systemd-analyze"));
    cmd.args(["syscall-filter", "@known", "--no-pager"]);
    let known_text = run_ok("systemd-analyze syscall-filter", cmd);
    let known: BTreeSet<&str> = known_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('@'))
        .collect();
    assert!(known.len() > 300, "known syscalls:\n{known_text}");
    for name in &all {
        assert!(known.contains(name.as_str()), "unknown system call {name}");
    }
}
