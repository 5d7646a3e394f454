//! 2xx reliability for INVITE (RFC 3261 §13.3.1.4, §13.2.2.4), on a virtual clock with
//! T1 = 500 ms and T2 = 4 s. Alice calls, Bob answers; ACKs from Alice are dropped to make Bob
//! retransmit. Asserts the send times of Bob's 2xx copies, the BYE at 64*T1 when no ACK ever
//! arrives, that an ACK stops the copies, and that Alice ACKs every copy she receives.

#[path = "dialog_support/mod.rs"]
mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use support::{secs, Pair, Who};
use switchboard::dialog::{DialogState, DialogTimer, EndReason, Event, Side};
use switchboard::message::Method;

fn is_ack(m: &switchboard::message::Message) -> bool {
    m.method() == Some(&Method::Ack)
}

#[test]
fn uas_2xx_retransmits_t1_doubling_to_t2_then_bye_at_64_t1() {
    let mut p = Pair::default_pair();
    assert_eq!(p.bob.config().t1, Duration::from_millis(500));
    assert_eq!(p.bob.config().t2, Duration::from_secs(4));
    p.drop = Box::new(|from, m| from == Who::Alice && is_ack(m));
    let (_, bob_id) = p.establish();
    p.run_until(40.0);

    let times: Vec<f64> = p.sent_by(Who::Bob, "SIP/2.0 200").iter().map(|s| secs(s.at)).collect();
    assert_eq!(times, [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]);
    let byes: Vec<f64> = p.sent_by(Who::Bob, "BYE").iter().map(|s| secs(s.at)).collect();
    assert_eq!(byes, [32.0]);
    // Confirmed first, then the session ends for want of an ACK.
    assert!(p.bob_events.iter().any(|e| matches!(e, Event::Established { id } if *id == bob_id)));
    assert_eq!(p.terminations(Who::Bob), [EndReason::NoAck]);
    assert_eq!(p.terminations(Who::Alice), [EndReason::Bye(Side::Remote)]);
    assert_eq!(p.bob.get(&bob_id).map(|d| d.state()), Some(DialogState::Terminated));
}

#[test]
fn ack_stops_the_retransmissions() {
    let mut p = Pair::default_pair();
    let lost = Rc::new(Cell::new(0));
    let l = lost.clone();
    // The first two ACKs are lost; the third (for the copy sent at 1.5 s) arrives.
    p.drop = Box::new(move |from, m| {
        let drop = from == Who::Alice && is_ack(m) && l.get() < 2;
        if drop {
            l.set(l.get() + 1);
        }
        drop
    });
    let (_, bob_id) = p.establish();
    p.run_until(1.0);
    assert_eq!(p.bob.get(&bob_id).and_then(|d| d.next_timeout()).map(|(_, t)| t), Some(DialogTimer::Retransmit2xx));
    p.run_until(40.0);

    let times: Vec<f64> = p.sent_by(Who::Bob, "SIP/2.0 200").iter().map(|s| secs(s.at)).collect();
    assert_eq!(times, [0.0, 0.5, 1.5]);
    assert!(p.sent_by(Who::Bob, "BYE").is_empty());
    assert!(p.bob_events.iter().any(|e| matches!(e, Event::Acked { .. })));
    assert!(p.terminations(Who::Bob).is_empty());
    // Only the session timer is left (RFC 4028, 1800 s by default).
    let (_, _, timer) = p.bob.next_timeout().expect("session timer");
    assert_eq!(timer, DialogTimer::Expire);
}

#[test]
fn uac_acks_every_retransmitted_2xx_with_the_same_ack() {
    let mut p = Pair::default_pair();
    let lost = Rc::new(Cell::new(0));
    let l = lost.clone();
    p.drop = Box::new(move |from, m| {
        let drop = from == Who::Alice && is_ack(m) && l.get() < 4;
        if drop {
            l.set(l.get() + 1);
        }
        drop
    });
    let (alice_id, _) = p.establish();
    p.run_until(10.0);

    let oks = p.sent_by(Who::Bob, "SIP/2.0 200");
    let acks = p.sent_by(Who::Alice, "ACK");
    assert_eq!(oks.len(), 5, "2xx at 0, 0.5, 1.5, 3.5, 7.5");
    assert_eq!(acks.len(), 5, "one ACK per 2xx copy");
    assert!(acks.iter().all(|a| a.msg == acks[0].msg), "§17.1.1.3: the ACK is sent again unchanged");
    let ack = &acks[0].msg;
    let invite = &p.sent_by(Who::Alice, "INVITE")[0].msg;
    assert_eq!(ack.cseq().unwrap().to_string(), "1 ACK");
    assert_eq!(ack.request_uri_str(), Some("sip:bob@192.0.2.2:5060"));
    assert_eq!(ack.to().unwrap().tag(), Some(&*alice_id.remote_tag));
    assert_ne!(ack.via().unwrap().branch(), invite.via().unwrap().branch(), "the 2xx ACK is a new transaction");
    let established = p.alice_events.iter().filter(|e| matches!(e, Event::Established { .. })).count();
    assert_eq!(established, 1);
}

#[test]
fn bye_from_the_uas_waits_for_the_ack() {
    let mut p = Pair::default_pair();
    let hold = Rc::new(Cell::new(true));
    let h = hold.clone();
    p.drop = Box::new(move |from, m| from == Who::Alice && is_ack(m) && h.get());
    let (_, bob_id) = p.establish();
    p.bob.send_bye(&bob_id, p.now).unwrap();
    p.run_until(1.0);
    assert!(p.sent_by(Who::Bob, "BYE").is_empty(), "§15: no BYE before the ACK");
    hold.set(false);
    p.run_until(2.0);
    let byes: Vec<f64> = p.sent_by(Who::Bob, "BYE").iter().map(|s| secs(s.at)).collect();
    assert_eq!(byes, [1.5]);
    assert_eq!(p.terminations(Who::Bob), [EndReason::Bye(Side::Local)]);
    assert_eq!(p.terminations(Who::Alice), [EndReason::Bye(Side::Remote)]);
}
