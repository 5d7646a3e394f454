//! Issue 14 point 2 leftover: a trusted peer's `P-Asserted-Identity` (RFC 3325 §5) goes on to the
//! callee leg of the B2BUA, while anyone else's is not believed. Real `switchboard serve` with
//! digest auth on, `trusted = ["127.0.0.9/32"]` and a static route for user `out` to a trunk
//! socket, all on loopback:
//! - the gateway at 127.0.0.9 calls `out` with its own PAI: the trunk's INVITE carries exactly
//!   that PAI, the call is answered and the gateway gets the 200 (the legitimate call);
//! - a stranger at 127.0.0.1 sends the same INVITE with a forged PAI: 407, and nothing reaches the
//!   trunk.
//!
//! Every wait is bounded.

#[path = "common/procs.rs"]
mod procs;
#[path = "common/raw_sip.rs"]
mod raw_sip;

use procs::TempDir;
use raw_sip::{addr_of, final_response, header, sdp_offer, socket, socket_on, status, try_recv_starting};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

const SB: &str = env!("CARGO_BIN_EXE_switchboard");
const LIMIT: Duration = Duration::from_secs(20);
const PAI: &str = "\"Gateway Caller\" <sip:+15550001@gw.example>";

/// An INVITE for `out` from `sock` carrying `pai` as P-Asserted-Identity.
fn invite_with_pai(sock: &UdpSocket, service: SocketAddr, call_id: &str, pai: &str) {
    let me = addr_of(sock);
    let body = sdp_offer(me);
    let msg = format!(
        "INVITE sip:out@{service} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id};rport\r\n\
         From: <sip:+15550001@{ip}>;tag=t-{call_id}\r\nTo: <sip:out@{sip}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:gw@{me}>\r\nP-Asserted-Identity: {pai}\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{body}",
        ip = me.ip(),
        sip = service.ip(),
        len = body.len()
    );
    sock.send_to(msg.as_bytes(), service).expect("send INVITE");
}

/// `200 OK` to `req` with a To tag, our Contact and an SDP answer.
fn answer(req: &str, me: SocketAddr) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for l in req.lines().take_while(|l| !l.is_empty()) {
        if ["Via:", "From:", "Call-ID:", "CSeq:"].iter().any(|p| l.starts_with(p)) {
            out.push_str(l);
            out.push_str("\r\n");
        } else if l.starts_with("To:") {
            out.push_str(&format!("{l};tag=trunk\r\n"));
        }
    }
    let body = sdp_offer(me);
    out.push_str(&format!("Contact: <sip:out@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    out
}

#[test]
fn a_trusted_gateways_asserted_identity_reaches_the_callee_leg_and_a_strangers_does_not() {
    let dir = TempDir::new("trusted-pai");
    let data = dir.join("data");
    let ok = Command::new(SB)
        .args(["users", "--data"])
        .arg(&data)
        .args(["add", "alice", "--password", "alice-secret"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("users add");
    assert!(ok.success());
    let trunk = socket();
    let config = dir.join("sb.toml");
    std::fs::write(
        &config,
        format!("trusted = [\"127.0.0.9/32\"]\n\n[[route]]\nuser = \"out\"\ntarget = \"sip:127.0.0.1:{}\"\n", addr_of(&trunk).port()),
    )
    .expect("config");
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rtp-ports", "36800-36899", "--config"]).arg(&config).arg("--data").arg(&data);
    let (svc, port) = procs::spawn_service(&mut cmd, LIMIT);
    let service = SocketAddr::from(([127, 0, 0, 1], port));

    // The stranger's forged identity: challenged, and the trunk hears nothing.
    let stranger = socket();
    invite_with_pai(&stranger, service, "pai-forged", "<sip:ceo@bank.example>");
    let got = final_response(&stranger, "pai-forged", LIMIT);
    assert_eq!(status(&got), 407, "{got}");
    assert!(try_recv_starting(&trunk, "INVITE ", Duration::from_millis(500)).is_none(), "the stranger's INVITE reached the trunk");

    // The trusted gateway's call: its PAI is on the callee leg, and the call is answered.
    let gateway = socket_on("127.0.0.9");
    invite_with_pai(&gateway, service, "pai-gw", PAI);
    let leg = try_recv_starting(&trunk, "INVITE ", LIMIT).unwrap_or_else(|| panic!("no callee leg\n{}", svc.transcript()));
    let pais: Vec<&str> = leg.lines().filter_map(|l| l.strip_prefix("P-Asserted-Identity:")).map(str::trim).collect();
    assert_eq!(pais, [PAI], "{leg}");
    assert!(!leg.contains("ceo@bank.example"), "{leg}");
    trunk.send_to(answer(&leg, addr_of(&trunk)).as_bytes(), service).expect("send 200");
    let ok = final_response(&gateway, "pai-gw", LIMIT);
    assert_eq!(status(&ok), 200, "{ok}\n{}", svc.transcript());
    assert!(header(&ok, "To").is_some_and(|t| t.contains(";tag=")), "{ok}");
}
