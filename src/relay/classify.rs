//! Telling RTP from RTCP and from everything else on a relay port, without allocating.
//!
//! RFC 5761 §4 demultiplexes on the second octet: RTCP packet types 192-223 occupy the octet that
//! RTP uses for marker + payload type, and RTP payload types 64-95 are kept out of use so that
//! `M | PT` never falls in that range. So on any port, a version-2 datagram whose second octet is
//! 192-223 is RTCP; on the RTP port anything else that has a well-formed RTP header (RFC 3550
//! §5.1: 12 bytes, CSRC list, extension and padding inside the datagram) is RTP.
//!
//! Unlike [`crate::media::rtp::classify`], which answers for a media endpoint that only reads
//! SR/RR/SDES/BYE/APP, a relay passes every RTCP type through (feedback 205/206 of RFC 4585, XR
//! 207 of RFC 3611): the phones at both ends decide what they understand.

use rtp_rs::RtpReader;

/// The RTP header fields the relay's statistics need (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RtpHeader {
    pub(super) payload_type: u8,
    pub(super) sequence: u16,
    pub(super) timestamp: u32,
    pub(super) ssrc: u32,
}

/// What one datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Rtp(RtpHeader),
    Rtcp,
    /// STUN, DTLS, truncated headers, other versions, garbage.
    Other,
}

/// Which of a leg's ports the datagram arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Port {
    Rtp,
    Rtcp,
}

/// Smallest RTCP packet: the 4-byte common header plus the sender's SSRC (RFC 3550 §6.4.2 RR with
/// no report blocks).
const MIN_RTCP_LEN: usize = 8;

/// Classifies a datagram that arrived on `port`. RTP on the RTCP port is `Other`; RTCP on the RTP
/// port is RTCP multiplexed on one port (RFC 5761).
pub(super) fn classify(datagram: &[u8], port: Port) -> Kind {
    let [first, second, ..] = *datagram else { return Kind::Other };
    if first >> 6 != 2 {
        return Kind::Other;
    }
    if (192..=223).contains(&second) {
        return if is_rtcp(datagram) { Kind::Rtcp } else { Kind::Other };
    }
    if port == Port::Rtcp {
        return Kind::Other;
    }
    match RtpReader::new(datagram) {
        Ok(r) => Kind::Rtp(RtpHeader {
            payload_type: r.payload_type(),
            sequence: r.sequence_number().into(),
            timestamp: r.timestamp(),
            ssrc: r.ssrc(),
        }),
        Err(_) => Kind::Other,
    }
}

/// The first packet of a compound fits: its length field (RFC 3550 §6.4.1, in 32-bit words minus
/// one) stays inside the datagram. The rest of the compound is the phones' business (A.2's
/// stricter checks would drop reduced-size RTCP of RFC 5506).
fn is_rtcp(datagram: &[u8]) -> bool {
    match datagram {
        [_, _, hi, lo, ..] if datagram.len() >= MIN_RTCP_LEN => {
            let words = usize::from(u16::from_be_bytes([*hi, *lo])) + 1;
            words * 4 <= datagram.len()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(pt: u8, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 160, 0xDE, 0xAD, 0xBE, 0xEF, 0xFF, 0xFF];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p
    }

    #[test]
    fn table() {
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        let pli = [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        let stun = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let header = RtpHeader { payload_type: 8, sequence: 7, timestamp: 160, ssrc: 0xDEAD_BEEF };
        let cases: &[(&[u8], Port, Kind)] = &[
            (&rtp(8, 7), Port::Rtp, Kind::Rtp(header)),
            (&rtp(0x80 | 8, 7), Port::Rtp, Kind::Rtp(header)), // marker set
            (&rtp(8, 7), Port::Rtcp, Kind::Other),
            (&rr, Port::Rtcp, Kind::Rtcp),
            (&rr, Port::Rtp, Kind::Rtcp),
            (&pli, Port::Rtcp, Kind::Rtcp),
            (&[0x80, 201, 0, 2, 0, 0, 0, 1], Port::Rtcp, Kind::Other), // length says 12 bytes
            (&[0x80, 201, 0, 0], Port::Rtcp, Kind::Other),
            (&stun, Port::Rtp, Kind::Other),
            (&[0x8F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], Port::Rtp, Kind::Other), // 15 CSRCs missing
            (&[0x80, 0, 0], Port::Rtp, Kind::Other),
            (&[0x40; 12], Port::Rtp, Kind::Other),
            (&[], Port::Rtp, Kind::Other),
        ];
        for (i, (datagram, port, kind)) in cases.iter().enumerate() {
            assert_eq!(classify(datagram, *port), *kind, "case {i}");
        }
    }
}
