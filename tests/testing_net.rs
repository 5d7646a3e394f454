//! The harness itself (`switchboard::testing::Net`): media datagrams go by address, the clock
//! jumps by the latency, loss / jitter / reordering / duplication follow the seed, and a host cut
//! off hears nothing. Two small nodes that mirror media datagrams stand in for real applications.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::application::{Application, FlowId, Io};
use switchboard::testing::{Link, Net, NodeId};
use switchboard::Endpoint;

/// Binds one media port at start and sends back every datagram it gets, counting them.
#[derive(Debug, Default)]
struct Mirror {
    port: u16,
    got: Vec<(Instant, Bytes)>,
}

impl Application for Mirror {
    fn start(&mut self, io: &mut Io<'_>, _now: Instant) {
        io.media.bind_pair([127, 0, 0, 1].into(), self.port..=self.port, false).expect("a free port");
    }
    fn handle_event(&mut self, _io: &mut Io<'_>, _event: switchboard::EndpointEvent, _now: Instant) {}
    fn handle_media(&mut self, io: &mut Io<'_>, flow: FlowId, source: SocketAddr, payload: Bytes, now: Instant) {
        self.got.push((now, payload.clone()));
        if payload.first() == Some(&b'?') {
            io.media.send(flow, source, Bytes::from_static(b"!"));
        }
    }
    fn handle_timeout(&mut self, _io: &mut Io<'_>, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn shutdown(&mut self, _io: &mut Io<'_>, _now: Instant) {}
    fn is_done(&self) -> bool {
        false
    }
}

fn pair(seed: u64, link: Link) -> (Net, NodeId<Mirror>, NodeId<Mirror>) {
    let mut net = Net::new(Instant::now(), seed);
    net.set_link(link);
    let ep = || Endpoint::new(switchboard::EndpointConfig::default());
    let a = net.add("a", "127.0.0.1:5060".parse().expect("addr"), ep(), Mirror { port: 4000, got: Vec::new() });
    let b = net.add("b", "127.0.0.1:5062".parse().expect("addr"), ep(), Mirror { port: 4002, got: Vec::new() });
    (net, a, b)
}

fn send_many(net: &mut Net, n: u8) {
    for i in 0..n {
        net.inject("127.0.0.1:4000".parse().expect("addr"), "127.0.0.1:4002".parse().expect("addr"), Bytes::from(vec![b'?', i]));
    }
}

#[test]
fn media_goes_by_address_and_the_clock_jumps_by_the_latency() {
    let (mut net, a, b) = pair(1, Link { latency: Duration::from_millis(30), ..Link::default() });
    let start = net.now();
    send_many(&mut net, 1);
    assert!(net.run_until(Duration::from_secs(1), |n| !n.app(a).got.is_empty()));
    assert_eq!(net.app(b).got[0].0 - start, Duration::from_millis(30), "one way");
    assert_eq!(net.app(a).got[0].0 - start, Duration::from_millis(60), "and back to the sender's flow");
    assert_eq!(net.app(a).got[0].1, Bytes::from_static(b"!"));
    net.inject("127.0.0.1:4000".parse().expect("addr"), "127.0.0.1:4444".parse().expect("addr"), Bytes::from_static(b"x"));
    net.run_for(Duration::from_secs(1));
    assert_eq!((net.stats().delivered, net.stats().unreachable), (2, 1), "nothing is bound at 4444");
    assert!(!net.step(), "idle: nothing in flight, no timer");
}

#[test]
fn loss_jitter_and_duplicates_are_seeded() {
    let link = Link { latency: Duration::from_millis(10), jitter: Duration::from_millis(20), loss: 0.1, reorder: 0.1, duplicate: 0.05 };
    let run = |seed| {
        let (mut net, _, b) = pair(seed, link);
        send_many(&mut net, 200);
        net.run_for(Duration::from_secs(1));
        let order: Vec<u8> = net.app(b).got.iter().map(|(_, p)| p[1]).collect();
        (net.stats(), order)
    };
    let (stats, order) = run(7);
    assert_eq!(run(7), (stats, order.clone()), "the same seed, the same run");
    assert_ne!(run(8).1, order, "another seed, another run");
    assert!((5..=40).contains(&stats.lost), "about 10% of 200 lost (and the replies): {stats:?}");
    assert!(stats.duplicated > 0, "{stats:?}");
    assert!(order.windows(2).any(|w| w[0] > w[1]), "some datagrams overtook others");
}

#[test]
fn a_host_cut_off_hears_nothing_until_it_is_back() {
    let (mut net, _, b) = pair(1, Link::default());
    net.cut_off([127, 0, 0, 1].into(), true);
    send_many(&mut net, 3);
    net.run_for(Duration::from_secs(1));
    assert!(net.app(b).got.is_empty());
    net.cut_off([127, 0, 0, 1].into(), false);
    send_many(&mut net, 3);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.app(b).got.len(), 3);
    assert_eq!(net.stats().lost, 3);
}

/// Asks to be woken at the same instant forever.
#[derive(Debug)]
struct Insomniac(Instant);

impl Application for Insomniac {
    fn handle_event(&mut self, _io: &mut Io<'_>, _event: switchboard::EndpointEvent, _now: Instant) {}
    fn handle_timeout(&mut self, _io: &mut Io<'_>, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.0)
    }
    fn shutdown(&mut self, _io: &mut Io<'_>, _now: Instant) {}
    fn is_done(&self) -> bool {
        false
    }
}

#[test]
#[should_panic(expected = "stuck")]
fn a_node_that_never_lets_the_clock_move_is_reported() {
    let mut net = Net::new(Instant::now(), 1);
    let wake = net.now() + Duration::from_millis(5);
    net.add("insomniac", "127.0.0.1:5060".parse().expect("addr"), Endpoint::new(Default::default()), Insomniac(wake));
    net.run_for(Duration::from_secs(1));
}
