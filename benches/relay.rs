//! Relay benchmark: `Relay::handle_datagram` on 1,000 live calls, each packet an RTP packet from
//! one leg's phone (sequence and timestamp advancing, 50 packets/s per leg) that the relay
//! classifies, checks against the latch, counts (RFC 3550 A.1/A.8) and routes to the other leg.
//!
//! `cargo bench --bench relay` prints criterion's time per packet, then the heap allocations per
//! packet (counted by a counting global allocator; expected 0).

use criterion::{black_box, criterion_group, Criterion, Throughput};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::application::FlowId;
use switchboard::relay::{Leg, LegPorts, Relay, RelayConfig, RelayId, RemoteMedia};

#[path = "common/alloc.rs"]
mod alloc;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

const CALLS: u32 = 1_000;

/// One phone's stream: the flow it arrives on, its source, and the next packet (PCMU, 160 bytes).
struct Stream {
    flow: FlowId,
    source: SocketAddr,
    packet: Vec<u8>,
}

impl Stream {
    /// Advances sequence number and timestamp in place (no allocation in the loop).
    fn advance(&mut self) {
        if let [_, _, s0, s1, t0, t1, t2, t3, ..] = &mut self.packet[..] {
            let seq = u16::from_be_bytes([*s0, *s1]).wrapping_add(1);
            let ts = u32::from_be_bytes([*t0, *t1, *t2, *t3]).wrapping_add(160);
            [*s0, *s1] = seq.to_be_bytes();
            [*t0, *t1, *t2, *t3] = ts.to_be_bytes();
        }
    }
}

/// 1,000 calls with both phones' SDP known, and one stream per leg.
fn setup(t0: Instant) -> (Relay, Vec<Stream>) {
    let mut relay = Relay::new(RelayConfig::default());
    let mut streams = Vec::new();
    for i in 0..CALLS {
        let f = 4 * i;
        let port = |n: u32| 20_000 + (4 * i + n) as u16 % 40_000;
        let local = |n| SocketAddr::from(([198, 51, 100, 1], port(n)));
        let caller = LegPorts { rtp: FlowId(f), rtcp: Some(FlowId(f + 1)), local: local(0) };
        let callee = LegPorts { rtp: FlowId(f + 2), rtcp: Some(FlowId(f + 3)), local: local(2) };
        relay.insert(RelayId(u64::from(i)), caller, callee, t0);
        let phone = |net: u8| SocketAddr::from(([203, 0, net, (i % 250) as u8 + 1], 30_000 + (i % 30_000) as u16));
        relay.set_remote(RelayId(u64::from(i)), Leg::Caller, RemoteMedia::sendrecv(phone(113)), t0);
        relay.set_remote(RelayId(u64::from(i)), Leg::Callee, RemoteMedia::sendrecv(phone(114)), t0);
        for (flow, source, ssrc) in [(caller.rtp, phone(113), 2 * i), (callee.rtp, phone(114), 2 * i + 1)] {
            let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0];
            packet.extend_from_slice(&ssrc.to_be_bytes());
            packet.extend_from_slice(&[0xFF; 160]);
            streams.push(Stream { flow, source, packet });
        }
    }
    (relay, streams)
}

/// One round-robin step: the next stream sends its next packet, 10 µs after the previous one
/// (2,000 streams at 50 packets/s).
struct Driver {
    relay: Relay,
    streams: Vec<Stream>,
    next: usize,
    now: Instant,
}

impl Driver {
    #[inline(never)]
    fn step(&mut self) -> Option<(FlowId, SocketAddr)> {
        self.next = (self.next + 1) % self.streams.len();
        self.now += Duration::from_micros(10);
        let stream = &mut self.streams[self.next];
        stream.advance();
        self.relay.handle_datagram(stream.flow, stream.source, black_box(&stream.packet), self.now)
    }
}

fn driver() -> Driver {
    let t0 = Instant::now();
    let (relay, streams) = setup(t0);
    let mut d = Driver { relay, streams, next: 0, now: t0 };
    // Latch every leg and get every source past RFC 3550 A.1 probation.
    for _ in 0..3 * d.streams.len() {
        assert!(d.step().is_some());
    }
    d
}

fn bench_relay(c: &mut Criterion) {
    let mut group = c.benchmark_group("relay");
    group.throughput(Throughput::Elements(1));
    let mut d = driver();
    group.bench_function(format!("handle_datagram, {CALLS} calls (172-byte RTP)"), |b| b.iter(|| d.step()));
    group.finish();
}

fn report_allocations() {
    let mut d = driver();
    const N: usize = 1_000_000;
    let before = alloc::allocations();
    let start = Instant::now();
    for _ in 0..N {
        black_box(d.step());
    }
    let elapsed = start.elapsed();
    let allocations = alloc::allocations() - before;
    println!("\n{N} packets over {CALLS} calls: {:.1} ns/packet, {allocations} heap allocations", elapsed.as_nanos() as f64 / N as f64);
    let (caller, callee) = d.relay.stats(RelayId(0)).expect("call 0 is live");
    println!("call 0: caller {} packets, {} lost; callee {} packets, {} lost", caller.packets, caller.lost, callee.packets, callee.lost);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_relay
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report_allocations();
}
