//! Issue 14 point 5: caps on the state the network can create, each attacked through a real
//! `switchboard serve` on loopback, with the legitimate use checked in the same test:
//! - never-ACKed INVITEs to the public `echo` user from six addresses (127.0.0.2-7) take every
//!   relay port when the caps are lifted (a call between phones then gets 503); with
//!   `unauth_port_share` (25%) and `max_echo_calls_per_source` (10) only a quarter of the range is
//!   theirs, refusals carry Retry-After, and alice then calls bob through the B2BUA relay with
//!   audio both ways while a second flood is refused;
//! - an echo caller's slots come back once its never-ACKed calls end (no state left behind);
//! - the eleventh contact of an AOR gets 503 "Too many registered contacts" with Retry-After, the
//!   first contact still refreshes and still rings, and every REGISTER 200 fits 1,300 bytes;
//! - a burst of OPTIONS beyond `max_transactions` is answered 503 statelessly, and a REGISTER
//!   succeeds once the table drains.
//!
//! Ephemeral SIP ports; fixed RTP ranges of their own; every wait bounded, no timing asserted.

#[path = "common/heard.rs"]
mod heard;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/raw_sip.rs"]
mod raw_sip;

use procs::{Proc, TempDir};
use raw_sip::{addr_of, final_response, header, invite, register, sdp_offer, socket, socket_on, status, try_recv_starting};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const SB: &str = env!("CARGO_BIN_EXE_switchboard");
const PHONE: &str = env!("CARGO_BIN_EXE_softphone");
const LIMIT: Duration = Duration::from_secs(30);

/// `switchboard serve --listen 127.0.0.1:0 ARGS...`, and its SIP address.
fn serve(args: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
    let (proc, port) = procs::spawn_service(&mut cmd, LIMIT);
    (proc, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn add_users(dir: &Path, names: &[&str]) {
    for user in names {
        let pw = format!("{user}-secret");
        let ok = Command::new(SB).args(["users", "--data"]).arg(dir).args(["add", user, "--password", &pw]).stdout(Stdio::null()).status();
        assert!(ok.expect("users add").success());
        std::fs::write(dir.join(format!("{user}.pw")), format!("{pw}\n")).expect("password file");
    }
}

/// Never-ACKed INVITEs to echo, `per_host` from each of 127.0.0.`hosts`, one after the other; each
/// final answer is awaited. Returns how many were answered 200 and the `(host, i, code)` of the
/// refused, each checked for Retry-After.
fn echo_flood(service: SocketAddr, hosts: std::ops::RangeInclusive<u8>, per_host: usize) -> (usize, Vec<(u8, usize, u16)>) {
    let mut answered = 0;
    let mut refused = Vec::new();
    for host in hosts {
        let attacker = socket_on(&format!("127.0.0.{host}"));
        let media = addr_of(&attacker);
        for i in 0..per_host {
            let call_id = format!("flood-{host}-{i}");
            invite(&attacker, service, "echo", &call_id, &sdp_offer(media));
            let answer = final_response(&attacker, &call_id, LIMIT);
            match status(&answer) {
                200 => answered += 1,
                code @ (486 | 503) => {
                    assert!(header(&answer, "Retry-After").is_some_and(|v| v.parse::<u32>().is_ok()), "no Retry-After:\n{answer}");
                    refused.push((host, i, code));
                }
                other => panic!("unexpected {other} to {call_id}:\n{answer}"),
            }
        }
    }
    (answered, refused)
}

/// The relay range has 50 pairs: 12 (25%) for echo calls. 66 never-ACKed INVITEs from six
/// addresses (11 each) would hold all 50 (see the next test); instead 12 are answered, the 11th
/// of the first address gets 486, the rest 503, all with Retry-After. While those 12 calls still
/// hold their ports (their 2xx is retransmitted for 64*T1 = 32 s), alice calls bob, a second
/// flood during the call is refused, and both hear each other.
#[test]
fn echo_flood_leaves_relay_ports_for_alice_and_bob() {
    let dir = TempDir::new("caps-echo-flood");
    let data = dir.join("data");
    add_users(&data, &["alice", "bob"]);
    let (svc, service) = serve(&["--data", data.to_str().unwrap(), "--rtp-ports", "61000-61099"]);

    let (answered, codes) = echo_flood(service, 2..=7, 11);
    assert_eq!(answered, 12, "a quarter of the 50 relay pairs; refusals {codes:?}\n{}", svc.transcript());
    assert_eq!(codes.first(), Some(&(2, 10, 486)), "the 11th call from one address is refused by the per-source cap");
    assert!(codes.iter().skip(1).all(|&(_, _, c)| c == 503), "then the port share: {codes:?}");

    // The real call, while the flood's calls still hold their ports.
    let bob_wav = dir.join("bob.wav");
    let mut bob = Command::new(PHONE);
    bob.args(["--user", "bob", "--register", &format!("sip:{service}"), "--password-file"])
        .arg(data.join("bob.pw"))
        .args(["--summary", "json", "--tone", "1000", "--record", bob_wav.to_str().unwrap(), "--rtp-ports", "61200-61299"])
        .args(["answer", "--calls", "1"]);
    let mut bob = Proc::spawn("bob", &mut bob);
    bob.wait_line("registered aor=", LIMIT).expect("bob registered");
    let alice_wav = dir.join("alice.wav");
    let mut alice = Command::new(PHONE);
    alice
        .args(["--user", "alice", "--register", &format!("sip:{service}"), "--password-file"])
        .arg(data.join("alice.pw"))
        .args(["--summary", "json", "--tone", "440", "--record", alice_wav.to_str().unwrap(), "--rtp-ports", "61300-61399"])
        .args(["dial", "sip:bob@127.0.0.1", "--duration", "3"]);
    let mut alice = Proc::spawn("alice", &mut alice);
    alice.wait_line("call answered", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let (during, _) = echo_flood(service, 8..=8, 11);
    assert_eq!(during, 0, "the share is still full during the call");
    let status = alice.expect_exit(LIMIT);
    assert!(status.success(), "alice's call failed:\n{}", alice.transcript());
    bob.expect_exit(LIMIT);
    let summary = |p: &Proc| -> serde_json::Value {
        let line = p.lines(procs::Stream::Stdout).into_iter().find(|l| l.starts_with('{')).expect("summary");
        serde_json::from_str(&line).expect("summary JSON")
    };
    let (a, b) = (summary(&alice), summary(&bob));
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    heard::assert_heard("alice", &alice_wav, 1000.0, n(&a["rtp_received"]), n(&b["rtp_sent"]));
    heard::assert_heard("bob", &bob_wav, 440.0, n(&b["rtp_received"]), n(&a["rtp_sent"]));
}

/// The attack itself, with the share and the per-source cap lifted: the same flood takes every
/// relay pair (50 answered), and a call between two registered phones then gets 503 for want of
/// ports. This is what the defaults above prevent.
#[test]
fn without_the_caps_the_echo_flood_takes_every_port() {
    let args =
        ["--data", "none", "--no-auth", "--rtp-ports", "61500-61599", "--unauth-port-share", "100", "--max-echo-calls-per-source", "0"];
    let (svc, service) = serve(&args);
    let (answered, refused) = echo_flood(service, 2..=7, 11);
    assert_eq!(answered, 50, "{refused:?}\n{}", svc.transcript());
    let bob = socket();
    register(&bob, service, "bob", &format!("sip:bob@{}", addr_of(&bob)), "reg-bob", 1);
    assert_eq!(status(&final_response(&bob, "reg-bob", LIMIT)), 200);
    let alice = socket();
    invite(&alice, service, "bob", "alice-bob", &sdp_offer(addr_of(&alice)));
    assert_eq!(status(&final_response(&alice, "alice-bob", LIMIT)), 503, "no relay port left for a real call");
}

/// With `--t1-ms 20` a never-ACKed echo call ends after 64*T1 = 1.28 s (the service sends BYE):
/// its slot of `max_echo_calls_per_source` (2 here) comes back, so a capped caller is not locked
/// out for good.
#[test]
fn echo_slots_come_back_when_unacked_calls_end() {
    let (svc, service) =
        serve(&["--data", "none", "--no-auth", "--t1-ms", "20", "--max-echo-calls-per-source", "2", "--rtp-ports", "61400-61499"]);
    let caller = socket();
    let media = addr_of(&caller);
    for (i, want) in [200, 200, 486].into_iter().enumerate() {
        let call_id = format!("slot-{i}");
        invite(&caller, service, "echo", &call_id, &sdp_offer(media));
        let answer = final_response(&caller, &call_id, LIMIT);
        assert_eq!(status(&answer), want, "{answer}");
    }
    // Both calls end with the service's BYE: answer them, as a phone would.
    for _ in 0..2 {
        let bye = try_recv_starting(&caller, "BYE ", LIMIT).unwrap_or_else(|| panic!("no BYE\n{}", svc.transcript()));
        let ok = raw_ok(&bye);
        caller.send_to(ok.as_bytes(), service).expect("send 200 to BYE");
    }
    let call_id = "slot-after";
    invite(&caller, service, "echo", call_id, &sdp_offer(media));
    assert_eq!(status(&final_response(&caller, call_id, LIMIT)), 200, "the slots came back");
}

/// A 200 to a request, echoing its Via, From, To, Call-ID and CSeq.
fn raw_ok(request: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for l in request.lines() {
        if ["Via:", "From:", "To:", "Call-ID:", "CSeq:"].iter().any(|p| l.starts_with(p)) {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// bob registers ten contacts (ten sockets); the eleventh gets 503 "Too many registered contacts"
/// with Retry-After and is not stored. The first contact refreshes (200 listing all ten) and an
/// INVITE for bob still rings it. Every 200 fits RFC 3261 §18.1.1's 1,300 bytes, also for an AOR
/// whose contacts are long (carol's: fewer than ten fit, the one that does not is refused).
#[test]
fn eleventh_contact_is_refused_and_the_first_still_rings() {
    let (svc, service) = serve(&["--data", "none", "--no-auth", "--mode", "proxy"]);
    let phones: Vec<_> = (0..11).map(|_| socket()).collect();
    let contact = |i: usize| format!("sip:bob@{}", addr_of(&phones[i]));
    for (i, phone) in phones.iter().enumerate() {
        let call_id = format!("reg-bob-{i}");
        register(phone, service, "bob", &contact(i), &call_id, 1);
        let answer = final_response(phone, &call_id, LIMIT);
        assert!(answer.len() <= 1300, "{} bytes:\n{answer}", answer.len());
        if i < 10 {
            assert_eq!(status(&answer), 200, "{answer}");
        } else {
            assert!(answer.starts_with("SIP/2.0 503 Too many registered contacts\r\n"), "{answer}");
            assert!(header(&answer, "Retry-After").is_some_and(|v| v.parse::<u32>().is_ok_and(|s| s > 0)), "{answer}");
        }
    }
    register(&phones[0], service, "bob", &contact(0), "reg-bob-0", 2);
    let refresh = final_response(&phones[0], "reg-bob-0", LIMIT);
    assert_eq!(status(&refresh), 200, "{refresh}");
    assert_eq!(refresh.lines().filter(|l| l.starts_with("Contact:")).count(), 10, "{refresh}");
    assert!(!refresh.contains(&contact(10)), "the refused contact is not stored:\n{refresh}");

    let caller = socket();
    invite(&caller, service, "bob", "call-bob", "");
    let got = try_recv_starting(&phones[0], "INVITE ", LIMIT);
    assert!(got.is_some(), "the first contact rings\n{}", svc.transcript());
    assert!(try_recv_starting(&phones[10], "INVITE ", Duration::from_millis(500)).is_none(), "the refused one does not");

    let carol = socket();
    let long = "p".repeat(180);
    let (mut ok, mut refused) = (0, 0);
    for i in 0..10 {
        let call_id = format!("reg-carol-{i}");
        register(&carol, service, "carol", &format!("sip:carol-{i}@{};{long}=1", addr_of(&carol)), &call_id, 1);
        let answer = final_response(&carol, &call_id, LIMIT);
        assert!(answer.len() <= 1300, "{} bytes:\n{answer}", answer.len());
        match status(&answer) {
            200 => ok += 1,
            503 => refused += 1,
            _ => panic!("{answer}"),
        }
    }
    assert!(ok >= 3 && refused > 0, "{ok} long contacts accepted, {refused} refused");
}

/// `--max-transactions 20` with T1 = 20 ms: 40 OPTIONS in a burst (each keeps its transaction for
/// Timer J, 64*T1) fill the table; the rest get 503 with Retry-After and leave no state. Once the
/// table drains, a REGISTER goes through.
#[test]
fn full_transaction_table_answers_503_statelessly() {
    let (svc, service) = serve(&["--data", "none", "--no-auth", "--t1-ms", "20", "--max-transactions", "20"]);
    let flood = socket();
    let me = addr_of(&flood);
    for i in 0..40 {
        let msg = format!(
            "OPTIONS sip:{service} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-opt-{i};rport\r\nFrom: <sip:m@{ip}>;tag=o{i}\r\n\
             To: <sip:{service}>\r\nCall-ID: opt-{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            ip = me.ip()
        );
        flood.send_to(msg.as_bytes(), service).expect("send OPTIONS");
    }
    let (mut ok, mut full) = (0, 0);
    for _ in 0..40 {
        let answer = try_recv_starting(&flood, "SIP/2.0 ", LIMIT).unwrap_or_else(|| panic!("missing answers\n{}", svc.transcript()));
        match status(&answer) {
            200 => ok += 1,
            503 => {
                assert_eq!(header(&answer, "Retry-After"), Some("5"), "{answer}");
                full += 1;
            }
            _ => panic!("{answer}"),
        }
    }
    assert!(ok <= 20 && full >= 20, "{ok} answered, {full} refused");
    // The table drains within 64*T1; a phone that retries registers.
    let phone = socket();
    let contact = format!("sip:dave@{}", addr_of(&phone));
    let mut last = String::new();
    for cseq in 1..=50 {
        register(&phone, service, "dave", &contact, "reg-dave", cseq);
        last = final_response(&phone, "reg-dave", LIMIT);
        if status(&last) == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status(&last), 200, "{last}\n{}", svc.transcript());
}

/// A cap that makes no sense stops `serve` before it listens, with one line naming the key.
#[test]
fn bad_cap_values_are_one_line_startup_errors() {
    for (args, needle) in [(["--max-contacts", "0"], "max_contacts"), (["--unauth-port-share", "150"], "unauth_port_share")] {
        let out = Command::new(SB).args(["serve", "--data", "none", "--listen", "127.0.0.1:0"]).args(args).output().expect("serve");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && out.stdout.is_empty(), "{args:?} started:\n{err}");
        assert!(err.lines().count() == 1 && err.contains(needle), "{args:?}: {err}");
    }
}

/// A store written under a higher `max_contacts` (bob has six contacts, registered a minute
/// apart), then the service started with `--max-contacts 3`: at start bob keeps his three newest
/// contacts, the service says in one INFO line that three were dropped, and the store forgets
/// them. An INVITE for bob rings the newest contact and not the oldest; bob's newest contact
/// refreshes (200 listing three), and alice's single binding is untouched.
#[test]
fn bindings_over_max_contacts_are_trimmed_at_start_keeping_the_newest() {
    use switchboard::store::{BindingRecord, SqliteStore, Store};
    let dir = TempDir::new("caps-trim");
    let data = dir.join("data");
    let phones: Vec<_> = (0..6).map(|_| socket()).collect();
    let alice = socket();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    {
        let mut store = SqliteStore::open(&data).expect("store");
        let binding = |user: &str, phone: &std::net::UdpSocket, age: u64| BindingRecord {
            aor: format!("sip:{user}@127.0.0.1"),
            contact: format!("sip:{user}@{}", addr_of(phone)),
            expires_at: now + 3600,
            q_millis: 1000,
            call_id: format!("reg-{user}-{}", addr_of(phone).port()),
            cseq: 1,
            source: addr_of(phone),
            updated_at: now - age,
        };
        // Written newest first, so the store's order is not the age order.
        for (i, phone) in phones.iter().enumerate().rev() {
            store.put_binding(&binding("bob", phone, 60 * (6 - i as u64))).expect("put binding");
        }
        store.put_binding(&binding("alice", &alice, 30)).expect("put binding");
    }
    let (svc, service) = serve(&["--data", data.to_str().expect("path"), "--no-auth", "--mode", "proxy", "--max-contacts", "3"]);
    let line = svc.wait_line("bindings over max_contacts dropped at start", LIMIT).unwrap_or_else(|e| panic!("{e}\n{}", svc.transcript()));
    assert!(line.contains("dropped=3") && line.contains("max_contacts=3"), "{line}");

    // The store forgot the three oldest (the writer commits off the loop: poll).
    let listed = |who: &str| -> String {
        let out = Command::new(SB).args(["registrations", "--data"]).arg(&data).output().expect("registrations");
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(who)).collect::<Vec<_>>().join("\n")
    };
    let deadline = std::time::Instant::now() + LIMIT;
    while (0..3).any(|i| listed(&addr_of(&phones[i]).to_string()).contains("sip:bob@")) {
        assert!(std::time::Instant::now() < deadline, "old contacts still stored:\n{}", listed("sip:"));
        std::thread::sleep(Duration::from_millis(50));
    }
    for phone in &phones[3..] {
        assert!(listed(&addr_of(phone).to_string()).contains("sip:bob@"), "a newest contact went:\n{}", listed("sip:"));
    }
    assert!(listed("sip:alice@").contains(&addr_of(&alice).to_string()), "alice's binding went:\n{}", listed("sip:"));

    // The newest contact rings, the oldest does not; the newest refreshes, listing three.
    let caller = socket();
    invite(&caller, service, "bob", "call-trimmed-bob", "");
    assert!(try_recv_starting(&phones[5], "INVITE ", LIMIT).is_some(), "the newest contact rings\n{}", svc.transcript());
    assert!(try_recv_starting(&phones[0], "INVITE ", Duration::from_millis(500)).is_none(), "the oldest (dropped) does not");
    let newest = format!("sip:bob@{}", addr_of(&phones[5]));
    register(&phones[5], service, "bob", &newest, &format!("reg-bob-{}", addr_of(&phones[5]).port()), 2);
    let refresh = final_response(&phones[5], &format!("reg-bob-{}", addr_of(&phones[5]).port()), LIMIT);
    assert_eq!(status(&refresh), 200, "{refresh}");
    assert_eq!(refresh.lines().filter(|l| l.starts_with("Contact:")).count(), 3, "{refresh}");
}
