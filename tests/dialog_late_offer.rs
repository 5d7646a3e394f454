//! Late offer in the dialog layer (RFC 3261 §13.2.2.4, §13.3.1.4, RFC 3264 §4) between Alice (UAC)
//! and Bob (UAS) on a virtual clock: Alice's INVITE carries no SDP, Bob's 200 carries the offer,
//! and Alice's ACK waits for her answer (`Dialogs::send_late_ack`), which it then carries, also
//! when a retransmitted 200 asks for it again; a BYE before the answer first acknowledges the 200
//! without a body; Bob's side takes the answer from the ACK.

#[path = "dialog_support/mod.rs"]
mod support;

use support::{call_params, sdp, Pair, Who};
use switchboard::dialog::{CallParams, DialogError, DialogId, EndReason, Event, Side};

fn late_params() -> CallParams {
    CallParams { sdp: None, ..call_params() }
}

/// Alice sends an INVITE without SDP; Bob answers 200 with his offer. Returns (Alice's, Bob's) ids.
fn late_call(p: &mut Pair) -> (DialogId, DialogId) {
    p.alice.invite(late_params(), p.now).expect("invite");
    p.flush();
    let invite = &p.sent_by(Who::Alice, "INVITE")[0].msg;
    assert!(invite.body().is_empty(), "no offer in the INVITE");
    let bob_id = p.incoming().expect("Bob sees the INVITE");
    p.bob.accept(&bob_id, Some(sdp(Who::Bob, 1, "sendrecv")), p.now).expect("Bob offers in the 200");
    p.flush();
    let alice_id = p
        .alice_events
        .iter()
        .find_map(|e| match e {
            Event::Established { id } => Some(id.clone()),
            _ => None,
        })
        .expect("Alice's dialog is established by the 200");
    (alice_id, bob_id)
}

#[test]
fn the_ack_waits_for_the_answer_and_carries_it() {
    let mut p = Pair::default_pair();
    let (alice_id, bob_id) = late_call(&mut p);
    let d = p.alice.get(&alice_id).expect("dialog");
    assert!(d.awaits_late_ack(), "the ACK waits for the application's answer");
    assert_eq!(d.remote_sdp(), Some(&sdp(Who::Bob, 1, "sendrecv")), "the offer is the 200's body");
    assert!(p.sent_by(Who::Alice, "ACK").is_empty(), "no ACK before the answer");

    // Bob retransmits the 200 meanwhile: still no ACK.
    p.run_until(1.2);
    assert!(p.sent_by(Who::Bob, "SIP/2.0 200").len() >= 2, "Bob retransmits the 200 until the ACK");
    assert!(p.sent_by(Who::Alice, "ACK").is_empty());

    let answer = sdp(Who::Alice, 1, "sendrecv");
    p.alice.send_late_ack(&alice_id, Some(answer.clone()), p.now).expect("late ACK");
    p.flush();
    let acks = p.sent_by(Who::Alice, "ACK");
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].msg.body(), &answer[..], "the ACK carries the answer");
    assert!(!p.alice.get(&alice_id).expect("dialog").awaits_late_ack());
    assert_eq!(p.alice.get(&alice_id).expect("dialog").local_sdp(), Some(&answer));
    // Bob's side: the ACK ends the retransmissions and its answer is the dialog's remote SDP.
    assert!(p.bob_events.iter().any(|e| matches!(e, Event::Acked { id } if *id == bob_id)));
    assert_eq!(p.bob.get(&bob_id).expect("dialog").remote_sdp(), Some(&answer));
    // A second answer is refused: the ACK went.
    assert_eq!(p.alice.send_late_ack(&alice_id, None, p.now), Err(DialogError::WrongState));
    let before = p.sent_by(Who::Bob, "SIP/2.0 200").len();
    p.run_until(10.0);
    assert_eq!(p.sent_by(Who::Bob, "SIP/2.0 200").len(), before, "no more retransmissions after the ACK");
    assert!(p.terminations(Who::Bob).is_empty(), "no NoAck: {:?}", p.terminations(Who::Bob));
}

#[test]
fn a_retransmitted_200_gets_the_same_ack_with_the_answer() {
    let mut p = Pair::default_pair();
    let (alice_id, _) = late_call(&mut p);
    let answer = sdp(Who::Alice, 1, "sendrecv");
    // The first ACK is lost: Bob retransmits the 200, and Alice's ACK again carries the answer.
    let mut lost = false;
    p.drop = Box::new(move |from, m| {
        let first_ack = from == Who::Alice && m.as_bytes().starts_with(b"ACK") && !lost;
        lost |= first_ack;
        first_ack
    });
    p.alice.send_late_ack(&alice_id, Some(answer.clone()), p.now).expect("late ACK");
    p.run_until(2.0);
    let acks = p.sent_by(Who::Alice, "ACK");
    assert!(acks.len() >= 2, "the retransmitted 200 was acknowledged again");
    assert!(acks.iter().all(|a| a.msg.body() == &answer[..]), "every copy carries the answer");
    let branch = |s: &support::Sent| s.msg.via().map(|v| v.branch().map(str::to_owned)).ok().flatten();
    assert_eq!(branch(acks[0]), branch(acks[1]), "the same ACK again (§13.2.2.4)");
}

#[test]
fn a_bye_before_the_answer_acknowledges_the_200_first() {
    let mut p = Pair::default_pair();
    let (alice_id, _) = late_call(&mut p);
    // The offer is unusable: Alice hangs up without answering.
    p.alice.send_bye(&alice_id, p.now).expect("BYE");
    p.flush();
    let order: Vec<&str> = p
        .sent
        .iter()
        .filter(|s| s.from == Who::Alice)
        .filter_map(|s| std::str::from_utf8(s.msg.as_bytes()).ok()?.split(' ').next())
        .collect();
    assert_eq!(order, ["INVITE", "ACK", "BYE"], "the 200 is acknowledged (without a body) before the BYE");
    assert!(p.sent_by(Who::Alice, "ACK")[0].msg.body().is_empty());
    assert_eq!(p.terminations(Who::Alice), [EndReason::Bye(Side::Local)]);
    assert_eq!(p.terminations(Who::Bob), [EndReason::Bye(Side::Remote)]);
}

#[test]
fn an_ack_without_answer_leaves_the_uas_without_remote_sdp() {
    let mut p = Pair::default_pair();
    let (alice_id, bob_id) = late_call(&mut p);
    p.alice.send_late_ack(&alice_id, None, p.now).expect("bodiless ACK");
    p.flush();
    assert!(p.sent_by(Who::Alice, "ACK")[0].msg.body().is_empty());
    assert!(p.bob_events.iter().any(|e| matches!(e, Event::Acked { id } if *id == bob_id)));
    // What the user agents check to hang up (ua::late_offer::on_acked).
    assert_eq!(p.bob.get(&bob_id).expect("dialog").remote_sdp(), None);
}

#[test]
fn an_ordinary_invite_is_still_acknowledged_at_once() {
    let mut p = Pair::default_pair();
    let (alice_id, _) = p.establish();
    assert!(!p.alice.get(&alice_id).expect("dialog").awaits_late_ack());
    assert_eq!(p.sent_by(Who::Alice, "ACK").len(), 1);
    assert!(p.sent_by(Who::Alice, "ACK")[0].msg.body().is_empty());
    assert_eq!(p.alice.send_late_ack(&alice_id, None, p.now), Err(DialogError::WrongState));
}
