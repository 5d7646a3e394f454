//! Session timers (RFC 4028) and in-dialog keep-alives between Alice (UAC) and Bob (UAS) on a
//! virtual clock, with a 90 s session interval. Asserts when refreshes go out (half the interval),
//! which side refreshes and with which method, when the session is ended for want of a refresh
//! (non-refresher: interval - min(32 s, interval/3) = 60 s; refresher: at the interval), the 422
//! round trip, and that a failed OPTIONS ping ends the dialog.

#[path = "dialog_support/mod.rs"]
mod support;

use std::time::Duration;
use support::{alice_config, bob_config, secs, Pair, Who};
use switchboard::dialog::{DialogConfig, DialogTimer, Dialogs, EndReason, Event, RefreshMethod, Side};
use switchboard::message::{HeaderName, Message, Method, Refresher};

fn ninety(c: DialogConfig) -> DialogConfig {
    DialogConfig { session_expires: Some(Duration::from_secs(90)), ..c }
}

fn in_dialog(m: &Message, method: Method) -> bool {
    m.method() == Some(&method) && m.to().is_ok_and(|t| t.tag().is_some())
}

fn header(m: &Message, name: HeaderName) -> String {
    String::from_utf8_lossy(m.header(name).unwrap_or_default()).into_owned()
}

fn times(p: &Pair, from: Who, start: &str) -> Vec<f64> {
    p.sent_by(from, start).iter().map(|s| secs(s.at)).collect()
}

fn count(events: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| f(e)).count()
}

/// Bob asks to refresh himself (refresher=uas), by UPDATE.
fn bob_refreshes() -> Pair {
    let bob = DialogConfig { refresher: Some(Refresher::Uas), refresh_method: RefreshMethod::Update, ..ninety(bob_config()) };
    Pair::new(ninety(alice_config()), bob)
}

#[test]
fn uac_refresher_sends_reinvite_at_half_the_interval() {
    let mut p = Pair::new(ninety(alice_config()), ninety(bob_config()));
    let (alice_id, bob_id) = p.establish();
    let ok = &p.sent_by(Who::Bob, "SIP/2.0 200")[0].msg;
    assert_eq!(header(ok, HeaderName::SessionExpires), "90;refresher=uac");
    assert_eq!(header(ok, HeaderName::Require), "timer");
    assert_eq!(p.alice.get(&alice_id).unwrap().refresher(), Some(Side::Local));
    assert_eq!(p.bob.get(&bob_id).unwrap().refresher(), Some(Side::Remote));

    p.run_until(200.0);
    assert_eq!(times(&p, Who::Alice, "INVITE"), [0.0, 45.0, 90.0, 135.0, 180.0]);
    let refresh = &p.sent_by(Who::Alice, "INVITE")[1].msg;
    assert_eq!(header(refresh, HeaderName::SessionExpires), "90;refresher=uac");
    assert_eq!(refresh.body(), &p.alice.get(&alice_id).unwrap().local_sdp().unwrap()[..], "same SDP again");
    assert_eq!(count(&p.alice_events, |e| matches!(e, Event::RefreshNeeded { .. })), 4);
    assert_eq!(count(&p.alice_events, |e| matches!(e, Event::Refreshed { interval, .. } if interval.as_secs() == 90)), 4);
    assert_eq!(count(&p.bob_events, |e| matches!(e, Event::Refreshed { .. })), 4);
    assert!(p.terminations(Who::Alice).is_empty() && p.terminations(Who::Bob).is_empty());
    let (at, _, timer) = p.alice.next_timeout().unwrap();
    assert_eq!((secs(at - p.base), timer), (225.0, DialogTimer::Refresh));
}

#[test]
fn uas_refresher_sends_update_at_half_the_interval() {
    let mut p = bob_refreshes();
    let (alice_id, bob_id) = p.establish();
    let ok = &p.sent_by(Who::Bob, "SIP/2.0 200")[0].msg;
    assert_eq!(header(ok, HeaderName::SessionExpires), "90;refresher=uas");
    assert!(ok.header(HeaderName::Require).is_none());
    assert_eq!(p.alice.get(&alice_id).unwrap().refresher(), Some(Side::Remote));
    assert_eq!(p.bob.get(&bob_id).unwrap().refresher(), Some(Side::Local));

    p.run_until(200.0);
    assert_eq!(times(&p, Who::Bob, "UPDATE"), [45.0, 90.0, 135.0, 180.0]);
    let update = &p.sent_by(Who::Bob, "UPDATE")[0].msg;
    // In the UPDATE Bob is the UAC, and the refresher.
    assert_eq!(header(update, HeaderName::SessionExpires), "90;refresher=uac");
    assert!(update.body().is_empty());
    assert_eq!(update.cseq().unwrap().to_string(), "1 UPDATE");
    assert_eq!(p.alice.get(&alice_id).unwrap().refresher(), Some(Side::Remote));
    assert!(p.terminations(Who::Alice).is_empty() && p.terminations(Who::Bob).is_empty());
}

#[test]
fn non_refresher_uac_sends_bye_when_no_refresh_comes() {
    let mut p = bob_refreshes();
    p.drop = Box::new(|from, m| from == Who::Bob && in_dialog(m, Method::Update));
    p.establish();
    p.run_until(100.0);
    assert_eq!(times(&p, Who::Alice, "BYE"), [60.0]);
    assert_eq!(p.terminations(Who::Alice), [EndReason::SessionExpired]);
    assert_eq!(p.terminations(Who::Bob), [EndReason::Bye(Side::Remote)]);
}

#[test]
fn non_refresher_uas_sends_bye_when_no_refresh_comes() {
    let mut p = Pair::new(ninety(alice_config()), ninety(bob_config()));
    p.drop = Box::new(|from, m| from == Who::Alice && in_dialog(m, Method::Invite));
    p.establish();
    p.run_until(100.0);
    assert_eq!(times(&p, Who::Bob, "BYE"), [60.0]);
    assert_eq!(p.terminations(Who::Bob), [EndReason::SessionExpired]);
    assert_eq!(p.terminations(Who::Alice), [EndReason::Bye(Side::Remote)]);
}

/// The refresher's UPDATE arrives (so the peer's timer restarts) but its 200 is lost.
fn refresher_unanswered(refresher: Who) {
    let mut p = match refresher {
        Who::Bob => bob_refreshes(),
        Who::Alice => Pair::new(DialogConfig { refresh_method: RefreshMethod::Update, ..ninety(alice_config()) }, ninety(bob_config())),
    };
    p.drop = Box::new(move |from, m| from != refresher && m.status() == Some(200) && m.cseq().is_ok_and(|c| c.method == Method::Update));
    p.establish();
    p.run_until(100.0);
    let other = if refresher == Who::Alice { Who::Bob } else { Who::Alice };
    assert_eq!(times(&p, refresher, "UPDATE"), [45.0]);
    assert_eq!(times(&p, refresher, "BYE"), [90.0], "the refresher gives up at the interval");
    assert_eq!(p.terminations(refresher), [EndReason::SessionExpired]);
    assert_eq!(p.terminations(other), [EndReason::Bye(Side::Remote)]);
}

#[test]
fn uac_refresher_ends_the_session_when_its_refresh_goes_unanswered() {
    refresher_unanswered(Who::Alice);
}

#[test]
fn uas_refresher_ends_the_session_when_its_refresh_goes_unanswered() {
    refresher_unanswered(Who::Bob);
}

#[test]
fn refresh_timing_out_ends_the_session() {
    let mut p = bob_refreshes();
    p.drop = Box::new(|from, m| from == Who::Alice && m.status() == Some(200) && m.cseq().is_ok_and(|c| c.method == Method::Update));
    p.establish();
    p.run_until(77.0);
    // The transaction layer reports Timer F (64*T1) for the UPDATE sent at 45 s.
    let update = p.sent_by(Who::Bob, "UPDATE")[0].msg.clone();
    p.bob.handle_request_timeout(&update, p.now).unwrap();
    p.flush();
    assert_eq!(times(&p, Who::Bob, "BYE"), [77.0]);
    assert_eq!(p.terminations(Who::Bob), [EndReason::Timeout]);
}

#[test]
fn session_expires_below_min_se_gets_422_and_the_uac_retries() {
    let alice = DialogConfig { session_expires: Some(Duration::from_secs(60)), ..alice_config() };
    let bob = DialogConfig { min_se: Duration::from_secs(120), ..bob_config() };
    let mut p = Pair::new(alice, bob);
    let (alice_id, bob_id) = p.establish();
    let rejected = &p.sent_by(Who::Bob, "SIP/2.0 422")[0].msg;
    assert_eq!(header(rejected, HeaderName::MinSe), "120");
    let invites = p.sent_by(Who::Alice, "INVITE");
    assert_eq!(invites.len(), 2);
    let retry = &invites[1].msg;
    assert_eq!(retry.cseq().unwrap().to_string(), "2 INVITE", "RFC 4028 §7.4: same Call-ID, new CSeq");
    assert_eq!(retry.call_id().unwrap(), invites[0].msg.call_id().unwrap());
    assert_eq!(header(retry, HeaderName::SessionExpires), "120");
    assert_eq!(header(retry, HeaderName::MinSe), "120");
    assert_eq!(count(&p.bob_events, |e| matches!(e, Event::Incoming { .. })), 1);
    assert_eq!(p.alice.get(&alice_id).unwrap().session_interval(), Some(Duration::from_secs(120)));
    assert_eq!(p.bob.get(&bob_id).unwrap().session_interval(), Some(Duration::from_secs(120)));
    assert!(p.terminations(Who::Alice).is_empty());
}

#[test]
fn options_ping_timeout_ends_the_dialog() {
    let alice = DialogConfig { ping_interval: Some(Duration::from_secs(30)), ..alice_config() };
    let mut p = Pair::new(alice, bob_config());
    p.establish();
    p.run_until(31.0);
    assert_eq!(times(&p, Who::Alice, "OPTIONS"), [30.0]);
    assert_eq!(p.sent_by(Who::Bob, "SIP/2.0 200").last().unwrap().msg.cseq().unwrap().method, Method::Options);
    assert!(p.terminations(Who::Alice).is_empty());

    p.drop = Box::new(|from, m| from == Who::Alice && m.method() == Some(&Method::Options));
    p.run_until(60.0);
    let ping = p.sent_by(Who::Alice, "OPTIONS").last().unwrap().msg.clone();
    p.run_until(92.0);
    p.alice.handle_request_timeout(&ping, p.now).unwrap();
    p.flush();
    assert_eq!(p.terminations(Who::Alice), [EndReason::PingFailed]);
    assert_eq!(times(&p, Who::Alice, "BYE"), [92.0]);
    assert_eq!(p.terminations(Who::Bob), [EndReason::Bye(Side::Remote)]);
}

#[test]
fn options_ping_answered_481_ends_the_dialog() {
    let alice = DialogConfig { ping_interval: Some(Duration::from_secs(30)), ..alice_config() };
    let mut p = Pair::new(alice, bob_config());
    p.establish();
    p.bob = Dialogs::new(bob_config()); // Bob restarted and forgot the call
    p.run_until(31.0);
    assert_eq!(p.sent_by(Who::Bob, "SIP/2.0 481").len(), 1);
    assert_eq!(p.terminations(Who::Alice), [EndReason::PingFailed]);
    assert!(p.sent_by(Who::Alice, "BYE").is_empty(), "no BYE to a dialog the peer does not have");
}
