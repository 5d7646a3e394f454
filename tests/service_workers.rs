//! `switchboard serve --workers N` (issue 16 point 1): workers that own calls by Call-ID, share
//! the registrations, and hand over datagrams that arrived on another worker's socket.
//!
//! Real service, real UDP on 127.0.0.1 with ephemeral ports; every wait is on a datagram, an
//! output line or a process exit, each with a deadline. The sipp test skips with a printed reason
//! when sipp is missing (fails with `CI` set).

#[path = "common/procs.rs"]
mod procs;
#[path = "common/raw_sip.rs"]
mod raw_sip;
#[path = "common/sipp.rs"]
mod sipp;

use procs::{Proc, TempDir};
use raw_sip::{addr_of, header, sdp_offer, socket};
use serde_json::Value;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;
use switchboard::cluster;

const LIMIT: Duration = Duration::from_secs(30);
const LOAD_LIMIT: Duration = Duration::from_secs(120);

/// One test at a time: they start several workers each on a two-core machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn switchboard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
}

/// The service with `--workers N` and `extra` flags on a fresh data directory.
fn start(data: &Path, workers: usize, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = switchboard();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(data).args(["--workers", &workers.to_string()]).args(extra);
    let (proc, port) = procs::spawn_service(&mut cmd, LIMIT);
    let line = proc.wait_line(&format!("{workers} workers"), LIMIT).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{line}");
    (proc, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// One command on the control socket; its JSON answer.
fn control(data: &Path, line: &str) -> Value {
    let mut s = std::os::unix::net::UnixStream::connect(data.join("switchboard.sock")).expect("control socket");
    s.set_read_timeout(Some(LIMIT)).expect("timeout");
    s.write_all(format!("{line}\n").as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("answer {out:?}: {e}"))
}

/// A response to `req` (its Via, From, To with `to_tag`, Call-ID, CSeq), with `extra` headers and
/// `body`.
fn respond(req: &str, code: &str, to_tag: &str, extra: &str, body: &str) -> String {
    let mut out = format!("SIP/2.0 {code}\r\n");
    for l in req.lines().take_while(|l| !l.is_empty()) {
        if l.starts_with("Via:") || l.starts_with("From:") || l.starts_with("Call-ID:") || l.starts_with("CSeq:") {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    let to = header(req, "To").expect("To");
    if to.contains(";tag=") {
        out.push_str(&format!("To: {to}\r\n"));
    } else {
        out.push_str(&format!("To: {to};tag={to_tag}\r\n"));
    }
    let ct = if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
    out.push_str(&format!("{extra}{ct}Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

/// The next request starting with `start` on `sock`, and where it came from.
fn recv_request(sock: &UdpSocket, start: &str) -> (String, SocketAddr) {
    let deadline = std::time::Instant::now() + LIMIT;
    let mut buf = vec![0u8; 65536];
    while std::time::Instant::now() < deadline {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with(start) {
                return (text, from);
            }
        }
    }
    panic!("no {start:?} within {LIMIT:?}");
}

/// The final response to the `method` request of `call_id` (skipping retransmitted answers to
/// earlier requests of the call).
fn final_for(sock: &UdpSocket, call_id: &str, method: &str) -> String {
    loop {
        let r = raw_sip::final_response(sock, call_id, LIMIT);
        if header(&r, "CSeq").is_some_and(|c| c.ends_with(method)) {
            return r;
        }
    }
}

/// The URI inside `<...>` of a header value.
fn uri_of(v: &str) -> &str {
    v.split('<').nth(1).and_then(|r| r.split('>').next()).unwrap_or(v)
}

/// An in-dialog request of `method` from the party whose side of the dialog is `ours`
/// (From, with our tag) to `theirs` (To, with theirs), to `target`.
fn in_dialog(method: &str, target: &str, me: SocketAddr, call_id: &str, ours: &str, theirs: &str, cseq: u32) -> String {
    // A branch of token characters, fresh per request (a Call-ID may hold an '@').
    let branch = format!("{:x}", cluster::hash(format!("{method}-{call_id}-{cseq}").as_bytes()));
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{branch};rport\r\nFrom: {ours}\r\nTo: {theirs}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// bob registers once (so one worker writes the binding); alice then makes 16 B2BUA calls to
/// him, each with its own Call-ID, so every one of the 4 workers routes some of them with the
/// binding another wrote. Each callee leg's Call-ID is sticky (it maps where the caller's does);
/// bob answers, alice ACKs, and the BYE comes from alice in even calls and from bob in odd ones.
/// The control socket then lists no live call, and counts the datagrams handed over: alice and
/// bob each send from one address, which the kernel gives to one worker's socket, so most of
/// their calls' datagrams had to move once.
#[test]
fn calls_on_every_worker_find_a_binding_made_on_one() {
    let _one = exclusive();
    let dir = TempDir::new("workers-calls");
    let data = dir.join("data");
    let (_svc, service) = start(&data, 4, &["--no-auth", "--rate-limit", "0", "--mode", "b2bua"]);
    let (alice, bob) = (socket(), socket());
    let (a, b) = (addr_of(&alice), addr_of(&bob));
    raw_sip::register(&bob, service, "bob", &format!("sip:bob@{b}"), "reg-bob", 1);
    assert_eq!(raw_sip::status(&raw_sip::final_response(&bob, "reg-bob", LIMIT)), 200);

    // 16 Call-IDs, 4 owned by each worker (the same map the service uses).
    let mut per_worker = [0; 4];
    let caller_ids: Vec<String> = (0..)
        .map(|j| format!("workers-{j}-{}", a.port()))
        .filter(|id| {
            let w = cluster::worker_of(id, 4);
            per_worker[w] += 1;
            per_worker[w] <= 4
        })
        .take(16)
        .collect();
    let mut owners = HashSet::new();
    for (i, caller_id) in caller_ids.iter().enumerate() {
        let caller_id = caller_id.clone();
        owners.insert(cluster::worker_of(&caller_id, 4));
        raw_sip::invite(&alice, service, "bob", &caller_id, &sdp_offer(a));
        // The callee leg reaches bob with a Call-ID that maps where the caller's does.
        let (invite, from) = recv_request(&bob, "INVITE ");
        let callee_id = header(&invite, "Call-ID").expect("Call-ID").to_owned();
        assert!(callee_id.starts_with(cluster::STICKY_PREFIX), "callee Call-ID {callee_id}");
        assert_eq!(cluster::key(&callee_id), cluster::key(&caller_id), "{callee_id} vs {caller_id}");
        let contact = format!("Contact: <sip:bob@{b}>\r\n");
        bob.send_to(respond(&invite, "200 OK", &format!("b{i}"), &contact, &sdp_offer(b)).as_bytes(), from).expect("send 200");
        // alice gets the 200, then ACKs it.
        let ok = raw_sip::final_response(&alice, &caller_id, LIMIT);
        assert_eq!(raw_sip::status(&ok), 200, "{ok}");
        let (a_from, a_to) = (header(&ok, "From").expect("From").to_owned(), header(&ok, "To").expect("To").to_owned());
        let target = uri_of(header(&ok, "Contact").expect("Contact")).to_owned();
        let ack = in_dialog("ACK", &target, a, &caller_id, &a_from, &a_to, 1);
        alice.send_to(ack.as_bytes(), service).expect("send ACK");
        let (ack_b, _) = recv_request(&bob, "ACK ");
        assert_eq!(header(&ack_b, "Call-ID"), Some(callee_id.as_str()));
        // The BYE, from either side; the other side answers it.
        let (b_from, b_to) =
            (header(&invite, "To").map(|t| format!("{t};tag=b{i}")).expect("To"), header(&invite, "From").expect("From").to_owned());
        if i % 2 == 0 {
            alice.send_to(in_dialog("BYE", &target, a, &caller_id, &a_from, &a_to, 2).as_bytes(), service).expect("BYE");
            let (bye, from) = recv_request(&bob, "BYE ");
            assert_eq!(header(&bye, "Call-ID"), Some(callee_id.as_str()));
            bob.send_to(respond(&bye, "200 OK", "", "", "").as_bytes(), from).expect("200 to BYE");
            assert_eq!(raw_sip::status(&final_for(&alice, &caller_id, "BYE")), 200);
        } else {
            let b_target = uri_of(header(&invite, "Contact").expect("Contact")).to_owned();
            bob.send_to(in_dialog("BYE", &b_target, b, &callee_id, &b_from, &b_to, 1).as_bytes(), service).expect("BYE");
            let (bye, from) = recv_request(&alice, "BYE ");
            assert_eq!(header(&bye, "Call-ID"), Some(caller_id.as_str()));
            alice.send_to(respond(&bye, "200 OK", "", "", "").as_bytes(), from).expect("200 to BYE");
            assert_eq!(raw_sip::status(&final_for(&bob, &callee_id, "BYE")), 200);
        }
    }
    assert_eq!(owners.len(), 4, "the Call-IDs reach every worker");
    assert_eq!(control(&data, "calls"), Value::Array(Vec::new()), "every call ended on its worker");
    let w = control(&data, "workers");
    eprintln!("workers: {w}");
    assert_eq!(w["workers"], 4);
    assert!(w["handed_off"].as_u64().unwrap_or(0) > 0, "{w}");
    assert_eq!(w["handoff_drops"], 0, "{w}");
    let handled: Vec<u64> = w["handled"].as_array().expect("handled").iter().map(|h| h.as_u64().unwrap_or(0)).collect();
    assert!(handled.iter().all(|&h| h > 0), "every worker handled datagrams: {w}");
}

/// `--max-bindings 8` with 4 workers: the registrations are sharded by AOR, each shard with a
/// budget of 2, so 30 users registering (each REGISTER with its own Call-ID, so on every worker)
/// get exactly as many 200s as the shards' budgets allow: never more than 8 in all.
#[test]
fn the_binding_cap_holds_across_workers() {
    let _one = exclusive();
    let dir = TempDir::new("workers-caps");
    let data = dir.join("data");
    let (_svc, service) = start(&data, 4, &["--no-auth", "--rate-limit", "0", "--max-bindings", "8"]);
    let phone = socket();
    let users: Vec<String> = (0..30).map(|i| format!("u{i}")).collect();
    let mut ok = 0;
    for (i, u) in users.iter().enumerate() {
        let call_id = format!("cap-{i}");
        raw_sip::register(&phone, service, u, &format!("sip:{u}@{}", addr_of(&phone)), &call_id, 1);
        match raw_sip::status(&raw_sip::final_response(&phone, &call_id, LIMIT)) {
            200 => ok += 1,
            503 => {}
            other => panic!("REGISTER of {u}: {other}"),
        }
    }
    // Expected from the shard of each AOR (the same hash the service uses), capped at 2 each.
    let mut per_shard = [0usize; 4];
    for u in &users {
        per_shard[(cluster::hash(format!("sip:{u}@127.0.0.1").as_bytes()) % 4) as usize] += 1;
    }
    let expected: usize = per_shard.iter().map(|&n| n.min(2)).sum();
    assert!(ok <= 8, "{ok} bindings over the cap of 8");
    assert_eq!(ok, expected, "shards {per_shard:?}");
    // A REGISTER is handled where it lands (hand16): none moved.
    let w = control(&data, "workers");
    assert_eq!(w["handed_off"].as_u64(), Some(0), "{w}");
}

/// sipp load through `--workers 2`: bob registers with digest auth, alice makes 200
/// authenticated B2BUA calls to him at 50/s; all complete on both sides.
#[test]
fn sipp_200_calls_through_two_workers() {
    if !sipp::available() {
        return;
    }
    let _one = exclusive();
    let dir = TempDir::new("workers-sipp");
    let data = dir.join("data");
    for (u, p) in [("alice", "alice-secret"), ("bob", "bob-secret")] {
        let ok = switchboard().args(["users", "--data"]).arg(&data).args(["add", u, "--password", p]).output().expect("users add");
        assert!(ok.status.success());
    }
    let (svc, service) = start(&data, 2, &["--rate-limit", "0"]);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let bob_port = sipp::free_port();
    let mut reg = sipp::Sipp::spawn(
        "register-bob",
        dir.path(),
        bob_port,
        &s(&["-sf", &sipp::scenario("register_auth.xml"), "-s", "bob", "-au", "bob", "-ap", "bob-secret", "-m", "1", "-l", "1"])
            .into_iter()
            .chain(s(&["-timeout", "30s", "-timeout_error", &service.to_string()]))
            .collect::<Vec<_>>(),
    );
    let out = reg.finish(LIMIT);
    assert!(out.exited_ok() && (out.successful, out.failed) == (1, 0), "REGISTER: {out:?}\n{}", out.error_head(40));
    let calls = "200";
    let mut uas = sipp::Sipp::spawn(
        "uas-bob",
        dir.path(),
        bob_port,
        &s(&["-sf", &sipp::scenario("uas_registered.xml"), "-s", "bob", "-m", calls, &service.to_string()]),
    );
    if let Err(e) = uas.wait_bound(LIMIT) {
        panic!("{e}");
    }
    let mut uac_args = s(&["-sf", &sipp::scenario("uac_auth.xml"), "-s", "bob", "-au", "alice", "-ap", "alice-secret"]);
    uac_args.extend(s(&["-auth_uri", &format!("bob@{service}"), "-d", "200", "-m", calls, "-r", "50", "-l", "200"]));
    uac_args.extend(s(&["-recv_timeout", "32s", "-timeout", "110s", "-timeout_error", &service.to_string()]));
    let mut uac = sipp::Sipp::spawn("uac-alice", dir.path(), sipp::free_port(), &uac_args);
    let out = uac.finish(LOAD_LIMIT);
    let uas_out = uas.finish(LIMIT);
    let w = control(&data, "workers");
    eprintln!("200 calls through 2 workers: caller {out:?}, callee {uas_out:?}; {w}");
    assert_eq!((out.successful, out.failed), (200, 0), "caller: {out:?}\n{}\nservice:\n{}", out.error_head(40), svc.transcript());
    assert_eq!((uas_out.successful, uas_out.failed), (200, 0), "callee: {uas_out:?}\n{}", uas_out.error_head(40));
    assert!(w["handed_off"].as_u64().unwrap_or(0) > 0, "{w}");
    assert_eq!(control(&data, "calls"), Value::Array(Vec::new()));
}

/// `--rate-limit 10` (burst 20) with 2 workers: each worker has a budget of 5/s, burst 10, and one
/// source's requests spread over both by Call-ID, so a burst of 400 OPTIONS (each its own Call-ID)
/// gets at most the global 20 plus 10 per second of the run answered, as with one worker; two
/// full limits would have let about 40 through.
#[test]
fn the_rate_limit_holds_across_workers() {
    let _one = exclusive();
    let dir = TempDir::new("workers-rate");
    let data = dir.join("data");
    let (svc, service) = start(&data, 2, &["--no-auth", "--rate-limit", "10"]);
    let sock = socket();
    let me = addr_of(&sock);
    let t0 = std::time::Instant::now();
    for i in 0..400 {
        let msg = format!(
            "OPTIONS sip:echo@{service} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-rl{i};rport\r\n\
             From: <sip:flood@{ip}>;tag=rl{i}\r\nTo: <sip:echo@{ip}>\r\nCall-ID: rl-{i}\r\nCSeq: 1 OPTIONS\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            ip = me.ip()
        );
        sock.send_to(msg.as_bytes(), service).expect("send OPTIONS");
    }
    let (answered, last) = answers_until_quiet(&sock, b"SIP/2.0 ");
    let bound = 20.0 + 10.0 * last.duration_since(t0).as_secs_f64() + 1.0;
    eprintln!("{answered} of 400 answered within {:?} (bound {bound:.1})", last.duration_since(t0));
    assert!(answered >= 10, "some are answered: {answered}\n{}", svc.transcript());
    assert!(f64::from(answered) <= bound, "{answered} answered, over the global limit's {bound:.1}");
    svc.wait_line("rate limit: src=127.0.0.1 dropped=", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let w = control(&data, "workers");
    assert!(w["handed_off"].as_u64().unwrap_or(0) > 0, "{w}");
}

/// A REGISTER is handled by the worker whose socket it lands on (issue 16, hand16): 20 REGISTERs
/// from one address, their Call-IDs mapping to both workers, are answered 200 with nothing handed
/// over, all by one worker. Each is sent again (the same bytes: a retransmission) and gets its 200
/// again: the transaction on that worker absorbed it. Applied a second time, the same Call-ID and
/// CSeq would get 500 (RFC 3261 §10.3 step 7).
#[test]
fn a_register_is_handled_where_it_lands_and_its_retransmission_absorbed() {
    let _one = exclusive();
    let dir = TempDir::new("workers-register");
    let data = dir.join("data");
    let (_svc, service) = start(&data, 2, &["--no-auth", "--rate-limit", "0"]);
    let phone = socket();
    let mut owners = HashSet::new();
    for i in 0..20 {
        let (user, call_id) = (format!("u{i}"), format!("land-{i}"));
        owners.insert(cluster::worker_of(&call_id, 2));
        let contact = format!("sip:{user}@{}", addr_of(&phone));
        raw_sip::register(&phone, service, &user, &contact, &call_id, 1);
        let first = raw_sip::final_response(&phone, &call_id, LIMIT);
        assert_eq!(raw_sip::status(&first), 200, "{first}");
        raw_sip::register(&phone, service, &user, &contact, &call_id, 1);
        let again = raw_sip::final_response(&phone, &call_id, LIMIT);
        assert_eq!(raw_sip::status(&again), 200, "the retransmission's answer: {again}");
        assert_eq!(header(&again, "Contact"), header(&first, "Contact"));
    }
    assert_eq!(owners.len(), 2, "Call-IDs of both workers");
    let w = control(&data, "workers");
    assert_eq!(w["handed_off"].as_u64(), Some(0), "{w}");
    let mut handled: Vec<u64> = w["handled"].as_array().expect("handled").iter().filter_map(Value::as_u64).collect();
    handled.sort_unstable();
    assert_eq!(handled, [0, 40], "every datagram on the worker it landed on: {w}");
}

/// The per-source rate limit is one budget for all the workers (hand16): 100 REGISTERs from one
/// address, all handled by the one worker their socket lands on, get the whole burst of 20
/// (`--rate-limit 10`), not a worker's share of it (10), and no more than the global limit.
#[test]
fn one_sources_registers_on_one_worker_get_the_whole_rate_limit() {
    let _one = exclusive();
    let dir = TempDir::new("workers-rate-register");
    let data = dir.join("data");
    let (svc, service) = start(&data, 2, &["--no-auth", "--rate-limit", "10"]);
    let phone = socket();
    let t0 = std::time::Instant::now();
    for i in 0..100 {
        raw_sip::register(&phone, service, &format!("u{i}"), &format!("sip:u{i}@{}", addr_of(&phone)), &format!("rr-{i}"), 1);
    }
    let (answered, last) = answers_until_quiet(&phone, b"SIP/2.0 200");
    let bound = 20.0 + 10.0 * last.duration_since(t0).as_secs_f64() + 1.0;
    eprintln!("{answered} of 100 answered within {:?} (bound {bound:.1})", last.duration_since(t0));
    assert!(answered >= 20, "the whole burst of 20, not one worker's 10: {answered}\n{}", svc.transcript());
    assert!(f64::from(answered) <= bound, "{answered} answered, over the global limit's {bound:.1}");
    svc.wait_line("rate limit: src=127.0.0.1 dropped=", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let w = control(&data, "workers");
    assert_eq!(w["handed_off"].as_u64(), Some(0), "{w}");
}

/// The failed-authentication back-off is one table for all the workers (hand16): 10 REGISTERs
/// with a wrong password from one address, all handled by the worker they land on, block
/// the source; an INVITE from it whose Call-ID maps to the other worker then gets 403 unchecked
/// there, where before it one got the 407 challenge of a source in good standing.
#[test]
fn a_source_blocked_on_one_worker_is_blocked_on_the_other() {
    let _one = exclusive();
    let dir = TempDir::new("workers-guard");
    let data = dir.join("data");
    let ok =
        switchboard().args(["users", "--data"]).arg(&data).args(["add", "bob", "--password", "bob-secret"]).output().expect("users add");
    assert!(ok.status.success());
    let (svc, service) = start(&data, 2, &["--rate-limit", "0"]);
    let phone = socket();
    let me = addr_of(&phone);
    let invite = |call_id: &str| {
        let msg = format!(
            "INVITE sip:bob@{ip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id};rport\r\n\
             From: <sip:mallory@{ip}>;tag=g-{call_id}\r\nTo: <sip:bob@{ip}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:mallory@{me}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            ip = me.ip()
        );
        phone.send_to(msg.as_bytes(), service).expect("send INVITE");
        raw_sip::status(&final_for(&phone, call_id, "INVITE"))
    };
    // Where this address lands: the worker that handled a REGISTER.
    raw_sip::register(&phone, service, "bob", &format!("sip:bob@{me}"), "guard-probe", 1);
    let challenge = raw_sip::final_response(&phone, "guard-probe", LIMIT);
    assert_eq!(raw_sip::status(&challenge), 401);
    let www = header(&challenge, "WWW-Authenticate").expect("challenge");
    let param = |name: &str| www.split(&format!("{name}=\"")).nth(1).and_then(|r| r.split('"').next()).expect("param").to_owned();
    let (realm, nonce) = (param("realm"), param("nonce"));
    let handled = control(&data, "workers")["handled"].clone();
    let landing = handled.as_array().and_then(|h| h.iter().position(|n| n.as_u64() == Some(1))).expect("one worker handled it");
    let other: Vec<String> = (0..200).map(|i| format!("guard-{i}")).filter(|c| cluster::worker_of(c, 2) != landing).take(2).collect();
    assert_eq!(invite(&other[0]), 407, "a source in good standing is challenged");
    for i in 0..10 {
        let call_id = format!("guard-bad-{i}");
        let msg = format!(
            "REGISTER sip:{ip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id};rport\r\n\
             From: <sip:bob@{ip}>;tag=b-{i}\r\nTo: <sip:bob@{ip}>\r\nCall-ID: {call_id}\r\nCSeq: 1 REGISTER\r\n\
             Contact: <sip:bob@{me}>\r\nAuthorization: Digest username=\"bob\", realm=\"{realm}\", nonce=\"{nonce}\", \
             uri=\"sip:{ip}\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5, qop=auth, nc={nc:08x}, cnonce=\"c\"\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            ip = me.ip(),
            nc = i + 1
        );
        phone.send_to(msg.as_bytes(), service).expect("send REGISTER");
        assert_eq!(raw_sip::status(&raw_sip::final_response(&phone, &call_id, LIMIT)), 403, "a wrong password");
    }
    svc.wait_line("auth blocked: src=127.0.0.1", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    // (Read before the second INVITE: the counter is bumped after the hand-off, which the owner
    // may answer first.)
    let w = control(&data, "workers");
    assert_eq!(w["handed_off"].as_u64(), Some(1), "the first INVITE went to the other worker: {w}");
    assert_eq!(invite(&other[1]), 403, "blocked on the other worker too");
}

/// Counts the datagrams starting with `prefix` that reach `sock` until a second passes without
/// one (every answer that will come comes within a second of the previous one); returns the
/// count and when the last one came.
fn answers_until_quiet(sock: &UdpSocket, prefix: &[u8]) -> (u32, std::time::Instant) {
    let (mut answered, mut last) = (0u32, std::time::Instant::now());
    let mut buf = vec![0u8; 65536];
    while last.elapsed() < Duration::from_secs(1) {
        if let Ok(n) = sock.recv(&mut buf) {
            if buf[..n].starts_with(prefix) {
                answered += 1;
                last = std::time::Instant::now();
            }
        }
    }
    (answered, last)
}
