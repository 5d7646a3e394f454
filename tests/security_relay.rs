//! Issue 14 points 1 and 2 (no open relay, authenticated identity) against `switchboard serve`
//! with digest auth on, in both `--mode b2bua` and `--mode proxy`, on plain UDP sockets:
//!
//! - a stranger's forged in-dialog INVITE (To tag, `Route: <sip:SERVICE;lr>`, Request-URI a fake
//!   PSTN gateway on 127.0.0.3 that would answer 200) gets 403, and 481 without the Route; a forged
//!   Record-Route token gets 403; 200 `Route: <us>` headers get one 403 and nothing else;
//! - a CANCEL for no transaction of ours gets 481;
//! - an unauthenticated ACK along a forged route and a stray 200 whose second Via names the gateway
//!   are dropped: the gateway receives nothing at all in the whole test;
//! - an unauthenticated OPTIONS to registered bob is challenged (407) and never reaches bob;
//! - authenticated alice sending `From: bob` gets 403;
//! - in the same test the legitimate call works: alice and bob register (401, then 200), alice
//!   calls bob (407, then the INVITE reaches bob with `P-Asserted-Identity` naming alice), bob
//!   answers 200, alice ACKs and hangs up with BYE, and bob gets both. In proxy mode the ACK and
//!   BYE travel along the service's token-carrying Record-Route, and alice's in-dialog request
//!   whose next Route names the service again is a loop (482), not re-sent to the service.
//!
//! A third test shows a trusted peer (`--trusted 127.0.0.3`) calling bob without credentials.
//! Every wait is bounded; the "nothing arrived" checks come after the service answered the
//! attacks and the legitimate call ended, so anything it had relayed would be there already.

#[path = "common/procs.rs"]
mod procs;

use procs::{Proc, TempDir};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard::auth::DigestClient;
use switchboard::message::Message;

/// Start-up and single-message bound: generous for a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(30);

fn switchboard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
}

fn add_user(dir: &TempDir, user: &str, pw: &str) {
    let ok = switchboard()
        .args(["users", "--data"])
        .arg(dir.path())
        .args(["add", user, "--password", pw])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("users add");
    assert!(ok.success(), "users add {user}");
}

/// `switchboard serve` with users alice and bob, digest auth on, in `mode`.
fn service(dir: &TempDir, mode: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    add_user(dir, "alice", "alice-pw");
    add_user(dir, "bob", "bob-pw");
    let rtp = procs::free_udp_span(42000..=43998, 8);
    let ports = format!("{rtp}-{}", rtp + 7);
    let mut cmd = switchboard();
    cmd.args(["serve", "--mode", mode, "--listen", "127.0.0.1:0", "--rtp-ports", &ports, "--data"]).arg(dir.path()).args(extra);
    let (proc, port) = procs::spawn_service(&mut cmd, LIMIT);
    (proc, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A UDP socket on `ip`, with a short read timeout for polling.
fn socket(ip: &str) -> UdpSocket {
    let sock = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
    sock.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
    sock
}

/// The values of every header `name` (long form, case-insensitive), in order.
fn headers(msg: &str, name: &str) -> Vec<String> {
    msg.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

fn header(msg: &str, name: &str) -> String {
    headers(msg, name).into_iter().next().unwrap_or_else(|| panic!("no {name} in:\n{msg}"))
}

/// The URI inside `<...>` of a name-addr value.
fn uri_of(v: &str) -> String {
    v.split('<').nth(1).and_then(|r| r.split('>').next()).unwrap_or(v).to_owned()
}

fn tag_of(v: &str) -> Option<String> {
    v.split(";tag=").nth(1).map(|t| t.split(';').next().unwrap_or(t).trim().to_owned())
}

const SDP: &str =
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// One party on a raw socket: builds requests, answers requests, and authenticates.
struct Party {
    user: &'static str,
    sock: UdpSocket,
    digest: DigestClient,
    service: SocketAddr,
    branch: u32,
}

impl Party {
    fn new(user: &'static str, pw: &str, ip: &str, service: SocketAddr) -> Party {
        Party { user, sock: socket(ip), digest: DigestClient::new(user, pw), service, branch: 0 }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    fn contact(&self) -> String {
        format!("sip:{}@{}", self.user, self.addr())
    }

    fn via(&mut self) -> String {
        self.branch += 1;
        format!("SIP/2.0/UDP {};branch=z9hG4bK-{}-{};rport", self.addr(), self.user, self.branch)
    }

    fn send(&self, msg: &str, to: SocketAddr) {
        self.sock.send_to(msg.as_bytes(), to).expect("send");
    }

    /// Waits for a datagram whose first line starts with `start` (skipping 100 Trying,
    /// retransmissions and anything else), bounded by [`LIMIT`].
    fn recv(&self, start: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        let mut buf = vec![0u8; 65536];
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if text.starts_with(start) {
                    return text;
                }
                seen.push(text.lines().next().unwrap_or_default().to_owned());
            }
        }
        panic!("{}: nothing starting with {start:?} within {LIMIT:?}; saw {seen:?}", self.user);
    }

    /// The next final response (skipping 1xx).
    fn final_response(&self) -> String {
        loop {
            let r = self.recv("SIP/2.0 ");
            if !r.starts_with("SIP/2.0 1") {
                return r;
            }
        }
    }

    /// Sends `build(via, cseq, credentials)` and, when challenged, answers the challenge once
    /// (ACKing a challenged INVITE); returns the final response.
    fn request_with_auth(&mut self, method: &str, uri: &str, cseq: u32, build: &dyn Fn(&str, u32, &str) -> String) -> String {
        let via = self.via();
        let first = build(&via, cseq, "");
        self.send(&first, self.service);
        let answer = self.final_response();
        if !(answer.starts_with("SIP/2.0 401") || answer.starts_with("SIP/2.0 407")) {
            return answer;
        }
        if method == "INVITE" {
            self.ack_failure(&first, &answer);
        }
        let req = Message::parse(bytes::Bytes::from(first)).expect("our request parses");
        let resp = Message::parse(bytes::Bytes::from(answer)).expect("challenge parses");
        self.digest.handle_challenge(&req, &resp).expect("a challenge we can answer");
        let (name, value) = self.digest.authorization(method, uri, "0a4f113b").expect("credentials");
        let creds = format!("{}: {value}\r\n", name.as_str());
        let via = self.via();
        self.send(&build(&via, cseq + 1, &creds), self.service);
        self.final_response()
    }

    /// The ACK for a 300-699 answer to `invite` (same branch, §17.1.1.3).
    fn ack_failure(&self, invite: &str, answer: &str) {
        let ack = format!(
            "ACK {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
            invite.split(' ').nth(1).unwrap_or_default(),
            header(invite, "Via"),
            header(invite, "From"),
            header(answer, "To"),
            header(invite, "Call-ID"),
            header(invite, "CSeq").split(' ').next().unwrap_or("1"),
        );
        self.send(&ack, self.service);
    }

    fn register(&mut self) {
        let (user, contact, sp) = (self.user, self.contact(), self.service);
        let uri = format!("sip:{sp}");
        let build = |via: &str, cseq: u32, creds: &str| {
            format!(
                "REGISTER sip:{sp} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=r-{user}\r\n\
                 To: <sip:{user}@127.0.0.1>\r\nCall-ID: reg-{user}@security\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\n\
                 Expires: 600\r\n{creds}Content-Length: 0\r\n\r\n"
            )
        };
        let r = self.request_with_auth("REGISTER", &uri, 1, &build);
        assert!(r.starts_with("SIP/2.0 200"), "{user} not registered:\n{r}");
    }

    /// Answers `req` with `code`, adding a To tag, our Contact and `body` (an SDP) if any; copies
    /// Via, Record-Route, From, To, Call-ID and CSeq (§8.2.6.2, §12.1.1).
    fn reply(&self, req: &str, code: u16, body: Option<&str>) -> String {
        let mut r = format!("SIP/2.0 {code} {}\r\n", if code == 200 { "OK" } else { "Whatever" });
        for v in headers(req, "Via") {
            r.push_str(&format!("Via: {v}\r\n"));
        }
        for v in headers(req, "Record-Route") {
            r.push_str(&format!("Record-Route: {v}\r\n"));
        }
        let to = header(req, "To");
        let to = if tag_of(&to).is_some() { to } else { format!("{to};tag=t-{}", self.user) };
        r.push_str(&format!(
            "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <{}>\r\n",
            header(req, "From"),
            header(req, "Call-ID"),
            header(req, "CSeq"),
            self.contact()
        ));
        match body {
            Some(b) => r.push_str(&format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}", b.len())),
            None => r.push_str("Content-Length: 0\r\n\r\n"),
        }
        r
    }
}

/// Fails if anything at all arrived on `sock` (after a last short wait).
fn assert_silent(sock: &UdpSocket, who: &str) {
    let mut buf = vec![0u8; 65536];
    sock.set_read_timeout(Some(Duration::from_millis(300))).expect("read timeout");
    if let Ok((n, from)) = sock.recv_from(&mut buf) {
        panic!("{who} received a datagram from {from}:\n{}", String::from_utf8_lossy(&buf[..n]));
    }
}

/// A stranger's in-dialog request: To tag, `routes` as Route headers, Request-URI `target`.
fn forged(method: &str, target: &str, stranger: SocketAddr, routes: &[String], n: u32) -> String {
    let mut m = format!("{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {stranger};branch=z9hG4bK-forged-{n};rport\r\nMax-Forwards: 70\r\n");
    for r in routes {
        m.push_str(&format!("Route: <{r}>\r\n"));
    }
    m.push_str(&format!(
        "From: <sip:stranger@127.0.0.9>;tag=s{n}\r\nTo: <sip:gw@127.0.0.3>;tag=g{n}\r\nCall-ID: forged-{n}@security\r\nCSeq: 1 {method}\r\n\
         Contact: <sip:stranger@{stranger}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    ));
    m
}

/// Every attack of the module doc, then the legitimate call, in `mode`.
fn relay_attacks_fail_and_the_call_still_works(mode: &str) {
    let dir = TempDir::new(&format!("security-relay-{mode}"));
    let (svc, sp) = service(&dir, mode, &[]);
    let gateway = socket("127.0.0.3");
    let gw = gateway.local_addr().expect("gateway addr");
    let gw_uri = format!("sip:+15551234@{gw}");
    let us = format!("sip:{sp};lr");
    let stranger = socket("127.0.0.1");
    let st = stranger.local_addr().expect("stranger addr");
    let ask = |msg: String| -> String {
        stranger.send_to(msg.as_bytes(), sp).expect("send");
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            if let Ok((n, _)) = stranger.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if !text.starts_with("SIP/2.0 1") {
                    return text;
                }
            }
        }
        panic!("no answer to the stranger within {LIMIT:?}\n{}", svc.transcript());
    };
    let status = |r: &str| r.split(' ').nth(1).unwrap_or_default().to_owned();

    // 1. The forged in-dialog INVITE towards the gateway: through our "Record-Route" without a
    //    token (403), with a made-up token (403), and without any Route (481).
    assert_eq!(status(&ask(forged("INVITE", &gw_uri, st, std::slice::from_ref(&us), 1))), "403");
    let fake_token = format!("sip:{sp};lr;sbt=00112233445566778899aabbccddeeff");
    assert_eq!(status(&ask(forged("INVITE", &gw_uri, st, std::slice::from_ref(&fake_token), 2))), "403");
    assert_eq!(status(&ask(forged("INVITE", &gw_uri, st, &[], 3))), "481");
    // 2. The Route self-loop: 200 `Route: <us>` get one 403, nothing else comes back.
    let many: Vec<String> = std::iter::repeat_n(us.clone(), 200).collect();
    let loop_answer = ask(forged("INVITE", &format!("sip:x@{sp}"), st, &many, 4));
    assert_eq!(status(&loop_answer), "403", "{loop_answer}");
    // A CANCEL matches only a live server transaction of ours (§9.2): 481, never forwarded.
    let cancel = forged("CANCEL", &gw_uri, st, std::slice::from_ref(&us), 7).replace(";tag=g7", "");
    assert_eq!(status(&ask(cancel)), "481");
    // 3. An unauthenticated ACK along the forged route, and a stray 200 whose next Via is the
    //    gateway's: neither is answered nor relayed (checked at the end on the gateway).
    stranger.send_to(forged("ACK", &gw_uri, st, std::slice::from_ref(&us), 5).as_bytes(), sp).expect("send");
    stranger.send_to(forged("ACK", &gw_uri, st, &[fake_token], 6).as_bytes(), sp).expect("send");
    let stray = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {sp};branch=z9hG4bK-not-ours\r\nVia: SIP/2.0/UDP {gw};branch=z9hG4bK-gw\r\n\
         From: <sip:a@127.0.0.3>;tag=1\r\nTo: <sip:b@127.0.0.3>;tag=2\r\nCall-ID: stray@security\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    stranger.send_to(stray.as_bytes(), sp).expect("send");

    // The legitimate parties.
    let mut alice = Party::new("alice", "alice-pw", "127.0.0.1", sp);
    let mut bob = Party::new("bob", "bob-pw", "127.0.0.1", sp);
    alice.register();
    bob.register();

    // 4. An unauthenticated OPTIONS to registered bob is challenged and never reaches him.
    let options = format!(
        "OPTIONS sip:bob@{sp} SIP/2.0\r\nVia: SIP/2.0/UDP {st};branch=z9hG4bK-probe;rport\r\nMax-Forwards: 70\r\n\
         From: <sip:stranger@127.0.0.9>;tag=p1\r\nTo: <sip:bob@{sp}>\r\nCall-ID: probe@security\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(status(&ask(options)), "407");
    // ... while OPTIONS to the service itself is answered without credentials.
    let keepalive = format!(
        "OPTIONS sip:{sp} SIP/2.0\r\nVia: SIP/2.0/UDP {st};branch=z9hG4bK-keepalive;rport\r\nMax-Forwards: 70\r\n\
         From: <sip:stranger@127.0.0.9>;tag=p2\r\nTo: <sip:{sp}>\r\nCall-ID: keepalive@security\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let r = ask(keepalive);
    assert_eq!(status(&r), "200", "{r}");

    // 5. The From spoof: alice authenticates but claims to be bob.
    let spoof = |from: &'static str, call_id: &'static str, contact: String| {
        move |via: &str, cseq: u32, creds: &str| {
            format!(
                "INVITE sip:bob@{sp} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:{from}@127.0.0.1>;tag=f-{call_id}\r\n\
                 To: <sip:bob@{sp}>\r\nCall-ID: {call_id}@security\r\nCSeq: {cseq} INVITE\r\nContact: <{contact}>\r\n{creds}\
                 Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
                SDP.len()
            )
        }
    };
    let bob_uri = format!("sip:bob@{sp}");
    let r = alice.request_with_auth("INVITE", &bob_uri, 1, &spoof("bob", "spoof", alice.contact()));
    assert!(r.starts_with("SIP/2.0 403"), "From spoof not refused:\n{r}");
    alice.ack_failure(&spoof("bob", "spoof", alice.contact())(&header(&r, "Via"), 2, ""), &r);

    // 6. The legitimate call: 407, then the INVITE reaches bob with alice's asserted identity.
    let call = spoof("alice", "legit", alice.contact());
    let via = alice.via();
    alice.send(&call(&via, 1, ""), sp);
    let challenge = alice.final_response();
    assert!(challenge.starts_with("SIP/2.0 407"), "{challenge}");
    alice.ack_failure(&call(&via, 1, ""), &challenge);
    let req = Message::parse(bytes::Bytes::from(call(&via, 1, ""))).expect("parses");
    let resp = Message::parse(bytes::Bytes::from(challenge)).expect("parses");
    alice.digest.handle_challenge(&req, &resp).expect("challenge");
    let (name, value) = alice.digest.authorization("INVITE", &bob_uri, "77aa").expect("credentials");
    let via = alice.via();
    let invite = call(&via, 2, &format!("{}: {value}\r\n", name.as_str()));
    alice.send(&invite, sp);
    let at_bob = bob.recv("INVITE ");
    let pai = headers(&at_bob, "P-Asserted-Identity");
    assert!(pai.len() == 1 && pai[0].contains("sip:alice@"), "callee leg asserts alice: {pai:?}\n{at_bob}");
    let record_routes = headers(&at_bob, "Record-Route");
    if mode == "proxy" {
        assert!(record_routes.iter().any(|r| r.contains(";sbt=")), "our Record-Route carries a token: {record_routes:?}");
    }
    bob.send(&bob.reply(&at_bob, 180, None), sp);
    bob.send(&bob.reply(&at_bob, 200, Some(SDP)), sp);
    let ok = alice.final_response();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let remote_target = uri_of(&header(&ok, "Contact"));
    let mut route_set: Vec<String> = headers(&ok, "Record-Route").iter().map(|r| uri_of(r)).collect();
    route_set.reverse();
    let to = header(&ok, "To");
    let in_dialog = |alice: &mut Party, method: &str, cseq: u32, routes: &[String]| {
        let via = alice.via();
        let mut m = format!("{method} {remote_target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n");
        for r in routes {
            m.push_str(&format!("Route: <{r}>\r\n"));
        }
        m.push_str(&format!(
            "From: <sip:alice@127.0.0.1>;tag=f-legit\r\nTo: {to}\r\nCall-ID: legit@security\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        ));
        alice.send(&m, sp);
    };
    in_dialog(&mut alice, "ACK", 2, &route_set);
    if mode == "proxy" {
        // The ACK travelled along our Record-Route with its token.
        bob.recv("ACK ");
        // 7. A valid token does not make the service its own next hop: 482, never re-sent to us.
        let mut looping = route_set.clone();
        looping.extend(std::iter::repeat_n(us.clone(), 50));
        in_dialog(&mut alice, "INFO", 3, &looping);
        let r = alice.final_response();
        assert!(r.starts_with("SIP/2.0 482"), "self-loop with a valid token:\n{r}");
    }
    in_dialog(&mut alice, "BYE", 4, &route_set);
    if mode == "b2bua" {
        // The B2BUA ACKed bob's 200 itself on its own leg.
        bob.recv("ACK ");
    }
    let bye = bob.recv("BYE ");
    bob.send(&bob.reply(&bye, 200, None), sp);
    let bye_ok = alice.final_response();
    assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");

    // Nothing the stranger sent reached the gateway, and bob saw no OPTIONS.
    assert_silent(&gateway, "the fake gateway");
    let mut buf = vec![0u8; 65536];
    while let Ok((n, _)) = bob.sock.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(!text.starts_with("OPTIONS"), "the stranger's OPTIONS reached bob:\n{text}");
    }
    drop(svc);
}

#[test]
fn b2bua_is_no_open_relay_and_calls_still_work() {
    relay_attacks_fail_and_the_call_still_works("b2bua");
}

#[test]
fn proxy_is_no_open_relay_and_record_routed_calls_still_work() {
    relay_attacks_fail_and_the_call_still_works("proxy");
}

/// A configured trusted peer (a gateway that does not do digest) calls bob without credentials;
/// the same INVITE from an untrusted address is challenged.
#[test]
fn a_trusted_peer_calls_without_credentials() {
    let dir = TempDir::new("security-trusted");
    let (_svc, sp) = service(&dir, "proxy", &["--trusted", "127.0.0.3/32"]);
    let mut bob = Party::new("bob", "bob-pw", "127.0.0.1", sp);
    bob.register();
    let invite = |from: SocketAddr, n: u32| {
        format!(
            "INVITE sip:bob@{sp} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-gw-{n};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:+15551234@{from}>;tag=gw{n}\r\nTo: <sip:bob@{sp}>\r\nCall-ID: gw-{n}@security\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:gw@{from}>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let untrusted = Party::new("gw", "", "127.0.0.1", sp);
    untrusted.send(&invite(untrusted.addr(), 1), sp);
    assert!(untrusted.final_response().starts_with("SIP/2.0 407"));
    let gateway = Party::new("gw", "", "127.0.0.3", sp);
    gateway.send(&invite(gateway.addr(), 2), sp);
    let at_bob = bob.recv("INVITE ");
    assert!(at_bob.contains("gw-2@security"), "{at_bob}");
    bob.send(&bob.reply(&at_bob, 486, None), sp);
    assert!(gateway.final_response().starts_with("SIP/2.0 486"));
}
