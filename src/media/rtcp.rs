//! RTCP (RFC 3550 §6): sender and receiver reports with their report blocks (§6.4), source
//! descriptions with a CNAME (§6.5), BYE (§6.6), compound packets (§6.1), and the round-trip time
//! from LSR/DLSR (§6.4.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|    RC   |   PT=SR=200   |             length            |  every packet
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |                 SSRC_1 (SSRC of first source)                 |  report block
//! | fraction lost |       cumulative number of packets lost       |  (24 bytes, §6.4.1)
//! |           extended highest sequence number received           |
//! |                      interarrival jitter                      |
//! |                         last SR (LSR)                         |
//! |                   delay since last SR (DLSR)                  |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! ```
//!
//! Parsing takes bytes from the network and never panics: every length is checked, unknown packet
//! types are kept as [`RtcpPacket::Other`], unknown SDES items are skipped. It is lenient about
//! A.2's rule that a compound packet starts with SR or RR.

use std::fmt;
use std::time::Duration;

/// RTCP packet types (RFC 3550 §12.1).
const PT_SR: u8 = 200;
const PT_RR: u8 = 201;
const PT_SDES: u8 = 202;
const PT_BYE: u8 = 203;
/// SDES item type of the canonical name (§6.5.1).
const SDES_CNAME: u8 = 1;
/// Bytes in one report block.
const BLOCK_LEN: usize = 24;
/// At most 31 report blocks or SDES chunks fit the 5-bit count.
const MAX_COUNT: usize = 31;

/// A 64-bit NTP timestamp (RFC 5905 §6): seconds since 1900 in the high 32 bits, fraction in the
/// low 32. The core reads no clock: the driver converts wall-clock time with [`NtpTime::from_unix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpTime(pub u64);

impl NtpTime {
    /// Seconds from 1900-01-01 to 1970-01-01.
    const UNIX_OFFSET: u64 = 2_208_988_800;

    /// Converts a duration since the Unix epoch (e.g. `SystemTime::duration_since(UNIX_EPOCH)`).
    pub fn from_unix(since_epoch: Duration) -> NtpTime {
        let secs = since_epoch.as_secs().wrapping_add(Self::UNIX_OFFSET);
        let frac = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
        NtpTime((secs << 32) | frac)
    }

    /// The middle 32 bits (16.16 fixed point seconds), as carried in LSR (§6.4.1).
    pub fn middle32(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Packets lost since the previous report, as a fraction of those expected, times 256.
    pub fraction_lost: u8,
    /// Packets lost since reception began (24-bit signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Cycles of the sequence number (high 16 bits) and highest sequence number received.
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units (§6.4.1, A.8).
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from that source, or 0.
    pub last_sr: u32,
    /// Delay between receiving that SR and sending this block, in units of 1/65536 s, or 0.
    pub delay_since_last_sr: u32,
}

/// The sender information of an SR (§6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// Wall-clock time when the report was sent.
    pub ntp: NtpTime,
    /// The same instant in RTP timestamp units of this stream.
    pub rtp_timestamp: u32,
    /// Packets sent since the stream started.
    pub packet_count: u32,
    /// Payload octets sent since the stream started.
    pub octet_count: u32,
}

/// One RTCP packet of a compound packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket {
    /// Sender report (PT 200).
    SenderReport {
        /// The sender.
        ssrc: u32,
        /// What it sent.
        info: SenderInfo,
        /// What it received (at most 31 are written).
        reports: Vec<ReportBlock>,
    },
    /// Receiver report (PT 201).
    ReceiverReport {
        /// The reporter.
        ssrc: u32,
        /// What it received (at most 31 are written).
        reports: Vec<ReportBlock>,
    },
    /// Source description (PT 202): the CNAME of each chunk's source; other items are dropped.
    SourceDescription(Vec<(u32, String)>),
    /// Goodbye (PT 203) from these sources; a reason, if any, is dropped.
    Goodbye(Vec<u32>),
    /// A packet type this module does not interpret (APP, feedback, XR, ...).
    Other {
        /// Its packet type.
        packet_type: u8,
    },
}

/// Why bytes are not an RTCP compound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpError {
    /// No packet at all.
    Empty,
    /// Fewer than 4 bytes left for a header, or a body shorter than its fixed part.
    Truncated,
    /// A version field other than 2.
    Version(u8),
    /// The length field points past the end of the datagram.
    Length,
    /// An SDES chunk is malformed (item running past the packet, no terminating null item).
    Sdes,
}

impl fmt::Display for RtcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtcpError::Empty => f.write_str("empty RTCP datagram"),
            RtcpError::Truncated => f.write_str("RTCP packet truncated"),
            RtcpError::Version(v) => write!(f, "RTCP version {v}, expected 2"),
            RtcpError::Length => f.write_str("RTCP length field past the end of the datagram"),
            RtcpError::Sdes => f.write_str("malformed RTCP SDES chunk"),
        }
    }
}

impl std::error::Error for RtcpError {}

// ===== parsing =====

fn be32(b: &[u8], at: usize) -> Result<u32, RtcpError> {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map(u32::from_be_bytes).ok_or(RtcpError::Truncated)
}

fn parse_blocks(body: &[u8], count: usize) -> Result<Vec<ReportBlock>, RtcpError> {
    if body.len() < count * BLOCK_LEN {
        return Err(RtcpError::Truncated);
    }
    let block = |at: usize| -> Result<ReportBlock, RtcpError> {
        let lost_word = be32(body, at + 4)?;
        Ok(ReportBlock {
            ssrc: be32(body, at)?,
            fraction_lost: (lost_word >> 24) as u8,
            // Sign-extend the 24-bit field.
            cumulative_lost: ((lost_word << 8) as i32) >> 8,
            extended_highest_seq: be32(body, at + 8)?,
            jitter: be32(body, at + 12)?,
            last_sr: be32(body, at + 16)?,
            delay_since_last_sr: be32(body, at + 20)?,
        })
    };
    (0..count).map(|i| block(i * BLOCK_LEN)).collect()
}

fn parse_sdes(body: &[u8], count: usize) -> Result<Vec<(u32, String)>, RtcpError> {
    let mut chunks = Vec::with_capacity(count);
    let mut at = 0;
    for _ in 0..count {
        let ssrc = be32(body, at)?;
        at += 4;
        let mut cname = String::new();
        loop {
            match body.get(at) {
                None => return Err(RtcpError::Sdes),
                Some(0) => break,
                Some(&kind) => {
                    let len = usize::from(*body.get(at + 1).ok_or(RtcpError::Sdes)?);
                    let text = body.get(at + 2..at + 2 + len).ok_or(RtcpError::Sdes)?;
                    if kind == SDES_CNAME {
                        cname = String::from_utf8_lossy(text).into_owned();
                    }
                    at += 2 + len;
                }
            }
        }
        // The null item, then padding to the next 32-bit boundary.
        at = (at + 4) & !3;
        chunks.push((ssrc, cname));
    }
    Ok(chunks)
}

fn parse_one(packet_type: u8, count: usize, body: &[u8]) -> Result<RtcpPacket, RtcpError> {
    Ok(match packet_type {
        PT_SR => {
            let info = SenderInfo {
                ntp: NtpTime((u64::from(be32(body, 4)?) << 32) | u64::from(be32(body, 8)?)),
                rtp_timestamp: be32(body, 12)?,
                packet_count: be32(body, 16)?,
                octet_count: be32(body, 20)?,
            };
            RtcpPacket::SenderReport { ssrc: be32(body, 0)?, info, reports: parse_blocks(&body[24..], count)? }
        }
        PT_RR => RtcpPacket::ReceiverReport { ssrc: be32(body, 0)?, reports: parse_blocks(&body[4..], count)? },
        PT_SDES => RtcpPacket::SourceDescription(parse_sdes(body, count)?),
        PT_BYE => RtcpPacket::Goodbye((0..count).map(|i| be32(body, 4 * i)).collect::<Result<_, _>>()?),
        other => RtcpPacket::Other { packet_type: other },
    })
}

/// Parses a compound RTCP packet (§6.1): one or more packets back to back, each with a valid
/// version and a length that stays inside the datagram.
pub fn parse_compound(datagram: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if datagram.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut packets = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let header = rest.get(..4).ok_or(RtcpError::Truncated)?;
        if header[0] >> 6 != 2 {
            return Err(RtcpError::Version(header[0] >> 6));
        }
        let len = (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1) * 4;
        let packet = rest.get(..len).ok_or(RtcpError::Length)?;
        let mut body = &packet[4..];
        if header[0] & 0x20 != 0 {
            // Padding: the last octet counts the padding octets, itself included.
            let pad = usize::from(*body.last().ok_or(RtcpError::Truncated)?);
            body = body.get(..body.len().checked_sub(pad).ok_or(RtcpError::Length)?).ok_or(RtcpError::Length)?;
        }
        let needed = match header[1] {
            PT_SR => 24,
            PT_RR => 4,
            _ => 0,
        };
        if body.len() < needed {
            return Err(RtcpError::Truncated);
        }
        packets.push(parse_one(header[1], usize::from(header[0] & 0x1F), body)?);
        rest = &rest[len..];
    }
    Ok(packets)
}

// ===== writing =====

fn put_blocks(out: &mut Vec<u8>, reports: &[ReportBlock]) {
    for b in reports.iter().take(MAX_COUNT) {
        out.extend_from_slice(&b.ssrc.to_be_bytes());
        let lost = (b.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32) & 0x00FF_FFFF;
        out.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
        for word in [b.extended_highest_seq, b.jitter, b.last_sr, b.delay_since_last_sr] {
            out.extend_from_slice(&word.to_be_bytes());
        }
    }
}

impl RtcpPacket {
    /// Appends this packet to `out`. Counts above 31 are truncated to 31 items; a CNAME is cut to
    /// 255 bytes (at a character boundary).
    pub fn write(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let (packet_type, count) = match self {
            RtcpPacket::SenderReport { ssrc, info, reports } => {
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&ssrc.to_be_bytes());
                out.extend_from_slice(&info.ntp.0.to_be_bytes());
                for word in [info.rtp_timestamp, info.packet_count, info.octet_count] {
                    out.extend_from_slice(&word.to_be_bytes());
                }
                put_blocks(out, reports);
                (PT_SR, reports.len())
            }
            RtcpPacket::ReceiverReport { ssrc, reports } => {
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&ssrc.to_be_bytes());
                put_blocks(out, reports);
                (PT_RR, reports.len())
            }
            RtcpPacket::SourceDescription(chunks) => {
                out.extend_from_slice(&[0; 4]);
                for (ssrc, cname) in chunks.iter().take(MAX_COUNT) {
                    out.extend_from_slice(&ssrc.to_be_bytes());
                    let mut end = cname.len().min(255);
                    while !cname.is_char_boundary(end) {
                        end -= 1;
                    }
                    out.extend_from_slice(&[SDES_CNAME, end as u8]);
                    out.extend_from_slice(&cname.as_bytes()[..end]);
                    // At least one null octet ends the item list, then pad to 32 bits (§6.5).
                    out.push(0);
                    while (out.len() - start) % 4 != 0 {
                        out.push(0);
                    }
                }
                (PT_SDES, chunks.len())
            }
            RtcpPacket::Goodbye(sources) => {
                out.extend_from_slice(&[0; 4]);
                for ssrc in sources.iter().take(MAX_COUNT) {
                    out.extend_from_slice(&ssrc.to_be_bytes());
                }
                (PT_BYE, sources.len())
            }
            RtcpPacket::Other { packet_type } => {
                out.extend_from_slice(&[0; 4]);
                (*packet_type, 0)
            }
        };
        let words = ((out.len() - start) / 4 - 1) as u16;
        out[start] = 0x80 | count.min(MAX_COUNT) as u8;
        out[start + 1] = packet_type;
        out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    }
}

/// Writes packets back to back as one compound packet.
pub fn write_compound(packets: &[RtcpPacket]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in packets {
        p.write(&mut out);
    }
    out
}

/// The compound packet a session sends every reporting interval (§6.1): an SR if we sent media
/// since the last report (`sender` is `Some`), else an RR, then an SDES with our CNAME.
pub fn build_report(ssrc: u32, sender: Option<SenderInfo>, reports: Vec<ReportBlock>, cname: &str) -> Vec<u8> {
    let report = match sender {
        Some(info) => RtcpPacket::SenderReport { ssrc, info, reports },
        None => RtcpPacket::ReceiverReport { ssrc, reports },
    };
    write_compound(&[report, RtcpPacket::SourceDescription(vec![(ssrc, cname.to_owned())])])
}

/// Round-trip time from a report block about our stream (§6.4.1, Figure 2): `A - LSR - DLSR`,
/// where `arrival` is the middle 32 bits of the NTP time the report arrived. `None` if the block
/// carries no LSR (no SR received yet) or the result is negative (clocks or block inconsistent).
pub fn round_trip_time(arrival: u32, last_sr: u32, delay_since_last_sr: u32) -> Option<Duration> {
    if last_sr == 0 {
        return None;
    }
    let rtt = arrival.wrapping_sub(last_sr).wrapping_sub(delay_since_last_sr);
    if rtt > i32::MAX as u32 {
        return None;
    }
    // 16.16 fixed point seconds to nanoseconds.
    Some(Duration::from_nanos((u64::from(rtt) * 1_000_000_000) >> 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0x1234_5678,
            fraction_lost: 64,
            cumulative_lost: -3,
            extended_highest_seq: 0x0001_0005,
            jitter: 42,
            last_sr: 0xB705_2000,
            delay_since_last_sr: 0x0005_4000,
        }
    }

    #[test]
    fn sr_rr_sdes_round_trip() {
        let sr = RtcpPacket::SenderReport {
            ssrc: 7,
            info: SenderInfo { ntp: NtpTime(0xE000_0000_8000_0000), rtp_timestamp: 160, packet_count: 50, octet_count: 8000 },
            reports: vec![block()],
        };
        let rr = RtcpPacket::ReceiverReport { ssrc: 8, reports: vec![block(), ReportBlock { ssrc: 9, ..block() }] };
        let sdes = RtcpPacket::SourceDescription(vec![(7, "user@host".into()), (8, String::new())]);
        let bye = RtcpPacket::Goodbye(vec![7]);
        let all = vec![sr, rr, sdes, bye];
        let wire = write_compound(&all);
        assert_eq!(wire.len() % 4, 0);
        assert_eq!(&wire[..4], &[0x81, 200, 0, 12]); // 52 bytes = 13 words
        assert_eq!(parse_compound(&wire).unwrap(), all);
    }

    #[test]
    fn report_with_cname_and_negative_loss_clamp() {
        let wire = build_report(1, None, vec![ReportBlock { cumulative_lost: -10_000_000, ..block() }], "a");
        let parsed = parse_compound(&wire).unwrap();
        assert!(matches!(&parsed[0], RtcpPacket::ReceiverReport { reports, .. } if reports[0].cumulative_lost == -0x80_0000));
        assert_eq!(parsed[1], RtcpPacket::SourceDescription(vec![(1, "a".into())]));
        // SDES: header, SSRC, CNAME item of 3 bytes, null and one pad byte: 12 bytes.
        assert_eq!(wire.len(), 8 + 24 + 12);
    }

    #[test]
    fn rtt_from_lsr_and_dlsr() {
        // RFC 3550 Figure 2: A = 0xb710:8000, LSR = 0xb705:2000, DLSR = 0x0005:4000 -> 6.125 s.
        assert_eq!(round_trip_time(0xB710_8000, 0xB705_2000, 0x0005_4000), Some(Duration::from_millis(6125)));
        assert_eq!(round_trip_time(0xB710_8000, 0, 0), None);
        assert_eq!(round_trip_time(0xB705_2000, 0xB705_2000, 0x10), None);
        let t = NtpTime::from_unix(Duration::new(0, 500_000_000));
        assert_eq!(t.0 >> 32, 2_208_988_800);
        assert_eq!(t.middle32() & 0xFFFF, 0x8000);
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        assert_eq!(parse_compound(&[]), Err(RtcpError::Empty));
        assert_eq!(parse_compound(&[0x80, 201, 0]), Err(RtcpError::Truncated));
        assert_eq!(parse_compound(&[0x40, 201, 0, 1, 0, 0, 0, 0]), Err(RtcpError::Version(1)));
        assert_eq!(parse_compound(&[0x80, 201, 0, 9, 0, 0, 0, 0]), Err(RtcpError::Length));
        assert_eq!(parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 0]), Err(RtcpError::Truncated));
        assert_eq!(parse_compound(&[0x80, 200, 0, 1, 0, 0, 0, 0]), Err(RtcpError::Truncated));
        assert_eq!(parse_compound(&[0x81, 202, 0, 1, 0, 0, 0, 1]), Err(RtcpError::Sdes));
        assert_eq!(parse_compound(&[0xA0, 201, 0, 1, 0, 0, 0, 9]), Err(RtcpError::Length));
        assert_eq!(parse_compound(&[0x80, 206, 0, 0]), Ok(vec![RtcpPacket::Other { packet_type: 206 }]));
        let wire = build_report(
            3,
            Some(SenderInfo::default()),
            vec![block(); 2],
            "long-cname-long-cname-long-cname-long-cname-long-cname-long-cname",
        );
        for len in 0..=wire.len() {
            for i in 0..len {
                for flip in [0x01u8, 0x1F, 0x20, 0x80, 0xFF] {
                    let mut b = wire[..len].to_vec();
                    b[i] ^= flip;
                    let _ = parse_compound(&b);
                }
            }
        }
    }
}
