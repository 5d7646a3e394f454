//! Running sipp (3.6.1, Debian package sip-tester) from tests: each run gets its own working
//! directory under the test's temp dir, a statistics file (`-trace_stat -stf`, dumped every second
//! and at exit) and an error file (`-trace_err`), and is bounded by a deadline on top of sipp's own
//! `-timeout`. Outcomes are read from the last line of the statistics file, as
//! tests/sipp_signalling.rs does.
#![allow(dead_code)]

use super::procs::{tool_available, Proc};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// True when sipp can be started; otherwise skips (prints why) or, with `CI` set, fails.
pub fn available() -> bool {
    tool_available("sipp", &["-v"], "apt-get install sip-tester")
}

/// A scenario under fixtures/sipp/.
pub fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sipp").join(name).display().to_string()
}

/// A loopback UDP port that is free right now (sipp binds it a moment later; see
/// [`Sipp::wait_bound`] for the race), and never handed out before in this process: the runs of
/// a scenario with 1 and 2 workers go at once, and the kernel can give one thread the port it
/// gave the other a moment ago, before that one's sipp bound it.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()).expect("free port");
        if given.insert(port) {
            return port;
        }
    }
    panic!("no loopback UDP port left that this process has not handed out");
}

/// What a finished sipp run reported.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Exit status; `None` when it had to be killed at the deadline.
    pub status: Option<ExitStatus>,
    pub successful: u64,
    pub failed: u64,
    pub retransmissions: u64,
    /// Calls still running at the last statistics dump.
    pub current: u64,
    /// From spawn to exit.
    pub elapsed: Duration,
    /// The error file (`-trace_err`), possibly long.
    pub errors: String,
}

impl Outcome {
    pub fn exited_ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The first `n` lines of the error file, for failure messages.
    pub fn error_head(&self, n: usize) -> String {
        self.errors.lines().take(n).collect::<Vec<_>>().join("\n")
    }
}

/// One sipp process.
pub struct Sipp {
    pub proc: Proc,
    pub port: u16,
    dir: PathBuf,
    started: Instant,
}

impl Sipp {
    /// Starts sipp in `dir/name` (created) bound to 127.0.0.1:`port` with `args` (scenario,
    /// limits, remote address ...) plus `-nostdin` and the statistics and error files.
    pub fn spawn(name: &str, dir: &Path, port: u16, args: &[String]) -> Sipp {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut cmd = Command::new("sipp");
        cmd.current_dir(&dir)
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
            .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1", "-trace_err", "-error_file", "errors.log"])
            .args(args);
        // SB_SIPP_TRACE=1 keeps every message sipp sent and received (messages.log), for debugging.
        if std::env::var_os("SB_SIPP_TRACE").is_some() {
            cmd.args(["-trace_msg", "-message_file", "messages.log"]);
        }
        let started = Instant::now();
        Sipp { proc: Proc::spawn(name, &mut cmd), port, dir, started }
    }

    /// Waits until sipp holds its SIP port (our own bind of it fails), so a peer's first request
    /// is not sent into the void. Errors when sipp exits first (e.g. "Unable to bind" after another
    /// process took the port) or the deadline passes.
    pub fn wait_bound(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.proc.wait_exit(Duration::ZERO) {
                return Err(format!("{} exited with {s} before binding 127.0.0.1:{}:\n{}", self.proc.name(), self.port, self.errors()));
            }
            if UdpSocket::bind(("127.0.0.1", self.port)).is_err() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{} did not bind 127.0.0.1:{} within {limit:?}", self.proc.name(), self.port));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.join("errors.log")).unwrap_or_default()
    }

    /// Waits up to `limit` for sipp to exit (killing it after that) and reads its statistics.
    pub fn finish(&mut self, limit: Duration) -> Outcome {
        let status = self.proc.wait_exit(limit);
        if status.is_none() {
            self.proc.kill();
        }
        let elapsed = self.started.elapsed();
        let csv = std::fs::read_to_string(self.dir.join("stat.csv")).unwrap_or_default();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split(';').collect();
        let last: Vec<&str> = lines.last().unwrap_or("").split(';').collect();
        let col = |name: &str| {
            header.iter().position(|h| *h == name).and_then(|i| last.get(i)).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0)
        };
        Outcome {
            status,
            successful: col("SuccessfulCall(C)"),
            failed: col("FailedCall(C)"),
            retransmissions: col("Retransmissions(C)"),
            current: col("CurrentCall"),
            elapsed,
            errors: self.errors(),
        }
    }
}
