//! A `redis-server` child for the cluster tests (issue 17): on a free loopback port, in a temp
//! dir, stopped (its own child) and started again on the same port and dir when a test asks.
#![allow(dead_code)]

use super::procs::{self, skip_or_fail, tool_available, Proc, TempDir};
use std::process::Command;
use std::time::Duration;

/// A `redis-server` the test owns.
pub struct Redis {
    proc: Option<Proc>,
    pub port: u16,
    pub url: String,
    dir: TempDir,
    persist: bool,
}

impl Redis {
    /// Starts one, or returns `None` after printing why not (panics under `CI`). With `persist`,
    /// AOF with `appendfsync always` (a restart keeps everything); else no persistence.
    pub fn start(persist: bool) -> Option<Redis> {
        if !tool_available("redis-server", &["--version"], "apt-get install redis-server") {
            return None;
        }
        let mut dir = TempDir::new("redis");
        // A port free now; another process could take it before redis binds: then try another.
        for _ in 0..5 {
            let port = procs::free_port_udp_tcp();
            let mut r = Redis { proc: None, port, url: format!("redis://127.0.0.1:{port}/0"), dir, persist };
            if r.run() {
                return Some(r);
            }
            dir = r.dir;
        }
        skip_or_fail("redis-server did not start on a free loopback port");
        None
    }

    fn run(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--daemonize", "no", "--save", ""]);
        if self.persist {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.arg("--dir").arg(self.dir.path());
        let proc = Proc::spawn("redis-server", &mut cmd);
        let ok = proc.wait_line("Ready to accept connections", Duration::from_secs(10)).is_ok();
        self.proc = Some(proc);
        ok
    }

    /// Kills the server (SIGKILL to our child).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Sends `sig` (e.g. `STOP`, `CONT`) to our redis-server child, whose pid its own start line
    /// names (`... pid=N, just started`).
    pub fn signal(&self, sig: &str) {
        let proc = self.proc.as_ref().expect("redis-server running");
        let line = proc.wait_line("just started", Duration::from_secs(5)).expect("redis-server's start line");
        let pid = line.split("pid=").nth(1).and_then(|r| r.split(',').next()).expect("pid in the start line");
        let ok = Command::new("kill").args([&format!("-{sig}"), pid]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {pid}");
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.run(), "redis-server did not start again on port {}", self.port);
    }
}
