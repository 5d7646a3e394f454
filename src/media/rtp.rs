//! RTP data packets (RFC 3550 §5.1): telling RTP from RTCP and stray datagrams, parsing into an
//! owned [`RtpPacket`], and the sending side's sequence number, timestamp and marker bookkeeping
//! ([`RtpSender`]). Reading and writing the fixed header is done by `rtp-rs`.

use super::FRAME_SAMPLES;
use bytes::Bytes;
use rtp_rs::{RtpPacketBuilder, RtpReader, RtpReaderError, Seq};
use std::fmt;

/// What a datagram arriving on a media port is (RFC 5761 §4, RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatagramKind {
    /// Version 2 with a well-formed RTP header.
    Rtp,
    /// Version 2 with packet type 200 to 204 (SR, RR, SDES, BYE, APP; RFC 3550 §12.1).
    Rtcp,
    /// Anything else: STUN (first byte 0-3), DTLS (20-63), a truncated header, garbage.
    Other,
}

/// Classifies a datagram without allocating.
///
/// RTP and RTCP share the first two bits (version 2). The second byte of RTCP is its packet type,
/// 200-204; for RTP it is the marker bit and payload type, which RFC 5761 §4 keeps clear of
/// 64-95 so that `marker | PT` never looks like 192-223. Values 192-199 and 205-223 are other
/// RTCP types this crate does not know (e.g. 205/206 feedback) and count as `Other`.
pub fn classify(datagram: &[u8]) -> DatagramKind {
    match datagram {
        [first, second, ..] if first >> 6 == 2 => match second {
            200..=204 if datagram.len() >= 8 => DatagramKind::Rtcp,
            192..=223 => DatagramKind::Other,
            _ if RtpReader::new(datagram).is_ok() => DatagramKind::Rtp,
            _ => DatagramKind::Other,
        },
        _ => DatagramKind::Other,
    }
}

/// Counts datagrams by [`DatagramKind`], so ignored ones are visible in statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatagramCounters {
    /// RTP packets.
    pub rtp: u64,
    /// RTCP compound packets.
    pub rtcp: u64,
    /// Datagrams ignored as neither.
    pub other: u64,
}

impl DatagramCounters {
    /// Classifies `datagram` with [`classify`] and counts it.
    pub fn classify(&mut self, datagram: &[u8]) -> DatagramKind {
        let kind = classify(datagram);
        match kind {
            DatagramKind::Rtp => self.rtp += 1,
            DatagramKind::Rtcp => self.rtcp += 1,
            DatagramKind::Other => self.other += 1,
        }
        kind
    }
}

/// Why bytes are not an RTP packet, or why a sender configuration is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// The version field is not 2 (RFC 3550 §5.1).
    Version(u8),
    /// The CSRC list or header extension runs past the end of the datagram.
    HeaderTruncated,
    /// The padding count is zero or larger than the packet (RFC 3550 §5.1 "padding (P)").
    BadPadding,
    /// A payload type above 127, or 72-76, which collide with RTCP (RFC 5761 §4).
    PayloadType(u8),
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtpError::TooShort { len } => write!(f, "RTP packet of {len} bytes is shorter than the 12-byte header"),
            RtpError::Version(v) => write!(f, "RTP version {v}, expected 2"),
            RtpError::HeaderTruncated => f.write_str("RTP CSRC list or header extension truncated"),
            RtpError::BadPadding => f.write_str("RTP padding length invalid"),
            RtpError::PayloadType(pt) => write!(f, "RTP payload type {pt} is not usable"),
        }
    }
}

impl std::error::Error for RtpError {}

impl From<RtpReaderError> for RtpError {
    fn from(e: RtpReaderError) -> Self {
        match e {
            RtpReaderError::BufferTooShort(len) => RtpError::TooShort { len },
            RtpReaderError::UnsupportedVersion(v) => RtpError::Version(v),
            RtpReaderError::HeadersTruncated { .. } => RtpError::HeaderTruncated,
            RtpReaderError::PaddingLengthInvalid(_) => RtpError::BadPadding,
        }
    }
}

/// An RTP packet with the header fields the media core uses; the payload shares the datagram's
/// buffer. CSRCs and header extensions are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// Payload type (RFC 3551 §6).
    pub payload_type: u8,
    /// Marker bit: for audio, the first packet of a talkspurt (RFC 3551 §4.1).
    pub marker: bool,
    /// Sequence number, +1 per packet (RFC 3550 §5.1).
    pub sequence: u16,
    /// Sampling instant of the first octet of the payload, in clock-rate units.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Payload, without padding.
    pub payload: Bytes,
}

impl RtpPacket {
    /// Parses a datagram, sharing its buffer for the payload. Never panics.
    pub fn parse(datagram: &Bytes) -> Result<RtpPacket, RtpError> {
        let reader = RtpReader::new(datagram)?;
        let start = reader.payload_offset();
        let payload = datagram.slice(start..start + reader.payload().len());
        Ok(RtpPacket {
            payload_type: reader.payload_type(),
            marker: reader.mark(),
            sequence: reader.sequence_number().into(),
            timestamp: reader.timestamp(),
            ssrc: reader.ssrc(),
            payload,
        })
    }

    /// Parses a borrowed datagram (copies it once).
    pub fn parse_slice(datagram: &[u8]) -> Result<RtpPacket, RtpError> {
        RtpPacket::parse(&Bytes::copy_from_slice(datagram))
    }

    /// Serializes the packet (no CSRCs, no extension, no padding).
    pub fn to_bytes(&self) -> Vec<u8> {
        build(self.payload_type, self.marker, self.sequence, self.timestamp, self.ssrc, &self.payload)
    }
}

/// Writes an RTP packet with `rtp-rs`. The payload type is masked to 7 bits, and no extension is
/// set, so the builder's checks (PT ≤ 127, extension padding) hold by construction.
fn build(payload_type: u8, marker: bool, sequence: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let builder = RtpPacketBuilder::new()
        .payload_type(payload_type & 0x7F)
        .marked(marker)
        .sequence(Seq::from(sequence))
        .timestamp(timestamp)
        .ssrc(ssrc)
        .payload(payload);
    let mut buf = vec![0; builder.target_length()];
    let len = builder.build_into_unchecked(&mut buf);
    buf.truncate(len);
    buf
}

/// How an [`RtpSender`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderConfig {
    /// Payload type of audio frames (0 for PCMU, 8 for PCMA).
    pub payload_type: u8,
    /// Synchronization source identifier (RFC 3550 §8: chosen at random).
    pub ssrc: u32,
    /// First sequence number (RFC 3550 §5.1: SHOULD be random).
    pub initial_sequence: u16,
    /// First timestamp (RFC 3550 §5.1: SHOULD be random).
    pub initial_timestamp: u32,
    /// Timestamp increment per frame: 160 for 20 ms at 8 kHz.
    pub samples_per_frame: u32,
}

impl SenderConfig {
    /// A configuration whose SSRC, first sequence number and first timestamp are drawn from
    /// `seed` (the core has no RNG of its own: seed it from the OS in the driver, fixed in tests).
    pub fn from_seed(payload_type: u8, seed: u64) -> SenderConfig {
        let mut ids = crate::dialog::IdGen::new(seed);
        SenderConfig {
            payload_type,
            ssrc: ids.next_u64() as u32,
            initial_sequence: ids.next_u64() as u16,
            initial_timestamp: ids.next_u64() as u32,
            samples_per_frame: FRAME_SAMPLES as u32,
        }
    }
}

/// The sending side of one RTP stream: sequence numbers, timestamps, marker bits and the counts an
/// RTCP sender report needs (RFC 3550 §5.1, §6.4.1).
///
/// Call [`RtpSender::send_audio`] for each 20 ms frame sent, [`RtpSender::skip_frame`] for each one
/// not sent (silence suppression): the timestamp still advances and the next packet carries the
/// marker (RFC 3551 §4.1). Telephone events go through [`RtpSender::send_event`] and share the
/// sequence space and SSRC (RFC 4733 §2.1).
#[derive(Debug, Clone)]
pub struct RtpSender {
    config: SenderConfig,
    sequence: u16,
    timestamp: u32,
    mark_next: bool,
    packets_sent: u32,
    octets_sent: u32,
}

impl RtpSender {
    /// A sender; the first packet will carry the marker. Refuses payload types above 127 and
    /// 72-76.
    pub fn new(config: SenderConfig) -> Result<RtpSender, RtpError> {
        if config.payload_type > 127 || (72..=76).contains(&config.payload_type) {
            return Err(RtpError::PayloadType(config.payload_type));
        }
        Ok(RtpSender {
            config,
            sequence: config.initial_sequence,
            timestamp: config.initial_timestamp,
            mark_next: true,
            packets_sent: 0,
            octets_sent: 0,
        })
    }

    /// The SSRC of this stream.
    pub fn ssrc(&self) -> u32 {
        self.config.ssrc
    }

    /// Sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.sequence
    }

    /// Timestamp of the next frame.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Packets sent so far (the SR sender's packet count, RFC 3550 §6.4.1, wraps).
    pub fn packets_sent(&self) -> u32 {
        self.packets_sent
    }

    /// Payload octets sent so far (the SR sender's octet count, wraps).
    pub fn octets_sent(&self) -> u32 {
        self.octets_sent
    }

    /// Packetizes one audio frame with the current timestamp, then advances the sequence number by
    /// one and the timestamp by one frame. The marker is set on the first packet and on the first
    /// after [`RtpSender::skip_frame`].
    #[must_use]
    pub fn send_audio(&mut self, payload: &[u8]) -> Vec<u8> {
        let marker = std::mem::take(&mut self.mark_next);
        let packet = self.packetize(self.config.payload_type, marker, self.timestamp, payload);
        self.timestamp = self.timestamp.wrapping_add(self.config.samples_per_frame);
        packet
    }

    /// Records a frame not sent: the timestamp advances, and the next audio packet starts a
    /// talkspurt (marker set).
    pub fn skip_frame(&mut self) {
        self.timestamp = self.timestamp.wrapping_add(self.config.samples_per_frame);
        self.mark_next = true;
    }

    /// Packetizes a packet in place of one audio frame with the caller's payload type, marker and
    /// timestamp (a telephone event carries its start timestamp, RFC 4733 §2.5.1.2). The
    /// sequence number advances by one and the audio timestamp by one frame.
    #[must_use]
    pub fn send_event(&mut self, payload_type: u8, marker: bool, timestamp: u32, payload: &[u8]) -> Vec<u8> {
        let packet = self.packetize(payload_type, marker, timestamp, payload);
        self.timestamp = self.timestamp.wrapping_add(self.config.samples_per_frame);
        packet
    }

    fn packetize(&mut self, payload_type: u8, marker: bool, timestamp: u32, payload: &[u8]) -> Vec<u8> {
        let packet = build(payload_type, marker, self.sequence, timestamp, self.config.ssrc, payload);
        self.sequence = self.sequence.wrapping_add(1);
        self.packets_sent = self.packets_sent.wrapping_add(1);
        self.octets_sent = self.octets_sent.wrapping_add(payload.len() as u32);
        packet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(seq: u16, ts: u32) -> RtpSender {
        let config =
            SenderConfig { payload_type: 0, ssrc: 0xDEAD_BEEF, initial_sequence: seq, initial_timestamp: ts, samples_per_frame: 160 };
        RtpSender::new(config).unwrap()
    }

    #[test]
    fn sequence_timestamp_and_marker() {
        let mut s = sender(65534, u32::MAX - 100);
        let packets: Vec<RtpPacket> = (0..4).map(|_| RtpPacket::parse_slice(&s.send_audio(&[0xFF; 160])).unwrap()).collect();
        assert_eq!(packets.iter().map(|p| p.sequence).collect::<Vec<_>>(), [65534, 65535, 0, 1]);
        assert_eq!(packets.iter().map(|p| p.timestamp).collect::<Vec<_>>(), [u32::MAX - 100, 59, 219, 379]);
        assert_eq!(packets.iter().map(|p| p.marker).collect::<Vec<_>>(), [true, false, false, false]);
        assert!(packets.iter().all(|p| p.ssrc == 0xDEAD_BEEF && p.payload_type == 0 && p.payload.len() == 160));
        s.skip_frame();
        s.skip_frame();
        let p = RtpPacket::parse_slice(&s.send_audio(&[0xFF; 160])).unwrap();
        assert_eq!((p.sequence, p.timestamp, p.marker), (2, 379 + 3 * 160, true));
        let e = RtpPacket::parse_slice(&s.send_event(101, true, 1234, &[1, 2, 3, 4])).unwrap();
        assert_eq!((e.sequence, e.timestamp, e.marker, e.payload_type), (3, 1234, true, 101));
        assert_eq!(s.timestamp(), 379 + 5 * 160);
        assert_eq!((s.packets_sent(), s.octets_sent()), (6, 5 * 160 + 4));
    }

    #[test]
    fn seeded_start_is_random_but_repeatable() {
        let a = SenderConfig::from_seed(8, 1);
        assert_eq!(a, SenderConfig::from_seed(8, 1));
        assert_ne!(a.initial_sequence, SenderConfig::from_seed(8, 2).initial_sequence);
        assert_eq!(a.samples_per_frame, 160);
        assert!(RtpSender::new(SenderConfig { payload_type: 200, ..a }).is_err());
        assert!(RtpSender::new(SenderConfig { payload_type: 72, ..a }).is_err());
    }

    #[test]
    fn classify_datagrams() {
        let rtp = sender(1, 1).send_audio(&[0; 160]);
        assert_eq!(classify(&rtp), DatagramKind::Rtp);
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        assert_eq!(classify(&rr), DatagramKind::Rtcp);
        let stun = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(classify(&stun), DatagramKind::Other);
        assert_eq!(classify(&[0x80, 205, 0, 1, 0, 0, 0, 1]), DatagramKind::Other);
        assert_eq!(classify(&[0x80, 0, 0]), DatagramKind::Other);
        assert_eq!(classify(&[]), DatagramKind::Other);
        assert_eq!(classify(&[0x8F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), DatagramKind::Other); // 15 CSRCs missing
        let mut counters = DatagramCounters::default();
        for d in [&rtp[..], &rr, &stun, b"hello"] {
            counters.classify(d);
        }
        assert_eq!(counters, DatagramCounters { rtp: 1, rtcp: 1, other: 2 });
    }

    #[test]
    fn parse_shares_the_buffer_and_never_panics() {
        let wire = Bytes::from(sender(7, 9).send_audio(b"abc"));
        let p = RtpPacket::parse(&wire).unwrap();
        assert_eq!(&p.payload[..], b"abc");
        assert_eq!(p.to_bytes(), wire.to_vec());
        assert_eq!(RtpPacket::parse_slice(&[0x40; 12]), Err(RtpError::Version(1)));
        assert_eq!(RtpPacket::parse_slice(&[0x80; 3]), Err(RtpError::TooShort { len: 3 }));
        // Padding flag with a zero count, and with a count past the header.
        let mut padded = wire.to_vec();
        padded[0] |= 0x20;
        *padded.last_mut().unwrap() = 0;
        assert_eq!(RtpPacket::parse_slice(&padded), Err(RtpError::BadPadding));
        *padded.last_mut().unwrap() = 200;
        assert_eq!(RtpPacket::parse_slice(&padded), Err(RtpError::BadPadding));
        for len in 0..wire.len() {
            for flip in 0..=255u8 {
                let mut b = wire[..len].to_vec();
                if let Some(x) = b.first_mut() {
                    *x ^= flip;
                }
                let _ = RtpPacket::parse_slice(&b);
                let _ = classify(&b);
            }
        }
    }
}
