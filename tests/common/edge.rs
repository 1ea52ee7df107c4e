//! Edge-test helpers: nginx-rtmp with its `rtmp_stat` page (to count the
//! subscribers an origin sees), killing a server on purpose, and the load
//! harness binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::ops::http;
use super::{free_port, run_with_timeout, tail, tool_in_sbin, ChildGuard, Server, ServerKind};

/// nginx-rtmp with an HTTP listener serving `rtmp_stat all` at `/stat`.
pub struct NginxOrigin {
    pub server: Server,
    pub http: u16,
}

impl NginxOrigin {
    pub fn start() -> NginxOrigin {
        let module = Path::new("/usr/lib/nginx/modules/ngx_rtmp_module.so");
        assert!(module.is_file(), "libnginx-mod-rtmp is not installed");
        let nginx = tool_in_sbin("nginx");
        let http_port = free_port();
        let server = Server::start_with_retries(ServerKind::Nginx, |port, dir| {
            let conf = dir.join("nginx.conf");
            let d = dir.display();
            fs::write(
                &conf,
                format!(
                    "load_module {module};\n\
                     daemon off;\n\
                     master_process on;\n\
                     worker_processes 1;\n\
                     error_log {d}/error.log info;\n\
                     pid {d}/nginx.pid;\n\
                     events {{ worker_connections 256; }}\n\
                     rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
                       application live {{ live on; }} }} }}\n\
                     http {{ access_log off; client_body_temp_path {d}/body;\n\
                       proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n\
                       uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
                       server {{ listen 127.0.0.1:{http_port};\n\
                         location /stat {{ rtmp_stat all; }} }} }}\n",
                    module = module.display()
                ),
            )
            .expect("write nginx.conf");
            let mut cmd = Command::new(&nginx);
            cmd.arg("-p").arg(dir).arg("-c").arg(&conf);
            cmd.arg("-e").arg(dir.join("error.log"));
            ChildGuard::spawn("nginx", cmd)
        });
        NginxOrigin {
            server,
            http: http_port,
        }
    }

    /// The rtmp_stat XML.
    pub fn stat(&self) -> String {
        match http(self.http, "GET", "/stat") {
            Ok((200, body)) => body,
            other => panic!("nginx /stat: {other:?}"),
        }
    }

    /// `(players, publishers)` of stream `name` in app `live`, per rtmp_stat.
    pub fn clients(&self, name: &str) -> (usize, usize) {
        stream_clients(&self.stat(), name)
    }

    /// Polls until stream `name` has `players` players, or panics with the stat.
    pub fn wait_players(&self, name: &str, players: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let stat = self.stat();
            if stream_clients(&stat, name).0 == players {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx never showed {players} player(s) of {name}:\n{stat}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Counts the clients of `<stream><name>NAME</name>…</stream>`: those with
/// `<publishing/>` are publishers, the others players.
pub fn stream_clients(stat: &str, name: &str) -> (usize, usize) {
    let want = format!("<name>{name}</name>");
    for block in stat.split("<stream>").skip(1) {
        let block = block.split("</stream>").next().unwrap_or("").trim_start();
        if !block.starts_with(&want) {
            continue;
        }
        // The stream itself also carries a `<publishing/>` flag: look
        // inside each client only.
        let (mut players, mut publishers) = (0, 0);
        for client in block.split("<client>").skip(1) {
            let client = client.split("</client>").next().unwrap_or("");
            if client.contains("<publishing/>") {
                publishers += 1;
            } else {
                players += 1;
            }
        }
        return (players, publishers);
    }
    (0, 0)
}

impl Server {
    /// SIGKILL to the server's process group: its sockets close at once,
    /// the way a crashed origin looks to its peers.
    pub fn kill(&mut self) {
        self.guard.signal("KILL");
        let _ = self.guard.wait_timeout(Duration::from_secs(5));
    }
}

/// The load harness binary beside cascade's, built on first use.
pub fn loadtest_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_cascade")).with_file_name("cascade-loadtest");
    if !bin.is_file() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "cascade-loadtest"]);
        let out = run_with_timeout("cargo-build-loadtest", cmd, Duration::from_secs(600));
        assert!(
            out.success() && bin.is_file(),
            "building cascade-loadtest failed: {}\n{}",
            out.describe(),
            tail(&out.stderr, 30)
        );
    }
    bin
}

/// Starts `cascade-loadtest play` in the background; its JSON report goes
/// to `report`.
pub fn loadtest_play(url: &str, players: u64, duration_s: f64, report: &Path) -> ChildGuard {
    let mut cmd = Command::new(loadtest_bin());
    cmd.args(["play", "--url", url, "--quiet"])
        .args(["--players", &players.to_string()])
        .args(["--duration", &duration_s.to_string()])
        .args(["--ramp", "1000"])
        .arg("--report")
        .arg(report);
    ChildGuard::spawn("loadtest", cmd)
}

/// Waits for a background loadtest and parses its report.
pub fn loadtest_report(
    guard: &mut ChildGuard,
    report: &Path,
    timeout: Duration,
) -> serde_json::Value {
    let status = guard.wait_timeout(timeout);
    // 3: the run completed but failed the loadtest's own gate (loss, bad
    // starts, dropped players); the caller's assertions decide from the report.
    assert!(
        status.is_some_and(|s| s.success() || s.code() == Some(3)),
        "loadtest did not finish cleanly ({status:?}):\n{}",
        tail(&guard.stderr_text(), 30)
    );
    let text = fs::read_to_string(report).expect("loadtest report");
    serde_json::from_str(&text).expect("loadtest report JSON")
}
