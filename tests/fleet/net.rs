//! The fleet's network: one namespace per host, each with one address on
//! a bridge that lives in a namespace of its own, so nothing is added to
//! the machine's own network and deleting the namespaces removes it all.
//!
//! Names carry the test's process id (`cf<pid>-...`): two runs never share
//! one, and a run that died without cleaning up (SIGKILL) is swept by the
//! next one, which deletes only namespaces whose owner pid is gone.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

/// The fleet's subnet; hosts are `10.77.0.N/24`.
pub const SUBNET: &str = "10.77.0";

/// `ip ARGS...`, failing the test (loudly, with ip's own words) on error.
pub fn ip(args: &[&str]) {
    run("ip", args);
}

pub fn run(prog: &str, args: &[&str]) {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    assert!(
        out.status.success(),
        "`{prog} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// The namespaces of one run, deleted on drop (also when the test panics).
pub struct Net {
    prefix: String,
    hub: String,
    hosts: Vec<String>,
}

impl Net {
    /// The bridge's namespace; fails the test if namespaces cannot be made
    /// here (no root, no CONFIG_NET_NS): the fleet is not skipped.
    pub fn new() -> Net {
        sweep_stale();
        let prefix = format!("cf{}", std::process::id());
        let hub = format!("{prefix}-hub");
        ip(&["netns", "add", &hub]);
        let net = Net {
            prefix,
            hub,
            hosts: Vec::new(),
        };
        ip(&["-n", &net.hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &net.hub, "link", "set", "br0", "up"]);
        net
    }

    /// Adds host `name` at `SUBNET.octet`, plugged into the bridge; returns
    /// its namespace.
    pub fn host(&mut self, name: &str, octet: u8) -> String {
        let ns = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.hosts.push(ns.clone());
        // Interface names are at most 15 bytes: the pid and the octet.
        let outer = format!("v{}h{octet}", std::process::id());
        ip(&[
            "-n", &self.hub, "link", "add", &outer, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ]);
        ip(&["-n", &self.hub, "link", "set", &outer, "master", "br0"]);
        ip(&["-n", &self.hub, "link", "set", &outer, "up"]);
        let addr = format!("{SUBNET}.{octet}/24");
        ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each veth, and so the pair.
        for ns in self.hosts.iter().chain([&self.hub]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Deletes namespaces left by fleet runs whose process no longer exists.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix("cf")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Runs `f` on a new thread that has entered namespace `ns` (only that
/// thread moves: the test's other threads stay where they are).
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on this thread only, with a namespace fd we hold open.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

/// One HTTP/1.0 GET from inside `ns`: (status, body), or None when the
/// host does not answer (down, or not listening yet).
pub fn http_get(ns: &str, addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let path = path.to_string();
    in_netns(ns, move || {
        let t = Duration::from_secs(3);
        let mut s = TcpStream::connect_timeout(&addr, t).ok()?;
        s.set_read_timeout(Some(t)).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: fleet\r\n\r\n").ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    })
}
