//! Transaction matching, CANCEL and the transaction table (RFC 3261 §9, §17.1.3, §17.2.3).
//!
//! Setup: a UAC and a UAS, each a `Transactions` table, joined by a virtual wire with 5 ms latency
//! ([`Pair`]). Every message crosses the wire as bytes and is parsed again on arrival, as a datagram
//! would be. `Pair::run_until` delivers messages and fires timers in time order on a virtual clock
//! (one base `Instant` plus offsets); the test plays both TUs between runs. Asserts check how each
//! side routed what it received ([`Routed`]), the headers of the CANCEL and ACK the layer builds,
//! RFC 2543 matching on the RFC 4475 `inv2543` torture message, and that a table of thousands of
//! transactions drains through its single timer heap.

use bytes::Bytes;
use std::time::{Duration, Instant};
use switchboard::message::{CSeq, HeaderName, Message, Method};
use switchboard::transaction::{
    build_cancel, CancelTarget, ClientInvite, Config, Error, Event, Routed, TransactionId, TransactionKey, TransactionState, Transactions,
};

fn invite(branch: &str) -> Message {
    request(Method::Invite, branch, "pc33.atlanta.example.com", 314159)
}

fn request(method: Method, branch: &str, host: &str, seq: u32) -> Message {
    Message::request(method.clone(), "sip:bob@biloxi.example.com")
        .header(HeaderName::Via, format!("SIP/2.0/UDP {host};branch={branch}"))
        .header(HeaderName::MaxForwards, 70)
        .header(HeaderName::Route, "<sip:p1.example.com;lr>")
        .header(HeaderName::Route, "<sip:p2.example.com;lr>")
        .header(HeaderName::To, "Bob <sip:bob@biloxi.example.com>")
        .header(HeaderName::From, "Alice <sip:alice@atlanta.example.com>;tag=1928301774")
        .header(HeaderName::CallId, "a84b4c76e66710@pc33.atlanta.example.com")
        .header(HeaderName::CSeq, CSeq { seq, method })
        .header(HeaderName::Contact, "<sip:alice@pc33.atlanta.example.com>")
        .finish()
}

fn answer(req: &Message, code: u16) -> Message {
    req.response_to(code, "Reason", Some("a6c85cf")).finish()
}

/// As a datagram: serialize and parse again.
fn wire(msg: &Message) -> Message {
    Message::parse(msg.as_bytes().clone()).expect("what we send parses")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Uac,
    Uas,
}

/// Two tables and the wire between them, on a virtual clock.
struct Pair {
    base: Instant,
    now: Instant,
    latency: Duration,
    uac: Transactions,
    uas: Transactions,
    in_flight: Vec<(Instant, Side, Bytes)>,
    uac_events: Vec<(TransactionId, Event)>,
    uas_events: Vec<(TransactionId, Event)>,
    uac_routed: Vec<Routed>,
    uas_routed: Vec<Routed>,
}

impl Pair {
    fn new() -> Pair {
        let base = Instant::now();
        Pair {
            base,
            now: base,
            latency: Duration::from_millis(5),
            uac: Transactions::new(Config::default()),
            uas: Transactions::new(Config::default()),
            in_flight: Vec::new(),
            uac_events: Vec::new(),
            uas_events: Vec::new(),
            uac_routed: Vec::new(),
            uas_routed: Vec::new(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    /// Moves both tables' output onto the wire and into the event logs.
    fn flush(&mut self) {
        let arrive = self.now + self.latency;
        while let Some((_, m)) = self.uac.poll_transmit() {
            self.in_flight.push((arrive, Side::Uas, m.as_bytes().clone()));
        }
        while let Some((_, m)) = self.uas.poll_transmit() {
            self.in_flight.push((arrive, Side::Uac, m.as_bytes().clone()));
        }
        self.uac_events.extend(std::iter::from_fn(|| self.uac.poll_event()));
        self.uas_events.extend(std::iter::from_fn(|| self.uas.poll_event()));
    }

    fn next_wake(&self) -> Option<Instant> {
        let arrivals = self.in_flight.iter().map(|(t, _, _)| *t);
        arrivals.chain(self.uac.poll_timeout()).chain(self.uas.poll_timeout()).min()
    }

    /// Delivers what has arrived and fires what is due at `at`.
    fn step(&mut self, at: Instant) {
        self.now = at;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight).into_iter().partition(|(t, _, _)| *t <= at);
        self.in_flight = later;
        for (_, side, bytes) in due {
            let msg = Message::parse(bytes).expect("datagram parses");
            let table = if side == Side::Uac { &mut self.uac } else { &mut self.uas };
            let routed = if msg.is_request() { table.handle_request(msg, at) } else { table.handle_response(msg, at) };
            let log = if side == Side::Uac { &mut self.uac_routed } else { &mut self.uas_routed };
            log.push(routed.expect("well-formed messages route"));
        }
        self.uac.handle_timeout(at);
        self.uas.handle_timeout(at);
        self.flush();
    }

    fn run_until(&mut self, ms: u64) {
        let end = self.at(ms);
        let mut steps = 0;
        while let Some(at) = self.next_wake().filter(|at| *at <= end) {
            self.step(at);
            steps += 1;
            assert!(steps < 10_000, "pair does not settle");
        }
        self.now = end;
    }
}

#[test]
fn client_ack_for_a_4xx_has_the_right_headers() {
    let base = Instant::now();
    let inv = invite("z9hG4bKnashds8");
    let mut tx = ClientInvite::new(inv.clone(), base, &Config::default()).unwrap();
    let _ = tx.poll_transmit();
    let resp = wire(&answer(&inv, 404));
    tx.handle_response(resp.clone(), base + Duration::from_millis(80)).unwrap();
    let ack = tx.poll_transmit().expect("the transaction ACKs a 404 itself");
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.request_uri_str(), inv.request_uri_str());
    assert_eq!(ack.vias().count(), 1);
    assert_eq!(ack.via().unwrap(), inv.via().unwrap());
    let routes = |m: &Message| m.header_values(HeaderName::Route).map(<[u8]>::to_vec).collect::<Vec<_>>();
    assert_eq!(routes(&ack), routes(&inv));
    assert_eq!(ack.header(HeaderName::From), inv.header(HeaderName::From));
    assert_eq!(ack.header(HeaderName::To), resp.header(HeaderName::To));
    assert_eq!(ack.to().unwrap().tag(), Some("a6c85cf"));
    assert_eq!(ack.call_id().unwrap(), inv.call_id().unwrap());
    assert_eq!(ack.cseq().unwrap(), CSeq { seq: 314159, method: Method::Ack });
    assert_eq!(ack.max_forwards().unwrap(), Some(70));
    assert!(ack.header(HeaderName::Contact).is_none() && ack.body().is_empty());
    ack.validate().unwrap();
    // It lands in the INVITE's server transaction (§17.2.3).
    assert_eq!(TransactionKey::server(&ack).unwrap(), TransactionKey::server(&inv).unwrap());
    assert_eq!(tx.poll_event(), Some(Event::Response(resp)));
}

#[test]
fn cancel_before_the_final_response_is_built_right_and_matches_the_invite() {
    let mut p = Pair::new();
    let inv = invite("z9hG4bK776asdhds");
    let cid = p.uac.start_client(inv.clone(), p.now).unwrap();
    assert_eq!(p.uac.cancel(cid, p.now), Err(Error::CancelTooEarly), "§9.1: wait for a provisional");
    p.flush();
    p.run_until(10);
    let Some(Routed::New(sid)) = p.uas_routed.first().cloned() else { panic!("INVITE opened nothing: {:?}", p.uas_routed) };
    assert!(matches!(&p.uas_events[..], [(id, Event::Request(r))] if *id == sid && *r == inv));
    p.uas.send_response(sid, answer(&inv, 180), p.now).unwrap();
    p.flush();
    p.run_until(20);
    assert!(matches!(&p.uac_events[..], [(id, Event::Response(r))] if *id == cid && r.status() == Some(180)));

    let cancel_id = p.uac.cancel(cid, p.now).unwrap();
    let cancel = p.uac.request(cancel_id).unwrap().clone();
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(cancel.request_uri_str(), inv.request_uri_str());
    assert_eq!(cancel.vias().count(), 1);
    assert_eq!(cancel.via().unwrap().branch(), Some("z9hG4bK776asdhds"));
    for h in [HeaderName::To, HeaderName::From, HeaderName::CallId] {
        assert_eq!(cancel.header(h), inv.header(h), "{h:?}");
    }
    assert_eq!(cancel.header_values(HeaderName::Route).count(), 2);
    assert_eq!(cancel.cseq().unwrap(), CSeq { seq: 314159, method: Method::Cancel });
    p.flush();
    p.run_until(30);
    let Some(Routed::Cancel { id: cancel_sid, target }) = p.uas_routed.last().cloned() else { panic!("{:?}", p.uas_routed) };
    assert_eq!(target, CancelTarget::Pending(sid));

    // The UAS answers the CANCEL with 200 and the INVITE with 487; the UAC ACKs the 487.
    let cancel_rx = p.uas.request(cancel_sid).unwrap().clone();
    p.uas.send_response(cancel_sid, answer(&cancel_rx, 200), p.now).unwrap();
    p.uas.send_response(sid, answer(&inv, 487), p.now).unwrap();
    p.flush();
    p.run_until(100);
    assert_eq!(p.uas_routed.last(), Some(&Routed::Matched(sid)), "the ACK for the 487");
    assert_eq!(p.uas.state(sid), Some(TransactionState::Confirmed));
    let codes: Vec<_> = p
        .uac_events
        .iter()
        .filter_map(|(id, e)| match e {
            Event::Response(r) => Some((*id, r.status())),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec![(cid, Some(180)), (cancel_id, Some(200)), (cid, Some(487))]);
    p.run_until(60_000);
    assert!(p.uac.is_empty() && p.uas.is_empty(), "every transaction ended");
    assert_eq!(p.uac.poll_timeout(), None);
}

#[test]
fn cancel_after_the_final_response_has_no_effect() {
    let mut p = Pair::new();
    let inv = invite("z9hG4bKbusy");
    let cid = p.uac.start_client(inv.clone(), p.now).unwrap();
    p.flush();
    p.run_until(10);
    let Some(Routed::New(sid)) = p.uas_routed.first().cloned() else { panic!() };
    p.uas.send_response(sid, answer(&inv, 486), p.now).unwrap();
    p.flush();
    p.run_until(16); // the 486 reached the UAC; its ACK is still on the wire
    assert_eq!(p.uac.cancel(cid, p.now), Err(Error::CancelTooLate), "§9.1: not after a final response");
    // A CANCEL from elsewhere still finds the INVITE transaction, but it is answered already.
    let routed = p.uas.handle_request(build_cancel(&inv).unwrap(), p.now).unwrap();
    assert!(matches!(routed, Routed::Cancel { target: CancelTarget::Answered(t), .. } if t == sid));

    // After a 2xx the INVITE server transaction is Accepted (RFC 6026 §7.1) for 64*T1: a CANCEL
    // still finds it but has no effect, a retransmitted INVITE is absorbed instead of reaching the
    // TU as a new request, and every ACK for the 2xx is the dialog's, whatever its branch.
    let inv2 = invite("z9hG4bKok");
    let Routed::New(sid2) = p.uas.handle_request(inv2.clone(), p.now).unwrap() else { panic!() };
    p.uas.send_response(sid2, answer(&inv2, 200), p.now).unwrap();
    assert_eq!(p.uas.state(sid2), Some(TransactionState::Accepted));
    let routed = p.uas.handle_request(build_cancel(&inv2).unwrap(), p.now).unwrap();
    assert!(matches!(routed, Routed::Cancel { target: CancelTarget::Answered(t), .. } if t == sid2));
    while p.uas.poll_transmit().is_some() {}
    assert_eq!(p.uas.handle_request(inv2.clone(), p.now).unwrap(), Routed::Matched(sid2));
    assert!(p.uas.poll_transmit().is_none(), "a retransmitted INVITE is absorbed, not answered");
    p.uas.send_response(sid2, answer(&inv2, 200), p.now).unwrap();
    assert!(p.uas.poll_transmit().is_some(), "the dialog's 2xx retransmission goes out through the transaction");
    let ack2xx = request(Method::Ack, "z9hG4bKnewbranch", "pc33.atlanta.example.com", 314159);
    assert!(matches!(p.uas.handle_request(ack2xx, p.now).unwrap(), Routed::Stray(_)));
    let ack_same_branch = request(Method::Ack, "z9hG4bKok", "pc33.atlanta.example.com", 314159);
    assert!(matches!(p.uas.handle_request(ack_same_branch, p.now).unwrap(), Routed::Stray(_)));
    // Timer L (64*T1) ends it.
    p.uas.handle_timeout(p.now + Duration::from_millis(31_900));
    assert_eq!(p.uas.state(sid2), Some(TransactionState::Accepted));
    p.uas.handle_timeout(p.now + Duration::from_secs(32));
    assert_eq!(p.uas.state(sid2), None);
}

fn rfc2543_ack(inv: &Message, to_tag: &str) -> Message {
    let to = String::from_utf8_lossy(inv.header(HeaderName::To).unwrap()).into_owned();
    Message::request(Method::Ack, inv.request_uri_str().unwrap())
        .copy_headers(inv, HeaderName::Via)
        .copy_headers(inv, HeaderName::From)
        .header(HeaderName::To, format!("{to};tag={to_tag}"))
        .copy_headers(inv, HeaderName::CallId)
        .header(HeaderName::CSeq, "56 ACK")
        .finish()
}

#[test]
fn rfc2543_request_retransmission_and_ack_match_without_a_branch() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/torture/rfc4475/inv2543.dat");
    let bytes = Bytes::from(std::fs::read(path).unwrap());
    let inv = Message::parse(bytes.clone()).unwrap();
    assert!(!inv.via().unwrap().has_rfc3261_branch());
    let base = Instant::now();
    let mut uas = Transactions::new(Config::default());
    let Routed::New(id) = uas.handle_request(inv.clone(), base).unwrap() else { panic!("new transaction") };
    assert!(matches!(uas.poll_event(), Some((i, Event::Request(_))) if i == id));
    // The retransmission (same bytes) is the same transaction.
    assert_eq!(uas.handle_request(Message::parse(bytes.clone()).unwrap(), base).unwrap(), Routed::Matched(id));
    uas.send_response(id, inv.response_to(486, "Busy Here", Some("srv2543")).finish(), base).unwrap();
    assert_eq!(uas.poll_transmit().and_then(|(_, m)| m.status()), Some(486));
    assert_eq!(uas.handle_request(Message::parse(bytes).unwrap(), base).unwrap(), Routed::Matched(id));
    assert_eq!(uas.poll_transmit().and_then(|(_, m)| m.status()), Some(486), "the retransmission is answered");
    // The ACK matches by the To tag of the response, not the INVITE's (which had none).
    assert!(matches!(uas.handle_request(rfc2543_ack(&inv, "other"), base).unwrap(), Routed::Stray(_)));
    assert_eq!(uas.state(id), Some(TransactionState::Completed));
    assert_eq!(uas.handle_request(rfc2543_ack(&inv, "srv2543"), base).unwrap(), Routed::Matched(id));
    assert_eq!(uas.state(id), Some(TransactionState::Confirmed));
    // A new CSeq is a new transaction.
    let next = Message::parse(Bytes::from(String::from_utf8_lossy(inv.as_bytes()).replace("56 INVITE", "57 INVITE"))).unwrap();
    assert!(matches!(uas.handle_request(next, base).unwrap(), Routed::New(n) if n != id));
}

#[test]
fn every_2xx_of_a_forked_invite_matches_its_client_transaction_until_timer_m() {
    // RFC 6026 §7.2: after the first 2xx the INVITE client transaction is Accepted, so a
    // retransmitted 2xx and a second fork's 2xx (another To tag) are Matched, never Stray; a
    // proxy or B2BUA receives them as responses on the transaction it started.
    let base = Instant::now();
    let mut uac = Transactions::new(Config::default());
    let inv = invite("z9hG4bKforked");
    let id = uac.start_client(inv.clone(), base).unwrap();
    assert_eq!(uac.handle_response(wire(&answer(&inv, 200)), base).unwrap(), Routed::Matched(id));
    assert_eq!(uac.state(id), Some(TransactionState::Accepted));
    assert_eq!(uac.handle_response(wire(&answer(&inv, 200)), base).unwrap(), Routed::Matched(id));
    let fork = inv.response_to(200, "OK", Some("second-fork")).finish();
    assert_eq!(uac.handle_response(wire(&fork), base).unwrap(), Routed::Matched(id));
    let responses = std::iter::from_fn(|| uac.poll_event()).filter(|(_, e)| matches!(e, Event::Response(_))).count();
    assert_eq!(responses, 3, "each 2xx reaches the TU");
    let after_m = base + Config::default().timeout() + Duration::from_millis(1);
    uac.handle_timeout(after_m);
    assert_eq!(uac.state(id), None, "Timer M ended it");
    assert!(matches!(uac.handle_response(wire(&answer(&inv, 200)), after_m).unwrap(), Routed::Stray(_)));
}

#[test]
fn responses_route_by_branch_and_method() {
    let base = Instant::now();
    let mut uac = Transactions::new(Config::default());
    let inv = invite("z9hG4bKroute");
    let id = uac.start_client(inv.clone(), base).unwrap();
    assert_eq!(uac.handle_response(wire(&answer(&inv, 180)), base).unwrap(), Routed::Matched(id));
    let cancel = build_cancel(&inv).unwrap();
    // Same branch, CSeq method CANCEL: not this transaction (§17.1.3).
    assert!(matches!(uac.handle_response(answer(&cancel, 200), base).unwrap(), Routed::Stray(_)));
    assert!(matches!(uac.handle_response(answer(&invite("z9hG4bKother"), 200), base).unwrap(), Routed::Stray(_)));
    assert_eq!(uac.handle_response(inv.clone(), base), Err(Error::NotAResponse));
    assert_eq!(uac.start_client(inv, base), Err(Error::DuplicateKey));
}

#[test]
fn table_drives_thousands_of_transactions_to_completion_through_one_heap() {
    const N: u32 = 1_000;
    let base = Instant::now();
    let mut table = Transactions::new(Config::default());
    for i in 0..N {
        let now = base + Duration::from_millis(u64::from(i % 97));
        let method = if i % 2 == 0 { Method::Invite } else { Method::Options };
        // Client side: every other one is answered at once.
        let req = request(method.clone(), &format!("z9hG4bKc{i}"), "uac.example.com", i);
        let id = table.start_client(req.clone(), now).unwrap();
        if i % 4 < 2 {
            assert_eq!(table.handle_response(answer(&req, 486), now).unwrap(), Routed::Matched(id));
        }
        // Server side: answered with a final response, never ACKed.
        let req = request(method, &format!("z9hG4bKs{i}"), "peer.example.com", i);
        let Routed::New(id) = table.handle_request(req.clone(), now).unwrap() else { panic!() };
        table.send_response(id, answer(&req, 486), now).unwrap();
    }
    assert_eq!(table.len(), 2 * N as usize);
    let (mut timeouts, mut terminated, mut sent, mut steps) = (0, 0, 0, 0);
    let mut last = base;
    loop {
        sent += std::iter::from_fn(|| table.poll_transmit()).count();
        for (_, e) in std::iter::from_fn(|| table.poll_event()) {
            timeouts += usize::from(e == Event::Timeout);
            terminated += usize::from(e == Event::Terminated);
        }
        let Some(at) = table.poll_timeout() else { break };
        assert!(at >= last, "deadlines come out in order");
        last = at;
        table.handle_timeout(at);
        steps += 1;
        assert!(steps < 1_000_000);
    }
    assert!(table.is_empty());
    assert_eq!(terminated, 2 * N as usize);
    // Unanswered clients (B/F) and unACKed INVITE servers (H) time out.
    assert_eq!(timeouts, (N / 2 + N / 2) as usize);
    assert!(last <= base + Duration::from_millis(96) + Duration::from_secs(32), "nothing outlives 64*T1 or Timer D");
    assert!(sent > 4 * N as usize);
}
