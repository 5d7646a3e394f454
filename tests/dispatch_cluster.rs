//! `switchboard dispatch` in front of real `switchboard serve` instances (issue 17 point 3): calls
//! spread by the Call-ID hash, in-dialog requests back to the owner, OPTIONS probing with failure
//! and recovery thresholds, the route-token rule, Path on REGISTER, per-source rate limits at the
//! dispatcher and (through it) at the instances, and the command line.
//!
//! Real UDP sockets on loopback, ports picked free; every wait is on a line, a datagram or a
//! process exit with a deadline.

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/phone.rs"]
mod phone;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/raw_sip.rs"]
mod raw_sip;

use cluster::{bye, dispatcher, echo_call, instance, member, LIMIT, SB};
use raw_sip::{addr_of, final_response, header, recv_starting, socket, socket_on, status, try_recv_starting};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use switchboard::cluster::{key, rendezvous};

/// The instance that owns `call_id` among `live` by the shared hash.
fn owner(call_id: &str, live: &[SocketAddr]) -> SocketAddr {
    let names: Vec<String> = live.iter().map(|a| member(*a)).collect();
    live[rendezvous(key(call_id), &names).expect("a live member")]
}

#[test]
fn calls_spread_by_the_hash_and_their_bye_reaches_the_owner() {
    let (_i1, a) = instance(0, &[]);
    let (_i2, b) = instance(0, &[]);
    let (_i3, c) = instance(0, &[]);
    let all = [a, b, c];
    let (_d, disp) = dispatcher(&all, &["--rate-limit", "0"]);
    let sock = socket();
    let mut per: HashMap<SocketAddr, usize> = HashMap::new();
    for i in 0..24 {
        // One call at a time: no load to bound, every call lands on its hash.
        let id = format!("spread-{i}.test");
        let call = echo_call(&sock, disp, &id);
        assert_eq!(call.answered_by, owner(&id, &all), "call {id} landed off its hash");
        assert!(call.route.contains(&format!("sb-backend={}", call.answered_by)), "{}", call.route);
        *per.entry(call.answered_by).or_default() += 1;
        // The echo answers 481 to a BYE for a call it does not have: 200 shows it reached the owner.
        assert_eq!(bye(&sock, disp, &call, &call.route), 200, "BYE of {id}");
    }
    println!("calls per instance: {per:?}");
    assert!(all.iter().all(|i| per.get(i).copied().unwrap_or(0) > 0), "every instance gets calls: {per:?}");
}

/// With calls held open, bounded-load hashing (ε = 0 here: shares within one call of even) moves
/// some new calls off their hash; their in-dialog requests still reach the instance that has them,
/// through the backend in the dispatcher's Record-Route.
#[test]
fn bounded_load_keeps_shares_even_and_moved_calls_keep_their_instance() {
    let (_i1, a) = instance(0, &[]);
    let (_i2, b) = instance(0, &[]);
    let (_i3, c) = instance(0, &[]);
    let all = [a, b, c];
    let (_d, disp) = dispatcher(&all, &["--rate-limit", "0", "--balance-epsilon", "0"]);
    let sock = socket();
    let mut per: HashMap<SocketAddr, usize> = HashMap::new();
    let mut calls = Vec::new();
    let mut off_hash = 0;
    for i in 0..24 {
        let id = format!("held-{i}.test");
        let call = echo_call(&sock, disp, &id);
        off_hash += usize::from(call.answered_by != owner(&id, &all));
        *per.entry(call.answered_by).or_default() += 1;
        let bound = (i + 1usize).div_ceil(3);
        assert!(per.values().all(|&n| n <= bound), "after {} calls: {per:?} over {bound}", i + 1);
        calls.push(call);
    }
    println!("calls per instance: {per:?}; {off_hash} of 24 placed off their hash");
    assert!(off_hash > 0, "some calls were moved by the bound");
    for call in &calls {
        assert_eq!(bye(&sock, disp, call, &call.route), 200, "BYE of {} reaches {}", call.call_id, call.answered_by);
    }
}

#[test]
fn a_route_naming_the_dispatcher_without_a_cluster_token_is_refused() {
    let (_i1, a) = instance(0, &[]);
    let (_d, disp) = dispatcher(&[a], &[]);
    let sock = socket();
    let call = echo_call(&sock, disp, "token-1.test");
    let forged = [
        format!("<sip:{disp};lr;sb-backend={a}>"),
        format!("<sip:{disp};lr;sbt=0123456789abcdef0123456789abcdef;sb-backend={a}>"),
        call.route.replace("sbt=", "sbt=0"),
    ];
    for route in &forged {
        assert_eq!(bye(&sock, disp, &call, route), 403, "{route}");
    }
    assert_eq!(bye(&sock, disp, &call, &call.route), 200);
}

#[test]
fn probes_take_a_stopped_instance_out_and_bring_it_back() {
    let (_i1, a) = instance(0, &[]);
    let (mut i2, b) = instance(0, &[]);
    let (_i3, c) = instance(0, &[]);
    let all = [a, b, c];
    // Bounded load is off here (epsilon 100): this test is about probes, and the 12 calls kept up
    // across the stop can sit unevenly on a and c (the hash depends on the instances' ephemeral
    // ports), which would let bounded load move a new call off its hash (1 run in ~15).
    let (d, disp) = dispatcher(
        &all,
        &[
            "--probe-interval-ms",
            "200",
            "--probe-failures",
            "3",
            "--probe-recoveries",
            "2",
            "--rate-limit",
            "0",
            "--balance-epsilon",
            "100",
        ],
    );
    let sock = socket();
    // Calls established before: those on a and c stay there.
    let before: Vec<_> = (0..12).map(|i| echo_call(&sock, disp, &format!("keep-{i}.test"))).collect();
    let t0 = std::time::Instant::now();
    i2.kill();
    let line = d.wait_line("membership epoch 2:", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    println!("detected in {:?}: {line}", t0.elapsed());
    assert!(!line.contains(&member(b)) && line.contains(&member(a)) && line.contains(&member(c)), "{line}");
    let live = [a, c];
    let mut moved = 0;
    for i in 0..12 {
        let id = format!("after-{i}.test");
        let call = echo_call(&sock, disp, &id);
        assert_eq!(call.answered_by, owner(&id, &live));
        moved += usize::from(owner(&id, &all) == b);
        assert_eq!(bye(&sock, disp, &call, &call.route), 200);
    }
    println!("{moved} of 12 new calls would have gone to the stopped instance");
    for call in &before {
        let code = bye(&sock, disp, call, &call.route);
        if call.answered_by != b {
            assert_eq!(code, 200, "a call on a live instance stays put");
        } else {
            // Sent to the adopter (the rendezvous owner among the live), which has no such call:
            // adoption is the failover issue's (point 4); the dispatcher's part is where it went.
            assert_eq!(code, 481, "a stopped instance's call goes to its adopter");
        }
    }
    // The instance comes back on its address: two answered probes bring it in again.
    let (_i2, b2) = instance(b.port(), &[]);
    assert_eq!(b2, b);
    let line = d.wait_line("membership epoch 3:", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    assert!(line.contains(&member(b)), "{line}");
    for i in 0..12 {
        let id = format!("back-{i}.test");
        let call = echo_call(&sock, disp, &id);
        assert_eq!(call.answered_by, owner(&id, &all));
        assert_eq!(bye(&sock, disp, &call, &call.route), 200);
    }
}

/// One backend played by a bare socket: the dispatcher's edits are visible on the wire.
#[test]
fn register_gets_path_and_a_call_from_an_instance_reaches_the_registered_phone() {
    let backend = socket();
    let be = addr_of(&backend);
    let (_d, disp) = dispatcher(&[be], &["--probe-interval-ms", "60000"]);
    let phone = socket_on("127.0.0.1");
    let me = addr_of(&phone);
    raw_sip::register(&phone, disp, "bob", &format!("sip:bob@{me}"), "reg-path", 1);
    let reg = recv_starting(&backend, "REGISTER ", LIMIT);
    assert_eq!(header(&reg, "Path"), Some(format!("<sip:{disp};lr>").as_str()), "{reg}");
    let vias: Vec<&str> = reg.lines().filter(|l| l.starts_with("Via:")).collect();
    assert!(vias[0].contains(&disp.to_string()) && vias[1].contains(&format!("rport={}", me.port())), "{vias:?}");
    // The instance's 200 goes back to the phone with the dispatcher's Via popped.
    let ok = reg.replacen("REGISTER sip:", "SIP/2.0 200 OK\r\nX-Was: sip:", 1);
    backend.send_to(ok.as_bytes(), disp).expect("200");
    let got = final_response(&phone, "reg-path", LIMIT);
    assert_eq!(got.lines().filter(|l| l.starts_with("Via:")).count(), 1, "{got}");
    // An INVITE from the instance to bob's contact, sent to the dispatcher (the Path), reaches bob
    // record-routed with the instance as its backend.
    let inv = format!(
        "INVITE sip:bob@{me} SIP/2.0\r\nVia: SIP/2.0/UDP {be};branch=z9hG4bK-out1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@x>;tag=a1\r\n\
         To: <sip:bob@x>\r\nCall-ID: sbk-00000000000000aa-1@x\r\nCSeq: 1 INVITE\r\nContact: <sip:b2bua@{be}>\r\nContent-Length: 0\r\n\r\n"
    );
    backend.send_to(inv.as_bytes(), disp).expect("INVITE");
    let at_bob = recv_starting(&phone, "INVITE ", LIMIT);
    let rr = header(&at_bob, "Record-Route").expect("record-routed");
    assert!(rr.contains(&format!("sb-backend={be}")), "{rr}");
}

#[test]
fn per_source_rate_limits_at_the_dispatcher_and_behind_it() {
    // The dispatcher's own limit: 5/s, bursts of 10, per source IP.
    let (_i1, a) = instance(0, &["--rate-limit", "0"]);
    let (_d, disp) = dispatcher(&[a], &["--rate-limit", "5"]);
    let flood = socket_on("127.0.0.2");
    let answered = options_burst(&flood, disp, "flood", 40);
    println!("flooding source: {answered} of 40 answered");
    assert!((1..=15).contains(&answered), "{answered}");
    let calm = socket_on("127.0.0.3");
    assert_eq!(options_burst(&calm, disp, "calm", 3), 3, "another source is not limited");
}

/// Behind the dispatcher, an instance started with `--dispatcher ADDR` limits each phone (the
/// address in the Via the dispatcher received), not the dispatcher as a whole; without the flag,
/// one flooding phone starves the others.
#[test]
fn an_instance_behind_the_dispatcher_limits_each_phone_not_the_dispatcher() {
    for trusted in [true, false] {
        let port = procs::free_port_udp_tcp();
        let be = SocketAddr::from(([127, 0, 0, 1], port));
        let (_d, disp) = dispatcher(&[be], &["--rate-limit", "0", "--probe-interval-ms", "60000"]);
        let hop = disp.to_string();
        let extra: Vec<&str> = if trusted { vec!["--rate-limit", "5", "--dispatcher", &hop] } else { vec!["--rate-limit", "5"] };
        let (_i, a) = instance(port, &extra);
        assert_eq!(a, be);
        // The flood and the calm phone's few requests arrive together.
        let flood = socket_on("127.0.0.2");
        let calm = socket_on("127.0.0.3");
        send_options(&flood, disp, &format!("flood{trusted}"), 40);
        send_options(&calm, disp, &format!("calm{trusted}"), 3);
        let answered = count_answers(&flood, 40);
        let calm_answered = count_answers(&calm, 3);
        assert!((1..=15).contains(&answered), "the flooding phone is limited: {answered}");
        println!("--dispatcher {trusted}: flooding phone {answered} of 40, calm phone {calm_answered} of 3");
        if trusted {
            assert_eq!(calm_answered, 3, "another phone has its own bucket");
        } else {
            assert!(calm_answered < 3, "without --dispatcher all phones share the dispatcher's bucket");
        }
    }
}

/// Failed authentications through the dispatcher block the phone that failed (the client in the
/// Via the dispatcher received), not every phone behind the dispatcher, when the instance runs
/// with `--dispatcher`; without it, the dispatcher's address is blocked for everyone.
#[test]
fn auth_failure_limits_behind_the_dispatcher_apply_per_phone() {
    for trusted in [true, false] {
        let dir = procs::TempDir::new("dispatch-auth");
        phone::add_user(&dir, "alice", "alice-secret");
        let port = procs::free_port_udp_tcp();
        let be = SocketAddr::from(([127, 0, 0, 1], port));
        let (_d, disp) = dispatcher(&[be], &["--rate-limit", "0", "--probe-interval-ms", "60000"]);
        let mut cmd = Command::new(SB);
        cmd.args(["serve", "--listen", &be.to_string(), "--data"]).arg(dir.path()).args(["--rate-limit", "0"]);
        if trusted {
            cmd.args(["--dispatcher", &disp.to_string()]);
        }
        let (_i, _) = procs::spawn_service(&mut cmd, LIMIT);
        let mut guesser = phone::Phone::new("127.0.0.2", disp);
        for _ in 0..10 {
            assert_eq!(guesser.register("alice", "wrong"), 403);
        }
        let blocked = guesser.request(switchboard::message::Method::Register, "alice", None);
        assert_eq!(guesser.transact(&blocked).status(), Some(403), "the guessing phone is blocked");
        let mut other = phone::Phone::new("127.0.0.3", disp);
        let first = other.request(switchboard::message::Method::Register, "alice", None);
        let got = other.transact(&first).status();
        println!("--dispatcher {trusted}: another phone's REGISTER gets {got:?}");
        if trusted {
            assert_eq!(got, Some(401), "another phone is challenged as usual");
            assert_eq!(other.register("alice", "alice-secret"), 200);
        } else {
            assert_eq!(got, Some(403), "without --dispatcher the dispatcher's address is blocked for all");
        }
    }
}

/// Sends `n` OPTIONS for echo at once, then counts the answers within a short wait.
fn options_burst(sock: &std::net::UdpSocket, to: SocketAddr, tag: &str, n: usize) -> usize {
    send_options(sock, to, tag, n);
    count_answers(sock, n)
}

/// Sends `n` OPTIONS for echo at once.
fn send_options(sock: &std::net::UdpSocket, to: SocketAddr, tag: &str, n: usize) {
    let me = addr_of(sock);
    for i in 0..n {
        let m = format!(
            "OPTIONS sip:echo@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{tag}-{i};rport\r\nMax-Forwards: 70\r\nFrom: <sip:x@{ip}>;tag={tag}\r\n\
             To: <sip:echo@{to}>\r\nCall-ID: {tag}-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            ip = me.ip()
        );
        sock.send_to(m.as_bytes(), to).expect("OPTIONS");
    }
}

/// Counts the distinct answered OPTIONS, up to `n`.
fn count_answers(sock: &std::net::UdpSocket, n: usize) -> usize {
    let mut answered = std::collections::HashSet::new();
    // Answers come within milliseconds; a second of silence after the last one ends the count.
    while let Some(r) = try_recv_starting(sock, "SIP/2.0 ", Duration::from_secs(1)) {
        if status(&r) >= 200 {
            answered.insert(header(&r, "Call-ID").unwrap_or("").to_owned());
        }
        if answered.len() == n {
            break;
        }
    }
    answered.len()
}

#[test]
fn bad_flags_get_one_line_and_a_non_zero_exit() {
    for args in [
        vec!["dispatch"],
        vec!["dispatch", "--backend", "http://x"],
        vec!["dispatch", "--backend", "sip:127.0.0.1:5071", "--balance-epsilon=-1"],
    ] {
        let out = Command::new(SB).args(&args).env_remove("SWITCHBOARD_STORE").output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    let help = Command::new(SB).args(["dispatch", "--help"]).output().expect("help");
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--backend",
        "--store",
        "--secret-file",
        "--probe-interval-ms",
        "--probe-failures",
        "--probe-recoveries",
        "--balance-epsilon",
        "--rate-limit",
        "--config",
    ] {
        assert!(text.contains(flag), "{flag} in --help");
    }
}

#[test]
fn the_config_file_names_backends_and_refuses_unknown_keys() {
    let dir = procs::TempDir::new("dispatch-config");
    let good = dir.join("dispatch.toml");
    std::fs::write(
        &good,
        "listen = \"127.0.0.1:0\"\nprobe_interval_ms = 500\nbalance_epsilon = 0.5\n\n[[backend]]\nuri = \"sip:127.0.0.1:5071\"\n\n[[backend]]\nuri = \"sip:127.0.0.1:5072\"\n",
    )
    .expect("write config");
    let mut cmd = Command::new(SB);
    cmd.args(["dispatch", "--config"]).arg(&good).env_remove("SWITCHBOARD_STORE");
    let d = procs::Proc::spawn("switchboard dispatch", &mut cmd);
    let line = d.wait_line("switchboard dispatch listening on udp 127.0.0.1:", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    assert!(line.ends_with("backends sip:127.0.0.1:5071 sip:127.0.0.1:5072"), "{line}");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:0\"\nbackends = []\n").expect("write config");
    let out = Command::new(SB).args(["dispatch", "--config"]).arg(&bad).env_remove("SWITCHBOARD_STORE").output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.trim().lines().count() == 1 && err.contains("backends"), "{err}");
}
