//! A `redis-server` the test starts itself (free loopback port, persistence off, temp dir), and
//! the membership a dispatcher would publish in it (issue 17 point 2).
#![allow(dead_code)]

use super::procs::{self, skip_or_fail, tool_available, Proc, TempDir};
use std::process::Command;
use std::time::Duration;

/// A `redis-server` child on a free loopback port; dropping it kills that child.
pub struct Redis {
    _proc: Proc,
    pub url: String,
    _dir: TempDir,
}

/// Starts `redis-server`, or returns `None` after printing why not (panics under `CI`).
pub fn redis() -> Option<Redis> {
    if !tool_available("redis-server", &["--version"], "apt-get install redis-server") {
        return None;
    }
    let dir = TempDir::new("redis-failover");
    // A port free now; another process could take it before redis binds: then redis exits and
    // we try another.
    for _ in 0..5 {
        let port = procs::free_port_udp_tcp();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path());
        let proc = Proc::spawn("redis-server", &mut cmd);
        if proc.wait_line("Ready to accept connections", Duration::from_secs(10)).is_ok() {
            return Some(Redis { _proc: proc, url: format!("redis://127.0.0.1:{port}/0"), _dir: dir });
        }
    }
    skip_or_fail("redis-server did not start on a free loopback port");
    None
}

/// Publishes membership `line` as the dispatcher does: the key, then the channel.
pub fn publish(url: &str, line: &str) {
    let mut c = redis::Client::open(url).and_then(|c| c.get_connection()).expect("redis connection");
    redis::cmd("SET").arg("sb:members").arg(line).query::<()>(&mut c).expect("SET sb:members");
    redis::cmd("PUBLISH").arg("sb:members").arg(line).query::<i64>(&mut c).expect("PUBLISH sb:members");
}
