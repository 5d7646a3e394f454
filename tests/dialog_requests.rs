//! In-dialog requests (RFC 3261 §12.2, §14, §15) between Alice (UAC) and Bob (UAS) on a virtual
//! clock: re-INVITE hold/resume through a recorded route set, strict routing, 481 for an unknown
//! dialog, 491 glare and its retry, 500 for a second pending re-INVITE and for a lower CSeq, 482 for
//! a merged request, BYE, CANCEL of an early dialog, rejection, and early dialogs per To tag.

#[path = "dialog_support/mod.rs"]
mod support;

use bytes::{Bytes, BytesMut};
use support::{call_params, sdp, secs, wire, Pair, Who};
use switchboard::dialog::{reject_unknown, DialogId, DialogState, Dialogs, EndReason, Event, InputError, NotAccepted, Role, Side};
use switchboard::message::{HeaderName, Message, Method};

/// A proxy pair on the INVITE path: each adds itself to Record-Route (p2 is nearer Bob).
fn add_record_route(lr: bool) -> Box<dyn FnMut(Who, Message) -> Message> {
    Box::new(move |from, m| {
        let initial = m.method() == Some(&Method::Invite) && m.to().is_ok_and(|t| t.tag().is_none());
        if from != Who::Alice || !initial {
            return m;
        }
        let text = m.as_bytes();
        let line_end = text.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        let p = if lr { ";lr" } else { "" };
        let rr = format!("Record-Route: <sip:p2.example.com{p}>\r\nRecord-Route: <sip:p1.example.com{p}>\r\n");
        let mut out = BytesMut::from(&text[..line_end]);
        out.extend_from_slice(rr.as_bytes());
        out.extend_from_slice(&text[line_end..]);
        Message::parse(out.freeze()).unwrap()
    })
}

fn routes(m: &Message) -> Vec<String> {
    m.routes().map(|r| r.unwrap().to_string()).collect()
}

fn last_reoffer(events: &[Event]) -> Option<Message> {
    events.iter().rev().find_map(|e| match e {
        Event::Reoffer { request, .. } => Some(request.clone()),
        _ => None,
    })
}

fn body_has(m: &Message, text: &str) -> bool {
    String::from_utf8_lossy(m.body()).contains(text)
}

#[test]
fn reinvite_hold_and_resume_through_the_route_set() {
    let mut p = Pair::default_pair();
    p.rewrite = add_record_route(true);
    let (alice_id, bob_id) = p.establish();
    let a = p.alice.get(&alice_id).unwrap();
    assert_eq!(a.route_set().collect::<Vec<_>>(), ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"], "§12.1.2: reversed");
    let b = p.bob.get(&bob_id).unwrap();
    assert_eq!(b.route_set().collect::<Vec<_>>(), ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"], "§12.1.1: in order");
    assert_eq!((a.role(), b.role()), (Role::Uac, Role::Uas));
    assert_eq!(a.remote_target(), "sip:bob@192.0.2.2:5060");

    // Hold: sendonly offer, recvonly answer.
    p.alice.send_reinvite(&alice_id, sdp(Who::Alice, 2, "sendonly"), p.now).unwrap();
    p.flush();
    let hold = last_reoffer(&p.bob_events).expect("Bob is asked");
    assert_eq!(hold.request_uri_str(), Some("sip:bob@192.0.2.2:5060"), "loose routing: Request-URI = remote target");
    assert_eq!(routes(&hold), ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]);
    assert_eq!(hold.cseq().unwrap().to_string(), "2 INVITE");
    assert_eq!(hold.from().unwrap().tag(), Some(&*alice_id.local_tag));
    assert_eq!(hold.to().unwrap().tag(), Some(&*alice_id.remote_tag));
    assert_eq!(hold.contacts().next().unwrap().unwrap().uri_text, "sip:alice@192.0.2.1:5060");
    assert!(body_has(&hold, "a=sendonly"));
    p.bob.accept(&bob_id, Some(sdp(Who::Bob, 2, "recvonly")), p.now).unwrap();
    p.flush();
    let answered = p.alice_events.iter().any(|e| matches!(e, Event::Answered { response, .. } if body_has(response, "a=recvonly")));
    assert!(answered);
    let ack = p.sent_by(Who::Alice, "ACK").last().unwrap().msg.clone();
    assert_eq!(ack.cseq().unwrap().to_string(), "2 ACK");
    assert_eq!(routes(&ack), ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]);

    // Resume: sendrecv again, next CSeq.
    p.alice.send_reinvite(&alice_id, sdp(Who::Alice, 3, "sendrecv"), p.now).unwrap();
    p.flush();
    let resume = last_reoffer(&p.bob_events).unwrap();
    assert_eq!(resume.cseq().unwrap().seq, 3);
    assert!(body_has(&resume, "a=sendrecv"));
    p.bob.accept(&bob_id, Some(sdp(Who::Bob, 3, "sendrecv")), p.now).unwrap();
    p.flush();
    let a = p.alice.get(&alice_id).unwrap();
    assert_eq!(a.local_seq(), 3);
    assert!(String::from_utf8_lossy(a.remote_sdp().unwrap()).contains("a=sendrecv"));
    assert_eq!(p.bob.get(&bob_id).unwrap().remote_seq(), Some(3));

    // Bob hangs up: his route set, his own CSeq space, Alice's Contact.
    p.bob.send_bye(&bob_id, p.now).unwrap();
    p.flush();
    let bye = p.sent_by(Who::Bob, "BYE")[0].msg.clone();
    assert_eq!(bye.request_uri_str(), Some("sip:alice@192.0.2.1:5060"));
    assert_eq!(routes(&bye), ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]);
    assert_eq!(bye.cseq().unwrap().to_string(), "1 BYE");
    assert_eq!(p.terminations(Who::Bob), [EndReason::Bye(Side::Local)]);
    assert_eq!(p.terminations(Who::Alice), [EndReason::Bye(Side::Remote)]);
}

#[test]
fn strict_router_goes_in_the_request_uri() {
    let mut p = Pair::default_pair();
    p.rewrite = add_record_route(false);
    let (alice_id, _) = p.establish();
    p.alice.send_bye(&alice_id, p.now).unwrap();
    let bye = p.alice.poll_transmit().unwrap();
    // §12.2.1.1: first route as Request-URI, the rest as Route, the remote target last.
    assert_eq!(bye.request_uri_str(), Some("sip:p1.example.com"));
    assert_eq!(routes(&bye), ["<sip:p2.example.com>", "<sip:bob@192.0.2.2:5060>"]);
}

#[test]
fn unknown_dialog_gets_481() {
    let mut bob = Dialogs::new(support::bob_config());
    let now = std::time::Instant::now();
    let bye = wire(
        "BYE sip:bob@192.0.2.2 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKgone\nFrom: <sip:a@x>;tag=A\n\
         To: <sip:b@x>;tag=B\nCall-ID: nowhere\nCSeq: 7 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n",
    );
    assert_eq!(bob.handle_request(&bye, now), Err(InputError::UnknownDialog));
    let r = reject_unknown(&bye);
    assert_eq!(r.status(), Some(481));
    assert_eq!(r.to().unwrap().tag(), Some("B"));
    assert_eq!(r.cseq().unwrap().to_string(), "7 BYE");
    assert_eq!(r.via().unwrap().branch(), Some("z9hG4bKgone"));
    // A stray ACK is dropped, never answered.
    let ack = wire(
        "ACK sip:bob@192.0.2.2 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKack\nFrom: <sip:a@x>;tag=A\n\
         To: <sip:b@x>;tag=B\nCall-ID: nowhere\nCSeq: 7 ACK\nContent-Length: 0\n\n",
    );
    assert_eq!(bob.handle_request(&ack, now), Ok(()));
    assert!(bob.poll_transmit().is_none());
}

#[test]
fn reinvite_glare_gets_491_and_both_retry_after_their_delays() {
    let mut p = Pair::default_pair();
    let (alice_id, bob_id) = p.establish();
    p.alice.send_reinvite(&alice_id, sdp(Who::Alice, 2, "sendonly"), p.now).unwrap();
    p.bob.send_reinvite(&bob_id, sdp(Who::Bob, 2, "sendonly"), p.now).unwrap();
    p.flush();
    assert_eq!(p.sent_by(Who::Bob, "SIP/2.0 491").len(), 1);
    assert_eq!(p.sent_by(Who::Alice, "SIP/2.0 491").len(), 1);
    assert!(p.alice_events.iter().any(|e| matches!(e, Event::ModifyFailed { code: 491, .. })));
    assert!(p.bob_events.iter().any(|e| matches!(e, Event::ModifyFailed { code: 491, .. })));

    // §14.1: Bob (not the Call-ID owner) retries within 0-2 s, Alice within 2.1-4 s.
    p.run_until(2.05);
    let bob_retry = secs(p.sent_by(Who::Bob, "INVITE").last().unwrap().at);
    assert!(bob_retry <= 2.0, "{bob_retry}");
    assert!(last_reoffer(&p.alice_events).is_some());
    p.alice.accept(&alice_id, Some(sdp(Who::Alice, 2, "recvonly")), p.now).unwrap();
    p.run_until(5.0);
    let invites = p.sent_by(Who::Alice, "INVITE");
    let alice_retry = secs(invites.last().unwrap().at);
    assert_eq!(invites.len(), 3, "INVITE, re-INVITE, its retry");
    assert!((2.1..=4.0).contains(&alice_retry), "{alice_retry}");
    p.bob.accept(&bob_id, Some(sdp(Who::Bob, 3, "recvonly")), p.now).unwrap();
    p.flush();
    assert!(p.alice_events.iter().any(|e| matches!(e, Event::Answered { .. })));
    assert!(p.bob_events.iter().any(|e| matches!(e, Event::Answered { .. })));
}

#[test]
fn second_reinvite_while_the_first_is_unanswered_gets_500_with_retry_after() {
    let mut p = Pair::default_pair();
    let (alice_id, bob_id) = p.establish();
    p.alice.send_reinvite(&alice_id, sdp(Who::Alice, 2, "sendonly"), p.now).unwrap();
    p.flush();
    assert_eq!(
        p.alice.send_reinvite(&alice_id, sdp(Who::Alice, 3, "inactive"), p.now),
        Err(switchboard::dialog::DialogError::RequestPending)
    );
    // A peer that does not wait: the same re-INVITE with the next CSeq on a new branch.
    let first = last_reoffer(&p.bob_events).unwrap();
    let text = String::from_utf8_lossy(first.as_bytes())
        .replace("CSeq: 2 INVITE", "CSeq: 3 INVITE")
        .replace(";branch=z9hG4bK", ";branch=z9hG4bKx");
    let second = Message::parse(Bytes::from(text)).unwrap();
    p.bob.handle_request(&second, p.now).unwrap();
    let r = p.bob.poll_transmit().unwrap();
    assert_eq!(r.status(), Some(500));
    let retry: u32 = std::str::from_utf8(r.header(HeaderName::RetryAfter).unwrap()).unwrap().parse().unwrap();
    assert!(retry <= 10, "§14.2: 0-10 s");
    // The first one can still be answered.
    p.bob.accept(&bob_id, Some(sdp(Who::Bob, 2, "recvonly")), p.now).unwrap();
    p.flush();
    assert!(p.alice_events.iter().any(|e| matches!(e, Event::Answered { .. })));
}

#[test]
fn lower_cseq_gets_500() {
    let mut p = Pair::default_pair();
    let (alice_id, _) = p.establish();
    p.alice.send_info(&alice_id, "application/dtmf-relay", Bytes::from_static(b"Signal=5\r\n"), p.now).unwrap();
    p.alice.send_options(&alice_id, p.now).unwrap();
    let info = p.alice.poll_transmit().unwrap();
    let options = p.alice.poll_transmit().unwrap();
    assert_eq!((info.cseq().unwrap().seq, options.cseq().unwrap().seq), (2, 3));
    p.deliver(Who::Alice, options);
    p.deliver(Who::Alice, info);
    p.flush();
    assert_eq!(p.sent_by(Who::Bob, "SIP/2.0 200").iter().filter(|s| s.msg.cseq().unwrap().method == Method::Options).count(), 1);
    let late = p.sent_by(Who::Bob, "SIP/2.0 500");
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].msg.cseq().unwrap().to_string(), "2 INFO");
    assert!(!p.bob_events.iter().any(|e| matches!(e, Event::Info { .. })));
    assert!(p.terminations(Who::Alice).is_empty(), "a 500 does not end the dialog");
}

fn invite_via(branch: &str) -> Message {
    wire(&format!(
        "INVITE sip:bob@192.0.2.2 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9;branch={branch}\nFrom: <sip:a@x>;tag=A\n\
         To: <sip:bob@x>\nCall-ID: merged@x\nCSeq: 1 INVITE\nContact: <sip:a@192.0.2.1>\nMax-Forwards: 69\nContent-Length: 0\n\n"
    ))
}

#[test]
fn merged_request_gets_482() {
    let mut bob = Dialogs::new(support::bob_config());
    let now = std::time::Instant::now();
    bob.handle_request(&invite_via("z9hG4bKpath1"), now).unwrap();
    assert!(matches!(bob.poll_event(), Some(Event::Incoming { .. })));
    // A retransmission (same branch) is not a merge.
    bob.handle_request(&invite_via("z9hG4bKpath1"), now).unwrap();
    assert!(bob.poll_transmit().is_none());
    // The same request by another path is.
    bob.handle_request(&invite_via("z9hG4bKpath2"), now).unwrap();
    let r = bob.poll_transmit().unwrap();
    assert_eq!(r.status(), Some(482));
    assert!(r.to().unwrap().tag().is_some());
    assert_eq!(r.via().unwrap().branch(), Some("z9hG4bKpath2"));
    assert!(bob.poll_event().is_none());
    assert_eq!(bob.len(), 1);
}

#[test]
fn accept_invite_returns_the_dialog_id_or_says_who_answered() {
    // The typed entry for a new INVITE: the id comes back (no Incoming event); a 482 the dialog
    // layer writes itself is reported as such, and so is a retransmission.
    let mut bob = Dialogs::new(support::bob_config());
    let now = std::time::Instant::now();
    let id = bob.accept_invite(&invite_via("z9hG4bKpath1"), now).expect("a dialog");
    assert_eq!((&*id.call_id, &*id.remote_tag), ("merged@x", "A"));
    assert!(bob.poll_event().is_none(), "no Incoming: the caller has the id");
    assert_eq!(bob.accept_invite(&invite_via("z9hG4bKpath1"), now), Err(NotAccepted::Retransmission));
    assert_eq!(bob.accept_invite(&invite_via("z9hG4bKpath2"), now), Err(NotAccepted::Answered(482)));
    assert_eq!(bob.poll_transmit().and_then(|r| r.status()), Some(482));
    let bye = wire("BYE sip:bob@x SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb\nFrom: <sip:a@x>;tag=A\nTo: <sip:bob@x>;tag=B\nCall-ID: c@x\nCSeq: 2 BYE\nContent-Length: 0\n\n");
    assert_eq!(bob.accept_invite(&bye, now), Err(NotAccepted::Input(InputError::OutOfDialog)));
    bob.reject(&id, 486, now).expect("the id answers the INVITE");
    assert_eq!(bob.poll_transmit().and_then(|r| r.status()), Some(486));
}

#[test]
fn bye_ends_both_sides_and_they_are_forgotten_after_64_t1() {
    let mut p = Pair::default_pair();
    let (alice_id, bob_id) = p.establish();
    p.alice.send_bye(&alice_id, p.now).unwrap();
    p.flush();
    assert_eq!(p.sent_by(Who::Bob, "SIP/2.0 200").last().unwrap().msg.cseq().unwrap().to_string(), "2 BYE");
    assert_eq!(p.terminations(Who::Alice), [EndReason::Bye(Side::Local)]);
    assert_eq!(p.terminations(Who::Bob), [EndReason::Bye(Side::Remote)]);
    assert_eq!(p.alice.get(&alice_id).unwrap().state(), DialogState::Terminated);
    assert!(p.alice.send_options(&alice_id, p.now).is_err());
    p.run_until(33.0);
    assert!(p.alice.get(&alice_id).is_none() && p.bob.get(&bob_id).is_none());
    assert!(p.alice.is_empty() && p.bob.is_empty());
    assert_eq!(p.alice.poll_timeout(), None);
}

#[test]
fn cancel_ends_the_early_dialog_on_both_sides() {
    let mut p = Pair::default_pair();
    let pending = p.alice.invite(call_params(), p.now).unwrap();
    p.flush();
    let bob_id = p.incoming().unwrap();
    p.bob.ring(&bob_id, p.now).unwrap();
    p.flush();
    let early = DialogId { remote_tag: bob_id.local_tag.clone(), ..pending.clone() };
    assert!(p.alice_events.contains(&Event::Early { id: early.clone() }));
    assert_eq!(p.alice.get(&early).unwrap().state(), DialogState::Early);

    p.alice.cancel(&pending, p.now).unwrap();
    let invite = p.sent_by(Who::Alice, "INVITE")[0].msg.clone();
    // The CANCEL itself is the transaction layer's (§9.1); built here the same way.
    let cancel = Message::request(Method::Cancel, invite.request_uri_str().unwrap())
        .copy_headers(&invite, HeaderName::Via)
        .header(HeaderName::MaxForwards, 70)
        .copy_headers(&invite, HeaderName::From)
        .copy_headers(&invite, HeaderName::To)
        .copy_headers(&invite, HeaderName::CallId)
        .header(HeaderName::CSeq, "1 CANCEL")
        .finish();
    p.deliver(Who::Alice, cancel);
    p.flush();
    assert_eq!(p.sent_by(Who::Bob, "SIP/2.0 200").len(), 1, "200 for the CANCEL");
    assert_eq!(p.sent_by(Who::Bob, "SIP/2.0 487").len(), 1, "487 for the INVITE");
    assert_eq!(p.terminations(Who::Bob), [EndReason::Cancelled]);
    assert_eq!(p.terminations(Who::Alice), [EndReason::Cancelled]);
    assert!(p.alice_events.contains(&Event::Terminated { id: early, reason: EndReason::Cancelled }));
}

#[test]
fn rejected_invite_ends_the_pending_id() {
    let mut p = Pair::default_pair();
    let pending = p.alice.invite(call_params(), p.now).unwrap();
    p.flush();
    let bob_id = p.incoming().unwrap();
    p.bob.reject(&bob_id, 486, p.now).unwrap();
    p.flush();
    assert!(p.alice_events.contains(&Event::Terminated { id: pending, reason: EndReason::Rejected(486) }));
    assert_eq!(p.terminations(Who::Bob), [EndReason::Rejected(486)]);
    assert_eq!(p.bob.reject(&bob_id, 486, p.now), Err(switchboard::dialog::DialogError::NothingToAnswer));
}

#[test]
fn early_dialogs_per_to_tag_and_the_2xx_confirms_one() {
    let mut alice = Dialogs::new(support::alice_config());
    let now = std::time::Instant::now();
    let pending = alice.invite(call_params(), now).unwrap();
    let invite = alice.poll_transmit().unwrap();
    let answer = |code: u16, tag: &str, host: &str| {
        invite.response_to(code, "x", Some(tag)).header(HeaderName::Contact, format!("<sip:bob@{host}>")).finish()
    };
    alice.handle_response(&invite.response_to(100, "Trying", None).finish(), now).unwrap();
    alice.handle_response(&answer(180, "fork1", "192.0.2.11"), now).unwrap();
    alice.handle_response(&answer(183, "fork2", "192.0.2.12"), now).unwrap();
    alice.handle_response(&answer(200, "fork2", "192.0.2.12"), now).unwrap();
    let ids: Vec<DialogId> = ["fork1", "fork2"].map(|t| DialogId { remote_tag: t.into(), ..pending.clone() }).to_vec();
    let events: Vec<Event> = std::iter::from_fn(|| alice.poll_event()).collect();
    assert_eq!(
        events,
        [
            Event::Early { id: ids[0].clone() },
            Event::Early { id: ids[1].clone() },
            Event::Established { id: ids[1].clone() },
            // The other branch's early dialog ends once the call is answered elsewhere.
            Event::Terminated { id: ids[0].clone(), reason: EndReason::Cancelled },
        ]
    );
    assert_eq!(alice.get(&ids[0]).map(|d| d.state()), Some(DialogState::Terminated));
    assert_eq!(alice.get(&ids[1]).unwrap().state(), DialogState::Confirmed);
    let ack = alice.poll_transmit().unwrap();
    assert_eq!(ack.request_uri_str(), Some("sip:bob@192.0.2.12"));
}

/// §22.2 (and §22.1: a proxy may challenge any request, as the service does for a phone that
/// signals from a new address, issue 14 point 7): a 407 to our re-INVITE is answered with the same
/// offer, credentials and the next CSeq; twice in a row at most, then the re-INVITE fails.
#[test]
fn a_challenged_reinvite_is_sent_again_with_credentials() {
    let mut p = Pair::default_pair();
    let (alice_id, _) = p.establish();
    p.alice.set_authorizer(Box::new(|req, resp| {
        assert_eq!(resp.status(), Some(407));
        Some((HeaderName::ProxyAuthorization, format!("Digest username=\"alice\", cseq-was=\"{}\"", req.cseq().ok()?.seq)))
    }));
    let challenge = |req: &Message| {
        let mut b = req.response_to(407, "Proxy Authentication Required", None);
        b.push(HeaderName::ProxyAuthenticate, "Digest realm=\"sb\", nonce=\"n\"");
        b.finish()
    };
    p.alice.send_reinvite(&alice_id, sdp(Who::Alice, 2, "sendrecv"), p.now).unwrap();
    let first = p.alice.poll_transmit().expect("the re-INVITE");
    assert_eq!(first.cseq().unwrap().to_string(), "2 INVITE");
    p.alice.handle_response(&challenge(&first), p.now).unwrap();
    let again = p.alice.poll_transmit().expect("sent again");
    assert_eq!(again.cseq().unwrap().to_string(), "3 INVITE");
    assert_eq!(again.to().unwrap().tag(), Some(&*alice_id.remote_tag), "in the same dialog");
    assert_eq!(again.body(), first.body(), "the same offer");
    let creds = again.header(HeaderName::ProxyAuthorization).map(|v| String::from_utf8_lossy(v).into_owned());
    assert_eq!(creds.as_deref(), Some("Digest username=\"alice\", cseq-was=\"2\""));
    p.alice.handle_response(&challenge(&again), p.now).unwrap();
    let third = p.alice.poll_transmit().expect("a stale nonce gets one more try");
    assert_eq!(third.cseq().unwrap().seq, 4);
    p.alice.handle_response(&challenge(&third), p.now).unwrap();
    assert!(p.alice.poll_transmit().is_none(), "no third try");
    let failed = std::iter::from_fn(|| p.alice.poll_event()).any(|e| matches!(e, Event::ModifyFailed { code: 407, .. }));
    assert!(failed, "the re-INVITE failed with 407");
    assert_eq!(p.alice.get(&alice_id).unwrap().state(), DialogState::Confirmed, "the call goes on");
}

/// `Dialogs::set_forget_ended_sdp`: an ended dialog drops its copy of the peer's SDP at once
/// (issue 16: a load generator holds its ended dialogs 64*T1), and keeps it by default; either
/// way the ended dialog stays until its purge, and keeps our own SDP.
#[test]
fn ended_dialogs_forget_the_peers_sdp_only_when_asked() {
    let mut p = Pair::default_pair();
    p.alice.set_forget_ended_sdp(true);
    let (alice_id, bob_id) = p.establish();
    assert!(p.alice.get(&alice_id).unwrap().remote_sdp().is_some());
    p.alice.send_bye(&alice_id, p.now).unwrap();
    p.flush();
    let a = p.alice.get(&alice_id).expect("held until the purge");
    assert_eq!(a.state(), DialogState::Terminated);
    assert_eq!(a.remote_sdp(), None, "Alice asked to forget it");
    assert!(a.local_sdp().is_some(), "our own offer is kept");
    let b = p.bob.get(&bob_id).expect("held until the purge");
    assert_eq!(b.state(), DialogState::Terminated);
    assert!(b.remote_sdp().is_some(), "Bob keeps it by default");
}
