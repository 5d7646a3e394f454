//! Reliable provisional responses (RFC 3262) and UPDATE (RFC 3311) between Alice (UAC) and Bob
//! (UAS) on a virtual clock with T1 = 500 ms: RSeq/Require on Bob's 18x, its retransmissions at
//! T1 doubling until the PRACK and the 500 after 64*T1, Alice's PRACK with RAck (once per RSeq:
//! retransmissions are not PRACKed again), 481 for a PRACK that matches nothing, the 2xx held for
//! the PRACK of an 18x with SDP, 420/421 when the 100rel modes do not fit, UPDATE in the early
//! dialog both ways, and UPDATE glare (491) and overlap (500 + Retry-After) in a confirmed dialog.
//! Session refresh by UPDATE (RFC 4028) is in tests/dialog_session_timers.rs
//! (`uas_refresher_sends_update_at_half_the_interval`).

#[path = "dialog_support/mod.rs"]
mod support;

use bytes::Bytes;
use support::{alice_config, bob_config, call_params, sdp, secs, Pair, Who};
use switchboard::dialog::{DialogConfig, DialogError, DialogId, DialogState, EndReason, Event, Rel100};
use switchboard::message::{HeaderName, Message, Method};

fn header(m: &Message, name: HeaderName) -> String {
    String::from_utf8_lossy(m.header(name).unwrap_or_default()).into_owned()
}

fn times(p: &Pair, from: Who, start: &str) -> Vec<f64> {
    p.sent_by(from, start).iter().map(|s| secs(s.at)).collect()
}

fn bob_requires() -> Pair {
    Pair::new(alice_config(), DialogConfig { rel100: Rel100::Required, ..bob_config() })
}

/// Alice calls; returns Bob's id of the new dialog.
fn call(p: &mut Pair) -> DialogId {
    p.alice.invite(call_params(), p.now).expect("invite");
    p.flush();
    p.incoming().expect("Bob sees the INVITE")
}

fn early_id(events: &[Event]) -> Option<DialogId> {
    events.iter().find_map(|e| match e {
        Event::Early { id } => Some(id.clone()),
        _ => None,
    })
}

fn reoffer(events: &[Event]) -> Option<Message> {
    events.iter().rev().find_map(|e| match e {
        Event::Reoffer { request, .. } => Some(request.clone()),
        _ => None,
    })
}

fn is_prack(m: &Message) -> bool {
    m.method() == Some(&Method::Prack)
}

#[test]
fn reliable_183_is_pracked_and_the_call_completes() {
    let mut p = bob_requires();
    let bob_id = call(&mut p);
    let invite = &p.sent_by(Who::Alice, "INVITE")[0].msg;
    assert!(invite.tokens(HeaderName::Supported).any(|t| t.is_ok_and(|t| t == "100rel")), "Alice supports 100rel by default");

    p.bob.progress(&bob_id, 183, Some(sdp(Who::Bob, 1, "sendrecv")), p.now).unwrap();
    p.flush();
    let r183 = &p.sent_by(Who::Bob, "SIP/2.0 183")[0].msg;
    assert_eq!(header(r183, HeaderName::Require), "100rel");
    let rseq: u32 = header(r183, HeaderName::RSeq).parse().expect("RSeq is a number");
    assert!(rseq >= 1);
    let pracks = p.sent_by(Who::Alice, "PRACK");
    assert_eq!(pracks.len(), 1);
    assert_eq!(header(&pracks[0].msg, HeaderName::RAck), format!("{rseq} 1 INVITE"));
    assert_eq!(pracks[0].msg.cseq().unwrap().to_string(), "2 PRACK");
    let ok = p.sent_by(Who::Bob, "SIP/2.0 200");
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].msg.cseq().unwrap().method, Method::Prack);
    let alice_id = early_id(&p.alice_events).unwrap();
    assert!(p.alice.get(&alice_id).unwrap().peer_sent_reliable());
    assert!(!p.bob.get(&bob_id).unwrap().awaiting_prack());

    // No retransmissions after the PRACK; a second reliable 18x gets the next RSeq.
    p.run_until(5.0);
    assert_eq!(times(&p, Who::Bob, "SIP/2.0 183"), [0.0]);
    p.bob.progress(&bob_id, 180, None, p.now).unwrap();
    p.flush();
    assert_eq!(header(&p.sent_by(Who::Bob, "SIP/2.0 180")[0].msg, HeaderName::RSeq), (rseq + 1).to_string());
    assert_eq!(header(&p.sent_by(Who::Alice, "PRACK")[1].msg, HeaderName::RAck), format!("{} 1 INVITE", rseq + 1));

    p.bob.accept(&bob_id, Some(sdp(Who::Bob, 1, "sendrecv")), p.now).unwrap();
    p.flush();
    assert!(p.alice_events.iter().any(|e| matches!(e, Event::Established { .. })));
    assert!(p.bob_events.iter().any(|e| matches!(e, Event::Acked { .. })));
}

#[test]
fn unpracked_183_is_resent_at_t1_doubling_then_500_after_64_t1() {
    let mut p = bob_requires();
    p.drop = Box::new(|from, m| from == Who::Alice && is_prack(m));
    let bob_id = call(&mut p);
    p.bob.progress(&bob_id, 183, None, p.now).unwrap();
    p.run_until(40.0);

    assert_eq!(times(&p, Who::Bob, "SIP/2.0 183"), [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]);
    assert_eq!(times(&p, Who::Bob, "SIP/2.0 500"), [32.0]);
    assert_eq!(p.sent_by(Who::Bob, "SIP/2.0 500")[0].msg.cseq().unwrap().method, Method::Invite);
    // Every copy has the same RSeq, and Alice PRACKed it once: the copies are retransmissions.
    let rseqs: Vec<String> = p.sent_by(Who::Bob, "SIP/2.0 183").iter().map(|s| header(&s.msg, HeaderName::RSeq)).collect();
    assert!(rseqs.iter().all(|r| *r == rseqs[0]), "{rseqs:?}");
    assert_eq!(times(&p, Who::Alice, "PRACK"), [0.0]);
    assert_eq!(p.terminations(Who::Bob), [EndReason::Rejected(500)]);
    assert_eq!(p.terminations(Who::Alice), [EndReason::Rejected(500)]);
}

#[test]
fn the_prack_stops_the_retransmissions() {
    let mut p = bob_requires();
    let mut lost = 0;
    // Bob's first two copies are lost; Alice PRACKs the third (sent at 1.5 s).
    p.drop = Box::new(move |from, m| {
        let drop = from == Who::Bob && m.status() == Some(183) && lost < 2;
        lost += usize::from(drop);
        drop
    });
    let bob_id = call(&mut p);
    p.bob.progress(&bob_id, 183, None, p.now).unwrap();
    p.run_until(40.0);
    assert_eq!(times(&p, Who::Bob, "SIP/2.0 183"), [0.0, 0.5, 1.5]);
    assert_eq!(times(&p, Who::Alice, "PRACK"), [1.5]);
    assert!(p.sent_by(Who::Bob, "SIP/2.0 500").is_empty());
    assert!(p.terminations(Who::Bob).is_empty());
}

#[test]
fn the_2xx_waits_for_the_prack_of_an_18x_with_sdp() {
    let mut p = bob_requires();
    let mut lost = false;
    p.drop = Box::new(move |from, m| {
        let drop = from == Who::Bob && m.status() == Some(183) && !lost;
        lost |= drop;
        drop
    });
    let bob_id = call(&mut p);
    p.bob.progress(&bob_id, 183, Some(sdp(Who::Bob, 1, "sendrecv")), p.now).unwrap();
    p.flush();
    p.bob.accept(&bob_id, Some(sdp(Who::Bob, 1, "sendrecv")), p.now).unwrap();
    p.flush();
    assert!(p.sent_by(Who::Bob, "SIP/2.0 200").is_empty(), "held until the PRACK");
    p.run_until(5.0);
    // The copy at 0.5 s is PRACKed; then the 200 to the PRACK and the 200 to the INVITE.
    let oks: Vec<(f64, Method)> = p.sent_by(Who::Bob, "SIP/2.0 200").iter().map(|s| (secs(s.at), s.msg.cseq().unwrap().method)).collect();
    assert_eq!(oks, [(0.5, Method::Prack), (0.5, Method::Invite)]);
    assert!(p.alice_events.iter().any(|e| matches!(e, Event::Established { .. })));
    assert_eq!(times(&p, Who::Bob, "SIP/2.0 183"), [0.0, 0.5]);
}

#[test]
fn a_2xx_after_an_18x_without_sdp_goes_at_once_and_a_crossing_prack_still_gets_200() {
    let mut p = bob_requires();
    p.drop = Box::new(|from, m| from == Who::Alice && is_prack(m));
    let bob_id = call(&mut p);
    p.bob.progress(&bob_id, 180, None, p.now).unwrap();
    p.flush();
    p.bob.accept(&bob_id, Some(sdp(Who::Bob, 1, "sendrecv")), p.now).unwrap();
    p.run_until(10.0);
    assert_eq!(times(&p, Who::Bob, "SIP/2.0 180"), [0.0]);
    assert_eq!(times(&p, Who::Bob, "SIP/2.0 200"), [0.0]);
    assert!(p.bob_events.iter().any(|e| matches!(e, Event::Acked { .. })));
    // Alice's PRACK, delayed past the 2xx, still matches the 180 and gets 200 (RFC 3262 §3).
    let prack = p.sent_by(Who::Alice, "PRACK")[0].msg.clone();
    p.bob.handle_request(&prack, p.now).unwrap();
    let r = p.bob.poll_transmit().expect("an answer to the PRACK");
    assert_eq!((r.status(), r.cseq().unwrap().method), (Some(200), Method::Prack));
    // Another copy (the transaction layer would absorb it) matches nothing any more.
    p.bob.handle_request(&prack, p.now).unwrap();
    assert_eq!(p.bob.poll_transmit().and_then(|r| r.status()), Some(481));
}

#[test]
fn a_prack_that_matches_nothing_gets_481() {
    let mut p = bob_requires();
    p.rewrite = Box::new(|from, m| {
        if from != Who::Alice || !is_prack(&m) {
            return m;
        }
        let text = String::from_utf8_lossy(m.as_bytes()).into_owned();
        let rack = header(&m, HeaderName::RAck);
        let wrong = format!("{} 1 INVITE", rack.split(' ').next().unwrap().parse::<u32>().unwrap() + 7);
        Message::parse(Bytes::from(text.replace(&rack, &wrong))).unwrap()
    });
    let bob_id = call(&mut p);
    p.bob.progress(&bob_id, 183, None, p.now).unwrap();
    p.flush();
    let r481 = p.sent_by(Who::Bob, "SIP/2.0 481");
    assert_eq!(r481.len(), 1);
    assert_eq!(r481[0].msg.cseq().unwrap().method, Method::Prack);
    assert!(p.bob.get(&bob_id).unwrap().awaiting_prack(), "the 183 still waits for its PRACK");
}

#[test]
fn modes_that_do_not_fit_get_420_or_421_and_supported_alone_stays_unreliable() {
    // Bob requires 100rel, Alice has it off: 421 with Require: 100rel.
    let mut p =
        Pair::new(DialogConfig { rel100: Rel100::Off, ..alice_config() }, DialogConfig { rel100: Rel100::Required, ..bob_config() });
    p.alice.invite(call_params(), p.now).unwrap();
    p.flush();
    let invite = &p.sent_by(Who::Alice, "INVITE")[0].msg;
    assert!(!invite.tokens(HeaderName::Supported).any(|t| t.is_ok_and(|t| t == "100rel")));
    let r = &p.sent_by(Who::Bob, "SIP/2.0 421")[0].msg;
    assert_eq!(header(r, HeaderName::Require), "100rel");
    assert_eq!(p.terminations(Who::Alice), [EndReason::Rejected(421)]);

    // Alice requires it, Bob has it off: 420 with Unsupported: 100rel.
    let mut p =
        Pair::new(DialogConfig { rel100: Rel100::Required, ..alice_config() }, DialogConfig { rel100: Rel100::Off, ..bob_config() });
    p.alice.invite(call_params(), p.now).unwrap();
    p.flush();
    assert_eq!(header(&p.sent_by(Who::Alice, "INVITE")[0].msg, HeaderName::Require), "100rel");
    let r = &p.sent_by(Who::Bob, "SIP/2.0 420")[0].msg;
    assert_eq!(header(r, HeaderName::Unsupported), "100rel");

    // Both merely support it: Bob's 180 goes once, unreliably, and nobody PRACKs.
    let mut p = Pair::default_pair();
    let bob_id = call(&mut p);
    p.bob.progress(&bob_id, 180, None, p.now).unwrap();
    p.run_until(5.0);
    assert_eq!(times(&p, Who::Bob, "SIP/2.0 180"), [0.0]);
    assert!(p.sent_by(Who::Bob, "SIP/2.0 180")[0].msg.header(HeaderName::RSeq).is_none());
    assert!(p.sent_by(Who::Alice, "PRACK").is_empty());
    // ... unless Bob asks for it.
    p.bob.progress_reliable(&bob_id, 183, None, p.now).unwrap();
    p.flush();
    assert_eq!(p.sent_by(Who::Alice, "PRACK").len(), 1);
}

/// Bob answers reliably in a 183 and Alice PRACKs: the INVITE's offer/answer is complete, so
/// both may send UPDATE in the early dialog. Returns (Alice's id, Bob's id).
fn early_offer_answer() -> (Pair, DialogId, DialogId) {
    let mut p = bob_requires();
    let bob_id = call(&mut p);
    p.bob.progress(&bob_id, 183, Some(sdp(Who::Bob, 1, "sendrecv")), p.now).unwrap();
    p.flush();
    let alice_id = early_id(&p.alice_events).unwrap();
    (p, alice_id, bob_id)
}

#[test]
fn update_in_the_early_dialog_from_the_caller_then_the_2xx() {
    let (mut p, alice_id, bob_id) = early_offer_answer();
    p.alice.send_update(&alice_id, Some(sdp(Who::Alice, 2, "sendonly")), p.now).unwrap();
    p.flush();
    let update = reoffer(&p.bob_events).expect("Bob gets the offer");
    assert_eq!(update.method(), Some(&Method::Update));
    p.bob.accept(&bob_id, Some(sdp(Who::Bob, 2, "recvonly")), p.now).unwrap();
    p.flush();
    let ok = &p.sent_by(Who::Bob, "SIP/2.0 200").last().unwrap().msg;
    assert_eq!(ok.cseq().unwrap().method, Method::Update);
    assert!(String::from_utf8_lossy(ok.body()).contains("a=recvonly"));
    assert!(p
        .alice_events
        .iter()
        .any(|e| matches!(e, Event::Answered { response, .. } if response.cseq().unwrap().method == Method::Update)));
    // Still early on both sides; the INVITE still waits and is answered next.
    assert_eq!(p.alice.get(&alice_id).unwrap().state(), DialogState::Early);
    assert_eq!(p.bob.get(&bob_id).unwrap().state(), DialogState::Early);
    p.bob.accept(&bob_id, Some(sdp(Who::Bob, 3, "recvonly")), p.now).unwrap();
    p.flush();
    assert_eq!(p.sent_by(Who::Bob, "SIP/2.0 200").last().unwrap().msg.cseq().unwrap().method, Method::Invite);
    assert!(p.alice_events.iter().any(|e| matches!(e, Event::Established { .. })));
}

#[test]
fn update_in_the_early_dialog_from_the_callee_and_refused() {
    let (mut p, alice_id, bob_id) = early_offer_answer();
    p.bob.send_update(&bob_id, Some(sdp(Who::Bob, 2, "sendonly")), p.now).unwrap();
    p.flush();
    assert_eq!(p.sent_by(Who::Bob, "UPDATE").len(), 1);
    assert!(reoffer(&p.alice_events).is_some());
    p.alice.reject(&alice_id, 488, p.now).unwrap();
    p.flush();
    assert!(p.bob_events.iter().any(|e| matches!(e, Event::ModifyFailed { code: 488, .. })));
    // A refused UPDATE ends nothing: the call still completes.
    p.bob.accept(&bob_id, Some(sdp(Who::Bob, 1, "sendrecv")), p.now).unwrap();
    p.flush();
    assert!(p.alice_events.iter().any(|e| matches!(e, Event::Established { .. })));
    assert!(p.terminations(Who::Alice).is_empty());
}

#[test]
fn no_early_update_before_a_reliable_answer() {
    let mut p = Pair::default_pair();
    let bob_id = call(&mut p);
    p.bob.progress(&bob_id, 183, Some(sdp(Who::Bob, 1, "sendrecv")), p.now).unwrap();
    p.flush();
    let alice_id = early_id(&p.alice_events).unwrap();
    // The answer came in an unreliable 183: the offer/answer is not complete (RFC 3311 §5.1).
    assert_eq!(p.alice.send_update(&alice_id, Some(sdp(Who::Alice, 2, "sendonly")), p.now), Err(DialogError::WrongState));
    assert_eq!(p.bob.send_update(&bob_id, Some(sdp(Who::Bob, 2, "sendonly")), p.now), Err(DialogError::WrongState));
}

#[test]
fn update_glare_gets_491_in_a_confirmed_dialog() {
    let mut p = Pair::default_pair();
    let (alice_id, bob_id) = p.establish();
    p.alice.send_update(&alice_id, Some(sdp(Who::Alice, 2, "sendonly")), p.now).unwrap();
    p.bob.send_update(&bob_id, Some(sdp(Who::Bob, 2, "sendonly")), p.now).unwrap();
    p.flush();
    for who in [Who::Alice, Who::Bob] {
        let r = p.sent_by(who, "SIP/2.0 491");
        assert_eq!(r.len(), 1, "{who:?}");
        assert_eq!(r[0].msg.cseq().unwrap().method, Method::Update);
    }
    assert!(p.alice_events.iter().any(|e| matches!(e, Event::ModifyFailed { code: 491, .. })));
    // Both retry after their §14.1 delays, as UPDATEs: Bob within 2 s, Alice once his is answered.
    p.run_until(2.05);
    assert_eq!(p.sent_by(Who::Bob, "UPDATE").len(), 2);
    p.alice.accept(&alice_id, Some(sdp(Who::Alice, 2, "recvonly")), p.now).unwrap();
    p.run_until(5.0);
    assert_eq!(p.sent_by(Who::Alice, "UPDATE").len(), 2);
}

#[test]
fn update_while_the_previous_offer_is_unanswered_gets_500_with_retry_after() {
    let mut p = Pair::default_pair();
    let (alice_id, bob_id) = p.establish();
    p.alice.send_update(&alice_id, Some(sdp(Who::Alice, 2, "sendonly")), p.now).unwrap();
    p.flush();
    assert_eq!(p.alice.send_update(&alice_id, Some(sdp(Who::Alice, 3, "inactive")), p.now), Err(DialogError::RequestPending));
    // A peer that does not wait: the same UPDATE with the next CSeq on a new branch.
    let first = reoffer(&p.bob_events).unwrap();
    let cseq = first.cseq().unwrap().seq;
    let text = String::from_utf8_lossy(first.as_bytes())
        .replace(&format!("CSeq: {cseq} UPDATE"), &format!("CSeq: {} UPDATE", cseq + 1))
        .replace(";branch=z9hG4bK", ";branch=z9hG4bKx");
    p.bob.handle_request(&Message::parse(Bytes::from(text)).unwrap(), p.now).unwrap();
    let r = p.bob.poll_transmit().unwrap();
    assert_eq!(r.status(), Some(500));
    let retry: u32 = header(&r, HeaderName::RetryAfter).parse().unwrap();
    assert!(retry <= 10, "RFC 3311 §5.2: 0-10 s");
    p.bob.accept(&bob_id, Some(sdp(Who::Bob, 2, "recvonly")), p.now).unwrap();
    p.flush();
    assert!(p.alice_events.iter().any(|e| matches!(e, Event::Answered { .. })));
}

#[test]
fn a_cancel_ends_an_invite_whose_2xx_waits_for_the_prack() {
    let mut p = bob_requires();
    p.drop = Box::new(|from, m| from == Who::Alice && is_prack(m));
    let bob_id = call(&mut p);
    p.bob.progress(&bob_id, 183, Some(sdp(Who::Bob, 1, "sendrecv")), p.now).unwrap();
    p.bob.accept(&bob_id, Some(sdp(Who::Bob, 1, "sendrecv")), p.now).unwrap();
    p.flush();
    assert!(p.sent_by(Who::Bob, "SIP/2.0 200").is_empty(), "held until the PRACK");
    // Alice's CANCEL (§9.1): the INVITE's start line, Via, From, To, Call-ID and CSeq number.
    let invite = String::from_utf8_lossy(p.sent_by(Who::Alice, "INVITE")[0].msg.as_bytes()).into_owned();
    let head: String = invite
        .split("\r\n")
        .take_while(|l| !l.is_empty())
        .filter(|l| ["INVITE ", "Via:", "From:", "To:", "Call-ID:", "CSeq:", "Max-Forwards:"].iter().any(|h| l.starts_with(h)))
        .map(|l| l.replacen("INVITE ", "CANCEL ", 1).replace("1 INVITE", "1 CANCEL") + "\r\n")
        .collect();
    let cancel = Message::parse(Bytes::from(head + "Content-Length: 0\r\n\r\n")).unwrap();
    p.bob.handle_request(&cancel, p.now).unwrap();
    p.run_until(40.0);
    let r487 = p.sent_by(Who::Bob, "SIP/2.0 487");
    assert_eq!(r487.len(), 1);
    assert_eq!(r487[0].msg.cseq().unwrap().method, Method::Invite);
    assert_eq!(p.terminations(Who::Bob), [EndReason::Cancelled]);
    assert!(p.sent_by(Who::Bob, "SIP/2.0 200").iter().all(|s| s.msg.cseq().unwrap().method != Method::Invite), "no 2xx after the CANCEL");
    assert_eq!(times(&p, Who::Bob, "SIP/2.0 183"), [0.0], "the retransmissions stopped with the dialog");
}
