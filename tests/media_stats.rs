//! Receiver statistics (RFC 3550 §6.4.1, A.1, A.3, A.8) and the RTCP reports built from them, on
//! virtual time: packets are made by an `RtpSender` and given arrival instants offset from one
//! `Instant::now()` origin.

use bytes::Bytes;
use std::time::{Duration, Instant};
use switchboard::media::rtcp::{self, NtpTime, RtcpPacket, SenderInfo};
use switchboard::media::rtp::{RtpPacket, RtpSender, SenderConfig};
use switchboard::media::stats::{ReceiverStats, Verdict};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sender(first_seq: u16) -> RtpSender {
    RtpSender::new(SenderConfig { initial_sequence: first_seq, ..SenderConfig::from_seed(0, 42) }).unwrap()
}

/// `n` packets from `sender`, each 160 bytes of payload.
fn packets(sender: &mut RtpSender, n: usize) -> Vec<RtpPacket> {
    (0..n).map(|_| RtpPacket::parse(&Bytes::from(sender.send_audio(&[0xFF; 160]))).unwrap()).collect()
}

#[test]
fn unbroken_stream_counts_every_packet() {
    let t0 = Instant::now();
    let mut stats = ReceiverStats::default();
    let ps = packets(&mut sender(1000), 100);
    assert_eq!(stats.handle_packet(&ps[0], t0), Verdict::Probation);
    assert!(!stats.is_valid());
    assert_eq!(stats.report_block(t0), None);
    for (i, p) in ps.iter().enumerate().skip(1) {
        assert_eq!(stats.handle_packet(p, t0 + ms(20) * i as u32), Verdict::Accepted);
    }
    assert_eq!((stats.packets_received(), stats.bytes_received(), stats.expected(), stats.lost()), (100, 16_000, 100, 0));
    assert_eq!(stats.extended_highest_seq(), Some(1099));
    assert_eq!(stats.jitter(), 0, "constant transit time means no jitter");
    let block = stats.report_block(t0 + ms(2000)).unwrap();
    assert_eq!((block.fraction_lost, block.cumulative_lost, block.extended_highest_seq), (0, 0, 1099));
    assert_eq!((block.last_sr, block.delay_since_last_sr), (0, 0));
}

#[test]
fn loss_wrap_and_fraction_per_interval() {
    let t0 = Instant::now();
    let mut stats = ReceiverStats::default();
    let ps = packets(&mut sender(65_500), 200);
    // First interval: 100 packets across the wrap, every tenth lost (not the first two).
    for (i, p) in ps[..100].iter().enumerate() {
        if i % 10 != 5 {
            stats.handle_packet(p, t0 + ms(20) * i as u32);
        }
    }
    assert_eq!(stats.extended_highest_seq(), Some(65_536 + 63));
    assert_eq!((stats.expected(), stats.packets_received(), stats.lost()), (100, 90, 10));
    let first = stats.report_block(t0 + ms(2000)).unwrap();
    assert_eq!((first.fraction_lost, first.cumulative_lost), (25, 10)); // 10/100 * 256 = 25.6
                                                                        // Second interval: 100 more, every other one lost (the last one arrives).
    for (i, p) in ps[100..].iter().enumerate() {
        if i % 2 == 1 {
            stats.handle_packet(p, t0 + ms(20) * (100 + i as u32));
        }
    }
    let second = stats.report_block(t0 + ms(4000)).unwrap();
    assert_eq!((second.fraction_lost, second.cumulative_lost), (128, 60)); // 50/100 * 256
}

#[test]
fn duplicates_make_loss_negative_but_fraction_zero() {
    let t0 = Instant::now();
    let mut stats = ReceiverStats::default();
    for p in packets(&mut sender(7), 10) {
        stats.handle_packet(&p, t0);
        stats.handle_packet(&p, t0);
    }
    // The first packet's duplicate arrives during probation and is not counted; the other nine are.
    assert_eq!(stats.lost(), -9);
    let block = stats.report_block(t0).unwrap();
    assert_eq!((block.fraction_lost, block.cumulative_lost), (0, -9));
}

#[test]
fn jitter_follows_rfc3550_a8() {
    let t0 = Instant::now();
    let mut stats = ReceiverStats::default();
    // Every other packet arrives 10 ms late: |D| = 80 timestamp units for each pair.
    for (i, p) in packets(&mut sender(0), 400).iter().enumerate() {
        let late = if i % 2 == 1 { ms(10) } else { ms(0) };
        stats.handle_packet(p, t0 + ms(20) * i as u32 + late);
    }
    // J converges to |D| = 80 units = 10 ms (J += (|D| - J)/16).
    assert!((stats.jitter() as i64 - 80).abs() <= 1, "{}", stats.jitter());
    assert!((stats.jitter_ms() - 10.0).abs() < 0.2, "{}", stats.jitter_ms());
}

#[test]
fn validation_foreign_ssrc_and_restart() {
    let t0 = Instant::now();
    let mut stats = ReceiverStats::default();
    let ps = packets(&mut sender(100), 5);
    for p in &ps {
        stats.handle_packet(p, t0);
    }
    let stranger = RtpPacket { ssrc: ps[0].ssrc ^ 1, ..ps[0].clone() };
    assert_eq!(stats.handle_packet(&stranger, t0), Verdict::ForeignSsrc);
    assert_eq!(stats.foreign_ssrc_packets(), 1);
    // A jump of 20,000: ignored once, then accepted as a restart when the next one follows.
    let jump = |seq: u16| RtpPacket { sequence: seq, ..ps[0].clone() };
    assert_eq!(stats.handle_packet(&jump(20_000), t0), Verdict::BadSequence);
    assert_eq!(stats.bad_sequence_packets(), 1);
    assert_eq!(stats.handle_packet(&jump(20_001), t0), Verdict::Restarted);
    assert_eq!(stats.handle_packet(&jump(20_002), t0), Verdict::Accepted);
    assert_eq!((stats.packets_received(), stats.expected()), (2, 2));
    // A packet 50 behind is reordering, counted.
    assert_eq!(stats.handle_packet(&jump(19_960), t0), Verdict::Accepted);
}

#[test]
fn round_trip_time_from_sr_and_rr() {
    // Wall clock as NTP, advanced by hand alongside the virtual Instant.
    let t0 = Instant::now();
    let wall0 = Duration::from_secs(1_700_000_000);
    let mut tx = sender(0);
    let media = packets(&mut tx, 10);

    // The sender sends an SR at wall0; it takes 50 ms to reach the receiver.
    let sr_ntp = NtpTime::from_unix(wall0);
    let info = SenderInfo { ntp: sr_ntp, rtp_timestamp: 0, packet_count: tx.packets_sent(), octet_count: tx.octets_sent() };
    let sr_wire = rtcp::build_report(tx.ssrc(), Some(info), vec![], "alice@example.com");
    let mut rx = ReceiverStats::default();
    for (i, p) in media.iter().enumerate() {
        rx.handle_packet(p, t0 + ms(20) * i as u32);
    }
    for packet in rtcp::parse_compound(&sr_wire).unwrap() {
        if let RtcpPacket::SenderReport { info, .. } = packet {
            rx.handle_sender_report(info.ntp, t0 + ms(50));
        }
    }
    // The receiver reports 1 s later; the RR takes 50 ms back.
    let block = rx.report_block(t0 + ms(1050)).unwrap();
    assert_eq!(block.last_sr, sr_ntp.middle32());
    assert_eq!(block.delay_since_last_sr, 65_536);
    let rr_wire = rtcp::build_report(0xB0B, None, vec![block], "bob@example.com");
    let parsed = rtcp::parse_compound(&rr_wire).unwrap();
    let RtcpPacket::ReceiverReport { reports, .. } = &parsed[0] else { panic!("expected RR, got {parsed:?}") };
    let arrival = NtpTime::from_unix(wall0 + ms(1100)).middle32();
    let rtt = rtcp::round_trip_time(arrival, reports[0].last_sr, reports[0].delay_since_last_sr).unwrap();
    assert!(rtt.abs_diff(ms(100)) < Duration::from_micros(50), "{rtt:?}");
    assert_eq!(parsed[1], RtcpPacket::SourceDescription(vec![(0xB0B, "bob@example.com".into())]));
}
