//! Events reach the owner of their transaction (issue 13 point 1), through the real service.
//!
//! Setup: the real service (registrar, digest auth, and the B2BUA with the relay or the stateful
//! proxy) and two real softphones, alice and bob, on the in-memory network of
//! `switchboard::testing` with a virtual clock and no loss; no socket. Both register.
//!
//! Asserts, in B2BUA mode and in proxy mode: a CANCEL from a caller while bob rings reaches the
//! owner of its INVITE (recorded at admission, not guessed), which cancels bob's leg (bob's call
//! ends `cancelled`; the caller, a scripted UA as authentication is off there, too); a callee that never answers ends in its owner's Timer B or branch timeout (alice's
//! call fails); and in every case, once the timers have run, the service holds no transaction, no
//! call and no relay port. And a softphone that had to authenticate first cancels the INVITE that
//! is pending, not the one the 407 answered (the UA core picked either, by map order).

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::dialog::{CallParams, DialogConfig, Dialogs, EndReason, Event};
use switchboard::service::app::{Service, ServiceParts};
use switchboard::testing::{self, DialogUa, Net, NodeId};
use switchboard::ua::phone::{EndState, LiveState, Phone};
use switchboard::ua::register::RegState;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

struct World {
    net: Net,
    service: NodeId<Service>,
    alice: NodeId<Phone>,
    bob: NodeId<Phone>,
    sb: SocketAddr,
}

/// The service built by `mode` from the default parts, and two registered phones; bob never
/// answers by himself.
fn world(mode: impl FnOnce(&mut ServiceParts)) -> World {
    let (sb, alice_at, bob_at) = (addr("127.0.0.1:5060"), addr("127.0.0.2:5060"), addr("127.0.0.3:5060"));
    let mut net = Net::new(Instant::now(), 5);
    let mut parts = testing::service_parts(sb, &[("alice", "alice-pw"), ("bob", "bob-pw")], 1);
    mode(&mut parts);
    let service = net.add("switchboard", sb, testing::service_endpoint(), Service::new(parts));
    let alice = testing::phone_config("alice", "alice-pw", alice_at, sb, 2);
    let bob = testing::phone_config("bob", "bob-pw", bob_at, sb, 3);
    let alice = net.add("alice", alice_at, switchboard::Endpoint::new(Default::default()), Phone::new(alice, None));
    let bob = net.add("bob", bob_at, switchboard::Endpoint::new(Default::default()), Phone::new(bob, None));
    let registered = |n: &Net| [alice, bob].iter().all(|&p| n.app(p).registration() == Some(RegState::Registered));
    assert!(net.run_until(Duration::from_secs(60), registered), "both phones register");
    World { net, service, alice, bob, sb }
}

impl World {
    fn dial(&mut self) {
        let uri = format!("sip:bob@{}", self.sb.ip());
        let sb = self.sb;
        self.net.with(self.alice, |phone, io, now| {
            phone.dial(&uri, sb);
            switchboard::driver::Application::start(phone, io, now);
        });
    }

    /// Lets every timer run out, then checks that the service kept nothing.
    fn assert_nothing_left(&mut self) {
        let service = self.service;
        self.net.run_until(Duration::from_secs(120), |n| {
            n.app(service).live_calls(n.now()).is_empty() && n.endpoint(service).transaction_count() == 0
        });
        let net = &self.net;
        assert_eq!(net.endpoint(service).transaction_count(), 0, "no transaction left: {net:?}");
        assert!(net.app(service).live_calls(net.now()).is_empty(), "no call left");
        assert!(net.media(service).open.is_empty(), "every relay port is closed: {:?}", net.media(service).open);
    }
}

/// A scripted caller (authentication is off: it has no credentials) dials bob, bob rings, the
/// caller CANCELs; the CANCEL must reach the owner of the service's INVITE server transaction.
fn cancel_while_ringing(mode: impl FnOnce(&mut ServiceParts)) {
    let mut w = world(|parts| {
        parts.auth = None;
        mode(parts);
    });
    let caller_at = addr("127.0.0.4:5060");
    let cfg =
        DialogConfig { contact: format!("sip:carol@{caller_at}"), sent_by: caller_at.to_string(), rng_seed: 4, ..DialogConfig::default() };
    let caller = w.net.add("carol", caller_at, switchboard::Endpoint::new(Default::default()), DialogUa::new(Dialogs::new(cfg)));
    let params = CallParams {
        from: "<sip:carol@127.0.0.1>".into(),
        to: "<sip:bob@127.0.0.1>".into(),
        target: Some(format!("sip:bob@{}", w.sb)),
        routes: Vec::new(),
        sdp: Some(Bytes::from_static(
            b"v=0\r\no=- 1 1 IN IP4 127.0.0.4\r\ns=-\r\nc=IN IP4 127.0.0.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        )),
        max_forwards: None,
        asserted_identity: None,
        referred_by: None,
    };
    let pending = w.net.with(caller, |p, io, now| {
        let id = p.dialogs().invite(params, now);
        p.flush(io, now);
        id
    });
    let pending = pending.expect("invite");
    let bob = w.bob;
    assert!(w.net.run_until(Duration::from_secs(10), |n| !n.app(bob).status(n.now()).is_empty()), "bob rings");
    let early = |n: &Net| n.app(caller).events.iter().any(|e| matches!(e, Event::Early { .. }));
    assert!(w.net.run_until(Duration::from_secs(5), early), "bob's 180 reached the caller, so a CANCEL may go (§9.1)");
    w.net.with(caller, |p, io, now| p.ua.cancel(io.endpoint, &pending, now)).expect("cancel");
    assert!(w.net.run_until(Duration::from_secs(40), |n| !n.app(bob).reports.is_empty()), "bob's call ends");
    assert_eq!(w.net.app(bob).reports[0].state, EndState::Cancelled, "the CANCEL reached bob through the INVITE's owner");
    assert_eq!(w.net.app(caller).ended(), [EndReason::Cancelled]);
    w.assert_nothing_left();
}

/// A softphone that had to authenticate (407, then the INVITE again) hangs up while bob rings:
/// its CANCEL goes on the INVITE that is still pending, not on the answered first one, whatever
/// order the UA core's table yields them in.
fn softphone_cancels_after_a_challenge(mode: impl FnOnce(&mut ServiceParts)) {
    let mut w = world(mode);
    w.dial();
    let (alice, bob) = (w.alice, w.bob);
    assert!(w.net.run_until(Duration::from_secs(10), |n| !n.app(bob).status(n.now()).is_empty()), "bob rings");
    let ringing = |n: &Net| n.app(alice).reports.is_empty() && n.app(bob).status(n.now()).iter().all(|s| s.1 == LiveState::Ringing);
    w.net.run_for(Duration::from_millis(500));
    assert!(ringing(&w.net), "still ringing");
    w.net.with(alice, |phone, io, now| phone.hangup(io, now)).expect("alice hangs up");
    assert!(w.net.run_until(Duration::from_secs(40), |n| !n.app(bob).reports.is_empty()), "bob's call ends");
    assert_eq!(w.net.app(bob).reports[0].state, EndState::Cancelled);
    w.assert_nothing_left();
    assert_eq!(w.net.app(alice).reports[0].state, EndState::Cancelled);
}

fn callee_never_answers_the_invite(mode: impl FnOnce(&mut ServiceParts)) {
    let mut w = world(mode);
    // Bob's phone is gone: the service's INVITE to him gets no answer at all (Timer B, §17.1.1.2,
    // or the proxy's branch timeout).
    w.net.cut_off(addr("127.0.0.3:5060").ip(), true);
    w.dial();
    let alice = w.alice;
    assert!(w.net.run_until(Duration::from_secs(120), |n| !n.app(alice).reports.is_empty()), "alice's call ends");
    assert_ne!(w.net.app(alice).reports[0].state, EndState::Completed);
    w.assert_nothing_left();
}

#[test]
fn a_cancel_reaches_the_b2bua_that_owns_the_invite() {
    cancel_while_ringing(|_| {});
}

#[test]
fn a_cancel_reaches_the_proxy_that_owns_the_invite() {
    cancel_while_ringing(|parts| parts.b2bua = None);
}

#[test]
fn an_unanswered_leg_times_out_in_the_b2bua() {
    callee_never_answers_the_invite(|_| {});
}

#[test]
fn an_unanswered_branch_times_out_in_the_proxy() {
    callee_never_answers_the_invite(|parts| parts.b2bua = None);
}

#[test]
fn a_softphone_cancels_the_pending_invite_after_a_challenge() {
    // Several rounds: the UA core's map order differs from one map to the next.
    for _ in 0..8 {
        softphone_cancels_after_a_challenge(|_| {});
        softphone_cancels_after_a_challenge(|parts| parts.b2bua = None);
    }
}
