//! One cascade node of the fleet: its tier's configuration, its process
//! in its namespace, and what it says about itself (`/metrics`, the API).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::net::{http_get, SUBNET};
use crate::common::ChildGuard;

pub const RTMP_PORT: u16 = 1935;
pub const HTTP_PORT: u16 = 8080;
/// Edges drain this long on SIGTERM (the origins and mid tier keep the
/// default: they are never drained here).
pub const EDGE_DRAIN_MS: u64 = 3000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Origin,
    Mid,
    Edge,
}

/// What every node of a run shares: where configs go, the binary, and
/// the namespace the test reaches the nodes from.
pub struct Site {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub probe_ns: String,
}

pub struct Node {
    pub name: String,
    pub tier: Tier,
    pub ns: String,
    pub ip: String,
    /// The namespace the test scrapes from (the clients' host).
    pub probe_ns: String,
    config: PathBuf,
    bin: PathBuf,
    pub proc: Option<ChildGuard>,
    /// The log of the last process, once it has exited.
    last_log: String,
}

impl Node {
    pub fn new(
        name: &str,
        tier: Tier,
        ns: String,
        octet: u8,
        upstream: &[String],
        site: &Site,
    ) -> Node {
        let ip = format!("{SUBNET}.{octet}");
        let config = site.dir.join(format!("{name}.toml"));
        std::fs::write(&config, config_text(tier, &ip, upstream)).expect("write node config");
        Node {
            name: name.to_string(),
            tier,
            ns,
            ip,
            probe_ns: site.probe_ns.clone(),
            config,
            bin: site.bin.clone(),
            proc: None,
            last_log: String::new(),
        }
    }

    /// `rtmp://IP:1935/live`: how the tier below lists this node.
    pub fn origin_url(&self) -> String {
        format!("rtmp://{}:{RTMP_PORT}/live", self.ip)
    }

    pub fn rtmp(&self, stream: &str) -> String {
        format!("rtmp://{}:{RTMP_PORT}/live/{stream}", self.ip)
    }

    pub fn flv(&self, stream: &str) -> String {
        format!("http://{}:{HTTP_PORT}/live/{stream}.flv", self.ip)
    }

    pub fn authority(&self) -> String {
        format!("{}:{RTMP_PORT}", self.ip)
    }

    fn http_addr(&self) -> SocketAddr {
        format!("{}:{HTTP_PORT}", self.ip).parse().expect("addr")
    }

    /// Starts the process in its namespace and waits for `/readyz`.
    pub fn start(&mut self) {
        assert!(self.proc.is_none(), "{} already runs", self.name);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .env("NO_COLOR", "1");
        // `ip netns exec` execs cascade: the child's pid is cascade's.
        self.proc = Some(ChildGuard::spawn(&self.name, cmd));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.get("/readyz").is_some_and(|(s, _)| s == 200) {
                return;
            }
            if let Some(st) = self.proc.as_mut().and_then(|p| p.try_status()) {
                panic!("{} exited at start ({st}):\n{}", self.name, self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "{} never became ready",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the node dies as in a crash (the kernel resets its sockets).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal("KILL");
            p.wait_timeout(Duration::from_secs(5));
            self.last_log = p.stderr_text();
        }
    }

    /// SIGTERM: the node drains. Returns the time it took to exit, and its
    /// status code.
    pub fn drain(&mut self, limit: Duration) -> (Duration, Option<i32>) {
        let mut p = self.proc.take().expect("running");
        let t0 = Instant::now();
        p.signal("TERM");
        let st = p.wait_timeout(limit);
        let took = t0.elapsed();
        if st.is_none() {
            p.stop();
        }
        self.last_log = p.stderr_text();
        (took, st.and_then(|s| s.code()))
    }

    pub fn log_tail(&self) -> String {
        crate::common::tail(&self.full_log(), 40)
    }

    /// The running process's log, or the last one's.
    pub fn full_log(&self) -> String {
        match &self.proc {
            Some(p) => p.stderr_text(),
            None => self.last_log.clone(),
        }
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.probe_ns, self.http_addr(), path)
    }

    pub fn json(&self, path: &str) -> Value {
        match self.get(path) {
            Some((200, body)) => serde_json::from_str(&body).expect("API JSON"),
            other => panic!("{} {path}: {other:?}", self.name),
        }
    }

    /// `/metrics`, each sample summed over its labels except `stream`:
    /// `(name, stream or "")` -> value.
    pub fn metrics(&self) -> Metrics {
        let (status, body) = self
            .get("/metrics")
            .unwrap_or_else(|| panic!("{}: no /metrics", self.name));
        assert_eq!(status, 200, "{} /metrics", self.name);
        Metrics::parse(&body)
    }

    /// Streams here: key -> (publisher address, pulled from upstream).
    pub fn streams(&self) -> BTreeMap<String, (Option<String>, bool)> {
        let doc = self.json("/api/v1/streams");
        let mut out = BTreeMap::new();
        for s in doc["streams"].as_array().into_iter().flatten() {
            let key = s["key"].as_str().unwrap_or_default().to_string();
            let publisher = s["publisher"]["address"].as_str().map(host_of);
            out.insert(key, (publisher, !s["upstream"].is_null()));
        }
        out
    }

    /// Players here per stream: stream -> peer hosts (one entry each).
    pub fn players(&self) -> BTreeMap<String, Vec<String>> {
        let doc = self.json("/api/v1/clients");
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in doc["clients"].as_array().into_iter().flatten() {
            if c["role"] != "player" {
                continue;
            }
            let (Some(stream), Some(peer)) = (c["stream"].as_str(), c["peer"].as_str()) else {
                continue;
            };
            out.entry(stream.to_string())
                .or_default()
                .push(host_of(peer));
        }
        out
    }
}

/// `10.77.0.31:40000` -> `10.77.0.31`.
fn host_of(addr: &str) -> String {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string()
}

/// Samples of one scrape.
#[derive(Debug, Default, Clone)]
pub struct Metrics(pub BTreeMap<(String, String), f64>);

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let mut m = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let stream = labels
                .split("stream=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("");
            *m.entry((name.to_string(), stream.to_string())).or_default() += v;
        }
        Metrics(m)
    }

    pub fn get(&self, name: &str) -> f64 {
        self.0
            .get(&(name.to_string(), String::new()))
            .copied()
            .unwrap_or(0.0)
    }

    pub fn stream(&self, name: &str, stream: &str) -> f64 {
        self.0
            .get(&(name.to_string(), stream.to_string()))
            .copied()
            .unwrap_or(0.0)
    }
}

/// The configuration of a node of `tier` at `ip`; `upstream` is the tier
/// above (none for origins).
fn config_text(tier: Tier, ip: &str, upstream: &[String]) -> String {
    let drain = if tier == Tier::Edge {
        EDGE_DRAIN_MS
    } else {
        30_000
    };
    let mut c = format!(
        "[server]\nlisten = \"{ip}:{RTMP_PORT}\"\nworkers = 1\ndrain_timeout_ms = {drain}\n\n\
         [http]\nlisten = \"{ip}:{HTTP_PORT}\"\n\n\
         [metrics]\nper_stream = true\nper_stream_max = 1000\n\n\
         [log]\nlevel = \"info\"\n"
    );
    if !upstream.is_empty() {
        let list: Vec<String> = upstream.iter().map(|u| format!("\"{u}\"")).collect();
        c.push_str(&format!(
            "\n[edge]\norigins = [{}]\nmode = \"hash\"\nforward_publish = true\n\
             connect_timeout_ms = 1000\nstart_timeout_ms = 2000\n\
             retry_backoff_ms = 100\nretry_backoff_max_ms = 800\nlinger_ms = 3000\n",
            list.join(", ")
        ));
    }
    c
}
