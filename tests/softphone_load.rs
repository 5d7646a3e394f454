//! `softphone load` against `switchboard serve`'s echo user, on loopback with ephemeral ports.
//!
//! Setup: one `switchboard serve --data none --listen 127.0.0.1:0` (its first stdout line gives the
//! port), then `softphone load sip:echo@127.0.0.1:PORT --rate 200 --calls 400` bounded by
//! `--timeout` and by a process deadline. Asserts: exit 0, every table row present, ok == 400 and
//! failed == 0, attempted == planned, percentiles in order. No timing assertions: the figures
//! depend on the machine. A bad flag (`--rate 0`) gives one line on stderr and a non-zero exit.

#[path = "common/procs.rs"]
mod procs;

use procs::{Proc, Stream};
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// A `switchboard serve` with no store on an ephemeral port, stopped on drop.
struct Service {
    proc: Proc,
    port: u16,
}

impl Service {
    fn start() -> Service {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        // 400 echo calls from one address, 200 calls/s: lift the per-source cap (issue 14 point 5)
        // and the per-source rate limit (point 4).
        cmd.args(["serve", "--data", "none", "--listen", "127.0.0.1:0", "--max-echo-calls-per-source", "0", "--rate-limit", "0"]);
        let (proc, port) = procs::spawn_service(&mut cmd, LIMIT);
        Service { proc, port }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.proc.terminate(Duration::from_secs(5));
    }
}

fn softphone(args: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_softphone"));
    cmd.args(args);
    Proc::spawn("softphone load", &mut cmd)
}

/// The `name value` rows of the final table.
fn table(p: &Proc) -> HashMap<String, String> {
    p.lines(Stream::Stdout)
        .iter()
        .filter_map(|l| l.split_once(char::is_whitespace).map(|(k, v)| (k.to_owned(), v.trim().to_owned())))
        .collect()
}

fn number(t: &HashMap<String, String>, name: &str, transcript: &str) -> f64 {
    let v = t.get(name).unwrap_or_else(|| panic!("no {name} row:\n{transcript}"));
    v.parse().unwrap_or_else(|_| panic!("{name} is not a number: {v}\n{transcript}"))
}

#[test]
fn load_against_echo_completes_every_call() {
    let service = Service::start();
    let uri = format!("sip:echo@127.0.0.1:{}", service.port);
    let mut load = softphone(&["load", &uri, "--rate", "200", "--calls", "400", "--timeout", "40"]);
    let status = load.expect_exit(LIMIT);
    let transcript = load.transcript();
    assert!(status.success(), "softphone load failed:\n{transcript}");
    let t = table(&load);
    for row in ["target", "workers", "failures", "wall_s", "achieved_cps", "offered_cps", "retransmissions", "stopped_by"] {
        assert!(t.contains_key(row), "no {row} row:\n{transcript}");
    }
    assert_eq!(number(&t, "planned", &transcript), 400.0);
    assert_eq!(number(&t, "attempted", &transcript), 400.0);
    assert_eq!(number(&t, "ok", &transcript), 400.0, "{transcript}");
    assert_eq!(number(&t, "failed", &transcript), 0.0, "{transcript}");
    assert_eq!(t["failures"], "-");
    assert_eq!(t["stopped_by"], "-");
    let p: Vec<f64> = ["setup_p50_ms", "setup_p90_ms", "setup_p99_ms", "setup_max_ms"].iter().map(|r| number(&t, r, &transcript)).collect();
    assert!(p[0] > 0.0 && p.windows(2).all(|w| w[0] <= w[1]), "percentiles out of order: {p:?}\n{transcript}");
    assert!(number(&t, "achieved_cps", &transcript) > 0.0);
    // The progress line went to stderr at least once (the run takes about two seconds).
    assert!(load.lines(Stream::Stderr).iter().any(|l| l.contains("offered 200/s")), "{transcript}");
}

#[test]
fn load_refuses_a_zero_rate_in_one_line() {
    let mut load = softphone(&["load", "sip:echo@127.0.0.1:5060", "--rate", "0", "--calls", "10"]);
    let status = load.expect_exit(LIMIT);
    assert!(!status.success());
    let err = load.lines(Stream::Stderr);
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(err[0].contains("--rate"), "{err:?}");
    assert!(load.lines(Stream::Stdout).is_empty());
}

/// Batched receive and send (issue 16 point 5): one worker places every call, so the answers of
/// overlapping calls queue up and are taken together (the 100 and the 200 of one INVITE arrive
/// back to back) and a round's ACK and BYE go out in one `sendmmsg`; every call is still counted
/// once: attempted == ok + failed == planned, 0 failed against the echo user. (A moderate rate:
/// the service is a debug build on a shared machine.)
#[test]
fn batched_load_counts_every_call_once() {
    let service = Service::start();
    let uri = format!("sip:echo@127.0.0.1:{}", service.port);
    let mut load = softphone(&["load", &uri, "--rate", "300", "--calls", "600", "--workers", "1", "--timeout", "40"]);
    let status = load.expect_exit(LIMIT);
    let transcript = load.transcript();
    assert!(status.success(), "softphone load failed:\n{transcript}");
    let t = table(&load);
    let (attempted, ok, failed) = (number(&t, "attempted", &transcript), number(&t, "ok", &transcript), number(&t, "failed", &transcript));
    assert_eq!(number(&t, "planned", &transcript), 600.0);
    assert_eq!(attempted, ok + failed, "{transcript}");
    assert_eq!((attempted, ok, failed), (600.0, 600.0, 0.0), "{transcript}");
    assert_eq!(t["failures"], "-");
}

/// Against a port where nothing answers, stopped by --timeout: every attempted call is counted as
/// failed ("unfinished"), none as ok, and the exit status says so.
#[test]
fn unanswered_load_counts_every_attempt_as_failed() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a silent socket");
    let port = silent.local_addr().expect("its address").port();
    let uri = format!("sip:echo@127.0.0.1:{port}");
    let mut load = softphone(&["load", &uri, "--rate", "200", "--calls", "50", "--workers", "2", "--timeout", "1"]);
    let status = load.expect_exit(LIMIT);
    let transcript = load.transcript();
    assert!(!status.success(), "{transcript}");
    let t = table(&load);
    let (attempted, ok, failed) = (number(&t, "attempted", &transcript), number(&t, "ok", &transcript), number(&t, "failed", &transcript));
    assert_eq!(attempted, ok + failed, "{transcript}");
    assert_eq!((attempted, ok, failed), (50.0, 0.0, 50.0), "{transcript}");
    assert!(t["failures"].contains("unfinished"), "{transcript}");
    assert_eq!(t["stopped_by"], "timeout", "{transcript}");
    drop(silent);
}

/// The paced loop (`--tick-ms`, issue 16 point 5): a worker wakes every 5 ms and serves what
/// queued meanwhile in one batch. Every call still completes and is counted once, and the setup
/// percentiles are there and in order.
#[test]
fn paced_load_completes_every_call() {
    let service = Service::start();
    let uri = format!("sip:echo@127.0.0.1:{}", service.port);
    let mut load = softphone(&["load", &uri, "--rate", "300", "--calls", "600", "--workers", "1", "--tick-ms", "5", "--timeout", "40"]);
    let status = load.expect_exit(LIMIT);
    let transcript = load.transcript();
    assert!(status.success(), "softphone load failed:\n{transcript}");
    let t = table(&load);
    let (attempted, ok, failed) = (number(&t, "attempted", &transcript), number(&t, "ok", &transcript), number(&t, "failed", &transcript));
    assert_eq!((attempted, ok, failed), (600.0, 600.0, 0.0), "{transcript}");
    assert_eq!(t["failures"], "-");
    let p: Vec<f64> = ["setup_p50_ms", "setup_p90_ms", "setup_p99_ms", "setup_max_ms"].iter().map(|r| number(&t, r, &transcript)).collect();
    assert!(p[0] > 0.0 && p.windows(2).all(|w| w[0] <= w[1]), "percentiles out of order: {p:?}\n{transcript}");
}

/// Paced, against a port where nothing answers: the transaction layer's timers still run on the
/// ticks (Timer A retransmits the INVITEs within the 1 s bound), and every call is counted failed.
#[test]
fn paced_load_still_retransmits_and_times_out() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a silent socket");
    let port = silent.local_addr().expect("its address").port();
    let uri = format!("sip:echo@127.0.0.1:{port}");
    let mut load = softphone(&["load", &uri, "--rate", "200", "--calls", "50", "--workers", "1", "--tick-ms", "10", "--timeout", "1"]);
    let status = load.expect_exit(LIMIT);
    let transcript = load.transcript();
    assert!(!status.success(), "{transcript}");
    let t = table(&load);
    assert_eq!((number(&t, "attempted", &transcript), number(&t, "ok", &transcript), number(&t, "failed", &transcript)), (50.0, 0.0, 50.0));
    assert!(number(&t, "retransmissions", &transcript) >= 50.0, "{transcript}");
    assert_eq!(t["stopped_by"], "timeout", "{transcript}");
    drop(silent);
}

#[test]
fn load_refuses_a_tick_above_100_ms_in_one_line() {
    let mut load = softphone(&["load", "sip:echo@127.0.0.1:5060", "--rate", "10", "--calls", "10", "--tick-ms", "101"]);
    let status = load.expect_exit(LIMIT);
    assert!(!status.success());
    let err = load.lines(Stream::Stderr);
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(err[0].contains("--tick-ms"), "{err:?}");
}
