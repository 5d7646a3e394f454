//! Two media sessions joined by an in-memory wire on a virtual clock: each hears the other's tone,
//! DTMF digits arrive once, hold stops audio one way, and silence from the peer ends in `Inactive`.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::call::{Channel, MediaConfig, MediaEvent, MediaSession, Negotiated, Source};
use switchboard::media::g711::Codec;
use switchboard::media::tone::{dominant_frequency, ToneGenerator};
use switchboard::sdp::Direction;

const A: &str = "127.0.0.1:20000";
const B: &str = "127.0.0.1:30000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn rtcp(s: &str) -> SocketAddr {
    let a = addr(s);
    SocketAddr::new(a.ip(), a.port() + 1)
}

fn neg(remote: &str, direction: Direction) -> Negotiated {
    Negotiated {
        remote_rtp: Some(addr(remote)),
        remote_rtcp: Some(rtcp(remote)),
        codec: Codec::Pcmu,
        dtmf_payload_type: Some(101),
        ptime: 20,
        direction,
    }
}

fn session(remote: &str, hz: f64, seed: u64, now: Instant, inactivity: Option<Duration>) -> MediaSession {
    let cfg = MediaConfig { record: true, seed, inactivity_timeout: inactivity, ..MediaConfig::default() };
    MediaSession::new(
        neg(remote, Direction::SendRecv),
        Source::Tone(ToneGenerator::new(hz, 8000)),
        cfg,
        now,
        Duration::from_secs(1_700_000_000),
    )
}

struct Pair {
    a: MediaSession,
    b: MediaSession,
    now: Instant,
    events_a: Vec<MediaEvent>,
    events_b: Vec<MediaEvent>,
    /// Deliver a's packets to b (false: a falls silent on the wire).
    a_to_b: bool,
    packets_a_to_b: u64,
}

impl Pair {
    fn new(inactivity: Option<Duration>) -> Pair {
        let now = Instant::now();
        Pair {
            a: session(B, 440.0, 1, now, inactivity),
            b: session(A, 1000.0, 2, now, inactivity),
            now,
            events_a: vec![],
            events_b: vec![],
            a_to_b: true,
            packets_a_to_b: 0,
        }
    }

    /// Runs until `until` (virtual), stepping to each earliest deadline; packets take 5 ms.
    fn run(&mut self, until: Duration) {
        let end = self.now + until;
        let mut in_flight: Vec<(Instant, bool, Channel, SocketAddr, Vec<u8>)> = Vec::new();
        loop {
            let next_packet = in_flight.iter().map(|p| p.0).min();
            let next = [self.a.poll_timeout(), self.b.poll_timeout(), next_packet].into_iter().flatten().min().unwrap_or(end);
            if next > end {
                break;
            }
            self.now = next.max(self.now);
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) = in_flight.into_iter().partition(|p| p.0 <= now);
            in_flight = later;
            for (_, to_b, channel, from, bytes) in due {
                let target = if to_b { &mut self.b } else { &mut self.a };
                match channel {
                    Channel::Rtp => target.handle_rtp(from, Bytes::from(bytes), now),
                    Channel::Rtcp => target.handle_rtcp(from, Bytes::from(bytes), now),
                }
            }
            self.a.handle_timeout(now);
            self.b.handle_timeout(now);
            while let Some(t) = self.a.poll_transmit() {
                if self.a_to_b {
                    self.packets_a_to_b += u64::from(t.channel == Channel::Rtp);
                    let from = if t.channel == Channel::Rtp { addr(A) } else { rtcp(A) };
                    in_flight.push((now + Duration::from_millis(5), true, t.channel, from, t.payload));
                }
            }
            while let Some(t) = self.b.poll_transmit() {
                let from = if t.channel == Channel::Rtp { addr(B) } else { rtcp(B) };
                in_flight.push((now + Duration::from_millis(5), false, t.channel, from, t.payload));
            }
            self.events_a.extend(std::iter::from_fn(|| self.a.poll_event()));
            self.events_b.extend(std::iter::from_fn(|| self.b.poll_event()));
        }
    }
}

#[test]
fn each_side_records_the_others_tone() {
    let mut p = Pair::new(None);
    p.run(Duration::from_secs(5));
    let (ra, rb) = (p.a.take_recording(), p.b.take_recording());
    assert!(ra.len() >= 8000 * 4, "A recorded {} samples", ra.len());
    let fa = dominant_frequency(&ra, 8000).unwrap();
    let fb = dominant_frequency(&rb, 8000).unwrap();
    assert!((fa - 1000.0).abs() < 15.0, "A heard {fa} Hz");
    assert!((fb - 440.0).abs() < 15.0, "B heard {fb} Hz");
    let (sa, sb) = (p.a.summary(), p.b.summary());
    assert_eq!(sa.packets_sent, 251, "50 packets per second: slots at 0, 20 ms, ..., 5 s inclusive");
    assert_eq!(sb.packets_received, sa.packets_sent - 1, "all but the one still in flight at the end");
    assert_eq!(sb.packets_lost, 0);
    assert!(sa.rtt_ms.or(sb.rtt_ms).is_some(), "RTCP gave a round-trip time");
}

#[test]
fn dtmf_digits_arrive_once() {
    let mut p = Pair::new(None);
    p.run(Duration::from_millis(500));
    p.a.send_dtmf("123#").unwrap();
    p.run(Duration::from_secs(3));
    assert_eq!(p.b.summary().dtmf_received, "123#");
    let digits: String = p.events_b.iter().filter_map(|e| if let MediaEvent::Dtmf(d) = e { Some(*d) } else { None }).collect();
    assert_eq!(digits, "123#");
}

#[test]
fn hold_stops_audio_one_way_and_resume_restarts_it() {
    let mut p = Pair::new(None);
    p.run(Duration::from_secs(1));
    p.a.update(neg(B, Direction::RecvOnly)); // a is held: it does not send
    let before = p.b.summary().packets_received;
    p.run(Duration::from_secs(2));
    assert!(p.b.summary().packets_received <= before + 1, "no audio to the held party");
    p.a.update(neg(B, Direction::SendRecv));
    p.run(Duration::from_secs(1));
    assert!(p.b.summary().packets_received >= before + 45, "audio back after resume");
}

#[test]
fn silence_from_the_peer_ends_in_inactive() {
    let mut p = Pair::new(Some(Duration::from_secs(3)));
    p.run(Duration::from_secs(1));
    p.a_to_b = false;
    p.run(Duration::from_secs(5));
    assert!(p.events_b.contains(&MediaEvent::Inactive));
    assert!(!p.events_a.contains(&MediaEvent::Inactive), "a still hears b");
}

#[test]
fn echo_sends_back_what_arrives() {
    let now = Instant::now();
    let cfg = MediaConfig { seed: 9, ..MediaConfig::default() };
    let mut echo = MediaSession::new(neg(A, Direction::SendRecv), Source::Echo, cfg, now, Duration::ZERO);
    let mut caller = session(B, 440.0, 3, now, None);
    let mut t = now;
    let mut echoed = 0;
    for _ in 0..100 {
        t += Duration::from_millis(20);
        caller.handle_timeout(t);
        echo.handle_timeout(t);
        while let Some(x) = caller.poll_transmit() {
            if x.channel == Channel::Rtp {
                echo.handle_rtp(addr(A), Bytes::from(x.payload), t);
            }
        }
        while let Some(x) = echo.poll_transmit() {
            if x.channel == Channel::Rtp {
                assert_eq!(x.dest, addr(A));
                caller.handle_rtp(addr(B), Bytes::from(x.payload), t);
                echoed += 1;
            }
        }
    }
    assert!(echoed >= 99, "{echoed} packets echoed");
    let rec = caller.take_recording();
    assert!((dominant_frequency(&rec, 8000).unwrap() - 440.0).abs() < 15.0, "the caller hears itself");
    // Garbage on the media port is ignored and counted.
    echo.handle_rtp(addr(A), Bytes::from_static(b"\x00\x01\x00\x00\x21\x12\xa4\x42garbage-stun......"), t);
    assert_eq!(echo.summary().non_rtp_dropped, 1);
}
