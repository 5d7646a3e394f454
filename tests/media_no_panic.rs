//! No input from the network makes the media core panic: seeded random datagrams, and mutations
//! (bit flips, truncations, byte substitutions) of valid RTP, RTCP, telephone-event and WAV bytes,
//! go through every parser and through the receive-side state machines.

use bytes::Bytes;
use std::time::{Duration, Instant};
use switchboard::media::dtmf::{DtmfReceiver, TelephoneEvent};
use switchboard::media::g711::Codec;
use switchboard::media::jitter::{JitterBuffer, JitterConfig};
use switchboard::media::rtcp::{self, ReportBlock, SenderInfo};
use switchboard::media::rtp::{classify, DatagramKind, RtpPacket, RtpSender, SenderConfig};
use switchboard::media::stats::ReceiverStats;
use switchboard::media::wav;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

struct Receiver {
    stats: ReceiverStats,
    jitter: JitterBuffer,
    dtmf: DtmfReceiver,
}

impl Receiver {
    fn feed(&mut self, datagram: &[u8], now: Instant) {
        let _ = wav::read_wav(datagram);
        let _ = TelephoneEvent::parse(datagram);
        match classify(datagram) {
            DatagramKind::Rtp => {
                // classify said RTP, so the parse must succeed.
                let packet = RtpPacket::parse(&Bytes::copy_from_slice(datagram)).expect("classified as RTP");
                self.stats.handle_packet(&packet, now);
                self.dtmf.handle_packet(&RtpPacket { payload_type: 101, ..packet.clone() });
                let _ = self.jitter.push(packet, now);
            }
            DatagramKind::Rtcp => {
                let _ = rtcp::parse_compound(datagram);
            }
            DatagramKind::Other => {
                let _ = RtpPacket::parse_slice(datagram);
                let _ = rtcp::parse_compound(datagram);
            }
        }
        while let Some(frame) = self.jitter.pop(now) {
            let _ = frame.decode(Codec::Pcmu);
        }
        let _ = self.stats.report_block(now);
    }
}

fn fixtures() -> Vec<Vec<u8>> {
    let mut tx = RtpSender::new(SenderConfig::from_seed(0, 9)).unwrap();
    let block = ReportBlock {
        ssrc: 1,
        fraction_lost: 3,
        cumulative_lost: 4,
        extended_highest_seq: 5,
        jitter: 6,
        last_sr: 7,
        delay_since_last_sr: 8,
    };
    vec![
        tx.send_audio(&[0xFF; 160]),
        tx.send_event(101, true, 0, &TelephoneEvent { event: 5, end: true, volume: 10, duration: 800 }.to_bytes()),
        rtcp::build_report(1, Some(SenderInfo::default()), vec![block; 3], "someone@example.com"),
        rtcp::build_report(2, None, vec![block], "x"),
        wav::write_wav(&[1, -1, 300, -300]).unwrap(),
    ]
}

#[test]
fn mutated_fixtures_do_not_panic() {
    let t0 = Instant::now();
    let mut rx =
        Receiver { stats: ReceiverStats::default(), jitter: JitterBuffer::new(JitterConfig::default()), dtmf: DtmfReceiver::new(101) };
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut now = t0;
    for fixture in fixtures() {
        for len in 0..=fixture.len() {
            rx.feed(&fixture[..len], now);
        }
        for i in 0..fixture.len() {
            for bit in 0..8 {
                let mut b = fixture.clone();
                b[i] ^= 1 << bit;
                rx.feed(&b, now);
            }
            for v in [0x00u8, 0xFF, 0x80, 0x7F, 0xC8, 0x20] {
                let mut b = fixture.clone();
                b[i] = v;
                rx.feed(&b, now);
            }
            now += Duration::from_micros(rng.next() % 5_000);
        }
    }
}

#[test]
fn random_datagrams_do_not_panic() {
    let t0 = Instant::now();
    let mut rx =
        Receiver { stats: ReceiverStats::default(), jitter: JitterBuffer::new(JitterConfig::default()), dtmf: DtmfReceiver::new(101) };
    let mut rng = Rng(42);
    let mut now = t0;
    for _ in 0..20_000 {
        let len = (rng.next() % 200) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if let Some(first) = d.first_mut() {
            // Mostly version 2, so the RTP and RTCP paths get exercised.
            if rng.next() % 4 != 0 {
                *first = 0x80 | (*first & 0x3F);
            }
        }
        rx.feed(&d, now);
        now += Duration::from_micros(rng.next() % 40_000);
    }
}
