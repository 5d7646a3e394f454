//! The media core end to end on virtual time: a 1000 Hz tone is G.711-encoded, packetized and
//! paced at 50 packets/s, with the digits "159#" sent as RFC 4733 events a second in; a seeded
//! network delays packets by 30-70 ms (reordering them), drops 3 %, duplicates 2 % and mixes in
//! STUN datagrams and one RTCP SR. The receiver classifies datagrams, keeps RFC 3550 statistics,
//! picks up the digits, plays packets out of a 60 ms jitter buffer into a WAV writer, and the
//! recording is read back and analysed like `shared/interop/analyse-wav.py` would.
//!
//! Asserts: the dominant frequency is the tone's; the non-silent time is exactly the audio frames
//! that arrived; loss, duplicates and concealment add up; each digit is reported once.
//! Set `MEDIA_PIPELINE_WAV=/path/prefix` to keep the recordings for the Python script.

use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::io::Cursor;
use std::time::{Duration, Instant};
use switchboard::media::dtmf::{DtmfConfig, DtmfReceiver, DtmfSender};
use switchboard::media::g711::Codec;
use switchboard::media::jitter::{JitterBuffer, JitterConfig};
use switchboard::media::pacer::Pacer;
use switchboard::media::rtcp::{self, NtpTime, RtcpPacket, SenderInfo};
use switchboard::media::rtp::{DatagramCounters, DatagramKind, RtpPacket, RtpSender, SenderConfig};
use switchboard::media::stats::ReceiverStats;
use switchboard::media::tone::{self, ToneGenerator};
use switchboard::media::wav::{read_wav, WavWriter};
use switchboard::media::SAMPLE_RATE;

const FRAMES: u64 = 150; // 3 s
const DTMF_AT: u64 = 50;
const STUN: &[u8] = &[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

/// A seeded lossy, reordering, duplicating network (xorshift64*). Datagrams sent with `lossy`
/// false arrive after a fixed 30 ms.
struct Net {
    rng: u64,
    in_flight: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    order: u64,
    dropped: HashSet<u16>,
    duplicated: u64,
}

impl Net {
    fn random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn delay(&mut self) -> Duration {
        Duration::from_millis(30 + self.random() % 41)
    }

    fn send(&mut self, datagram: Vec<u8>, now: Instant, lossy: bool) {
        if lossy && self.random() % 100 < 3 {
            self.dropped.insert(u16::from_be_bytes([datagram[2], datagram[3]]));
            return;
        }
        if lossy && self.random() % 100 < 2 {
            self.duplicated += 1;
            let at = now + self.delay();
            self.in_flight.push(Reverse((at, self.order, datagram.clone())));
            self.order += 1;
        }
        let at = now + if lossy { self.delay() } else { Duration::from_millis(30) };
        self.in_flight.push(Reverse((at, self.order, datagram)));
        self.order += 1;
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((at, _, _))| *at)
    }

    fn receive(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_arrival()? > now {
            return None;
        }
        self.in_flight.pop().map(|Reverse((_, _, d))| d)
    }
}

struct Outcome {
    digits: String,
    wav: Vec<u8>,
    audio_frames_played: u64,
    dropped: u64,
    /// Dropped packets at the very end: no later packet tells the receiver they were sent.
    dropped_at_end: u64,
    duplicated: u64,
    counters: DatagramCounters,
    stats: ReceiverStats,
    jitter: JitterBuffer,
}

fn run(codec: Codec, seed: u64) -> Outcome {
    let t0 = Instant::now();
    let mut net = Net { rng: seed | 1, in_flight: BinaryHeap::new(), order: 0, dropped: HashSet::new(), duplicated: 0 };

    // Sender.
    let mut tx = RtpSender::new(SenderConfig::from_seed(codec.payload_type(), seed)).unwrap();
    let mut tone = ToneGenerator::new(1000.0, 8000);
    let mut pacer = Pacer::every_frame(t0);
    let mut dtmf = DtmfSender::new(DtmfConfig::default());

    // Receiver.
    let mut counters = DatagramCounters::default();
    let mut stats = ReceiverStats::default();
    let mut digits = DtmfReceiver::new(101);
    let mut jitter = JitterBuffer::new(JitterConfig::default());
    let mut recorder = WavWriter::new(Cursor::new(Vec::new())).unwrap();
    let mut found = String::new();
    let mut audio_frames_played = 0;

    let mut now = t0;
    for _step in 0..100_000 {
        // Sending side: one packet per due slot.
        while pacer.next_index() < FRAMES {
            let Some(slot) = pacer.poll_due(now) else { break };
            if slot.index == DTMF_AT {
                dtmf.send_digits("159#").unwrap();
            }
            if slot.index % 25 == 0 {
                net.send(STUN.to_vec(), now, false);
            }
            if slot.index == 100 {
                let info = SenderInfo {
                    ntp: NtpTime::from_unix(Duration::from_secs(2)),
                    rtp_timestamp: tx.timestamp(),
                    packet_count: 0,
                    octet_count: 0,
                };
                net.send(rtcp::build_report(tx.ssrc(), Some(info), vec![], "tx@test"), now, false);
            }
            let datagram = match dtmf.poll_frame(tx.timestamp()) {
                Some(ev) => tx.send_event(ev.payload_type, ev.marker, ev.timestamp, &ev.event.to_bytes()),
                None => tx.send_audio(&codec.encode(&tone.next_frame())),
            };
            // The first packets pass cleanly, so that the source validation of RFC 3550 A.1
            // (probation) sees them in order and the loss count below is exact.
            net.send(datagram, now, slot.index >= 3);
        }
        // Receiving side.
        while let Some(datagram) = net.receive(now) {
            match counters.classify(&datagram) {
                DatagramKind::Rtp => {
                    let packet = RtpPacket::parse(&Bytes::from(datagram)).unwrap();
                    stats.handle_packet(&packet, now);
                    if let Some(d) = digits.handle_packet(&packet) {
                        found.push(d.digit);
                    }
                    let _ = jitter.push(packet, now);
                }
                DatagramKind::Rtcp => {
                    for p in rtcp::parse_compound(&datagram).unwrap() {
                        if let RtcpPacket::SenderReport { info, .. } = p {
                            stats.handle_sender_report(info.ntp, now);
                        }
                    }
                }
                DatagramKind::Other => {}
            }
        }
        while let Some(frame) = jitter.pop(now) {
            if frame.packet.as_ref().is_some_and(|p| p.payload_type == codec.payload_type()) {
                audio_frames_played += 1;
            }
            recorder.write_samples(&frame.decode(codec)).unwrap();
        }
        // Sleep until the earliest deadline.
        let sending = (pacer.next_index() < FRAMES).then(|| pacer.poll_timeout()).flatten();
        match [sending, net.next_arrival(), jitter.poll_timeout()].into_iter().flatten().min() {
            Some(next) => now = next.max(now),
            None => break,
        }
    }
    let wav = recorder.finish().unwrap().into_inner();
    let first_seq = SenderConfig::from_seed(codec.payload_type(), seed).initial_sequence;
    let dropped_at_end = (0..FRAMES).rev().take_while(|&i| net.dropped.contains(&first_seq.wrapping_add(i as u16))).count() as u64;
    Outcome {
        digits: found,
        wav,
        audio_frames_played,
        dropped: net.dropped.len() as u64,
        dropped_at_end,
        duplicated: net.duplicated,
        counters,
        stats,
        jitter,
    }
}

fn check(codec: Codec, seed: u64) {
    let out = run(codec, seed);
    if let Ok(prefix) = std::env::var("MEDIA_PIPELINE_WAV") {
        std::fs::write(format!("{prefix}-{}.wav", codec.encoding_name()), &out.wav).unwrap();
    }
    assert!(out.dropped > 0 && out.duplicated > 0, "the network misbehaved: {} dropped, {} duplicated", out.dropped, out.duplicated);
    assert_eq!(out.digits, "159#");

    // Datagram classification: 6 STUN, 1 RTCP, and every RTP packet that got through.
    let rtp_delivered = FRAMES - out.dropped + out.duplicated;
    assert_eq!(out.counters, DatagramCounters { rtp: rtp_delivered, rtcp: 1, other: FRAMES / 25 });

    // RFC 3550 statistics: duplicates count as received (A.1), so they offset losses.
    assert_eq!(out.stats.lost(), (out.dropped - out.dropped_at_end) as i64 - out.duplicated as i64);
    assert!(out.stats.jitter_ms() > 2.0 && out.stats.jitter_ms() < 30.0, "jitter {} ms", out.stats.jitter_ms());

    // The jitter buffer: nothing late with 60 ms of delay against 40 ms of delay variation.
    let js = out.jitter.stats();
    assert_eq!((js.late, js.overflow, js.duplicates), (0, 0, out.duplicated));
    assert_eq!(js.played, FRAMES - out.dropped);

    // The recording: 160 samples per frame played, tone where audio arrived, silence elsewhere.
    let wav = read_wav(&out.wav).unwrap();
    assert_eq!(wav.samples.len() as u64, (js.played + js.concealed) * 160);
    let analysis = tone::analyse(&wav.samples, SAMPLE_RATE);
    let dominant = analysis.dominant.unwrap();
    assert!((dominant - 1000.0).abs() <= 5.0, "dominant {dominant} Hz: {analysis:?}");
    let expected_active = out.audio_frames_played as f64 * 0.02;
    assert!((analysis.active_seconds - expected_active).abs() < 1e-9, "active {} s, expected {expected_active}", analysis.active_seconds);
    assert!(out.audio_frames_played > 100 && out.audio_frames_played <= FRAMES - 28, "{} audio frames", out.audio_frames_played);
    let first_second = &wav.samples[..8000];
    assert!(tone::tone_level(first_second, 1000.0, SAMPLE_RATE) > 0.8);
}

#[test]
fn pcmu_tone_and_digits_survive_a_bad_network() {
    check(Codec::Pcmu, 0x5eed_0001);
}

#[test]
fn pcma_tone_and_digits_survive_a_bad_network() {
    check(Codec::Pcma, 0x5eed_0002);
}
