//! The UDP transport's rules, sans-IO (RFC 3261 §18, RFC 3581).
//!
//! What arrives: [`classify`] tells SIP from STUN and keep-alives, [`stamp_received`] adds
//! `received`/`rport` to the top Via of a request (§18.2.1, RFC 3581 §4). What leaves:
//! [`response_destination`] says where a response goes (§18.2.2, RFC 3581 §4), [`Transmit`] carries
//! bytes and destination to the I/O driver. The socket itself lives in `udp` (feature `tokio`).

#[cfg(all(feature = "tokio", target_os = "linux"))]
pub(crate) mod media_readers;
#[cfg(all(feature = "tokio", not(target_os = "linux")))]
#[path = "media_readers_portable.rs"]
pub(crate) mod media_readers;
#[cfg(all(feature = "tokio", target_os = "linux"))]
mod mmsg;
pub mod rate_limit;
#[cfg(feature = "tokio")]
pub mod udp;
#[cfg(feature = "tokio")]
pub mod udp_sync;

use crate::decimal::{push_decimal, push_ip};
use crate::message::{HeaderName, Host, Message};
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
/// empty `rport` with the source port (RFC 3581 §4) in the top Via of a request (or of the copy of
/// its Via in a stateless answer to an unparsable request). Returns the message
/// unchanged when nothing is needed.
///
/// Both go into the received bytes in place (one copy of the datagram, every other header left
/// as it came): phones that ask for `rport` send it on every request, so this is on the hot path.
pub fn stamp_received(msg: &Message, src: SocketAddr) -> Message {
    let Ok(via) = msg.via() else { return msg.clone() };
    // One pass over the Via's parameters (issue 16: this runs for every request) finds what
    // `Via::rport`, `Via::received` and a search for the first valueless `rport` would: the first
    // `rport` and the first `received` decide, a later valueless `rport` is the one filled in.
    let (mut first_rport, mut first_received, mut empty_rport) = (None, None, None);
    for (name, value) in via.params.iter() {
        if name.eq_ignore_ascii_case("rport") {
            first_rport.get_or_insert(value);
            if value.is_none() && empty_rport.is_none() {
                empty_rport = Some(name);
            }
        } else if name.eq_ignore_ascii_case("received") {
            first_received.get_or_insert(value);
        }
    }
    // As `Via::rport() == Some(None)`: present without a value, or with one that is no port.
    let wants_rport = first_rport.is_some_and(|v| v.and_then(|p| p.parse::<u16>().ok()).is_none());
    let has_received = first_received.is_some_and(|v| v.is_some());
    let sent_by_is_src = match via.host {
        Host::Domain(_) => false,
        host => host.ip() == Some(src.ip()),
    };
    // Both texts on the stack: `;received=` and an IPv6 address fit in 64 bytes, `=` and a port in 8.
    let mut received = Short::<64>::default();
    if (!sent_by_is_src || wants_rport) && !has_received {
        received.push_str(";received=");
        push_ip(&mut received, src.ip());
    }
    let port = match (wants_rport, empty_rport.and_then(|n| msg.offset_of(n))) {
        // RFC 3581 §4: the empty `rport` gets the source port as its value, in place.
        (true, Some(at)) => {
            let mut value = Short::<8>::default();
            value.push_str("=");
            push_decimal(&mut value, src.port().into());
            Some((at + "rport".len(), value))
        }
        (true, None) => return with_top_via(msg, &rport_filled(&via, src, received.as_str())),
        (false, _) => None,
    };
    // The end of the top Via value is the end of its parameters (a `via-parm` that parsed ends
    // there: `top_via_end` trims the LWS that may follow them), known from the parse kept above.
    let params = via.params.as_str();
    let via_end = msg.offset_of(params).map(|at| at + params.len());
    debug_assert_eq!(via_end, msg.top_via_end());
    match (port, via_end) {
        (None, _) if received.is_empty() => msg.clone(),
        (None, Some(end)) => msg.splice_top_via_params(&[(end, received.as_bytes())]),
        (None, None) => msg.append_to_top_via(received.as_str()),
        (Some((at, value)), Some(end)) if at <= end => msg.splice_top_via_params(&[(at, value.as_bytes()), (end, received.as_bytes())]),
        _ => with_top_via(msg, &rport_filled(&via, src, received.as_str())),
    }
}

/// Text of at most `N` bytes on the stack; what does not fit is dropped (the callers size it for
/// the longest text they write).
struct Short<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Short<N> {
    fn default() -> Self {
        Short { bytes: [0; N], len: 0 }
    }
}

impl<const N: usize> Short<N> {
    fn push_str(&mut self, s: &str) {
        let _ = std::fmt::Write::write_str(self, s);
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s are written (see `write_str`).
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> std::fmt::Write for Short<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let Some(to) = self.bytes.get_mut(self.len..end) else { return Err(std::fmt::Error) };
        to.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The slow path, for a Via whose text is not where the parser says: the top Via value with `rport` set to the source port and `extra` (a `;received=`) appended.
fn rport_filled(via: &crate::message::Via<'_>, src: SocketAddr, extra: &str) -> String {
    let mut v = format!("{}/{}/{} {}", via.protocol, via.version, via.transport, via.host);
    if let Some(p) = via.port {
        v.push_str(&format!(":{p}"));
    }
    for (name, value) in via.params.iter() {
        match value {
            _ if name.eq_ignore_ascii_case("rport") => v.push_str(&format!(";rport={}", src.port())),
            Some(value) => v.push_str(&format!(";{name}={value}")),
            None => v.push_str(&format!(";{name}")),
        }
    }
    v.push_str(extra);
    v
}

/// A copy of `msg` whose first Via value is `top` (the values after it are kept).
fn with_top_via(msg: &Message, top: &str) -> Message {
    let mut b = match (msg.method().cloned(), msg.request_uri_str(), msg.status()) {
        (Some(method), Some(uri), _) => Message::request(method, uri),
        (_, _, Some(code)) => Message::response(code, &String::from_utf8_lossy(msg.reason().unwrap_or(b""))),
        _ => return msg.clone(),
    };
    let mut done = false;
    for h in msg.headers() {
        let spelling = if h.name == HeaderName::Other { std::str::from_utf8(h.raw_name).unwrap_or("X-Invalid") } else { h.name.as_str() };
        match h.name {
            HeaderName::ContentLength | HeaderName::ContentType => {}
            HeaderName::Via if !done => {
                done = true;
                b.push_raw(HeaderName::Via, "Via", top.as_bytes());
                crate::proxy::forward::push_rest_of_list(&mut b, HeaderName::Via, h.value);
            }
            _ => b.push_raw(h.name, spelling, h.value),
        }
    }
    crate::proxy::forward::finish_like(b, msg)
}

/// Where to send a response over UDP (§18.2.2, RFC 3581 §4): to `received` (else the sent-by host,
/// when it is an IP address) at `rport` (else the sent-by port, else 5060). Domain names are not
/// resolved here; `None` means the caller must resolve the sent-by host itself.
pub fn response_destination(msg: &Message) -> Option<SocketAddr> {
    let via = msg.via().ok()?;
    // One pass over the parameters (issue 16: this runs for every answer) finds what
    // `Via::received` (the first `received` decides; without a value it counts as none) and the
    // first `rport` with a port for a value would.
    let (mut received, mut rport) = (None, None);
    for (name, value) in via.params.iter() {
        if received.is_none() && name.eq_ignore_ascii_case("received") {
            received = Some(value);
        } else if rport.is_none() && name.eq_ignore_ascii_case("rport") {
            rport = value.and_then(|v| v.parse::<u16>().ok());
        }
    }
    let ip: IpAddr = match received.flatten().map(|r| r.trim_start_matches('[').trim_end_matches(']')) {
        Some(r) => r.parse().ok().or_else(|| Host::Ipv6(r).ip())?,
        None => via.host.ip()?,
    };
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
        let rports: Vec<Option<&str>> = via.params.iter().filter(|(n, _)| *n == "rport").map(|(_, v)| v).collect();
        assert_eq!(rports, [Some("40000")], "the empty rport is filled in place (RFC 3581 §4)");
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
    fn rport_and_received_go_into_the_bytes_in_place() {
        let src: SocketAddr = "192.0.2.9:40000".parse().unwrap();
        let cases = [
            ("SIP/2.0/UDP h.example.com;branch=z9hG4bKa;rport", "SIP/2.0/UDP h.example.com;branch=z9hG4bKa;rport=40000;received=192.0.2.9"),
            ("SIP/2.0/UDP h;rport;branch=z9hG4bKa", "SIP/2.0/UDP h;rport=40000;branch=z9hG4bKa;received=192.0.2.9"),
            (
                "SIP/2.0/UDP 192.0.2.9:5070;RPORT ;branch=z9hG4bKa",
                "SIP/2.0/UDP 192.0.2.9:5070;RPORT=40000 ;branch=z9hG4bKa;received=192.0.2.9",
            ),
            (
                "SIP/2.0/UDP h;branch=z9hG4bKa;rport , SIP/2.0/UDP o;branch=z9hG4bKb",
                "SIP/2.0/UDP h;branch=z9hG4bKa;rport=40000;received=192.0.2.9 , SIP/2.0/UDP o;branch=z9hG4bKb",
            ),
            (
                "SIP/2.0/UDP h;branch=z9hG4bKa;rport;received=198.51.100.1",
                "SIP/2.0/UDP h;branch=z9hG4bKa;rport=40000;received=198.51.100.1",
            ),
            ("SIP/2.0/UDP h;branch=z9hG4bKa", "SIP/2.0/UDP h;branch=z9hG4bKa;received=192.0.2.9"),
            ("SIP/2.0/UDP h:5062", "SIP/2.0/UDP h:5062;received=192.0.2.9"),
            ("SIP/2.0/UDP [2001:db8::1];rport", "SIP/2.0/UDP [2001:db8::1];rport=40000;received=192.0.2.9"),
        ];
        for (via, want) in cases {
            let original = req(via);
            original.via().unwrap(); // kept, as the endpoint's stamp reads it
            let m = stamp_received(&original, src);
            assert_eq!(m, req(want), "{via}");
            assert_eq!(m.as_bytes(), req(want).as_bytes(), "{via}: every other byte as received");
            // The kept top Via moved with the inserts: what a fresh parse of the bytes reads.
            assert_eq!(m.via().unwrap(), req(want).via().unwrap(), "{via}");
            assert_eq!(m.via().unwrap().to_string(), req(want).via().unwrap().to_string(), "{via}");
            m.validate().unwrap();
            let answer = m.response_to(200, "OK", Some("t")).finish();
            assert_eq!(answer.via().unwrap(), Message::parse(answer.as_bytes().clone()).unwrap().via().unwrap(), "{via}");
        }
    }

    #[test]
    fn addresses_and_ports_written_as_display_writes_them() {
        for ip in ["0.0.0.0", "127.0.0.1", "192.0.2.9", "255.255.255.255", "10.100.1.20", "::1", "2001:db8::7"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
        for n in [0u32, 7, 10, 5060, 40000, 65535, u32::MAX] {
            let mut out = String::new();
            push_decimal(&mut out, n.into());
            assert_eq!(out, n.to_string());
        }
    }

    #[test]
    fn odd_rport_values_take_the_slow_path_as_before() {
        let src: SocketAddr = "[2001:db8::9]:40000".parse().unwrap();
        // An rport with a value that is no port is filled like an empty one; a valued received
        // later in the list still counts; a valueless received does not.
        for (via, want) in [
            ("SIP/2.0/UDP h;branch=z9hG4bKa;rport=abc", "SIP/2.0/UDP h;branch=z9hG4bKa;rport=40000;received=2001:db8::9"),
            ("SIP/2.0/UDP h;branch=z9hG4bKa;rport=5;rport", "SIP/2.0/UDP h;branch=z9hG4bKa;rport=5;rport;received=2001:db8::9"),
            ("SIP/2.0/UDP h;branch=z9hG4bKa;received", "SIP/2.0/UDP h;branch=z9hG4bKa;received;received=2001:db8::9"),
        ] {
            let m = stamp_received(&req(via), src);
            assert_eq!(m.via().unwrap().to_string(), req(want).via().unwrap().to_string(), "{via}");
        }
    }

    /// The one-pass `response_destination` against what `Via::received` and a search of the
    /// `rport`s gave before, on the odd cases: a valueless `received` first, several of each.
    #[test]
    fn response_destination_reads_the_params_as_before() {
        let before = |m: &Message| -> Option<SocketAddr> {
            let via = m.via().ok()?;
            let ip: IpAddr = match via.received() {
                Some(r) => r.parse().ok().or_else(|| Host::Ipv6(r).ip())?,
                None => via.host.ip()?,
            };
            let rport = via.params.iter().filter(|(n, _)| n.eq_ignore_ascii_case("rport")).find_map(|(_, v)| v?.parse::<u16>().ok());
            Some(SocketAddr::new(ip, rport.or(via.port).unwrap_or(DEFAULT_PORT)))
        };
        for via in [
            "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKa;rport=40000;received=198.51.100.7",
            "SIP/2.0/UDP 192.0.2.1;received;received=198.51.100.7;rport",
            "SIP/2.0/UDP 192.0.2.1;rport=abc;RPORT=5;rport=6",
            "SIP/2.0/UDP h.example.com;received=[2001:db8::9];rport=7",
            "SIP/2.0/UDP h.example.com;received=2001:db8::9",
            "SIP/2.0/UDP h.example.com;received=junk",
            "SIP/2.0/UDP h.example.com:5080",
            "SIP/2.0/UDP [2001:db8::1]:5080;Received=192.0.2.4",
        ] {
            assert_eq!(response_destination(&req(via)), before(&req(via)), "{via}");
        }
    }

    #[test]
    fn via_values() {
        assert_eq!(via_value("[::1]:5060".parse().unwrap(), "z9hG4bK1"), "SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1;rport");
    }
}
