//! Issue 16 point 3: a relay port is closed before it can be handed out again. The service runs
//! as a B2BUA with four relay port pairs (`--rtp-ports` of eight ports: two calls' worth; with
//! two pairs the driver's four spare pairs already refuse the second call, 503, whatever the
//! sockets do: the spares taken by the first call are replaced only after it ends), and a
//! bare caller makes many calls in a row to a bare callee, each hung up with its BYE sent in the
//! same breath as the next INVITE, so the service frees a call's ports and binds the next call's
//! (the same ports) in one turn. Every call must be answered, carry RTP through the relay and end
//! only by the caller's BYE: a socket still open when its port was re-bound ended calls with
//! `relay-port-taken` (a BYE from the service) or refused them.
//!
//! Ephemeral SIP ports; a fixed RTP range of its own; every wait bounded, no timing asserted.

#[path = "common/procs.rs"]
mod procs;
#[path = "common/raw_sip.rs"]
mod raw_sip;

use raw_sip::{addr_of, header, invite, register, sdp_offer, socket, status, try_recv_starting};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SB: &str = env!("CARGO_BIN_EXE_switchboard");
const LIMIT: Duration = Duration::from_secs(30);
const CALLS: usize = 40;

/// The headers a response echoes from its request, with `to_tag` added to To when it has none.
fn response(request: &str, code: &str, contact: SocketAddr, body: &str) -> String {
    let mut out = format!("SIP/2.0 {code}\r\n");
    for line in request.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        match name.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => out.push_str(&format!("{line}\r\n")),
            "to" | "t" if !line.contains("tag=") => out.push_str(&format!("{line};tag=bob\r\n")),
            "to" | "t" => out.push_str(&format!("{line}\r\n")),
            _ => {}
        }
    }
    out.push_str(&format!("Contact: <sip:bob@{contact}>\r\n"));
    if !body.is_empty() {
        out.push_str("Content-Type: application/sdp\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

/// The `m=audio` address of an SDP body in `msg`.
fn media_addr(msg: &str) -> Option<SocketAddr> {
    let ip = msg.lines().find_map(|l| l.strip_prefix("c=IN IP4 "))?.trim();
    let port = msg.lines().find_map(|l| l.strip_prefix("m=audio "))?.split(' ').next()?;
    format!("{ip}:{port}").parse().ok()
}

/// Bob: answers every INVITE with 200 and an SDP for `media`, every BYE with 200; records
/// the INVITEs' Call-IDs.
fn callee(sip: UdpSocket, media: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let me = addr_of(&sip);
        let mut buf = vec![0u8; 65536];
        let mut invites = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sip.recv_from(&mut buf) else { continue };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let answer = if msg.starts_with("INVITE ") {
                let id = header(&msg, "Call-ID").unwrap_or("").to_string();
                if !invites.contains(&id) {
                    invites.push(id);
                }
                response(&msg, "200 OK", me, &sdp_offer(media))
            } else if msg.starts_with("BYE ") {
                response(&msg, "200 OK", me, "")
            } else {
                continue;
            };
            let _ = sip.send_to(answer.as_bytes(), from);
        }
        invites
    })
}

/// An in-dialog request from alice (ACK or BYE) for the call answered by `ok`.
fn in_dialog(alice: &UdpSocket, service: SocketAddr, ok: &str, method: &str, cseq: u32) {
    let me = addr_of(alice);
    let target = header(ok, "Contact").unwrap_or("").trim_start_matches('<').split('>').next().unwrap_or("").to_string();
    let call_id = header(ok, "Call-ID").unwrap_or("");
    let from = header(ok, "From").unwrap_or("");
    let to = header(ok, "To").unwrap_or("");
    let msg = format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{method}-{call_id};rport\r\nFrom: {from}\r\nTo: {to}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    alice.send_to(msg.as_bytes(), service).expect("send in-dialog request");
}

/// Waits for the final response to INVITE `call_id`; fails on a BYE from the service (a call
/// ended by the relay).
fn invite_answer(alice: &UdpSocket, call_id: &str, log: impl Fn() -> String) -> String {
    let deadline = Instant::now() + LIMIT;
    let needle = format!("Call-ID: {call_id}\r\n");
    while let Some(msg) = try_recv_starting(alice, "", deadline.saturating_duration_since(Instant::now())) {
        assert!(!msg.starts_with("BYE "), "the service ended a call:\n{msg}\n{}", log());
        if msg.starts_with("SIP/2.0 ") && !msg.starts_with("SIP/2.0 1") && msg.contains(&needle) && msg.contains("INVITE\r\n") {
            return msg;
        }
    }
    panic!("no final response to {call_id} within {LIMIT:?}\n{}", log());
}

#[test]
fn back_to_back_calls_on_two_relay_port_pairs_never_find_a_port_taken() {
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--mode", "b2bua", "--data", "none", "--no-auth", "--rtp-timeout", "0"]);
    cmd.args(["--rtp-ports", "63100-63107"]);
    let (svc, port) = procs::spawn_service(&mut cmd, LIMIT);
    let service = SocketAddr::from(([127, 0, 0, 1], port));
    let log = || svc.transcript();

    let bob_sip = socket();
    let bob_media = socket();
    register(&bob_sip, service, "bob", &format!("sip:bob@{}", addr_of(&bob_sip)), "reg-bob", 1);
    assert_eq!(status(&try_recv_starting(&bob_sip, "SIP/2.0 2", LIMIT).expect("REGISTER answered")), 200);
    let stop = Arc::new(AtomicBool::new(false));
    let bob = callee(bob_sip, addr_of(&bob_media), stop.clone());

    let alice = socket();
    let alice_media = socket();
    let mut buf = vec![0u8; 2048];
    let mut previous: Option<String> = None;
    for i in 0..CALLS {
        let call_id = format!("reuse-{i}");
        // The last call's BYE and this INVITE leave together: one service turn may free a pair
        // and bind it again.
        if let Some(ok) = previous.take() {
            in_dialog(&alice, service, &ok, "BYE", 2);
        }
        invite(&alice, service, "bob", &call_id, &sdp_offer(addr_of(&alice_media)));
        let ok = invite_answer(&alice, &call_id, log);
        assert_eq!(status(&ok), 200, "call {i}:\n{ok}\n{}", log());
        in_dialog(&alice, service, &ok, "ACK", 1);
        // RTP through the relay: alice's packets reach bob's media socket (resent until one does).
        let relay = media_addr(&ok).unwrap_or_else(|| panic!("no SDP in the 200:\n{ok}"));
        let rtp: Vec<u8> = [0x80, 0x00, 0x00, i as u8, 0, 0, 0, 0, 0, 0, 0x12, 0x34].into_iter().chain([0xffu8; 160]).collect();
        let deadline = Instant::now() + LIMIT;
        loop {
            assert!(Instant::now() < deadline, "call {i}: no RTP through the relay at {relay}\n{}", log());
            alice_media.send_to(&rtp, relay).expect("send RTP");
            if matches!(bob_media.recv_from(&mut buf), Ok((n, _)) if n == rtp.len() && buf[3] == i as u8) {
                break;
            }
        }
        previous = Some(ok);
    }
    if let Some(ok) = previous {
        in_dialog(&alice, service, &ok, "BYE", 2);
    }
    // No call ended by the service: nothing but responses reached alice after the last answer.
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Some(msg) = try_recv_starting(&alice, "", deadline.saturating_duration_since(Instant::now())) {
        assert!(!msg.starts_with("BYE "), "the service ended a call:\n{msg}\n{}", log());
    }
    stop.store(true, Ordering::Relaxed);
    let invites = bob.join().expect("callee thread");
    assert_eq!(invites.len(), CALLS, "every call reached bob once: {invites:?}");
    assert!(!log().contains("relay-port-taken"), "{}", log());
}
