//! The B2BUA's RTP relay on a fake clock (one `Instant::now()` origin plus offsets): latching to a
//! NAT source (RFC 4961) after the learning window (each latching rule has its own test in
//! `src/relay/latch_tests.rs`), RTCP pass-through, classification, RFC 3550 loss and jitter figures, hold,
//! inactivity, 100,000 calls on one timer heap, and no panic on arbitrary bytes.
//!
//! Every call here has the caller's ports on flows 1 (RTP) and 2 (RTCP) and the callee's on 3 and 4.
//! The caller's SDP says 10.0.0.5:4000 (a private address behind NAT) while its packets come from
//! 203.0.113.7:31000, the address its SIP came from too; the callee at 192.0.2.20:5000 is reachable as declared.

use proptest::prelude::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::application::FlowId;
use switchboard::relay::{Leg, LegPorts, LegStats, Relay, RelayConfig, RelayId, RemoteMedia};

const ID: RelayId = RelayId(7);
const CALLER_RTP: FlowId = FlowId(1);
const CALLER_RTCP: FlowId = FlowId(2);
const CALLEE_RTP: FlowId = FlowId(3);
const CALLEE_RTCP: FlowId = FlowId(4);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The default learning window: a NAT source latches when it is over.
const W: Duration = switchboard::relay::DEFAULT_LEARNING;

fn caller_sdp() -> SocketAddr {
    addr("10.0.0.5:4000")
}
fn caller_nat() -> SocketAddr {
    addr("203.0.113.7:31000")
}
fn caller_nat_rtcp() -> SocketAddr {
    addr("203.0.113.7:31001")
}
fn callee() -> SocketAddr {
    addr("192.0.2.20:5000")
}
fn callee_rtcp() -> SocketAddr {
    addr("192.0.2.20:5001")
}

/// An RTP packet: PCMU, 160 payload bytes (172 on the wire).
fn rtp(ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xFF; 160]);
    p
}

/// An RTCP receiver report without report blocks (RFC 3550 §6.4.2).
fn rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

fn ports(rtp: FlowId, rtcp: Option<FlowId>, local: &str) -> LegPorts {
    LegPorts { rtp, rtcp, local: addr(local) }
}

/// A relay with one call, both phones' SDP known (sendrecv).
fn call(config: RelayConfig, t0: Instant) -> Relay {
    let mut relay = Relay::new(config);
    let caller_ports = ports(CALLER_RTP, Some(CALLER_RTCP), "198.51.100.1:20000");
    let callee_ports = ports(CALLEE_RTP, Some(CALLEE_RTCP), "198.51.100.1:20002");
    relay.insert(ID, caller_ports, callee_ports, t0);
    relay.set_remote(ID, Leg::Caller, RemoteMedia::sendrecv(caller_sdp()), t0);
    relay.set_remote(ID, Leg::Callee, RemoteMedia::sendrecv(callee()), t0);
    relay.set_peer_ip(ID, Leg::Caller, Some(caller_nat().ip()));
    relay
}

fn stats(relay: &Relay) -> (LegStats, LegStats) {
    relay.stats(ID).unwrap()
}

#[test]
fn latches_to_the_nat_source_not_the_sdp_address() {
    let t0 = Instant::now();
    let mut relay = call(RelayConfig::default(), t0);
    // Before the caller sends, RTP to it goes to its SDP address.
    assert_eq!(relay.handle_datagram(CALLEE_RTP, callee(), &rtp(2, 1, 0), t0), Some((CALLER_RTP, caller_sdp())));
    assert_eq!(relay.latched(ID, Leg::Caller), Some(caller_sdp()));
    // Its first packet comes from the NAT binding: forwarded to the callee, and learned; it
    // latches when the learning window is over, as nothing better (the SDP address) came.
    assert_eq!(relay.handle_datagram(CALLER_RTP, caller_nat(), &rtp(1, 1, 0), t0), Some((CALLEE_RTP, callee())));
    assert_eq!(relay.handle_datagram(CALLEE_RTP, callee(), &rtp(2, 2, 160), t0 + ms(20)), Some((CALLER_RTP, caller_sdp())));
    assert_eq!(relay.handle_datagram(CALLER_RTP, caller_nat(), &rtp(1, 2, 160), t0 + W), Some((CALLEE_RTP, callee())));
    assert_eq!(relay.latched(ID, Leg::Caller), Some(caller_nat()));
    assert_eq!(relay.handle_datagram(CALLEE_RTP, callee(), &rtp(2, 3, 320), t0 + W + ms(20)), Some((CALLER_RTP, caller_nat())));
    // A stray packet from elsewhere while the caller talks neither passes nor steals the latch.
    let stray = addr("203.0.113.66:1234");
    let last = t0 + W;
    assert_eq!(relay.handle_datagram(CALLER_RTP, stray, &rtp(9, 1, 0), last + ms(500)), None);
    assert_eq!(relay.latched(ID, Leg::Caller), Some(caller_nat()));
    // Exactly a window after the last packet is not yet silence.
    assert_eq!(relay.handle_datagram(CALLER_RTP, stray, &rtp(9, 2, 160), last + W), None);
    assert_eq!(stats(&relay).0.stray, 2);
    // After more than a window of silence, a new source (NAT rebinding) is learned: it passes
    // nothing during its own window, then latches.
    let rebound = addr("203.0.113.7:31500");
    assert_eq!(relay.handle_datagram(CALLER_RTP, rebound, &rtp(1, 3, 320), last + W + ms(1)), None);
    assert_eq!(relay.handle_datagram(CALLER_RTP, rebound, &rtp(1, 4, 480), last + W * 2 + ms(1)), Some((CALLEE_RTP, callee())));
    assert_eq!(relay.latched(ID, Leg::Caller), Some(rebound));
    // A re-INVITE from another network with a new address restarts learning: RTP goes there until
    // the phone's packets (from the re-INVITE's source IP) have won a window.
    let at = last + W * 3;
    let moved = addr("10.0.0.6:4100");
    let moved_nat = addr("203.0.113.8:40000");
    relay.set_peer_ip(ID, Leg::Caller, Some(moved_nat.ip()));
    relay.set_remote(ID, Leg::Caller, RemoteMedia::sendrecv(moved), at);
    assert_eq!(relay.handle_datagram(CALLEE_RTP, callee(), &rtp(2, 4, 480), at + ms(20)), Some((CALLER_RTP, moved)));
    assert!(relay.handle_datagram(CALLER_RTP, moved_nat, &rtp(1, 5, 640), at + ms(40)).is_some());
    assert!(relay.handle_datagram(CALLER_RTP, moved_nat, &rtp(1, 6, 800), at + ms(40) + W).is_some());
    assert_eq!(relay.latched(ID, Leg::Caller), Some(moved_nat));
    // The same address again (a session refresh) keeps the latch.
    relay.set_remote(ID, Leg::Caller, RemoteMedia::sendrecv(moved), at + W * 2);
    assert_eq!(relay.latched(ID, Leg::Caller), Some(moved_nat));
    let (caller, callee_stats) = stats(&relay);
    assert_eq!((caller.packets, caller.forwarded, caller.blocked, caller.bytes), (5, 5, 0, 5 * 172));
    assert_eq!((callee_stats.packets, callee_stats.forwarded), (4, 4));
}

#[test]
fn rtcp_passes_through_and_latches_on_its_own() {
    let t0 = Instant::now();
    let mut relay = call(RelayConfig::default(), t0);
    // Callee RTCP to the caller: its SDP RTCP address (RTP + 1) until the caller's RTCP latches,
    // a window after its first RTCP packet (from its SIP IP, not the SDP's, so not at once).
    assert_eq!(relay.handle_datagram(CALLEE_RTCP, callee_rtcp(), &rr(2), t0), Some((CALLER_RTCP, addr("10.0.0.5:4001"))));
    assert_eq!(relay.handle_datagram(CALLER_RTCP, caller_nat_rtcp(), &rr(1), t0), Some((CALLEE_RTCP, callee_rtcp())));
    assert_eq!(relay.handle_datagram(CALLEE_RTCP, callee_rtcp(), &rr(2), t0 + ms(5)), Some((CALLER_RTCP, addr("10.0.0.5:4001"))));
    let t = t0 + W;
    assert_eq!(relay.handle_datagram(CALLEE_RTCP, callee_rtcp(), &rr(2), t), Some((CALLER_RTCP, caller_nat_rtcp())));
    // RTCP does not latch RTP.
    assert_eq!(relay.latched(ID, Leg::Caller), Some(caller_sdp()));
    // Feedback (RFC 4585 PSFB, PT 206) passes too: the relay does not judge RTCP types.
    let pli = [0x81, 206, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1];
    assert_eq!(relay.handle_datagram(CALLEE_RTCP, callee_rtcp(), &pli, t + ms(6)), Some((CALLER_RTCP, caller_nat_rtcp())));
    // RTCP multiplexed on the callee's RTP port goes to the caller's RTCP destination, and from
    // then on RTCP to the callee goes to its RTP port (it shows it multiplexes).
    assert_eq!(relay.handle_datagram(CALLEE_RTP, callee(), &rr(2), t + ms(7)), Some((CALLER_RTCP, caller_nat_rtcp())));
    assert_eq!(relay.handle_datagram(CALLER_RTCP, caller_nat_rtcp(), &rr(1), t + ms(8)), Some((CALLEE_RTP, callee())));
    let (caller, callee_stats) = stats(&relay);
    assert_eq!((caller.rtcp_packets, callee_stats.rtcp_packets, caller.stray), (2, 5, 0));
    assert_eq!((caller.packets, callee_stats.packets, caller.non_rtp_dropped), (0, 0, 0));
}

#[test]
fn a_leg_without_rtcp_port_gets_rtcp_multiplexed() {
    let t0 = Instant::now();
    let mut relay = Relay::new(RelayConfig::default());
    relay.insert(ID, ports(CALLER_RTP, Some(CALLER_RTCP), "198.51.100.1:20000"), ports(CALLEE_RTP, None, "198.51.100.1:20002"), t0);
    let mux = RemoteMedia { rtcp: Some(callee()), ..RemoteMedia::sendrecv(callee()) };
    relay.set_remote(ID, Leg::Callee, mux, t0);
    relay.set_remote(ID, Leg::Caller, RemoteMedia::sendrecv(caller_sdp()), t0);
    let caller_rtcp = addr("10.0.0.5:4001");
    assert_eq!(relay.handle_datagram(CALLER_RTCP, caller_rtcp, &rr(1), t0), Some((CALLEE_RTP, callee())));
    assert!(!relay.owns(CALLEE_RTCP));
}

#[test]
fn neither_rtp_nor_rtcp_is_dropped_and_counted() {
    let t0 = Instant::now();
    let mut relay = call(RelayConfig::default(), t0);
    let stun = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    let garbage: &[&[u8]] = &[&stun, b"hello", &[], &[0x80], &[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[0x40; 40]];
    for g in garbage {
        assert_eq!(relay.handle_datagram(CALLER_RTP, caller_nat(), g, t0), None);
    }
    // RTP on the RTCP port is not RTCP.
    assert_eq!(relay.handle_datagram(CALLER_RTCP, caller_nat_rtcp(), &rtp(1, 1, 0), t0), None);
    let caller = stats(&relay).0;
    assert_eq!(caller.non_rtp_dropped, garbage.len() as u64 + 1);
    assert_eq!((caller.packets, caller.rtcp_packets, caller.stray), (0, 0, 0));
    // Garbage latches nothing.
    assert_eq!(relay.latched(ID, Leg::Caller), Some(caller_sdp()));
}

#[test]
fn unknown_flow_is_not_ours() {
    let t0 = Instant::now();
    let mut relay = call(RelayConfig::default(), t0);
    assert_eq!(relay.handle_datagram(FlowId(99), caller_nat(), &rtp(1, 1, 0), t0), None);
    assert!(!relay.owns(FlowId(99)));
    assert!([CALLER_RTP, CALLER_RTCP, CALLEE_RTP, CALLEE_RTCP].iter().all(|&f| relay.owns(f)));
    assert_eq!(stats(&relay), (LegStats::default(), LegStats::default()));
    assert_eq!(relay.stats(RelayId(8)), None);
}

/// Sequence 100..=111 every 20 ms (timestamp +160 at 8 kHz) with 105 lost and 110 arriving 10 ms
/// late, then 112..=119 with 112 and 113 lost.
#[test]
fn loss_and_jitter_of_a_synthetic_stream() {
    let t0 = Instant::now();
    let mut relay = call(RelayConfig::default(), t0);
    let send = |relay: &mut Relay, seq: u16, late: u64| {
        let n = u64::from(seq - 100);
        let at = t0 + ms(20 * n + late);
        relay.handle_datagram(CALLER_RTP, caller_nat(), &rtp(0xABCD, seq, 1000 + 160 * n as u32), at)
    };
    for seq in (100..=111).filter(|&s| s != 105) {
        assert!(send(&mut relay, seq, if seq == 110 { 10 } else { 0 }).is_some());
    }
    // Transit changes by +80 units at 110 and by -80 at 111 (A.8): J = 80/16, then 5 + (80 - 5)/16
    // = 9.6875 units of 1/8 ms.
    let s = stats(&relay).0;
    assert_eq!((s.packets, s.lost, s.jitter_ms), (11, 1, 9.6875 / 8.0));
    for seq in 114..=119 {
        send(&mut relay, seq, 0);
    }
    let s = stats(&relay).0;
    assert_eq!((s.packets, s.lost, s.bytes, s.forwarded), (17, 3, 17 * 172, 17));
    // Six more packets with D = 0: J decays by 15/16 each (A.8), within A.8's integer rounding.
    let expected = 9.6875 * (15.0f64 / 16.0).powi(6) / 8.0;
    assert!((s.jitter_ms - expected).abs() < 1.0 / 128.0, "{} vs {expected}", s.jitter_ms);
    assert_eq!(s.last_packet, Some(t0 + ms(20 * 19)));
    // Nothing came from the callee.
    assert_eq!((stats(&relay).1.jitter_ms, stats(&relay).1.lost), (0.0, 0));
}

#[test]
fn a_new_ssrc_after_a_reinvite_is_not_counted_as_loss() {
    let t0 = Instant::now();
    let mut relay = call(RelayConfig::default(), t0);
    for (i, seq) in [10u16, 11, 13, 14].into_iter().enumerate() {
        relay.handle_datagram(CALLER_RTP, caller_nat(), &rtp(1, seq, 160 * u32::from(seq)), t0 + ms(20 * i as u64)).unwrap();
    }
    assert_eq!(stats(&relay).0.lost, 1);
    // The phone restarts its stream far away in sequence space, with a new SSRC.
    relay.set_remote(ID, Leg::Caller, RemoteMedia::sendrecv(caller_sdp()), t0 + ms(100));
    for (i, seq) in (40_000u16..40_010).enumerate() {
        relay.handle_datagram(CALLER_RTP, caller_nat(), &rtp(2, seq, 7 + 160 * i as u32), t0 + ms(120 + 20 * i as u64)).unwrap();
    }
    let s = stats(&relay).0;
    assert_eq!((s.packets, s.lost, s.jitter_ms), (14, 1, 0.0));
}

#[test]
fn hold_blocks_audio_to_the_held_phone_and_resume_restores_it() {
    let t0 = Instant::now();
    let mut relay = Relay::new(RelayConfig::default());
    relay.insert(
        ID,
        ports(CALLER_RTP, Some(CALLER_RTCP), "198.51.100.1:20000"),
        ports(CALLEE_RTP, Some(CALLEE_RTCP), "198.51.100.1:20002"),
        t0,
    );
    relay.set_remote(ID, Leg::Caller, RemoteMedia::sendrecv(caller_sdp()), t0);
    relay.set_peer_ip(ID, Leg::Caller, Some(caller_nat().ip()));
    // The callee has no address yet: before the answer nothing the caller's port gets passes
    // (the caller cannot know the relay's address yet: it is a stranger's).
    assert_eq!(relay.handle_datagram(CALLER_RTP, caller_nat(), &rtp(1, 1, 0), t0), None);
    relay.set_remote(ID, Leg::Callee, RemoteMedia::sendrecv(callee()), t0);
    assert!(relay.handle_datagram(CALLER_RTP, caller_nat(), &rtp(1, 2, 160), t0 + ms(20)).is_some());
    // A window later the caller's NAT binding has latched.
    let t = t0 + ms(20) + W;
    assert!(relay.handle_datagram(CALLER_RTP, caller_nat(), &rtp(1, 3, 320), t).is_some());
    assert_eq!(relay.latched(ID, Leg::Caller), Some(caller_nat()));
    // The caller puts the callee on hold: caller sendonly, callee answers recvonly.
    let sendonly = RemoteMedia { receives: false, ..RemoteMedia::sendrecv(caller_sdp()) };
    let recvonly = RemoteMedia { sends: false, ..RemoteMedia::sendrecv(callee()) };
    relay.set_remote(ID, Leg::Caller, sendonly, t + ms(30));
    relay.set_remote(ID, Leg::Callee, recvonly, t + ms(30));
    // Music on hold from the caller still reaches the callee; whatever the callee sends does not
    // reach the caller (who said it does not receive).
    assert_eq!(relay.handle_datagram(CALLER_RTP, caller_nat(), &rtp(1, 4, 480), t + ms(40)), Some((CALLEE_RTP, callee())));
    assert_eq!(relay.handle_datagram(CALLEE_RTP, callee(), &rtp(2, 1, 0), t + ms(40)), None);
    // RTCP still passes both ways (the callee's from its SDP address latches at once; the
    // caller's is the first RTCP on that port).
    assert!(relay.handle_datagram(CALLEE_RTCP, callee_rtcp(), &rr(2), t + ms(41)).is_some());
    assert!(relay.handle_datagram(CALLER_RTCP, caller_nat_rtcp(), &rr(1), t + ms(41)).is_none(), "on hold nothing new latches");
    // Hold the other way with c=0.0.0.0: no audio reaches the callee, whatever the caller sends.
    let zero = RemoteMedia { rtp: Some(addr("0.0.0.0:5000")), rtcp: None, sends: false, receives: false, clock_rate: 8000 };
    relay.set_remote(ID, Leg::Callee, zero, t + ms(50));
    assert_eq!(relay.handle_datagram(CALLER_RTP, caller_nat(), &rtp(1, 5, 640), t + ms(60)), None);
    // Resume: audio flows again both ways, to the caller's NAT binding at once (the latch survived).
    relay.set_remote(ID, Leg::Caller, RemoteMedia::sendrecv(caller_sdp()), t + ms(70));
    relay.set_remote(ID, Leg::Callee, RemoteMedia::sendrecv(callee()), t + ms(70));
    assert_eq!(relay.handle_datagram(CALLER_RTP, caller_nat(), &rtp(1, 6, 800), t + ms(80)), Some((CALLEE_RTP, callee())));
    assert_eq!(relay.handle_datagram(CALLEE_RTP, callee(), &rtp(2, 2, 160), t + ms(80)), Some((CALLER_RTP, caller_nat())));
    let (caller, callee_stats) = stats(&relay);
    assert_eq!((caller.packets, caller.forwarded, caller.blocked), (5, 4, 1));
    assert_eq!((callee_stats.packets, callee_stats.forwarded, callee_stats.blocked), (2, 1, 1));
    assert_eq!((caller.rtcp_packets, callee_stats.rtcp_packets, caller.stray), (0, 1, 2));
}

#[test]
fn inactivity_is_reported_once_per_leg_after_exactly_the_timeout() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(30);
    let mut relay = call(RelayConfig { inactivity: Some(timeout), ..RelayConfig::default() }, t0);
    // The caller talks for 5 s from t0 + 1 s; the callee never does.
    let mut last = t0;
    for i in 0..250u16 {
        last = t0 + ms(1000 + 20 * u64::from(i));
        relay.handle_datagram(CALLER_RTP, caller_nat(), &rtp(1, i, 160 * u32::from(i)), last).unwrap();
    }
    assert_eq!(relay.poll_timeout(), Some(t0 + timeout));
    assert!(relay.handle_timeout(t0 + timeout - Duration::from_nanos(1)).is_empty());
    assert_eq!(relay.handle_timeout(t0 + timeout), [(ID, Leg::Callee)]);
    // The caller's entry was early; it now waits for the real deadline.
    assert_eq!(relay.poll_timeout(), Some(last + timeout));
    assert!(relay.handle_timeout(last + timeout - Duration::from_nanos(1)).is_empty());
    assert_eq!(relay.handle_timeout(last + timeout), [(ID, Leg::Caller)]);
    // Reported once: nothing more, ever.
    assert_eq!(relay.poll_timeout(), None);
    assert!(relay.handle_timeout(t0 + Duration::from_secs(1000)).is_empty());
    // The callee speaks up and goes silent again: a new report, once.
    let later = t0 + Duration::from_secs(100);
    relay.handle_datagram(CALLEE_RTP, callee(), &rtp(2, 1, 0), later).unwrap();
    assert_eq!(relay.poll_timeout(), Some(later + timeout));
    assert_eq!(relay.handle_timeout(later + timeout), [(ID, Leg::Callee)]);
    assert!(relay.handle_timeout(later + timeout * 3).is_empty());
    // A new SDP rearms too.
    relay.set_remote(ID, Leg::Caller, RemoteMedia::sendrecv(caller_sdp()), later + timeout * 4);
    assert_eq!(relay.handle_timeout(later + timeout * 5), [(ID, Leg::Caller)]);
}

#[test]
fn a_held_leg_is_never_reported_inactive() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(30);
    let mut relay = call(RelayConfig { inactivity: Some(timeout), ..RelayConfig::default() }, t0);
    // The caller holds: it says sendonly (and sends nothing), the callee answers recvonly.
    relay.set_remote(ID, Leg::Caller, RemoteMedia { receives: false, ..RemoteMedia::sendrecv(caller_sdp()) }, t0 + ms(10));
    relay.set_remote(ID, Leg::Callee, RemoteMedia { sends: false, ..RemoteMedia::sendrecv(callee()) }, t0 + ms(10));
    let mut reported = Vec::new();
    let mut now = t0;
    while let Some(at) = relay.poll_timeout().filter(|&at| at < t0 + Duration::from_secs(600)) {
        now = at;
        reported.extend(relay.handle_timeout(now));
    }
    // Only the caller, which said it sends.
    assert_eq!(reported, [(ID, Leg::Caller)]);
    assert_eq!(now, t0 + ms(10) + timeout);
    // Both inactive: neither is watched.
    relay.set_remote(ID, Leg::Caller, RemoteMedia { sends: false, receives: false, ..RemoteMedia::sendrecv(caller_sdp()) }, now);
    assert_eq!(relay.poll_timeout(), None);
    assert!(relay.handle_timeout(now + timeout * 10).is_empty());
    // No inactivity configured: no timers at all.
    assert_eq!(call(RelayConfig { inactivity: None, ..RelayConfig::default() }, t0).poll_timeout(), None);
}

/// 100,000 calls inserted 1 µs apart; the caller of every even call sends once at 10 s; every
/// tenth call is removed. Driven only by `poll_timeout`, every leg still relayed is reported exactly
/// at its deadline, once, and removed calls never.
#[test]
fn hundred_thousand_relays_keep_poll_timeout_correct() {
    const N: u64 = 100_000;
    let t0 = Instant::now();
    let timeout = Duration::from_secs(30);
    let mut relay = Relay::new(RelayConfig { inactivity: Some(timeout), ..RelayConfig::default() });
    let us = Duration::from_micros;
    for i in 0..N {
        let f = (i * 4) as u32;
        let at = t0 + us(i);
        let caller = ports(FlowId(f), Some(FlowId(f + 1)), "198.51.100.1:20000");
        relay.insert(RelayId(i), caller, ports(FlowId(f + 2), Some(FlowId(f + 3)), "198.51.100.1:20002"), at);
        relay.set_remote(RelayId(i), Leg::Caller, RemoteMedia::sendrecv(caller_sdp()), at);
        relay.set_peer_ip(RelayId(i), Leg::Caller, Some(caller_nat().ip()));
        relay.set_remote(RelayId(i), Leg::Callee, RemoteMedia::sendrecv(callee()), at);
    }
    let talk = t0 + Duration::from_secs(10);
    for i in (0..N).step_by(2) {
        relay.handle_datagram(FlowId((i * 4) as u32), caller_nat(), &rtp(1, 1, 0), talk).unwrap();
    }
    for i in (0..N).step_by(10) {
        assert!(relay.remove(RelayId(i)).is_some());
    }
    assert_eq!(relay.len(), (N - N / 10) as usize);
    let mut seen = std::collections::HashMap::new();
    let mut wakes = 0;
    while let Some(now) = relay.poll_timeout() {
        wakes += 1;
        for (id, leg) in relay.handle_timeout(now) {
            assert!(seen.insert((id, leg), now).is_none(), "{id:?} {leg:?} reported twice");
        }
        assert!(wakes < 4 * N, "the timer heap does not drain");
    }
    assert_eq!(seen.len(), 2 * relay.len());
    for ((RelayId(i), leg), at) in seen {
        assert_ne!(i % 10, 0, "removed call {i} reported");
        let expected = if leg == Leg::Caller && i % 2 == 0 { talk + timeout } else { t0 + us(i) + timeout };
        assert_eq!(at, expected, "call {i} {leg:?}");
    }
}

/// Calls come and go by the thousand (their stale timer entries are compacted away) while one
/// call lives on: its silence is still reported exactly on time.
#[test]
fn churn_does_not_lose_a_live_timer() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(30);
    let mut relay = call(RelayConfig { inactivity: Some(timeout), ..RelayConfig::default() }, t0);
    for i in 0..20_000u32 {
        let id = RelayId(1000 + u64::from(i));
        let f = 100 + 4 * i;
        let at = t0 + Duration::from_micros(u64::from(i));
        relay.insert(id, ports(FlowId(f), None, "198.51.100.1:20004"), ports(FlowId(f + 2), None, "198.51.100.1:20006"), at);
        relay.remove(id).unwrap();
    }
    assert_eq!(relay.len(), 1);
    assert_eq!(relay.handle_timeout(t0 + timeout), [(ID, Leg::Caller), (ID, Leg::Callee)]);
    assert_eq!(relay.poll_timeout().filter(|&at| at <= t0 + timeout), None);
    assert!(relay.handle_timeout(t0 + timeout * 2).is_empty());
    assert_eq!(relay.poll_timeout(), None);
}

#[test]
fn remove_returns_the_figures_and_forgets_the_flows() {
    let t0 = Instant::now();
    let mut relay = call(RelayConfig::default(), t0);
    relay.handle_datagram(CALLER_RTP, caller_nat(), &rtp(1, 1, 0), t0).unwrap();
    assert_eq!(relay.ids().collect::<Vec<_>>(), [ID]);
    let (caller, _) = relay.remove(ID).unwrap();
    assert_eq!(caller.packets, 1);
    assert!(relay.is_empty() && !relay.owns(CALLER_RTP) && relay.remove(ID).is_none());
    assert_eq!(relay.handle_datagram(CALLER_RTP, caller_nat(), &rtp(1, 2, 160), t0), None);
    // Whatever the heap still holds for the removed call is dropped without a report.
    assert!(relay.handle_timeout(t0 + Duration::from_secs(3600)).is_empty());
    assert_eq!(relay.poll_timeout(), None);
}

/// Every single-byte mutation of valid RTP and RTCP, on every flow, from two sources.
#[test]
fn mutated_packets_never_panic() {
    let t0 = Instant::now();
    let mut relay = call(RelayConfig::default(), t0);
    let seeds =
        [rtp(1, 1, 0), rr(1), vec![0x81, 206, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1], vec![0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1]];
    let mut n = 0u64;
    for seed in &seeds {
        for pos in 0..seed.len().min(16) {
            for byte in 0..=255u8 {
                let mut d = seed.clone();
                d[pos] = byte;
                for len in [d.len(), pos + 1] {
                    for flow in [CALLER_RTP, CALLER_RTCP, CALLEE_RTP, CALLEE_RTCP] {
                        n += 1;
                        let src = if n % 3 == 0 { callee() } else { caller_nat() };
                        let _ = relay.handle_datagram(flow, src, &d[..len], t0 + Duration::from_micros(n));
                    }
                }
            }
        }
    }
    let (a, b) = stats(&relay);
    assert!(a.packets + a.non_rtp_dropped + a.stray + a.rtcp_packets > 0 && b.packets + b.non_rtp_dropped + b.stray > 0);
}

proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic(
        datagrams in proptest::collection::vec((0u32..6, any::<u16>(), proptest::collection::vec(any::<u8>(), 0..64), 0u64..5_000), 1..40)
    ) {
        let t0 = Instant::now();
        let mut relay = call(RelayConfig::default(), t0);
        let mut now = t0;
        for (flow, port, bytes, step) in datagrams {
            now += Duration::from_millis(step);
            let source = SocketAddr::from(([203, 0, 113, 7], port));
            if let Some((out, _)) = relay.handle_datagram(FlowId(flow), source, &bytes, now) {
                prop_assert!([CALLER_RTP, CALLER_RTCP, CALLEE_RTP, CALLEE_RTCP].contains(&out));
            }
            let _ = relay.handle_timeout(now);
        }
        let (a, b) = stats(&relay);
        prop_assert_eq!(a.packets, a.forwarded + a.blocked);
        prop_assert_eq!(b.packets, b.forwarded + b.blocked);
    }
}
