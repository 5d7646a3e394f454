//! Issue 14 point 7, hijack versus handover, against the real service and softphone binaries on
//! loopback sockets. Alice calls bob through the B2BUA (relay on, `--rtp-learning-ms 300`); one
//! second into the call alice changes network, from 127.0.0.1 to 127.0.0.5 (`--move-after 1
//! --move-to 127.0.0.5`: new SIP and media sockets, a new registration, a re-INVITE that the
//! service challenges and alice answers with her credentials). Then a stranger at 127.0.0.3, who
//! copied the Call-IDs and tags of both legs, sends a re-INVITE pointing the media at itself (and
//! again with mallory's own valid credentials), a BYE and an ACK in alice's leg, and a BYE in
//! bob's.
//!
//! Asserts: the service followed alice (its log says so), her new contact replaced the old one in
//! the registrar, and the relay forwards both ways after the move; the stranger's re-INVITE and BYEs get 407 (mallory's, authenticated as herself,
//! 403) and change nothing: the call stays up, the
//! relay keeps forwarding both ways, the stranger's media socket receives nothing; at the end
//! alice hears bob's 1000 Hz and bob hears alice's 440 Hz for far longer than the second before
//! the move; bob hangs up and the service's BYE reaches alice at her new address.
//!
//! Every wait is on an output line, a process exit, a reply or a polled condition with a deadline.

#[path = "common/procs.rs"]
mod procs;
#[path = "common/service_cli.rs"]
mod service_cli;

use bytes::Bytes;
use procs::{Proc, Stream, TempDir};
use serde_json::Value;
use service_cli::{calls, n, tone, users, PHONE, SB};
use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard::auth::DigestClient;
use switchboard::message::Message;

/// The relay range and the phones' ranges, used by no other test.
const RELAY: &str = "62000-62019";

/// `user`'s registered contacts, from `switchboard registrations --json`.
fn contacts(dir: &Path, user: &str) -> Vec<String> {
    let out = Command::new(SB).args(["registrations", "--json", "--data"]).arg(dir).output().expect("registrations");
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    let bindings: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).expect("registrations JSON")).collect();
    let aor = format!("sip:{user}@");
    bindings
        .iter()
        .filter(|b| b["aor"].as_str().is_some_and(|a| a.starts_with(&aor)))
        .filter_map(|b| b["contact"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until `user`'s only registered contact is at `ip` (the store is written off the
/// service's loop: poll).
fn registered_only_at(dir: &Path, user: &str, ip: &str) {
    let t0 = Instant::now();
    loop {
        let now = contacts(dir, user);
        if now.len() == 1 && now[0].starts_with(&format!("sip:{user}@{ip}:")) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{user}'s bindings after the move: {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the one live call has forwarded `more` packets on both legs beyond `since`.
fn flowing(dir: &Path, since: (u64, u64), more: u64, what: &str, procs: &[&Proc]) -> (u64, u64) {
    let t0 = Instant::now();
    loop {
        let c = calls(dir);
        if c.len() == 1 {
            let now = (n(&c[0]["caller"]["forwarded"]), n(&c[0]["callee"]["forwarded"]));
            if now.0 >= since.0 + more && now.1 >= since.1 + more {
                return now;
            }
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let logs: Vec<String> = procs.iter().map(|p| p.transcript()).collect();
            panic!("{what}: no audio both ways: {c:#?}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of `name=` in a log line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let at = line.find(&format!(" {name}=")).unwrap_or_else(|| panic!("no {name} in {line}")) + name.len() + 2;
    line[at..].split_whitespace().next().unwrap_or_default()
}

/// One leg as its phone sees it: Call-ID, the phone's user and tag, the other user and the
/// service's tag.
#[derive(Debug)]
struct Leg {
    call_id: String,
    user: &'static str,
    phone_tag: String,
    other: &'static str,
    service_tag: String,
}

fn leg_of(p: &Proc, user: &'static str, other: &'static str) -> Leg {
    let line = p.wait_line("call answered", Duration::from_secs(20)).expect("call answered");
    let (call_id, phone_tag, service_tag) = (field(&line, "call_id"), field(&line, "local_tag"), field(&line, "remote_tag"));
    Leg { call_id: call_id.into(), user, phone_tag: phone_tag.into(), other, service_tag: service_tag.into() }
}

/// A request in `leg` as the stranger forges it: From the phone (with its tag), To the service
/// (with its tag), sent from `sock`, with `body` as SDP.
fn forged(method: &str, leg: &Leg, sock: &UdpSocket, service: u16, seq: u32, body: &str) -> String {
    let (from_user, to_user) = (leg.user, leg.other);
    let me = sock.local_addr().expect("local addr");
    let ct = if body.is_empty() { String::new() } else { "Content-Type: application/sdp\r\n".into() };
    format!(
        "{method} sip:sb@127.0.0.1:{service} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKstranger{seq}{method};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:{from_user}@127.0.0.1>;tag={}\r\nTo: <sip:{to_user}@127.0.0.1>;tag={}\r\nCall-ID: {}\r\n\
CSeq: {seq} {method}\r\nContact: <sip:{from_user}@{me}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        leg.phone_tag,
        leg.service_tag,
        leg.call_id,
        body.len()
    )
}

/// Sends `msg` and returns the first final answer: its status and bytes (None: none within 10 s,
/// generous for a loaded CI machine; an answer normally comes in milliseconds).
fn exchange(sock: &UdpSocket, msg: &str, service: u16) -> Option<(u16, Vec<u8>)> {
    exchange_within(sock, msg, service, Duration::from_secs(10))
}

/// [`exchange`] with its deadline: a short one only where no answer is the expected outcome.
fn exchange_within(sock: &UdpSocket, msg: &str, service: u16, limit: Duration) -> Option<(u16, Vec<u8>)> {
    sock.send_to(msg.as_bytes(), ("127.0.0.1", service)).expect("send");
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)))).expect("timeout");
        let Ok((len, _)) = sock.recv_from(&mut buf) else { break };
        let text = String::from_utf8_lossy(&buf[..len]);
        let status = text.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
        if let Some(code) = status.filter(|c| *c >= 200) {
            return Some((code, buf[..len].to_vec()));
        }
    }
    None
}

fn final_status(sock: &UdpSocket, msg: &str, service: u16) -> Option<u16> {
    exchange(sock, msg, service).map(|(code, _)| code)
}

/// `req` with digest credentials of `user` answering `challenge` (RFC 3261 §22.2).
fn with_credentials(req: &str, challenge: &[u8], user: &str, password: &str) -> String {
    let parsed = Message::parse(Bytes::from(req.to_owned())).expect("our request parses");
    let answer = Message::parse(Bytes::copy_from_slice(challenge)).expect("the challenge parses");
    let mut client = DigestClient::new(user, password);
    client.handle_challenge(&parsed, &answer).expect("a digest challenge");
    let (method, uri) = (parsed.method().expect("method").as_str().to_owned(), parsed.request_uri_str().expect("uri").to_owned());
    let (name, value) = client.authorization(&method, &uri, "0badc0ffee").expect("credentials");
    req.replacen("Max-Forwards: 70\r\n", &format!("Max-Forwards: 70\r\n{}: {value}\r\n", name.as_str()), 1)
}

#[test]
fn a_phone_that_changes_network_keeps_its_call_and_a_strangers_reinvite_or_bye_changes_nothing() {
    let dir = TempDir::new("security-handover");
    users(dir.path(), &["alice", "bob", "mallory"]);
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rtp-ports", RELAY, "--rtp-learning-ms", "300", "--data"]).arg(dir.path());
    let (svc, port) = procs::spawn_service(&mut cmd, Duration::from_secs(15));
    let registrar = format!("sip:127.0.0.1:{port}");

    let bob_wav = dir.join("bob.wav");
    let mut bob_cmd = Command::new(PHONE);
    bob_cmd
        .args(["--user", "bob", "--register", &registrar, "--password-file"])
        .arg(dir.join("bob.pw"))
        .args(["--summary", "json", "--tone", "1000", "--record", bob_wav.to_str().unwrap(), "--rtp-ports", "62100-62199"])
        .args(["answer", "--calls", "1"]);
    let mut bob = Proc::spawn("bob", &mut bob_cmd);
    bob.wait_line("registered aor=", Duration::from_secs(15)).expect("bob registered");

    // Alice stays until the test ends the call (SIGTERM: she hangs up with a BYE).
    let alice_wav = dir.join("alice.wav");
    let mut alice_cmd = Command::new(PHONE);
    alice_cmd
        .args(["--user", "alice", "--register", &registrar, "--password-file"])
        .arg(dir.join("alice.pw"))
        .args(["--summary", "json", "--tone", "440", "--record", alice_wav.to_str().unwrap(), "--rtp-ports", "62200-62299"])
        .args(["dial", "sip:bob@127.0.0.1", "--duration", "60", "--move-after", "1", "--move-to", "127.0.0.5"]);
    let mut alice = Proc::spawn("alice", &mut alice_cmd);
    let alice_leg = leg_of(&alice, "alice", "bob");
    let bob_leg = leg_of(&bob, "bob", "alice");

    // The move: alice's new socket, the service following her leg, audio both ways afterwards.
    let moved = alice.wait_line("moved to a new address", Duration::from_secs(10)).expect("alice moved");
    assert!(field(&moved, "local").starts_with("127.0.0.5:"), "{moved}");
    svc.wait_line("phone moved", Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}\n{}", alice.transcript()));
    alice.wait_line("registration refreshed", Duration::from_secs(10)).expect("alice registered her new contact");
    registered_only_at(dir.path(), "alice", "127.0.0.5");
    let after_move = flowing(dir.path(), (0, 0), 0, "after the move", &[&alice, &bob]);
    let after_move = flowing(dir.path(), after_move, 50, "after the move", &[&alice, &bob]);

    // The stranger: a re-INVITE moving the media to itself, BYEs in both legs, an ACK.
    let stranger = UdpSocket::bind("127.0.0.3:0").expect("stranger socket");
    let stranger_media = UdpSocket::bind("127.0.0.3:0").expect("stranger media socket");
    let media_port = stranger_media.local_addr().expect("addr").port();
    let sdp = format!(
        "v=0\r\no=mallory 1 2 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio {media_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    let reinvite = forged("INVITE", &alice_leg, &stranger, port, 900, &sdp);
    let (code, challenge) = exchange(&stranger, &reinvite, port).expect("an answer to the stranger's re-INVITE");
    assert_eq!(code, 407, "the stranger's re-INVITE: {}", String::from_utf8_lossy(&challenge));
    // Mallory has an account, but alice's leg is alice's: logging in as herself gets 403.
    let mallory = with_credentials(&forged("INVITE", &alice_leg, &stranger, port, 903, &sdp), &challenge, "mallory", "mallory-secret");
    assert_eq!(final_status(&stranger, &mallory, port), Some(403), "mallory's re-INVITE with her own credentials");
    let bye = forged("BYE", &alice_leg, &stranger, port, 901, "");
    assert_eq!(final_status(&stranger, &bye, port), Some(407), "the stranger's BYE in alice's leg");
    let bye = forged("BYE", &bob_leg, &stranger, port, 902, "");
    assert_eq!(final_status(&stranger, &bye, port), Some(407), "the stranger's BYE in bob's leg");
    let ack = forged("ACK", &alice_leg, &stranger, port, 900, "");
    assert_eq!(exchange_within(&stranger, &ack, port, Duration::from_secs(3)).map(|(c, _)| c), None, "an ACK gets no answer");

    // Nothing changed: the call is up and forwards both ways, and not to the stranger.
    flowing(dir.path(), after_move, 50, "after the stranger", &[&alice, &bob]);
    stranger_media.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    let mut buf = [0u8; 2048];
    assert!(stranger_media.recv_from(&mut buf).is_err(), "the stranger's media socket received audio");
    let moves = svc.lines(Stream::Stderr).into_iter().filter(|l| l.contains("phone moved")).count();
    assert_eq!(moves, 1, "only alice's own re-INVITE moved a leg:\n{}", svc.transcript());

    // Bob hangs up: the service's BYE reaches alice at her new address.
    bob.terminate(Duration::from_secs(15));
    let alice_status = alice.expect_exit(Duration::from_secs(20));
    assert!(alice_status.success(), "{}", alice.transcript());
    let summary = |p: &Proc| -> Value {
        let line =
            p.lines(Stream::Stdout).into_iter().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("summary\n{}", p.transcript()));
        serde_json::from_str(&line).expect("summary JSON")
    };
    let (a, b) = (summary(&alice), summary(&bob));
    eprintln!("alice: {a}\nbob: {b}\nrelay after the move: {after_move:?}");
    assert_eq!(a["reason"], "bye-remote", "{a:#}\n{}", alice.transcript());
    assert_eq!((b["state"].as_str(), b["bye_status"].as_u64()), (Some("completed"), Some(200)), "{b:#}\n{}", bob.transcript());
    // One second of the call was before the move: audio heard for well over that came after it.
    let (fa, active_a) = tone(&alice_wav);
    let (fb, active_b) = tone(&bob_wav);
    eprintln!("alice heard {fa:.0} Hz for {active_a:.1} s, bob heard {fb:.0} Hz for {active_b:.1} s");
    assert!((fa - 1000.0).abs() < 15.0 && active_a >= 2.5, "alice heard {fa} Hz for {active_a} s: {a:#}");
    assert!((fb - 440.0).abs() < 15.0 && active_b >= 2.5, "bob heard {fb} Hz for {active_b} s: {b:#}");
}

/// The callee's side of the same: bob answers and moves to 127.0.0.7 one second in; the callee leg
/// (bob's, as the called user) follows him, audio flows both ways after it, alice's BYE reaches him
/// at his new address.
#[test]
fn the_callee_changes_network_and_keeps_the_call() {
    let dir = TempDir::new("security-handover-callee");
    users(dir.path(), &["alice", "bob"]);
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rtp-ports", "62020-62039", "--rtp-learning-ms", "300", "--data"]).arg(dir.path());
    let (svc, port) = procs::spawn_service(&mut cmd, Duration::from_secs(15));
    let registrar = format!("sip:127.0.0.1:{port}");
    let bob_wav = dir.join("bob.wav");
    let mut bob_cmd = Command::new(PHONE);
    bob_cmd
        .args(["--user", "bob", "--register", &registrar, "--password-file"])
        .arg(dir.join("bob.pw"))
        .args(["--summary", "json", "--tone", "1000", "--record", bob_wav.to_str().unwrap(), "--rtp-ports", "62300-62399"])
        .args(["answer", "--calls", "1", "--move-after", "1", "--move-to", "127.0.0.7"]);
    let mut bob = Proc::spawn("bob", &mut bob_cmd);
    bob.wait_line("registered aor=", Duration::from_secs(15)).expect("bob registered");
    let alice_wav = dir.join("alice.wav");
    let mut alice_cmd = Command::new(PHONE);
    alice_cmd
        .args(["--user", "alice", "--register", &registrar, "--password-file"])
        .arg(dir.join("alice.pw"))
        .args(["--summary", "json", "--tone", "440", "--record", alice_wav.to_str().unwrap(), "--rtp-ports", "62400-62499"])
        .args(["dial", "sip:bob@127.0.0.1", "--duration", "60"]);
    let mut alice = Proc::spawn("alice", &mut alice_cmd);

    let moved = bob.wait_line("moved to a new address", Duration::from_secs(20)).expect("bob moved");
    assert!(field(&moved, "local").starts_with("127.0.0.7:"), "{moved}");
    let leg = svc.wait_line("phone moved", Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}\n{}", bob.transcript()));
    assert!(leg.contains("Callee"), "{leg}");
    registered_only_at(dir.path(), "bob", "127.0.0.7");
    let after_move = flowing(dir.path(), (0, 0), 0, "after the move", &[&alice, &bob]);
    flowing(dir.path(), after_move, 100, "after the move", &[&alice, &bob]);

    // Alice hangs up: the service's BYE reaches bob at his new address.
    alice.terminate(Duration::from_secs(15));
    let bob_status = bob.expect_exit(Duration::from_secs(20));
    assert!(bob_status.success(), "{}", bob.transcript());
    let summary = |p: &Proc| -> Value {
        let line =
            p.lines(Stream::Stdout).into_iter().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("summary\n{}", p.transcript()));
        serde_json::from_str(&line).expect("summary JSON")
    };
    let (a, b) = (summary(&alice), summary(&bob));
    assert_eq!(b["reason"], "bye-remote", "{b:#}\n{}", bob.transcript());
    assert_eq!(a["reason"], "bye-local", "{a:#}\n{}", alice.transcript());
    let (fa, active_a) = tone(&alice_wav);
    let (fb, active_b) = tone(&bob_wav);
    eprintln!("alice heard {fa:.0} Hz for {active_a:.1} s, bob heard {fb:.0} Hz for {active_b:.1} s");
    assert!((fa - 1000.0).abs() < 15.0 && active_a >= 2.5, "alice heard {fa} Hz for {active_a} s: {a:#}");
    assert!((fb - 440.0).abs() < 15.0 && active_b >= 2.5, "bob heard {fb} Hz for {active_b} s: {b:#}");
}
