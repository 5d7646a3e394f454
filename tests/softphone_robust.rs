//! The softphone against misbehaving peers (issue 15 point 7), each played by a raw UDP socket on
//! loopback: two 2xx from a forking proxy (the extra dialog gets a BYE, the call goes on and ends
//! normally), a 2xx without a To tag (dropped: the INVITE times out, non-zero exit), a 2xx without
//! SDP or with SRTP only (ACK + BYE, non-zero exit), ACKs that get no answer, a dead port, and an
//! address family the socket cannot reach. `--t1-ms` keeps the timeouts short. Every failure must
//! exit non-zero with its reason in one line on stderr, and with `--summary json` stdout must be
//! JSON only.

#[path = "common/procs.rs"]
mod procs;
#[path = "common/raw_sip.rs"]
mod raw_sip;

use procs::{Proc, Stream};
use raw_sip::{header, recv_starting, socket, try_recv_starting};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);
const PHONE: &str = env!("CARGO_BIN_EXE_softphone");

/// `softphone --summary json --t1-ms 20 ... dial sip:peer@ADDR --duration SECS`.
fn dial(to: SocketAddr, ports: &str, duration: &str) -> Proc {
    dial_t1(to, ports, duration, "20")
}

/// [`dial`] with `--t1-ms T1`.
fn dial_t1(to: SocketAddr, ports: &str, duration: &str, t1: &str) -> Proc {
    let mut cmd = Command::new(PHONE);
    cmd.args(["--summary", "json", "--t1-ms", t1, "--rtp-timeout", "0", "--rtp-ports", ports]).args([
        "dial",
        &format!("sip:peer@{to}"),
        "--duration",
        duration,
    ]);
    Proc::spawn("softphone dial", &mut cmd)
}

/// Every stdout line is a JSON object (`--summary json`: stdout is JSON only); returns them.
fn json_only(p: &Proc) -> Vec<serde_json::Value> {
    p.lines(Stream::Stdout)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}\n{}", p.transcript()))
        })
        .collect()
}

/// The call summary (the one object of type `call`).
fn call_summary(p: &Proc) -> serde_json::Value {
    let calls: Vec<_> = json_only(p).into_iter().filter(|v| v["type"] == "call").collect();
    assert_eq!(calls.len(), 1, "one call summary:\n{}", p.transcript());
    calls.into_iter().next().unwrap_or_default()
}

/// The stderr lines that say why the call failed.
fn failure_lines(p: &Proc) -> Vec<String> {
    p.lines(Stream::Stderr).into_iter().filter(|l| l.starts_with("softphone: call") && !l.starts_with("softphone: calling")).collect()
}

/// Exits non-zero, and says why in exactly one line containing `why`.
fn assert_failed_with(p: &mut Proc, why: &str) {
    let status = p.expect_exit(LIMIT);
    assert!(!status.success(), "exit status {status} after a failure:\n{}", p.transcript());
    let lines = failure_lines(p);
    assert_eq!(lines.len(), 1, "one line of reason:\n{}", p.transcript());
    assert!(lines[0].contains(why), "the reason names '{why}': {}", lines[0]);
}

/// A UAS played by hand: the INVITE it got, and responses built from it.
struct Peer {
    sock: UdpSocket,
    invite: String,
    from: SocketAddr,
}

impl Peer {
    /// Waits for the softphone's INVITE on `sock`.
    fn invited(sock: UdpSocket) -> Peer {
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if text.starts_with("INVITE ") {
                    return Peer { sock, invite: text, from };
                }
            }
        }
        panic!("no INVITE within {LIMIT:?}");
    }

    fn me(&self) -> SocketAddr {
        self.sock.local_addr().expect("local address")
    }

    /// A response to the INVITE: `to_tag` `None` leaves the To without a tag; `sdp` the body.
    fn answer(&self, code: u16, to_tag: Option<&str>, sdp: &str) {
        let h = |n: &str| header(&self.invite, n).unwrap_or_else(|| panic!("INVITE without {n}")).to_owned();
        let to = match to_tag {
            Some(t) => format!("{};tag={t}", h("To")),
            None => h("To"),
        };
        let ctype = if sdp.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
        let msg = format!(
            "SIP/2.0 {code} OK\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:peer@{}>\r\n{ctype}Content-Length: {}\r\n\r\n{sdp}",
            h("Via"),
            h("From"),
            h("Call-ID"),
            h("CSeq"),
            self.me(),
            sdp.len()
        );
        self.sock.send_to(msg.as_bytes(), self.from).expect("send response");
    }

    /// Answers a request (BYE) with 200, echoing its headers.
    fn ok_to(&self, request: &str) {
        let h = |n: &str| header(request, n).unwrap_or("").to_owned();
        let msg = format!(
            "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            h("Via"),
            h("From"),
            h("To"),
            h("Call-ID"),
            h("CSeq")
        );
        self.sock.send_to(msg.as_bytes(), self.from).expect("send 200");
    }
}

/// An SDP answer with media at the peer's address on `proto`.
fn answer_sdp(port: u16, proto: &str) -> String {
    let crypto =
        if proto.contains("SAVP") { "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n" } else { "" };
    format!(
        "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n{crypto}a=sendrecv\r\n"
    )
}

/// The To tag of a request.
fn to_tag(msg: &str) -> String {
    header(msg, "To").and_then(|t| t.split(";tag=").nth(1)).map(|t| t.split(';').next().unwrap_or(t).to_owned()).unwrap_or_default()
}

#[test]
fn a_second_2xx_from_a_fork_is_acked_and_its_dialog_ended_with_a_bye() {
    let sock = socket();
    let mut phone = dial(sock.local_addr().expect("addr"), "33000-33099", "1");
    let peer = Peer::invited(sock);
    // Two branches of a forking proxy answer: the first 2xx makes the call, the second must be
    // ACKed and its dialog ended with a BYE (RFC 3261 §13.2.2.4).
    peer.answer(200, Some("fork-one"), &answer_sdp(33900, "RTP/AVP"));
    peer.answer(200, Some("fork-two"), &answer_sdp(33902, "RTP/AVP"));
    let (mut acked, mut bye_two, mut bye_one) = (Vec::new(), None, None);
    let deadline = Instant::now() + LIMIT;
    while bye_one.is_none() && Instant::now() < deadline {
        let Some(m) = try_recv_starting(&peer.sock, "", Duration::from_millis(200)) else { continue };
        if m.starts_with("ACK ") {
            acked.push(to_tag(&m));
        } else if m.starts_with("BYE ") {
            peer.ok_to(&m);
            match to_tag(&m).as_str() {
                "fork-two" => {
                    assert!(bye_one.is_none(), "the extra dialog is ended first, at once");
                    bye_two = Some(m);
                }
                "fork-one" => bye_one = Some(m),
                other => panic!("BYE for an unknown dialog {other}"),
            }
        }
    }
    assert!(acked.contains(&"fork-one".to_owned()) && acked.contains(&"fork-two".to_owned()), "each 2xx ACKed: {acked:?}");
    assert!(bye_two.is_some(), "no BYE to the extra dialog:\n{}", phone.transcript());
    assert!(bye_one.is_some(), "the kept call was not hung up after --duration:\n{}", phone.transcript());
    let status = phone.expect_exit(LIMIT);
    assert!(status.success(), "the call ended normally: {status}\n{}", phone.transcript());
    let summary = call_summary(&phone);
    assert_eq!(summary["state"], "completed");
    assert_eq!(summary["reason"], "bye-local");
}

#[test]
fn a_2xx_without_a_to_tag_is_dropped_and_the_invite_times_out() {
    let sock = socket();
    let mut phone = dial(sock.local_addr().expect("addr"), "33100-33199", "1");
    let peer = Peer::invited(sock);
    peer.answer(200, None, &answer_sdp(33910, "RTP/AVP"));
    // Malformed: no dialog, no ACK; the INVITE goes on being retransmitted until Timer B (64*T1).
    let retransmitted = recv_starting(&peer.sock, "INVITE ", LIMIT);
    assert_eq!(header(&retransmitted, "Call-ID"), header(&peer.invite, "Call-ID"));
    assert_failed_with(&mut phone, "no response");
    let summary = call_summary(&phone);
    assert_eq!((summary["state"].as_str(), summary["reason"].as_str()), (Some("failed"), Some("timeout")));
    assert_eq!(summary["responses"], serde_json::json!([]), "the tagless 2xx was not taken as a response");
    // Whatever the peer got after the 2xx: no ACK.
    while let Some(m) = try_recv_starting(&peer.sock, "", Duration::from_millis(50)) {
        assert!(!m.starts_with("ACK "), "a tagless 2xx was ACKed: {m}");
    }
}

/// A 2xx whose answer cannot be used: ACK, then BYE, then a non-zero exit naming the problem.
fn unusable_answer(ports: &str, sdp: &str, reason: &str, why: &str) {
    let sock = socket();
    let mut phone = dial(sock.local_addr().expect("addr"), ports, "30");
    let peer = Peer::invited(sock);
    peer.answer(200, Some("bad-answer"), sdp);
    let ack = recv_starting(&peer.sock, "ACK ", LIMIT);
    assert_eq!(to_tag(&ack), "bad-answer");
    let bye = recv_starting(&peer.sock, "BYE ", LIMIT);
    assert_eq!(to_tag(&bye), "bad-answer");
    peer.ok_to(&bye);
    assert_failed_with(&mut phone, why);
    let summary = call_summary(&phone);
    assert_eq!((summary["state"].as_str(), summary["reason"].as_str()), (Some("failed"), Some(reason)), "{summary}");
}

#[test]
fn a_2xx_without_sdp_to_our_offer_gets_ack_and_bye_and_fails() {
    unusable_answer("33200-33299", "", "answer-without-sdp", "no SDP");
}

#[test]
fn a_2xx_with_only_srtp_to_a_plain_offer_gets_ack_and_bye_and_fails() {
    unusable_answer("33300-33399", &answer_sdp(33920, "RTP/SAVP"), "srtp-not-allowed", "SRTP");
}

#[test]
fn acks_never_get_a_response() {
    let mut cmd = Command::new(PHONE);
    cmd.args(["--summary", "json", "--rtp-ports", "33400-33499", "answer"]);
    let mut phone = Proc::spawn("softphone answer", &mut cmd);
    let line = phone.wait_line("listening on udp", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    assert!(phone.lines(Stream::Stdout).is_empty(), "the listening line is on stderr with --summary json");
    let port: u16 =
        line.split("udp 127.0.0.1:").nth(1).and_then(|r| r.split(';').next()).and_then(|p| p.trim().parse().ok()).expect("port");
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let sock = socket();
    let me = sock.local_addr().expect("addr");
    let ack = |extra: &str, cseq: &str| {
        format!(
            "ACK sip:softphone@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ack{}\r\nMax-Forwards: 70\r\n\
             From: <sip:x@{me}>;tag=a\r\nTo: <sip:softphone@{to}>;tag=b\r\n{extra}CSeq: {cseq}\r\nContent-Length: 0\r\n\r\n",
            cseq.len() + extra.len()
        )
    };
    let acks = [
        // For no dialog of the phone's.
        ack("Call-ID: no-such-dialog\r\n", "1 ACK"),
        // Malformed: a CSeq naming another method, no Call-ID, and a header line that does not parse.
        ack("Call-ID: mismatch\r\n", "1 INVITE"),
        ack("", "1 ACK"),
        ack("Call-ID: garbage\r\nContact: <<<\r\nCSeq \x01\r\n", "x"),
    ];
    for a in &acks {
        sock.send_to(a.as_bytes(), to).expect("send ACK");
    }
    // A marker the phone does answer, sent after the ACKs: any answer to them would come first.
    let options = format!(
        "OPTIONS sip:softphone@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-marker\r\nMax-Forwards: 70\r\n\
         From: <sip:x@{me}>;tag=m\r\nTo: <sip:softphone@{to}>\r\nCall-ID: marker\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(options.as_bytes(), to).expect("send OPTIONS");
    let first = recv_starting(&sock, "SIP/2.0 ", LIMIT);
    assert!(first.contains("CSeq: 1 OPTIONS"), "an ACK got a response: {first}");
    phone.terminate(Duration::from_secs(5));
}

#[test]
fn a_call_to_a_dead_port_reports_connection_refused() {
    let dead = {
        let s = socket();
        s.local_addr().expect("addr")
    };
    // The default T1: without the ICMP error the INVITE would time out after 32 s, past LIMIT.
    let mut phone = dial_t1(dead, "33500-33599", "1", "500");
    assert_failed_with(&mut phone, &format!("connection refused by {dead}"));
    assert_eq!(call_summary(&phone)["state"], "failed");
}

#[test]
fn a_call_across_address_families_is_refused_at_once() {
    // [::1] from an IPv4 socket.
    let out = Command::new(PHONE).args(["--t1-ms", "20", "dial", "sip:peer@[::1]:5060"]).output().expect("softphone");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("softphone:") && !l.contains("calling")).collect();
    assert_eq!(lines.len(), 1, "one line of reason: {err}");
    assert!(lines[0].contains("[::1]:5060") && lines[0].contains("IPv4"), "{err}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&out.stdout));
    // 127.0.0.1 from an IPv6 socket (where ::1 exists).
    if UdpSocket::bind("[::1]:0").is_ok() {
        let out = Command::new(PHONE)
            .args(["--bind", "[::1]:0", "--t1-ms", "20", "dial", "sip:peer@127.0.0.1:5060"])
            .output()
            .expect("softphone");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("127.0.0.1:5060") && err.contains("IPv6"), "{err}");
    }
}

#[test]
fn load_with_summary_json_prints_json_only_on_stdout() {
    // A peer that never answers: the run ends at --timeout with the call counted as failed.
    let silent = socket();
    let mut cmd = Command::new(PHONE);
    cmd.args(["--summary", "json", "load", &format!("sip:peer@{}", silent.local_addr().expect("addr"))]).args([
        "--rate",
        "1",
        "--calls",
        "1",
        "--workers",
        "1",
        "--timeout",
        "1",
    ]);
    let mut load = Proc::spawn("softphone load", &mut cmd);
    let status = load.expect_exit(LIMIT);
    assert!(!status.success(), "a failed call fails the run:\n{}", load.transcript());
    let objects = json_only(&load);
    assert_eq!(objects.len(), 1, "one JSON object:\n{}", load.transcript());
    assert!(load.lines(Stream::Stderr).iter().any(|l| l.starts_with("failed")), "the table went to stderr:\n{}", load.transcript());
}
