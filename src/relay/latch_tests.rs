//! The latching rules of the module doc, one test each, on a virtual clock (`t0` plus offsets).
//!
//! The caller's SDP names 192.0.2.10:4000; the callee's 192.0.2.20:5000 (which is also where the
//! callee sends from, so it latches at once). Strangers spray from 198.51.100.66. The window is
//! 3 s (the default).

use super::*;

const ID: RelayId = RelayId(1);
const CALLER_RTP: FlowId = FlowId(1);
const CALLER_RTCP: FlowId = FlowId(2);
const CALLEE_RTP: FlowId = FlowId(3);
const CALLEE_RTCP: FlowId = FlowId(4);
const WINDOW: Duration = DEFAULT_LEARNING;

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
fn caller_sdp() -> SocketAddr {
    a("192.0.2.10:4000")
}
fn callee() -> SocketAddr {
    a("192.0.2.20:5000")
}
fn stranger() -> SocketAddr {
    a("198.51.100.66:7078")
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 9]);
    p.extend_from_slice(&[0xFF; 20]);
    p
}
fn rr() -> Vec<u8> {
    vec![0x80, 201, 0, 1, 0, 0, 0, 9]
}

/// A call with both SDPs set at `t0`; the callee has latched with one packet.
fn call(t0: Instant) -> Relay {
    let mut relay = Relay::new(RelayConfig::default());
    let leg = |rtp, rtcp, port| LegPorts { rtp, rtcp: Some(rtcp), local: SocketAddr::new([203, 0, 113, 1].into(), port) };
    relay.insert(ID, leg(CALLER_RTP, CALLER_RTCP, 20000), leg(CALLEE_RTP, CALLEE_RTCP, 20002), t0);
    relay.set_remote(ID, Leg::Caller, RemoteMedia::sendrecv(caller_sdp()), t0);
    relay.set_remote(ID, Leg::Callee, RemoteMedia::sendrecv(callee()), t0);
    assert_eq!(relay.handle_datagram(CALLEE_RTP, callee(), &rtp(1), t0), Some((CALLER_RTP, caller_sdp())));
    relay
}

/// Where the callee's next packet at `at` goes (that is, where the caller's audio goes).
fn to_caller(relay: &mut Relay, at: Instant) -> Option<SocketAddr> {
    relay.handle_datagram(CALLEE_RTP, callee(), &rtp(2), at).map(|(flow, dest)| {
        assert_eq!(flow, CALLER_RTP);
        dest
    })
}

fn from(relay: &mut Relay, source: SocketAddr, at: Instant) -> bool {
    relay.handle_datagram(CALLER_RTP, source, &rtp(3), at).is_some()
}

#[test]
fn before_latching_audio_goes_only_to_the_sdp_address() {
    let t0 = Instant::now();
    let mut relay = call(t0);
    // A stranger sprays before the phone's first packet: it opens the window, passes nothing to
    // the callee, and the audio still goes to the SDP address, never to the stranger.
    assert!(!from(&mut relay, stranger(), t0 + ms(10)));
    assert_eq!(to_caller(&mut relay, t0 + ms(20)), Some(caller_sdp()));
    assert_eq!(relay.latched(ID, Leg::Caller), Some(caller_sdp()));
}

#[test]
fn the_sdp_address_latches_at_once_even_after_a_spray() {
    let t0 = Instant::now();
    let mut relay = call(t0);
    assert!(!from(&mut relay, stranger(), t0 + ms(10)));
    assert!(from(&mut relay, caller_sdp(), t0 + ms(20)));
    assert_eq!(relay.latched(ID, Leg::Caller), Some(caller_sdp()));
    // From now on the stranger passes nothing, within the window and after it.
    assert!(!from(&mut relay, stranger(), t0 + ms(30)));
    assert!(!from(&mut relay, stranger(), t0 + ms(20) + WINDOW));
    assert_eq!(to_caller(&mut relay, t0 + ms(20) + WINDOW + ms(1)), Some(caller_sdp()));
    assert_eq!(relay.stats(ID).unwrap().0.stray, 3);
}

#[test]
fn the_same_ip_beats_any_and_latches_when_the_window_is_over() {
    let t0 = Instant::now();
    let mut relay = call(t0);
    let same_ip = a("192.0.2.10:31000");
    assert!(!from(&mut relay, stranger(), t0 + ms(10)));
    assert!(from(&mut relay, same_ip, t0 + ms(20)));
    // The replaced candidate passes nothing any more; the better one does.
    assert!(!from(&mut relay, stranger(), t0 + ms(30)));
    assert!(from(&mut relay, same_ip, t0 + ms(40)));
    // Not latched before the window (opened by the stranger's first packet) is over...
    assert_eq!(to_caller(&mut relay, t0 + ms(10) + WINDOW - ms(1)), Some(caller_sdp()));
    // ...then the best one latches.
    assert_eq!(to_caller(&mut relay, t0 + ms(10) + WINDOW), Some(same_ip));
    assert!(!from(&mut relay, stranger(), t0 + ms(20) + WINDOW));
}

#[test]
fn a_nat_source_latches_only_when_nothing_better_came_in_the_window() {
    let t0 = Instant::now();
    let mut relay = call(t0);
    let nat = a("203.0.113.7:31000");
    // The phone behind NAT: neither its audio nor the audio to it passes (that goes to the SDP
    // address) until the window is over.
    assert!(!from(&mut relay, nat, t0 + ms(100)));
    assert_eq!(to_caller(&mut relay, t0 + ms(120)), Some(caller_sdp()));
    assert!(!from(&mut relay, nat, t0 + ms(100) + WINDOW - ms(20)));
    assert_eq!(to_caller(&mut relay, t0 + ms(100) + WINDOW), Some(nat));
    assert!(from(&mut relay, nat, t0 + ms(100) + WINDOW));
    // A stranger of the same rank that came second never had a chance.
    assert!(!from(&mut relay, stranger(), t0 + ms(100) + WINDOW + ms(1)));
}

#[test]
fn a_fresh_latch_never_moves_and_a_silent_one_is_won_back_only_by_a_whole_window() {
    let t0 = Instant::now();
    let mut relay = call(t0);
    assert!(from(&mut relay, caller_sdp(), t0));
    // While the phone talks, the stranger gets nothing, however long it sprays.
    for i in 1..200 {
        let at = t0 + ms(20 * i);
        assert!(from(&mut relay, caller_sdp(), at));
        assert!(!from(&mut relay, stranger(), at));
    }
    let last = t0 + ms(20 * 199);
    // Exactly a window of silence is not yet silence.
    assert!(!from(&mut relay, stranger(), last + WINDOW));
    // After it, a stranger opens a window but passes nothing and receives nothing...
    assert!(!from(&mut relay, stranger(), last + WINDOW + ms(1)));
    assert_eq!(to_caller(&mut relay, last + WINDOW + ms(2)), Some(caller_sdp()));
    // ...and the phone talking again (silence suppression, say) ends that window.
    assert!(from(&mut relay, caller_sdp(), last + WINDOW + ms(500)));
    assert!(!from(&mut relay, stranger(), last + 2 * WINDOW + ms(2)));
    assert_eq!(to_caller(&mut relay, last + 2 * WINDOW + ms(3)), Some(caller_sdp()));
}

#[test]
fn a_gone_phone_is_replaced_after_a_second_window_nat_rebinding() {
    let t0 = Instant::now();
    let mut relay = call(t0);
    let nat = a("203.0.113.7:31000");
    let rebound = a("203.0.113.7:31500");
    assert!(!from(&mut relay, nat, t0));
    assert_eq!(to_caller(&mut relay, t0 + WINDOW), Some(nat));
    // Silent for a window, then packets from a new binding: nothing passes during its window...
    let quiet = t0 + 2 * WINDOW + ms(1);
    assert!(!from(&mut relay, rebound, quiet));
    assert_eq!(to_caller(&mut relay, quiet + ms(1)), Some(nat));
    // ...then it latches.
    assert!(from(&mut relay, rebound, quiet + WINDOW));
    assert_eq!(to_caller(&mut relay, quiet + WINDOW + ms(1)), Some(rebound));
}

#[test]
fn on_hold_the_latch_never_moves() {
    let t0 = Instant::now();
    let mut relay = call(t0);
    assert!(from(&mut relay, caller_sdp(), t0));
    // The caller holds (sendonly from its side) and then sends nothing for a minute.
    let sendonly = RemoteMedia { receives: false, ..RemoteMedia::sendrecv(caller_sdp()) };
    relay.set_remote(ID, Leg::Caller, sendonly, t0 + ms(10));
    for s in 1..60 {
        assert!(!from(&mut relay, stranger(), t0 + Duration::from_secs(s)));
    }
    let inactive = RemoteMedia { sends: false, receives: false, ..RemoteMedia::sendrecv(caller_sdp()) };
    relay.set_remote(ID, Leg::Caller, inactive, t0 + Duration::from_secs(60));
    assert!(!from(&mut relay, stranger(), t0 + Duration::from_secs(70)));
    assert!(!from(&mut relay, stranger(), t0 + Duration::from_secs(80)));
    // Resumed at the same address: the latch stands and counts as heard, so a stranger right
    // after the resume still gets nothing, and the audio goes to the phone.
    let resumed = t0 + Duration::from_secs(90);
    relay.set_remote(ID, Leg::Caller, RemoteMedia::sendrecv(caller_sdp()), resumed);
    assert!(!from(&mut relay, stranger(), resumed + ms(100)));
    assert_eq!(to_caller(&mut relay, resumed + WINDOW), Some(caller_sdp()));
    assert_eq!(relay.stats(ID).unwrap().0.stray, 62);
}

#[test]
fn on_hold_before_latching_only_the_sdp_address_latches() {
    let t0 = Instant::now();
    let mut relay = call(t0);
    let inactive = RemoteMedia { sends: false, receives: false, ..RemoteMedia::sendrecv(caller_sdp()) };
    relay.set_remote(ID, Leg::Caller, inactive, t0);
    assert!(!from(&mut relay, stranger(), t0 + ms(10)));
    assert!(!from(&mut relay, stranger(), t0 + ms(10) + WINDOW * 2));
    relay.set_remote(ID, Leg::Caller, RemoteMedia::sendrecv(caller_sdp()), t0 + WINDOW * 3);
    // Nothing was learned on hold: the stranger only opens a window now, and loses it.
    assert!(!from(&mut relay, stranger(), t0 + WINDOW * 3 + ms(10)));
    assert!(from(&mut relay, caller_sdp(), t0 + WINDOW * 3 + ms(20)));
    assert_eq!(relay.latched(ID, Leg::Caller), Some(caller_sdp()));
}

#[test]
fn a_new_sdp_address_restarts_learning_against_it() {
    let t0 = Instant::now();
    let mut relay = call(t0);
    assert!(from(&mut relay, caller_sdp(), t0));
    // A re-INVITE moves the caller: audio goes to the new SDP address until something latches;
    // the old source is a stranger now.
    let moved = a("192.0.2.30:6000");
    let at = t0 + Duration::from_secs(10);
    relay.set_remote(ID, Leg::Caller, RemoteMedia::sendrecv(moved), at);
    assert_eq!(to_caller(&mut relay, at + ms(1)), Some(moved));
    assert!(!from(&mut relay, stranger(), at + ms(2)));
    assert!(!from(&mut relay, caller_sdp(), at + ms(3)), "ranks no better than the stranger who came first");
    assert!(from(&mut relay, moved, at + ms(4)));
    assert!(!from(&mut relay, caller_sdp(), at + ms(5)));
    assert!(!from(&mut relay, stranger(), at + WINDOW * 2));
    assert_eq!(to_caller(&mut relay, at + WINDOW * 2), Some(moved));
}

#[test]
fn nothing_is_learned_before_the_first_sdp() {
    let t0 = Instant::now();
    let mut relay = Relay::new(RelayConfig::default());
    let leg = |rtp, rtcp, port| LegPorts { rtp, rtcp: Some(rtcp), local: SocketAddr::new([203, 0, 113, 1].into(), port) };
    relay.insert(ID, leg(CALLER_RTP, CALLER_RTCP, 20000), leg(CALLEE_RTP, CALLEE_RTCP, 20002), t0);
    relay.set_remote(ID, Leg::Caller, RemoteMedia::sendrecv(caller_sdp()), t0);
    // The callee is still ringing (no SDP): a stranger sprays its port for longer than a window;
    // nothing passes and nothing is learned.
    assert_eq!(relay.handle_datagram(CALLEE_RTP, stranger(), &rtp(1), t0), None);
    assert_eq!(relay.handle_datagram(CALLEE_RTP, stranger(), &rtp(2), t0 + WINDOW), None);
    assert_eq!(relay.latched(ID, Leg::Callee), None);
    assert_eq!(relay.stats(ID).unwrap().1.stray, 2);
    // The answer's SDP: learning starts, and the callee wins.
    relay.set_remote(ID, Leg::Callee, RemoteMedia::sendrecv(callee()), t0 + WINDOW + ms(10));
    assert_eq!(relay.latched(ID, Leg::Callee), Some(callee()));
    assert_eq!(relay.handle_datagram(CALLEE_RTP, callee(), &rtp(3), t0 + WINDOW + ms(20)), Some((CALLER_RTP, caller_sdp())));
    assert_eq!(relay.handle_datagram(CALLEE_RTP, stranger(), &rtp(4), t0 + WINDOW + ms(30)), None);
    assert_eq!(relay.handle_datagram(CALLER_RTP, caller_sdp(), &rtp(5), t0 + WINDOW + ms(40)), Some((CALLEE_RTP, callee())));
}

#[test]
fn rtcp_learns_the_same_way_and_prefers_the_ip_rtp_latched_to() {
    let t0 = Instant::now();
    let mut relay = call(t0);
    let nat = a("203.0.113.7:31000");
    let nat_rtcp = a("203.0.113.7:31001");
    let rtcp = |relay: &mut Relay, source, at| relay.handle_datagram(CALLER_RTCP, source, &rr(), at).is_some();
    let to_caller_rtcp = |relay: &mut Relay, at| relay.handle_datagram(CALLEE_RTCP, a("192.0.2.20:5001"), &rr(), at).map(|(_, d)| d);
    assert!(!from(&mut relay, nat, t0));
    assert_eq!(to_caller(&mut relay, t0 + WINDOW), Some(nat));
    // A stranger's RTCP (sharing no IP with the SDP or the RTP latch) is never learned; the
    // phone's from the NAT's IP, which RTP is latched to, is (and passes once it has won).
    assert!(!rtcp(&mut relay, stranger(), t0 + WINDOW + ms(1)));
    assert!(!rtcp(&mut relay, nat_rtcp, t0 + WINDOW + ms(2)));
    assert!(!rtcp(&mut relay, stranger(), t0 + WINDOW + ms(3)));
    assert_eq!(to_caller_rtcp(&mut relay, t0 + WINDOW + ms(4)), Some(a("192.0.2.10:4001")), "SDP's RTCP address until latched");
    assert_eq!(to_caller_rtcp(&mut relay, t0 + WINDOW * 2 + ms(2)), Some(nat_rtcp));
    // A source with the SDP's IP outranks it, as for RTP.
    assert!(rtcp(&mut relay, a("192.0.2.10:4001"), t0 + WINDOW * 2 + ms(3)));
    assert!(!rtcp(&mut relay, nat_rtcp, t0 + WINDOW * 2 + ms(4)));
    assert_eq!(to_caller_rtcp(&mut relay, t0 + WINDOW * 2 + ms(5)), Some(a("192.0.2.10:4001")));
    let nat_rtcp = a("192.0.2.10:4001");
    // Latched RTCP is silent for 5 s (one RTCP interval): still not silence for RTCP.
    assert!(!rtcp(&mut relay, stranger(), t0 + WINDOW * 2 + Duration::from_secs(5)));
    assert_eq!(to_caller_rtcp(&mut relay, t0 + WINDOW * 3 + Duration::from_secs(5)), Some(nat_rtcp));
}

#[test]
fn nothing_is_learned_before_the_answer() {
    let t0 = Instant::now();
    let mut relay = Relay::new(RelayConfig::default());
    let leg = |rtp, rtcp, port| LegPorts { rtp, rtcp: Some(rtcp), local: SocketAddr::new([203, 0, 113, 1].into(), port) };
    relay.insert(ID, leg(CALLER_RTP, CALLER_RTCP, 20000), leg(CALLEE_RTP, CALLEE_RTCP, 20002), t0);
    relay.set_remote(ID, Leg::Caller, RemoteMedia::sendrecv(caller_sdp()), t0);
    // The callee rings for longer than a window while a stranger sprays the caller's port.
    assert!(!from(&mut relay, stranger(), t0 + ms(10)));
    assert!(!from(&mut relay, stranger(), t0 + ms(10) + WINDOW * 2));
    relay.set_remote(ID, Leg::Callee, RemoteMedia::sendrecv(callee()), t0 + WINDOW * 3);
    // Answered: the stranger now only opens a window (passing nothing), and the caller's own SDP
    // address wins at once.
    assert!(!from(&mut relay, stranger(), t0 + WINDOW * 3 + ms(1)));
    assert!(from(&mut relay, caller_sdp(), t0 + WINDOW * 3 + ms(30)));
    assert!(!from(&mut relay, stranger(), t0 + WINDOW * 3 + ms(40)));
    assert_eq!(to_caller(&mut relay, t0 + WINDOW * 3 + ms(50)), Some(caller_sdp()));
}

#[test]
fn a_better_match_takes_over_a_latch_won_by_a_worse_one() {
    let t0 = Instant::now();
    let mut relay = call(t0);
    // The stranger sprays right after the answer, and the phone is slow to start: the stranger
    // wins the window.
    assert!(!from(&mut relay, stranger(), t0 + ms(1)));
    assert!(from(&mut relay, stranger(), t0 + ms(1) + WINDOW));
    assert_eq!(relay.latched(ID, Leg::Caller), Some(stranger()));
    // The phone's first packet from its SDP address takes the latch back at once, while the
    // stranger keeps spraying; a source of the stranger's rank cannot take it again.
    assert!(from(&mut relay, caller_sdp(), t0 + ms(10) + WINDOW));
    assert!(!from(&mut relay, stranger(), t0 + ms(11) + WINDOW));
    assert_eq!(to_caller(&mut relay, t0 + ms(12) + WINDOW), Some(caller_sdp()));
    // Same for a phone whose NAT keeps the IP: its port differs, its IP is the SDP's.
    let mut relay = call(t0);
    let same_ip = a("192.0.2.10:31000");
    assert!(!from(&mut relay, stranger(), t0 + ms(1)));
    assert!(from(&mut relay, stranger(), t0 + ms(1) + WINDOW));
    assert!(from(&mut relay, same_ip, t0 + ms(10) + WINDOW));
    assert!(!from(&mut relay, stranger(), t0 + ms(11) + WINDOW));
    assert_eq!(to_caller(&mut relay, t0 + ms(12) + WINDOW), Some(same_ip));
    // But not on hold.
    let mut relay = call(t0);
    assert!(from(&mut relay, same_ip, t0 + ms(1)));
    assert!(from(&mut relay, same_ip, t0 + ms(1) + WINDOW));
    let inactive = RemoteMedia { sends: false, receives: false, ..RemoteMedia::sendrecv(caller_sdp()) };
    relay.set_remote(ID, Leg::Caller, inactive, t0 + ms(2) + WINDOW);
    assert!(!from(&mut relay, caller_sdp(), t0 + ms(3) + WINDOW));
    assert_eq!(relay.latched(ID, Leg::Caller), Some(same_ip));
}

#[test]
fn the_sip_ip_ranks_between_the_sdp_ip_and_any() {
    let t0 = Instant::now();
    let mut relay = call(t0);
    // The caller put its private address in the SDP; its SIP came from its NAT.
    relay.set_peer_ip(ID, Leg::Caller, Some([203, 0, 113, 7].into()));
    let nat = a("203.0.113.7:31000");
    // A stranger first: it passes nothing; the NAT binding replaces it and is heard at once...
    assert!(!from(&mut relay, stranger(), t0 + ms(1)));
    assert!(from(&mut relay, nat, t0 + ms(2)));
    assert!(!from(&mut relay, stranger(), t0 + ms(3)));
    // ...and latches when the window (opened by the stranger) is over.
    assert_eq!(to_caller(&mut relay, t0 + ms(4)), Some(caller_sdp()));
    assert_eq!(to_caller(&mut relay, t0 + ms(1) + WINDOW), Some(nat));
    // The SDP's IP still outranks it.
    assert!(from(&mut relay, a("192.0.2.10:9"), t0 + ms(2) + WINDOW));
    assert!(!from(&mut relay, nat, t0 + ms(3) + WINDOW));
}
