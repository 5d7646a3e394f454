//! A small cluster for the dispatcher tests: `switchboard serve` instances on loopback behind one
//! `switchboard dispatch`, and echo calls through it over plain UDP (issue 17 point 3).
#![allow(dead_code)]

use super::procs::{self, Proc};
use super::raw_sip::{addr_of, final_response, header, sdp_offer};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

pub const SB: &str = env!("CARGO_BIN_EXE_switchboard");
pub const LIMIT: Duration = Duration::from_secs(15);

/// `switchboard serve --no-auth --data none` on 127.0.0.1:`port` (0: a free one) with its own RTP
/// range and `extra` flags, and the harness's worker count (one, unless SWITCHBOARD_WORKERS).
pub fn instance(port: u16, extra: &[&str]) -> (Proc, SocketAddr) {
    instance_with(None, port, extra)
}

/// [`instance`] with `workers` workers (`--workers`), for the tests that run with 1 and 2.
pub fn instance_workers(workers: usize, port: u16, extra: &[&str]) -> (Proc, SocketAddr) {
    instance_with(Some(workers), port, extra)
}

fn instance_with(workers: Option<usize>, port: u16, extra: &[&str]) -> (Proc, SocketAddr) {
    let rtp = procs::free_udp_span(20_000..=29_999, 200);
    let mut cmd = Command::new(SB);
    if let Some(n) = workers {
        procs::set_workers(&mut cmd, n);
    }
    cmd.args(["serve", "--no-auth", "--data", "none", "--max-echo-calls-per-source", "0"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--rtp-ports", &format!("{rtp}-{}", rtp + 199)])
        .args(extra);
    let (proc, port) = procs::spawn_service(&mut cmd, LIMIT);
    (proc, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// `switchboard dispatch --listen 127.0.0.1:0 --backend ...` with `extra` flags.
pub fn dispatcher(backends: &[SocketAddr], extra: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(SB);
    cmd.args(["dispatch", "--listen", "127.0.0.1:0"]).env_remove("SWITCHBOARD_STORE");
    for b in backends {
        cmd.args(["--backend", &format!("sip:{b}")]);
    }
    cmd.args(extra);
    let proc = Proc::spawn("switchboard dispatch", &mut cmd);
    let line = proc.wait_line("switchboard dispatch listening on udp ", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let addr = line
        .split("udp ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in: {line}"));
    (proc, addr)
}

/// The member name of an instance, as the dispatcher publishes it.
pub fn member(a: SocketAddr) -> String {
    format!("sip:{a}")
}

/// One established echo call through the dispatcher.
pub struct EchoCall {
    pub call_id: String,
    /// The instance that answered (its Contact).
    pub answered_by: SocketAddr,
    /// Our route set: the Record-Route of the 200.
    pub route: String,
    pub to: String,
    pub contact: String,
}

/// INVITE sip:echo via the dispatcher; the 200's Contact names the instance that answered.
pub fn echo_call(sock: &UdpSocket, disp: SocketAddr, call_id: &str) -> EchoCall {
    let media = SocketAddr::from(([127, 0, 0, 1], 9));
    super::raw_sip::invite(sock, disp, "echo", call_id, &sdp_offer(media));
    let ok = final_response(sock, call_id, LIMIT);
    assert_eq!(super::raw_sip::status(&ok), 200, "{ok}");
    let contact = header(&ok, "Contact").expect("Contact").trim_matches(['<', '>']).to_owned();
    let contact = contact.split('>').next().unwrap_or("").to_owned();
    let answered_by =
        contact.rsplit('@').next().and_then(|hp| hp.split(';').next()).and_then(|a| a.parse().ok()).expect("instance in Contact");
    let route = header(&ok, "Record-Route").expect("the dispatcher record-routes").to_owned();
    let to = header(&ok, "To").expect("To").to_owned();
    let me = addr_of(sock);
    let ack = format!(
        "ACK {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ack-{call_id};rport\r\nRoute: {route}\r\n\
         From: <sip:mallory@{ip}>;tag=t-{call_id}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        ip = me.ip()
    );
    sock.send_to(ack.as_bytes(), disp).expect("ACK");
    EchoCall { call_id: call_id.to_owned(), answered_by, route, to, contact }
}

/// BYE on `call` through the dispatcher with `route` as its Route; the final status.
pub fn bye(sock: &UdpSocket, disp: SocketAddr, call: &EchoCall, route: &str) -> u16 {
    let me = addr_of(sock);
    let id = &call.call_id;
    let bye = format!(
        "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-bye-{id};rport\r\nRoute: {route}\r\n\
         From: <sip:mallory@{ip}>;tag=t-{id}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        contact = call.contact,
        ip = me.ip(),
        to = call.to
    );
    sock.send_to(bye.as_bytes(), disp).expect("BYE");
    response_to(sock, id, "BYE")
}

/// The status of the final response with this Call-ID and CSeq method (skipping retransmitted
/// answers of other requests of the call).
pub fn response_to(sock: &UdpSocket, call_id: &str, method: &str) -> u16 {
    let deadline = std::time::Instant::now() + LIMIT;
    let (id, cseq) = (format!("Call-ID: {call_id}\r\n"), format!(" {method}\r\n"));
    while let Some(r) = super::raw_sip::try_recv_starting(sock, "SIP/2.0 ", deadline.saturating_duration_since(std::time::Instant::now())) {
        let is_cseq = header(&r, "CSeq").is_some_and(|c| format!(" {c}\r\n").ends_with(&cseq));
        if r.contains(&id) && is_cseq && !r.starts_with("SIP/2.0 1") {
            return super::raw_sip::status(&r);
        }
    }
    panic!("no final response to {method} of {call_id} within {LIMIT:?}");
}
