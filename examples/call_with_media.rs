//! Two media sessions in memory: SDP offer/answer (RFC 3264), then 2 s of G.711 over RTP
//! (RFC 3550, RFC 3551) on a virtual clock, A sending 440 Hz and B 1 kHz. Each side's recording
//! is analysed to show it heard the other's tone.
//!
//! `cargo run --example call_with_media`

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::call::{answer, apply_answer, offer, Channel, MediaConfig, MediaPrefs, MediaSession, Source};
use switchboard::media::g711::Codec;
use switchboard::media::tone::{dominant_frequency, ToneGenerator};
use switchboard::media::SAMPLE_RATE;
use switchboard::sdp::{Direction, SessionDescription};

fn main() {
    let (a_rtp, b_rtp): (SocketAddr, SocketAddr) = ("127.0.0.1:20000".parse().unwrap(), "127.0.0.1:30000".parse().unwrap());
    // Offer/answer (RFC 3264 §5, §6): A offers PCMU and PCMA; B prefers PCMA, and the answerer's
    // preference decides (§6.1). Each side gets a `Negotiated`: codec, peer address, direction.
    let offer_sdp = offer(a_rtp, &MediaPrefs::default(), Direction::SendRecv, 1, 1).to_bytes();
    let b_prefs = MediaPrefs { codecs: vec![Codec::Pcma, Codec::Pcmu], ..MediaPrefs::default() };
    let parsed = SessionDescription::parse(&offer_sdp).expect("our own offer parses");
    let (answer_sdp, b_neg) = answer(&parsed, b_rtp, &b_prefs, Direction::SendRecv, 2).expect("a common codec");
    let a_neg = apply_answer(&answer_sdp, &MediaPrefs::default()).expect("a usable answer");
    let m_line = |sdp: &[u8]| String::from_utf8_lossy(sdp).lines().find(|l| l.starts_with("m=")).unwrap_or("").to_owned();
    println!("offer  {}\nanswer {}", m_line(&offer_sdp), m_line(&answer_sdp.to_bytes()));
    assert_eq!((a_neg.codec, b_neg.codec), (Codec::Pcma, Codec::Pcma));

    // The sessions are sans-IO: they read no clock, so 2 s of audio take a few milliseconds.
    // RTCP every second (RFC 3550 §6.2 suggests 5 s; shorter here so a round trip is measured).
    let t0 = Instant::now();
    let config = |seed| MediaConfig { record: true, seed, rtcp_interval: Duration::from_secs(1), ..MediaConfig::default() };
    let wall = Duration::from_secs(1_700_000_000); // wall-clock time at t0, for RTCP NTP stamps
    let mut a = MediaSession::new(a_neg, Source::Tone(ToneGenerator::new(440.0, 8000)), config(1), t0, wall);
    let mut b = MediaSession::new(b_neg, Source::Tone(ToneGenerator::new(1000.0, 8000)), config(2), t0, wall);

    // The wire: every datagram arrives 10 ms after it is sent. (deliver at, to B?, channel, bytes)
    let mut wire: Vec<(Instant, bool, Channel, Vec<u8>)> = Vec::new();
    let end = t0 + Duration::from_secs(2);
    let mut now = t0;
    while now <= end {
        let (due, later): (Vec<_>, Vec<_>) = wire.into_iter().partition(|p| p.0 <= now);
        wire = later;
        for (_, to_b, channel, bytes) in due {
            let (session, from) = if to_b { (&mut b, a_rtp) } else { (&mut a, b_rtp) };
            match channel {
                Channel::Rtp => session.handle_rtp(from, Bytes::from(bytes), now),
                Channel::Rtcp => session.handle_rtcp(SocketAddr::new(from.ip(), from.port() + 1), Bytes::from(bytes), now),
            }
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
        for (session, to_b) in [(&mut a, true), (&mut b, false)] {
            while let Some(t) = session.poll_transmit() {
                wire.push((now + Duration::from_millis(10), to_b, t.channel, t.payload));
            }
        }
        // Step the clock straight to the next thing that happens: a deadline or an arrival.
        let next_arrival = wire.iter().map(|p| p.0).min();
        now = [a.poll_timeout(), b.poll_timeout(), next_arrival]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end)
            .max(now + Duration::from_micros(1));
    }

    for (name, session, sent_hz) in [("A", &mut a, 1000.0), ("B", &mut b, 440.0)] {
        let heard = session.take_recording();
        let dominant = dominant_frequency(&heard, SAMPLE_RATE).expect("audio was recorded");
        let s = session.summary();
        println!(
            "{name}: heard {dominant:.0} Hz over {:.2} s; RTP sent {} received {} lost {} jitter {:.2} ms, RTT {} ms",
            heard.len() as f64 / f64::from(SAMPLE_RATE),
            s.packets_sent,
            s.packets_received,
            s.packets_lost,
            s.jitter_ms,
            s.rtt_ms.map_or("-".into(), |r| format!("{r:.1}"))
        );
        assert!((dominant - sent_hz).abs() < 15.0, "{name} should hear {sent_hz} Hz");
        assert!(s.packets_received >= 95 && s.packets_lost == 0, "50 packets/s for 2 s, none lost");
        assert!(s.rtt_ms.is_some_and(|r| (r - 20.0).abs() < 5.0), "RTCP measured the 2 x 10 ms round trip");
    }
}
