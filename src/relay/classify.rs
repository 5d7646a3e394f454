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
//!
//! Nothing past the RTP header is read, so SRTP (RFC 3711) passes as it is: its header is in
//! clear, while the payload, the padding (whose count octet would be the datagram's last) and the
//! authentication tag that ends the datagram are the phones' business. SRTCP keeps the RTCP
//! common header in clear too, with the index and tag after the compound.

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
    rtp_header(datagram).map_or(Kind::Other, Kind::Rtp)
}

/// The fixed header, the CSRC list and the header extension, if they fit in the datagram (RFC 3550
/// §5.1, §5.3.1). The padding flag is not followed: under SRTP the last octet is the
/// authentication tag's, not the padding count (RFC 3711 §3.1).
fn rtp_header(d: &[u8]) -> Option<RtpHeader> {
    let fixed: &[u8; 12] = d.get(..12)?.try_into().ok()?;
    let mut len = 12 + 4 * usize::from(fixed[0] & 0x0f);
    if fixed[0] & 0x10 != 0 {
        let words = d.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    if len > d.len() {
        return None;
    }
    let [_, m_pt, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3] = *fixed;
    Some(RtpHeader {
        payload_type: m_pt & 0x7f,
        sequence: u16::from_be_bytes([s0, s1]),
        timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
        ssrc: u32::from_be_bytes([c0, c1, c2, c3]),
    })
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
        let mut srtp_padded = rtp(8, 7);
        srtp_padded[0] |= 0x20;
        srtp_padded.extend_from_slice(&[0x5A; 9]);
        srtp_padded.push(0xF3);
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
            // SRTP with the padding flag: the last octet is the tag's, larger than the payload.
            (&srtp_padded, Port::Rtp, Kind::Rtp(header)),
            // A header extension that does not fit; one that does.
            (&[0x90, 8, 0, 7, 0, 0, 0, 160, 0xDE, 0xAD, 0xBE, 0xEF, 0xBE, 0xDE, 0, 2, 0, 0, 0, 0], Port::Rtp, Kind::Other),
            (&[0x90, 8, 0, 7, 0, 0, 0, 160, 0xDE, 0xAD, 0xBE, 0xEF, 0xBE, 0xDE, 0, 1, 0, 0, 0, 0], Port::Rtp, Kind::Rtp(header)),
            (&[0x40; 12], Port::Rtp, Kind::Other),
            (&[], Port::Rtp, Kind::Other),
        ];
        for (i, (datagram, port, kind)) in cases.iter().enumerate() {
            assert_eq!(classify(datagram, *port), *kind, "case {i}");
        }
    }
}
