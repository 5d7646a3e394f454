//! Issue 14 point 9: no loops, on real sockets.
//! - Two services whose static routes send user `loop` to each other: one INVITE ends within
//!   Max-Forwards hops, with 483 in B2BUA mode (each leg carries the incoming Max-Forwards minus
//!   one) and 482 in proxy mode (the request comes back with our Via); afterwards
//!   `switchboard calls` shows no call left on either service. A call to the echo user through
//!   the same service still works. Also with `--no-relay`.
//! - A service whose route names itself answers 482 (the B2BUA leg arrives carrying our Via).
//! - The B2BUA's callee leg carries the caller's Max-Forwards minus one, and so do in-dialog
//!   requests relayed from one leg to the other (INFO, re-INVITE, BYE, both ways); 0 gets 483.
//!
//! SIP ports are picked free just before the services start (each needs the other's in its
//! config); RTP ranges are fixed and private to this file. Every wait is bounded.

#[path = "common/procs.rs"]
mod procs;
#[path = "common/raw_sip.rs"]
mod raw_sip;

use procs::{Proc, TempDir};
use raw_sip::{addr_of, final_response, invite, sdp_offer, socket, status};
use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SB: &str = env!("CARGO_BIN_EXE_switchboard");
const LIMIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("free port").port()
}

/// A service on 127.0.0.1:`port` with its data in `data` and a `[[route]]` sending user `user`
/// to 127.0.0.1:`next`.
fn serve(dir: &TempDir, name: &str, port: u16, next: u16, user: &str, args: &[&str]) -> (Proc, std::path::PathBuf) {
    let config = dir.join(&format!("{name}.toml"));
    std::fs::write(&config, format!("[[route]]\nuser = \"{user}\"\ntarget = \"sip:127.0.0.1:{next}\"\n")).expect("config");
    let data = dir.join(name);
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--no-auth", "--listen", &format!("127.0.0.1:{port}"), "--config", config.to_str().unwrap(), "--data"])
        .arg(&data)
        .args(args);
    let (proc, got) = procs::spawn_service(&mut cmd, LIMIT);
    assert_eq!(got, port);
    (proc, data)
}

/// `switchboard calls --json` of the service with data in `data`.
fn calls(data: &Path) -> Vec<Value> {
    let out = Command::new(SB).args(["calls", "--json", "--data"]).arg(data).output().expect("calls");
    assert!(out.status.success(), "calls: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("calls JSON")).collect()
}

/// How many call records the store in `data` holds.
fn records(data: &Path) -> usize {
    let out = Command::new(SB).args(["cdr", "--json", "--data"]).arg(data).output().expect("cdr");
    assert!(out.status.success(), "cdr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Waits until the service on `data` has no call in progress.
fn no_calls_left(data: &Path) {
    let t0 = Instant::now();
    loop {
        let c = calls(data);
        if c.is_empty() {
            return;
        }
        assert!(t0.elapsed() < LIMIT, "calls left behind on {}: {c:#?}", data.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn two_services_routing_to_each_other(mode: &str, extra: &[&str], want: u16) {
    let dir = TempDir::new(&format!("loops-{mode}"));
    let (pa, pb) = (free_port(), free_port());
    let args = |ports: &'static str| [&["--mode", mode, "--rtp-ports", ports][..], extra].concat();
    let (a, data_a) = serve(&dir, "a", pa, pb, "loop", &args("62000-62499"));
    let (b, data_b) = serve(&dir, "b", pb, pa, "loop", &args("62500-62999"));
    let service = SocketAddr::from(([127, 0, 0, 1], pa));
    let caller = socket();
    invite(&caller, service, "loop", "loop-1", &sdp_offer(addr_of(&caller)));
    let answer = final_response(&caller, "loop-1", LIMIT);
    assert_eq!(status(&answer), want, "{answer}\nA:\n{}\nB:\n{}", a.transcript(), b.transcript());
    no_calls_left(&data_a);
    no_calls_left(&data_b);
    if mode == "b2bua" {
        // One call record per hop: Max-Forwards 70 bounds the chain.
        let hops = records(&data_a) + records(&data_b);
        eprintln!("{mode} {extra:?}: the loop ended after {hops} B2BUA calls");
        assert!((1..=70).contains(&hops), "{hops} calls in the loop");
    }
    // The service is still there for everyone else.
    invite(&caller, service, "echo", "echo-after", &sdp_offer(addr_of(&caller)));
    assert_eq!(status(&final_response(&caller, "echo-after", LIMIT)), 200);
}

/// B2BUA legs carry Max-Forwards down: the loop ends in 483 after 70 hops, and every call of the
/// chain is gone from both services.
#[test]
fn b2bua_services_routing_to_each_other_end_with_483() {
    two_services_routing_to_each_other("b2bua", &[], 483);
}

/// The same without the relay (the report: 34,378 INVITEs in 5 s, then SIGTERM ignored).
#[test]
fn signalling_only_b2bua_services_routing_to_each_other_end_with_483() {
    two_services_routing_to_each_other("b2bua", &["--no-relay"], 483);
}

/// Proxies keep the Via stack: the INVITE comes back to the first service with its Via: 482.
#[test]
fn proxy_services_routing_to_each_other_end_with_482() {
    two_services_routing_to_each_other("proxy", &[], 482);
}

/// A route back to the service itself: the B2BUA's leg arrives with our own Via and is answered
/// 482, which the caller gets; no call is left.
#[test]
fn route_to_itself_is_482() {
    let dir = TempDir::new("loops-self");
    let port = free_port();
    let (svc, data) = serve(&dir, "self", port, port, "me", &["--rtp-ports", "63000-63099"]);
    let caller = socket();
    let service = SocketAddr::from(([127, 0, 0, 1], port));
    invite(&caller, service, "me", "self-1", &sdp_offer(addr_of(&caller)));
    let answer = final_response(&caller, "self-1", LIMIT);
    assert_eq!(status(&answer), 482, "{answer}\n{}", svc.transcript());
    no_calls_left(&data);
}

/// The callee leg of a B2BUA call carries the caller's Max-Forwards minus one (RFC 3261 §16.6 step
/// 3, as a proxy would).
#[test]
fn b2bua_leg_carries_max_forwards_minus_one() {
    let dir = TempDir::new("loops-mf");
    let trunk = socket();
    let port = free_port();
    let (svc, _data) = serve(&dir, "mf", port, addr_of(&trunk).port(), "gw", &["--rtp-ports", "63100-63199"]);
    let caller = socket();
    let service = SocketAddr::from(([127, 0, 0, 1], port));
    let wire = format!(
        "INVITE sip:gw@{service} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-mf;rport\r\nFrom: <sip:a@127.0.0.1>;tag=mf\r\n\
         To: <sip:gw@127.0.0.1>\r\nCall-ID: mf-1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@{me}>\r\nMax-Forwards: 5\r\n\
         Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
        me = addr_of(&caller),
        body = sdp_offer(addr_of(&caller)),
        len = sdp_offer(addr_of(&caller)).len()
    );
    caller.send_to(wire.as_bytes(), service).expect("send INVITE");
    let leg = raw_sip::try_recv_starting(&trunk, "INVITE ", LIMIT).unwrap_or_else(|| panic!("no callee leg\n{}", svc.transcript()));
    assert_eq!(raw_sip::header(&leg, "Max-Forwards"), Some("4"), "{leg}");
}

/// The first datagram on `sock` within `LIMIT` that is a request starting with `start` and
/// whose CSeq ends with `cseq` (skipping retransmissions of earlier messages).
fn request_with(sock: &UdpSocket, start: &str, cseq: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Some(m) = raw_sip::try_recv_starting(sock, "", deadline.saturating_duration_since(Instant::now())) {
            if m.starts_with(start) && raw_sip::header(&m, "CSeq") == Some(cseq) {
                return m;
            }
            seen.push(m);
        }
    }
    panic!("no {start}with CSeq {cseq}; got {seen:#?}");
}

/// The final response on `sock` whose CSeq is `cseq`.
fn response_to(sock: &UdpSocket, cseq: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if let Some(m) = raw_sip::try_recv_starting(sock, "SIP/2.0 ", deadline.saturating_duration_since(Instant::now())) {
            if raw_sip::header(&m, "CSeq") == Some(cseq) && status(&m) >= 200 {
                return m;
            }
        }
    }
    panic!("no final response to {cseq}");
}

/// A response `code` to `req` (its Via, From, To with `tag` added when it has none, Call-ID,
/// CSeq), with our Contact and `body` as SDP when not empty.
fn reply(req: &str, code: u16, tag: &str, contact: SocketAddr, body: &str) -> String {
    let mut out = format!("SIP/2.0 {code} OK\r\n");
    for l in req.lines().take_while(|l| !l.is_empty()) {
        if l.starts_with("Via:") || l.starts_with("From:") || l.starts_with("Call-ID:") || l.starts_with("CSeq:") {
            out.push_str(l);
            out.push_str("\r\n");
        } else if l.starts_with("To:") {
            out.push_str(l);
            if !l.contains(";tag=") {
                out.push_str(&format!(";tag={tag}"));
            }
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!("Contact: <sip:gw@{contact}>\r\n"));
    if body.is_empty() {
        out.push_str("Content-Length: 0\r\n\r\n");
    } else {
        out.push_str(&format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    }
    out
}

/// An in-dialog request of the caller (From tag `mf`, Call-ID `mf-dlg`) to the service.
fn caller_request(method: &str, seq: u32, to: &str, me: SocketAddr, service: SocketAddr, mf: u32, body: &str) -> String {
    let ct = if body.is_empty() { String::new() } else { "Content-Type: application/sdp\r\n".to_owned() };
    format!(
        "{method} sip:gw@{service} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-mf-{seq};rport\r\nFrom: <sip:a@127.0.0.1>;tag=mf\r\n\
         To: {to}\r\nCall-ID: mf-dlg\r\nCSeq: {seq} {method}\r\nContact: <sip:a@{me}>\r\nMax-Forwards: {mf}\r\n\
         {ct}Content-Length: {len}\r\n\r\n{body}",
        len = body.len()
    )
}

/// In-dialog requests relayed by the B2BUA from one leg to the other (INFO, re-INVITE, BYE, in
/// both directions) carry the incoming Max-Forwards minus one, not a fresh 70; a BYE with
/// Max-Forwards 0 gets 483 and ends nothing. The legitimate call works throughout: the re-INVITE
/// is answered, the INFOs get 200 and the caller's BYE ends both legs.
#[test]
fn b2bua_in_dialog_requests_carry_max_forwards_minus_one() {
    let dir = TempDir::new("loops-mf-dialog");
    let trunk = socket();
    let port = free_port();
    let (svc, data) = serve(&dir, "mfd", port, addr_of(&trunk).port(), "gw", &["--rtp-ports", "63200-63299"]);
    let caller = socket();
    let (me, gw) = (addr_of(&caller), addr_of(&trunk));
    let service = SocketAddr::from(([127, 0, 0, 1], port));
    let offer = sdp_offer(me);
    let send = |sock: &UdpSocket, msg: &str| {
        sock.send_to(msg.as_bytes(), service).expect("send");
    };
    send(&caller, &caller_request("INVITE", 1, "<sip:gw@127.0.0.1>", me, service, 5, &offer));
    let leg = request_with(&trunk, "INVITE ", "1 INVITE");
    assert_eq!(raw_sip::header(&leg, "Max-Forwards"), Some("4"), "{leg}");
    send(&trunk, &reply(&leg, 200, "gwtag", gw, &sdp_offer(gw)));
    let ok = response_to(&caller, "1 INVITE");
    assert_eq!(status(&ok), 200, "{ok}\n{}", svc.transcript());
    let to = raw_sip::header(&ok, "To").expect("To").to_owned();
    send(&caller, &caller_request("ACK", 1, &to, me, service, 70, ""));
    request_with(&trunk, "ACK ", "1 ACK");

    // Caller -> callee: INFO with 7 arrives with 6.
    send(&caller, &caller_request("INFO", 2, &to, me, service, 7, ""));
    let info = request_with(&trunk, "INFO ", "2 INFO");
    assert_eq!(raw_sip::header(&info, "Max-Forwards"), Some("6"), "{info}");
    send(&trunk, &reply(&info, 200, "gwtag", gw, ""));
    assert_eq!(status(&response_to(&caller, "2 INFO")), 200);

    // A re-INVITE with 3 arrives with 2, and its answer comes back.
    // (A new SDP version, on hold: a change the B2BUA passes on, not a refresh it answers.)
    let hold = offer.replace("o=- 1 1", "o=- 1 2").replace("sendrecv", "sendonly");
    send(&caller, &caller_request("INVITE", 3, &to, me, service, 3, &hold));
    let reinvite = request_with(&trunk, "INVITE ", "3 INVITE");
    assert_eq!(raw_sip::header(&reinvite, "Max-Forwards"), Some("2"), "{reinvite}");
    send(&trunk, &reply(&reinvite, 200, "gwtag", gw, &sdp_offer(gw)));
    assert_eq!(status(&response_to(&caller, "3 INVITE")), 200);
    send(&caller, &caller_request("ACK", 3, &to, me, service, 70, ""));
    request_with(&trunk, "ACK ", "3 ACK");

    // Callee -> caller: an INFO with 10 in the callee leg reaches the caller with 9.
    let from_leg = raw_sip::header(&leg, "From").expect("From");
    let to_leg = format!("{};tag=gwtag", raw_sip::header(&leg, "To").expect("To"));
    let leg_call_id = raw_sip::header(&leg, "Call-ID").expect("Call-ID");
    let info = format!(
        "INFO sip:{service} SIP/2.0\r\nVia: SIP/2.0/UDP {gw};branch=z9hG4bK-gw-info;rport\r\nFrom: {to_leg}\r\nTo: {from_leg}\r\n\
         Call-ID: {leg_call_id}\r\nCSeq: 1 INFO\r\nMax-Forwards: 10\r\nContent-Length: 0\r\n\r\n"
    );
    send(&trunk, &info);
    let relayed = request_with(&caller, "INFO ", "1 INFO");
    assert_eq!(raw_sip::header(&relayed, "Max-Forwards"), Some("9"), "{relayed}");
    caller.send_to(reply(&relayed, 200, "x", me, "").as_bytes(), service).expect("send 200");
    assert_eq!(status(&response_to(&trunk, "1 INFO")), 200);

    // A BYE with Max-Forwards 0: 483, and the call stays.
    send(&caller, &caller_request("BYE", 4, &to, me, service, 0, ""));
    assert_eq!(status(&response_to(&caller, "4 BYE")), 483);
    assert_eq!(calls(&data).len(), 1, "the call stays after the 483");

    // The real BYE with 9 reaches the callee with 8 and ends the call.
    send(&caller, &caller_request("BYE", 5, &to, me, service, 9, ""));
    let bye = request_with(&trunk, "BYE ", "4 BYE");
    assert_eq!(raw_sip::header(&bye, "Max-Forwards"), Some("8"), "{bye}");
    send(&trunk, &reply(&bye, 200, "gwtag", gw, ""));
    assert_eq!(status(&response_to(&caller, "5 BYE")), 200);
    no_calls_left(&data);
}
