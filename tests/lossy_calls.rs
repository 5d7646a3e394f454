//! Calls through the service on a network that loses one datagram in ten, SIP and RTP alike, with
//! 5-25 ms of delay (jitter reorders some) and some reordering and duplication on top.
//!
//! Setup: the real service (registrar, digest auth, and the B2BUA with the relay or the stateful
//! proxy) and two real softphones, alice and bob, on the in-memory network of
//! `switchboard::testing` with a virtual clock; no socket. Both register; then alice calls bob,
//! one call after another: INVITE (407, again with credentials), bob rings and answers, half a
//! second of RTP both ways (through the relay in B2BUA mode, phone to phone through the proxy),
//! alice hangs up.
//!
//! Asserts: retransmissions carry every call through the loss (each phone reports every call
//! completed), RTP flowed, and once the timers have run the service holds no call, no transaction
//! and no relay port. Prints the wall time of each run (no timing assertion).

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::service::app::{Service, ServiceParts};
use switchboard::testing::{self, Link, Net, NodeId};
use switchboard::ua::phone::{EndState, Phone};
use switchboard::ua::register::RegState;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn completed(net: &Net, phone: NodeId<Phone>) -> usize {
    net.app(phone).reports.iter().filter(|r| r.state == EndState::Completed).count()
}

/// Runs `calls` calls from alice to bob through a service built by `mode` from the default
/// parts, then lets every timer run out. Returns the network and its nodes.
fn run(calls: usize, mode: impl FnOnce(&mut ServiceParts)) -> (Net, NodeId<Service>, NodeId<Phone>, NodeId<Phone>) {
    let wall = Instant::now();
    let (sb, alice_at, bob_at) = (addr("127.0.0.1:5060"), addr("127.0.0.2:5060"), addr("127.0.0.3:5060"));
    // Another seed, another run of losses: `LOSSY_CALLS_SEED=7 cargo test --test lossy_calls`.
    let seed = std::env::var("LOSSY_CALLS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(13);
    let mut net = Net::new(Instant::now(), seed);
    net.set_link(Link { latency: Duration::from_millis(5), jitter: Duration::from_millis(20), loss: 0.10, reorder: 0.02, duplicate: 0.01 });
    let mut parts = testing::service_parts(sb, &[("alice", "alice-pw"), ("bob", "bob-pw")], 1);
    mode(&mut parts);
    let service = net.add("switchboard", sb, testing::service_endpoint(), Service::new(parts));
    let mut alice = testing::phone_config("alice", "alice-pw", alice_at, sb, 2);
    alice.duration = Some(Duration::from_millis(500));
    let mut bob = testing::phone_config("bob", "bob-pw", bob_at, sb, 3);
    bob.auto_answer = Some(Duration::from_millis(100));
    let alice = net.add("alice", alice_at, switchboard::Endpoint::new(Default::default()), Phone::new(alice, None));
    let bob = net.add("bob", bob_at, switchboard::Endpoint::new(Default::default()), Phone::new(bob, None));
    let registered = |n: &Net| [alice, bob].iter().all(|&p| n.app(p).registration() == Some(RegState::Registered));
    assert!(net.run_until(Duration::from_secs(60), registered), "both phones register");

    for call in 0..calls {
        net.with(alice, |phone, io, now| {
            phone.dial(&format!("sip:bob@{}", sb.ip()), sb);
            switchboard::application::Application::start(phone, io, now);
        });
        let ended = net.run_until(Duration::from_secs(120), |n| n.app(alice).reports.len() > call);
        assert!(ended, "call {call} ended: {net:?}");
    }
    // Time for the last BYE's answer, Timers J and K, and the service's lingering state.
    net.run_until(Duration::from_secs(120), |n| {
        n.app(service).live_calls(n.now()).is_empty() && n.endpoint(service).transaction_count() == 0 && completed(n, bob) == calls
    });
    let failed: Vec<_> = net.app(alice).reports.iter().filter(|r| r.state != EndState::Completed).map(|r| (&r.state, &r.reason)).collect();
    println!(
        "{calls} calls at 10% loss (seed {seed}): {} completed by alice, {} by bob, {} failed {failed:?}; {:.0} s of virtual time in {:.2} s wall; network {:?}",
        completed(&net, alice),
        completed(&net, bob),
        failed.len(),
        net.elapsed().as_secs_f64(),
        wall.elapsed().as_secs_f64(),
        net.stats(),
    );
    assert!(net.stats().lost > 0, "the network did lose datagrams");
    assert_eq!(completed(&net, alice), calls, "every call completes: {failed:?}");
    assert_eq!(completed(&net, bob), calls, "and bob saw each one end");
    let with_media = net.app(alice).reports.iter().filter(|r| r.media.as_ref().is_some_and(|m| m.packets_received > 0)).count();
    assert!(with_media > calls * 9 / 10, "RTP reached alice in {with_media} calls");
    assert_eq!(net.endpoint(service).transaction_count(), 0, "no transaction left: {net:?}");
    (net, service, alice, bob)
}

#[test]
fn a_thousand_calls_through_the_b2bua_complete_despite_ten_percent_loss() {
    let (net, service, _, _) = run(1000, |_| {});
    assert_eq!(net.app(service).live_calls(net.now()).len(), 0, "no call left in the B2BUA");
    assert!(net.media(service).open.is_empty(), "every relay port is closed: {:?}", net.media(service).open);
}

#[test]
fn proxied_calls_complete_despite_ten_percent_loss() {
    let (net, service, _, _) = run(200, |parts| parts.b2bua = None);
    assert!(net.media(service).open.is_empty(), "media went phone to phone, not through the service");
}
