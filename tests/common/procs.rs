//! Child processes for interop tests: spawn with captured output, wait for an output line, for exit
//! or for EOF, each with a deadline, and stop only the child we started (through its handle; SIGTERM
//! goes to `child.id()` while the child is not yet reaped, so the pid cannot belong to anyone else).
//! Also private temp dirs, free loopback ports and the "is this tool installed" check.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The variable `switchboard serve` reads its worker count from (`--workers`).
pub const WORKERS_ENV: &str = "SWITCHBOARD_WORKERS";

/// The worker counts each scenario of the sipp, baresip and kill -9 suites runs with (issue 16:
/// correctness under sharding): 1 (the single loop) and 2. When SWITCHBOARD_WORKERS is set in the
/// test's environment, only that count (a suite run by hand with, say, 4 workers).
pub fn worker_counts() -> Vec<usize> {
    match std::env::var(WORKERS_ENV) {
        Ok(v) => vec![v.trim().parse().unwrap_or_else(|_| panic!("{WORKERS_ENV}={v}: not a number"))],
        Err(_) => vec![1, 2],
    }
}

/// Runs `scenario(workers)` once for each of [`worker_counts`], concurrently, each on its own
/// thread named `workers=N` (so a failure's panic message says which count failed). The
/// scenario must start its service with [`set_workers`] and keep everything else apart per count
/// (ephemeral ports, or fixed ranges chosen by the count, and its own temp dir). Waits for all
/// of them, then fails if any failed.
pub fn each_worker_count(scenario: impl Fn(usize) + Sync) {
    let counts = worker_counts();
    let failed: Vec<usize> = std::thread::scope(|s| {
        let runs: Vec<_> = counts
            .iter()
            .map(|&n| {
                let scenario = &scenario;
                let run = std::thread::Builder::new().name(format!("workers={n}")).spawn_scoped(s, move || scenario(n));
                (n, run.unwrap_or_else(|e| panic!("start the workers={n} thread: {e}")))
            })
            .collect();
        runs.into_iter().filter_map(|(n, run)| run.join().is_err().then_some(n)).collect()
    });
    assert!(failed.is_empty(), "the scenario failed with --workers {failed:?} (its panic is printed above)");
}

/// Runs `scenario(workers)` once for each of [`worker_counts`], one after the other (for tests
/// whose fixed port ranges would collide if both ran at once; they cost twice the time). Stops at
/// the first failure, whose panic names the count.
pub fn each_worker_count_in_turn(mut scenario: impl FnMut(usize)) {
    for n in worker_counts() {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(n)));
        if let Err(e) = run {
            eprintln!("the scenario failed with --workers {n}");
            std::panic::resume_unwind(e);
        }
    }
}

/// A fixed port range `lo-hi` split between the runs of [`each_worker_count`] that go at once:
/// the lower half for `--workers 1` (and any other count), the upper half for `--workers 2`. For
/// tests that give the service and the phones fixed ranges, so the two runs never bind each
/// other's ports.
pub fn range_for(workers: usize, lo: u16, hi: u16) -> String {
    let mid = lo + (hi - lo).div_ceil(2);
    if workers == 2 {
        format!("{mid}-{hi}")
    } else {
        format!("{lo}-{}", mid - 1)
    }
}

/// Sets the service's worker count on `cmd` (SWITCHBOARD_WORKERS in its environment, which
/// `serve --workers` reads), unless SWITCHBOARD_WORKERS is set in the test's environment: that
/// count wins for every service the test starts (the child inherits it), as it does for
/// [`worker_counts`].
pub fn set_workers(cmd: &mut Command, workers: usize) -> &mut Command {
    if std::env::var_os(WORKERS_ENV).is_some() {
        return cmd;
    }
    cmd.env(WORKERS_ENV, workers.to_string())
}

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Default)]
struct Captured {
    lines: Vec<(Stream, String)>,
    /// Pipes not yet at EOF.
    open: usize,
}

type Shared = Arc<(Mutex<Captured>, Condvar)>;

/// A child process whose stdout and stderr are read line by line in the background. Dropping it
/// kills the child (if still running) and reaps it.
pub struct Proc {
    name: String,
    child: Child,
    out: Shared,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdin from /dev/null and both output pipes captured.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        // `serve` runs one worker per core by default. A test chooses the count for its service:
        // the sipp, baresip and kill -9 suites run each scenario with 1 and 2 workers
        // ([`each_worker_count`], which sets it on the command with [`set_workers`]), a few tests
        // give --workers themselves (tests/service_workers.rs, redis_cluster, failover_b2bua).
        // Any other service runs one worker (the single loop), unless SWITCHBOARD_WORKERS is set
        // in the test's environment (to run a suite with another count by hand). Two tests of
        // security_caps.rs stay on one worker on purpose: they count exact refusals against one
        // worker's caps, and with N workers the caps are per-worker budgets (BENCHMARKS.md, issue
        // 16 point 1).
        if std::env::var_os(WORKERS_ENV).is_none() && !cmd.get_envs().any(|(k, _)| k == WORKERS_ENV) {
            cmd.env(WORKERS_ENV, "1");
        }
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let out: Shared = Arc::new((Mutex::new(Captured { lines: Vec::new(), open: 2 }), Condvar::new()));
        let stdout = child.stdout.take().expect("stdout pipe");
        let stderr = child.stderr.take().expect("stderr pipe");
        reader(stdout, Stream::Stdout, out.clone());
        reader(stderr, Stream::Stderr, out.clone());
        Proc { name: name.to_owned(), child, out, status: None }
    }

    /// The child's process id (to signal it, e.g. SIGSTOP/SIGCONT).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until a line (either pipe) contains `needle`, and returns it. Errors with the output
    /// so far when the deadline passes or both pipes reach EOF first (the process ended).
    pub fn wait_line(&self, needle: &str, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        let (lock, cond) = &*self.out;
        let mut g = lock.lock().expect("output lock");
        loop {
            if let Some((_, l)) = g.lines.iter().find(|(_, l)| l.contains(needle)) {
                return Ok(l.clone());
            }
            if g.open == 0 {
                drop(g);
                return Err(format!("{} ended before printing '{needle}':\n{}", self.name, self.transcript()));
            }
            let now = Instant::now();
            if now >= deadline {
                drop(g);
                return Err(format!("{} printed no '{needle}' within {limit:?}:\n{}", self.name, self.transcript()));
            }
            g = cond.wait_timeout(g, deadline - now).expect("output lock").0;
        }
    }

    /// Lines of one pipe so far.
    pub fn lines(&self, stream: Stream) -> Vec<String> {
        let g = self.out.0.lock().expect("output lock");
        g.lines.iter().filter(|(s, _)| *s == stream).map(|(_, l)| l.clone()).collect()
    }

    /// Everything captured so far (stderr lines marked with `!`), for failure messages; long
    /// transcripts keep their last 150 lines.
    pub fn transcript(&self) -> String {
        let g = self.out.0.lock().expect("output lock");
        let skip = g.lines.len().saturating_sub(150);
        let mut s = String::new();
        if skip > 0 {
            s.push_str(&format!("  [... {skip} lines]\n"));
        }
        for (stream, l) in &g.lines[skip..] {
            s.push_str(if *stream == Stream::Stderr { "  ! " } else { "  | " });
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// Waits for the child to exit, then (bounded by the same deadline) for its pipes to reach
    /// EOF so the captured output is complete. `None` when it is still running at the deadline.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.try_status() {
                break s;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (lock, cond) = &*self.out;
        let mut g = lock.lock().expect("output lock");
        while g.open > 0 {
            let now = Instant::now();
            // A grandchild holding the pipes open must not hang the test: give up on the rest.
            let until = deadline.max(now + Duration::from_secs(2));
            g = cond.wait_timeout(g, until - now).expect("output lock").0;
            if Instant::now() >= until {
                break;
            }
        }
        Some(status)
    }

    /// [`Proc::wait_exit`], panicking with the transcript on timeout (the child is killed by drop).
    pub fn expect_exit(&mut self, limit: Duration) -> ExitStatus {
        match self.wait_exit(limit) {
            Some(s) => s,
            None => panic!("{} still running after {limit:?}:\n{}", self.name, self.transcript()),
        }
    }

    /// Asks the child to stop with SIGTERM, waits up to `grace`, then kills it. Returns the exit
    /// status, or `None` when it had to be killed.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.try_status() {
            return Some(s);
        }
        // Still running and not reaped: the pid is our child's.
        let pid = self.child.id().to_string();
        let sent =
            Command::new("kill").args(["-TERM", &pid]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        if sent {
            if let Some(s) = self.wait_exit(grace) {
                return Some(s);
            }
        }
        self.kill();
        None
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the child, if it is still running.
    pub fn signal(&mut self, signal: &str) {
        if self.try_status().is_none() {
            let pid = self.child.id().to_string();
            let sent = Command::new("kill").args([&format!("-{signal}"), &pid]).stdout(Stdio::null()).stderr(Stdio::null()).status();
            assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
        }
    }

    /// SIGKILL (if still running) and reap.
    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            if let Ok(s) = self.child.wait() {
                self.status = Some(s);
            }
        }
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what the process said (its last 150 lines), so a failure in CI
        // can be read without running it again.
        if std::thread::panicking() {
            eprintln!("--- output of {} (test failed) ---\n{}", self.name, self.transcript());
        }
    }
}

fn reader<R: Read + Send + 'static>(pipe: R, stream: Stream, out: Shared) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = strip_ansi(String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']));
                    let (lock, cond) = &*out;
                    lock.lock().expect("output lock").lines.push((stream, line));
                    cond.notify_all();
                }
            }
        }
        let (lock, cond) = &*out;
        lock.lock().expect("output lock").open -= 1;
        cond.notify_all();
    });
}

/// Drops ANSI colour sequences (`ESC [ ... letter`), which baresip puts around errors.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for t in chars.by_ref() {
                    if t.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// True when `tool` can be started (with `probe` arguments). When it cannot: prints a skip reason
/// and returns false, or panics when `CI` is set, where every interop test must run.
pub fn tool_available(tool: &str, probe: &[&str], hint: &str) -> bool {
    let ok = Command::new(tool).args(probe).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !ok {
        skip_or_fail(&format!("{tool} is not installed ({hint})"));
    }
    ok
}

/// Prints "skipping: why", or panics with it when `CI` is set.
pub fn skip_or_fail(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "required in CI: {why}");
    eprintln!("skipping: {why}");
}

/// A private directory under the system temp dir, removed on drop unless the test is failing
/// (then its path is printed so the logs and recordings can be looked at).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sb-{tag}-{}-{n}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A loopback port that is free for both UDP and TCP right now (baresip binds both), and not
/// handed out before in this process (runs with 1 and 2 workers go at once).
pub fn free_port_udp_tcp() -> u16 {
    static GIVEN: Mutex<std::collections::BTreeSet<u16>> = Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("local addr").port();
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// An even port in `range` from which `span` consecutive ports are free for UDP right now. The
/// search starts at a varying offset, so concurrent test runs seldom pick the same ports, and a
/// span never overlaps one this process handed out before (tests of one binary run in parallel,
/// and a service binds its relay ports only when a call comes); the caller must still cope with
/// losing a race to another process (retry when the bind fails).
pub fn free_udp_span(range: std::ops::RangeInclusive<u16>, span: u16) -> u16 {
    static GIVEN: std::sync::Mutex<Vec<(u16, u16)>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let first = *range.start() + range.start() % 2;
    let slots = (range.end().saturating_sub(span - 1).saturating_sub(first)) / 2 + 1;
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0) ^ std::process::id();
    for i in 0..u32::from(slots) {
        let base = first + 2 * ((seed.wrapping_add(i) % u32::from(slots)) as u16);
        if given.iter().any(|&(b, n)| base < b + n && b < base + span) {
            continue;
        }
        let held: Vec<_> = (base..base + span).map_while(|p| UdpSocket::bind(("127.0.0.1", p)).ok()).collect();
        if held.len() == usize::from(span) {
            given.push((base, span));
            return base;
        }
    }
    panic!("no {span} free UDP ports in {range:?}");
}

/// Starts `switchboard serve ...` (`cmd`, listening on 127.0.0.1) and waits for its listening
/// line; returns it and the UDP port it printed.
pub fn spawn_service(cmd: &mut Command, limit: Duration) -> (Proc, u16) {
    let proc = Proc::spawn("switchboard serve", cmd);
    let line = proc.wait_line("switchboard listening on udp 127.0.0.1:", limit).unwrap_or_else(|e| panic!("{e}"));
    let port = line
        .split("udp 127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in: {line}"));
    (proc, port)
}
