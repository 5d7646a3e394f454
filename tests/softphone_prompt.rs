//! The softphone's interactive prompt, driven through stdin like a person would: dial the service's
//! echo user, read live status, hold and resume, hang up, quit. Each step waits for its output line.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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

fn expect(rx: &mpsc::Receiver<String>, what: &str) -> String {
    loop {
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(_) => panic!("no line containing '{what}'"),
        }
    }
}

#[test]
fn prompt_dials_shows_status_holds_and_hangs_up() {
    let mut svc = Guard(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--data", "none", "--listen", "127.0.0.1:0", "--rtp-ports", "49000-49499"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve"),
    );
    let svc_out = lines(svc.0.stdout.take().expect("stdout"));
    let listening = expect(&svc_out, "listening on udp");
    let port = listening.split("udp 127.0.0.1:").nth(1).and_then(|r| r.split(';').next()).expect("port").trim().to_owned();

    let mut phone = Guard(
        Command::new(env!("CARGO_BIN_EXE_softphone"))
            .args(["--tone", "440", "--rtp-ports", "49500-49999"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("softphone"),
    );
    let out = lines(phone.0.stdout.take().expect("stdout"));
    let mut stdin = phone.0.stdin.take().expect("stdin");
    expect(&out, "commands:");
    let mut say = |cmd: &str| writeln!(stdin, "{cmd}").expect("write to prompt");

    say("status");
    expect(&out, "no calls");
    say(&format!("dial sip:echo@127.0.0.1:{port}"));
    // Poll status until the call is active and media flows both ways (for up to 15 s: the prompt
    // answers each line at once, so the pace is ours).
    let mut active = String::new();
    let until = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < until {
        say("status");
        let l = expect(&out, "@127.0.0.1");
        if l.contains(" active ") && !l.contains("received 0 ") {
            active = l;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(active.contains("rtp sent"), "live media figures: {active}");
    say("hold");
    say("status");
    expect(&out, " held ");
    say("resume");
    say("hangup");
    let ended = expect(&out, "ended:");
    assert!(ended.contains("completed (bye-local)"), "{ended}");
    say("nonsense");
    expect(&out, "error: unknown command nonsense");
    say("quit");
    let summary = expect(&out, "completed (bye-local); responses [200]");
    assert!(summary.contains("codec PCMU"), "{summary}");
}

/// The `received N` figure of a status line.
fn received(status: &str) -> u64 {
    status.split(" received ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// `move ADDR` (issue 14 point 7): the phone changes network mid-call, from 127.0.0.1 to 127.0.0.6
/// (new SIP and media sockets, a re-INVITE from there), and the echo keeps answering.
#[test]
fn prompt_moves_a_call_to_a_new_address() {
    let mut svc = Guard(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--data", "none", "--listen", "127.0.0.1:0", "--rtp-ports", "48000-48499"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve"),
    );
    let svc_out = lines(svc.0.stdout.take().expect("stdout"));
    let listening = expect(&svc_out, "listening on udp");
    let port = listening.split("udp 127.0.0.1:").nth(1).and_then(|r| r.split(';').next()).expect("port").trim().to_owned();
    let mut phone = Guard(
        Command::new(env!("CARGO_BIN_EXE_softphone"))
            .args(["--tone", "440", "--rtp-ports", "48500-48999"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("softphone"),
    );
    let out = lines(phone.0.stdout.take().expect("stdout"));
    let mut stdin = phone.0.stdin.take().expect("stdin");
    expect(&out, "commands:");
    let mut say = |cmd: &str| writeln!(stdin, "{cmd}").expect("write to prompt");
    let heard_more_than = |say: &mut dyn FnMut(&str), floor: u64| -> u64 {
        for _ in 0..100 {
            say("status");
            let l = expect(&out, "@127.0.0.1");
            if l.contains(" active ") && received(&l) > floor {
                return received(&l);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the echo went quiet at {floor} packets");
    };

    say("move");
    expect(&out, "usage: move IP[:PORT]");
    say(&format!("dial sip:echo@127.0.0.1:{port}"));
    let before = heard_more_than(&mut say, 0);
    say("move 127.0.0.6");
    let moved = expect(&out, "moved to udp ");
    assert!(moved.contains("udp 127.0.0.6:"), "{moved}");
    // The echo keeps answering at the new address: 50 more packets (a second) arrive there.
    heard_more_than(&mut say, before + 50);
    say("hangup");
    let ended = expect(&out, "ended:");
    assert!(ended.contains("completed (bye-local)"), "{ended}");
    say("quit");
}
