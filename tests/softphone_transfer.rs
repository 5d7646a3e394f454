//! Issue 15 point 4, softphones only: blind transfer (RFC 3515 REFER, RFC 5589 §6). alice calls
//! bob, then types `transfer sip:carol@...` at her prompt; bob (the transferee) calls carol,
//! NOTIFYs alice of the progress (sipfrag), hangs up on alice once carol answered, and talks to
//! carol: each records the other's tone.
//!
//! Every wait is on an output line or a process exit, with a deadline.

#[path = "common/heard.rs"]
mod heard;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/service_cli.rs"]
mod service_cli;

use procs::{Proc, Stream, TempDir};
use serde_json::Value;
use service_cli::{tone, PHONE};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

fn expect(rx: &mpsc::Receiver<String>, what: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(l) => seen.push(l),
            Err(_) => panic!("no line containing '{what}'; saw:\n{}", seen.join("\n")),
        }
    }
}

/// The address an answering softphone printed.
fn listening(p: &Proc) -> String {
    let line = p.wait_line("softphone listening on udp ", LIMIT).expect("listening");
    line.split("udp ").nth(1).and_then(|r| r.split(';').next()).expect("address").to_owned()
}

fn summaries(p: &Proc) -> Vec<Value> {
    p.lines(Stream::Stdout).iter().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[test]
fn alice_transfers_bob_to_carol_and_they_talk() {
    let dir = TempDir::new("transfer");
    let (carol_wav, bob_wav) = (dir.join("carol.wav"), dir.join("bob.wav"));
    let mut carol = Proc::spawn(
        "carol",
        Command::new(PHONE)
            .args(["--user", "carol", "--tone", "1000", "--summary", "json", "--rtp-ports", "56000-56499", "--record"])
            .arg(&carol_wav)
            .args(["answer", "--calls", "1", "--duration", "4"]),
    );
    let mut bob = Proc::spawn(
        "bob",
        Command::new(PHONE)
            .args(["--user", "bob", "--tone", "440", "--summary", "json", "--rtp-ports", "56500-56999", "--record"])
            .arg(&bob_wav)
            .args(["answer", "--calls", "1"]),
    );
    let (carol_addr, bob_addr) = (listening(&carol), listening(&bob));

    let mut alice = Guard(
        Command::new(PHONE)
            .args(["--user", "alice", "--tone", "300", "--rtp-ports", "57000-57499"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("softphone"),
    );
    let out = lines(alice.0.stdout.take().expect("stdout"));
    let mut stdin = alice.0.stdin.take().expect("stdin");
    let mut seen = Vec::new();
    expect(&out, "commands:", &mut seen);
    let mut say = |cmd: &str| writeln!(stdin, "{cmd}").expect("write to prompt");
    say(&format!("dial sip:bob@{bob_addr}"));
    // The call must be answered on alice's side before it can be transferred.
    let deadline = Instant::now() + LIMIT;
    loop {
        say("status");
        let l = expect(&out, "@127.0.0.1", &mut seen);
        if l.contains(" active ") && !l.contains("received 0 ") {
            break;
        }
        assert!(Instant::now() < deadline, "alice's call never became active: {l}");
        std::thread::sleep(Duration::from_millis(100));
    }
    say(&format!("transfer sip:carol@{carol_addr}"));
    expect(&out, "transfer accepted (202)", &mut seen);
    expect(&out, "transfer: SIP/2.0 200 OK (final)", &mut seen);
    let ended = expect(&out, "ended:", &mut seen);
    assert!(ended.contains("completed (bye-remote)"), "bob hung up on alice after the transfer: {ended}");

    // carol hangs up after 4 s; bob then has no call left and exits.
    let bob_status = bob.wait_exit(LIMIT).expect("bob exits after carol's hang-up");
    let carol_status = carol.wait_exit(LIMIT).expect("carol exits");
    assert!(bob_status.success() && carol_status.success(), "bob:\n{}\ncarol:\n{}", bob.transcript(), carol.transcript());
    let b = summaries(&bob);
    assert_eq!(b.len(), 2, "{b:#?}");
    assert_eq!(b[0]["reason"], "transferred", "{b:#?}");
    assert_eq!(b[1]["reason"], "bye-remote", "carol hung up: {b:#?}");
    let c = summaries(&carol);
    assert_eq!(c[0]["call_id"], b[1]["call_id"], "carol's call is bob's second");

    // carol heard bob's 440 Hz and bob (second recording) carol's 1000 Hz.
    let (fc, active_c) = tone(&carol_wav);
    let (fb, active_b) = tone(&dir.join("bob-2.wav"));
    assert!((fc - 440.0).abs() < 15.0 && active_c >= heard::MIN_ACTIVE_S, "carol heard {fc} Hz for {active_c} s");
    assert!((fb - 1000.0).abs() < 15.0 && active_b >= heard::MIN_ACTIVE_S, "bob heard {fb} Hz for {active_b} s from carol");
    // And bob's first recording is alice's 300 Hz: the transfer did not mix the calls.
    let (fa, _) = tone(&bob_wav);
    assert!((fa - 300.0).abs() < 15.0, "bob heard {fa} Hz from alice");
    say("quit");
}

#[test]
fn an_attended_transfer_is_refused_with_501_and_the_call_goes_on() {
    let busy = Proc::spawn("busy", Command::new(PHONE).args(["--user", "busy", "--rtp-ports", "57500-57599", "answer", "--after", "30"]));
    let busy_addr = listening(&busy);
    let mut bob = Proc::spawn(
        "bob",
        Command::new(PHONE).args(["--user", "bob", "--tone", "440", "--rtp-ports", "57600-57799", "answer", "--calls", "1"]),
    );
    let bob_addr = listening(&bob);
    let mut alice = Guard(
        Command::new(PHONE)
            .args(["--user", "alice", "--rtp-ports", "57800-57999"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("softphone"),
    );
    let out = lines(alice.0.stdout.take().expect("stdout"));
    let mut stdin = alice.0.stdin.take().expect("stdin");
    let mut seen = Vec::new();
    expect(&out, "commands:", &mut seen);
    let mut say = |cmd: &str| writeln!(stdin, "{cmd}").expect("write to prompt");
    say("transfer sip:x@127.0.0.1");
    expect(&out, "error: no call", &mut seen);
    say(&format!("dial sip:bob@{bob_addr}"));
    let deadline = Instant::now() + LIMIT;
    loop {
        say("status");
        if expect(&out, "@127.0.0.1", &mut seen).contains(" active ") {
            break;
        }
        assert!(Instant::now() < deadline, "alice's call never became active");
        std::thread::sleep(Duration::from_millis(100));
    }
    // An attended transfer (Replaces) is not carried out: final NOTIFY 501.
    say(&format!("transfer sip:busy@{busy_addr}?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2"));
    expect(&out, "transfer: SIP/2.0 501", &mut seen);
    say("status");
    assert!(expect(&out, "@127.0.0.1", &mut seen).contains(" active "), "the call goes on");
    say("hangup");
    expect(&out, "ended: completed (bye-local)", &mut seen);
    assert!(bob.wait_exit(LIMIT).is_some_and(|s| s.success()), "{}", bob.transcript());
    say("quit");
}
