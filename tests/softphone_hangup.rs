//! The softphone's hang-up before any answer, on the in-memory network of `switchboard::testing`
//! with a virtual clock: a CANCEL may not be sent before a provisional response (RFC 3261 §9.1),
//! so a hang-up that comes first is carried out once one came (here bob's 100 Trying) instead of
//! being lost. The callee is a scripted user agent (`testing::DialogUa`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::dialog::{DialogConfig, Dialogs, EndReason};
use switchboard::driver::Application;
use switchboard::endpoint::{Endpoint, EndpointConfig};
use switchboard::testing::{self, DialogUa, Net};
use switchboard::ua::phone::{EndState, Phone};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

#[test]
fn a_hangup_before_any_provisional_is_sent_once_one_comes() {
    let (alice_at, bob_at) = (addr("127.0.0.2:5060"), addr("127.0.0.3:5060"));
    let mut net = Net::new(Instant::now(), 1);
    let mut config = testing::phone_config("alice", "pw", alice_at, bob_at, 2);
    config.register = None;
    let ep = || Endpoint::new(EndpointConfig::default());
    let alice = net.add("alice", alice_at, ep(), Phone::new(config, None));
    let bob_dialogs = DialogConfig { contact: format!("sip:bob@{bob_at}"), sent_by: bob_at.to_string(), ..DialogConfig::default() };
    let bob = net.add("bob", bob_at, ep(), DialogUa::new(Dialogs::new(bob_dialogs)));
    // Alice dials and hangs up at the same instant: her INVITE is on the wire and no provisional
    // response (not even bob's 100 Trying) has come back, so no CANCEL may go out yet (§9.1).
    net.with(alice, |phone, io, now| {
        phone.dial(&format!("sip:bob@{bob_at}"), bob_at);
        phone.start(io, now);
        phone.hangup(io, now)
    })
    .expect("a call to hang up");
    net.run_for(Duration::from_secs(2));
    assert!(net.app(bob).incoming().is_some(), "bob got the INVITE");
    assert_eq!(net.app(bob).ended(), [EndReason::Cancelled], "the hang-up went out once bob's 100 came");
    let report = net.app(alice).reports.last().expect("alice's call ended");
    assert_eq!((report.state, report.reason.as_str()), (EndState::Cancelled, "cancel"));
}
