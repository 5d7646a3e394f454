//! Unit tests of the dispatcher core, on a virtual clock.

use super::*;

const PHONE: &str = "127.0.0.9:5099";

fn cfg(n: u16) -> DispatchConfig {
    DispatchConfig {
        local: "127.0.0.1:5060".parse().unwrap(),
        backends: (0..n).map(|i| Backend::parse(&format!("sip:127.0.0.1:{}", 5071 + i)).unwrap()).collect(),
        probe: ProbeConfig { interval: Duration::from_millis(100), failures: 2, recoveries: 1 },
        epsilon: DEFAULT_EPSILON,
        rate_limit: None,
        route_key: RouteKey::derive(&[9u8; 32]),
        seed: 42,
        call_ttl: DEFAULT_CALL_TTL,
    }
}

fn invite(call_id: &str, extra: &str) -> Bytes {
    Bytes::from(format!(
        "INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK{call_id};rport\r\nMax-Forwards: 70\r\n{extra}From: <sip:alice@x>;tag=at\r\nTo: <sip:bob@x>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{PHONE}>\r\nContent-Length: 0\r\n\r\n"
    ))
}

fn bye(call_id: &str, route: &str) -> Bytes {
    Bytes::from(format!(
        "BYE sip:b2bua@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bKbye{call_id}\r\nMax-Forwards: 70\r\nRoute: <{route}>\r\nFrom: <sip:alice@x>;tag=at\r\nTo: <sip:bob@x>;tag=bt\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ))
}

fn phone() -> SocketAddr {
    PHONE.parse().unwrap()
}

fn sends(out: &[Output]) -> Vec<(SocketAddr, Message)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(t) => Some((t.dest, Message::parse(t.payload.clone()).unwrap())),
            _ => None,
        })
        .collect()
}

fn rr_uri(m: &Message) -> String {
    m.record_routes().next().unwrap().unwrap().uri_text.to_owned()
}

#[test]
fn a_new_call_goes_to_its_hash_with_our_via_and_record_route_and_the_answer_comes_back() {
    let now = Instant::now();
    let mut d = Dispatcher::new(cfg(3), now);
    let mut out = Vec::new();
    d.on_datagram(invite("c1", ""), phone(), now, &mut out);
    let sent = sends(&out);
    assert_eq!(sent.len(), 1);
    let (dest, fwd) = &sent[0];
    let owner = Membership { epoch: 1, live: d.membership().live }.owner_of("c1").unwrap().to_owned();
    assert_eq!(member_name(*dest), owner);
    let vias: Vec<String> = fwd.vias().map(|v| v.unwrap().host.to_string()).collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(fwd.via().unwrap().port, Some(5060));
    assert_eq!(fwd.max_forwards().unwrap(), Some(69));
    let rr = rr_uri(fwd);
    assert!(rr.contains(&format!("sb-backend={dest}")) && rr.contains("sbt="), "{rr}");
    assert_eq!(d.loads().iter().sum::<usize>(), 1);
    // The backend's 180 comes back with our Via popped, to the phone's received address.
    let resp = fwd.response_to(180, "Ringing", Some("bt")).finish();
    out.clear();
    d.on_datagram(resp.as_bytes().clone(), *dest, now, &mut out);
    let back = sends(&out);
    assert_eq!(back[0].0, phone());
    assert_eq!(back[0].1.vias().count(), 1);
    // A retransmission gets the same branch (stateless, §16.11).
    out.clear();
    d.on_datagram(invite("c1", ""), phone(), now, &mut out);
    assert_eq!(sends(&out)[0].1.via().unwrap().branch(), fwd.via().unwrap().branch());
    assert_eq!(d.loads().iter().sum::<usize>(), 1, "a retransmission is not a new call");
}

#[test]
fn in_dialog_requests_follow_the_backend_in_our_route_and_a_bad_token_gets_403() {
    let now = Instant::now();
    let mut d = Dispatcher::new(cfg(3), now);
    let mut out = Vec::new();
    d.on_datagram(invite("c2", ""), phone(), now, &mut out);
    let (owner, fwd) = sends(&out).remove(0);
    let rr = rr_uri(&fwd);
    out.clear();
    d.on_datagram(bye("c2", &rr), phone(), now, &mut out);
    let (dest, b) = sends(&out).remove(0);
    assert_eq!(dest, owner);
    assert_eq!(b.routes().count(), 0, "our Route is popped");
    assert_eq!(d.loads().iter().sum::<usize>(), 0, "the BYE ends the counted call");
    // The same route with the backend changed, or a forged token: 403.
    let other = d.cfg.backends.iter().find(|b| b.addr != owner).unwrap().addr;
    for bad in [rr.replace(&owner.to_string(), &other.to_string()), "sip:127.0.0.1:5060;lr;sbt=00;sb-backend=127.0.0.1:5071".to_owned()] {
        out.clear();
        d.on_datagram(bye("c2", &bad), phone(), now, &mut out);
        let (dest, r) = sends(&out).remove(0);
        assert_eq!((dest, r.status()), (phone(), Some(403)), "{bad}");
    }
    assert_eq!(d.stats().bad_tokens, 2);
}

fn answer_probes(d: &mut Dispatcher, out: &[Output], now: Instant, up: &[bool]) -> Vec<Output> {
    let mut more = Vec::new();
    for (dest, m) in sends(out) {
        let i = d.backend_at(dest).unwrap();
        if m.method() == Some(&Method::Options) && up[i] {
            let r = m.response_to(200, "OK", Some("p")).finish();
            d.on_datagram(r.as_bytes().clone(), dest, now, &mut more);
        }
    }
    more
}

#[test]
fn probes_take_a_dead_backend_out_and_bring_it_back_with_rising_epochs() {
    let mut now = Instant::now();
    let mut d = Dispatcher::new(cfg(3), now);
    let mut published = Vec::new();
    let mut up = [true, false, true];
    for round in 0..6 {
        if round == 4 {
            up[1] = true;
        }
        let mut out = Vec::new();
        d.on_timer(now, &mut out);
        let more = answer_probes(&mut d, &out, now, &up);
        for o in out.iter().chain(&more) {
            if let Output::Publish(m) = o {
                published.push(m.clone());
            }
        }
        now = d.next_timer();
    }
    let b1 = "sip:127.0.0.1:5072".to_owned();
    assert_eq!(published.len(), 2, "{published:?}");
    assert!(published[0].epoch == 2 && !published[0].is_live(&b1));
    assert!(published[1].epoch == 3 && published[1].is_live(&b1));
    assert_eq!(d.raise_epoch(10).epoch, 10);
}

#[test]
fn a_dead_backends_calls_move_and_nobody_elses_do() {
    let now = Instant::now();
    let mut d = Dispatcher::new(cfg(3), now);
    let mut before = Vec::new();
    for i in 0..60 {
        let mut out = Vec::new();
        d.on_datagram(invite(&format!("m{i}"), ""), phone(), now, &mut out);
        before.push(sends(&out).remove(0).0);
    }
    // Backend 0 dies (probes unanswered twice).
    d.health[0].record(false, &d.cfg.probe.clone());
    d.health[0].record(false, &d.cfg.probe.clone());
    assert!(!d.health[0].live);
    let dead = d.cfg.backends[0].addr;
    for (i, was) in before.iter().enumerate() {
        let mut out = Vec::new();
        // A CANCEL of each call: to its counted backend when live, else the rendezvous choice.
        let cancel = String::from_utf8(invite(&format!("m{i}"), "").to_vec()).unwrap().replacen("INVITE", "CANCEL", 2);
        d.on_datagram(Bytes::from(cancel), phone(), now, &mut out);
        let now_at = sends(&out).remove(0).0;
        if *was != dead {
            assert_eq!(now_at, *was, "call {i} moved off a live backend");
        } else {
            assert_ne!(now_at, dead);
        }
    }
}

#[test]
fn register_gets_path_and_requests_from_a_backend_go_out_record_routed() {
    let now = Instant::now();
    let mut d = Dispatcher::new(cfg(2), now);
    let reg = format!("REGISTER sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bKr1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:bob@x>;tag=r\r\nTo: <sip:bob@x>\r\nCall-ID: reg1\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@{PHONE}>\r\nContent-Length: 0\r\n\r\n");
    let mut out = Vec::new();
    d.on_datagram(Bytes::from(reg), phone(), now, &mut out);
    let (_, r) = sends(&out).remove(0);
    assert_eq!(r.other_header("Path").next(), Some(&b"<sip:127.0.0.1:5060;lr>"[..]));
    // An INVITE from backend 1 to bob's contact goes to the contact, record-routed with backend 1.
    let from_b = d.cfg.backends[1].addr;
    let inv = format!("INVITE sip:bob@{PHONE} SIP/2.0\r\nVia: SIP/2.0/UDP {from_b};branch=z9hG4bKo1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@x>;tag=bt2\r\nTo: <sip:bob@x>\r\nCall-ID: sbk-0000000000000001-2@h\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n");
    out.clear();
    d.on_datagram(Bytes::from(inv), from_b, now, &mut out);
    let (dest, f) = sends(&out).remove(0);
    assert_eq!(dest, phone());
    assert!(rr_uri(&f).contains(&format!("sb-backend={from_b}")));
    // Bob's BYE on that dialog returns to backend 1, whatever the hash says.
    let rr = rr_uri(&f);
    let bye = format!("BYE sip:b2bua@{from_b} SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bKb9\r\nMax-Forwards: 70\r\nRoute: <{rr}>\r\nFrom: <sip:bob@x>;tag=bobtag\r\nTo: <sip:alice@x>;tag=bt2\r\nCall-ID: sbk-0000000000000001-2@h\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n");
    out.clear();
    d.on_datagram(Bytes::from(bye), phone(), now, &mut out);
    assert_eq!(sends(&out).remove(0).0, from_b);
}

#[test]
fn the_per_source_rate_limit_drops_the_excess() {
    let now = Instant::now();
    let mut c = cfg(2);
    c.rate_limit = RateLimit::per_second(5);
    let mut d = Dispatcher::new(c, now);
    let mut out = Vec::new();
    for i in 0..30 {
        d.on_datagram(invite(&format!("r{i}"), ""), phone(), now, &mut out);
    }
    assert_eq!(sends(&out).len(), 10, "burst of twice the rate");
    assert_eq!(d.stats().rate_limited, 20);
}

#[test]
fn bounded_load_moves_new_calls_off_an_overloaded_backend() {
    let now = Instant::now();
    let mut d = Dispatcher::new(cfg(3), now);
    // Pretend backend 0 holds many long calls.
    d.loads[0] = 20;
    let mut out = Vec::new();
    for i in 0..200 {
        d.on_datagram(invite(&format!("bl{i}"), ""), phone(), now, &mut out);
        let total: usize = d.loads().iter().sum();
        let bound = ((1.25 * total as f64) / 3.0).ceil() as usize;
        assert!(d.loads().iter().all(|&l| l <= bound.max(20)), "{:?}", d.loads());
    }
    assert!(d.stats().rebalanced > 0);
}

#[test]
fn cancel_and_the_ack_of_a_failure_take_the_invites_branch_and_backend() {
    let now = Instant::now();
    let mut d = Dispatcher::new(cfg(3), now);
    let mut out = Vec::new();
    d.on_datagram(invite("cx", ""), phone(), now, &mut out);
    let (dest, fwd) = sends(&out).remove(0);
    let branch = fwd.via().unwrap().branch().unwrap().to_owned();
    for method in ["CANCEL", "ACK"] {
        let text = String::from_utf8(invite("cx", "").to_vec())
            .unwrap()
            .replace("INVITE sip:", &format!("{method} sip:"))
            .replace("1 INVITE", &format!("1 {method}"));
        out.clear();
        d.on_datagram(Bytes::from(text), phone(), now, &mut out);
        let (to, m) = sends(&out).remove(0);
        assert_eq!((to, m.via().unwrap().branch().unwrap()), (dest, branch.as_str()), "{method}");
    }
    // The backend's 487 ends the counted call.
    assert_eq!(d.loads().iter().sum::<usize>(), 1);
    out.clear();
    d.on_datagram(fwd.response_to(487, "Request Terminated", Some("x")).finish().as_bytes().clone(), dest, now, &mut out);
    assert_eq!(d.loads().iter().sum::<usize>(), 0);
}

#[test]
fn garbage_and_strangers_responses_are_dropped_without_a_panic() {
    let now = Instant::now();
    let mut d = Dispatcher::new(cfg(2), now);
    let mut out = Vec::new();
    for junk in
        [&b"\r\n\r\n"[..], b"\x00\x01binary", b"INVITE", b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx\r\n\r\n"]
    {
        d.on_datagram(Bytes::copy_from_slice(junk), phone(), now, &mut out);
    }
    assert!(sends(&out).is_empty());
    // Max-Forwards 0: 483, not forwarded.
    let text = String::from_utf8(invite("mf", "").to_vec()).unwrap().replace("Max-Forwards: 70", "Max-Forwards: 0");
    d.on_datagram(Bytes::from(text), phone(), now, &mut out);
    assert_eq!(sends(&out).remove(0).1.status(), Some(483));
}
