//! Issue 16 point 3: the relay forwards in its reader threads. The service runs as a B2BUA with
//! `--relay-threads 4` (four lanes: a port's lane is `(port / 2) % 4`); a bare caller sets up
//! many calls to a bare callee, all up at once, and every call carries RTP both ways through the
//! relay. The test checks that
//! - each call's two relay ports (the caller leg's, shown in the 200's SDP, and the callee leg's,
//!   the source of what reaches the callee) are in one lane, so one thread forwards both ways;
//! - the calls spread over several lanes;
//! - the service's exit line counts, per reader thread, the datagrams it forwarded itself: every
//!   lane that has calls forwarded at least both directions of each of its calls, a lane without
//!   calls nothing (nothing went through the driver's hop instead).
//!
//! Ephemeral SIP ports; a free RTP range; every wait bounded, no timing asserted.

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
const CALLS: usize = 16;
const LANES: usize = 4;

fn lane(port: u16) -> usize {
    usize::from(port / 2) % LANES
}

/// The headers a response echoes from its request, with a To tag added when it has none.
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

/// The `m=audio` address of the SDP in `msg`.
fn media_addr(msg: &str) -> Option<SocketAddr> {
    let ip = msg.lines().find_map(|l| l.strip_prefix("c=IN IP4 "))?.trim();
    let port = msg.lines().find_map(|l| l.strip_prefix("m=audio "))?.split(' ').next()?;
    format!("{ip}:{port}").parse().ok()
}

/// Bob: answers every INVITE with 200 and an SDP for `media`, every BYE with 200.
fn callee(sip: UdpSocket, media: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let me = addr_of(&sip);
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sip.recv_from(&mut buf) else { continue };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let answer = if msg.starts_with("INVITE ") {
                response(&msg, "200 OK", me, &sdp_offer(media))
            } else if msg.starts_with("BYE ") {
                response(&msg, "200 OK", me, "")
            } else {
                continue;
            };
            let _ = sip.send_to(answer.as_bytes(), from);
        }
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

/// The final response to INVITE `call_id`.
fn invite_answer(alice: &UdpSocket, call_id: &str, log: impl Fn() -> String) -> String {
    let deadline = Instant::now() + LIMIT;
    let needle = format!("Call-ID: {call_id}\r\n");
    while let Some(msg) = try_recv_starting(alice, "", deadline.saturating_duration_since(Instant::now())) {
        if msg.starts_with("SIP/2.0 ") && !msg.starts_with("SIP/2.0 1") && msg.contains(&needle) && msg.contains("INVITE\r\n") {
            return msg;
        }
    }
    panic!("no final response to {call_id} within {LIMIT:?}\n{}", log());
}

/// An RTP packet of call `i` (its number in the sequence's low octet and in the SSRC).
fn rtp(i: usize, seq: u8) -> Vec<u8> {
    [0x80, 0x00, seq, i as u8, 0, 0, 0, 0, 0, 0, 0x12, i as u8].into_iter().chain([0xffu8; 160]).collect()
}

/// Sends `packet` from `from` to `to` until `at` receives a packet of call `i`; returns its source.
fn through(from: &UdpSocket, to: SocketAddr, packet: &[u8], at: &UdpSocket, i: usize, what: &str, log: impl Fn() -> String) -> SocketAddr {
    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + LIMIT;
    loop {
        assert!(Instant::now() < deadline, "call {i}: no RTP {what} through the relay at {to}\n{}", log());
        from.send_to(packet, to).expect("send RTP");
        // Drain what is queued: packets of calls already done may still arrive.
        while let Ok((n, src)) = at.recv_from(&mut buf) {
            if n == packet.len() && buf[3] == i as u8 && buf[11] == i as u8 {
                return src;
            }
        }
    }
}

#[test]
fn calls_on_four_relay_threads_carry_media_both_ways_each_forwarded_by_its_own_lane() {
    calls_through_the_relay(LANES);
}

/// `--relay-threads 0`: the same calls relayed on the service's thread (the reader threads
/// forward nothing themselves), as before lanes.
#[test]
fn with_no_relay_lanes_the_service_thread_relays_every_call() {
    calls_through_the_relay(0);
}

/// `SWITCHBOARD_RELAY_ANY_THREAD=1` (an experiment, BENCHMARKS.md "Relay tail latency"): every
/// reader thread of a worker waits on all of its sockets and forwards a datagram under its lane's
/// lock, so which thread forwards a call is not fixed; the calls still carry media both ways and
/// the threads' counts add up to at least both directions of every call.
#[test]
fn with_any_thread_forwarding_every_call_carries_media_both_ways() {
    calls_through_the_relay_with(LANES, true);
}

/// The calls of the module doc with `--relay-threads threads`.
fn calls_through_the_relay(threads: usize) {
    calls_through_the_relay_with(threads, false);
}

/// [`calls_through_the_relay`], with any reader thread forwarding (`any_thread`) or not.
fn calls_through_the_relay_with(threads: usize, any_thread: bool) {
    let base = procs::free_udp_span(40000..=44999, 400);
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--mode", "b2bua", "--data", "none", "--no-auth", "--rtp-timeout", "0"]);
    cmd.args(["--relay-threads", &threads.to_string(), "--rtp-ports", &format!("{base}-{}", base + 399)]);
    cmd.env("RUST_LOG", "info");
    if any_thread {
        cmd.env("SWITCHBOARD_RELAY_ANY_THREAD", "1");
    }
    let (mut svc, port) = procs::spawn_service(&mut cmd, LIMIT);
    let service = SocketAddr::from(([127, 0, 0, 1], port));

    let bob_sip = socket();
    let bob_media = socket();
    register(&bob_sip, service, "bob", &format!("sip:bob@{}", addr_of(&bob_sip)), "reg-bob", 1);
    assert_eq!(status(&try_recv_starting(&bob_sip, "SIP/2.0 2", LIMIT).expect("REGISTER answered")), 200);
    let stop = Arc::new(AtomicBool::new(false));
    let bob = callee(bob_sip, addr_of(&bob_media), stop.clone());

    // Every call set up first, all up at once.
    let alice = socket();
    let mut calls = Vec::new();
    for i in 0..CALLS {
        let media = socket();
        let call_id = format!("lanes-{i}");
        invite(&alice, service, "bob", &call_id, &sdp_offer(addr_of(&media)));
        let ok = invite_answer(&alice, &call_id, || svc.transcript());
        assert_eq!(status(&ok), 200, "call {i}:\n{ok}\n{}", svc.transcript());
        in_dialog(&alice, service, &ok, "ACK", 1);
        let relay = media_addr(&ok).unwrap_or_else(|| panic!("no SDP in the 200:\n{ok}"));
        calls.push((media, relay, ok));
    }

    // Media both ways on every call: alice → relay → bob, then bob answers from its SDP address
    // to the port it heard from (the callee leg's relay port) → relay → alice.
    let mut per_lane = [0usize; LANES];
    for (i, (media, relay, _)) in calls.iter().enumerate() {
        let callee_port = through(media, *relay, &rtp(i, 1), &bob_media, i, "to bob", || svc.transcript());
        if threads > 0 {
            assert_eq!(lane(callee_port.port()), lane(relay.port()), "call {i}: legs at {relay} and {callee_port} in different lanes");
        }
        let back = through(&bob_media, callee_port, &rtp(i, 2), media, i, "to alice", || svc.transcript());
        assert_eq!(back, *relay, "call {i}: alice hears from the port her SDP names");
        per_lane[lane(relay.port())] += 1;
    }
    if threads > 0 {
        assert!(per_lane.iter().filter(|&&n| n > 0).count() >= 2, "the calls spread over the lanes: {per_lane:?}");
    }

    for (_, _, ok) in &calls {
        in_dialog(&alice, service, ok, "BYE", 2);
    }
    for _ in 0..CALLS {
        assert!(try_recv_starting(&alice, "SIP/2.0 200", LIMIT).is_some(), "every BYE answered\n{}", svc.transcript());
    }
    stop.store(true, Ordering::Relaxed);
    bob.join().expect("callee thread");

    // The reader threads' own counts, from the exit line.
    svc.terminate(LIMIT).unwrap_or_else(|| panic!("the service did not stop on SIGTERM\n{}", svc.transcript()));
    let log = svc.transcript();
    let line = log.lines().find(|l| l.contains("media readers at exit")).unwrap_or_else(|| panic!("no exit line:\n{log}"));
    let list = line.split("forwarded=[").nth(1).and_then(|r| r.split(']').next()).unwrap_or_else(|| panic!("no counts: {line}"));
    let forwarded: Vec<u64> = list.split(',').map(|n| n.trim().parse().expect("a count")).collect();
    println!("{line}\nlanes of the calls: {per_lane:?}");
    if threads == 0 {
        assert!(forwarded.iter().all(|&n| n == 0), "no reader thread forwards: {line}");
        return;
    }
    if any_thread {
        assert!(forwarded.iter().sum::<u64>() >= 2 * CALLS as u64, "the threads forwarded both ways of every call: {line}");
        assert!(line.contains("dropped=0"), "{line}");
        return;
    }
    assert_eq!(forwarded.len(), LANES, "{line}");
    for (l, (&n, &calls)) in forwarded.iter().zip(per_lane.iter()).enumerate() {
        if calls == 0 {
            assert_eq!(n, 0, "lane {l} has no call and forwarded nothing: {line}");
        } else {
            assert!(n >= 2 * calls as u64, "lane {l} forwarded both ways of its {calls} calls itself: {line}");
        }
    }
    assert!(line.contains("dropped=0"), "{line}");
}
