//! Issue 15 point 5: MESSAGE (RFC 3428) between registered users through the service, challenged
//! like an INVITE; `softphone message`; received messages printed as they arrive; SUBSCRIBE for
//! an unknown event -> 489; UPDATE/INFO outside a dialog -> 481 (softphone, echo user, service).
//!
//! Every wait is on an output line, a process exit or sipp's own end, with a deadline.
//!
//! The sipp tests run their scenario with `serve --workers 1`, then with `--workers 2` (issue 16:
//! correctness under sharding; [`procs::each_worker_count_in_turn`]).

#[path = "common/procs.rs"]
mod procs;
#[path = "common/service_cli.rs"]
mod service_cli;
#[path = "common/sipp.rs"]
mod sipp;

use procs::{Proc, Stream, TempDir};
use serde_json::Value;
use service_cli::{users, PHONE, SB};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const LIMIT: Duration = Duration::from_secs(20);

/// `switchboard serve --workers N` with its data in `dir`.
fn serve(workers: usize, dir: &Path) -> (Proc, u16) {
    let mut cmd = Command::new(SB);
    procs::set_workers(&mut cmd, workers);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rtp-ports", "54000-54999", "--data"]).arg(dir);
    procs::spawn_service(&mut cmd, LIMIT)
}

/// A registered softphone in answer mode (`extra` before the command).
fn answerer(dir: &Path, port: u16, user: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(PHONE);
    cmd.args(["--user", user, "--register", &format!("sip:127.0.0.1:{port}"), "--password-file"])
        .arg(dir.join(format!("{user}.pw")))
        .args(["--rtp-ports", "55000-55999"])
        .args(extra)
        .arg("answer");
    let p = Proc::spawn(user, &mut cmd);
    p.wait_line("registered aor=", LIMIT).expect("registered");
    p
}

/// `softphone message URI TEXT` as `user` through the service.
fn message(dir: &Path, port: u16, user: &str, uri: &str, text: &str) -> std::process::Output {
    Command::new(PHONE)
        .args(["--user", user, "--register", &format!("sip:127.0.0.1:{port}"), "--password-file"])
        .arg(dir.join(format!("{user}.pw")))
        .args(["message", uri, text])
        .output()
        .expect("softphone message")
}

#[test]
fn alice_messages_bob_through_the_service_and_bob_prints_it_as_json() {
    let _serial = serial();
    let dir = TempDir::new("message");
    users(dir.path(), &["alice", "bob"]);
    let (_svc, port) = serve(1, dir.path());
    let mut bob = answerer(dir.path(), port, "bob", &["--summary", "json"]);

    let out = message(dir.path(), port, "alice", "sip:bob@127.0.0.1", "hello bob, it's alice");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "message not delivered: {err}");
    let line = bob.wait_line("\"type\":\"message\"", LIMIT).expect("bob printed the message");
    let m: Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(m["text"], "hello bob, it's alice");
    assert!(m["from"].as_str().is_some_and(|f| f.starts_with("sip:alice@")), "{m}");
    // The service vouches for the authenticated sender (RFC 3325).
    assert!(m["asserted_identity"].as_str().is_some_and(|a| a.contains("sip:alice@")), "{m}");

    // A second one arrives as it is sent, on its own line.
    let out = message(dir.path(), port, "alice", "sip:bob@127.0.0.1", "second\nline");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    bob.wait_line("second\\nline", LIMIT).expect("the second message");

    // Nobody registered as carol (unknown user): non-zero exit and one line saying why.
    let out = message(dir.path(), port, "alice", "sip:carol@127.0.0.1", "anyone?");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let reason: Vec<&str> = err.lines().filter(|l| l.starts_with("softphone: ")).collect();
    assert!(reason.len() == 1 && reason[0].contains("404"), "{err}");

    // A wrong password: the service refuses (403) and the softphone says so.
    std::fs::write(dir.join("mallory.pw"), "alice-wrong\n").expect("pw");
    let out = Command::new(PHONE)
        .args(["--user", "alice", "--password-file"])
        .arg(dir.join("mallory.pw"))
        .args(["message", &format!("sip:bob@127.0.0.1:{port}"), "forged"])
        .output()
        .expect("softphone message");
    assert!(!out.status.success(), "a wrong password must not deliver");
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"), "{}", String::from_utf8_lossy(&out.stderr));
    let texts: Vec<String> = bob.lines(Stream::Stdout).into_iter().filter(|l| l.contains("\"type\":\"message\"")).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    bob.terminate(Duration::from_secs(10));
}

#[test]
fn an_answering_phone_without_json_prints_a_message_in_one_line() {
    let _serial = serial();
    let dir = TempDir::new("message-plain");
    users(dir.path(), &["alice", "bob"]);
    let (_svc, port) = serve(1, dir.path());
    let mut bob = answerer(dir.path(), port, "bob", &[]);
    let out = message(dir.path(), port, "alice", "sip:bob@127.0.0.1", "plain text");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = bob.wait_line("message from sip:alice@", LIMIT).expect("printed");
    assert!(line.ends_with(": plain text"), "{line}");
    bob.terminate(Duration::from_secs(10));
}

#[test]
fn sipp_message_and_subscribe_through_the_service() {
    if !sipp::available() {
        return;
    }
    let _serial = serial();
    procs::each_worker_count_in_turn(|workers| {
        let dir = TempDir::new("message-sipp");
        users(dir.path(), &["alice", "bob"]);
        let (svc, port) = serve(workers, dir.path());
        let mut bob = answerer(dir.path(), port, "bob", &[]);
        let svc_addr = format!("127.0.0.1:{port}");
        let args: Vec<String> = ["-sf", &sipp::scenario("message_auth.xml"), "-s", "bob", "-au", "alice", "-ap", "alice-secret"]
            .into_iter()
            .chain(["-auth_uri", &format!("bob@{svc_addr}"), "-m", "1", "-recv_timeout", "10s", "-timeout", "30s", "-timeout_error"])
            .chain([svc_addr.as_str()])
            .map(String::from)
            .collect();
        let mut uac = sipp::Sipp::spawn("uac-message", dir.path(), sipp::free_port(), &args);
        let out = uac.finish(Duration::from_secs(40));
        assert_eq!((out.successful, out.failed), (1, 0), "{out:?}\n{}\nservice:\n{}", out.error_head(40), svc.transcript());
        bob.wait_line("hello bob from sipp", LIMIT).expect("bob printed sipp's message");
        bob.terminate(Duration::from_secs(10));
    });
}

#[test]
fn sipp_out_of_dialog_requests_to_the_softphone_and_the_echo_user() {
    if !sipp::available() {
        return;
    }
    let _serial = serial();
    procs::each_worker_count_in_turn(|workers| {
        let dir = TempDir::new("ood-sipp");
        let mut phone = Proc::spawn("softphone", Command::new(PHONE).args(["--rtp-ports", "55000-55999", "answer"]));
        let line = phone.wait_line("softphone listening on udp ", LIMIT).expect("listening");
        let addr = line.split("udp ").nth(1).and_then(|r| r.split(';').next()).expect("address").to_owned();
        let (svc, port) = serve(workers, dir.path());
        for (name, service, remote) in [("phone", "softphone", addr), ("echo", "echo", format!("127.0.0.1:{port}"))] {
            let args: Vec<String> = [
                "-sf",
                &sipp::scenario("out_of_dialog.xml"),
                "-s",
                service,
                "-m",
                "1",
                "-recv_timeout",
                "10s",
                "-timeout",
                "30s",
                "-timeout_error",
                &remote,
            ]
            .into_iter()
            .map(String::from)
            .collect();
            let mut uac = sipp::Sipp::spawn(name, dir.path(), sipp::free_port(), &args);
            let out = uac.finish(Duration::from_secs(40));
            assert_eq!((out.successful, out.failed), (1, 0), "{name}: {out:?}\n{}\nservice:\n{}", out.error_head(40), svc.transcript());
        }
        phone.wait_line("message from sip:sipp@", LIMIT).expect("the softphone printed sipp's MESSAGE");
        phone.terminate(Duration::from_secs(10));
    });
}

#[path = "common/phone.rs"]
mod phone;

/// UPDATE and INFO outside a dialog, to a registered user through the service: challenged like
/// any new request, then 481 from the service itself (they exist only inside a dialog), not 405.
#[test]
fn out_of_dialog_update_and_info_through_the_service_get_481() {
    let _serial = serial();
    let dir = TempDir::new("ood-service");
    users(dir.path(), &["alice", "bob"]);
    let (_svc, port) = serve(1, dir.path());
    let mut bob = answerer(dir.path(), port, "bob", &[]);
    let mut alice = phone::Phone::new("127.0.0.1", std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    for method in [switchboard::message::Method::Update, switchboard::message::Method::Info] {
        let req = alice.request(method.clone(), "alice", None);
        let challenge = alice.transact(&req);
        assert_eq!(challenge.status(), Some(407), "{method:?}");
        let creds = alice.credentials(&req, &challenge, "alice", "alice-secret");
        let authorized = alice.request(method.clone(), "alice", Some(creds));
        let answer = alice.transact(&authorized);
        assert_eq!(answer.status(), Some(481), "{method:?}");
    }
    bob.terminate(Duration::from_secs(10));
}
