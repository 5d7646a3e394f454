//! The receive jitter buffer on virtual time (60 ms playout delay, 20 ms frames): reordered,
//! duplicated, late and lost packets, sequence wrap, the size bound and going idle. The origin is
//! one `Instant::now()`; every other instant is an offset from it.

use bytes::Bytes;
use std::time::{Duration, Instant};
use switchboard::media::g711::Codec;
use switchboard::media::jitter::{Frame, JitterBuffer, JitterConfig, JitterStats, Pushed};
use switchboard::media::rtp::RtpPacket;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn packet(seq: u16) -> RtpPacket {
    RtpPacket {
        payload_type: 0,
        marker: false,
        sequence: seq,
        timestamp: u32::from(seq) * 160,
        ssrc: 1,
        payload: Bytes::from(vec![0x80; 160]), // µ-law 0x80 = +32124
    }
}

/// Pops everything due at `now`: (sequence number or None if concealed).
fn drain(jb: &mut JitterBuffer, now: Instant) -> Vec<Option<u16>> {
    std::iter::from_fn(|| jb.pop(now)).map(|f: Frame| f.packet.map(|p| p.sequence)).collect()
}

/// Plays the buffer out every 20 ms from `from` for `frames` frames.
fn play(jb: &mut JitterBuffer, from: Instant, frames: u32) -> Vec<Option<u16>> {
    (0..frames).flat_map(|i| drain(jb, from + ms(20) * i)).collect()
}

#[test]
fn first_packet_plays_after_the_delay_then_every_frame() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    assert_eq!(jb.poll_timeout(), None);
    assert_eq!(jb.push(packet(10), t0), Pushed::Buffered);
    assert_eq!(jb.poll_timeout(), Some(t0 + ms(60)));
    assert!(jb.pop(t0 + ms(59)).is_none());
    let f = jb.pop(t0 + ms(60)).unwrap();
    assert_eq!((f.packet.as_ref().map(|p| p.sequence), f.due), (Some(10), t0 + ms(60)));
    assert_eq!(f.decode(Codec::Pcmu), [32124; 160]);
    assert_eq!(jb.poll_timeout(), Some(t0 + ms(80)));
}

#[test]
fn reordered_packets_play_in_order() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    // Sent every 20 ms; network delay varies by up to 50 ms so arrivals are out of order.
    let arrivals = [(0u16, 0u64), (2, 41), (1, 45), (4, 80), (3, 95), (6, 121), (5, 150), (7, 151)];
    let mut played = Vec::new();
    for &(seq, at) in &arrivals {
        assert_eq!(jb.push(packet(seq), t0 + ms(at)), Pushed::Buffered, "seq {seq}");
        // The player runs whenever the driver is awake.
        played.extend(drain(&mut jb, t0 + ms(at)));
    }
    played.extend(play(&mut jb, t0 + ms(60), 8));
    assert_eq!(played, (0..8).map(Some).collect::<Vec<_>>());
    assert_eq!(jb.stats(), JitterStats { buffered: 8, played: 8, ..JitterStats::default() });
}

#[test]
fn duplicates_are_dropped_whether_buffered_or_played() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    assert_eq!(jb.push(packet(0), t0), Pushed::Buffered);
    assert_eq!(jb.push(packet(1), t0 + ms(20)), Pushed::Buffered);
    assert_eq!(jb.push(packet(1), t0 + ms(21)), Pushed::Duplicate);
    assert_eq!(play(&mut jb, t0 + ms(60), 2), [Some(0), Some(1)]);
    assert_eq!(jb.push(packet(0), t0 + ms(100)), Pushed::Duplicate);
    assert_eq!(jb.stats().duplicates, 2);
}

#[test]
fn late_packets_are_dropped_and_their_slot_concealed() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    jb.push(packet(0), t0);
    jb.push(packet(2), t0 + ms(40));
    // Seq 1 is due at t0 + 80 ms; it arrives at 85 ms.
    assert_eq!(play(&mut jb, t0 + ms(60), 2), [Some(0), None]);
    assert_eq!(jb.push(packet(1), t0 + ms(85)), Pushed::Late);
    assert_eq!(play(&mut jb, t0 + ms(100), 1), [Some(2)]);
    let s = jb.stats();
    assert_eq!((s.late, s.concealed, s.played), (1, 1, 2));
}

#[test]
fn lost_packets_yield_silence_when_due() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    for seq in [0u16, 1, 4, 5] {
        jb.push(packet(seq), t0 + ms(20) * u32::from(seq));
    }
    let frames: Vec<Frame> = (0..6).filter_map(|i| jb.pop(t0 + ms(60) + ms(20) * i)).collect();
    assert_eq!(frames.iter().map(Frame::is_lost).collect::<Vec<_>>(), [false, false, true, true, false, false]);
    assert_eq!(frames[2].decode(Codec::Pcmu), [0; 160]);
    assert_eq!(frames[3].due, t0 + ms(120));
}

#[test]
fn an_earlier_packet_before_playout_moves_the_start_back() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    jb.push(packet(5), t0);
    assert_eq!(jb.push(packet(4), t0 + ms(10)), Pushed::Buffered);
    assert_eq!(jb.poll_timeout(), Some(t0 + ms(40)));
    assert_eq!(play(&mut jb, t0 + ms(40), 2), [Some(4), Some(5)]);
}

#[test]
fn sequence_numbers_wrap() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    for (i, seq) in [65534u16, 0, 65535, 1].into_iter().enumerate() {
        assert_eq!(jb.push(packet(seq), t0 + ms(10) * i as u32), Pushed::Buffered);
    }
    assert_eq!(play(&mut jb, t0 + ms(60), 4), [Some(65534), Some(65535), Some(0), Some(1)]);
}

#[test]
fn size_is_bounded() {
    let t0 = Instant::now();
    let config = JitterConfig { capacity: 10, ..JitterConfig::default() };
    let mut jb = JitterBuffer::new(config);
    jb.push(packet(0), t0);
    assert_eq!(jb.push(packet(9), t0), Pushed::Buffered);
    assert_eq!(jb.push(packet(10), t0), Pushed::Overflow);
    assert_eq!(jb.push(packet(3000), t0), Pushed::Overflow);
    assert_eq!(jb.len(), 2);
    assert_eq!(jb.stats().overflow, 2);
}

#[test]
fn goes_idle_after_a_second_of_nothing_and_reanchors() {
    let t0 = Instant::now();
    let config = JitterConfig { max_concealment: 5, ..JitterConfig::default() };
    let mut jb = JitterBuffer::new(config);
    jb.push(packet(0), t0);
    let played = play(&mut jb, t0 + ms(60), 20);
    assert_eq!(played.len(), 6, "one packet then five concealed frames: {played:?}");
    assert_eq!(jb.poll_timeout(), None);
    // The stream comes back much later: a new schedule from its arrival.
    let t1 = t0 + ms(5_000);
    assert_eq!(jb.push(packet(250), t1), Pushed::Buffered);
    assert_eq!(jb.poll_timeout(), Some(t1 + ms(60)));
    assert_eq!(drain(&mut jb, t1 + ms(60)), [Some(250)]);
}
