//! The softphone with 100rel (RFC 3262) and UPDATE (RFC 3311), against sipp standing in for a
//! phone (Debian's baresip 1.0.0 has no 100rel):
//! - `softphone dial` (`Supported: 100rel` by default) calls a sipp UAS that answers with a reliable
//!   183 (fixtures/sipp/uas_100rel_early_update.xml): the softphone PRACKs it (RAck checked by
//!   sipp), answers the UAS's UPDATE in the early dialog, and the call completes;
//! - `softphone answer --100rel required` takes a call from a sipp UAC with 100rel
//!   (fixtures/sipp/uac_100rel.xml): its 180 is reliable (RSeq and Require checked by sipp), sipp's
//!   PRACK is answered, and so is the UPDATE in the confirmed call (a=sendonly answered a=recvonly);
//! - `softphone answer --100rel required` refuses a caller without 100rel with 421.
//!
//! Everything runs on 127.0.0.1 with ephemeral ports and private temp dirs; every wait is bounded.
//! Without sipp the sipp tests skip with a printed reason (fail when `CI` is set).

#[path = "common/procs.rs"]
mod procs;
#[path = "common/sipp.rs"]
mod sipp;

use procs::{Proc, TempDir};
use sipp::{scenario, Sipp};
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn softphone(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_softphone"));
    cmd.args(["--rtp-ports", "54000-54999"]).args(args);
    cmd
}

/// Starts `softphone ARGS... answer --calls 1` and returns it with its SIP port.
fn answering(args: &[&str]) -> (Proc, u16) {
    let mut cmd = softphone(args);
    cmd.args(["answer", "--calls", "1"]);
    let phone = Proc::spawn("softphone answer", &mut cmd);
    let line = phone.wait_line("softphone listening on udp 127.0.0.1:", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let port = line.split("udp 127.0.0.1:").nth(1).and_then(|r| r.split(';').next()).and_then(|p| p.trim().parse().ok());
    (phone, port.unwrap_or_else(|| panic!("no port in: {line}")))
}

#[test]
fn dial_pracks_a_reliable_183_and_answers_an_early_update() {
    if !sipp::available() {
        return;
    }
    let dir = TempDir::new("phone-prack-dial");
    let port = sipp::free_port();
    let mut uas = Sipp::spawn(
        "callee",
        dir.path(),
        port,
        &s(&["-sf", &scenario("uas_100rel_early_update.xml"), "-s", "bob", "-m", "1", "-timeout", "50s"]),
    );
    if let Err(e) = uas.wait_bound(LIMIT) {
        panic!("{e}");
    }
    let mut phone = Proc::spawn(
        "softphone dial",
        &mut softphone(&["dial", &format!("sip:bob@127.0.0.1:{port}"), "--duration", "1", "--summary", "json"]),
    );
    let status = phone.expect_exit(LIMIT);
    let out = uas.finish(LIMIT);
    let context = || format!("sipp {out:?}\n{}\n{}\nsoftphone:\n{}", out.error_head(40), uas.proc.transcript(), phone.transcript());
    assert!(status.success(), "softphone: {}", context());
    assert_eq!((out.successful, out.failed), (1, 0), "{}", context());
    let summary =
        phone.lines(procs::Stream::Stdout).into_iter().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no summary: {}", context()));
    assert!(summary.contains("\"completed\""), "{summary}");
}

#[test]
fn answer_with_100rel_required_sends_a_reliable_180_and_answers_prack_and_update() {
    if !sipp::available() {
        return;
    }
    let dir = TempDir::new("phone-prack-answer");
    let (mut phone, port) = answering(&["--100rel", "required"]);
    let args =
        s(&["-sf", &scenario("uac_100rel.xml"), "-s", "softphone", "-d", "200", "-m", "1", "-recv_timeout", "20s", "-timeout", "50s"]);
    let mut args = args;
    args.push(format!("127.0.0.1:{port}"));
    let mut uac = Sipp::spawn("caller", dir.path(), sipp::free_port(), &args);
    let out = uac.finish(LIMIT);
    let status = phone.expect_exit(LIMIT);
    let context = || format!("sipp {out:?}\n{}\n{}\nsoftphone:\n{}", out.error_head(40), uac.proc.transcript(), phone.transcript());
    assert_eq!((out.successful, out.failed), (1, 0), "{}", context());
    assert!(out.exited_ok(), "{}", context());
    assert!(status.success(), "softphone: {}", context());
}

#[test]
fn answer_with_100rel_required_refuses_a_caller_without_it_with_421() {
    let (mut phone, port) = answering(&["--100rel", "required"]);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let me = sock.local_addr().expect("addr").port();
    let invite = format!(
        "INVITE sip:softphone@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-norel;rport\r\n\
         From: <sip:caller@127.0.0.1>;tag=c1\r\nTo: <sip:softphone@127.0.0.1>\r\nCall-ID: norel@test\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:caller@127.0.0.1:{me}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(invite.as_bytes(), ("127.0.0.1", port)).expect("send");
    let deadline = Instant::now() + LIMIT;
    let mut buf = vec![0u8; 65536];
    let answer = loop {
        assert!(Instant::now() < deadline, "no final answer within {LIMIT:?}");
        let Ok((n, _)) = sock.recv_from(&mut buf) else { continue };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            break text;
        }
    };
    assert!(answer.starts_with("SIP/2.0 421"), "{answer}");
    assert!(answer.lines().any(|l| l.eq_ignore_ascii_case("Require: 100rel")), "{answer}");
    phone.kill();
}
