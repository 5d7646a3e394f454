//! Real sipp (Debian package sip-tester) against `switchboard serve` and `softphone dial`, on
//! loopback with ephemeral ports. Skipped with a printed reason when sipp is missing; required when
//! `CI` is set. Waits are bounded by sipp's own `-timeout` and by process timeouts, never fixed sleeps.
//!
//! The tests against the service run their scenario twice at once, against `serve --workers 1`
//! and `--workers 2` (issue 16: correctness under sharding; [`procs::each_worker_count`]).

mod common;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/sipp.rs"]
mod sipp;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sipp_available() -> bool {
    let found = Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        assert!(std::env::var_os("CI").is_none(), "sipp is required in CI (apt-get install sip-tester)");
        eprintln!("skipping: sipp not installed (apt-get install sip-tester)");
    }
    found
}

/// The tests against the service take turns, each running its two runs (1 and 2 workers) at
/// once: as many services and sipps at a time as before the runs were doubled (two test
/// threads), so a loaded machine does not delay answers past sipp's 500 ms retransmissions.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `switchboard serve` on an ephemeral port, killed on drop.
struct Service {
    child: Child,
    port: u16,
}

impl Service {
    fn start(workers: usize, extra: &[&str]) -> Service {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        procs::set_workers(&mut cmd, workers);
        let mut child = cmd
            // Load from one address: the per-source rate limit is off (issue 14 point 4).
            .args(["serve", "--data", "none", "--listen", "127.0.0.1:0", "--rate-limit", "0"])
            // Hundreds of echo calls from one address: lift the per-source cap (issue 14 point 5).
            .args(["--max-echo-calls-per-source", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start switchboard serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("listening line");
        let port = line
            .split("udp 127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .and_then(|p| p.trim().parse().ok())
            .expect("port in listening line");
        Service { child, port }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs sipp with a stats file; returns (exit success, successful calls, failed calls, retransmissions).
fn run_sipp(args: &[String], limit: Duration) -> (bool, u64, u64, u64) {
    // Runs with 1 and 2 workers go at once: the thread's name (`workers=N`) keeps their dirs apart.
    let thread = std::thread::current().name().unwrap_or("main").replace(['=', ':'], "-");
    let dir = std::env::temp_dir().join(format!("sb-sipp-{}-{thread}-{}", std::process::id(), sipp::free_port()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let stat = dir.join("stat.csv");
    let mut child = Command::new("sipp")
        .args(args)
        .args(["-nostdin", "-trace_stat", "-fd", "1", "-stf"])
        .arg(&stat)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sipp");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait sipp") {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("sipp did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let csv = std::fs::read_to_string(&stat).unwrap_or_default();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(';').collect();
    let last: Vec<&str> = lines.last().unwrap_or("").split(';').collect();
    let col =
        |name: &str| header.iter().position(|h| *h == name).and_then(|i| last.get(i)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    (status.success(), col("SuccessfulCall(C)"), col("FailedCall(C)"), col("Retransmissions(C)"))
}

fn uac_args(port: u16, calls: u32, rate: u32, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["-sn", "uac", "-s", "echo", "-i", "127.0.0.1", "-p"].iter().map(|s| s.to_string()).collect();
    v.push(sipp::free_port().to_string());
    v.extend(["-m".into(), calls.to_string(), "-r".into(), rate.to_string(), "-timeout".into(), "60s".into(), "-timeout_error".into()]);
    v.extend(extra.iter().map(|s| s.to_string()));
    v.push(format!("127.0.0.1:{port}"));
    v
}

#[test]
fn sipp_uac_to_echo_500_calls_at_50_cps() {
    if !sipp_available() {
        return;
    }
    let _one = one_at_a_time();
    procs::each_worker_count(|workers| {
        let svc = Service::start(workers, &[]);
        let (ok, success, failed, _) = run_sipp(&uac_args(svc.port, 500, 50, &[]), Duration::from_secs(90));
        assert!(ok, "sipp reported failures");
        assert_eq!((success, failed), (500, 0));
    });
}

#[test]
fn sipp_uac_to_echo_with_10_percent_loss() {
    if !sipp_available() {
        return;
    }
    let _one = one_at_a_time();
    procs::each_worker_count(|workers| {
        let svc = Service::start(workers, &["--t1-ms", "100"]);
        let (ok, success, failed, retrans) =
            run_sipp(&uac_args(svc.port, 200, 50, &["-lost", "10", "-T2", "400"]), Duration::from_secs(120));
        assert!(ok, "sipp reported failures");
        assert_eq!((success, failed), (200, 0));
        assert!(retrans > 0, "10% loss must cause retransmissions");
    });
}

fn softphone_dial(port: u16, duration: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_softphone"))
        .args(["dial", &format!("sip:service@127.0.0.1:{port}"), "--duration", duration, "--summary", "json"])
        .output()
        .expect("run softphone")
}

fn sipp_uas(lost: Option<&str>) -> (Child, u16) {
    let port = sipp::free_port();
    let mut args: Vec<String> =
        ["-sn", "uas", "-i", "127.0.0.1", "-m", "1", "-nostdin", "-timeout", "60s", "-p"].iter().map(|s| s.to_string()).collect();
    args.push(port.to_string());
    if let Some(l) = lost {
        args.extend(["-lost".into(), l.into()]);
    }
    let mut child = Command::new("sipp")
        .args(&args)
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas");
    wait_bound(&mut child, port);
    (child, port)
}

/// Waits until sipp holds its SIP port (our own bind of it fails). The softphone's first INVITE
/// must not reach a closed port: the ICMP unreachable it draws is a transport error that ends the
/// call at once (RFC 3261 §8.1.3.1), which Timer A's retransmissions do not cover.
fn wait_bound(child: &mut Child, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        if let Some(s) = child.try_wait().expect("wait sipp uas") {
            panic!("sipp uas exited with {s} before binding 127.0.0.1:{port}");
        }
        assert!(Instant::now() < deadline, "sipp uas did not bind 127.0.0.1:{port} within 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_exit(mut child: Child, limit: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s.success();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_completed(out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "softphone failed: {stdout}");
    let json = stdout.lines().find(|l| l.starts_with('{')).expect("summary line");
    let v: serde_json::Value = serde_json::from_str(json).expect("summary JSON");
    assert_eq!(v["state"], "completed");
}

#[test]
fn softphone_dial_to_sipp_uas() {
    if !sipp_available() {
        return;
    }
    let (uas, port) = sipp_uas(None);
    assert_completed(&softphone_dial(port, "1"));
    assert!(wait_exit(uas, Duration::from_secs(30)), "sipp uas saw a failed call");
}

#[test]
fn softphone_dial_to_sipp_uas_with_10_percent_loss() {
    if !sipp_available() {
        return;
    }
    let (uas, port) = sipp_uas(Some("10"));
    assert_completed(&softphone_dial(port, "1"));
    assert!(wait_exit(uas, Duration::from_secs(60)), "sipp uas saw a failed call");
}

fn scenario(name: &str) -> PathBuf {
    common::root().join("fixtures/sipp").join(name)
}

#[test]
fn sipp_cancel_after_180_gets_200_and_487() {
    if !sipp_available() {
        return;
    }
    let _one = one_at_a_time();
    procs::each_worker_count(|workers| {
        let svc = Service::start(workers, &["--answer-delay", "10"]);
        let mut args: Vec<String> = vec!["-sf".into(), scenario("cancel_after_180.xml").display().to_string(), "-s".into(), "echo".into()];
        args.extend([
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            sipp::free_port().to_string(),
            "-m".into(),
            "5".into(),
            "-r".into(),
            "5".into(),
        ]);
        args.extend(["-timeout".into(), "30s".into(), "-timeout_error".into(), format!("127.0.0.1:{}", svc.port)]);
        let (ok, success, failed, _) = run_sipp(&args, Duration::from_secs(60));
        assert!(ok);
        assert_eq!((success, failed), (5, 0));
    });
}

#[test]
fn sipp_malformed_requests_get_the_rfc_answers() {
    if !sipp_available() {
        return;
    }
    let _one = one_at_a_time();
    procs::each_worker_count(|workers| {
        let svc = Service::start(workers, &[]);
        let mut args: Vec<String> = vec!["-sf".into(), scenario("malformed.xml").display().to_string()];
        args.extend(["-i".into(), "127.0.0.1".into(), "-p".into(), sipp::free_port().to_string(), "-m".into(), "1".into()]);
        args.extend(["-timeout".into(), "30s".into(), "-timeout_error".into(), format!("127.0.0.1:{}", svc.port)]);
        let (ok, success, failed, _) = run_sipp(&args, Duration::from_secs(60));
        assert!(ok);
        assert_eq!((success, failed), (1, 0));
    });
}
