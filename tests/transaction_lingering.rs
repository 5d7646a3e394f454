//! Transactions that only wait out their last timer, in the table's short form (issue 16 point 4):
//! each behaves as its figure says (RFC 3261 §17, RFC 6026) while holding only its key and, for a
//! server in Completed, the bytes of its final response (an INVITE client in Completed: its ACK).
//!
//! Setup: one `Transactions` table per test on a virtual clock (a base `Instant` plus offsets);
//! every received message is serialized and parsed again, as a datagram would be. Asserts: what
//! is sent (byte for byte for a retransmitted answer), how each message is routed, the state, the
//! request no longer being kept, and the timer that ends each transaction.

use bytes::Bytes;
use std::time::{Duration, Instant};
use switchboard::message::{CSeq, HeaderName, Message, Method};
use switchboard::transaction::{build_ack, CancelTarget, Config, Error, Event, Routed, TransactionId, TransactionState, Transactions};

fn request(method: Method, branch: &str) -> Message {
    Message::request(method.clone(), "sip:bob@biloxi.example.com")
        .header(HeaderName::Via, format!("SIP/2.0/UDP pc33.atlanta.example.com:5060;branch={branch};rport"))
        .header(HeaderName::MaxForwards, 70)
        .header(HeaderName::To, "Bob <sip:bob@biloxi.example.com>")
        .header(HeaderName::From, "Alice <sip:alice@atlanta.example.com>;tag=1928301774")
        .header(HeaderName::CallId, format!("{branch}@pc33.atlanta.example.com"))
        .header(HeaderName::CSeq, CSeq { seq: 1, method })
        .header(HeaderName::Contact, "<sip:alice@pc33.atlanta.example.com>")
        .finish()
}

/// As a datagram: serialize and parse again.
fn wire(msg: &Message) -> Message {
    Message::parse(Bytes::copy_from_slice(msg.as_bytes())).expect("what we send parses")
}

fn sent(table: &mut Transactions) -> Vec<(TransactionId, Message)> {
    std::iter::from_fn(|| table.poll_transmit()).collect()
}

fn events(table: &mut Transactions) -> Vec<(TransactionId, Event)> {
    std::iter::from_fn(|| table.poll_event()).collect()
}

/// A new server transaction for `req` at `now`, its Request event drained.
fn open(table: &mut Transactions, req: &Message, now: Instant) -> TransactionId {
    let Ok(Routed::New(id)) = table.handle_request(wire(req), now) else { panic!("a new transaction") };
    assert!(matches!(events(table).as_slice(), [(i, Event::Request(_))] if *i == id));
    id
}

#[test]
fn completed_non_invite_server_answers_retransmissions_with_the_same_bytes_until_timer_j() {
    let (base, config) = (Instant::now(), Config::default());
    let mut table = Transactions::new(config);
    let options = request(Method::Options, "z9hG4bKopt1");
    let id = open(&mut table, &options, base);
    let ok = options.response_to(200, "OK", Some("uas1")).header(HeaderName::Allow, "INVITE, ACK, BYE, OPTIONS").finish();
    table.send_response(id, ok.clone(), base).unwrap();
    assert_eq!(sent(&mut table).len(), 1);
    // Completed, in the short form: no request kept.
    assert_eq!(table.state(id), Some(TransactionState::Completed));
    assert!(table.request(id).is_none(), "the short form keeps no request");
    // Each retransmission gets the identical bytes (§17.2.2), and nothing reaches the TU.
    for k in 1..=3 {
        let at = base + Duration::from_secs(k);
        assert_eq!(table.handle_request(wire(&options), at), Ok(Routed::Matched(id)));
        let out = sent(&mut table);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0, out[0].1.as_bytes()), (id, ok.as_bytes()), "retransmission {k}: the same 200, byte for byte");
        assert!(events(&mut table).is_empty());
    }
    // The TU cannot answer again; a stateless forget still works.
    assert_eq!(table.send_response(id, options.response_to(500, "Oops", Some("uas1")).finish(), base), Err(Error::FinalAlreadySent));
    // Timer J ends it 64*T1 after the 200, not before.
    assert_eq!(table.poll_timeout(), Some(base + config.timeout()));
    table.handle_timeout(base + config.timeout() - Duration::from_millis(1));
    assert_eq!(table.state(id), Some(TransactionState::Completed));
    table.handle_timeout(base + config.timeout());
    assert!(matches!(events(&mut table).as_slice(), [(i, Event::Terminated)] if *i == id));
    assert!(table.is_empty() && table.poll_timeout().is_none() && table.index_sizes() == (0, 0));
    // A retransmission after Timer J is a new transaction.
    assert!(matches!(table.handle_request(wire(&options), base + config.timeout()), Ok(Routed::New(_))));
}

#[test]
fn lingering_server_transactions_end_on_transport_error_or_when_forgotten() {
    let base = Instant::now();
    let mut table = Transactions::new(Config::default());
    let (a, b) = (request(Method::Register, "z9hG4bKreg1"), request(Method::Register, "z9hG4bKreg2"));
    let (ida, idb) = (open(&mut table, &a, base), open(&mut table, &b, base));
    table.send_response(ida, a.response_to(200, "OK", Some("r1")).finish(), base).unwrap();
    table.send_response(idb, b.response_to(200, "OK", Some("r2")).finish(), base).unwrap();
    sent(&mut table);
    table.handle_transport_error(ida, base).unwrap();
    let ev: Vec<_> = events(&mut table).into_iter().map(|(_, e)| e).collect();
    assert_eq!(ev, vec![Event::TransportError, Event::Terminated]);
    table.forget_server(idb).unwrap();
    assert!(events(&mut table).is_empty(), "forgetting reports nothing");
    assert!(table.is_empty() && table.index_sizes().0 == 0);
}

#[test]
fn invite_server_completed_matches_its_ack_then_confirmed_absorbs_until_timer_i() {
    let (base, config) = (Instant::now(), Config::default());
    let mut table = Transactions::new(config);
    let invite = request(Method::Invite, "z9hG4bKinv486");
    let id = open(&mut table, &invite, base);
    let busy = invite.response_to(486, "Busy Here", Some("uas486")).finish();
    table.send_response(id, busy.clone(), base).unwrap();
    sent(&mut table);
    // Completed, in the short form: a retransmitted INVITE gets the same 486 again and the ACK
    // for it is matched (§17.2.1).
    assert_eq!(table.state(id), Some(TransactionState::Completed));
    assert!(table.request(id).is_none());
    assert_eq!(table.handle_request(wire(&invite), base), Ok(Routed::Matched(id)));
    assert_eq!(sent(&mut table).iter().map(|(_, m)| m.as_bytes().clone()).collect::<Vec<_>>(), vec![busy.as_bytes().clone()]);
    let ack = build_ack(&invite, &busy).unwrap();
    let acked = base + Duration::from_millis(100);
    assert_eq!(table.handle_request(wire(&ack), acked), Ok(Routed::Matched(id)));
    // Confirmed, in the short form: further ACKs and INVITEs are absorbed, nothing is sent.
    assert_eq!(table.state(id), Some(TransactionState::Confirmed));
    assert!(table.request(id).is_none());
    assert_eq!(table.handle_request(wire(&ack), acked), Ok(Routed::Matched(id)));
    assert_eq!(table.handle_request(wire(&invite), acked), Ok(Routed::Matched(id)));
    assert!(sent(&mut table).is_empty() && events(&mut table).is_empty());
    // A CANCEL now finds the INVITE answered (§9.2).
    let Ok(Routed::Cancel { target, .. }) = table.handle_request(wire(&request(Method::Cancel, "z9hG4bKinv486")), acked) else {
        panic!("a CANCEL opens its own transaction")
    };
    assert_eq!(target, CancelTarget::Answered(id));
    // Timer I (T4) ends it.
    let timer_i = acked + config.t4;
    while let Some(due) = table.poll_timeout().filter(|&d| d <= timer_i) {
        table.handle_timeout(due);
    }
    assert_eq!(table.state(id), None, "Timer I ended it");
    assert!(events(&mut table).iter().any(|(i, e)| *i == id && *e == Event::Terminated));
}

#[test]
fn invite_server_completed_resends_by_timer_g_doubling_to_t2_until_timer_h() {
    let (base, config) = (Instant::now(), Config::default());
    let mut table = Transactions::new(config);
    let invite = request(Method::Invite, "z9hG4bKinv603");
    let id = open(&mut table, &invite, base);
    let decline = invite.response_to(603, "Decline", Some("uas603")).finish();
    table.send_response(id, decline.clone(), base).unwrap();
    sent(&mut table);
    assert!(table.request(id).is_none(), "Completed is in the short form");
    // No ACK: Timer G at T1, 2*T1, 4*T1, then every T2 (§17.2.1), each the same bytes, until Timer
    // H at 64*T1 reports the timeout and ends the transaction.
    let (mut resent, mut expected, mut interval) = (Vec::new(), Vec::new(), config.t1);
    let mut g = base + config.t1;
    while g < base + config.timeout() {
        expected.push(g);
        interval = (interval * 2).min(config.t2);
        g += interval;
    }
    let mut ended = Vec::new();
    while let Some(due) = table.poll_timeout() {
        table.handle_timeout(due);
        for (i, msg) in sent(&mut table) {
            assert_eq!((i, msg.as_bytes()), (id, decline.as_bytes()));
            resent.push(due);
        }
        ended.extend(events(&mut table).into_iter().map(|(i, e)| (i, e, due)));
    }
    assert_eq!(resent, expected, "Timer G fired at T1, 3*T1, 7*T1, then every T2");
    assert_eq!(resent.len(), 10);
    let at_h = base + config.timeout();
    assert_eq!(ended, vec![(id, Event::Timeout, at_h), (id, Event::Terminated, at_h)]);
    assert_eq!(table.retransmissions(), 10);
    assert!(table.is_empty() && table.index_sizes() == (0, 0));
}

#[test]
fn invite_server_accepted_absorbs_invites_passes_2xx_and_leaves_the_ack_to_the_dialog() {
    let (base, config) = (Instant::now(), Config::default());
    let mut table = Transactions::new(config);
    let invite = request(Method::Invite, "z9hG4bKinv200");
    let id = open(&mut table, &invite, base);
    let ok = invite.response_to(200, "OK", Some("uas200")).finish();
    table.send_response(id, ok.clone(), base).unwrap();
    sent(&mut table);
    assert_eq!(table.state(id), Some(TransactionState::Accepted));
    assert!(table.request(id).is_none());
    // RFC 6026 §8.7: a retransmitted INVITE is absorbed, not a new request.
    assert_eq!(table.handle_request(wire(&invite), base), Ok(Routed::Matched(id)));
    assert!(sent(&mut table).is_empty() && events(&mut table).is_empty());
    // The TU's 2xx retransmission (§13.3.1.4) is sent; a non-2xx is refused.
    table.send_response(id, ok.clone(), base + Duration::from_millis(500)).unwrap();
    assert_eq!(sent(&mut table).into_iter().map(|(i, m)| (i, m.status())).collect::<Vec<_>>(), vec![(id, Some(200))]);
    assert_eq!(table.send_response(id, invite.response_to(500, "Oops", Some("uas200")).finish(), base), Err(Error::FinalAlreadySent));
    // An ACK reusing the INVITE's branch acknowledges the 2xx: the dialog's, handed back (RFC 6026
    // §8.6).
    let ack = request(Method::Ack, "z9hG4bKinv200");
    assert!(matches!(table.handle_request(wire(&ack), base), Ok(Routed::Stray(_))));
    // Timer L (64*T1) ends it.
    table.handle_timeout(base + config.timeout());
    assert_eq!(table.state(id), None, "Timer L ended it");
    assert!(table.is_empty() && table.poll_timeout().is_none());
}

#[test]
fn completed_non_invite_client_absorbs_response_retransmissions_until_timer_k() {
    let (base, config) = (Instant::now(), Config::default());
    let mut table = Transactions::new(config);
    let bye = request(Method::Bye, "z9hG4bKbye1");
    let id = table.start_client(bye.clone(), base).unwrap();
    sent(&mut table);
    let ok = bye.response_to(200, "OK", Some("uas1")).finish();
    let at = base + Duration::from_millis(50);
    assert_eq!(table.handle_response(wire(&ok), at), Ok(Routed::Matched(id)));
    assert!(matches!(events(&mut table).as_slice(), [(i, Event::Response(_))] if *i == id));
    assert_eq!(table.state(id), Some(TransactionState::Completed));
    assert!(table.request(id).is_none());
    // The retransmitted 200 is absorbed: matched, not reported again (§17.1.2.2).
    assert_eq!(table.handle_response(wire(&ok), at), Ok(Routed::Matched(id)));
    assert!(events(&mut table).is_empty() && sent(&mut table).is_empty());
    assert_eq!(table.cancel(id, at), Err(Error::WrongRole));
    // Timer K (T4) ends it.
    assert_eq!(table.poll_timeout(), Some(at + config.t4));
    table.handle_timeout(at + config.t4);
    assert!(matches!(events(&mut table).as_slice(), [(i, Event::Terminated)] if *i == id));
    assert!(table.is_empty() && table.index_sizes() == (0, 0));
}

/// RFC 6026 §8.4: an INVITE client in Accepted keeps only its key, yet every further 2xx, a
/// retransmission of the first or another fork's (another To tag), still goes to the TU, whose
/// dialog layer ACKs each (§13.2.2.4); 1xx and 300-699 are absorbed; a CANCEL is too late; Timer M
/// (64*T1) ends it.
#[test]
fn accepted_invite_client_passes_every_2xx_to_the_tu_until_timer_m() {
    let (base, config) = (Instant::now(), Config::default());
    let mut table = Transactions::new(config);
    let invite = request(Method::Invite, "z9hG4bKinv1");
    let id = table.start_client(invite.clone(), base).unwrap();
    assert_eq!(sent(&mut table).len(), 1);
    let at = base + Duration::from_millis(80);
    let ok = |tag: &str| invite.response_to(200, "OK", Some(tag)).header(HeaderName::Contact, "<sip:bob@192.0.2.4>").finish();
    assert_eq!(table.handle_response(wire(&ok("b1")), at), Ok(Routed::Matched(id)));
    assert!(matches!(events(&mut table).as_slice(), [(i, Event::Response(r))] if *i == id && r.to_tag().ok().flatten() == Some("b1")));
    assert_eq!(table.state(id), Some(TransactionState::Accepted));
    assert!(table.request(id).is_none(), "Accepted keeps no request");
    assert_eq!(table.poll_timeout(), Some(at + config.timeout()), "Timer M");
    // The same 2xx again, then another fork's: each reaches the TU, nothing is sent by the
    // transaction (the ACK for a 2xx is the dialog's).
    for (n, tag) in ["b1", "b2", "b1"].into_iter().enumerate() {
        let later = at + Duration::from_millis(500 * (n as u64 + 1));
        assert_eq!(table.handle_response(wire(&ok(tag)), later), Ok(Routed::Matched(id)));
        assert!(
            matches!(events(&mut table).as_slice(), [(i, Event::Response(r))] if *i == id && r.to_tag().ok().flatten() == Some(tag)),
            "2xx from {tag} to the TU"
        );
        assert!(sent(&mut table).is_empty());
    }
    // Late provisional and failure responses are absorbed.
    for code in [180, 486] {
        let late = invite.response_to(code, "Late", Some("b3")).finish();
        assert_eq!(table.handle_response(wire(&late), at + Duration::from_secs(2)), Ok(Routed::Matched(id)));
        assert!(events(&mut table).is_empty() && sent(&mut table).is_empty(), "{code} absorbed");
    }
    assert_eq!(table.cancel(id, at), Err(Error::CancelTooLate));
    assert_eq!(table.send_response(id, ok("b1"), at), Err(Error::WrongRole));
    // Timer M, not earlier.
    table.handle_timeout(at + config.timeout() - Duration::from_millis(1));
    assert_eq!(table.state(id), Some(TransactionState::Accepted));
    table.handle_timeout(at + config.timeout());
    assert!(matches!(events(&mut table).as_slice(), [(i, Event::Terminated)] if *i == id));
    assert!(table.is_empty() && table.index_sizes() == (0, 0));
    // After Timer M a 2xx matches no transaction: a stray, for the dialog layer.
    assert!(matches!(table.handle_response(wire(&ok("b1")), at + config.timeout()), Ok(Routed::Stray(_))));
}

/// Figure 5 Completed in the short form: the ACK for the 300-699 is sent again, byte for byte,
/// for each retransmission of it, and the TU hears of the failure once; Timer D (32 s) ends it.
#[test]
fn completed_invite_client_resends_its_ack_until_timer_d() {
    let (base, config) = (Instant::now(), Config::default());
    let mut table = Transactions::new(config);
    let invite = request(Method::Invite, "z9hG4bKinv2");
    let id = table.start_client(invite.clone(), base).unwrap();
    sent(&mut table);
    let busy = invite.response_to(486, "Busy Here", Some("b9")).finish();
    let at = base + Duration::from_millis(60);
    assert_eq!(table.handle_response(wire(&busy), at), Ok(Routed::Matched(id)));
    let first = sent(&mut table);
    assert!(matches!(first.as_slice(), [(i, ack)] if *i == id && ack.method() == Some(&Method::Ack)));
    assert!(matches!(events(&mut table).as_slice(), [(i, Event::Response(r))] if *i == id && r.status() == Some(486)));
    assert_eq!(table.state(id), Some(TransactionState::Completed));
    assert!(table.request(id).is_none(), "Completed keeps no request");
    assert_eq!(table.cancel(id, at), Err(Error::CancelTooLate));
    for n in 1..=2u64 {
        assert_eq!(table.handle_response(wire(&busy), at + Duration::from_secs(n)), Ok(Routed::Matched(id)));
        let again = sent(&mut table);
        assert!(matches!(again.as_slice(), [(i, ack)] if *i == id && ack.as_bytes() == first[0].1.as_bytes()), "the same ACK");
        assert!(events(&mut table).is_empty(), "the TU hears of the 486 once");
    }
    // A late 2xx or 1xx is absorbed.
    let late = invite.response_to(200, "OK", Some("b8")).finish();
    assert_eq!(table.handle_response(wire(&late), at + Duration::from_secs(3)), Ok(Routed::Matched(id)));
    assert!(events(&mut table).is_empty() && sent(&mut table).is_empty());
    assert_eq!(table.poll_timeout(), Some(at + Config::TIMER_D), "Timer D");
    table.handle_timeout(at + Config::TIMER_D);
    assert!(matches!(events(&mut table).as_slice(), [(i, Event::Terminated)] if *i == id));
    assert!(table.is_empty() && table.index_sizes() == (0, 0));
}

#[test]
fn a_reliable_transport_ends_completed_transactions_at_once() {
    // Table 4: Timers J, I and K are zero on TCP, so nothing lingers and no short form is made.
    let base = Instant::now();
    let mut table = Transactions::new(Config::default());
    let tcp = wire(
        &Message::parse(Bytes::from(
            String::from_utf8_lossy(request(Method::Options, "z9hG4bKtcp1").as_bytes()).replace("SIP/2.0/UDP", "SIP/2.0/TCP"),
        ))
        .unwrap(),
    );
    let id = open(&mut table, &tcp, base);
    table.send_response(id, tcp.response_to(200, "OK", Some("t1")).finish(), base).unwrap();
    assert_eq!(table.state(id), None);
    assert!(table.is_empty());
    assert!(matches!(events(&mut table).as_slice(), [(i, Event::Terminated)] if *i == id));
    sent(&mut table);
    // An INVITE's 486 over TCP: no Timer G; the ACK ends the transaction at once (Timer I = 0).
    let tcp_invite = |method: Method| {
        Message::parse(Bytes::from(
            String::from_utf8_lossy(request(method, "z9hG4bKtcp2").as_bytes()).replace("SIP/2.0/UDP", "SIP/2.0/TCP"),
        ))
        .unwrap()
    };
    let invite = tcp_invite(Method::Invite);
    let id = open(&mut table, &invite, base);
    let busy = invite.response_to(486, "Busy Here", Some("t2")).finish();
    table.send_response(id, busy.clone(), base).unwrap();
    assert_eq!(sent(&mut table).len(), 1);
    assert_eq!(table.state(id), Some(TransactionState::Completed));
    assert_eq!(table.poll_timeout(), Some(base + Config::default().timeout()), "only Timer H");
    assert_eq!(table.handle_request(wire(&build_ack(&invite, &busy).unwrap()), base), Ok(Routed::Matched(id)));
    assert!(matches!(events(&mut table).as_slice(), [(i, Event::Terminated)] if *i == id));
    assert!(table.is_empty() && table.poll_timeout().is_none());
}

/// A final response the TU can build again (`send_rebuildable_response`, issue 16): once
/// Completed the transaction keeps no response and its id ends at once, but it still counts until
/// Timer J; the request retransmitted byte for byte comes back as `Routed::Repeated`, the same key
/// with other bytes is absorbed, and Timer J (never early: deadlines are kept in whole
/// milliseconds rounded up, and one earlier than the last queued waits for it) ends it silently.
#[test]
fn rebuildable_completed_non_invite_server_hands_back_retransmissions_until_timer_j() {
    let (base, config) = (Instant::now(), Config::default());
    let timer_j = config.timeout();
    let mut table = Transactions::new(config);
    let reqs: Vec<Message> = (1..=3).map(|i| request(Method::Register, &format!("z9hG4bKreg{i}"))).collect();
    // Answered at 0, 400 µs and (a clock that went back) 100 µs.
    for (req, at) in reqs.iter().zip([0, 400, 100].map(|us| base + Duration::from_micros(us))) {
        let id = open(&mut table, req, at);
        table.send_rebuildable_response(id, req.response_to(200, "OK", Some("r1")).finish(), at).unwrap();
        assert_eq!(sent(&mut table).len(), 1, "the 200 is sent");
        assert_eq!(events(&mut table), [(id, Event::Terminated)], "the id ends at once");
        assert_eq!(table.state(id), None);
    }
    assert_eq!((table.len(), table.compact_len()), (3, 3), "all three count until Timer J");

    // The retransmission comes back for the TU; the same key with other bytes is absorbed.
    let again = wire(&reqs[0]);
    assert_eq!(table.handle_request(again.clone(), base + Duration::from_secs(1)), Ok(Routed::Repeated(again)));
    // The same bytes stamped from another source (a replay from elsewhere, or a NAT binding that
    // moved): absorbed, so no rebuilt 200 goes anywhere the first one did not.
    let moved = String::from_utf8_lossy(reqs[0].as_bytes()).replace(";rport\r\n", ";rport=6000;received=192.0.2.9\r\n");
    let moved = Message::parse(Bytes::from(moved)).expect("parses");
    assert_eq!(table.handle_request(moved, base + Duration::from_secs(1)), Ok(Routed::Absorbed));
    let changed = String::from_utf8_lossy(reqs[0].as_bytes()).replace("<sip:alice@pc33", "<sip:alicf@pc33");
    let other = Message::parse(Bytes::from(changed)).expect("parses");
    assert_eq!(table.handle_request(other, base + Duration::from_secs(1)), Ok(Routed::Absorbed));
    assert!(sent(&mut table).is_empty() && events(&mut table).is_empty());

    // Timer J: the first at 32 s; the others at 32.001 s (400 µs rounded up, and the one answered
    // "before" it waits for it).
    assert_eq!(table.poll_timeout(), Some(base + timer_j));
    table.handle_timeout(base + timer_j);
    assert_eq!(table.len(), 2);
    let end = base + timer_j + Duration::from_millis(1);
    assert_eq!(table.poll_timeout(), Some(end));
    table.handle_timeout(end - Duration::from_micros(1));
    assert_eq!(table.len(), 2, "not before Timer J");
    table.handle_timeout(end);
    assert!(sent(&mut table).is_empty() && events(&mut table).is_empty(), "Timer J sends and reports nothing");
    assert_eq!((table.len(), table.index_sizes(), table.poll_timeout()), (0, (0, 0), None));
    // Now the same request is a new one.
    let Ok(Routed::New(_)) = table.handle_request(wire(&reqs[0]), end) else { panic!("a new transaction after Timer J") };
}

/// `send_rebuildable_response` where no compact entry results (issue 16: it now settles the
/// Completed transaction straight into the compact table, and otherwise as `send_response`): a
/// provisional answer leaves the transaction whole (its id lives, its final answer compacts it); a
/// second final answer is refused as before; over TCP (no Timer J) the 200 ends the transaction at
/// once; a request with an RFC 2543 key lingers in the short form and retransmits its 200.
#[test]
fn rebuildable_response_without_a_compact_entry_ends_as_send_response() {
    let (base, config) = (Instant::now(), Config::default());
    let timer_j = config.timeout();
    let mut table = Transactions::new(config);

    let req = request(Method::Register, "z9hG4bKprov");
    let id = open(&mut table, &req, base);
    table.send_rebuildable_response(id, req.response_to(100, "Trying", None).finish(), base).unwrap();
    assert_eq!(sent(&mut table).len(), 1);
    assert!(events(&mut table).is_empty(), "a provisional answer ends nothing");
    assert_eq!(table.state(id), Some(TransactionState::Proceeding));
    assert_eq!((table.len(), table.compact_len()), (1, 0));
    table.send_rebuildable_response(id, req.response_to(200, "OK", Some("r1")).finish(), base).unwrap();
    assert_eq!(sent(&mut table).len(), 1);
    assert_eq!(events(&mut table), [(id, Event::Terminated)]);
    assert_eq!((table.len(), table.compact_len(), table.index_sizes()), (1, 1, (1, 1)));
    assert_eq!(
        table.send_rebuildable_response(id, req.response_to(200, "OK", Some("r1")).finish(), base),
        Err(Error::UnknownTransaction),
        "its id ended"
    );

    // TCP: Timer J is zero, so Completed ends at once and nothing is kept.
    let tcp = String::from_utf8_lossy(request(Method::Register, "z9hG4bKtcp").as_bytes()).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let tcp = Message::parse(Bytes::from(tcp)).expect("parses");
    let id = open(&mut table, &tcp, base);
    table.send_rebuildable_response(id, tcp.response_to(200, "OK", Some("r2")).finish(), base).unwrap();
    assert_eq!(sent(&mut table).len(), 1);
    assert_eq!(events(&mut table), [(id, Event::Terminated)]);
    assert_eq!(table.state(id), None);
    assert_eq!((table.len(), table.compact_len()), (1, 1), "only the UDP one is kept");

    // An RFC 2543 key (no magic cookie): the short form with its 200, as `send_response` leaves it.
    let old = request(Method::Register, "old-branch");
    let id = open(&mut table, &old, base);
    table.send_rebuildable_response(id, old.response_to(200, "OK", Some("r3")).finish(), base).unwrap();
    let first = sent(&mut table);
    assert_eq!(first.len(), 1);
    assert!(events(&mut table).is_empty(), "its id lives until Timer J");
    assert_eq!(table.state(id), Some(TransactionState::Completed));
    assert_eq!(table.handle_request(wire(&old), base + Duration::from_secs(1)), Ok(Routed::Matched(id)));
    let again = sent(&mut table);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.as_bytes(), first[0].1.as_bytes(), "the same 200 again");
    assert_eq!((table.len(), table.compact_len()), (2, 1));

    table.handle_timeout(base + timer_j + Duration::from_millis(1));
    assert_eq!(events(&mut table), [(id, Event::Terminated)]);
    assert_eq!((table.len(), table.index_sizes(), table.poll_timeout()), (0, (0, 0), None));
}
