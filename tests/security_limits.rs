//! Flood and guessing limits, and no user enumeration (issue 14 points 2 and 4), against the real
//! `switchboard serve` on loopback sockets. The attacker sends from 127.0.0.2, the legitimate
//! phone from 127.0.0.1 (both are loopback on Linux), so "another source" is a real second address.
//!
//! - A password-guessing run against alice from 127.0.0.2 is cut off after 10 failures: from then
//!   on even her right password from that address gets 403, and each failure logged one WARN line
//!   in the fail2ban format; alice herself, from 127.0.0.1, still registers.
//! - A flood of OPTIONS from 127.0.0.2 is mostly dropped unanswered (one `rate limit:` line for the
//!   source), while alice registers from 127.0.0.1 in the middle of it.
//! - An existing and an unknown user get answers of the same status and header shape, with and
//!   without (wrong) credentials, for REGISTER and INVITE.

#[path = "common/phone.rs"]
mod phone;
#[path = "common/procs.rs"]
mod procs;

use phone::{start, Phone, LIMIT};
use procs::{Proc, Stream, TempDir};
use std::time::{Duration, Instant};
use switchboard::message::{HeaderName, Message, Method};

const ATTACKER: &str = "127.0.0.2";

fn stderr_lines_with(svc: &Proc, needle: &str) -> Vec<String> {
    svc.lines(Stream::Stderr).into_iter().filter(|l| l.contains(needle)).collect()
}

/// The lines with `needle` once there are at least `n` (the log is read on another thread), or
/// what there is at the deadline.
fn wait_lines(svc: &Proc, needle: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let lines = stderr_lines_with(svc, needle);
        if lines.len() >= n || Instant::now() >= deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn password_guessing_is_cut_off_while_the_user_registers_from_elsewhere() {
    let dir = TempDir::new("sec-guess");
    // The limit is off so only the guessing limit is at work here.
    let (svc, service) = start(&dir, &["--rate-limit", "0"]);
    let mut attacker = Phone::new(ATTACKER, service);
    // svcrack style: one challenge, then guess after guess on its nonce.
    let req = attacker.request(Method::Register, "alice", None);
    let challenge = attacker.transact(&req);
    assert_eq!(challenge.status(), Some(401));
    for i in 0..10 {
        let creds = attacker.credentials(&req, &challenge, "alice", &format!("guess{i}"));
        let guess = attacker.request(Method::Register, "alice", Some(creds));
        assert_eq!(attacker.transact(&guess).status(), Some(403), "guess {i}");
    }
    // Cut off: the right password from the attacker's address is refused unchecked.
    let creds = attacker.credentials(&req, &challenge, "alice", "alice-secret");
    let right = attacker.request(Method::Register, "alice", Some(creds));
    assert_eq!(attacker.transact(&right).status(), Some(403), "blocked before checking\n{}", svc.transcript());
    // Alice at her own address is not locked out (never per user alone).
    let mut alice = Phone::new("127.0.0.1", service);
    assert_eq!(alice.register("alice", "alice-secret"), 200, "{}", svc.transcript());

    let failed = wait_lines(&svc, "auth failed: src=127.0.0.2:", 10);
    assert_eq!(failed.len(), 10, "one WARN line per checked failure: {failed:#?}");
    assert!(failed.iter().all(|l| l.contains("WARN") && l.contains(" user=alice realm=switchboard reason=wrong-password")), "{failed:#?}");
    assert_eq!(wait_lines(&svc, "auth blocked: src=127.0.0.2", 1).len(), 1, "{}", svc.transcript());
}

#[test]
fn a_flood_from_one_source_is_dropped_while_another_registers() {
    let dir = TempDir::new("sec-flood");
    // A low limit (50/s, burst 100) so the flood is many times the limit on any machine.
    let (svc, service) = start(&dir, &["--rate-limit", "50"]);
    let mut flooder = Phone::new(ATTACKER, service);
    let sent = 2_000u32;
    let mut answered = 0u32;
    let mut buf = [0u8; 65536];
    flooder.socket.set_nonblocking(true).expect("nonblocking");
    let mut alice = Phone::new("127.0.0.1", service);
    for i in 0..sent {
        let m = flooder.request(Method::Options, "flood", None);
        flooder.send(&m);
        while flooder.socket.recv(&mut buf).is_ok() {
            answered += 1;
        }
        if i == sent / 2 {
            // In the middle of the flood, alice registers from her own address.
            assert_eq!(alice.register("alice", "alice-secret"), 200, "{}", svc.transcript());
        }
    }
    flooder.socket.set_nonblocking(false).expect("blocking");
    while flooder.socket.recv(&mut buf).is_ok() {
        answered += 1;
    }
    svc.wait_line("rate limit: src=127.0.0.2 dropped=", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    assert!(answered < sent / 2, "most of the flood is dropped: {answered} of {sent} answered");
    assert_eq!(stderr_lines_with(&svc, "rate limit: src=127.0.0.2").len(), 1, "one line per source per minute");
    assert!(stderr_lines_with(&svc, "rate limit: src=127.0.0.1").is_empty());
    eprintln!("flood: {sent} OPTIONS sent, {answered} answered");
}

/// Status, header names in order, and the parameter names of challenges: what a scanner compares.
fn shape(m: &Message) -> (Option<u16>, Vec<u8>, Vec<String>) {
    let names = m
        .headers()
        .map(|h| {
            let name = String::from_utf8_lossy(h.raw_name).to_ascii_lowercase();
            if matches!(h.name, HeaderName::WwwAuthenticate | HeaderName::ProxyAuthenticate) {
                let v = String::from_utf8_lossy(h.value);
                let params: Vec<&str> = v.split(',').map(|p| p.split('=').next().unwrap_or("").trim()).collect();
                format!("{name}: {}", params.join(","))
            } else {
                name
            }
        })
        .collect();
    (m.status(), m.reason().unwrap_or_default().to_vec(), names)
}

#[test]
fn existing_and_unknown_users_are_answered_alike() {
    let dir = TempDir::new("sec-enum");
    let (svc, service) = start(&dir, &[]);
    let mut answers = Vec::new();
    for user in ["alice", "nobody"] {
        let mut p = Phone::new(ATTACKER, service);
        let mut seen = Vec::new();
        for method in [Method::Register, Method::Invite] {
            let req = p.request(method.clone(), user, None);
            let challenge = p.transact(&req);
            let creds = p.credentials(&req, &challenge, user, "not-the-password");
            let retry = p.request(method, user, Some(creds));
            let wrong = p.transact(&retry);
            seen.push((shape(&challenge), shape(&wrong)));
        }
        answers.push(seen);
    }
    assert_eq!(answers[0][0].0 .0, Some(401));
    assert_eq!(answers[0][1].0 .0, Some(407));
    assert_eq!(answers[0][0].1 .0, Some(403));
    assert_eq!(answers[0], answers[1], "alice and nobody look the same");
    // The log tells the operator which it was; the wire does not.
    assert_eq!(wait_lines(&svc, "user=nobody realm=switchboard reason=unknown-user", 2).len(), 2, "{}", svc.transcript());
    // And alice still registers.
    assert_eq!(Phone::new("127.0.0.1", service).register("alice", "alice-secret"), 200);
}

/// Bad limit settings stop `serve` before it listens, with one line naming the setting.
#[test]
fn bad_limit_settings_are_one_line_errors() {
    let dir = TempDir::new("sec-bad");
    let config = dir.join("bad.toml");
    let cases: [(&[&str], &str, &str); 3] = [
        (&["--auth-backoff", "100000"], "", "auth_backoff_secs must be between 0 and 86400"),
        (&[], "rate_limit = -1\n", "rate_limit"),
        (&[], "rate_limits = 5\n", "rate_limits"),
    ];
    for (flags, file, needle) in cases {
        std::fs::write(&config, file).expect("write config");
        let mut cmd = std::process::Command::new(phone::SB);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data", "none", "--config", config.to_str().unwrap()]).args(flags);
        let mut proc = Proc::spawn("switchboard serve (bad limits)", &mut cmd);
        let status = proc.expect_exit(LIMIT);
        assert!(!status.success(), "{needle}: serve started:\n{}", proc.transcript());
        let err = proc.lines(Stream::Stderr);
        assert_eq!(err.len(), 1, "{needle}: one line expected: {err:?}");
        assert!(err[0].contains(needle), "{needle}: {}", err[0]);
        assert!(proc.lines(Stream::Stdout).is_empty(), "{needle}: it must not start listening");
    }
}
