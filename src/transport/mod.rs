//! The UDP transport's rules, sans-IO (RFC 3261 §18, RFC 3581).
//!
//! What arrives: [`classify`] tells SIP from STUN and keep-alives, [`stamp_received`] adds
//! `received`/`rport` to the top Via of a request (§18.2.1, RFC 3581 §4). What leaves:
//! [`response_destination`] says where a response goes (§18.2.2, RFC 3581 §4), [`Transmit`] carries
//! bytes and destination to the I/O driver. The socket itself lives in [`udp`].

pub mod udp;

use crate::message::{Host, Message};
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};

/// The default SIP port over UDP (RFC 3261 §19.1.2).
pub const DEFAULT_PORT: u16 = 5060;

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// Where to.
    pub dest: SocketAddr,
    /// The bytes.
    pub payload: Bytes,
}

/// What a received datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// Looks like SIP: hand it to the parser.
    Sip,
    /// A STUN message (RFC 5389 magic cookie), e.g. a NAT keep-alive: ignored and counted.
    Stun,
    /// Only CR/LF (RFC 5626 keep-alive): ignored and counted.
    KeepAlive,
    /// Too short or binary: ignored and counted.
    Garbage,
}

/// Classifies a datagram before parsing.
pub fn classify(d: &[u8]) -> DatagramKind {
    if d.iter().all(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return DatagramKind::KeepAlive;
    }
    if d.len() >= 20 && d[0] & 0xc0 == 0 && d[4..8] == [0x21, 0x12, 0xa4, 0x42] {
        return DatagramKind::Stun;
    }
    // A SIP message starts with a method token or "SIP/": printable ASCII.
    match d.iter().find(|&&b| b != b'\r' && b != b'\n') {
        Some(b) if b.is_ascii_graphic() => DatagramKind::Sip,
        _ => DatagramKind::Garbage,
    }
}

/// Adds `received` (when the sent-by host differs from the source address, §18.2.1) and fills an
/// empty `rport` with the source port (RFC 3581 §4) in the top Via of a request. Returns the message
/// unchanged when nothing is needed.
pub fn stamp_received(msg: &Message, src: SocketAddr) -> Message {
    let Ok(via) = msg.via() else { return msg.clone() };
    let wants_rport = via.rport() == Some(None);
    let sent_by_is_src = match via.host {
        Host::Domain(_) => false,
        host => host.ip() == Some(src.ip()),
    };
    let mut extra = String::new();
    if (!sent_by_is_src || wants_rport) && via.received().is_none() {
        extra.push_str(";received=");
        extra.push_str(&src.ip().to_string());
    }
    if wants_rport {
        // The empty rport param is left in place and a valued one follows; strip the empty one by
        // rewriting would need a second copy. RFC 3581 §4 parsers read the valued one first.
        extra.push_str(&format!(";rport={}", src.port()));
    }
    if extra.is_empty() {
        msg.clone()
    } else {
        msg.append_to_top_via(&extra)
    }
}

/// Where to send a response over UDP (§18.2.2, RFC 3581 §4): to `received` (else the sent-by host,
/// when it is an IP address) at `rport` (else the sent-by port, else 5060). Domain names are not
/// resolved here; `None` means the caller must resolve the sent-by host itself.
pub fn response_destination(msg: &Message) -> Option<SocketAddr> {
    let via = msg.via().ok()?;
    let ip: IpAddr = match via.received() {
        Some(r) => r.parse().ok().or_else(|| Host::Ipv6(r).ip())?,
        None => via.host.ip()?,
    };
    let rport = via.params.iter().filter(|(n, _)| n.eq_ignore_ascii_case("rport")).find_map(|(_, v)| v?.parse::<u16>().ok());
    let port = rport.or(via.port).unwrap_or(DEFAULT_PORT);
    Some(SocketAddr::new(ip, port))
}

/// A Via value for a request we send from `local` (RFC 3261 §18.1.1, with `rport` RFC 3581 §3).
pub fn via_value(local: SocketAddr, branch: &str) -> String {
    match local.ip() {
        IpAddr::V4(ip) => format!("SIP/2.0/UDP {ip}:{};branch={branch};rport", local.port()),
        IpAddr::V6(ip) => format!("SIP/2.0/UDP [{ip}]:{};branch={branch};rport", local.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(via: &str) -> Message {
        let wire = format!("OPTIONS sip:a@b SIP/2.0\r\nVia: {via}\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
        Message::parse(Bytes::from(wire)).unwrap()
    }

    #[test]
    fn classify_datagrams() {
        assert_eq!(classify(b"\r\n\r\n"), DatagramKind::KeepAlive);
        let mut stun = vec![0u8, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        stun.resize(20, 0);
        assert_eq!(classify(&stun), DatagramKind::Stun);
        assert_eq!(classify(b"\x80\x00garbage"), DatagramKind::Garbage);
        assert_eq!(classify(b"INVITE sip:x SIP/2.0\r\n"), DatagramKind::Sip);
    }

    #[test]
    fn received_and_rport() {
        let src: SocketAddr = "192.0.2.9:40000".parse().unwrap();
        let m = stamp_received(&req("SIP/2.0/UDP host.example.com:5060;branch=z9hG4bKa;rport, SIP/2.0/UDP other;branch=z9hG4bKb"), src);
        let via = m.via().unwrap();
        assert_eq!(via.received(), Some("192.0.2.9"));
        assert_eq!(m.vias().count(), 2);
        assert_eq!(response_destination(&m), Some(src));
        m.validate().unwrap();
        assert_eq!(Message::parse(m.as_bytes().clone()).unwrap(), m);
        // Same address, no rport: untouched, answer to sent-by.
        let same = req("SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bKa");
        let m2 = stamp_received(&same, src);
        assert_eq!(m2, same);
        assert_eq!(response_destination(&m2), Some("192.0.2.9:5070".parse().unwrap()));
        // No port at all: 5060.
        let m3 = stamp_received(&req("SIP/2.0/UDP example.com;branch=z9hG4bKa"), src);
        assert_eq!(response_destination(&m3), Some("192.0.2.9:5060".parse().unwrap()));
    }

    #[test]
    fn via_values() {
        assert_eq!(via_value("[::1]:5060".parse().unwrap(), "z9hG4bK1"), "SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1;rport");
    }
}
