//! Issue 14 point 11 leftover: a user removed with `switchboard users remove NAME` while in a
//! call. Real service and softphone binaries on loopback: alice calls bob through the B2BUA; while
//! the call is up, `users remove alice` ends it (the service sends BYE on both legs, the call
//! record says `user-removed` by `service`) and drops alice's bindings. In the same test carol
//! then calls bob, and that call works to its end.
//!
//! Every wait is on an output line, a process exit or a polled condition with a deadline.

#[path = "common/procs.rs"]
mod procs;
#[path = "common/service_cli.rs"]
mod service_cli;

use procs::{Proc, Stream, TempDir};
use serde_json::Value;
use service_cli::{calls, users, PHONE, SB};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Polls `what` until it holds, for at most 15 s.
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(15), "{what}: not within 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `switchboard OUTPUT --json` lines.
fn json_lines(dir: &Path, what: &str) -> Vec<Value> {
    let out = Command::new(SB).args([what, "--json", "--data"]).arg(dir).output().expect(what);
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON")).collect()
}

/// The softphone's JSON summary line.
fn summary(p: &Proc) -> Value {
    let line = p.lines(Stream::Stdout).into_iter().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("summary\n{}", p.transcript()));
    serde_json::from_str(&line).expect("summary JSON")
}

fn phone(dir: &Path, user: &str, registrar: &str, ports: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(PHONE);
    cmd.args(["--user", user, "--register", registrar, "--password-file"])
        .arg(dir.join(format!("{user}.pw")))
        .args(["--summary", "json", "--rtp-ports", ports])
        .args(args);
    Proc::spawn(user, &mut cmd)
}

#[test]
fn removing_a_user_in_a_call_ends_the_call_and_drops_the_bindings() {
    let dir = TempDir::new("security-user-removed");
    users(dir.path(), &["alice", "bob", "carol"]);
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rtp-ports", "36000-36039", "--data"]).arg(dir.path());
    let (svc, port) = procs::spawn_service(&mut cmd, Duration::from_secs(15));
    let registrar = format!("sip:127.0.0.1:{port}");

    let mut bob = phone(dir.path(), "bob", &registrar, "36100-36149", &["answer", "--calls", "2"]);
    bob.wait_line("registered aor=", Duration::from_secs(15)).expect("bob registered");
    let mut alice = phone(dir.path(), "alice", &registrar, "36200-36249", &["dial", "sip:bob@127.0.0.1", "--duration", "60"]);
    until("alice's call up", || calls(dir.path()).iter().any(|c| c["phase"] == "up"));
    until("alice registered", || {
        json_lines(dir.path(), "registrations").iter().any(|b| b["aor"].as_str().is_some_and(|a| a.starts_with("sip:alice@")))
    });

    // alice removed mid-call: both legs get BYE, the record says why, her binding goes.
    let out = Command::new(SB).args(["users", "--data"]).arg(dir.path()).args(["remove", "alice"]).output().expect("users remove");
    assert!(out.status.success(), "users remove: {}", String::from_utf8_lossy(&out.stderr));
    let status = alice.expect_exit(Duration::from_secs(15));
    let a = summary(&alice);
    assert_eq!(a["reason"], "bye-remote", "{a:#}\n{status:?}\n{}\n{}", alice.transcript(), svc.transcript());
    until("no call left", || calls(dir.path()).is_empty());
    until("the call record", || !json_lines(dir.path(), "cdr").is_empty());
    let records = json_lines(dir.path(), "cdr");
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(
        (records[0]["end_reason"].as_str(), records[0]["ended_by"].as_str()),
        (Some("user-removed"), Some("service")),
        "{records:#?}"
    );
    until("alice's binding dropped", || {
        !json_lines(dir.path(), "registrations").iter().any(|b| b["aor"].as_str().is_some_and(|a| a.starts_with("sip:alice@")))
    });
    svc.wait_line("user removed: ending the call", Duration::from_secs(5)).expect("the service's log line");

    // The legitimate call: carol calls bob, talks for a second and hangs up.
    let mut carol = phone(dir.path(), "carol", &registrar, "36300-36349", &["dial", "sip:bob@127.0.0.1", "--duration", "1"]);
    let status = carol.expect_exit(Duration::from_secs(20));
    let c = summary(&carol);
    assert!(status.success(), "{}", carol.transcript());
    assert_eq!((c["state"].as_str(), c["bye_status"].as_u64()), (Some("completed"), Some(200)), "{c:#}\n{}", carol.transcript());
    let status = bob.expect_exit(Duration::from_secs(20));
    assert!(status.success(), "{}", bob.transcript());
    let records = json_lines(dir.path(), "cdr");
    assert!(records.iter().any(|r| r["end_reason"] == "bye" && r["ended_by"] == "caller"), "{records:#?}");
}
