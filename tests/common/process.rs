//! Child processes that cannot outlive the test that started them.
//!
//! Every child runs in its own process group with stdout and stderr sent to
//! files (no pipe can fill up and stall it), and the guard's `Drop` sends
//! SIGTERM to the group, waits briefly, then SIGKILLs and reaps it, also when
//! the test is unwinding from a panic.

use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a child gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

pub struct ChildGuard {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    started: Instant,
    _logs: tempfile::TempDir,
}

impl ChildGuard {
    /// Spawns `cmd` with null stdin and stdout/stderr captured to files.
    /// Panics (failing the test) if the program cannot be started.
    pub fn spawn(name: &str, mut cmd: Command) -> ChildGuard {
        let logs = tempfile::Builder::new()
            .prefix(&format!("cascade-e2e-{name}-"))
            .tempdir()
            .expect("create log dir");
        let stdout_path = logs.path().join("stdout");
        let stderr_path = logs.path().join("stderr");
        let stdout = File::create(&stdout_path).expect("create stdout file");
        let stderr = File::create(&stderr_path).expect("create stderr file");
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", cmd.get_program()));
        ChildGuard {
            name: name.to_string(),
            child,
            status: None,
            stdout_path,
            stderr_path,
            started: Instant::now(),
            _logs: logs,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Exit status if the child has exited (reaping it), else None.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
            }
        }
        self.status
    }

    /// Waits up to `timeout` for the child to exit on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (e.g. "TERM", "INT", "KILL") to the child's process
    /// group. Errors are ignored: the group may already be gone.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args(["-s", signal, "--", &format!("-{}", self.child.id())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// SIGTERM, a short grace, then SIGKILL; always reaps. Returns the status.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(st) = self.try_status() {
            // The leader is gone; sweep anything it left in its group.
            self.signal("KILL");
            return st;
        }
        self.signal("TERM");
        let st = match self.wait_timeout(TERM_GRACE) {
            Some(st) => st,
            None => {
                self.signal("KILL");
                let _ = self.child.kill();
                let st = self.child.wait().unwrap_or(ExitStatus::from_raw(9));
                self.status = Some(st);
                st
            }
        };
        self.signal("KILL");
        st
    }

    /// Sends SIGINT and waits for a clean exit (SIGKILL after `timeout`).
    pub fn interrupt(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.try_status().is_none() {
            self.signal("INT");
        }
        let st = self.wait_timeout(timeout);
        if st.is_none() {
            self.stop();
        }
        st
    }

    pub fn stderr_text(&self) -> String {
        super::read_lossy(&self.stderr_path)
    }

    pub fn stdout_text(&self) -> String {
        super::read_lossy(&self.stdout_path)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "---- {} (pid {}) stderr tail ----\n{}",
                self.name,
                self.child.id(),
                super::tail(&self.stderr_text(), 30)
            );
        }
    }
}

/// What a bounded run produced.
#[derive(Debug)]
pub struct RunOutput {
    pub name: String,
    /// None when the deadline killed it.
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// One line: exit code or signal, or the timeout.
    pub fn describe(&self) -> String {
        match (self.timed_out, self.status) {
            (true, _) => format!("{} killed after {:?} deadline", self.name, self.elapsed),
            (false, Some(st)) => format!("{} exited with {st} after {:?}", self.name, self.elapsed),
            (false, None) => format!("{} status unknown", self.name),
        }
    }
}

/// Runs `cmd` to completion or until `timeout`, when it is killed.
pub fn run_with_timeout(name: &str, cmd: Command, timeout: Duration) -> RunOutput {
    let mut guard = ChildGuard::spawn(name, cmd);
    let status = guard.wait_timeout(timeout);
    let timed_out = status.is_none();
    let status = if timed_out {
        guard.stop();
        None
    } else {
        // Sweep any grandchildren left in the group.
        guard.signal("KILL");
        status
    };
    RunOutput {
        name: name.to_string(),
        status,
        timed_out,
        stdout: guard.stdout_text(),
        stderr: guard.stderr_text(),
        elapsed: guard.elapsed(),
    }
}
