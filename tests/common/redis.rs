//! A `redis-server` child for the cluster tests (issue 17): on a free loopback port, in a temp
//! dir, stopped (its own child) and started again on the same port and dir when a test asks; and
//! the membership a dispatcher would publish in it (point 2), for tests that stand in for one.
#![allow(dead_code)]

use super::procs::{self, skip_or_fail, tool_available, Proc, TempDir};
use std::process::Command;
use std::time::Duration;

/// A `redis-server` the test owns; dropping it kills that child.
pub struct Redis {
    proc: Option<Proc>,
    pub port: u16,
    pub url: String,
    dir: TempDir,
    persist: bool,
}

/// Starts one without persistence, or returns `None` after printing why not (panics under `CI`).
pub fn redis() -> Option<Redis> {
    Redis::start(false)
}

/// Publishes membership `line` as the dispatcher does: the key, then the channel.
pub fn publish(url: &str, line: &str) {
    let mut c = ::redis::Client::open(url).and_then(|c| c.get_connection()).expect("redis connection");
    ::redis::cmd("SET").arg("sb:members").arg(line).query::<()>(&mut c).expect("SET sb:members");
    ::redis::cmd("PUBLISH").arg("sb:members").arg(line).query::<i64>(&mut c).expect("PUBLISH sb:members");
}

impl Redis {
    /// Starts one, or returns `None` after printing why not (panics under `CI`). With `persist`,
    /// AOF with `appendfsync always` (a restart keeps everything); else no persistence.
    pub fn start(persist: bool) -> Option<Redis> {
        if !tool_available("redis-server", &["--version"], "apt-get install redis-server") {
            return None;
        }
        let mut dir = TempDir::new("redis");
        // A port free now; another process could take it before redis binds: then redis exits
        // and we try another.
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

    /// The pid of our redis-server child.
    pub fn pid(&self) -> u32 {
        self.proc.as_ref().expect("redis-server running").pid()
    }

    /// Kills the server (SIGKILL to our child).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Sends `sig` (e.g. `STOP`, `CONT`) to our redis-server child.
    pub fn signal(&mut self, sig: &str) {
        self.proc.as_mut().expect("redis-server running").signal(sig);
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.run(), "redis-server did not start again on port {}", self.port);
    }
}
