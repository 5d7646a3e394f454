//! A media port another process holds (issue 13 point 3). Ports are picked on the sans-IO side
//! (`application::Media`) and bound by the driver afterwards, so a taken port shows only when the
//! bind fails, after the SDP naming it is on its way: the call that owned it ends, and nothing is
//! left open. (The tokio driver keeps spare pairs bound ahead, so there a taken port usually costs
//! a spare; `MemoryMedia` keeps none, so every taken port here reaches the application.)
//!
//! Setup: the real service and a real softphone on the in-memory network of
//! `switchboard::testing`, a virtual clock, no loss. Every port of one node's media range is
//! "held by another process" (`MemoryMedia::taken`).
//!
//! Asserts: when the echo user's port is taken, the call it already answered ends with its BYE
//! (sent once the ACK is in) and the service holds no media flow; when the softphone's own port is
//! taken, it gives its call up and holds no flow either. A call after that, with the ports free
//! again, completes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::application::Application;
use switchboard::service::app::Service;
use switchboard::testing::{self, Net, NodeId};
use switchboard::ua::phone::Phone;
use switchboard::ua::register::RegState;
use switchboard::Endpoint;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// The service and alice, registered.
fn world() -> (Net, NodeId<Service>, NodeId<Phone>, SocketAddr) {
    let (sb, alice_at) = (addr("127.0.0.1:5060"), addr("127.0.0.2:5060"));
    let mut net = Net::new(Instant::now(), 1);
    let service = net.add("switchboard", sb, testing::service_endpoint(), Service::new(testing::service_parts(sb, &[("alice", "pw")], 1)));
    let mut alice = testing::phone_config("alice", "pw", alice_at, sb, 2);
    alice.duration = Some(Duration::from_secs(2));
    let alice = net.add("alice", alice_at, Endpoint::new(Default::default()), Phone::new(alice, None));
    assert!(net.run_until(Duration::from_secs(10), |n| n.app(alice).registration() == Some(RegState::Registered)), "alice registers");
    (net, service, alice, sb)
}

/// Alice calls the echo user and the call runs its course; returns its report's (state, reason).
fn call_echo(net: &mut Net, alice: NodeId<Phone>, sb: SocketAddr) -> (String, String) {
    let before = net.app(alice).reports.len();
    net.with(alice, |phone, io, now| {
        phone.dial(&format!("sip:echo@{}", sb.ip()), sb);
        Application::start(phone, io, now);
    });
    assert!(net.run_until(Duration::from_secs(60), |n| n.app(alice).reports.len() > before), "the call ends: {net:?}");
    let r = &net.app(alice).reports[before];
    (r.state.to_string(), r.reason.clone())
}

#[test]
fn the_echo_user_hangs_up_when_its_media_port_is_taken() {
    let (mut net, service, alice, sb) = world();
    net.media_mut(service).taken.extend(30000..=39999);
    let (state, reason) = call_echo(&mut net, alice, sb);
    assert_eq!((state.as_str(), reason.as_str()), ("completed", "bye-remote"), "the echo user answered, then hung up");
    net.run_for(Duration::from_secs(1));
    assert!(net.media(service).open.is_empty(), "no echo port left open: {:?}", net.media(service).open);
    assert!(net.media(alice).open.is_empty(), "alice's ports closed with the call");

    net.media_mut(service).taken.clear();
    assert_eq!(call_echo(&mut net, alice, sb), ("completed".to_owned(), "bye-local".to_owned()), "with the ports free, a full call");
}

#[test]
fn the_softphone_gives_its_call_up_when_its_media_port_is_taken() {
    let (mut net, service, alice, sb) = world();
    net.media_mut(alice).taken.extend(20000..=29999);
    let (state, reason) = call_echo(&mut net, alice, sb);
    println!("the call alice gave up: {state} ({reason})");
    assert_ne!((state.as_str(), reason.as_str()), ("completed", "bye-local"), "the call did not run its course");
    net.run_for(Duration::from_secs(40));
    assert!(net.media(alice).open.is_empty(), "no port of alice's left open: {:?}", net.media(alice).open);
    assert!(net.media(service).open.is_empty(), "nor of the echo user's");
    assert!(net.app(service).live_calls(net.now()).is_empty());
}
