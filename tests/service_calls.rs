//! Phones registered to `switchboard serve` call each other through it: digest auth on REGISTER and
//! INVITE, routing to the registered contact (as a proxy, and as a B2BUA), media end to end; forking
//! to two phones of one user (the first to answer wins, the other gets CANCEL and answers 487).
//! `tests/service_b2bua.rs` has the B2BUA's own checks (relay, records, hold, restart).

#[path = "common/heard.rs"]
mod heard;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The tests here each run a service and two or three phones with media; run them one at a time
/// so a loaded 2-core machine never starves one of them past its deadlines.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sb-{name}-{}-{:?}", std::process::id(), Instant::now()).replace(['{', '}', ' ', ':'], ""));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn bin(name: &str) -> &'static str {
    match name {
        "switchboard" => env!("CARGO_BIN_EXE_switchboard"),
        _ => env!("CARGO_BIN_EXE_softphone"),
    }
}

/// Reads lines of a child's stdout on a thread.
fn lines(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn expect(rx: &mpsc::Receiver<String>, what: &str, limit: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let left = limit.checked_sub(t0.elapsed()).unwrap_or_else(|| panic!("no line with '{what}'"));
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(_) => panic!("no line with '{what}' within {limit:?}"),
        }
    }
}

/// `switchboard users add USER` in `dir`, and the password in `dir/USER.pw` for the phone.
fn add_user(dir: &Path, user: &str, pw: &str) {
    let ok = Command::new(bin("switchboard"))
        .args(["users", "--data"])
        .arg(dir)
        .args(["add", user, "--password", pw])
        .stdout(Stdio::null())
        .status()
        .expect("users add");
    assert!(ok.success());
    std::fs::write(dir.join(format!("{user}.pw")), format!("{pw}\n")).expect("password file");
}

/// A service with users alice and bob (passwords in files), on a fresh data directory, in `mode`
/// (`b2bua` or `proxy`).
fn service(dir: &Path, mode: &str) -> (Guard, u16) {
    for (user, pw) in [("alice", "alice-secret"), ("bob", "bob-secret")] {
        add_user(dir, user, pw);
    }
    let mut svc = Command::new(bin("switchboard"))
        .args(["serve", "--mode", mode, "--listen", "127.0.0.1:0", "--rtp-ports", "55000-55499", "--data"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let rx = lines(svc.stdout.take().expect("stdout"));
    let l = expect(&rx, "listening on udp", Duration::from_secs(10));
    let port = l.split("udp 127.0.0.1:").nth(1).and_then(|r| r.split(';').next()).and_then(|p| p.trim().parse().ok()).expect("port");
    (Guard(svc), port)
}

/// `softphone --register ... answer --calls 1` for `user`; returns once it is registered.
fn registered_answerer(
    dir: &Path,
    port: u16,
    user: &str,
    extra: &[&str],
    ports: &str,
    tag: &str,
    answer_args: &[&str],
) -> (Guard, mpsc::Receiver<String>, PathBuf) {
    let wav = dir.join(format!("{tag}.wav"));
    let mut child = Command::new(bin("softphone"))
        .args(["--user", user, "--register", &format!("sip:127.0.0.1:{port}"), "--password-file"])
        .arg(dir.join(format!("{user}.pw")))
        .args(["--summary", "json", "--record"])
        .arg(&wav)
        .args(["--rtp-ports", ports])
        .args(extra)
        .args(["answer", "--calls", "1"])
        .args(answer_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("softphone answer");
    let out = lines(child.stdout.take().expect("stdout"));
    let err = lines_of(child.stderr.take().expect("stderr"));
    expect(&err, "registered aor=", Duration::from_secs(15));
    // Keep draining stderr so the phone never writes into a closed pipe.
    std::thread::spawn(move || while err.recv().is_ok() {});
    (Guard(child), out, wav)
}

fn lines_of(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

fn summary(rx: &mpsc::Receiver<String>) -> serde_json::Value {
    serde_json::from_str(&expect(rx, "\"call_id\"", Duration::from_secs(40))).expect("summary JSON")
}

fn alice_dials(dir: &Path, port: u16, duration: &str) -> std::process::Output {
    Command::new(bin("softphone"))
        .args(["--user", "alice", "--register", &format!("sip:127.0.0.1:{port}"), "--password-file"])
        .arg(dir.join("alice.pw"))
        .args(["--summary", "json", "--tone", "440", "--record"])
        .arg(dir.join("alice.wav"))
        .args(["--rtp-ports", "56000-56499", "dial", "sip:bob@127.0.0.1", "--duration", duration])
        .output()
        .expect("softphone dial")
}

#[test]
fn alice_calls_bob_through_the_proxy_and_they_hear_each_other() {
    let _serial = serial();
    let dir = tmpdir("svc-call");
    let (_svc, port) = service(&dir, "proxy");
    let (_bob, bob_out, bob_wav) = registered_answerer(&dir, port, "bob", &["--tone", "1000"], "56500-56999", "bob", &[]);
    let alice = alice_dials(&dir, port, "5");
    let alice_out = String::from_utf8_lossy(&alice.stdout).into_owned();
    assert!(alice.status.success(), "{alice_out}");
    let a: serde_json::Value = serde_json::from_str(alice_out.lines().find(|l| l.starts_with('{')).expect("summary")).expect("json");
    assert_eq!(a["responses"][0], 407, "the INVITE was challenged first: {alice_out}");
    let b = summary(&bob_out);
    assert_eq!(a["call_id"], b["call_id"], "a proxy keeps the one dialog");
    assert_eq!((a["state"].as_str(), b["state"].as_str()), (Some("completed"), Some("completed")));
    assert_eq!(b["reason"], "bye-remote", "alice's BYE reached bob through the service");
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    heard::assert_heard("alice", &dir.join("alice.wav"), 1000.0, n(&a["rtp_received"]), n(&b["rtp_sent"]));
    heard::assert_heard("bob", &bob_wav, 440.0, n(&b["rtp_received"]), n(&a["rtp_sent"]));
}

#[test]
fn bob_hangs_up_and_the_bye_reaches_alice() {
    let _serial = serial();
    let dir = tmpdir("svc-bye");
    let (_svc, port) = service(&dir, "b2bua");
    // Bob answers with --duration 2: he hangs up first.
    let (_bob, bob_out2, _) = registered_answerer(&dir, port, "bob", &[], "57500-57999", "bob", &["--duration", "2"]);
    let alice = alice_dials(&dir, port, "30");
    let alice_out = String::from_utf8_lossy(&alice.stdout).into_owned();
    let a: serde_json::Value = serde_json::from_str(alice_out.lines().find(|l| l.starts_with('{')).expect("summary")).expect("json");
    assert_eq!(a["reason"], "bye-remote", "{alice_out}");
    assert_eq!(summary(&bob_out2)["reason"], "bye-local");
}

#[test]
fn a_call_forks_to_both_phones_and_the_other_one_is_cancelled() {
    let _serial = serial();
    let dir = tmpdir("svc-fork");
    let (_svc, port) = service(&dir, "b2bua");
    // Two phones for bob: the first answers after 0.5 s, the second would only after 20 s.
    let (_b1, out1, _) = registered_answerer(&dir, port, "bob", &["--tone", "1000"], "58000-58499", "bob1", &[]);
    let (_b2, out2, _) = registered_answerer(&dir, port, "bob", &[], "58500-58999", "bob2", &["--after", "20"]);
    let alice = alice_dials(&dir, port, "2");
    let alice_out = String::from_utf8_lossy(&alice.stdout).into_owned();
    assert!(alice.status.success(), "{alice_out}");
    let first = summary(&out1);
    assert_eq!(first["state"], "completed", "the first phone took the call");
    let second = summary(&out2);
    assert_eq!(second["state"], "cancelled", "the other phone got CANCEL: {second}");
}

#[test]
fn an_expired_nonce_gets_stale_and_the_softphone_re_authenticates_by_itself() {
    let _serial = serial();
    let dir = tmpdir("svc-stale");
    add_user(&dir, "bob", "bob-secret");
    // Nonces live 10 s; bob registers for 24 s and so refreshes after 12 s with a stale nonce.
    let cfg = dir.join("switchboard.toml");
    std::fs::write(&cfg, "nonce_lifetime_secs = 10\nmin_expires = 10\n").expect("config");
    let mut svc = Command::new(bin("switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let rx = lines(svc.stdout.take().expect("stdout"));
    let l = expect(&rx, "listening on udp", Duration::from_secs(10));
    let port: u16 = l.split("udp 127.0.0.1:").nth(1).and_then(|r| r.split(';').next()).and_then(|p| p.trim().parse().ok()).expect("port");
    let _svc = Guard(svc);
    let mut bob = Command::new(bin("softphone"))
        .args(["--user", "bob", "--register", &format!("sip:127.0.0.1:{port}"), "--expires", "24", "--password-file"])
        .arg(dir.join("bob.pw"))
        .args(["--rtp-ports", "59000-59499", "answer"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("softphone");
    let err = lines_of(bob.stderr.take().expect("stderr"));
    let _bob = Guard(bob);
    expect(&err, "registered aor=sip:bob@127.0.0.1", Duration::from_secs(15));
    // The refresh meets a stale nonce (401 stale=true) and succeeds without any user action.
    let line = expect(&err, "registration refreshed", Duration::from_secs(30));
    assert!(line.contains("aor=sip:bob@127.0.0.1"), "{line}");
}
