//! REFER and its implicit subscription in the dialog layer (RFC 3515 §2.4, RFC 3892), between
//! Alice (UAC) and Bob (UAS) on a virtual clock: Alice refers Bob to Carol naming herself in
//! Referred-By; Bob's layer answers 202 and hands the REFER up; Bob's NOTIFYs (sipfrag 100, then
//! 200 ending the subscription) reach Alice answered 200. A REFER without Refer-To gets 400 and a
//! NOTIFY of another event 489, neither handed up.

#[path = "dialog_support/mod.rs"]
mod support;

use support::{Pair, Who};
use switchboard::dialog::{refer_target, sipfrag_status, subscription_terminated, Event};
use switchboard::message::{HeaderName, Message};

fn header(m: &Message, name: HeaderName) -> String {
    String::from_utf8_lossy(m.header(name).unwrap_or(b"")).into_owned()
}

#[test]
fn refer_202_and_notify_sipfrag_until_the_final_status() {
    let mut p = Pair::default_pair();
    let (alice_id, bob_id) = p.establish();
    p.alice.send_refer(&alice_id, "sip:carol@192.0.2.3", Some("sip:alice@192.0.2.1"), p.now).unwrap();
    p.flush();
    let refer = p.bob_events.iter().find_map(|e| match e {
        Event::Refer { id, request } if *id == bob_id => Some(request.clone()),
        _ => None,
    });
    let refer = refer.expect("Bob's layer hands the REFER up");
    assert_eq!(header(&refer, HeaderName::ReferTo), "<sip:carol@192.0.2.3>");
    assert_eq!(header(&refer, HeaderName::ReferredBy), "<sip:alice@192.0.2.1>");
    assert_eq!(refer_target(&refer), Ok("sip:carol@192.0.2.3".to_owned()));
    assert_eq!(p.sent_by(Who::Bob, "SIP/2.0 202").len(), 1, "202 Accepted (§2.4.2)");

    p.bob.send_refer_notify(&bob_id, 100, "Trying", false, p.now).unwrap();
    p.bob.send_refer_notify(&bob_id, 200, "OK", true, p.now).unwrap();
    p.flush();
    let notifies: Vec<Message> = p
        .alice_events
        .iter()
        .filter_map(|e| match e {
            Event::Notify { id, request } if *id == alice_id => Some(request.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(notifies.len(), 2);
    assert_eq!(notifies.iter().map(|n| sipfrag_status(n.body())).collect::<Vec<_>>(), [Some(100), Some(200)]);
    assert_eq!(notifies.iter().map(subscription_terminated).collect::<Vec<_>>(), [false, true]);
    assert!(header(&notifies[0], HeaderName::ContentType).starts_with("message/sipfrag"));
    assert_eq!(header(&notifies[0], HeaderName::Event), "refer");
    assert_eq!(p.sent_by(Who::Alice, "SIP/2.0 200").len(), 2, "each NOTIFY answered 200");
    assert!(p.terminations(Who::Alice).is_empty() && p.terminations(Who::Bob).is_empty(), "the call goes on");
}

#[test]
fn a_refer_without_refer_to_and_a_notify_of_another_event_are_refused() {
    let mut p = Pair::default_pair();
    let (alice_id, bob_id) = p.establish();
    // The REFER as the dialog wrote it, without its Refer-To.
    p.alice.send_refer(&alice_id, "sip:carol@192.0.2.3", None, p.now).unwrap();
    let refer = p.alice.poll_transmit().expect("the REFER");
    let text = String::from_utf8_lossy(refer.as_bytes()).replace("Refer-To: <sip:carol@192.0.2.3>\r\n", "");
    p.deliver(Who::Alice, Message::parse(bytes::Bytes::from(text)).unwrap());
    p.flush();
    assert_eq!(p.sent_by(Who::Bob, "SIP/2.0 400").len(), 1, "one Refer-To expected (§2.4.1)");
    assert!(!p.bob_events.iter().any(|e| matches!(e, Event::Refer { .. })));

    p.bob.send_refer_notify(&bob_id, 100, "Trying", false, p.now).unwrap();
    let notify = p.bob.poll_transmit().expect("the NOTIFY");
    let text = String::from_utf8_lossy(notify.as_bytes()).replace("Event: refer", "Event: presence");
    p.deliver(Who::Bob, Message::parse(bytes::Bytes::from(text)).unwrap());
    p.flush();
    let refused = p.sent_by(Who::Alice, "SIP/2.0 489");
    assert_eq!(refused.len(), 1, "RFC 6665 §4.1.3");
    assert_eq!(header(&refused[0].msg, HeaderName::AllowEvents), "refer");
    assert!(!p.alice_events.iter().any(|e| matches!(e, Event::Notify { .. })));
}
