//! The files under `deploy/` checked by the tools that consume them:
//! `systemd-analyze verify` and `security` on the unit, `promtool` on the
//! scrape config, the alert rules and their unit tests, a YAML parser on
//! every manifest, `kubectl kustomize` and kubernetes-validate on the
//! Kubernetes roles (with cascade's config loader on each role's
//! cascade.toml: see `deploy_artifacts/kubernetes.rs`), and every metric
//! and label the alerts and the dashboard use against a live cascade's
//! `/metrics`. Docker cannot build here (no engine), so the Dockerfile and
//! the seccomp profile are checked for structure.

mod common;
#[path = "deploy_artifacts/docker.rs"]
mod docker;
#[path = "deploy_artifacts/kubernetes.rs"]
mod kubernetes;
#[path = "deploy_artifacts/promql.rs"]
mod promql;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::ops::OpsServer;
use common::{run_with_timeout, temp_dir, tool};
use promql::{catalog, selectors};
use serde::Deserialize;

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(rel: &str) -> PathBuf {
    repo().join("deploy").join(rel)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every file under `dir` whose name ends with one of `exts`.
fn files_under(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("list {}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if exts
                .iter()
                .any(|x| path.to_string_lossy().ends_with(&format!(".{x}")))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Runs a tool to completion; panics with its output unless it succeeded.
fn run_ok(name: &str, cmd: Command) -> String {
    let out = run_with_timeout(name, cmd, TOOL_TIMEOUT);
    assert!(
        out.success(),
        "{name} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.describe(),
        out.stdout,
        out.stderr
    );
    format!("{}{}", out.stdout, out.stderr)
}

/// `server.drain_timeout_ms` of the shipped configuration.
fn drain_timeout_ms(toml_text: &str) -> u64 {
    let v: toml::Value = toml::from_str(toml_text).expect("cascade.toml parses");
    v.get("server")
        .and_then(|s| s.get("drain_timeout_ms"))
        .and_then(toml::Value::as_integer)
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(30_000)
}

// ---------------------------------------------------------------- systemd

/// `Key=value` lines of a unit file (a key may repeat).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_string())
        .collect()
}

fn unit_value(unit: &str, key: &str) -> String {
    let values = unit_values(unit, key);
    assert_eq!(values.len(), 1, "{key}= should appear once: {values:?}");
    values[0].clone()
}

/// systemd time span in seconds ("45s", "1min 30s", "90").
fn seconds(span: &str) -> u64 {
    let mut total = 0;
    for part in span.split_whitespace() {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        let n: u64 = digits
            .parse()
            .unwrap_or_else(|_| panic!("time span {span}"));
        total += match &part[digits.len()..] {
            "" | "s" | "sec" => n,
            "m" | "min" => n * 60,
            other => panic!("unexpected unit {other} in {span}"),
        };
    }
    total
}

/// The unit with its binary swapped for the one cargo built, in a temp dir,
/// so `verify` checks a real executable.
fn unit_copy(dir: &Path) -> PathBuf {
    let unit = read(&deploy("systemd/cascade.service"));
    assert!(unit.contains("/usr/local/bin/cascade"));
    let copy = unit.replace("/usr/local/bin/cascade", env!("CARGO_BIN_EXE_cascade"));
    let path = dir.join("cascade.service");
    fs::write(&path, copy).expect("write unit copy");
    path
}

#[test]
fn systemd_unit_verifies_without_warnings() {
    let dir = temp_dir("cascade-unit-");
    let path = unit_copy(dir.path());
    let mut cmd = Command::new(tool("systemd-analyze"));
    cmd.arg("verify").arg(&path).current_dir(dir.path());
    let out = run_with_timeout("systemd-analyze", cmd, TOOL_TIMEOUT);
    // verify exits 0 on "Unknown key … ignoring" and "Failed to parse …
    // ignoring": any line about our file is a directive systemd would
    // silently drop, which for a sandboxing option means no sandbox.
    let about_unit: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| l.contains("cascade.service"))
        .collect();
    assert!(
        out.success() && about_unit.is_empty(),
        "systemd-analyze verify: {}\n{}\n{}",
        out.describe(),
        out.stdout,
        out.stderr
    );
}

#[test]
fn systemd_unit_is_sandboxed() {
    let dir = temp_dir("cascade-unit-");
    let path = unit_copy(dir.path());
    let mut cmd = Command::new(tool("systemd-analyze"));
    cmd.args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .current_dir(dir.path());
    let text = run_ok("systemd-analyze security", cmd);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for cascade.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    // 0 is fully locked down, 10 is unsandboxed; the unit scores 1.5.
    assert!(score <= 2.0, "exposure {score} (was 1.5):\n{text}");
}

#[test]
fn systemd_unit_matches_what_cascade_does() {
    let unit = read(&deploy("systemd/cascade.service"));
    assert_eq!(
        unit_value(&unit, "ExecStart"),
        "/usr/local/bin/cascade --config /etc/cascade/cascade.toml"
    );
    assert_eq!(unit_value(&unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(unit_value(&unit, "KillSignal"), "SIGTERM");
    assert_eq!(unit_value(&unit, "LimitNOFILE"), "1048576");
    // The stop timeout covers the drain plus the final close (~2 s).
    let drain_s = drain_timeout_ms(&read(&repo().join("config/cascade.toml"))) / 1000;
    let stop_s = seconds(&unit_value(&unit, "TimeoutStopSec"));
    assert!(
        stop_s >= drain_s + 5,
        "TimeoutStopSec={stop_s}s must exceed server.drain_timeout_ms ({drain_s}s) + close"
    );
    // A blocked io_uring_setup must fail with an errno (cascade falls back
    // to epoll) rather than kill the process, and the calls are allowed.
    assert_eq!(unit_value(&unit, "SystemCallErrorNumber"), "EPERM");
    let allow = unit_values(&unit, "SystemCallFilter")
        .into_iter()
        .find(|v| !v.starts_with('~'))
        .expect("an allow-list SystemCallFilter");
    for call in [
        "@system-service",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
    ] {
        assert!(
            allow.split_whitespace().any(|w| w == call),
            "{call} in {allow}"
        );
    }
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("DynamicUser", "yes"),
    ] {
        assert_eq!(unit_value(&unit, key), value, "{key}");
    }
    let families = unit_value(&unit, "RestrictAddressFamilies");
    assert!(families.contains("AF_INET") && families.contains("AF_INET6"));
}

// ----------------------------------------------------------------- sysctl

#[test]
fn sysctl_keys_exist_and_allow_the_unit_limits() {
    let text = read(&deploy("sysctl/99-cascade.conf"));
    let mut values = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key = value: {line}"));
        let key = key.trim();
        assert!(
            key.chars().all(|c| c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, '_' | '.' | '-')),
            "bad key {key}"
        );
        // A misspelt key makes `sysctl --system` print an error and go on.
        let proc_path = Path::new("/proc/sys").join(key.replace('.', "/"));
        assert!(proc_path.exists(), "{key}: no {}", proc_path.display());
        assert!(
            values
                .insert(key.to_string(), value.trim().to_string())
                .is_none(),
            "{key} twice"
        );
    }
    for key in [
        "net.core.somaxconn",
        "net.ipv4.tcp_max_syn_backlog",
        "net.core.wmem_max",
        "net.core.rmem_max",
        "net.ipv4.tcp_wmem",
        "net.ipv4.tcp_rmem",
        "fs.file-max",
        "fs.nr_open",
        "net.ipv4.ip_local_port_range",
    ] {
        assert!(values.contains_key(key), "{key} missing");
    }
    // cascade sets TCP_NOTSENT_LOWAT per socket; a global default would
    // only mislead.
    assert!(!values.contains_key("net.ipv4.tcp_notsent_lowat"));
    let unit = read(&deploy("systemd/cascade.service"));
    let nofile: u64 = unit_value(&unit, "LimitNOFILE").parse().expect("number");
    let nr_open: u64 = values["fs.nr_open"].parse().expect("number");
    assert!(
        nr_open >= nofile,
        "fs.nr_open {nr_open} < LimitNOFILE {nofile}"
    );
    let ports: Vec<u32> = values["net.ipv4.ip_local_port_range"]
        .split_whitespace()
        .map(|p| p.parse().expect("port"))
        .collect();
    let reserved = values
        .get("net.ipv4.ip_local_reserved_ports")
        .map(String::as_str)
        .unwrap_or("");
    assert!(
        !(ports[0]..=ports[1]).contains(&1935) || reserved.split(',').any(|p| p.trim() == "1935"),
        "1935 inside ip_local_port_range and not reserved"
    );
}

// ------------------------------------------------------------------- YAML

/// Every document of every YAML file under deploy/.
fn yaml_documents() -> Vec<(PathBuf, serde_yaml::Value)> {
    let files = files_under(&repo().join("deploy"), &["yml", "yaml"]);
    assert!(files.len() >= 6, "expected the manifests: {files:?}");
    let mut docs = Vec::new();
    for path in files {
        let text = read(&path);
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            docs.push((path.clone(), value));
        }
    }
    docs
}

#[test]
fn every_yaml_parses_and_kubernetes_sources_name_their_kind() {
    let docs = yaml_documents();
    for (path, doc) in &docs {
        // Objects, kustomizations and the base's patch alike; what they
        // render to is checked in deploy_artifacts/kubernetes.rs.
        if path.starts_with(deploy("kubernetes")) {
            assert!(
                doc["apiVersion"].is_string() && doc["kind"].is_string(),
                "{}: apiVersion and kind",
                path.display()
            );
        }
    }
}

// ------------------------------------------------------------- Prometheus

#[test]
fn promtool_accepts_config_rules_and_rule_tests() {
    let promtool = tool("promtool");
    let mut cmd = Command::new(&promtool);
    cmd.args(["check", "config"])
        .arg(deploy("prometheus/prometheus.yml"));
    run_ok("promtool check config", cmd);
    let mut cmd = Command::new(&promtool);
    cmd.args(["check", "rules"])
        .arg(deploy("prometheus/alerts.yml"));
    run_ok("promtool check rules", cmd);
    let mut cmd = Command::new(&promtool);
    cmd.args(["test", "rules"])
        .arg(deploy("prometheus/alerts_test.yml"));
    run_ok("promtool test rules", cmd);
}

/// The dashboard's queries with Grafana's variables filled in.
fn dashboard_exprs() -> Vec<String> {
    let text = read(&deploy("grafana/cascade-dashboard.json"));
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON parses");
    assert!(dash["title"].is_string() && dash["uid"].is_string());
    let mut exprs = Vec::new();
    let mut stack = vec![&dash["panels"]];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(map) => {
                if let Some(e) = map.get("expr").and_then(|e| e.as_str()) {
                    exprs.push(e.to_string());
                }
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = var["query"]["query"].as_str() {
            // label_values(SELECTOR, label): check the selector.
            if let Some(inner) = q.strip_prefix("label_values(") {
                let selector = inner.rsplit_once(',').map_or(inner, |(s, _)| s);
                exprs.push(selector.to_string());
            }
        }
    }
    exprs
        .into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "5m")
                .replace("$instance", ".*")
                .replace("$job", ".*")
        })
        .collect()
}

fn alert_exprs() -> Vec<String> {
    let text = read(&deploy("prometheus/alerts.yml"));
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).expect("alerts.yml parses");
    let mut exprs = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            exprs.push(rule["expr"].as_str().expect("expr").to_string());
        }
    }
    exprs
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    // promtool has no bare query checker: make each query a recording rule.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let quoted = serde_json::to_string(e).expect("quote");
        rules.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = temp_dir("cascade-dashboard-rules-");
    let file = dir.path().join("dashboard.yml");
    fs::write(&file, rules).expect("write rules");
    let mut cmd = Command::new(tool("promtool"));
    cmd.args(["check", "rules"]).arg(&file);
    run_ok("promtool check rules (dashboard)", cmd);
}

#[test]
fn alerts_and_dashboard_use_only_exported_metrics_and_labels() {
    let ops = OpsServer::start(&["--workers", "2"], &[]);
    let page = ops.get("/metrics");
    let mut cat = catalog(&page);
    // A worker's driver depends on the machine: a page shows only one of
    // the two values cascade exports (README, "Metrics").
    if let Some(labels) = cat.get_mut("cascade_worker_io_driver") {
        let drivers = labels.entry("driver".to_string()).or_default();
        drivers.extend(["io_uring".to_string(), "epoll".to_string()]);
    }
    assert!(
        cat.contains_key("cascade_ingest_to_egress_seconds_bucket"),
        "{page}"
    );
    // Labels Prometheus adds to every series, or our scrape configs add.
    let target_labels = ["instance", "job", "node", "tier"];
    let all_labels: BTreeSet<&str> = cat
        .values()
        .flat_map(|l| l.keys().map(String::as_str))
        .chain(target_labels)
        .collect();

    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for (source, exprs) in [
        ("alerts.yml", alert_exprs()),
        ("dashboard", dashboard_exprs()),
    ] {
        for expr in exprs {
            let (sels, grouping) = selectors(&expr);
            for (name, ms) in sels {
                let Some(labels) = cat.get(&name) else {
                    problems.push(format!("{source}: no series {name} in: {expr}"));
                    continue;
                };
                used.insert(name.clone());
                for (label, op, value) in ms {
                    if target_labels.contains(&label.as_str()) {
                        continue;
                    }
                    match labels.get(&label) {
                        None => problems.push(format!("{source}: {name} has no label {label}")),
                        Some(values) if op == "=" && !values.contains(&value) => problems.push(
                            format!("{source}: {name}{{{label}}} never is {value:?} ({values:?})"),
                        ),
                        Some(_) => {}
                    }
                }
            }
            for label in grouping {
                if !all_labels.contains(label.as_str()) {
                    problems.push(format!(
                        "{source}: grouping by unknown label {label}: {expr}"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // What the dashboard and alerts are for: each of these is looked at.
    for name in [
        "cascade_connections",
        "cascade_players",
        "cascade_streams",
        "cascade_bytes_in_total",
        "cascade_bytes_out_total",
        "cascade_ingest_to_egress_seconds_bucket",
        "cascade_frames_dropped_total",
        "cascade_slow_player_disconnects_total",
        "cascade_worker_io_driver",
        "cascade_draining",
        "cascade_ready",
    ] {
        assert!(used.contains(name), "{name} is not used; used: {used:?}");
    }
}
