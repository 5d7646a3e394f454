//! Issue 15 point 4 through the service's B2BUA: a REFER from either leg is handled by the
//! B2BUA itself (202, NOTIFY sipfrag, a new leg to the Refer-To target routed as an INVITE from
//! the referrer, the remaining party re-INVITEd, the referrer's leg ended). The target talks to
//! the remaining party (audio checked), and the new leg carries the transferee's identity in From
//! and P-Asserted-Identity and the referrer in Referred-By.
//!
//! Every wait is on an output line, a datagram or a process exit, with a deadline.
//!
//! The sipp tests run their scenario with `serve --workers 1` and with `--workers 2` at once
//! (issue 16: correctness under sharding; [`procs::each_worker_count`]), each run with its own
//! half of the fixed port ranges ([`procs::range_for`]).

#[path = "common/heard.rs"]
mod heard;
#[path = "common/phone.rs"]
mod phone;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/service_cli.rs"]
mod service_cli;

use procs::{Proc, Stream, TempDir};
use serde_json::Value;
use service_cli::{users, PHONE, SB};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use switchboard::media::tone::analyse;
use switchboard::media::wav::read_wav;

const LIMIT: Duration = Duration::from_secs(20);

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `switchboard serve --workers N` with its data in `dir`.
fn serve(workers: usize, dir: &Path) -> (Proc, u16) {
    let mut cmd = Command::new(SB);
    procs::set_workers(&mut cmd, workers);
    let rtp = procs::range_for(workers, 58000, 58499);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rtp-ports", &rtp, "--data"]).arg(dir);
    procs::spawn_service(&mut cmd, LIMIT)
}

fn registered(dir: &Path, port: u16, user: &str) -> Vec<String> {
    [
        "--user",
        user,
        "--register",
        &format!("sip:127.0.0.1:{port}"),
        "--password-file",
        &dir.join(format!("{user}.pw")).display().to_string(),
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// A registered answering softphone.
fn answerer(dir: &Path, port: u16, user: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(PHONE);
    cmd.args(registered(dir, port, user)).args(["--summary", "json"]).args(extra);
    let p = Proc::spawn(user, &mut cmd);
    p.wait_line("registered aor=", LIMIT).expect("registered");
    p
}

/// A softphone prompt driven through stdin.
struct Prompt {
    child: Child,
    stdin: ChildStdin,
    out: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Prompt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prompt {
    fn start(args: &[String]) -> Prompt {
        let mut child =
            Command::new(PHONE).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("softphone");
        let out: ChildStdout = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let stdin = child.stdin.take().expect("stdin");
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The logs too (stderr): "registered aor=" says the phone can be called.
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx2.send(format!("log: {line}")).is_err() {
                    break;
                }
            }
        });
        let mut p = Prompt { child, stdin, out: rx, seen: Vec::new() };
        p.expect("commands:");
        p
    }

    fn say(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("write to prompt");
    }

    fn expect(&mut self, what: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            match self.out.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l.contains(what) => return l,
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("no line containing '{what}'; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The next status line (stdout, naming a call by its Call-ID).
    fn status(&mut self) -> String {
        self.say("status");
        loop {
            let l = self.expect("@");
            if !l.starts_with("log: ") {
                return l;
            }
        }
    }

    /// Polls `status` until a call is active with media received.
    fn wait_active(&mut self) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let l = self.status();
            if l.contains(" active ") && !l.contains("received 0 ") {
                return;
            }
            assert!(Instant::now() < deadline, "no active call: {l}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn summaries(p: &Proc) -> Vec<Value> {
    p.lines(Stream::Stdout).iter().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Dominant frequency of the last `secs` seconds of a recording.
fn tail_tone(path: &Path, secs: f64) -> (f64, f64) {
    let wav = read_wav(&std::fs::read(path).expect("recording")).expect("WAV");
    let n = (secs * 8000.0) as usize;
    let tail = &wav.samples[wav.samples.len().saturating_sub(n)..];
    let a = analyse(tail, 8000);
    (a.dominant.unwrap_or(0.0), a.active_seconds)
}

/// alice (caller) calls bob through the B2BUA and transfers him to carol from her prompt; bob
/// ends up talking to carol, and alice's leg is ended by the B2BUA.
#[test]
fn the_caller_transfers_bob_to_carol_through_the_b2bua() {
    let _serial = serial();
    let dir = TempDir::new("b2bua-transfer");
    users(dir.path(), &["alice", "bob", "carol"]);
    let (svc, port) = serve(1, dir.path());
    let (bob_wav, carol_wav) = (dir.join("bob.wav"), dir.join("carol.wav"));
    let mut bob = answerer(
        dir.path(),
        port,
        "bob",
        &["--tone", "440", "--rtp-ports", "58500-58699", "--record", bob_wav.to_str().unwrap(), "answer", "--calls", "1"],
    );
    let mut carol = answerer(
        dir.path(),
        port,
        "carol",
        &[
            "--tone",
            "1000",
            "--rtp-ports",
            "58700-58899",
            "--record",
            carol_wav.to_str().unwrap(),
            "answer",
            "--calls",
            "1",
            "--duration",
            "4",
        ],
    );
    let mut args = registered(dir.path(), port, "alice");
    args.extend(["--tone", "300", "--rtp-ports", "58900-58999"].map(String::from));
    let mut alice = Prompt::start(&args);
    alice.expect("registered aor=");
    alice.say("dial sip:bob@127.0.0.1");
    alice.wait_active();
    alice.say("transfer sip:carol@127.0.0.1");
    alice.expect("transfer accepted (202)");
    alice.expect("transfer: SIP/2.0 200 OK (final)");
    let ended = alice.expect("ended:");
    assert!(ended.contains("completed (bye-remote)"), "the B2BUA ended alice's leg: {ended}");

    // carol hangs up after 4 s; the B2BUA passes it on to bob, who then exits.
    assert!(carol.wait_exit(LIMIT).is_some_and(|s| s.success()), "carol:\n{}", carol.transcript());
    assert!(bob.wait_exit(LIMIT).is_some_and(|s| s.success()), "bob:\n{}\nservice:\n{}", bob.transcript(), svc.transcript());
    let b = summaries(&bob);
    assert_eq!(b.len(), 1, "bob had one call all along (re-INVITEd, not called again): {b:#?}");
    assert_eq!(b[0]["reason"], "bye-remote");
    // carol's INVITE spoke for bob (the transferee), not for alice.
    let incoming = carol.wait_line("incoming call", Duration::ZERO).expect("carol's incoming call line");
    assert!(incoming.contains("bob") && !incoming.contains("alice"), "{incoming}");

    let (fc, active_c) = tail_tone(&carol_wav, 3.5);
    assert!((fc - 440.0).abs() < 15.0 && active_c >= heard::MIN_ACTIVE_S, "carol heard {fc} Hz for {active_c} s");
    let (fb, active_b) = tail_tone(&bob_wav, 3.0);
    assert!((fb - 1000.0).abs() < 15.0 && active_b >= heard::MIN_ACTIVE_S, "bob heard {fb} Hz for {active_b} s at the end");
    alice.say("quit");
}

/// bob (callee) transfers alice to carol's raw socket, which checks the new INVITE's identities
/// (From and P-Asserted-Identity alice, the transferee; Referred-By bob) and refuses it with 486:
/// bob gets the final NOTIFY 486 and the call with alice goes on. Then a transfer to a user who
/// does not exist gets a final NOTIFY 404 without any INVITE.
#[test]
fn the_callee_transfers_and_the_new_leg_carries_the_transferee_and_referrer() {
    let _serial = serial();
    let dir = TempDir::new("b2bua-transfer-ids");
    users(dir.path(), &["alice", "bob", "carol"]);
    let (_svc, port) = serve(1, dir.path());
    let service = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut carol = phone::Phone::new("127.0.0.1", service);
    assert_eq!(carol.register("carol", "carol-secret"), 200);

    let mut args = registered(dir.path(), port, "bob");
    args.extend(["--tone", "440", "--rtp-ports", "59000-59099"].map(String::from));
    let mut bob = Prompt::start(&args);
    bob.expect("registered aor=");
    let mut alice = Command::new(PHONE);
    alice.args(registered(dir.path(), port, "alice")).args(["--tone", "300", "--rtp-ports", "59100-59199", "--summary", "json"]);
    alice.args(["dial", "sip:bob@127.0.0.1", "--duration", "8"]);
    let mut alice = Proc::spawn("alice", &mut alice);
    bob.expect("incoming call");
    bob.say("answer");
    bob.wait_active();
    bob.say("transfer sip:carol@127.0.0.1");
    bob.expect("transfer accepted (202)");

    // carol's socket gets the B2BUA's INVITE.
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + LIMIT;
    let invite = loop {
        assert!(Instant::now() < deadline, "no INVITE reached carol");
        let Ok(n) = carol.socket.recv(&mut buf) else { continue };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("INVITE ") {
            break text;
        }
    };
    let header = |name: &str| {
        invite.lines().find(|l| l.to_ascii_lowercase().starts_with(&format!("{}:", name.to_ascii_lowercase()))).unwrap_or("").to_owned()
    };
    assert!(header("From").contains("sip:alice@"), "From is the transferee: {invite}");
    assert!(header("P-Asserted-Identity").contains("sip:alice@"), "PAI is the transferee: {invite}");
    assert!(header("Referred-By").contains("sip:bob@"), "Referred-By is the referrer: {invite}");
    assert!(header("To").contains("sip:carol@"), "{invite}");
    let msg = switchboard::message::Message::parse(bytes::Bytes::from(invite.clone().into_bytes())).expect("INVITE parses");
    let busy = msg.response_to(486, "Busy Here", Some("carol1")).finish();
    carol.socket.send_to(busy.as_bytes(), service).expect("send 486");
    bob.expect("transfer: SIP/2.0 486");
    assert!(bob.status().contains(" active "), "the call with alice goes on");

    // Nobody called dave: refused before any INVITE.
    bob.say("transfer sip:dave@127.0.0.1");
    bob.expect("transfer: SIP/2.0 404");
    let status = alice.wait_exit(LIMIT).expect("alice hangs up after 8 s");
    assert!(status.success(), "{}", alice.transcript());
    bob.expect("ended: completed (bye-remote)");
    bob.say("quit");
}

#[path = "common/sipp.rs"]
mod sipp;

/// sipp as the referrer (fixtures/sipp/refer_blind.xml): calls bob through the B2BUA, REFERs him
/// to carol, gets 202, NOTIFYs up to "SIP/2.0 200" and the B2BUA's BYE; bob and carol (softphones)
/// then talk until carol hangs up.
#[test]
fn sipp_refers_bob_to_carol_through_the_b2bua() {
    if !sipp::available() {
        return;
    }
    let _serial = serial();
    procs::each_worker_count(|workers| {
        let (bob_rtp, carol_rtp) = (procs::range_for(workers, 59200, 59299), procs::range_for(workers, 59300, 59399));
        let dir = TempDir::new("b2bua-transfer-sipp");
        users(dir.path(), &["alice", "bob", "carol"]);
        let (svc, port) = serve(workers, dir.path());
        let carol_wav = dir.join("carol.wav");
        let mut bob = answerer(dir.path(), port, "bob", &["--tone", "440", "--rtp-ports", &bob_rtp, "answer", "--calls", "1"]);
        let mut carol = answerer(
            dir.path(),
            port,
            "carol",
            &[
                "--tone",
                "1000",
                "--rtp-ports",
                &carol_rtp,
                "--record",
                carol_wav.to_str().unwrap(),
                "answer",
                "--calls",
                "1",
                "--duration",
                "3",
            ],
        );
        let out = alice_refers_bob_to_carol(dir.path(), port, "refer_blind.xml", "uac-refer");
        assert_eq!((out.successful, out.failed), (1, 0), "{out:?}\n{}\nservice:\n{}", out.error_head(40), svc.transcript());
        assert!(carol.wait_exit(LIMIT).is_some_and(|s| s.success()), "carol:\n{}", carol.transcript());
        assert!(bob.wait_exit(LIMIT).is_some_and(|s| s.success()), "bob:\n{}", bob.transcript());
        let (fc, active_c) = tail_tone(&carol_wav, 3.0);
        assert!((fc - 440.0).abs() < 15.0 && active_c >= heard::MIN_ACTIVE_S, "carol heard {fc} Hz for {active_c} s");
    });
}

/// sipp refers bob to carol and hangs up right after the first NOTIFY
/// (fixtures/sipp/refer_then_bye.xml): the B2BUA keeps bob's leg, calls carol (who rings 2 s)
/// and connects them; they talk until carol hangs up.
#[test]
fn a_referrer_that_hangs_up_at_once_still_gets_bob_transferred() {
    if !sipp::available() {
        return;
    }
    let _serial = serial();
    procs::each_worker_count(|workers| {
        let (bob_rtp, carol_rtp) = (procs::range_for(workers, 59200, 59299), procs::range_for(workers, 59300, 59399));
        let dir = TempDir::new("b2bua-transfer-bye");
        users(dir.path(), &["alice", "bob", "carol"]);
        let (svc, port) = serve(workers, dir.path());
        let (bob_wav, carol_wav) = (dir.join("bob.wav"), dir.join("carol.wav"));
        let mut bob = answerer(
            dir.path(),
            port,
            "bob",
            &["--tone", "440", "--rtp-ports", &bob_rtp, "--record", bob_wav.to_str().unwrap(), "answer", "--calls", "1"],
        );
        let mut carol = answerer(
            dir.path(),
            port,
            "carol",
            &[
                "--tone",
                "1000",
                "--rtp-ports",
                &carol_rtp,
                "--record",
                carol_wav.to_str().unwrap(),
                "answer",
                "--calls",
                "1",
                "--after",
                "2",
                "--duration",
                "3",
            ],
        );
        let out = alice_refers_bob_to_carol(dir.path(), port, "refer_then_bye.xml", "uac-refer-bye");
        assert_eq!((out.successful, out.failed), (1, 0), "{out:?}\n{}\nservice:\n{}", out.error_head(40), svc.transcript());
        assert!(carol.wait_exit(LIMIT).is_some_and(|s| s.success()), "carol:\n{}\nservice:\n{}", carol.transcript(), svc.transcript());
        assert!(bob.wait_exit(LIMIT).is_some_and(|s| s.success()), "bob:\n{}", bob.transcript());
        let (fc, active_c) = tail_tone(&carol_wav, 3.0);
        assert!((fc - 440.0).abs() < 15.0 && active_c >= heard::MIN_ACTIVE_S, "carol heard {fc} Hz for {active_c} s");
        let (fb, active_b) = tail_tone(&bob_wav, 2.5);
        assert!((fb - 1000.0).abs() < 15.0 && active_b >= heard::MIN_ACTIVE_S, "bob heard {fb} Hz for {active_b} s at the end");
    });
}

/// sipp as alice (digest `alice`/`alice-secret`) runs `scenario` once: a call to bob through the
/// service at `port` that REFERs him to carol (`-key target carol`); its outcome after at most 50 s.
fn alice_refers_bob_to_carol(dir: &std::path::Path, port: u16, scenario: &str, name: &str) -> sipp::Outcome {
    let svc_addr = format!("127.0.0.1:{port}");
    let mut args: Vec<String> =
        ["-sf", &sipp::scenario(scenario), "-s", "bob", "-key", "target", "carol", "-au", "alice", "-ap", "alice-secret"]
            .into_iter()
            .map(String::from)
            .collect();
    args.extend(["-auth_uri".to_string(), format!("bob@{svc_addr}")]);
    args.extend(["-d", "1000", "-m", "1", "-recv_timeout", "15s", "-timeout", "40s", "-timeout_error"].map(String::from));
    args.push(svc_addr);
    sipp::Sipp::spawn(name, dir, sipp::free_port(), &args).finish(Duration::from_secs(50))
}
